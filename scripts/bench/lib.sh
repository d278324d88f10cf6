# scripts/bench/lib.sh: what the benchmark scripts share (sourced by run.sh
# and compare.sh, which set -euo pipefail and cd to the repository).
#
#   bench_start_chatd DIR TAG [scripts/run options...]
#       starts a 2-node release cluster (scripts/run) in the background, its
#       output in DIR/TAG.out and DIR/TAG.err, and waits (600 s at most: the
#       first build) for its "ready" line. Sets bench_urls (U0,U1), bench_pids
#       (P0,P1), bench_logdir (the services' directory) and bench_runpid.
#       Exits 1 with the log tail when the cluster does not become ready.
#   bench_stop_chatd     SIGTERM to scripts/run (the nodes drain, services stop)
#   bench_steal          prints "steal total" jiffies of all CPUs (/proc/stat)

bench_runpid=""
bench_start_chatd() {
    local dir=$1 tag=$2 deadline
    shift 2
    scripts/run --nodes 2 --mode release "$@" >"$dir/$tag.out" 2>"$dir/$tag.err" &
    bench_runpid=$!
    deadline=$((SECONDS + 600))
    until grep -q '^ready ' "$dir/$tag.out"; do
        if ! kill -0 "$bench_runpid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "bench: the cluster did not become ready:" >&2
            tail -n 30 "$dir/$tag.err" >&2
            exit 1
        fi
        sleep 0.5
    done
    bench_urls=$(sed -n 's/^ready //p' "$dir/$tag.out")
    bench_pids=$(sed -n 's/^node[0-9]*: pid \([0-9]*\) .*/\1/p' "$dir/$tag.err" | paste -sd, -)
    bench_logdir=$(dirname "$(sed -n 's/^node0: .* log \(.*\)$/\1/p' "$dir/$tag.err")")
    echo "bench: chatd ready $bench_urls (pids $bench_pids)" >&2
}

bench_stop_chatd() {
    if [[ -n $bench_runpid ]]; then
        kill -TERM "$bench_runpid" 2>/dev/null || true
        wait "$bench_runpid" 2>/dev/null || true
        bench_runpid=""
    fi
}

bench_steal() {
    awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat
}
