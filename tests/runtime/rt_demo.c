/*
 * rt-demo: runs the demo tree (demo_tree.h) with fault injection for a few
 * seconds and prints what happens: faults logged as they fire, supervisors
 * restarting children, and once a second the counters of every actor.
 *
 *   rt-demo [--seconds N] [--faults SPEC] [--seed N] [--log-level LEVEL]
 *
 * Exits 0 when the tree is still up at the end and items kept flowing.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/log.h"
#include "runtime/rt.h"
#include "tests/runtime/demo_tree.h"

#define DEFAULT_FAULTS "seed=42; crash:worker,p=0.01; drop:sink,p=0.01; " \
                       "delay:worker,ms=30,p=0.005; crash:source.init,p=0.3,after=1; " \
                       "crash:monitor,every=4"

static void
on_stop(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_shutdown(w->data);
}

typedef struct demo_args {
    double seconds;
    const char *faults;
    uint64_t seed;
    rt_log_level level;
} demo_args;

/* Returns -1 to go on, else the exit status. */
static int
parse_args(int argc, char **argv, demo_args *a)
{
    const char *env = getenv("CHATD_FAULTS");
    *a = (demo_args){ .seconds = 5, .faults = env ? env : DEFAULT_FAULTS,
                      .level = RT_LOG_WARN };
    static const struct option opts[] = {
        { "seconds", required_argument, NULL, 's' },
        { "faults", required_argument, NULL, 'f' },
        { "seed", required_argument, NULL, 'S' },
        { "log-level", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': a->seconds = atof(optarg); break;
        case 'f': a->faults = optarg; break;
        case 'S': a->seed = strtoull(optarg, NULL, 10); break;
        case 'l':
            if (!rt_log_parse_level(optarg, &a->level)) {
                fprintf(stderr, "rt-demo: unknown log level \"%s\"\n", optarg);
                return 2;
            }
            break;
        default:
            printf("usage: rt-demo [--seconds N] [--faults SPEC] [--seed N] "
                   "[--log-level debug|info|warn|error]\n  default faults: %s\n",
                   DEFAULT_FAULTS);
            return c == 'h' ? 0 : 2;
        }
    }
    return -1;
}

int
main(int argc, char **argv)
{
    demo_args args;
    int st = parse_args(argc, argv, &args);
    if (st >= 0)
        return st;
    double seconds = args.seconds;
    const char *faults = args.faults;
    rt_log_set_level(args.level);

    char err[256];
    rt_config cfg = { .faults = faults, .fault_seed = args.seed };
    rt_runtime *rt = rt_create(&cfg, err, sizeof(err));
    if (!rt) {
        fprintf(stderr, "rt-demo: %s\n", err);
        return 2;
    }
    rt_handle_signals(rt);
    printf("rt-demo: %.1f s with faults \"%s\"\n", seconds, faults);

    demo_config dc = { .tick_ms = 2, .report_ms = 1000, .print = true };
    demo_totals totals = {0};
    if (!demo_start(rt, &dc, &totals)) {
        fprintf(stderr, "rt-demo: the tree did not start\n");
        rt_destroy(rt);
        return 1;
    }
    ev_timer stop;
    ev_timer_init(&stop, on_stop, seconds, 0.);
    stop.data = rt;
    ev_timer_start(rt_loop(rt), &stop);

    int status = rt_run(rt);
    ev_timer_stop(rt_loop(rt), &stop);
    printf("end: produced=%" PRIu64 " delivered=%" PRIu64 " lost=%" PRIu64 "\n",
           totals.produced, totals.delivered, totals.gaps);
    demo_print_stats(rt);
    if (status != 0)
        printf("rt-demo: the tree failed: %s\n", rt_last_failure(rt));
    rt_destroy(rt);
    return status == 0 && totals.delivered > 0 ? 0 : 1;
}
