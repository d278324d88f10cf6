#!/usr/bin/env bash
# tests/services/test_services.sh: checks scripts/services.sh: PostgreSQL, Redis,
# Apache Kafka (the real broker) and chatd-mockbroker (the stand-in).
#
#   bash tests/services/test_services.sh          (SERVICES_BUILD_MODE=asan for ASan)
#
# Starts PostgreSQL, Redis and the mock Kafka broker through the library, checks
# each answers (SQL write, PING, produce + read back through librdkafka), that the
# broker's control socket injects faults (down 1 makes a produce fail within a
# bounded time, up 1 recovers, pushed Produce errors are retried, bad commands get
# an error line), that restarts keep the port (and PostgreSQL's data), and that
# services_stop_all leaves no process and no directory behind. The real broker:
# starts with its topic led, a message produced and read back survives a SIGKILL
# and a restart on the same log directory (same port), a paused (SIGSTOP) broker
# makes a produce fail in bounded time and works again after SIGCONT. The clients'
# librdkafka tuning (SERVICES_*KAFKA_OPTIONS) is key=value lists, and
# services-wrapper.sh hands the tests' one to the JavaScript harness. Builds the broker
# first if it is missing. Needs root or the PostgreSQL user (see services.sh).
#
# Prints one line per check and, last, "N passed, N failed"; exit 0 only if all passed.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../../scripts/services.sh
source "$ROOT/scripts/services.sh"
services_cleanup_on_exit

PASSED=0
FAILED=0
PROBE="$ROOT/build/$SERVICES_BUILD_MODE/deploy/mockbroker/chatd-kafka-probe"

pass() {
    PASSED=$((PASSED + 1))
    echo "PASS $*"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL $*"
}
# check DESC CMD...: one check; CMD's output is shown only when it fails.
check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$desc"
    else
        fail "$desc"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
    fi
}
summary() {
    echo "$PASSED passed, $FAILED failed"
    if ((FAILED == 0)); then exit 0; else exit 1; fi
}
ms() { _services_now_ms; }

if [[ ! -x "$(services_broker_bin)" || ! -x "$PROBE" ]]; then
    echo "building build/$SERVICES_BUILD_MODE/deploy"
    (cd "$ROOT" && scons -Q -j2 "mode=$SERVICES_BUILD_MODE" "build/$SERVICES_BUILD_MODE/deploy") >/dev/null
fi

# ---- start -------------------------------------------------------------------
t=$(ms)
if services_start_postgres; then
    pass "postgres started in $(($(ms) - t)) ms ($CHATD_PG_DSN)"
else
    fail "postgres start"
fi
t=$(ms)
if services_start_redis; then
    pass "redis started in $(($(ms) - t)) ms ($CHATD_REDIS_URL)"
else
    fail "redis start"
fi
t=$(ms)
if services_start_broker --topic chat --partitions 4; then
    pass "broker started in $(($(ms) - t)) ms ($CHATD_KAFKA_BROKERS)"
else
    fail "broker start"
fi
t=$(ms)
MOCK_BROKERS=$CHATD_KAFKA_BROKERS
if services_start_kafka --topic chat --partitions 4; then
    pass "kafka started in $(($(ms) - t)) ms ($CHATD_KAFKA_BROKERS, RSS $(awk '/VmRSS/ {print $2 " kB"}' "/proc/$(cat "$SERVICES_DIR/kafka.pid")/status"))"
else
    fail "kafka start"
fi
if ((FAILED)); then
    summary
fi
KAFKA=$CHATD_KAFKA_BROKERS
KAFKA_PID=$(cat "$SERVICES_DIR/kafka.pid")
export CHATD_KAFKA_BROKERS=$MOCK_BROKERS
PG_PID=$(head -n 1 "$SERVICES_DIR/pg/postmaster.pid")
REDIS_PID=$(cat "$SERVICES_DIR/redis.pid")
BROKER_PID=$(cat "$SERVICES_DIR/broker.pid")
DIR=$SERVICES_DIR

# ---- each service answers ----------------------------------------------------
sql_write() {
    psql "$CHATD_PG_DSN" -v ON_ERROR_STOP=1 -Atq \
        -c 'CREATE TABLE t (id int PRIMARY KEY, body text)' \
        -c "INSERT INTO t VALUES (1, 'hello')" &&
        [[ "$(psql "$CHATD_PG_DSN" -Atc 'SELECT body FROM t WHERE id = 1')" == hello ]]
}
check "postgres: create table, insert, select" sql_write
check "postgres: listens on 127.0.0.1 only" \
    bash -c '[[ "$(psql "$CHATD_PG_DSN" -Atc "SHOW listen_addresses")" == 127.0.0.1 ]]'
check "redis: PING" bash -c '[[ "$(redis-cli -h 127.0.0.1 -p "$CHATD_REDIS_PORT" ping)" == PONG ]]'
check "broker: produce and read back" "$PROBE" "$CHATD_KAFKA_BROKERS" chat roundtrip 10000

# ---- the clients' librdkafka tuning (set here only) ----------------------------
kafka_options_ok() {
    local opts o
    IFS=, read -r -a opts <<<"$1"
    ((${#opts[@]})) || return 1
    for o in "${opts[@]}"; do
        [[ $o =~ ^[a-z][a-z.]*=[^=]+$ ]] || { echo "not key=value: '$o'"; return 1; }
    done
}
check "client tuning, real broker: $SERVICES_KAFKA_OPTIONS" kafka_options_ok "$SERVICES_KAFKA_OPTIONS"
check "client tuning, mock: $SERVICES_MOCK_KAFKA_OPTIONS" kafka_options_ok "$SERVICES_MOCK_KAFKA_OPTIONS"
check "client tuning, tests: $SERVICES_TEST_KAFKA_OPTIONS" kafka_options_ok "$SERVICES_TEST_KAFKA_OPTIONS"
wrapper_tuning() {
    # without our SERVICES_DIR: the wrapper stops what it knows of when it exits
    local reply
    reply=$(echo env | env -u SERVICES_DIR bash "$ROOT/tests/integration/services-wrapper.sh") || return 1
    echo "$reply"
    [[ $reply == *"\"CHATD_KAFKA_OPTIONS\":\"$SERVICES_TEST_KAFKA_OPTIONS\""* ]]
}
check "services-wrapper.sh hands the tests' tuning to the JavaScript harness" wrapper_tuning

# ---- the real broker -----------------------------------------------------------
check "kafka: topic led, listens on 127.0.0.1" "$PROBE" "$KAFKA" chat topic=4 5000
check "kafka: a topic with another partition count is refused" \
    bash -c "! \"$PROBE\" \"$KAFKA\" chat topic=5 3000"
check "kafka: produce and read back" "$PROBE" "$KAFKA" chat roundtrip 10000
kafka_kept() {
    # a message acked before a SIGKILL is read back after the restart
    local out partition offset
    out=$("$PROBE" "$KAFKA" chat produce 10000) || return 1
    partition=$(echo "$out" | sed -n 's/.*\[\([0-9]*\)\] @\([0-9]*\).*/\1/p')
    offset=$(echo "$out" | sed -n 's/.*\[\([0-9]*\)\] @\([0-9]*\).*/\2/p')
    echo "produced to [$partition] @$offset"
    [[ -n "$partition" && -n "$offset" ]]
}
check "kafka: acked produce before the kill" kafka_kept
port_before=${KAFKA##*:}
services_kill_kafka
if _services_dead "$KAFKA_PID"; then pass "kafka: SIGKILLed"; else fail "kafka: still alive after SIGKILL"; fi
t=$(ms)
if services_start_kafka --topic chat --partitions 4 >/dev/null; then
    pass "kafka: restarted on its log directory in $(($(ms) - t)) ms"
else
    fail "kafka: restart after SIGKILL"
fi
KAFKA_PID=$(cat "$SERVICES_DIR/kafka.pid")
check "kafka: same port after the restart" test "${CHATD_KAFKA_BROKERS##*:}" = "$port_before"
kafka_offsets() {
    # the log survived: the next produce lands after what was there before
    local out
    out=$("$PROBE" "$KAFKA" chat roundtrip 10000) || return 1
    echo "$out"
    # (key "probe" always hashes to one partition, which held offsets 0 and 1)
    [[ "$out" =~ @([0-9]+) ]] && ((BASH_REMATCH[1] >= 2))
}
check "kafka: data kept, produce and read back after the restart" kafka_offsets
services_pause_kafka
t=$(ms)
if out=$("$PROBE" "$KAFKA" chat produce 1500 2>&1); then
    fail "kafka paused: produce should fail"
else
    elapsed=$(($(ms) - t))
    if ((elapsed < 4000)); then pass "kafka paused: produce fails within bound (${elapsed} ms)"
    else fail "kafka paused: produce failed only after ${elapsed} ms"; fi
fi
services_resume_kafka
check "kafka resumed: produce and read back" "$PROBE" "$KAFKA" chat roundtrip 10000
export CHATD_KAFKA_BROKERS=$MOCK_BROKERS

# ---- broker fault injection --------------------------------------------------
check "broker: status" services_broker_ctl status
check "broker: down 1" services_broker_ctl down 1
t=$(ms)
if out=$("$PROBE" "$CHATD_KAFKA_BROKERS" chat produce 2000 2>&1); then
    fail "broker down: produce should fail"
    echo "    $out"
else
    elapsed=$(($(ms) - t))
    if ((elapsed < 5000)); then
        pass "broker down: produce fails within bound (${elapsed} ms: $(echo "$out" | grep '^fail' | head -n 1))"
    else
        fail "broker down: produce failed only after ${elapsed} ms"
    fi
fi
check "broker: up 1" services_broker_ctl up 1
check "broker up again: produce and read back" "$PROBE" "$CHATD_KAFKA_BROKERS" chat roundtrip 10000
check "broker: errors Produce 2 NOT_ENOUGH_REPLICAS" \
    services_broker_ctl errors Produce 2 NOT_ENOUGH_REPLICAS
check "broker: retriable Produce errors are retried" "$PROBE" "$CHATD_KAFKA_BROKERS" chat produce 10000
check "broker: leader chat 0 1" services_broker_ctl leader chat 0 1
check "broker: coordinator group g 1" services_broker_ctl coordinator group g 1
check "broker: rtt 1 0" services_broker_ctl rtt 1 0
bad_commands() {
    local c out
    for c in "bogus" "down 7" "rtt 1 x" "errors NoSuchApi 1 1" "errors Produce 1 NO_SUCH" \
        "leader chat x 1" "coordinator nope g 1"; do
        if out=$(services_broker_ctl "$c"); then
            echo "'$c' was accepted: $out"
            return 1
        fi
        [[ "$out" == error\ * ]] || { echo "'$c' -> '$out'"; return 1; }
    done
    services_broker_ctl status
}
check "broker: bad commands get an error line, broker keeps running" bad_commands

# ---- restarts keep the port ----------------------------------------------------
pg_port=$CHATD_PG_PORT
redis_port=$CHATD_REDIS_PORT
# Restarts run in this shell (not through check's subshell) so the new processes
# are its children and the exported variables stay current.
t=$(ms)
if services_restart_postgres; then
    pass "postgres: restart in $(($(ms) - t)) ms"
else
    fail "postgres: restart"
fi
check "postgres: same port, data kept after restart" \
    bash -c "[[ \$CHATD_PG_PORT == $pg_port && \"\$(psql \"\$CHATD_PG_DSN\" -Atc 'SELECT count(*) FROM t')\" == 1 ]]"
t=$(ms)
if services_restart_redis; then
    pass "redis: restart in $(($(ms) - t)) ms"
else
    fail "redis: restart"
fi
check "redis: same port, PING after restart" \
    bash -c "[[ \$CHATD_REDIS_PORT == $redis_port && \"\$(redis-cli -h 127.0.0.1 -p $redis_port ping)\" == PONG ]]"
PG_PID=$(head -n 1 "$SERVICES_DIR/pg/postmaster.pid")
PG_KIDS=$(pgrep -P "$PG_PID" | tr '\n' ' ' || true)
REDIS_PID=$(cat "$SERVICES_DIR/redis.pid")

# ---- stop everything ---------------------------------------------------------
# Not through check(): it must run in this shell, which started the services, so
# it can reap them, see the broker's exit status and unset the variables.
t=$(ms)
if services_stop_all; then
    pass "services_stop_all (broker exited 0)"
else
    fail "services_stop_all"
fi
stopped_ms=$(($(ms) - t))
left=""
for p in $PG_PID $PG_KIDS $REDIS_PID $BROKER_PID $KAFKA_PID; do
    if ! _services_dead "$p"; then
        left="$left $p"
    fi
done
if [[ -z "$left" ]]; then
    pass "no process left behind (stop took ${stopped_ms} ms)"
else
    fail "processes left behind:$left"
fi
if [[ ! -e "$DIR" ]]; then
    pass "temporary directory removed"
else
    fail "temporary directory $DIR still exists"
fi
if [[ -z "${CHATD_PG_DSN:-}${CHATD_KAFKA_BROKERS:-}${SERVICES_DIR:-}" ]]; then
    pass "exported variables unset"
else
    fail "exported variables still set"
fi
summary
