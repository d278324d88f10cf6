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
    "$probe" "$brokers" bench latency=200 >/dev/null # warm-up: producer id, leaders
    for r in 1 2 3; do
        line=$("$probe" "$brokers" bench "latency=$n")
        echo "$name round $r: ${line#ok latency }"
        echo "$line" >>"$SERVICES_DIR/$name.rounds"
    done
done
echo
printf '%-6s %10s %10s %10s\n' broker median p90 p99
for name in kafka mock; do
    # median of the 3 rounds' figures, each figure on its own
    awk -v name="$name" '{
        for (i = 1; i <= NF; i++) {
            if ($i == "median") m[NR] = $(i + 1); if ($i == "p90") a[NR] = $(i + 1);
            if ($i == "p99") b[NR] = $(i + 1)
        }
    } END {
        asort(m); asort(a); asort(b)
        printf "%-6s %8.2f ms %7.2f ms %7.2f ms\n", name, m[2], a[2], b[2]
    }' "$SERVICES_DIR/$name.rounds"
done
