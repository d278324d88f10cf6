#!/usr/bin/env bash
# web/test/run.sh: the web page's end-to-end test, as the repo's test command runs it.
#
# Installs what is missing (Debian's chromium, the services, the build tools, the
# Node packages of web/ and of tests/integration/, whose harness the test uses),
# builds chatd (debug) and the page (web/build.mjs into build/web/), and runs
# web/test/e2e.test.mjs with node's test runner: Playwright (playwright-core) drives
# /usr/bin/chromium headless against two chatd nodes, which tests/integration/cluster.mjs
# starts with the services (scripts/services.sh through services-wrapper.sh).
# Screenshots land in build/web-artifacts/; CHATD_IT_KEEP=1 keeps the cluster's temp
# dir (node and service logs). Prints "N passed, N failed" last; exits non-zero on
# failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/packages.sh
. scripts/services.sh
. scripts/lib/npm.sh

services_require_packages $CHATD_BUILD_PACKAGES $CHATD_RUN_PACKAGES chromium
command -v node >/dev/null && command -v npm >/dev/null || services_require_packages nodejs npm

scons -Q -j"$(nproc 2>/dev/null || echo 2)" mode=debug >/dev/null
npm_ci_if_stale web
npm_ci_if_stale tests/integration
(cd web && node build.mjs)

rm -rf build/web-artifacts
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
(cd web && node --test --test-reporter=tap test/e2e.test.mjs) 2>&1 | tee "$log" || rc=$?
pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -n 1)
fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -n 1)
pass=${pass:-0}
fail=${fail:-0}
if ((rc != 0 && fail == 0)); then fail=1; fi
echo "screenshots: build/web-artifacts/"
echo "$pass passed, $fail failed"
exit "$rc"
