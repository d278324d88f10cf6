#!/usr/bin/env bash
# web/test/services.sh: the backing services of the page's end-to-end test.
#
# Starts PostgreSQL, Redis and Apache Kafka through scripts/services.sh, prints one
# line `ready {"CHATD_PG_DSN":...,"CHATD_REDIS_URL":...,"CHATD_KAFKA_BROKERS":...,"KAFKA_PID":...}`
# on stdout, then waits until stdin closes (the test exited or was killed) or a
# signal comes, and stops everything (the EXIT trap of services_cleanup_on_exit).
#   web/test/services.sh TOPIC PARTITIONS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../../scripts/services.sh
source "$ROOT/scripts/services.sh"
services_cleanup_on_exit
services_start_postgres >&2
services_start_redis >&2
services_start_kafka --topic "${1:-chatd-web}" --partitions "${2:-4}" >&2
printf 'ready {"CHATD_PG_DSN":"%s","CHATD_REDIS_URL":"%s","CHATD_KAFKA_BROKERS":"%s","KAFKA_PID":%s}\n' \
    "$CHATD_PG_DSN" "$CHATD_REDIS_URL" "$CHATD_KAFKA_BROKERS" "$(cat "$SERVICES_DIR/kafka.pid")"
# Until the test closes our stdin (also when it dies).
cat >/dev/null || true
