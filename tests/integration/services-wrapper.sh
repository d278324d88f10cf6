#!/usr/bin/env bash
# tests/integration/services-wrapper.sh: scripts/services.sh driven over stdin, for
# the JavaScript harness (cluster.mjs). Reimplements nothing: every command calls a
# services_* function.
#
#   bash services-wrapper.sh
#
# Reads one command per line on stdin and answers each with exactly one JSON line
# on stdout: {"ok":true|false,"out":"...","env":{...}} where env holds the
# exported service variables (SERVICES_DIR, CHATD_PG_DSN, CHATD_REDIS_URL,
# CHATD_KAFKA_BROKERS, CHATD_KAFKA_CONTROL, ...) and CHATD_KAFKA_OPTIONS, the
# librdkafka tuning every test client of either broker takes (scripts/services.sh's
# SERVICES_TEST_KAFKA_OPTIONS, comma-separated key=value). Commands:
#
#   start_postgres | start_redis | start_kafka [--topic T --partitions N]
#   stop_postgres  | stop_redis  | stop_kafka
#   restart_postgres | restart_redis | restart_kafka   (same port, same data)
#   kill_kafka | pause_kafka | resume_kafka           (SIGKILL, SIGSTOP, SIGCONT)
#   start_broker [ARGS...] | stop_broker              (the mock stand-in)
#   broker_ctl WORDS...           (the mock broker's control socket)
#   env                           (just the variables)
#   stop                          (services_stop_all, then exit with its status)
#
# When stdin closes (the harness exited or was killed) or on SIGINT/SIGTERM,
# everything is stopped and SERVICES_DIR removed: no process, no directory is
# left behind. Diagnostics go to stderr.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../../scripts/services.sh
source "$ROOT/scripts/services.sh"
services_cleanup_on_exit
# for the replies only: the services started here need not see it
CHATD_KAFKA_OPTIONS=$SERVICES_TEST_KAFKA_OPTIONS

_json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/}
    printf '"%s"' "$s"
}

_reply() {
    local ok=$1 out=$2 first=1 name
    printf '{"ok":%s,"out":%s,"env":{' "$ok" "$(_json_str "$out")"
    for name in SERVICES_DIR CHATD_PG_DSN CHATD_PG_PORT CHATD_REDIS_URL CHATD_REDIS_PORT \
        CHATD_KAFKA_BROKERS CHATD_KAFKA_CONTROL CHATD_KAFKA_OPTIONS; do
        if [[ -n "${!name:-}" ]]; then
            ((first)) || printf ','
            first=0
            printf '"%s":%s' "$name" "$(_json_str "${!name}")"
        fi
    done
    printf '}}\n'
}

while IFS= read -r line; do
    read -r -a words <<<"$line"
    ((${#words[@]})) || continue
    cmd=${words[0]}
    args=("${words[@]:1}")
    out=""
    rc=0
    case $cmd in
    start_postgres | start_redis | start_broker | stop_postgres | stop_redis | stop_broker | \
        restart_postgres | restart_redis | start_kafka | stop_kafka | kill_kafka | \
        restart_kafka | pause_kafka | resume_kafka)
        # Run in this shell (not a subshell) so exports and child processes stay ours.
        "services_$cmd" "${args[@]}" || rc=$?
        ;;
    broker_ctl)
        out=$(services_broker_ctl "${args[@]}") || rc=$?
        ;;
    env) ;;
    stop)
        services_stop_all
        rc=$?
        trap - EXIT
        _reply "$( ((rc == 0)) && echo true || echo false)" ""
        exit "$rc"
        ;;
    *)
        echo "services-wrapper: unknown command $cmd" >&2
        rc=2
        ;;
    esac
    _reply "$( ((rc == 0)) && echo true || echo false)" "$out"
done
# stdin closed: the EXIT trap stops everything.
exit 0
