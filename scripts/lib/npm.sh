# shellcheck shell=bash
# scripts/lib/npm.sh: the Node packages of the JavaScript tests.
# Sourced by tests/integration/run.sh and web/test/run.sh.

# npm_ci_if_stale DIR: `npm ci` in DIR unless DIR/node_modules already holds
# exactly the packages and versions DIR/package-lock.json pins (npm's own record
# of what it installed, node_modules/.package-lock.json, says so; optional
# packages for other platforms, such as esbuild's, are not installed and not
# missed), so a test runs offline once its packages are installed. Needs node
# and npm.
npm_ci_if_stale() {
    local dir
    dir=$(cd "$1" && pwd) || return 1
    if [[ -f $dir/node_modules/.package-lock.json ]] && node -e '
        const [lock, got] = process.argv.slice(1).map((f) => require(f).packages);
        const same = (k) => got[k] && lock[k] && got[k].version === lock[k].version;
        const ok = Object.keys(got).filter(Boolean).every(same) &&
            Object.keys(lock).filter(Boolean).every((k) => same(k) || (lock[k].optional && !got[k]));
        process.exit(ok ? 0 : 1);' "$dir/package-lock.json" "$dir/node_modules/.package-lock.json"; then
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
