#!/usr/bin/env bash
# tests/integration/run.sh: the integration suite (PROTOCOL.md from outside, with
# the official socket.io-client), as scripts/test calls it.
#
#   tests/integration/run.sh [node --test args...]      e.g. faults.test.mjs
#
# Environment: CHATD_BUILD=debug|asan|release (default debug) picks
# build/<mode>/node/chatd and chatd-kafka-probe of the same mode (the Kafka
# broker's readiness check); both must be built (scons -Q -j2 mode=<mode>). The
# services, Apache Kafka among them, are started by each file's harness
# (cluster.mjs, which web/test/e2e.test.mjs uses too). CHATD_IT_KEEP=1 keeps each
# file's temp dir (node logs); CHATD_IT_VERBOSE=1 prints timings and whole logs on
# failure.
#
# Installs the pinned packages with `npm ci` unless node_modules already matches
# package-lock.json (scripts/lib/npm.sh; so it works offline once installed), then
# runs every *.test.mjs here one file at a time. Exits non-zero when a test fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

command -v node >/dev/null || { echo "run.sh: node (>= 20) not found" >&2; exit 2; }
. "$root/scripts/lib/npm.sh"
npm_ci_if_stale "$here"

mode=${CHATD_BUILD:-debug}
for f in "$root/build/$mode/node/chatd" "$root/build/$mode/deploy/mockbroker/chatd-kafka-probe"; do
    [[ -x $f ]] || { echo "run.sh: $f not built (scons -Q -j2 mode=$mode)" >&2; exit 2; }
done

files=("$@")
if ((${#files[@]} == 0)); then
    files=(./*.test.mjs)
fi
start=$SECONDS
rc=0
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}" || rc=$?
echo "integration: $((SECONDS - start)) s, $([[ $rc == 0 ]] && echo passed || echo FAILED)"
exit "$rc"
