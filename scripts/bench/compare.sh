#!/usr/bin/env bash
# scripts/bench/compare.sh: chatd against the peer (the seed's stack,
# scripts/bench/peer/) on this machine with the same load, one table.
#
#   scripts/bench/compare.sh [--runs 3] [--loadgen c|node] [--check]
#        [--kafka mock|BOOTSTRAP] [--rooms 10] [--members 100] [--rate 200]
#        [--seconds 15] [--sat-rates R1,R2,...] [--sat-seconds 8]
#
# Each run: a 2-node chatd cluster (scripts/run --mode release, senders'
# --rate 1000 --rate-burst 2000; the real Kafka unless --kafka) under the
# load, stopped; then a 2-node peer cluster (two server.mjs sharing one
# Redis) under the same load, stopped. The load is the fanout phase of
# scripts/bench/load.mjs (rooms x members, member m on node m % 2, two
# senders per room, --rate msg/s in total for --seconds after a 2 s warm-up)
# and, with --sat-rates, its saturation steps. --loadgen c (the default) is
# build/release/scripts/bench/loadgen/loadgen; node is load.mjs with
# socket.io-client. --check runs both, one after the other, against each
# cluster and prints their counts, latencies and own CPU side by side (the
# table then uses --loadgen's). Prints the medians over --runs, the ratio
# chatd / peer, the machine's steal time over each run (/proc/stat), and
# chatd's per-stage latency table (scripts/bench/stages.mjs: the age of a
# message at each stage of its path, from the nodes' chatd_stage_seconds,
# over each run's whole load).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=3 loadgen=c check=0 kafka=()
rooms=10 members=100 rate=200 seconds=15 sat_rates="" sat_seconds=8
while (($#)); do
    case $1 in
    --runs) runs=$2 ;;
    --loadgen) loadgen=$2 ;;
    --check) check=1; shift; continue ;;
    --kafka) kafka=(--kafka "$2") ;;
    --rooms) rooms=$2 ;;
    --members) members=$2 ;;
    --rate) rate=$2 ;;
    --seconds) seconds=$2 ;;
    --sat-rates) sat_rates=$2 ;;
    --sat-seconds) sat_seconds=$2 ;;
    *) echo "compare.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
    shift 2
done
[[ $loadgen == c || $loadgen == node ]] || { echo "compare.sh: --loadgen c|node" >&2; exit 2; }
loadgens=("$loadgen")
((check)) && loadgens=(c node)

source scripts/bench/lib.sh
source scripts/services.sh
out=$(mktemp -d "${TMPDIR:-/tmp}/chatd-compare.XXXXXX")
peerpids=()
stop_peer() {
    for p in "${peerpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${peerpids[@]}"; do wait "$p" 2>/dev/null || true; done
    peerpids=()
    services_stop_all >/dev/null 2>&1 || true
}
trap 'bench_stop_chatd; stop_peer' EXIT
trap 'exit 130' INT TERM

echo "bench: building the load generator and installing the peer" >&2
scons -Q -j2 mode=release build/release/scripts/bench/loadgen >&2
[[ -d scripts/bench/peer/node_modules ]] || (cd scripts/bench/peer && npm ci --no-audit --no-fund >&2)
[[ $loadgen == c && $check == 0 ]] || [[ -d tests/integration/node_modules ]] ||
    (cd tests/integration && npm ci --no-audit --no-fund >&2)

# load SYSTEM RUN URLS PIDS: the load with each load generator -> $out/SYSTEM.RUN.LG.json
load() {
    local sys=$1 i=$2 urls=$3 pids=$4 lg
    for lg in "${loadgens[@]}"; do
        echo "bench: run $i: $sys under the $lg load generator" >&2
        if [[ $lg == c ]]; then
            timeout 330 build/release/scripts/bench/loadgen/loadgen --urls "$urls" --pids "$pids" \
                --rooms "$rooms" --members "$members" --rate "$rate" --seconds "$seconds" \
                --sat-rates "$sat_rates" --sat-seconds "$sat_seconds" >"$out/$sys.$i.c.json"
        else
            timeout 330 node scripts/bench/load.mjs --urls "$urls" --pids "$pids" --idle 0 \
                --rooms "$rooms" --members "$members" --rate "$rate" --seconds "$seconds" \
                --sat-rates "$sat_rates" --sat-seconds "$sat_seconds" \
                --json "$out/$sys.$i.node.json" >"$out/$sys.$i.node.txt"
        fi
    done
}

for ((i = 1; i <= runs; i++)); do
    read -r steal0 total0 < <(bench_steal)
    echo "bench: run $i/$runs: chatd, 2 nodes" >&2
    bench_start_chatd "$out" "chatd$i" "${kafka[@]}" -- --rate 1000 --rate-burst 2000
    sed -n 's/^broker: //p' "$out/chatd$i.err" | head -n 1 >"$out/broker"
    node scripts/bench/stages.mjs --urls "$bench_urls" --save "$out/chatd.$i.stages0"
    load chatd "$i" "$bench_urls" "$bench_pids"
    node scripts/bench/stages.mjs --urls "$bench_urls" --save "$out/chatd.$i.stages1"
    node scripts/bench/stages.mjs --before "$out/chatd.$i.stages0" --after "$out/chatd.$i.stages1" \
        --json "$out/chatd.$i.stages.json" >"$out/chatd.$i.stages.txt"
    bench_stop_chatd

    echo "bench: run $i/$runs: peer, 2 nodes on one Redis" >&2
    services_start_redis >&2
    urls="" pids=""
    for n in 0 1; do
        port=$(services_free_port)
        node scripts/bench/peer/server.mjs --port "$port" --redis "$CHATD_REDIS_URL" \
            >"$out/peer$i.$n.out" 2>&1 &
        peerpids+=($!)
        urls+="${urls:+,}http://127.0.0.1:$port" pids+="${pids:+,}$!"
    done
    deadline=$((SECONDS + 30))
    until grep -q '^ready' "$out/peer$i.0.out" && grep -q '^ready' "$out/peer$i.1.out"; do
        ((SECONDS < deadline)) || { echo "bench: the peer did not start:" >&2; cat "$out/peer$i".*.out >&2; exit 1; }
        sleep 0.2
    done
    load peer "$i" "$urls" "$pids"
    stop_peer
    read -r steal1 total1 < <(bench_steal)
    echo "$((steal1 - steal0)) $((total1 - total0))" >"$out/steal.$i"
done
node scripts/bench/compare.mjs "$out" "$loadgen" "$check"
echo "bench: results in $out" >&2
