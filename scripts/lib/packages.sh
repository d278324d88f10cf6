# Debian packages chatd needs, and a function that installs the missing ones.
# Sourced by scripts/test and scripts/run.

# To build: compiler, SCons, and the libraries (with the libwebsockets libev
# plugin, which the runtime package does not pull in).
CHATD_BUILD_PACKAGES="gcc pkg-config scons libev-dev libmsgpack-dev libcmocka-dev
    libjansson-dev libwebsockets-dev libwebsockets-evlib-ev librdkafka-dev
    libhiredis-dev libpq-dev"

# To run: the services and curl (readiness checks).
CHATD_RUN_PACKAGES="postgresql redis-server curl"

# To test: clang and its runtime for libFuzzer, the services.
CHATD_TEST_PACKAGES="clang libclang-rt-14-dev python3 postgresql redis-server curl docker-compose"

# chatd_require_packages PKG...: installs those of PKG that are not installed
# (apt-get update first, once, only when something is missing). Needs root.
chatd_require_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing missing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: install them with: apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
