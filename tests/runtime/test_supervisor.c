/* Supervisor rules: strategies, restart types, intensity, failed starts,
 * ordered shutdown with timeouts, backoff and nested escalation. */
#include "tests/runtime/rt_test.h"

#include <string.h>

#define CHILD(n, r) { .name = (n), .actor = &probe_spec, .restart = (r) }

static rt_sup_spec
spec_of(rt_strategy st, const rt_child_spec *children, size_t n)
{
    return (rt_sup_spec){ .strategy = st, .intensity = 10, .period_ms = 5000,
                          .children = children, .nchildren = n };
}

static rt_id
start(rt_runtime *rt, const rt_sup_spec *spec)
{
    int err = 0;
    rt_id id = rt_sup_start(rt, 0, spec, "root", &err);
    assert_true(id != 0);
    assert_int_equal(err, RT_OK);
    return id;
}

static void
test_start_order(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   CHILD("c", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 3);
    start(rt, &spec);
    journal_expect("init a", "init b", "init c", NULL);
    assert_int_equal(rt_actor_count(rt), 4);
    rt_test_close(rt);
}

static void
test_one_for_one(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   CHILD("c", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 3);
    start(rt, &spec);
    rt_id a = rt_whereis(rt, "a"), b = rt_whereis(rt, "b"), c = rt_whereis(rt, "c");
    journal_reset();

    assert_int_equal(rt_test_send(rt, "b", PROBE_CRASH), RT_OK);
    rt_id b2 = rt_test_wait_restart(rt, "b", b, 1000);
    assert_true(b2 != 0 && b2 != b);
    assert_int_equal(rt_whereis(rt, "a"), a);
    assert_int_equal(rt_whereis(rt, "c"), c);
    journal_expect("term b crash", "init b", NULL);
    assert_int_equal(rt_stats_get(rt, "b")->restarts, 1);
    assert_int_equal(rt_stats_get(rt, "b")->crashes, 1);
    assert_int_equal(rt_stats_get(rt, "a")->restarts, 0);
    rt_test_close(rt);
}

static void
test_one_for_all(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   CHILD("c", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ALL, kids, 3);
    start(rt, &spec);
    rt_id a = rt_whereis(rt, "a"), b = rt_whereis(rt, "b"), c = rt_whereis(rt, "c");
    journal_reset();

    rt_test_send(rt, "b", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "c", c, 1000));
    /* b crashed; the others are stopped newest first, then all start in order */
    journal_expect("term b crash", "shutdown c", "term c shutdown", "shutdown a",
                   "term a shutdown", "init a", "init b", "init c", NULL);
    assert_true(rt_whereis(rt, "a") != a);
    assert_true(rt_whereis(rt, "b") != b);
    rt_test_close(rt);
}

static void
test_rest_for_one(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   CHILD("c", RT_PERMANENT), CHILD("d", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_REST_FOR_ONE, kids, 4);
    start(rt, &spec);
    rt_id a = rt_whereis(rt, "a"), d = rt_whereis(rt, "d");
    journal_reset();

    rt_test_send(rt, "b", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "d", d, 1000));
    journal_expect("term b crash", "shutdown d", "term d shutdown", "shutdown c",
                   "term c shutdown", "init b", "init c", "init d", NULL);
    assert_int_equal(rt_whereis(rt, "a"), a);
    rt_test_close(rt);
}

static void
test_restart_types(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("perm", RT_PERMANENT), CHILD("trans", RT_TRANSIENT),
                                   CHILD("temp", RT_TEMPORARY), CHILD("trans2", RT_TRANSIENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 4);
    start(rt, &spec);
    rt_id perm = rt_whereis(rt, "perm"), trans = rt_whereis(rt, "trans");
    rt_id temp = rt_whereis(rt, "temp"), trans2 = rt_whereis(rt, "trans2");

    /* permanent: restarted even after a normal exit */
    rt_test_send(rt, "perm", PROBE_STOP);
    assert_true(rt_test_wait_restart(rt, "perm", perm, 1000));

    /* transient: not restarted after a normal exit ... */
    rt_test_send(rt, "trans", PROBE_STOP);
    assert_true(rt_test_wait_dead(rt, trans, 1000));
    rt_test_run_for(rt, 50);
    assert_int_equal(rt_whereis(rt, "trans"), 0);
    /* ... but after a crash */
    rt_test_send(rt, "trans2", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "trans2", trans2, 1000));

    /* temporary: never restarted, even after a crash */
    rt_test_send(rt, "temp", PROBE_CRASH);
    assert_true(rt_test_wait_dead(rt, temp, 1000));
    rt_test_run_for(rt, 50);
    assert_int_equal(rt_whereis(rt, "temp"), 0);
    assert_int_equal(rt_stats_get(rt, "temp")->restarts, 0);
    assert_int_equal(rt_stats_get(rt, "trans")->restarts, 0);
    assert_int_equal(rt_stats_get(rt, "trans2")->restarts, 1);
    assert_int_equal(rt_stats_get(rt, "perm")->restarts, 1);
    rt_test_close(rt);
}

static void
test_temporary_removed_by_group_restart(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("temp", RT_TEMPORARY),
                                   CHILD("c", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ALL, kids, 3);
    start(rt, &spec);
    rt_id c = rt_whereis(rt, "c");
    journal_reset();

    rt_test_send(rt, "a", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "c", c, 1000));
    journal_expect("term a crash", "shutdown c", "term c shutdown", "shutdown temp",
                   "term temp shutdown", "init a", "init c", NULL);
    assert_int_equal(rt_whereis(rt, "temp"), 0);
    rt_test_close(rt);
}

static void
test_intensity_exceeded(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   CHILD("c", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 3);
    spec.intensity = 2;
    spec.period_ms = 10000;
    rt_id root = start(rt, &spec);

    for (int i = 0; i < 2; i++) {
        rt_id b = rt_whereis(rt, "b");
        rt_test_send(rt, "b", PROBE_CRASH);
        assert_true(rt_test_wait_restart(rt, "b", b, 1000));
    }
    journal_reset();
    /* the third restart within the period is one too many */
    rt_test_send(rt, "b", PROBE_CRASH);
    assert_int_equal(rt_run(rt), 1);
    assert_false(rt_alive(rt, root));
    journal_expect("term b crash", "shutdown c", "term c shutdown", "shutdown a",
                   "term a shutdown", NULL);
    assert_non_null(strstr(rt_last_failure(rt), "max restart intensity"));
    assert_non_null(strstr(rt_last_failure(rt), "root#"));
    assert_int_equal(rt_actor_count(rt), 0);
    rt_test_close(rt);
}

static void
test_intensity_window_slides(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 1);
    spec.intensity = 1;
    spec.period_ms = 100;
    rt_id root = start(rt, &spec);

    /* one restart per period is allowed, forever */
    for (int i = 0; i < 4; i++) {
        rt_id a = rt_whereis(rt, "a");
        rt_test_send(rt, "a", PROBE_CRASH);
        assert_true(rt_test_wait_restart(rt, "a", a, 1000));
        rt_test_run_for(rt, 130);
    }
    assert_true(rt_alive(rt, root));
    rt_test_close(rt);
}

static void
test_failed_start_aborts(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    probe_cfg bad = { .fail_init = -1 };
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
                                   { .name = "c", .actor = &probe_spec, .arg = &bad },
                                   CHILD("d", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 4);
    int err = 0;
    assert_int_equal(rt_sup_start(rt, 0, &spec, "root", &err), 0);
    assert_int_equal(err, RT_ERR);
    rt_test_run_for(rt, 20);
    /* c's failure is reported by its own terminate; b and a end newest first;
     * d never starts */
    journal_expect("init a", "init b", "init c", "term c crash", "term b shutdown",
                   "term a shutdown", NULL);
    assert_int_equal(rt_actor_count(rt), 0);
    assert_int_equal(rt_whereis(rt, "root"), 0);
    assert_int_equal(rt_whereis(rt, "a"), 0);
    rt_test_close(rt);
}

static void
test_shutdown_order_and_timeout(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    probe_cfg slow = { .shutdown_ms = 40 }, stuck = { .shutdown_ms = -1 };
    const rt_child_spec kids[] = {
        CHILD("a", RT_PERMANENT),
        { .name = "slow", .actor = &probe_spec, .arg = &slow },
        { .name = "stuck", .actor = &probe_spec, .arg = &stuck, .shutdown_ms = 60 },
        { .name = "brutal", .actor = &probe_spec, .shutdown_ms = RT_SHUTDOWN_BRUTAL },
    };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 4);
    start(rt, &spec);
    journal_reset();

    ev_now_update(rt_loop(rt));
    double t0 = rt_now_ms(rt);
    rt_shutdown(rt);
    assert_int_equal(rt_run(rt), 0);
    ev_now_update(rt_loop(rt));
    double took = rt_now_ms(rt) - t0;

    /* newest first; brutal gets no shutdown call; stuck is killed after its
     * 60 ms; slow drains for 40 ms and exits by itself */
    journal_expect("term brutal killed", "shutdown stuck", "term stuck killed",
                   "shutdown slow", "term slow shutdown", "shutdown a", "term a shutdown",
                   NULL);
    assert_true(took >= 95);
    assert_int_equal(rt_actor_count(rt), 0);
    rt_test_close(rt);
}

static void
test_nested_escalation(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec inner_kids[] = { CHILD("y", RT_PERMANENT), CHILD("z", RT_PERMANENT) };
    rt_sup_spec inner = spec_of(RT_ONE_FOR_ONE, inner_kids, 2);
    inner.intensity = 1;
    const rt_child_spec kids[] = {
        CHILD("x", RT_PERMANENT),
        { .name = "inner", .sup = &inner, .restart = RT_PERMANENT },
    };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 2);
    rt_id root = start(rt, &spec);
    journal_expect("init x", "init y", "init z", NULL);
    rt_id x = rt_whereis(rt, "x"), in = rt_whereis(rt, "inner"), y = rt_whereis(rt, "y");

    rt_test_send(rt, "y", PROBE_CRASH);
    y = rt_test_wait_restart(rt, "y", y, 1000);
    assert_true(y);
    journal_reset();
    /* second crash: inner exceeds its intensity, stops z, and fails; root
     * restarts inner, which starts y and z afresh */
    rt_test_send(rt, "y", PROBE_CRASH);
    rt_id in2 = rt_test_wait_restart(rt, "inner", in, 1000);
    assert_true(in2 && in2 != in);
    journal_expect("term y crash", "shutdown z", "term z shutdown", "init y", "init z", NULL);
    assert_int_equal(rt_whereis(rt, "x"), x);
    assert_true(rt_alive(rt, root));
    assert_int_equal(rt_stats_get(rt, "inner")->crashes, 1);
    assert_int_equal(rt_stats_get(rt, "inner")->restarts, 1);

    /* shutting the root down stops the nested tree depth first, newest first */
    journal_reset();
    rt_shutdown(rt);
    assert_int_equal(rt_run(rt), 0);
    journal_expect("shutdown z", "term z shutdown", "shutdown y", "term y shutdown",
                   "shutdown x", "term x shutdown", NULL);
    rt_test_close(rt);
}

static void
test_backoff(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_child_spec kids[] = { CHILD("a", RT_PERMANENT) };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 1);
    spec.backoff_min_ms = 30;
    spec.backoff_max_ms = 70;
    start(rt, &spec);

    double expect[] = { 30, 60, 70 };   /* doubling, capped */
    for (int i = 0; i < 3; i++) {
        rt_id a = rt_whereis(rt, "a");
        ev_now_update(rt_loop(rt));
        double t0 = rt_now_ms(rt);
        rt_test_send(rt, "a", PROBE_CRASH);
        assert_true(rt_test_wait_restart(rt, "a", a, 1000));
        ev_now_update(rt_loop(rt));
        double took = rt_now_ms(rt) - t0;
        assert_true(took >= expect[i] - 2);
        assert_true(took < expect[i] + 200);
    }
    rt_test_close(rt);
}

static void
test_failed_restart_retried(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    probe_cfg cfg = { 0 };
    const rt_child_spec kids[] = { { .name = "a", .actor = &probe_spec, .arg = &cfg } };
    rt_sup_spec spec = spec_of(RT_ONE_FOR_ONE, kids, 1);
    spec.intensity = 5;
    spec.backoff_min_ms = 5;
    rt_id root = start(rt, &spec);
    rt_id a = rt_whereis(rt, "a");

    cfg.fail_init = 2;      /* the next two starts fail */
    rt_test_send(rt, "a", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "a", a, 2000));
    assert_int_equal(cfg.fails_done, 2);
    /* three restart attempts, all counted */
    assert_int_equal(rt_stats_get(rt, "a")->restarts, 3);
    assert_true(rt_alive(rt, root));

    /* a start that keeps failing exhausts the intensity */
    cfg.fail_init = -1;
    a = rt_whereis(rt, "a");
    rt_test_send(rt, "a", PROBE_CRASH);
    assert_int_equal(rt_run(rt), 1);
    assert_false(rt_alive(rt, root));
    rt_test_close(rt);
}

static void
test_group_restart_when_other_crashes(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    probe_cfg stuck = { .shutdown_ms = -1 };
    const rt_child_spec kids[] = {
        CHILD("a", RT_PERMANENT), CHILD("b", RT_PERMANENT),
        { .name = "c", .actor = &probe_spec, .arg = &stuck, .shutdown_ms = 100 },
    };
    rt_sup_spec spec = spec_of(RT_REST_FOR_ONE, kids, 3);
    rt_id root = start(rt, &spec);
    rt_id c = rt_whereis(rt, "c");

    /* b crashes; while c is being stopped, a (before the group) crashes too:
     * the group widens to a, b, c */
    rt_test_send(rt, "b", PROBE_CRASH);
    rt_test_run_for(rt, 10);
    rt_test_send(rt, "a", PROBE_CRASH);
    assert_true(rt_test_wait_restart(rt, "c", c, 2000));
    rt_test_run_for(rt, 10);
    assert_true(rt_alive(rt, rt_whereis(rt, "a")));
    assert_true(rt_alive(rt, rt_whereis(rt, "b")));
    assert_int_equal(rt_stats_get(rt, "a")->restarts, 1);
    assert_int_equal(rt_stats_get(rt, "c")->crashes, 1);    /* killed on timeout */
    assert_true(rt_alive(rt, root));
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_order),
        cmocka_unit_test(test_one_for_one),
        cmocka_unit_test(test_one_for_all),
        cmocka_unit_test(test_rest_for_one),
        cmocka_unit_test(test_restart_types),
        cmocka_unit_test(test_temporary_removed_by_group_restart),
        cmocka_unit_test(test_intensity_exceeded),
        cmocka_unit_test(test_intensity_window_slides),
        cmocka_unit_test(test_failed_start_aborts),
        cmocka_unit_test(test_shutdown_order_and_timeout),
        cmocka_unit_test(test_nested_escalation),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_failed_restart_retried),
        cmocka_unit_test(test_group_restart_when_other_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
