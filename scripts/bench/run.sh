#!/usr/bin/env bash
# scripts/bench/run.sh: starts a 2-node cluster (scripts/run, release) on
# loopback, runs the load generator scripts/bench/load.mjs against it, stops
# the cluster (SIGTERM: nodes drain, services stop), and prints a figure table.
#
#   scripts/bench/run.sh [--runs N] [--kafka mock] [load.mjs options...]
#
# --runs N (default 1) repeats on a fresh cluster each time and prints the
# medians at the end. The broker is a real Apache Kafka (deploy/kafka, the
# version scripts/run starts); --kafka mock measures the in-memory stand-in
# instead. The first line of the figures names the broker measured. load.mjs options: --idle 2000 --rooms 10 --members 100
# --rate 200 --seconds 15 --sat-rates 400,800,1600,3200 --sat-seconds 8.
# Bounded: the cluster has 600 s to become ready (the first build), each load
# run 300 s. Senders get --rate 1000 --rate-burst 2000 so the per-connection
# limit does not cap the saturation steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=1
kafka=()
while [[ ${1:-} == --runs || ${1:-} == --kafka ]]; do
    case $1 in
    --runs) runs=$2 ;;
    --kafka) kafka=(--kafka "$2") ;;
    esac
    shift 2
done
out=$(mktemp -d "${TMPDIR:-/tmp}/chatd-bench.XXXXXX")
source scripts/bench/lib.sh
trap 'bench_stop_chatd' EXIT
trap 'exit 130' INT TERM

for ((i = 1; i <= runs; i++)); do
    echo "bench: run $i/$runs: starting a 2-node cluster (scripts/run --mode release)" >&2
    bench_start_chatd "$out" "run$i" "${kafka[@]}" -- --rate 1000 --rate-burst 2000
    urls=$bench_urls pids=$bench_pids
    echo "broker measured: $(sed -n 's/^broker: //p' "$out/run$i.err" | head -n 1)"
    rc=0
    timeout 330 node scripts/bench/load.mjs --urls "$urls" --pids "$pids" \
        --services-dir "$bench_logdir" --json "$out/run$i.json" "$@" || rc=$?
    grep -h -E ' (WARN|ERROR) ' "$bench_logdir"/chatd-*.log 2>/dev/null | tail -n 5 >&2 || true
    bench_stop_chatd
    ((rc == 0)) || { echo "bench: load.mjs failed (exit $rc)" >&2; exit "$rc"; }
done
if ((runs > 1)); then
    node scripts/bench/load.mjs --summarize "$out"/run*.json
fi
echo "bench: results in $out" >&2
