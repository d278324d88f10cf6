# shellcheck shell=bash
# scripts/lib/npm.sh: the Node packages of the JavaScript tests.
# Sourced by tests/integration/run.sh and web/test/run.sh.

# npm_ci_if_stale DIR: `npm ci` in DIR unless DIR/node_modules already holds
# exactly the packages and versions DIR/package-lock.json pins (npm's own record
# of what it installed, node_modules/.package-lock.json, says so), so a test runs
# offline once its packages are installed. Needs node and npm.
npm_ci_if_stale() {
    local dir=$1
    local list='const l = require(process.argv[1]); console.log(JSON.stringify(Object.keys(l.packages).filter(Boolean).sort().map((k) => [k, l.packages[k].version])))'
    if [[ -f $dir/node_modules/.package-lock.json ]] &&
        cmp -s <(node -e "$list" "$dir/package-lock.json") \
            <(node -e "$list" "$dir/node_modules/.package-lock.json"); then
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
