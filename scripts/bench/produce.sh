#!/usr/bin/env bash
# scripts/bench/produce.sh: produce->ack latency of the real broker and of the
# mock stand-in, side by side, with chatd's producer settings (acks=all,
# idempotence, linger.ms=1), one message at a time (chatd-kafka-probe latency=N).
#
#   scripts/bench/produce.sh [N]      N messages per broker and run (default 2000)
#
# Starts Apache Kafka (deploy/kafka) and the mock on loopback, runs 3 rounds
# against each, prints every round and the medians of the rounds' figures, and
# stops both. A benchmark: it prints figures and asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/packages.sh
. scripts/services.sh
n=${1:-2000}
services_require_packages $CHATD_BUILD_PACKAGES $CHATD_RUN_PACKAGES
scons -Q -j"$(nproc)" mode=release deploy >/dev/null
export SERVICES_BUILD_MODE=release
services_cleanup_on_exit
probe=build/release/deploy/mockbroker/chatd-kafka-probe
services_start_broker --topic bench --partitions 4
mock=$CHATD_KAFKA_BROKERS
t=$(_services_now_ms)
services_start_kafka --topic bench --partitions 4
echo "kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml): ready in $(($(_services_now_ms) - t)) ms, RSS $(awk '/VmRSS/ {print $2 " kB"}' "/proc/$(cat "$SERVICES_DIR/kafka.pid")/status")"
echo "steal: $(awk '/^cpu / {print $9}' /proc/stat) jiffies so far"
for name in kafka mock; do
    brokers=$CHATD_KAFKA_BROKERS
    [[ $name == mock ]] && brokers=$mock
    "$probe" "$brokers" bench latency=200 >/dev/null 2>&1 # warm-up: producer id, leaders
    for r in 1 2 3; do
        line=$("$probe" "$brokers" bench "latency=$n")
        echo "$name round $r: ${line#ok latency }"
        echo "$line" >>"$SERVICES_DIR/$name.rounds"
    done
done
echo
printf '%-6s %10s %10s %10s\n' broker median p90 p99
# fig FILE NAME: the median over the rounds of the figure after the word NAME
fig() {
    awk -v w="$2" '{ for (i = 1; i < NF; i++) if ($i == w) print $(i + 1) }' "$1" |
        sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
for name in kafka mock; do
    f=$SERVICES_DIR/$name.rounds
    printf '%-6s %7s ms %7s ms %7s ms\n' "$name" "$(fig "$f" median)" "$(fig "$f" p90)" "$(fig "$f" p99)"
done
