# Debian packages chatd needs.
# Sourced by scripts/test and scripts/run.

# To build: compiler, SCons, and the libraries (with the libwebsockets libev
# plugin, which the runtime package does not pull in).
CHATD_BUILD_PACKAGES="gcc pkg-config scons libev-dev libmsgpack-dev libcmocka-dev
    libjansson-dev libwebsockets-dev libwebsockets-evlib-ev librdkafka-dev
    libhiredis-dev libpq-dev libjwt-dev libssl-dev"

# To run: the services (Java and Maven for the Kafka broker) and curl.
CHATD_RUN_PACKAGES="postgresql redis-server curl default-jre-headless maven"

# To test: clang and its runtime for libFuzzer, the services.
CHATD_TEST_PACKAGES="default-jre-headless maven clang libclang-rt-14-dev python3 postgresql redis-server curl docker-compose"

# Install what is missing with services_require_packages (scripts/services.sh).
