/* Fault injection: the spec parser (what it accepts, what it refuses and how
 * it says so), the injector's schedule (seeded determinism, p, every, after,
 * max, matching), and what injected faults do to actors in a runtime. */
#include "tests/runtime/rt_test.h"

#include <string.h>

#define CHECKS 10000

/* --- parsing ----------------------------------------------------------------- */

static rt_faults *
parse_ok(const char *spec)
{
    rt_faults *f = NULL;
    char err[256] = "";
    int r = rt_faults_parse(spec, &f, err, sizeof(err));
    if (r != 0)
        print_error("spec \"%s\": %s\n", spec ? spec : "(null)", err);
    assert_int_equal(r, 0);
    assert_non_null(f);
    return f;
}

static void
expect_rules(const char *spec, size_t n)
{
    rt_faults *f = parse_ok(spec);
    assert_int_equal(rt_faults_rule_count(f), n);
    rt_faults_free(f);
}

/* Asserts spec is refused with -1, *out set to NULL and an error message
 * holding each of the given substrings. ASan proves nothing leaks. */
static void
expect_bad(const char *spec, const char *want1, const char *want2)
{
    rt_faults *f = (rt_faults *)&f;     /* a non-NULL sentinel */
    char err[256] = "";
    int r = rt_faults_parse(spec, &f, err, sizeof(err));
    if (r != -1 || !strstr(err, want1) || (want2 && !strstr(err, want2)))
        print_error("spec \"%s\": r=%d err=\"%s\", want \"%s\" \"%s\"\n", spec, r, err,
                    want1, want2 ? want2 : "");
    assert_int_equal(r, -1);
    assert_null(f);
    assert_non_null(strstr(err, want1));
    if (want2)
        assert_non_null(strstr(err, want2));
}

static void
test_parse_valid(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    expect_rules(NULL, 0);
    expect_rules("", 0);
    expect_rules(" ; ;; ", 0);
    expect_rules("seed=7", 0);
    expect_rules("crash:a", 1);
    expect_rules("delay:a", 1);
    expect_rules("drop:a", 1);
    expect_rules("crash:*", 1);
    expect_rules("crash:a.init", 1);
    expect_rules("crash:a.commit", 1);
    expect_rules("delay:a.flush,ms=0", 1);
    expect_rules("drop:a.recv", 1);
    expect_rules("crash:a,p=0", 1);
    expect_rules("crash:a,p=1", 1);
    expect_rules("crash:a,p=0.25,after=3,max=2", 1);
    expect_rules("delay:a,every=1,ms=12.5", 1);
    expect_rules("  crash : store_1 , p=0.5 , max=2 ;  seed=3 ", 1);
    expect_rules("seed=7; crash:store,p=0.01; delay:producer,ms=50,every=20;"
                 " drop:fanout,p=0.05,max=10; crash:consumer.commit,after=3,max=1", 4);

    /* the options mean what they say: ms is the delay handed back, default 100 */
    rt_faults *f = parse_ok("delay:a,ms=12.5; delay:b");
    double d = 0;
    assert_int_equal(rt_faults_check(f, "a", 1, "recv", &d), RT_FAULT_DELAY);
    assert_true(d == 12.5);
    assert_int_equal(rt_faults_check(f, "b", 2, "recv", &d), RT_FAULT_DELAY);
    assert_true(d == 100);
    rt_faults_free(f);

    /* p=0 never fires, p=1 always does */
    f = parse_ok("crash:a,p=0; drop:b,p=1");
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rt_faults_check(f, "a", 1, "recv", &d), RT_FAULT_NONE);
        assert_int_equal(rt_faults_check(f, "b", 2, "recv", &d), RT_FAULT_DROP);
    }
    rt_faults_free(f);
}

static void
test_parse_invalid(void **state)
{
    (void)state;
    expect_bad("boom:a", "unknown action", "boom");
    expect_bad("crash", "not ACTION:ACTOR", NULL);
    expect_bad("crash a,p=1", "not ACTION:ACTOR", NULL);
    expect_bad("crash:a,p=1.5", "1.5", "p");
    expect_bad("crash:a,p=-0.1", "-0.1", "p");
    expect_bad("crash:a,p=x", "\"x\"", "p");
    expect_bad("crash:a,p=", "bad value", "p");
    expect_bad("crash:a,p=nan", "nan", "p");
    expect_bad("crash:a,every=0", "\"0\"", "every");
    expect_bad("crash:a,every=-2", "-2", "every");
    expect_bad("crash:a,every=2x", "2x", "every");
    expect_bad("crash:a,after=x", "\"x\"", "after");
    expect_bad("crash:a,max=0", "\"0\"", "max");
    expect_bad("crash:a,max=99999999999999999999999", "999", "max");
    expect_bad("crash:a,p=0.5,every=2", "p or every", NULL);
    expect_bad("crash:a,ms=5", "\"5\"", "ms");
    expect_bad("drop:a,ms=5", "\"5\"", "ms");
    expect_bad("delay:a,ms=-1", "-1", "ms");
    expect_bad("delay:a,ms=abc", "abc", "ms");
    expect_bad("drop:a.commit", "drop", "commit");
    expect_bad("drop:a.init", "drop", "init");
    expect_bad("crash:a,bogus=1", "unknown option", "bogus");
    expect_bad("crash:a,p", "not KEY=VALUE", "\"p\"");
    expect_bad("crash:", "bad actor name", NULL);
    expect_bad("crash:.init", "bad actor name", NULL);
    expect_bad("crash:a b", "bad actor name", "a b");
    expect_bad("crash:a*", "bad actor name", "a*");
    expect_bad("crash:a.", "bad point name", NULL);
    expect_bad("crash:a.b.c", "bad point name", "b.c");
    expect_bad("crash:a.*", "bad point name", NULL);
    expect_bad("crash:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
               "bad actor name", NULL);
    expect_bad("seed=x", "bad seed", "x");
    expect_bad("seed=", "bad seed", NULL);
    expect_bad("seed=-1", "bad seed", NULL);
    /* one bad rule among good ones fails the whole spec (and frees the good ones) */
    expect_bad("seed=1; crash:a; delay:b,ms=5; drop:c,every=0", "every", NULL);

    /* a runtime refuses to start on a bad spec, saying why */
    char err[256] = "";
    rt_config cfg = { .faults = "crash:a,p=2" };
    assert_null(rt_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "\"2\""));
}

/* --- the schedule -------------------------------------------------------------- */

/* Runs n checks of actor at point into out (1: fired), returns how many fired. */
static int
run_checks(rt_faults *f, const char *actor, const char *point, int n, char *out)
{
    int fired = 0;
    for (int i = 0; i < n; i++) {
        double d;
        bool hit = rt_faults_check(f, actor, 1, point, &d) != RT_FAULT_NONE;
        if (out)
            out[i] = hit;
        fired += hit;
    }
    return fired;
}

static char seq_a[CHECKS], seq_b[CHECKS];

static void
test_deterministic(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    const char *spec = "seed=42; crash:a,p=0.3";
    rt_faults *f1 = parse_ok(spec), *f2 = parse_ok(spec);
    int n1 = run_checks(f1, "a", "recv", CHECKS, seq_a);
    int n2 = run_checks(f2, "a", "recv", CHECKS, seq_b);
    assert_int_equal(n1, n2);
    assert_memory_equal(seq_a, seq_b, CHECKS);
    assert_true(n1 > 2700 && n1 < 3300);

    /* another seed, another sequence */
    rt_faults_reseed(f2, 43);
    run_checks(f2, "a", "recv", CHECKS, seq_b);
    assert_true(memcmp(seq_a, seq_b, CHECKS) != 0);

    /* reseeding restarts the stream: back to the spec's seed, the same again */
    rt_faults_reseed(f2, 42);
    run_checks(f2, "a", "recv", CHECKS, seq_b);
    assert_memory_equal(seq_a, seq_b, CHECKS);
    rt_faults_free(f2);

    /* a spec without seed= reseeded to 42 is the spec with seed=42 */
    f2 = parse_ok("crash:a,p=0.3");
    rt_faults_reseed(f2, 42);
    run_checks(f2, "a", "recv", CHECKS, seq_b);
    assert_memory_equal(seq_a, seq_b, CHECKS);
    rt_faults_free(f2);

    /* rt_config.fault_seed overrides the spec's seed */
    rt_config cfg = { .faults = "seed=9; crash:a,p=0.3", .fault_seed = 42 };
    char err[128];
    rt_runtime *rt = rt_create(&cfg, err, sizeof(err));
    assert_non_null(rt);
    run_checks(rt_faults_of(rt), "a", "recv", CHECKS, seq_b);
    assert_memory_equal(seq_a, seq_b, CHECKS);
    rt_destroy(rt);
    rt_faults_free(f1);
}

static void
test_streams_independent(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    /* b's faults depend only on b's own checks, however a's are interleaved */
    const char *spec = "seed=5; crash:a,p=0.5; drop:b,p=0.2";
    rt_faults *alone = parse_ok(spec), *mixed = parse_ok(spec);
    run_checks(alone, "b", "recv", CHECKS, seq_a);
    for (int i = 0; i < CHECKS; i++) {
        double d;
        run_checks(mixed, "a", "recv", i % 4, NULL);
        seq_b[i] = rt_faults_check(mixed, "b", 2, "recv", &d) == RT_FAULT_DROP;
    }
    assert_memory_equal(seq_a, seq_b, CHECKS);
    rt_faults_free(alone);
    rt_faults_free(mixed);

    /* each rule has a stream of its own: two like rules do not fire alike */
    rt_faults *f = parse_ok("seed=5; crash:a,p=0.5; crash:b,p=0.5");
    run_checks(f, "a", "recv", CHECKS, seq_a);
    run_checks(f, "b", "recv", CHECKS, seq_b);
    assert_true(memcmp(seq_a, seq_b, CHECKS) != 0);
    rt_faults_free(f);
}

static void
test_rate(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        rt_faults *f = parse_ok("crash:a,p=0.1");
        rt_faults_reseed(f, seed);
        int n = run_checks(f, "a", "recv", CHECKS, NULL);
        assert_true(n >= 800 && n <= 1200);
        assert_int_equal(rt_faults_fired(f, RT_FAULT_CRASH), (uint64_t)n);
        rt_faults_free(f);
    }
}

static void
test_every(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    /* every=7: exactly checks 7, 14, 21, ... */
    rt_faults *f = parse_ok("crash:a,every=7");
    run_checks(f, "a", "recv", 1000, seq_a);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(seq_a[i], (i + 1) % 7 == 0);
    rt_faults_free(f);

    /* every=1 and no schedule at all: every check */
    f = parse_ok("crash:a,every=1; drop:b");
    assert_int_equal(run_checks(f, "a", "recv", 100, NULL), 100);
    assert_int_equal(run_checks(f, "b", "recv", 100, NULL), 100);
    rt_faults_free(f);
}

static void
test_after(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    /* after=5: silent for 5 checks, then always */
    rt_faults *f = parse_ok("crash:a,after=5");
    run_checks(f, "a", "recv", 100, seq_a);
    for (int i = 0; i < 100; i++)
        assert_int_equal(seq_a[i], i >= 5);
    rt_faults_free(f);

    /* after=10 with every=4: silent for 10, then every 4th check */
    f = parse_ok("crash:a,after=10,every=4");
    run_checks(f, "a", "recv", 200, seq_a);
    int first = -1, last = -1;
    for (int i = 0; i < 200; i++) {
        if (!seq_a[i])
            continue;
        assert_true(i >= 10);
        if (first < 0)
            first = i;
        else
            assert_int_equal(i - last, 4);
        last = i;
    }
    assert_true(first >= 10 && first < 14);
    rt_faults_free(f);

    /* after=K with p: nothing in the first K */
    f = parse_ok("crash:a,after=50,p=1");
    run_checks(f, "a", "recv", 100, seq_a);
    for (int i = 0; i < 100; i++)
        assert_int_equal(seq_a[i], i >= 50);
    rt_faults_free(f);
}

static void
test_max(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    /* max=3: the first three checks, then never */
    rt_faults *f = parse_ok("crash:a,max=3");
    run_checks(f, "a", "recv", 100, seq_a);
    for (int i = 0; i < 100; i++)
        assert_int_equal(seq_a[i], i < 3);
    rt_faults_free(f);

    /* max caps p and every too */
    f = parse_ok("crash:a,p=0.5,max=5; drop:b,every=2,max=4");
    assert_int_equal(run_checks(f, "a", "recv", CHECKS, NULL), 5);
    run_checks(f, "b", "recv", 100, seq_a);
    for (int i = 0; i < 100; i++)
        assert_int_equal(seq_a[i], i < 8 && (i + 1) % 2 == 0);
    rt_faults_free(f);
}

static void
test_matching(void **state)
{
    (void)state;
    rt_log_set_level(RT_LOG_OFF);
    double d;
    assert_int_equal(rt_faults_check(NULL, "a", 1, "recv", &d), RT_FAULT_NONE);
    assert_int_equal(rt_faults_fired(NULL, RT_FAULT_NONE), 0);

    /* other actors and other points never fire */
    rt_faults *f = parse_ok("crash:a; crash:b.commit");
    assert_int_equal(run_checks(f, "b", "recv", 100, NULL), 0);
    assert_int_equal(run_checks(f, "ab", "recv", 100, NULL), 0);
    assert_int_equal(run_checks(f, "a", "init", 100, NULL), 0);
    assert_int_equal(run_checks(f, "a", "commit", 100, NULL), 0);
    assert_int_equal(run_checks(f, "b", "init", 100, NULL), 0);
    assert_int_equal(run_checks(f, "a", "recv", 10, NULL), 10);
    assert_int_equal(run_checks(f, "b", "commit", 10, NULL), 10);
    rt_faults_free(f);

    /* "*" matches every actor, at its point only */
    f = parse_ok("crash:*.init");
    assert_int_equal(run_checks(f, "a", "init", 10, NULL), 10);
    assert_int_equal(run_checks(f, "store", "init", 10, NULL), 10);
    assert_int_equal(run_checks(f, "a", "recv", 10, NULL), 0);
    rt_faults_free(f);

    /* rules are tried in order; the first that fires wins */
    f = parse_ok("crash:a,every=2; drop:a");
    for (int i = 1; i <= 10; i++)
        assert_int_equal(rt_faults_check(f, "a", 1, "recv", &d),
                         i % 2 == 0 ? RT_FAULT_CRASH : RT_FAULT_DROP);
    rt_faults_free(f);

    /* fired counts per action and in all */
    f = parse_ok("crash:a; delay:b,ms=7; drop:c; crash:d,p=0");
    run_checks(f, "a", "recv", 3, NULL);
    d = 0;
    assert_int_equal(rt_faults_check(f, "b", 1, "recv", &d), RT_FAULT_DELAY);
    assert_true(d == 7);
    assert_int_equal(rt_faults_check(f, "b", 1, "recv", &d), RT_FAULT_DELAY);
    run_checks(f, "c", "recv", 1, NULL);
    run_checks(f, "d", "recv", 50, NULL);
    run_checks(f, "zzz", "recv", 50, NULL);
    assert_int_equal(rt_faults_fired(f, RT_FAULT_CRASH), 3);
    assert_int_equal(rt_faults_fired(f, RT_FAULT_DELAY), 2);
    assert_int_equal(rt_faults_fired(f, RT_FAULT_DROP), 1);
    assert_int_equal(rt_faults_fired(f, RT_FAULT_NONE), 6);
    rt_faults_free(f);

    assert_string_equal(rt_fault_action_name(RT_FAULT_CRASH), "crash");
    assert_string_equal(rt_fault_action_name(RT_FAULT_DELAY), "delay");
    assert_string_equal(rt_fault_action_name(RT_FAULT_DROP), "drop");
}

/* --- through the runtime --------------------------------------------------------- */

static int
send_log(rt_runtime *rt, const char *to, const char *text)
{
    return rt_send_named(rt, 0, to, PROBE_LOG, 0, text, strlen(text));
}

typedef struct stat_ctx {
    rt_runtime *rt;
    const char *name;
    uint64_t want;
} stat_ctx;

static bool
handled_plus_dropped(void *ud)
{
    stat_ctx *c = ud;
    const rt_stats *s = rt_stats_get(c->rt, c->name);
    return s && s->handled + s->fault_drops >= c->want;
}

static void
test_rt_crash_restarted(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("seed=1;crash:victim,every=3");
    const rt_child_spec kids[] = { { .name = "victim", .actor = &probe_spec } };
    rt_sup_spec spec = { .strategy = RT_ONE_FOR_ONE, .intensity = 10, .period_ms = 5000,
                         .children = kids, .nchildren = 1 };
    int err;
    rt_id root = rt_sup_start(rt, 0, &spec, "root", &err);
    assert_true(root != 0);
    rt_id v = rt_whereis(rt, "victim");
    journal_reset();

    /* the third message crashes it instead of being handled */
    send_log(rt, "victim", "1");
    send_log(rt, "victim", "2");
    send_log(rt, "victim", "3");
    rt_id v2 = rt_test_wait_restart(rt, "victim", v, 1000);
    assert_true(v2 != 0 && v2 != v);
    journal_expect("msg victim 1", "msg victim 2", "term victim crash", "init victim", NULL);
    const rt_stats *s = rt_stats_get(rt, "victim");
    assert_int_equal(s->crashes, 1);
    assert_int_equal(s->restarts, 1);
    assert_int_equal(s->handled, 2);
    assert_int_equal(s->lost_on_exit, 1);

    /* the schedule goes on across restarts: checks 4, 5 pass, 6 crashes */
    journal_reset();
    send_log(rt, "victim", "4");
    send_log(rt, "victim", "5");
    send_log(rt, "victim", "6");
    assert_true(rt_test_wait_restart(rt, "victim", v2, 1000));
    journal_expect("msg victim 4", "msg victim 5", "term victim crash", "init victim", NULL);
    assert_int_equal(rt_stats_get(rt, "victim")->crashes, 2);
    assert_int_equal(rt_stats_get(rt, "victim")->restarts, 2);
    assert_int_equal(rt_faults_fired(rt_faults_of(rt), RT_FAULT_CRASH), 2);
    /* nothing else was touched */
    assert_true(rt_alive(rt, root));
    assert_int_equal(rt_stats_get(rt, "root")->crashes, 0);
    rt_test_close(rt);
}

static void
test_rt_drop(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("drop:d,every=2");
    int err;
    rt_id id = rt_spawn(rt, 0, &probe_spec, NULL, "d", &err);
    assert_true(id != 0);
    journal_reset();
    for (char c = '1'; c <= '6'; c++) {
        char text[2] = { c, 0 };
        assert_int_equal(send_log(rt, "d", text), RT_OK);
    }
    stat_ctx ctx = { rt, "d", 6 };
    assert_true(rt_test_run_until(rt, handled_plus_dropped, &ctx, 1000));
    rt_test_run_for(rt, 10);
    journal_expect("msg d 1", "msg d 3", "msg d 5", NULL);
    const rt_stats *s = rt_stats_get(rt, "d");
    assert_int_equal(s->fault_drops, 3);
    assert_int_equal(s->handled, 3);
    assert_int_equal(s->crashes, 0);
    assert_int_equal(s->depth, 0);
    assert_true(rt_alive(rt, id));
    assert_int_equal(rt_faults_fired(rt_faults_of(rt), RT_FAULT_DROP), 3);
    rt_test_close(rt);
}

/* An actor that journals "corr N" and records when it handled message N. */
static double handled_at[16];

static int
timed_handle(rt_actor *self, const proto_env *msg)
{
    rt_runtime *rt = rt_of(self);
    ev_now_update(rt_loop(rt));
    if (msg->corr < 16)
        handled_at[msg->corr] = rt_now_ms(rt);
    journal_add("corr %llu", (unsigned long long)msg->corr);
    return RT_OK;
}

static const rt_actor_spec timed_spec = { .name = "slow", .handle = timed_handle };

static void
test_rt_delay(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("delay:slow,ms=40,every=2");
    int err;
    rt_id id = rt_spawn(rt, 0, &timed_spec, NULL, "slow", &err);
    assert_true(id != 0);
    memset(handled_at, 0, sizeof(handled_at));

    ev_now_update(rt_loop(rt));
    double t0 = rt_now_ms(rt);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(rt_send(rt, 0, id, 200, i, NULL, 0), RT_OK);

    /* 1 passes; 2 is delayed and 3, 4 wait behind it */
    rt_test_run_for(rt, 20);
    journal_expect("corr 1", NULL);
    assert_int_equal(rt_stats_get(rt, "slow")->depth, 3);

    stat_ctx ctx = { rt, "slow", 4 };
    assert_true(rt_test_run_until(rt, handled_plus_dropped, &ctx, 2000));
    /* order is preserved; 2 waited the delay, 4 (the 4th check) a second one */
    journal_expect("corr 1", "corr 2", "corr 3", "corr 4", NULL);
    assert_true(handled_at[1] - t0 < 40);
    assert_true(handled_at[2] - t0 >= 40 - 0.5);
    assert_true(handled_at[3] >= handled_at[2]);
    assert_true(handled_at[4] - t0 >= 80 - 0.5);
    assert_true(handled_at[4] - handled_at[2] >= 40 - 0.5);
    assert_int_equal(rt_faults_fired(rt_faults_of(rt), RT_FAULT_DELAY), 2);
    assert_int_equal(rt_stats_get(rt, "slow")->fault_drops, 0);
    rt_test_close(rt);
}

static void
test_rt_delay_every_message(void **state)
{
    (void)state;
    /* a delay on every check: each message is delayed once, then handled
     * (the delayed message is not checked again, or it would wait forever) */
    rt_runtime *rt = rt_test_open("delay:slow,ms=15");
    int err;
    rt_id id = rt_spawn(rt, 0, &timed_spec, NULL, "slow", &err);
    assert_true(id != 0);
    memset(handled_at, 0, sizeof(handled_at));
    ev_now_update(rt_loop(rt));
    double t0 = rt_now_ms(rt);
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(rt_send(rt, 0, id, 200, i, NULL, 0), RT_OK);
    stat_ctx ctx = { rt, "slow", 3 };
    assert_true(rt_test_run_until(rt, handled_plus_dropped, &ctx, 2000));
    journal_expect("corr 1", "corr 2", "corr 3", NULL);
    for (int i = 1; i <= 3; i++)
        assert_true(handled_at[i] - t0 >= 15 * i - 0.5);
    assert_int_equal(rt_faults_fired(rt_faults_of(rt), RT_FAULT_DELAY), 3);
    rt_test_close(rt);
}

static void
test_rt_init_fault(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("crash:x.init,max=1");
    int err = 0;
    assert_int_equal(rt_spawn(rt, 0, &probe_spec, NULL, "x", &err), 0);
    assert_int_equal(err, RT_ERR);
    /* nothing left behind: no actor, no name, init never ran */
    assert_int_equal(rt_actor_count(rt), 0);
    assert_int_equal(rt_whereis(rt, "x"), 0);
    assert_int_equal(journal_len(), 0);
    assert_int_equal(rt_send_named(rt, 0, "x", PROBE_PING, 0, NULL, 0), RT_ENOACTOR);
    rt_test_run_for(rt, 10);
    assert_int_equal(rt_actor_count(rt), 0);
    assert_int_equal(rt_run(rt), 0);        /* no top-level actor: returns at once */

    /* max=1: the next start succeeds, under the same name */
    rt_id id = rt_spawn(rt, 0, &probe_spec, NULL, "x", &err);
    assert_true(id != 0);
    assert_int_equal(err, RT_OK);
    assert_int_equal(rt_whereis(rt, "x"), id);
    journal_expect("init x", NULL);
    /* other actors were never affected */
    assert_true(rt_spawn(rt, 0, &probe_spec, NULL, "y", &err) != 0);
    assert_int_equal(rt_actor_count(rt), 2);
    rt_test_close(rt);
}

/* An actor that asks the injector at its own "commit" and "flush" points. */
static int
committer_handle(rt_actor *self, const proto_env *msg)
{
    unsigned long long n = (unsigned long long)msg->corr;
    double d = -1;
    if (rt_fault_point(self, "flush", &d) == RT_FAULT_DELAY)
        journal_add("flush delay %g", d);
    switch (rt_fault_point(self, "commit", NULL)) {
    case RT_FAULT_CRASH:
        journal_add("crash %llu", n);
        rt_crash(self, "commit failed");
        return RT_OK;
    case RT_FAULT_NONE:
        journal_add("commit %llu", n);
        return RT_OK;
    default:
        journal_add("unexpected %llu", n);
        return RT_ERR;
    }
}

static const rt_actor_spec committer_spec = { .name = "committer", .handle = committer_handle };

static void
test_rt_fault_point(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("crash:x.commit,after=2; delay:x.flush,ms=25,max=1");
    int err;
    rt_id id = rt_spawn(rt, 0, &committer_spec, NULL, "x", &err);
    assert_true(id != 0);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(rt_send(rt, 0, id, 200, i, NULL, 0), RT_OK);
    assert_true(rt_test_wait_dead(rt, id, 1000));
    rt_test_run_for(rt, 10);
    /* the point's delay is reported to the actor, not imposed; the third
     * commit crashes it and message 4 is never handled */
    journal_expect("flush delay 25", "commit 1", "commit 2", "crash 3", NULL);
    const rt_stats *s = rt_stats_get(rt, "x");
    assert_int_equal(s->crashes, 1);
    assert_int_equal(s->lost_on_exit, 1);
    assert_non_null(strstr(rt_last_failure(rt), "commit failed"));
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_streams_independent),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_every),
        cmocka_unit_test(test_after),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_rt_crash_restarted),
        cmocka_unit_test(test_rt_drop),
        cmocka_unit_test(test_rt_delay),
        cmocka_unit_test(test_rt_delay_every_message),
        cmocka_unit_test(test_rt_init_fault),
        cmocka_unit_test(test_rt_fault_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
