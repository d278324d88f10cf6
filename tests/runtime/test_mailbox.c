/* Mailboxes: the rt_mailbox module on its own (FIFO order, bounds, both
 * overflow policies and their counters, ownership of refused and shed
 * messages), then the same rules as a sender sees them through rt_send. */
#include "tests/runtime/rt_test.h"

#include <stdlib.h>
#include <string.h>

/* --- the module on its own ------------------------------------------------ */

/* A message whose envelope carries n as its corr, so order can be checked. */
static rt_msg *
msg_n(uint64_t n)
{
    proto_env env = { .type = RT_T_TEST_BASE, .from = 1, .to = 2, .corr = n };
    rt_msg *m = rt_msg_new(&env);
    assert_non_null(m);
    return m;
}

/* Decodes m, returns its corr, frees m. */
static uint64_t
corr_of(rt_msg *m)
{
    assert_non_null(m);
    proto_env env;
    assert_int_equal(proto_env_decode(m->data, m->len, &env), PROTO_OK);
    rt_msg_free(m);
    return env.corr;
}

static void
test_fifo_many(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 10000, RT_OVERFLOW_REJECT);
    assert_null(rt_mailbox_pop(&mb));
    assert_null(rt_mailbox_peek(&mb));

    /* interleave pushes and pops so the queue empties and refills */
    uint64_t next_in = 1, next_out = 1;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 100 + round; i++)
            assert_int_equal(rt_mailbox_push(&mb, msg_n(next_in++)), RT_PUSH_OK);
        size_t keep = (size_t)(round % 3);
        while (mb.depth > keep) {
            rt_msg *head = rt_mailbox_peek(&mb);
            rt_msg *m = rt_mailbox_pop(&mb);
            assert_ptr_equal(head, m);
            assert_null(m->next);               /* popped messages are unlinked */
            assert_int_equal(corr_of(m), next_out++);
        }
    }
    while (mb.depth)
        assert_int_equal(corr_of(rt_mailbox_pop(&mb)), next_out++);
    assert_int_equal(next_in, next_out);
    assert_null(rt_mailbox_pop(&mb));
    assert_null(mb.head);
    assert_null(mb.tail);
    assert_int_equal(mb.pushed, next_in - 1);
    assert_int_equal(mb.overflows, 0);

    /* after running empty the mailbox still works */
    assert_int_equal(rt_mailbox_push(&mb, msg_n(7)), RT_PUSH_OK);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 7);
}

static void
test_cap_zero_means_one(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 0, RT_OVERFLOW_REJECT);
    assert_int_equal(mb.cap, 1);
    assert_int_equal(rt_mailbox_push(&mb, msg_n(1)), RT_PUSH_OK);
    rt_msg *m = msg_n(2);
    assert_int_equal(rt_mailbox_push(&mb, m), RT_PUSH_REFUSED);
    rt_msg_free(m);
    assert_int_equal(rt_mailbox_clear(&mb), 1);

    rt_mailbox_init(&mb, 0, RT_OVERFLOW_DROP_OLDEST);
    assert_int_equal(rt_mailbox_push(&mb, msg_n(1)), RT_PUSH_OK);
    assert_int_equal(rt_mailbox_push(&mb, msg_n(2)), RT_PUSH_SHED);
    assert_int_equal(mb.depth, 1);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 2);
}

static void
test_reject(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 3, RT_OVERFLOW_REJECT);
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(rt_mailbox_push(&mb, msg_n(i)), RT_PUSH_OK);

    for (uint64_t i = 4; i <= 5; i++) {
        rt_msg *m = msg_n(i);
        assert_int_equal(rt_mailbox_push(&mb, m), RT_PUSH_REFUSED);
        /* refused: the caller still owns m, intact and unlinked */
        assert_null(m->next);
        assert_ptr_not_equal(mb.tail, m);
        assert_int_equal(corr_of(m), i);
    }
    assert_int_equal(mb.depth, 3);
    assert_int_equal(mb.overflows, 2);
    assert_int_equal(mb.pushed, 3);
    assert_int_equal(mb.high_water, 3);
    assert_int_equal(mb.shed, 0);

    /* the queued ones are untouched; room frees up as they are popped */
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 1);
    assert_int_equal(rt_mailbox_push(&mb, msg_n(6)), RT_PUSH_OK);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 2);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 3);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 6);
    assert_int_equal(mb.pushed, 4);
    assert_int_equal(mb.high_water, 3);
}

static void
test_drop_oldest(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 4, RT_OVERFLOW_DROP_OLDEST);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(rt_mailbox_push(&mb, msg_n(i)), RT_PUSH_OK);
    /* three more: 1, 2, 3 are freed (ASan proves it), 5, 6, 7 are kept */
    for (uint64_t i = 5; i <= 7; i++)
        assert_int_equal(rt_mailbox_push(&mb, msg_n(i)), RT_PUSH_SHED);
    assert_int_equal(mb.depth, 4);
    assert_int_equal(mb.shed, 3);
    assert_int_equal(mb.overflows, 3);
    assert_int_equal(mb.pushed, 7);
    assert_int_equal(mb.high_water, 4);
    for (uint64_t want = 4; want <= 7; want++)
        assert_int_equal(corr_of(rt_mailbox_pop(&mb)), want);
    assert_null(rt_mailbox_pop(&mb));
}

static void
test_push_force(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 2, RT_OVERFLOW_REJECT);
    for (uint64_t i = 1; i <= 5; i++)
        rt_mailbox_push_force(&mb, msg_n(i));
    assert_int_equal(mb.depth, 5);
    assert_int_equal(mb.high_water, 5);
    assert_int_equal(mb.overflows, 0);
    /* still over cap: an ordinary push is refused */
    rt_msg *m = msg_n(6);
    assert_int_equal(rt_mailbox_push(&mb, m), RT_PUSH_REFUSED);
    rt_msg_free(m);
    for (uint64_t want = 1; want <= 5; want++)
        assert_int_equal(corr_of(rt_mailbox_pop(&mb)), want);

    /* forced messages keep FIFO order with ordinary ones */
    rt_mailbox_init(&mb, 2, RT_OVERFLOW_DROP_OLDEST);
    assert_int_equal(rt_mailbox_push(&mb, msg_n(1)), RT_PUSH_OK);
    rt_mailbox_push_force(&mb, msg_n(2));
    rt_mailbox_push_force(&mb, msg_n(3));
    assert_int_equal(rt_mailbox_push(&mb, msg_n(4)), RT_PUSH_SHED);
    assert_int_equal(mb.depth, 3);
    for (uint64_t want = 2; want <= 4; want++)
        assert_int_equal(corr_of(rt_mailbox_pop(&mb)), want);
}

static void
test_clear(void **state)
{
    (void)state;
    rt_mailbox mb;
    rt_mailbox_init(&mb, 8, RT_OVERFLOW_DROP_OLDEST);
    assert_int_equal(rt_mailbox_clear(&mb), 0);
    for (uint64_t i = 1; i <= 10; i++)
        rt_mailbox_push(&mb, msg_n(i));
    /* every queued message is freed: ASan's leak check fails otherwise */
    assert_int_equal(rt_mailbox_clear(&mb), 8);
    assert_int_equal(mb.depth, 0);
    assert_null(mb.head);
    assert_null(mb.tail);
    /* counters stay */
    assert_int_equal(mb.pushed, 10);
    assert_int_equal(mb.shed, 2);
    assert_int_equal(mb.high_water, 8);
    /* and the mailbox is usable again */
    assert_int_equal(rt_mailbox_push(&mb, msg_n(11)), RT_PUSH_OK);
    assert_int_equal(corr_of(rt_mailbox_pop(&mb)), 11);
}

static void
test_msg_round_trip(void **state)
{
    (void)state;
    static const uint8_t payload[] = { 0x93, 0x01, 0xa2, 'h', 'i', 0xc0, 0x00, 0xff };
    proto_env in = { .type = 4242, .from = 17, .to = UINT64_MAX - 1,
                     .corr = 0x0123456789abcdefull, .payload = payload,
                     .payload_len = sizeof(payload) };
    rt_msg *m = rt_msg_new(&in);
    assert_non_null(m);
    assert_null(m->next);
    assert_true(m->len > sizeof(payload));
    assert_true(m->len <= PROTO_ENV_OVERHEAD + sizeof(payload));

    proto_env out;
    assert_int_equal(proto_env_decode(m->data, m->len, &out), PROTO_OK);
    assert_int_equal(out.type, 4242);
    assert_int_equal(out.from, 17);
    assert_int_equal(out.to, UINT64_MAX - 1);
    assert_int_equal(out.corr, 0x0123456789abcdefull);
    assert_int_equal(out.payload_len, sizeof(payload));
    assert_memory_equal(out.payload, payload, sizeof(payload));
    /* the message owns a copy of the payload, not a pointer to ours */
    assert_true(out.payload >= m->data && out.payload < m->data + m->len);
    rt_msg_free(m);
    rt_msg_free(NULL);

    /* an empty payload */
    proto_env empty = { .type = 1 };
    m = rt_msg_new(&empty);
    assert_non_null(m);
    assert_int_equal(proto_env_decode(m->data, m->len, &out), PROTO_OK);
    assert_int_equal(out.payload_len, 0);
    rt_msg_free(m);

    /* one byte over the limit is refused */
    size_t big = PROTO_ENV_PAYLOAD_MAX + 1;
    uint8_t *buf = calloc(1, big);
    assert_non_null(buf);
    proto_env huge = { .type = 1, .payload = buf, .payload_len = big };
    assert_null(rt_msg_new(&huge));
    free(buf);
}

/* --- through the runtime --------------------------------------------------- */

enum { REC_MSG = RT_T_TEST_BASE + 0x100 };

/* Journals "corr N" for every message it handles. */
static int
rec_handle(rt_actor *self, const proto_env *msg)
{
    (void)self;
    journal_add("corr %llu", (unsigned long long)msg->corr);
    return RT_OK;
}

static const rt_actor_spec rec_reject = {
    .name = "rec", .handle = rec_handle,
    .mailbox_cap = 4, .overflow = RT_OVERFLOW_REJECT,
};

static const rt_actor_spec rec_shed = {
    .name = "rec", .handle = rec_handle,
    .mailbox_cap = 4, .overflow = RT_OVERFLOW_DROP_OLDEST,
};

typedef struct handled_ctx {
    rt_runtime *rt;
    const char *name;
    uint64_t want;
} handled_ctx;

static bool
handled_at_least(void *ud)
{
    handled_ctx *c = ud;
    const rt_stats *s = rt_stats_get(c->rt, c->name);
    return s && s->handled >= c->want;
}

static void
test_runtime_reject(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    int err = -1;
    rt_id id = rt_spawn(rt, 0, &rec_reject, NULL, "rec", &err);
    assert_true(id != 0);
    assert_int_equal(err, RT_OK);

    /* not scheduled yet: the first 4 fit, the 5th and 6th are refused */
    for (uint64_t i = 1; i <= 6; i++)
        assert_int_equal(rt_send(rt, 0, id, REC_MSG, i, "x", 1), i <= 4 ? RT_OK : RT_EFULL);
    const rt_stats *s = rt_stats_get(rt, "rec");
    assert_non_null(s);
    assert_int_equal(s->overflows, 2);
    assert_int_equal(s->shed, 0);
    assert_int_equal(s->depth, 4);
    assert_int_equal(s->high_water, 4);
    /* by name too */
    assert_int_equal(rt_send_named(rt, 0, "rec", REC_MSG, 7, NULL, 0), RT_EFULL);
    assert_int_equal(rt_stats_get(rt, "rec")->overflows, 3);

    handled_ctx c = { rt, "rec", 4 };
    assert_true(rt_test_run_until(rt, handled_at_least, &c, 1000));
    rt_test_run_for(rt, 10);
    journal_expect("corr 1", "corr 2", "corr 3", "corr 4", NULL);
    s = rt_stats_get(rt, "rec");
    assert_int_equal(s->handled, 4);
    assert_int_equal(s->depth, 0);

    /* drained: it takes messages again */
    assert_int_equal(rt_send(rt, 0, id, REC_MSG, 8, NULL, 0), RT_OK);
    rt_test_close(rt);
}

static void
test_runtime_drop_oldest(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    int err = -1;
    rt_id id = rt_spawn(rt, 0, &rec_shed, NULL, "rec", &err);
    assert_true(id != 0);

    for (uint64_t i = 1; i <= 6; i++)
        assert_int_equal(rt_send(rt, 0, id, REC_MSG, i, NULL, 0), RT_OK);
    const rt_stats *s = rt_stats_get(rt, "rec");
    assert_int_equal(s->shed, 2);
    assert_int_equal(s->overflows, 2);
    assert_int_equal(s->depth, 4);

    handled_ctx c = { rt, "rec", 4 };
    assert_true(rt_test_run_until(rt, handled_at_least, &c, 1000));
    rt_test_run_for(rt, 10);
    /* exactly the 4 newest, in order */
    journal_expect("corr 3", "corr 4", "corr 5", "corr 6", NULL);
    assert_int_equal(rt_stats_get(rt, "rec")->handled, 4);
    rt_test_close(rt);
}

static void
test_send_no_actor(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    assert_int_equal(rt_send(rt, 0, 0, REC_MSG, 1, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_send(rt, 0, 12345, REC_MSG, 1, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_send_named(rt, 0, "nobody", REC_MSG, 1, NULL, 0), RT_ENOACTOR);
    proto_env env = { .type = REC_MSG };
    /* rt_send_msg always takes the message: ASan proves it is freed */
    assert_int_equal(rt_send_msg(rt, 12345, rt_msg_new(&env)), RT_ENOACTOR);

    int err;
    rt_id id = rt_spawn(rt, 0, &rec_reject, NULL, "rec", &err);
    assert_true(id != 0);
    assert_int_equal(rt_send(rt, 0, id, REC_MSG, 1, NULL, 0), RT_OK);

    /* exiting (marked, not yet reaped): nothing more is accepted */
    assert_int_equal(rt_kill(rt, id, RT_EXIT_SHUTDOWN, "test"), RT_OK);
    assert_false(rt_alive(rt, id));
    assert_int_equal(rt_send(rt, 0, id, REC_MSG, 2, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_send_named(rt, 0, "rec", REC_MSG, 3, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_send_msg(rt, id, rt_msg_new(&env)), RT_ENOACTOR);
    assert_int_equal(rt_kill(rt, id, RT_EXIT_SHUTDOWN, "again"), RT_ENOACTOR);

    /* reaped: gone for good, its queued message counted as lost, never handled */
    assert_true(rt_test_wait_dead(rt, id, 1000));
    rt_test_run_for(rt, 10);
    assert_int_equal(rt_whereis(rt, "rec"), 0);
    assert_int_equal(rt_send(rt, 0, id, REC_MSG, 4, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_send_named(rt, 0, "rec", REC_MSG, 5, NULL, 0), RT_ENOACTOR);
    assert_int_equal(rt_stats_get(rt, "rec")->lost_on_exit, 1);
    assert_int_equal(rt_stats_get(rt, "rec")->handled, 0);
    assert_int_equal(journal_len(), 0);
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_many),
        cmocka_unit_test(test_cap_zero_means_one),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_drop_oldest),
        cmocka_unit_test(test_push_force),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_runtime_reject),
        cmocka_unit_test(test_runtime_drop_oldest),
        cmocka_unit_test(test_send_no_actor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
