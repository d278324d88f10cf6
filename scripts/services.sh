# shellcheck shell=bash
# scripts/services.sh: start and stop chatd's backing services on loopback.
#
# Source it (it is a library, not a program):
#
#     source scripts/services.sh
#     services_cleanup_on_exit          # stop everything when the script exits
#     services_start_postgres           # exports CHATD_PG_DSN, CHATD_PG_PORT
#     services_start_redis              # exports CHATD_REDIS_URL, CHATD_REDIS_PORT
#     services_start_kafka --topic T --partitions N
#                                       # real Apache Kafka: exports CHATD_KAFKA_BROKERS
#     services_kill_kafka; services_restart_kafka   # fault tests (data kept)
#     services_start_broker             # the mock stand-in instead: exports
#                                       # CHATD_KAFKA_BROKERS, CHATD_KAFKA_CONTROL
#     services_broker_ctl down 1        # fault injection on the stand-in broker
#     services_restart_redis            # same port, for fault tests
#     services_stop_all                 # or let the EXIT trap do it
#
# Every service listens on 127.0.0.1 only, on a free port, and keeps all its files
# (data, sockets, logs, pids) in one temporary directory, $SERVICES_DIR, which
# services_stop_all removes. State lives in files there, so the functions also work
# from subshells as long as SERVICES_DIR is exported (services_init exports it).
#
# Safe to source under `set -euo pipefail`; sourcing twice is a no-op. Every
# function returns 0 on success; on failure it prints "services: <what>" (plus the
# tail of the service's log when there is one) to stderr and returns non-zero, so a
# caller under `set -e` stops there.
#
# Settings (environment, all optional):
#   SERVICES_DIR          use this directory instead of a fresh mktemp one (it is
#                         only deleted by services_stop_all if services_init made it)
#   SERVICES_TIMEOUT      seconds to wait for a service to answer or stop (default 30)
#   SERVICES_BUILD_MODE   build/<mode> to take chatd-mockbroker from (default debug)
#   SERVICES_PG_BIN       PostgreSQL server binaries (default: newest
#                         /usr/lib/postgresql/*/bin)
#   SERVICES_PG_USER      OS user that runs PostgreSQL when we are root
#                         (default postgres; the server refuses to run as root)
#   SERVICES_KAFKA_LIB    where the broker's jars are cached (default
#                         build/kafka/lib; resolved from deploy/kafka/pom.xml)
#   SERVICES_KAFKA_HEAP   the broker's -Xmx (default 512m)
#   SERVICES_KAFKA_OPTIONS, SERVICES_MOCK_KAFKA_OPTIONS, SERVICES_TEST_KAFKA_OPTIONS
#                         librdkafka tuning of the clients of these brokers (below)
#
# The clients' tuning, the one place that sets it: chatd's defaults are
# librdkafka's, right for a production cluster; a client of a broker started here
# gets these comma-separated librdkafka properties (as CHATD_KAFKA_OPTIONS or one
# --kafka-option each). scripts/run, scripts/test (the actor tests),
# tests/integration/services-wrapper.sh (the integration and web tests) take them
# from here.
#   SERVICES_KAFKA_OPTIONS       the real broker (scripts/run): a killed node's
#                                partitions move after 6 s, not librdkafka's 45 s
#   SERVICES_MOCK_KAFKA_OPTIONS  the mock stand-in (scripts/run --kafka mock): its
#                                group joins and empty fetches are slow unless tuned
#   SERVICES_TEST_KAFKA_OPTIONS  every test, whichever broker it runs on

if [[ -n "${_CHATD_SERVICES_SH:-}" ]]; then
    return 0
fi
_CHATD_SERVICES_SH=1

_SERVICES_LAST_STATUS=0
_SERVICES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${SERVICES_TIMEOUT:=30}"
: "${SERVICES_BUILD_MODE:=debug}"
: "${SERVICES_PG_USER:=postgres}"
: "${SERVICES_KAFKA_LIB:=$_SERVICES_ROOT/build/kafka/lib}"
: "${SERVICES_KAFKA_HEAP:=512m}"
: "${SERVICES_KAFKA_OPTIONS:=session.timeout.ms=6000}"
: "${SERVICES_MOCK_KAFKA_OPTIONS:=session.timeout.ms=6000,fetch.wait.max.ms=10}"
: "${SERVICES_TEST_KAFKA_OPTIONS:=session.timeout.ms=6000,fetch.wait.max.ms=10}"

# ---- helpers -----------------------------------------------------------------

_services_err() {
    echo "services: $*" >&2
}

# _services_log_tail FILE: the last lines of a service log, indented, on stderr.
_services_log_tail() {
    if [[ -f "$1" ]]; then
        echo "services: last lines of $1:" >&2
        tail -n 15 "$1" | sed 's/^/    /' >&2 || true
    fi
}

# _services_now_ms: monotonic-enough wall clock in milliseconds.
_services_now_ms() {
    local s
    s=$(date +%s%N)
    echo $((s / 1000000))
}

# _services_wait_until SECONDS PID DESC CMD...: runs CMD every 50 ms until it
# succeeds (return 0). Fails when SECONDS pass or, if PID is not "-", when that
# process dies first (no point waiting for a corpse).
_services_wait_until() {
    local secs=$1 pid=$2 desc=$3
    shift 3
    local deadline=$(($(_services_now_ms) + secs * 1000))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [[ "$pid" != "-" ]] && ! kill -0 "$pid" 2>/dev/null; then
            _services_err "$desc: process $pid exited before it was ready"
            return 1
        fi
        if (($(_services_now_ms) >= deadline)); then
            _services_err "$desc: not ready after ${secs}s"
            return 1
        fi
        sleep 0.05
    done
}

# _services_stop_pid PID DESC [SIGNAL]: sends SIGNAL (default TERM) to PID, waits up
# to SERVICES_TIMEOUT seconds for it to exit, then SIGKILLs it. Returns 0 once the
# process is gone (also when it was already gone). Sets _SERVICES_LAST_STATUS to
# its exit status when it was a child of this shell, else to 0 or 127.
_services_stop_pid() {
    local pid=$1 desc=$2 sig=${3:-TERM}
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
        _SERVICES_LAST_STATUS=0
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! _services_wait_until "$SERVICES_TIMEOUT" - "$desc stop" _services_dead "$pid" 2>/dev/null; then
        _services_err "$desc (pid $pid) ignored SIG$sig for ${SERVICES_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        _services_wait_until 5 - "$desc kill" _services_dead "$pid" || return 1
    fi
    # Reap it if it is our child and keep its exit status (127: not our child).
    _SERVICES_LAST_STATUS=0
    wait "$pid" 2>/dev/null || _SERVICES_LAST_STATUS=$?
    return 0
}

# _services_dead PID: true when PID no longer exists (or is a zombie).
_services_dead() {
    local state
    if ! kill -0 "$1" 2>/dev/null; then
        return 0
    fi
    state=$(ps -o stat= -p "$1" 2>/dev/null || true)
    [[ "$state" == Z* ]]
}

# _services_as_pg CMD...: runs CMD as the PostgreSQL user when we are root,
# otherwise as ourselves.
_services_as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$SERVICES_PG_USER" -- "$@"
    else
        "$@"
    fi
}

_services_pg_bin() {
    if [[ -n "${SERVICES_PG_BIN:-}" ]]; then
        echo "$SERVICES_PG_BIN"
        return 0
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$d" || ! -x "$d/initdb" ]]; then
        _services_err "no PostgreSQL server found (install postgresql, or set SERVICES_PG_BIN)"
        return 1
    fi
    echo "$d"
}

# ---- public functions ----------------------------------------------------------

# services_require_packages PKG...: makes sure the Debian packages are installed.
# Installs only the missing ones with `apt-get install -y`, running `apt-get update`
# first only when apt knows no candidate for one of them. Needs root when something
# is missing; otherwise prints the command to run and fails.
services_require_packages() {
    local missing=() pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [[ "$status" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        _services_err "missing packages; install them with: sudo apt-get install -y ${missing[*]}"
        return 1
    fi
    local need_update=0
    for pkg in "${missing[@]}"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            need_update=1
        fi
    done
    if ((need_update)); then
        echo "services: apt-get update" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || {
            _services_err "apt-get update failed"
            return 1
        }
    fi
    echo "services: apt-get install -y ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || {
        _services_err "apt-get install ${missing[*]} failed"
        return 1
    }
}

# services_free_port: prints a TCP port that nothing listens on, from 20000..32767
# (below Linux's ephemeral range, so outgoing connections do not take it meanwhile),
# skipping the ports handed out earlier in this SERVICES_DIR. A service may still
# lose a race for it; the start functions report that as a failed start.
services_free_port() {
    local tries port used
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
        used=$(ss -Htln "sport = :$port" 2>/dev/null || true)
        if [[ -n "$used" ]]; then
            continue
        fi
        if [[ -n "${SERVICES_DIR:-}" && -f "$SERVICES_DIR/ports" ]] &&
            grep -qx "$port" "$SERVICES_DIR/ports"; then
            continue
        fi
        if [[ -n "${SERVICES_DIR:-}" && -d "$SERVICES_DIR" ]]; then
            echo "$port" >>"$SERVICES_DIR/ports"
        fi
        echo "$port"
        return 0
    done
    _services_err "no free port found in 200 tries"
    return 1
}

# services_init: creates and exports SERVICES_DIR (mode 0755 so the PostgreSQL user
# can reach its subdirectory) unless it already exists. Called by every start
# function; call it yourself to know the directory early.
services_init() {
    if [[ -n "${SERVICES_DIR:-}" && -d "$SERVICES_DIR" ]]; then
        export SERVICES_DIR
        return 0
    fi
    if [[ -n "${SERVICES_DIR:-}" ]]; then
        mkdir -p "$SERVICES_DIR" || return 1
    else
        SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatd-services.XXXXXX") || {
            _services_err "mktemp failed"
            return 1
        }
    fi
    chmod 0755 "$SERVICES_DIR"
    : >"$SERVICES_DIR/.chatd-services"
    export SERVICES_DIR
}

# services_cleanup_on_exit: installs an EXIT trap (and INT/TERM traps that exit)
# that runs services_stop_all, so an aborted script leaves nothing behind.
# It replaces existing EXIT/INT/TERM traps.
services_cleanup_on_exit() {
    trap 'services_stop_all' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# services_start_postgres: starts PostgreSQL on 127.0.0.1 (no other address), its
# Unix socket in $SERVICES_DIR/pgsock, data in $SERVICES_DIR/pg (initdb on first
# start, superuser "postgres", trust auth, fsync on), then creates database chatd.
# Waits until pg_isready answers (SERVICES_TIMEOUT). A second call after
# services_stop_postgres restarts the same cluster on the same port.
# Exports CHATD_PG_DSN="host=127.0.0.1 port=N dbname=chatd user=postgres" and
# CHATD_PG_PORT=N.
services_start_postgres() {
    services_init || return 1
    local bin port data=$SERVICES_DIR/pg sock=$SERVICES_DIR/pgsock log=$SERVICES_DIR/pg.log
    local first=0
    bin=$(_services_pg_bin) || return 1
    if [[ -f "$data/postmaster.pid" ]] && kill -0 "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null; then
        _services_err "postgres already running (pid $(head -n 1 "$data/postmaster.pid"))"
        return 1
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        first=1
        mkdir -p "$data" "$sock"
        if [[ $(id -u) -eq 0 ]]; then
            chown "$SERVICES_PG_USER:" "$data" "$sock"
        fi
        chmod 0700 "$data"
        : >"$log"
        if [[ $(id -u) -eq 0 ]]; then chown "$SERVICES_PG_USER:" "$log"; fi
        # --no-sync: initdb's final flush only; the server itself keeps fsync on.
        if ! _services_as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 \
            --locale=C --no-sync --no-instructions >>"$log" 2>&1; then
            _services_err "initdb failed"
            _services_log_tail "$log"
            return 1
        fi
        services_free_port >"$SERVICES_DIR/pg.port" || return 1
    fi
    port=$(cat "$SERVICES_DIR/pg.port")
    if ! _services_as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t "$SERVICES_TIMEOUT" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $sock" start >/dev/null 2>&1; then
        _services_err "postgres did not start on 127.0.0.1:$port"
        _services_log_tail "$log"
        return 1
    fi
    if ! _services_wait_until "$SERVICES_TIMEOUT" - "postgres on 127.0.0.1:$port" \
        pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; then
        _services_log_tail "$log"
        return 1
    fi
    if ((first)); then
        if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres chatd 2>>"$log"; then
            _services_err "createdb chatd failed"
            _services_log_tail "$log"
            return 1
        fi
    fi
    export CHATD_PG_PORT=$port
    export CHATD_PG_DSN="host=127.0.0.1 port=$port dbname=chatd user=postgres"
}

# services_stop_postgres: fast shutdown (SIGINT: abort sessions, checkpoint, exit),
# SIGQUIT then SIGKILL if it takes longer than SERVICES_TIMEOUT. Keeps the data and
# the port for a later services_start_postgres. No-op when it is not running.
services_stop_postgres() {
    local data=${SERVICES_DIR:-}/pg pid kids
    [[ -n "${SERVICES_DIR:-}" && -f "$data/postmaster.pid" ]] || return 0
    pid=$(head -n 1 "$data/postmaster.pid")
    kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
    _services_stop_pid "$pid" postgres INT || return 1
    # Backends leave by themselves once the postmaster is gone; make sure.
    local k
    for k in $kids; do
        _services_stop_pid "$k" "postgres child" KILL || true
    done
    rm -f "$data/postmaster.pid"
}

# services_restart_postgres: stop, then start again on the same port, same data.
services_restart_postgres() {
    services_stop_postgres && services_start_postgres
}

# services_start_redis: starts redis-server in the foreground of a background job
# (no daemonize; pid in $SERVICES_DIR/redis.pid), bound to 127.0.0.1, no RDB/AOF,
# working dir $SERVICES_DIR/redis, and waits for PONG (SERVICES_TIMEOUT). Reuses
# the previous port after services_stop_redis. Exports
# CHATD_REDIS_URL=redis://127.0.0.1:N and CHATD_REDIS_PORT=N.
services_start_redis() {
    services_init || return 1
    local port pid dir=$SERVICES_DIR/redis log=$SERVICES_DIR/redis.log
    if [[ -f "$SERVICES_DIR/redis.pid" ]] && kill -0 "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null; then
        _services_err "redis already running (pid $(cat "$SERVICES_DIR/redis.pid"))"
        return 1
    fi
    command -v redis-server >/dev/null || {
        _services_err "redis-server not found (apt-get install -y redis-server)"
        return 1
    }
    mkdir -p "$dir"
    if [[ ! -f "$SERVICES_DIR/redis.port" ]]; then
        services_free_port >"$SERVICES_DIR/redis.port" || return 1
    fi
    port=$(cat "$SERVICES_DIR/redis.port")
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --daemonize no --logfile '' >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$SERVICES_DIR/redis.pid"
    if ! _services_wait_until "$SERVICES_TIMEOUT" "$pid" "redis on 127.0.0.1:$port" \
        _services_redis_pong "$port"; then
        _services_log_tail "$log"
        _services_stop_pid "$pid" redis || true
        rm -f "$SERVICES_DIR/redis.pid"
        return 1
    fi
    export CHATD_REDIS_PORT=$port
    export CHATD_REDIS_URL="redis://127.0.0.1:$port"
}

_services_redis_pong() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# services_stop_redis: SIGTERM, SIGKILL after SERVICES_TIMEOUT. Keeps the port.
services_stop_redis() {
    [[ -n "${SERVICES_DIR:-}" && -f "$SERVICES_DIR/redis.pid" ]] || return 0
    _services_stop_pid "$(cat "$SERVICES_DIR/redis.pid")" redis || return 1
    rm -f "$SERVICES_DIR/redis.pid"
}

# services_restart_redis: stop, then start again on the same port (empty: Redis
# keeps nothing here, which is what a Pub/Sub restart looks like).
services_restart_redis() {
    services_stop_redis && services_start_redis
}

# ---- Apache Kafka (the real broker) ---------------------------------------------

# services_kafka_jars: makes sure the broker's jars pinned by deploy/kafka/pom.xml
# are in SERVICES_KAFKA_LIB (Maven resolves them from Maven Central the first
# time; a stamp holding the pom's checksum makes every later call download
# nothing). Needs java and mvn (Debian: default-jre-headless, maven).
services_kafka_jars() {
    local pom=$_SERVICES_ROOT/deploy/kafka/pom.xml stamp=$SERVICES_KAFKA_LIB/.pom.sha256 sum
    sum=$(sha256sum "$pom" | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then
        return 0
    fi
    command -v java >/dev/null && command -v mvn >/dev/null || {
        _services_err "java and mvn are needed for the Kafka broker (apt-get install -y default-jre-headless maven)"
        return 1
    }
    echo "services: resolving the Kafka broker's jars (deploy/kafka/pom.xml) into $SERVICES_KAFKA_LIB" >&2
    rm -rf "$SERVICES_KAFKA_LIB"
    mkdir -p "$SERVICES_KAFKA_LIB"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$SERVICES_KAFKA_LIB" >"$SERVICES_KAFKA_LIB/../mvn.log" 2>&1; then
        _services_err "mvn could not resolve deploy/kafka/pom.xml"
        _services_log_tail "$SERVICES_KAFKA_LIB/../mvn.log"
        return 1
    fi
    echo "$sum" >"$stamp"
}

# _services_kafka_jvm: sets the array _SERVICES_KAFKA_JVM to the JVM options: the
# broker's classpath, a small heap and the serial GC (a single-node test broker
# on a 2-core machine), quiet logging (deploy/kafka/log4j.properties).
_services_kafka_jvm() {
    _SERVICES_KAFKA_JVM=(-Xms64m "-Xmx$SERVICES_KAFKA_HEAP" -XX:+UseSerialGC
        -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Djava.awt.headless=true
        "-Dlog4j.configuration=file:$_SERVICES_ROOT/deploy/kafka/log4j.properties"
        -cp "$SERVICES_KAFKA_LIB/*")
}

# _services_kafka_cluster_id: a random KRaft cluster id (16 bytes, base64url).
# Never one that starts with "-": StorageTool's parser would take it for an
# option (1 start in 64 failed that way), which is why Kafka's own Uuid skips them.
_services_kafka_cluster_id() {
    local id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    echo "$id"
}

# services_start_kafka [--topic T] [--partitions N]: starts Apache Kafka in KRaft
# mode (one process, broker and controller) on 127.0.0.1 with a free port for
# each listener, its log directory in $SERVICES_DIR/kafka (formatted with
# kafka.tools.StorageTool on the first start), and creates topic T (default
# chat) with N partitions (default 8). Ready means a metadata request through
# librdkafka (chatd-kafka-probe topic=N) lists the broker and a leader for every
# partition, not a sleep. A second call after services_stop_kafka or
# services_kill_kafka starts it on the same ports and the same log directory:
# data, committed offsets and producer state are kept, as on a real restart.
# Exports CHATD_KAFKA_BROKERS=127.0.0.1:PORT and CHATD_KAFKA_TOPIC=T.
services_start_kafka() {
    services_init || return 1
    local topic=chat partitions=8
    while (($#)); do
        case $1 in
        --topic) topic=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        *) _services_err "services_start_kafka: unknown argument $1"; return 1 ;;
        esac
    done
    local dir=$SERVICES_DIR/kafka log=$SERVICES_DIR/kafka.log probe port cport pid
    probe="$_SERVICES_ROOT/build/$SERVICES_BUILD_MODE/deploy/mockbroker/chatd-kafka-probe"
    [[ -x "$probe" ]] || {
        _services_err "$probe not built (run: scons -Q mode=$SERVICES_BUILD_MODE deploy)"
        return 1
    }
    if [[ -f "$SERVICES_DIR/kafka.pid" ]] && kill -0 "$(cat "$SERVICES_DIR/kafka.pid")" 2>/dev/null; then
        _services_err "kafka already running (pid $(cat "$SERVICES_DIR/kafka.pid"))"
        return 1
    fi
    services_kafka_jars || return 1
    _services_kafka_jvm
    if [[ ! -f "$dir/server.properties" ]]; then
        mkdir -p "$dir/data"
        port=$(services_free_port) || return 1
        cport=$(services_free_port) || return 1
        echo "$port" >"$SERVICES_DIR/kafka.port"
        _services_kafka_config "$dir" "$port" "$cport" >"$dir/server.properties"
        : >"$log"
        if ! java "${_SERVICES_KAFKA_JVM[@]}" kafka.tools.StorageTool format --ignore-formatted \
            -t "$(_services_kafka_cluster_id)" -c "$dir/server.properties" >>"$log" 2>&1; then
            _services_err "kafka storage format failed"
            _services_log_tail "$log"
            return 1
        fi
    fi
    port=$(cat "$SERVICES_DIR/kafka.port")
    # a simple command in the background: $! is the JVM itself, not a subshell
    java "${_SERVICES_KAFKA_JVM[@]}" kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$SERVICES_DIR/kafka.pid"
    echo "$topic $partitions" >"$SERVICES_DIR/kafka.topic"
    if ! _services_wait_until "$SERVICES_TIMEOUT" "$pid" "kafka on 127.0.0.1:$port" \
        "$probe" "127.0.0.1:$port" "$topic" "topic=$partitions" 5000; then
        _services_log_tail "$log"
        _services_stop_pid "$pid" kafka KILL || true
        rm -f "$SERVICES_DIR/kafka.pid"
        return 1
    fi
    export CHATD_KAFKA_BROKERS=127.0.0.1:$port
    export CHATD_KAFKA_TOPIC=$topic
}

# _services_kafka_config DIR PORT CONTROLLER_PORT: the broker's server.properties.
# One node, replication factor 1 everywhere, no group join delay, and small
# thread pools and buffers for a 2-core machine.
_services_kafka_config() {
    cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$3
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$1/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=4194304
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.segment.bytes=67108864
EOF
}

# services_stop_kafka: SIGTERM (a controlled shutdown), SIGKILL after
# SERVICES_TIMEOUT. Keeps ports and data for services_start_kafka.
services_stop_kafka() {
    [[ -n "${SERVICES_DIR:-}" && -f "$SERVICES_DIR/kafka.pid" ]] || return 0
    kill -CONT "$(cat "$SERVICES_DIR/kafka.pid")" 2>/dev/null || true
    _services_stop_pid "$(cat "$SERVICES_DIR/kafka.pid")" kafka || return 1
    rm -f "$SERVICES_DIR/kafka.pid"
}

# services_kill_kafka: SIGKILL, as a crash: the next start recovers its log.
services_kill_kafka() {
    [[ -n "${SERVICES_DIR:-}" && -f "$SERVICES_DIR/kafka.pid" ]] || return 0
    _services_stop_pid "$(cat "$SERVICES_DIR/kafka.pid")" kafka KILL || return 1
    rm -f "$SERVICES_DIR/kafka.pid"
}

# services_restart_kafka: start again after a stop or a kill (same ports, same log
# directory, same topic); stops it first if it runs. Waits for the leaders again.
services_restart_kafka() {
    local t
    read -r -a t <"$SERVICES_DIR/kafka.topic"
    services_stop_kafka && services_start_kafka --topic "${t[0]}" --partitions "${t[1]}"
}

# services_pause_kafka / services_resume_kafka: SIGSTOP / SIGCONT (a hung broker).
services_pause_kafka() {
    kill -STOP "$(cat "$SERVICES_DIR/kafka.pid")"
}
services_resume_kafka() {
    kill -CONT "$(cat "$SERVICES_DIR/kafka.pid")"
}

# services_broker_bin: prints the path of chatd-mockbroker for SERVICES_BUILD_MODE.
services_broker_bin() {
    echo "$_SERVICES_ROOT/build/$SERVICES_BUILD_MODE/deploy/mockbroker/chatd-mockbroker"
}

# services_start_broker [MOCKBROKER ARGS...]: starts chatd-mockbroker (librdkafka
# mock cluster; build it first with scons) with its bootstrap file and control
# socket in $SERVICES_DIR, and waits for the bootstrap file (SERVICES_TIMEOUT).
# Arguments go to the broker; without any it gets "--topic chat --partitions 8".
# The mock picks random ports, so unlike postgres and redis it has no restart:
# stop it and start a new one (all messages are lost; it keeps memory only).
# Exports CHATD_KAFKA_BROKERS (bootstrap.servers list) and CHATD_KAFKA_CONTROL
# (control socket path; see services_broker_ctl).
services_start_broker() {
    services_init || return 1
    local bin pid boot=$SERVICES_DIR/broker.bootstrap ctl=$SERVICES_DIR/broker.ctl
    local log=$SERVICES_DIR/broker.log
    bin=$(services_broker_bin)
    if [[ ! -x "$bin" ]]; then
        _services_err "$bin not built (run: scons -Q mode=$SERVICES_BUILD_MODE)"
        return 1
    fi
    if [[ -f "$SERVICES_DIR/broker.pid" ]] && kill -0 "$(cat "$SERVICES_DIR/broker.pid")" 2>/dev/null; then
        _services_err "broker already running (pid $(cat "$SERVICES_DIR/broker.pid"))"
        return 1
    fi
    rm -f "$boot"
    local args=("$@")
    if ((${#args[@]} == 0)); then
        args=(--topic chat --partitions 8)
    fi
    "$bin" "${args[@]}" --bootstrap-file "$boot" --control "$ctl" \
        >/dev/null 2>>"$log" </dev/null &
    pid=$!
    echo "$pid" >"$SERVICES_DIR/broker.pid"
    if ! _services_wait_until "$SERVICES_TIMEOUT" "$pid" "broker" test -s "$boot"; then
        _services_log_tail "$log"
        _services_stop_pid "$pid" broker || true
        rm -f "$SERVICES_DIR/broker.pid"
        return 1
    fi
    export CHATD_KAFKA_BROKERS
    CHATD_KAFKA_BROKERS=$(head -n 1 "$boot")
    export CHATD_KAFKA_CONTROL=$ctl
}

# services_stop_broker: SIGTERM (the broker removes its control socket), SIGKILL
# after SERVICES_TIMEOUT; removes the bootstrap file, which would name dead ports.
# The broker exits 0 on SIGTERM; when it was started from this shell and exits
# otherwise (a crash, or a leak report under ASan) this prints its log tail and
# returns 1, so services_stop_all keeps SERVICES_DIR for inspection.
services_stop_broker() {
    [[ -n "${SERVICES_DIR:-}" && -f "$SERVICES_DIR/broker.pid" ]] || return 0
    _services_stop_pid "$(cat "$SERVICES_DIR/broker.pid")" broker || return 1
    rm -f "$SERVICES_DIR/broker.pid" "$SERVICES_DIR/broker.bootstrap" "$SERVICES_DIR/broker.ctl"
    if [[ "$_SERVICES_LAST_STATUS" != 0 && "$_SERVICES_LAST_STATUS" != 127 ]]; then
        _services_err "broker exited with status $_SERVICES_LAST_STATUS"
        _services_log_tail "$SERVICES_DIR/broker.log"
        return 1
    fi
}

# services_broker_ctl WORD...: sends one command line to the running broker's
# control socket (e.g. `services_broker_ctl down 1`), prints the reply line, and
# returns 0 only if the reply starts with "ok". Needs python3 (as SCons does).
services_broker_ctl() {
    local ctl=${CHATD_KAFKA_CONTROL:-${SERVICES_DIR:-}/broker.ctl}
    python3 - "$ctl" "$*" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
    s.sendall(sys.argv[2].encode() + b"\n")
    reply = s.makefile().readline().rstrip("\n")
except OSError as e:
    print("error control socket %s: %s" % (sys.argv[1], e))
    sys.exit(1)
print(reply)
sys.exit(0 if reply.startswith("ok") else 1)
EOF
}

# services_stop_all: stops the brokers (mock and real), Redis and PostgreSQL
# (each: polite signal, SIGKILL after SERVICES_TIMEOUT), then removes SERVICES_DIR
# if services_init made it, and unsets the exported variables. Safe to call twice or with nothing started.
services_stop_all() {
    local rc=0
    if [[ -z "${SERVICES_DIR:-}" ]]; then
        return 0
    fi
    services_stop_broker || rc=1
    services_stop_kafka || rc=1
    services_stop_redis || rc=1
    services_stop_postgres || rc=1
    if ((rc == 0)) && [[ -f "$SERVICES_DIR/.chatd-services" ]]; then
        rm -rf "$SERVICES_DIR"
    elif ((rc != 0)); then
        _services_err "something did not stop; keeping $SERVICES_DIR for inspection"
    fi
    unset SERVICES_DIR CHATD_PG_DSN CHATD_PG_PORT CHATD_REDIS_URL CHATD_REDIS_PORT \
        CHATD_KAFKA_BROKERS CHATD_KAFKA_CONTROL
    return "$rc"
}

# services_pid NAME: prints the pid of the running service NAME (postgres, redis,
# kafka, or broker for the mock) and succeeds; fails, printing nothing, when it
# was not started here or its process is gone (e.g. killed).
services_pid() {
    local f
    case $1 in
    postgres) f=${SERVICES_DIR:-}/pg/postmaster.pid ;;
    redis|kafka|broker) f=${SERVICES_DIR:-}/$1.pid ;;
    *) _services_err "services_pid: no service \"$1\""; return 1 ;;
    esac
    [[ -n "${SERVICES_DIR:-}" && -f "$f" ]] || return 1
    local pid
    pid=$(head -n 1 "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}
