/* The actor core: spawning, addressing, message order, batching fairness,
 * timers, I/O watchers, crashes freeing what the actor held, exits. */
#include "tests/runtime/rt_test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* --- a recorder actor: journals "NAME corr" for each message --------------- */

typedef struct recorder {
    rt_timer_id timer;
    rt_io *io;
    const int *pipe_fds;    /* the test's pipe, for REC_WATCH_PIPE */
} recorder;

enum {
    REC_MSG = RT_T_TEST_BASE + 0x100, REC_ARM_TIMER, REC_CANCEL_TIMER, REC_WATCH_PIPE, REC_CRASH_NOW
};

static int
rec_io(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)self;
    (void)io;
    (void)revents;
    char c;
    if (read(fd, &c, 1) != 1)
        return RT_ERR;
    journal_add("%s io %c", rt_actor_name(self), c);
    return c == 'x' ? RT_ERR : RT_OK;      /* 'x' makes the callback fail */
}

static int
rec_handle(rt_actor *self, const proto_env *m)
{
    recorder *r = rt_state(self);
    switch (m->type) {
    case REC_MSG:
        journal_add("%s %llu", rt_actor_name(self), (unsigned long long)m->corr);
        return RT_OK;
    case REC_ARM_TIMER:
        r->timer = rt_send_after(self, (double)m->corr, REC_MSG, m->corr, NULL, 0);
        return r->timer ? RT_OK : RT_ERR;
    case REC_CANCEL_TIMER:
        journal_add("%s cancel %d", rt_actor_name(self), rt_cancel_timer(self, r->timer));
        return RT_OK;
    case REC_WATCH_PIPE:
        r->io = rt_io_start(self, r->pipe_fds[0], EV_READ, rec_io, NULL);
        return r->io ? RT_OK : RT_ERR;
    case REC_CRASH_NOW:
        rt_crash(self, "asked to crash");
        /* the crash is deferred: the handler still returns normally */
        journal_add("%s after crash call", rt_actor_name(self));
        return RT_OK;
    default:
        return RT_OK;
    }
}

static int
rec_init(rt_actor *self, const void *arg)
{
    recorder *r = rt_state(self);
    r->pipe_fds = arg;
    return RT_OK;
}

static void
rec_terminate(rt_actor *self, rt_exit_kind kind)
{
    journal_add("%s term %s", rt_actor_name(self), rt_exit_kind_name(kind));
}

static const rt_actor_spec rec_spec = {
    .name = "rec",
    .state_size = sizeof(recorder),
    .init = rec_init,
    .handle = rec_handle,
    .terminate = rec_terminate,
    .batch = 4,
    .mailbox_cap = 10000,
};

static void
rec_after_turn(rt_actor *self)
{
    journal_add("%s flush", rt_actor_name(self));
}

static const rt_actor_spec flushing_spec = {
    .name = "flushing",
    .state_size = sizeof(recorder),
    .init = rec_init,
    .handle = rec_handle,
    .after_turn = rec_after_turn,
    .batch = 4,
};

static rt_id
spawn(rt_runtime *rt, const char *name)
{
    int err;
    rt_id id = rt_spawn(rt, 0, &rec_spec, NULL, name, &err);
    assert_true(id != 0);
    return id;
}

static int
send_corr(rt_runtime *rt, rt_id to, uint32_t type, uint64_t corr)
{
    return rt_send(rt, 0, to, type, corr, NULL, 0);
}

static bool
journal_has_n(void *ud)
{
    return journal_len() >= *(size_t *)ud;
}

static void
run_until_journal(rt_runtime *rt, size_t n)
{
    assert_true(rt_test_run_until(rt, journal_has_n, &n, 2000));
}

/* --- tests ------------------------------------------------------------------ */

static void
test_fifo_order(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a");
    for (uint64_t i = 1; i <= 100; i++)
        assert_int_equal(send_corr(rt, a, REC_MSG, i), RT_OK);
    run_until_journal(rt, 100);
    for (size_t i = 0; i < 100; i++) {
        char want[32];
        snprintf(want, sizeof(want), "a %zu", i + 1);
        assert_string_equal(journal_at(i), want);
    }
    assert_int_equal(rt_stats_get(rt, "a")->handled, 100);
    assert_int_equal(rt_stats_get(rt, "a")->high_water, 100);
    rt_test_close(rt);
}

static void
test_batch_fairness(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a"), b = spawn(rt, "b");
    /* a is flooded first; b gets a few later. With a batch of 4 per turn, b's
     * messages are handled long before a's flood is through. */
    for (uint64_t i = 1; i <= 1000; i++)
        send_corr(rt, a, REC_MSG, i);
    for (uint64_t i = 1; i <= 3; i++)
        send_corr(rt, b, REC_MSG, i);
    run_until_journal(rt, 1003);
    int b3 = journal_find("b 3", 0);
    assert_true(b3 >= 0);
    /* b's three come in its first turn, after a's first turn of 4 */
    assert_int_equal(b3, 6);
    assert_string_equal(journal_at(3), "a 4");
    assert_string_equal(journal_at(4), "b 1");
    rt_test_close(rt);
}

static void
test_after_turn(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id f = rt_spawn(rt, 0, &flushing_spec, NULL, "f", NULL);
    for (uint64_t i = 1; i <= 6; i++)
        send_corr(rt, f, REC_MSG, i);
    run_until_journal(rt, 8);
    rt_test_run_for(rt, 5);
    /* one flush after each turn of at most 4 messages, none when idle */
    journal_expect("f 1", "f 2", "f 3", "f 4", "f flush", "f 5", "f 6", "f flush", NULL);
    rt_test_close(rt);
}

static void
test_names_and_addresses(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a");
    assert_int_equal(rt_whereis(rt, "a"), a);
    assert_int_equal(rt_whereis(rt, "nobody"), 0);
    int err = 0;
    /* a taken name is refused */
    assert_int_equal(rt_spawn(rt, 0, &rec_spec, NULL, "a", &err), 0);
    assert_int_equal(err, RT_EINVAL);
    /* unnamed actors are addressed by id */
    rt_id anon = rt_spawn(rt, 0, &rec_spec, NULL, NULL, &err);
    assert_true(anon > a);
    assert_int_equal(rt_send_named(rt, 0, "a", REC_MSG, 7, NULL, 0), RT_OK);
    assert_int_equal(rt_send_named(rt, 0, "nobody", REC_MSG, 7, NULL, 0), RT_ENOACTOR);
    assert_int_equal(send_corr(rt, 999999, REC_MSG, 1), RT_ENOACTOR);
    run_until_journal(rt, 1);
    journal_expect("a 7", NULL);

    /* after an exit the id is dead and the name free */
    rt_kill(rt, a, RT_EXIT_SHUTDOWN, "test");
    assert_false(rt_alive(rt, a));
    assert_int_equal(send_corr(rt, a, REC_MSG, 1), RT_ENOACTOR);
    rt_test_run_for(rt, 5);
    assert_int_equal(rt_whereis(rt, "a"), 0);
    rt_id a2 = spawn(rt, "a");
    assert_true(a2 != a);
    rt_test_close(rt);
}

static int
env_handle(rt_actor *self, const proto_env *m)
{
    (void)self;
    journal_add("type=%u from=%llu to=%llu corr=%llu payload=%.*s", m->type,
                (unsigned long long)m->from, (unsigned long long)m->to,
                (unsigned long long)m->corr, (int)m->payload_len, (const char *)m->payload);
    return RT_OK;
}

static void
test_envelope_fields(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_actor_spec spec = { .name = "env", .handle = env_handle };
    rt_id id = rt_spawn(rt, 0, &spec, NULL, NULL, NULL);
    char payload[] = "hello";
    assert_int_equal(rt_send(rt, 42, id, 1234, 99, payload, 5), RT_OK);
    payload[0] = 'J';       /* the payload was copied at send */
    run_until_journal(rt, 1);
    char want[128];
    snprintf(want, sizeof(want), "type=1234 from=42 to=%llu corr=99 payload=hello",
             (unsigned long long)id);
    journal_expect(want, NULL);
    /* oversize payloads are refused, not truncated */
    assert_int_equal(rt_send(rt, 0, id, 1, 0, payload, PROTO_ENV_PAYLOAD_MAX + 1), RT_EINVAL);
    rt_test_close(rt);
}

static void
test_timers(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a");
    ev_now_update(rt_loop(rt));
    double t0 = rt_now_ms(rt);
    send_corr(rt, a, REC_ARM_TIMER, 40);
    send_corr(rt, a, REC_ARM_TIMER, 20);
    run_until_journal(rt, 2);
    ev_now_update(rt_loop(rt));
    assert_true(rt_now_ms(rt) - t0 >= 39);
    journal_expect("a 20", "a 40", NULL);

    /* a cancelled timer never fires */
    journal_reset();
    send_corr(rt, a, REC_ARM_TIMER, 30);
    send_corr(rt, a, REC_CANCEL_TIMER, 0);
    rt_test_run_for(rt, 60);
    journal_expect("a cancel 1", NULL);

    /* an actor's pending timers die with it (ASan: nothing leaks) */
    journal_reset();
    send_corr(rt, a, REC_ARM_TIMER, 1000);
    rt_test_run_for(rt, 5);
    rt_kill(rt, a, RT_EXIT_SHUTDOWN, NULL);
    rt_test_run_for(rt, 5);
    journal_expect("a term shutdown", NULL);
    rt_test_close(rt);
}

static void
test_io_watcher(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    rt_id a = rt_spawn(rt, 0, &rec_spec, fds, "a", NULL);
    send_corr(rt, a, REC_WATCH_PIPE, 0);
    rt_test_run_for(rt, 5);
    int wfd = fds[1];
    assert_int_equal(write(wfd, "ab", 2), 2);
    run_until_journal(rt, 2);
    journal_expect("a io a", "a io b", NULL);

    /* a failing I/O callback crashes the actor and its watcher goes with it */
    journal_reset();
    assert_int_equal(write(wfd, "x", 1), 1);
    assert_true(rt_test_wait_dead(rt, a, 1000));
    rt_test_run_for(rt, 5);
    journal_expect("a io x", "a term crash", NULL);
    assert_int_equal(rt_stats_get(rt, "a")->crashes, 1);
    /* more input wakes nobody */
    assert_int_equal(write(wfd, "c", 1), 1);
    rt_test_run_for(rt, 10);
    journal_expect("a io x", "a term crash", NULL);
    close(fds[0]);
    close(fds[1]);
    rt_test_close(rt);
}

static void
test_crash_is_deferred(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a");
    send_corr(rt, a, REC_CRASH_NOW, 0);
    send_corr(rt, a, REC_MSG, 1);       /* never handled: a crashed before */
    assert_true(rt_test_wait_dead(rt, a, 1000));
    rt_test_run_for(rt, 5);
    journal_expect("a after crash call", "a term crash", NULL);
    assert_int_equal(rt_stats_get(rt, "a")->lost_on_exit, 1);
    rt_test_close(rt);
}

typedef struct parent_state {
    int exits;
} parent_state;

static int
parent_handle(rt_actor *self, const proto_env *m)
{
    (void)self;
    if (m->type == RT_T_EXIT) {
        rt_exit_info info;
        assert_int_equal(rt_exit_info_decode(m, &info), RT_OK);
        journal_add("exit %llu %s %s", (unsigned long long)info.id,
                    rt_exit_kind_name(info.kind), info.reason);
    }
    return RT_OK;
}

static void
test_exit_signal_to_parent(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    const rt_actor_spec pspec = { .name = "parent", .handle = parent_handle };
    rt_id p = rt_spawn(rt, 0, &pspec, NULL, "parent", NULL);
    rt_id c1 = rt_spawn(rt, p, &rec_spec, NULL, "c1", NULL);
    rt_id c2 = rt_spawn(rt, p, &probe_spec, NULL, "c2", NULL);
    rt_id c3 = rt_spawn(rt, p, &probe_spec, NULL, "c3", NULL);
    journal_reset();
    send_corr(rt, c1, REC_CRASH_NOW, 0);
    rt_test_send(rt, "c2", PROBE_STOP);
    rt_stop_child(rt, c3);
    run_until_journal(rt, 8);
    char w1[96], w2[96], w3[96];
    snprintf(w1, sizeof(w1), "exit %llu crash asked to crash", (unsigned long long)c1);
    snprintf(w2, sizeof(w2), "exit %llu normal ", (unsigned long long)c2);
    snprintf(w3, sizeof(w3), "exit %llu shutdown shutdown", (unsigned long long)c3);
    assert_true(journal_find(w1, 0) >= 0);
    assert_true(journal_find(w2, 0) >= 0);
    assert_true(journal_find(w3, 0) >= 0);
    rt_test_close(rt);
}

static void
test_init_failure_leaves_nothing(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    probe_cfg bad = { .fail_init = -1 };
    int err = 0;
    assert_int_equal(rt_spawn(rt, 0, &probe_spec, &bad, "p", &err), 0);
    assert_int_equal(err, RT_ERR);
    journal_expect("init p", "term p crash", NULL);
    assert_int_equal(rt_actor_count(rt), 0);
    assert_int_equal(rt_whereis(rt, "p"), 0);
    assert_int_equal(rt_run(rt), 0);    /* nothing to run */
    rt_test_close(rt);
}

static void
test_destroy_terminates_all(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_id a = spawn(rt, "a");
    rt_id b = spawn(rt, "b");
    for (int i = 0; i < 10; i++)
        send_corr(rt, a, REC_MSG, 1);
    send_corr(rt, b, REC_ARM_TIMER, 10000);
    /* close kills b then a (newest first), frees queued messages and timers,
     * and then proves the loop is empty */
    rt_destroy(rt);
    journal_expect("b term killed", "a term killed", NULL);
    /* rt_test_close would destroy again: check the loop by hand */
    (void)a;
    (void)b;
    rt_test_close(NULL);
}

static void
test_run_returns_when_top_level_ends(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    spawn(rt, "a");
    rt_send_named(rt, 0, "a", REC_CRASH_NOW, 0, NULL, 0);
    assert_int_equal(rt_run(rt), 1);
    assert_non_null(strstr(rt_last_failure(rt), "a#"));
    assert_non_null(strstr(rt_last_failure(rt), "asked to crash"));
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_batch_fairness),
        cmocka_unit_test(test_after_turn),
        cmocka_unit_test(test_names_and_addresses),
        cmocka_unit_test(test_envelope_fields),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_io_watcher),
        cmocka_unit_test(test_crash_is_deferred),
        cmocka_unit_test(test_exit_signal_to_parent),
        cmocka_unit_test(test_init_failure_leaves_nothing),
        cmocka_unit_test(test_destroy_terminates_all),
        cmocka_unit_test(test_run_returns_when_top_level_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
