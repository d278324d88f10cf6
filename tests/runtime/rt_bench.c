/*
 * rt-bench: times the runtime's hot path, to compare changes to it. Not a
 * test: it asserts nothing and only prints figures.
 *
 *   rt-bench [--actors N] [--messages M] [--rounds R]
 *
 * With N sink actors alive (default 1000), it measures
 *   lookup   rt_alive() on the sinks' ids, M times (the actor table alone);
 *   send     M rt_send() calls from outside the loop, in bursts that fit the
 *            mailboxes, each burst then drained (the time of the sends only);
 *   through  M rt_send() + handle through the loop: the bursts and the loop
 *            iterations that hand every message to its sink's handler.
 * Each figure is the best of R rounds, in ns per message.
 */
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/log.h"
#include "runtime/rt.h"

enum { BENCH_T_PING = RT_T_TEST_BASE };

static uint64_t handled;

static int
sink_handle(rt_actor *self, const proto_env *msg)
{
    (void)self;
    (void)msg;
    handled++;
    return RT_OK;
}

static const rt_actor_spec sink_spec = {
    .name = "sink",
    .handle = sink_handle,
};

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
drain(rt_runtime *rt, uint64_t until)
{
    while (handled < until)
        ev_run(rt_loop(rt), EVRUN_NOWAIT);
}

/* Sends m messages round-robin over the sinks in bursts of one message per
 * sink at most RT_MAILBOX_DEFAULT / 2 deep; returns the ns the sends took,
 * and in *total the ns of sends plus draining. */
static double
send_bursts(rt_runtime *rt, const rt_id *ids, size_t n, uint64_t m, double *total)
{
    uint64_t burst = (uint64_t)n * (RT_MAILBOX_DEFAULT / 2);
    double sending = 0;
    double start = now_ns();
    size_t next = 0;
    for (uint64_t sent = 0; sent < m;) {
        uint64_t k = m - sent < burst ? m - sent : burst;
        double t0 = now_ns();
        for (uint64_t i = 0; i < k; i++) {
            if (rt_send(rt, 0, ids[next], BENCH_T_PING, i, NULL, 0) != RT_OK) {
                fprintf(stderr, "rt-bench: a send failed\n");
                exit(1);
            }
            next = next + 1 == n ? 0 : next + 1;
        }
        sending += now_ns() - t0;
        sent += k;
        drain(rt, handled + k);
    }
    *total = now_ns() - start;
    return sending;
}

typedef struct bench_args {
    size_t nactors;
    uint64_t nmsg;
    int rounds;
} bench_args;

static bool
parse_args(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){ .nactors = 1000, .nmsg = 1000000, .rounds = 5 };
    static const struct option opts[] = {
        { "actors", required_argument, NULL, 'a' },
        { "messages", required_argument, NULL, 'm' },
        { "rounds", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a': a->nactors = strtoull(optarg, NULL, 10); break;
        case 'm': a->nmsg = strtoull(optarg, NULL, 10); break;
        case 'r': a->rounds = atoi(optarg); break;
        default: return false;
        }
    }
    return a->nactors > 0 && a->nmsg > 0 && a->rounds > 0;
}

int
main(int argc, char **argv)
{
    bench_args args;
    if (!parse_args(argc, argv, &args)) {
        fprintf(stderr, "usage: rt-bench [--actors N] [--messages M] [--rounds R]\n");
        return 2;
    }
    size_t nactors = args.nactors;
    uint64_t nmsg = args.nmsg;
    int rounds = args.rounds;
    rt_log_set_level(RT_LOG_ERROR);   /* rt_destroy logs each kill at WARN */

    char err[256];
    rt_runtime *rt = rt_create(NULL, err, sizeof(err));
    if (!rt) {
        fprintf(stderr, "rt-bench: %s\n", err);
        return 1;
    }
    rt_id *ids = calloc(nactors, sizeof(*ids));
    if (!ids)
        return 1;
    for (size_t i = 0; i < nactors; i++)
        if (!(ids[i] = rt_spawn(rt, 0, &sink_spec, NULL, NULL, NULL)))
            return 1;

    double best_lookup = 0, best_send = 0, best_through = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        uint64_t alive = 0;
        for (uint64_t i = 0; i < nmsg; i++)
            alive += rt_alive(rt, ids[i % nactors]);
        double lookup = now_ns() - t0;
        if (alive != nmsg)
            return 1;
        double through;
        double send = send_bursts(rt, ids, nactors, nmsg, &through);
        if (r == 0 || lookup < best_lookup)
            best_lookup = lookup;
        if (r == 0 || send < best_send)
            best_send = send;
        if (r == 0 || through < best_through)
            best_through = through;
    }
    printf("rt-bench: %zu actors, %" PRIu64 " messages, best of %d rounds\n", nactors, nmsg,
           rounds);
    printf("  lookup  %7.1f ns per rt_alive\n", best_lookup / (double)nmsg);
    printf("  send    %7.1f ns per rt_send\n", best_send / (double)nmsg);
    printf("  through %7.1f ns per rt_send + handle through the loop\n",
           best_through / (double)nmsg);

    free(ids);
    rt_destroy(rt);
    return 0;
}
