/* The demo tree under injected faults for two seconds: actors crash and are
 * restarted, and the tree keeps working. */
#include "tests/runtime/rt_test.h"

#include "tests/runtime/demo_tree.h"

static void
on_stop(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_shutdown(w->data);
}

static void
test_tree_survives_faults(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("seed=7; crash:worker,p=0.01; drop:sink,p=0.01; "
                                  "delay:worker,ms=20,p=0.005; crash:sink,every=150; "
                                  "crash:source.init,after=1,p=0.3");
    demo_config cfg = { .tick_ms = 2, .report_ms = 500 };
    demo_totals t = {0};
    rt_id root = demo_start(rt, &cfg, &t);
    assert_true(root != 0);

    ev_timer stop;
    ev_timer_init(&stop, on_stop, 2.0, 0.);
    stop.data = rt;
    ev_timer_start(rt_loop(rt), &stop);
    /* the tree ends only through the shutdown: 0 means nobody gave up */
    assert_int_equal(rt_run(rt), 0);
    ev_timer_stop(rt_loop(rt), &stop);

    const rt_stats *worker = rt_stats_get(rt, "worker");
    const rt_stats *sink = rt_stats_get(rt, "sink");
    print_message("produced=%llu delivered=%llu lost=%llu worker crashes=%llu "
                  "sink crashes=%llu faults=%llu\n",
                  (unsigned long long)t.produced, (unsigned long long)t.delivered,
                  (unsigned long long)t.gaps, (unsigned long long)worker->crashes,
                  (unsigned long long)sink->crashes,
                  (unsigned long long)rt_faults_fired(rt_faults_of(rt), RT_FAULT_NONE));
    /* faults happened and were acted upon */
    assert_true(worker->crashes >= 1);
    assert_true(sink->crashes >= 1);
    assert_true(rt_faults_fired(rt_faults_of(rt), RT_FAULT_DROP) >= 1);
    /* rest_for_one: every worker crash restarted worker and sink (but for
     * one still in its backoff when the run ended) */
    assert_true(worker->restarts + 1 >= worker->crashes);
    assert_true(worker->restarts <= worker->crashes);
    assert_true(sink->restarts + 2 >= worker->crashes + sink->crashes);
    /* and the work went on: most items got through */
    assert_true(t.produced > 300);
    assert_true(t.delivered * 10 >= t.produced * 6);
    assert_true(t.reports >= 3);
    assert_int_equal(rt_actor_count(rt), 0);
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_survives_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
