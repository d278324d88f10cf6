/* The store actor against a real PostgreSQL (CHATD_PG_DSN): schema, batches
 * with dense per-room seqs (also from two store actors at once), duplicates,
 * join and history paging (bounded in count and in bytes), reads shed
 * before batches, requests before connect, a server restart, and malformed
 * input. Each test uses fresh room names. */
#include "tests/actors/harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "actors/store.h"
#include "proto/record.h"
#include "runtime/metrics.h"

static chatd_config cfg;
static char tag[32];
static unsigned room_counter;

/* --- helpers ---------------------------------------------------------------- */

static void
fresh_room(char *out, size_t cap, const char *what)
{
    snprintf(out, cap, "t-%s-%s-%u", what, tag, ++room_counter);
}

static void
set_msg(proto_msg *m, const char *room, const char *id, const char *user, const char *text)
{
    assert_int_equal(proto_msg_set(m, room, strlen(room), id, strlen(id), user, strlen(user),
                                   text, strlen(text), 1700000000000ull, 0),
                     PROTO_OK);
}

/* A batch of n messages to room, ids "<prefix><first + i>", user u; the
 * text is text_len bytes when text_len > 0, else names the id and room. */
static proto_msg *
make_sized(const char *room, const char *prefix, unsigned first, size_t n, const char *user,
           size_t text_len)
{
    proto_msg *ms = calloc(n, sizeof(*ms));
    assert_non_null(ms);
    char *text = malloc(text_len > 160 ? text_len + 1 : 161);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s%zu", prefix, first + i);
        if (text_len) {
            memset(text, 'a' + (int)(i % 26), text_len);
            text[text_len] = '\0';
        } else {
            snprintf(text, 161, "text of %s in %s", id, room);
        }
        set_msg(&ms[i], room, id, user, text);
    }
    free(text);
    return ms;
}

static proto_msg *
make_msgs(const char *room, const char *prefix, unsigned first, size_t n, const char *user)
{
    return make_sized(room, prefix, first, n, user, 0);
}

static void
free_msgs(proto_msg *ms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        proto_msg_free(&ms[i]);
    free(ms);
}

static int
send_raw(rt_runtime *rt, const char *from, const char *to, uint32_t type, uint64_t corr,
         const void *p, size_t len)
{
    return rt_send(rt, rt_whereis(rt, from), rt_whereis(rt, to), type, corr, p, len);
}

static void
send_batch(rt_runtime *rt, const char *to, uint64_t corr, const proto_msg *ms, size_t n)
{
    proto_batch b = { .msgs = (proto_msg *)ms, .count = n };
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    assert_int_equal(proto_batch_encode(&b, &buf), PROTO_OK);
    assert_int_equal(send_raw(rt, "consumer", to, PROTO_T_MESSAGE_BATCH, corr, buf.data, buf.len),
                     RT_OK);
    proto_mp_buf_free(&buf);
}

/* Waits for the consumer stub's next ack; checks its corr; returns ok. */
static bool
wait_ack(rt_runtime *rt, uint64_t corr, proto_ack *ack_out, double ms)
{
    stub_msg m;
    assert_true(stub_wait(rt, "consumer", PROTO_T_ACK, &m, ms));
    assert_int_equal(m.corr, corr);
    proto_ack ack;
    assert_int_equal(proto_ack_decode(m.payload, m.len, &ack), PROTO_OK);
    stub_msg_free(&m);
    if (ack_out)
        *ack_out = ack;
    return ack.ok;
}

/* Sends a batch and expects ok. */
static void
store_ok(rt_runtime *rt, const char *to, uint64_t corr, const proto_msg *ms, size_t n)
{
    send_batch(rt, to, corr, ms, n);
    proto_ack ack;
    if (!wait_ack(rt, corr, &ack, 10000))
        fail_msg("batch %" PRIu64 " not ok: %s %s", corr, proto_ack_code_name(ack.code),
                 ack.msg);
}

/* The next batch published to fanout (must come within ms). Its corr is
 * the store's own (the fanout's confirmation names it), never 0. */
static void
wait_fanout(rt_runtime *rt, proto_batch *out)
{
    stub_msg m;
    assert_true(stub_wait(rt, "fanout", PROTO_T_MESSAGE_BATCH, &m, 5000));
    assert_true(m.corr != 0);
    assert_int_equal(proto_batch_decode(m.payload, m.len, out), PROTO_OK);
    stub_msg_free(&m);
}

/* Sends a join request from the socket stub, n times with corrs corr.. */
static void
send_joins(rt_runtime *rt, const char *to, const char *room, bool has_since, uint64_t since,
           uint64_t corr, size_t n)
{
    proto_join_req r = { .has_since = has_since, .since = since };
    snprintf(r.room, sizeof(r.room), "%s", room);
    r.room_len = strlen(room);
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    assert_int_equal(proto_join_req_encode(&r, &buf), PROTO_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(send_raw(rt, "socket", to, PROTO_T_JOIN_REQ, corr + i, buf.data,
                                  buf.len), RT_OK);
    proto_mp_buf_free(&buf);
}

static void
join(rt_runtime *rt, const char *to, const char *room, bool has_since, uint64_t since,
     proto_join_reply *out)
{
    static uint64_t corr = 1000;
    uint64_t c = ++corr;
    send_joins(rt, to, room, has_since, since, c, 1);
    stub_msg m;
    assert_true(stub_wait(rt, "socket", 0, &m, 15000));
    assert_int_equal(m.corr, c);
    assert_int_equal(m.type, PROTO_T_JOIN_REPLY);
    assert_int_equal(proto_join_reply_decode(m.payload, m.len, out), PROTO_OK);
    stub_msg_free(&m);
}

static void
history(rt_runtime *rt, const char *room, bool has_before, uint64_t before, uint64_t limit,
        proto_history_reply *out)
{
    static uint64_t corr = 5000;
    proto_history_req r = { .has_before = has_before, .before = before, .limit = limit };
    snprintf(r.room, sizeof(r.room), "%s", room);
    r.room_len = strlen(room);
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    assert_int_equal(proto_history_req_encode(&r, &buf), PROTO_OK);
    uint64_t c = ++corr;
    assert_int_equal(send_raw(rt, "socket", CHATD_STORE, PROTO_T_HISTORY_REQ, c, buf.data,
                              buf.len), RT_OK);
    proto_mp_buf_free(&buf);
    stub_msg m;
    assert_true(stub_wait(rt, "socket", 0, &m, 10000));
    assert_int_equal(m.corr, c);
    assert_int_equal(m.type, PROTO_T_HISTORY_REPLY);
    assert_int_equal(proto_history_reply_decode(m.payload, m.len, out), PROTO_OK);
    stub_msg_free(&m);
}

/* Asserts msgs hold seqs first, first + 1, ... */
static void
expect_seqs(const proto_msg *ms, size_t n, uint64_t first)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ms[i].seq, first + i);
}

static rt_runtime *
open_with_store(void)
{
    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "consumer");
    stub_spawn(rt, "socket");
    stub_spawn(rt, "fanout");
    stub_answer("fanout", PROTO_T_MESSAGE_BATCH, PROTO_ACK_NONE);
    assert_true(rt_spawn(rt, 0, &chatd_store_spec, &cfg, CHATD_STORE, NULL) != 0);
    return rt;
}

static void
close_rt(rt_runtime *rt)
{
    rt_test_close(rt);
    stub_reset();
}

/* A blocking connection for checking the tables (test side only). */
static PGconn *
db(void)
{
    PGconn *c = PQconnectdb(cfg.pg_dsn);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", cfg.pg_dsn, PQerrorMessage(c));
    return c;
}

static long long
db_int(const char *sql, const char *param)
{
    PGconn *c = db();
    const char *v[1] = { param };
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long long n = PQgetisnull(r, 0, 0) ? -1 : atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* Asserts room's seqs are exactly 1..n, one row each, and last_seq is n. */
static void
expect_dense(const char *room, long long n)
{
    assert_int_equal(db_int("SELECT count(*) FROM messages WHERE room = $1", room), n);
    assert_int_equal(db_int("SELECT count(DISTINCT seq) FROM messages WHERE room = $1", room), n);
    assert_int_equal(db_int("SELECT coalesce(min(seq), 0) FROM messages WHERE room = $1", room),
                     n ? 1 : 0);
    assert_int_equal(db_int("SELECT coalesce(max(seq), 0) FROM messages WHERE room = $1", room), n);
    assert_int_equal(db_int("SELECT coalesce(max(last_seq), 0) FROM rooms WHERE room = $1", room),
                     n);
}

/* --- tests ---------------------------------------------------------------------- */

/* Two stores migrating at once, then again on an existing schema: both serve,
 * one version row. */
static void
test_schema_twice(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        rt_runtime *rt = open_with_store();
        assert_true(rt_spawn(rt, 0, &chatd_store_spec, &cfg, "store2", NULL) != 0);
        char room[64];
        fresh_room(room, sizeof(room), "schema");
        proto_join_reply rep;
        join(rt, CHATD_STORE, room, false, 0, &rep);
        assert_int_equal(rep.seq, 0);
        proto_join_reply_free(&rep);
        join(rt, "store2", room, false, 0, &rep);
        proto_join_reply_free(&rep);
        assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"postgres\""), 1);
        assert_int_equal(rt_stats_get(rt, CHATD_STORE)->crashes, 0);
        assert_int_equal(rt_stats_get(rt, "store2")->crashes, 0);
        close_rt(rt);
    }
    /* each version's step ran once, whoever raced for it */
    assert_int_equal(db_int("SELECT count(*) FROM chatd_schema_version", NULL), 2);
    assert_int_equal(db_int("SELECT max(version) FROM chatd_schema_version", NULL), 2);
    assert_int_equal(db_int("SELECT count(*) FROM pg_proc WHERE proname = 'chatd_store_batch' "
                            "AND 'plan_cache_mode=force_generic_plan' = ANY(proconfig)", NULL), 1);
}

static void
test_batch_dense_seqs(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "dense");
    double before = rt_metric_value(rt, "chatd_messages_stored_total", NULL);

    proto_msg *a = make_msgs(room, "a", 1, 5, "alice");
    store_ok(rt, CHATD_STORE, 1, a, 5);
    proto_batch out;
    wait_fanout(rt, &out);
    assert_int_equal(out.count, 5);
    expect_seqs(out.msgs, 5, 1);
    for (size_t i = 0; i < 5; i++) {
        a[i].seq = i + 1;
        assert_true(proto_msg_equal(&out.msgs[i], &a[i]));
    }
    proto_batch_free(&out);

    proto_msg *b = make_msgs(room, "b", 1, 3, "bob");
    store_ok(rt, CHATD_STORE, 2, b, 3);
    wait_fanout(rt, &out);
    assert_int_equal(out.count, 3);
    expect_seqs(out.msgs, 3, 6);
    proto_batch_free(&out);

    assert_int_equal(rt_metric_value(rt, "chatd_messages_stored_total", NULL) - before, 8);
    expect_dense(room, 8);
    free_msgs(a, 5);
    free_msgs(b, 3);
    close_rt(rt);
}

/* A batch sent again stores nothing, acks ok and publishes its messages
 * again with their stored seq and text (the first delivery's publish may have
 * been lost with its node); a duplicate keeps its first text; a duplicate
 * inside one batch is stored and published once. */
static void
test_resend_is_idempotent(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "dup");
    proto_msg *a = make_msgs(room, "m", 1, 4, "alice");
    store_ok(rt, CHATD_STORE, 1, a, 4);
    proto_batch out;
    wait_fanout(rt, &out);
    proto_batch_free(&out);

    double republished = rt_metric_value(rt, "chatd_messages_republished_total", NULL);
    store_ok(rt, CHATD_STORE, 2, a, 4);
    wait_fanout(rt, &out);
    assert_int_equal(out.count, 4);
    expect_seqs(out.msgs, 4, 1);
    for (size_t i = 0; i < 4; i++) {
        a[i].seq = i + 1;
        assert_true(proto_msg_equal(&out.msgs[i], &a[i]));
    }
    proto_batch_free(&out);
    assert_int_equal(rt_metric_value(rt, "chatd_messages_republished_total", NULL) - republished,
                     4);
    rt_test_run_for(rt, 100);
    assert_int_equal(stub_pending("fanout"), 0);
    expect_dense(room, 4);

    /* m2 again with another text, a new m5, m5 again in the same batch, and
     * the same id from another user (a different message) */
    proto_msg mix[4];
    set_msg(&mix[0], room, "m2", "alice", "changed text");
    set_msg(&mix[1], room, "m5", "alice", "five");
    set_msg(&mix[2], room, "m5", "alice", "five again");
    set_msg(&mix[3], room, "m2", "bob", "bob's m2");
    store_ok(rt, CHATD_STORE, 3, mix, 4);
    wait_fanout(rt, &out);
    assert_int_equal(out.count, 3);
    assert_string_equal(out.msgs[0].id, "m2");          /* stored before: first */
    assert_string_equal(out.msgs[0].text, a[1].text);  /* as stored */
    assert_int_equal(out.msgs[0].seq, 2);
    assert_string_equal(out.msgs[1].id, "m5");
    assert_string_equal(out.msgs[1].text, "five");
    assert_int_equal(out.msgs[1].seq, 5);
    assert_string_equal(out.msgs[2].user, "bob");
    assert_int_equal(out.msgs[2].seq, 6);
    proto_batch_free(&out);
    expect_dense(room, 6);

    proto_history_reply h;
    history(rt, room, false, 0, 10, &h);
    assert_int_equal(h.count, 6);
    assert_string_equal(h.msgs[1].id, "m2");
    assert_string_equal(h.msgs[1].text, a[1].text);   /* the first text stays */
    proto_history_reply_free(&h);
    for (size_t i = 0; i < 4; i++)
        proto_msg_free(&mix[i]);
    free_msgs(a, 4);
    close_rt(rt);
}

static void
test_mixed_rooms(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char r1[64], r2[64], r3[64];
    fresh_room(r1, sizeof(r1), "mixa");
    fresh_room(r2, sizeof(r2), "mixb");
    fresh_room(r3, sizeof(r3), "mixc");
    const char *rooms[] = { r1, r2, r1, r3, r2, r1 };
    const uint64_t want[] = { 1, 1, 2, 1, 2, 3 };
    proto_msg ms[6];
    for (size_t i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%zu", i);
        set_msg(&ms[i], rooms[i], id, "carol", "hello \"quoted\" \\ back\\slash, {braces}");
    }
    store_ok(rt, CHATD_STORE, 7, ms, 6);
    proto_batch out;
    wait_fanout(rt, &out);
    assert_int_equal(out.count, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(out.msgs[i].room, rooms[i]);
        assert_int_equal(out.msgs[i].seq, want[i]);
        assert_string_equal(out.msgs[i].text, ms[i].text);
    }
    proto_batch_free(&out);
    expect_dense(r1, 3);
    expect_dense(r2, 2);
    expect_dense(r3, 1);
    for (size_t i = 0; i < 6; i++)
        proto_msg_free(&ms[i]);
    close_rt(rt);
}

/* Two store actors (two connections) write interleaved batches into the same
 * rooms at once: seqs stay dense and unique, and within a batch they follow
 * the batch order. */
static void
test_two_stores_concurrent(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    assert_true(rt_spawn(rt, 0, &chatd_store_spec, &cfg, "store2", NULL) != 0);
    char r1[64], r2[64];
    fresh_room(r1, sizeof(r1), "conc1");
    fresh_room(r2, sizeof(r2), "conc2");
    enum { NB = 40, PER = 50 };
    for (unsigned b = 0; b < NB; b++) {
        proto_msg ms[PER];
        for (unsigned i = 0; i < PER; i++) {
            char id[32];
            snprintf(id, sizeof(id), "b%u-%u", b, i);
            set_msg(&ms[i], i % 3 ? r1 : r2, id, b % 2 ? "u1" : "u2", id);
        }
        send_batch(rt, b % 2 ? "store2" : CHATD_STORE, b + 1, ms, PER);
        for (unsigned i = 0; i < PER; i++)
            proto_msg_free(&ms[i]);
    }
    bool acked[NB + 1] = { false };
    for (unsigned k = 0; k < NB; k++) {
        stub_msg m;
        assert_true(stub_wait(rt, "consumer", PROTO_T_ACK, &m, 20000));
        proto_ack ack;
        assert_int_equal(proto_ack_decode(m.payload, m.len, &ack), PROTO_OK);
        assert_true(ack.ok);
        assert_true(m.corr >= 1 && m.corr <= NB && !acked[m.corr]);
        acked[m.corr] = true;
        stub_msg_free(&m);
    }
    /* every published batch: seqs increase in batch order per room */
    size_t published = 0;
    while (stub_pending("fanout")) {
        stub_msg m;
        assert_true(stub_wait(rt, "fanout", PROTO_T_MESSAGE_BATCH, &m, 1000));
        proto_batch out;
        assert_int_equal(proto_batch_decode(m.payload, m.len, &out), PROTO_OK);
        uint64_t last1 = 0, last2 = 0;
        for (size_t i = 0; i < out.count; i++) {
            uint64_t *last = strcmp(out.msgs[i].room, r1) == 0 ? &last1 : &last2;
            assert_true(out.msgs[i].seq > *last);
            if (*last)
                assert_int_equal(out.msgs[i].seq, *last + 1);
            *last = out.msgs[i].seq;
        }
        published += out.count;
        proto_batch_free(&out);
        stub_msg_free(&m);
    }
    assert_int_equal(published, NB * PER);
    long long n1 = 0;
    for (unsigned i = 0; i < PER; i++)
        n1 += i % 3 ? 1 : 0;
    expect_dense(r1, n1 * NB);
    expect_dense(r2, (PER - n1) * NB);
    assert_int_equal(rt_stats_get(rt, CHATD_STORE)->crashes, 0);
    assert_int_equal(rt_stats_get(rt, "store2")->crashes, 0);
    close_rt(rt);
}

/* The same batches sent to two stores at once (a consumer-group rebalance
 * can do that): each message is stored once, and the second writer to get
 * the room's lock sees the first one's rows: it publishes them again with the
 * same seq, so every message is published exactly twice, once by each. */
static void
test_two_stores_same_batches(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    assert_true(rt_spawn(rt, 0, &chatd_store_spec, &cfg, "store2", NULL) != 0);
    char room[64];
    fresh_room(room, sizeof(room), "twice");
    enum { NB = 20, PER = 100 };
    for (unsigned b = 0; b < NB; b++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "s%u-", b);
        proto_msg *ms = make_msgs(room, prefix, 0, PER, "judy");
        send_batch(rt, CHATD_STORE, b + 1, ms, PER);
        send_batch(rt, "store2", b + 1, ms, PER);
        free_msgs(ms, PER);
    }
    for (unsigned k = 0; k < 2 * NB; k++) {
        stub_msg m;
        assert_true(stub_wait(rt, "consumer", PROTO_T_ACK, &m, 20000));
        proto_ack ack;
        assert_int_equal(proto_ack_decode(m.payload, m.len, &ack), PROTO_OK);
        if (!ack.ok)
            fail_msg("batch %" PRIu64 ": %s", m.corr, ack.msg);
        stub_msg_free(&m);
    }
    size_t published = 0;
    static unsigned times[NB * PER + 1];
    memset(times, 0, sizeof(times));
    while (stub_pending("fanout")) {
        proto_batch out;
        stub_msg m;
        assert_true(stub_wait(rt, "fanout", PROTO_T_MESSAGE_BATCH, &m, 1000));
        assert_int_equal(proto_batch_decode(m.payload, m.len, &out), PROTO_OK);
        for (size_t i = 0; i < out.count; i++) {
            assert_true(out.msgs[i].seq >= 1 && out.msgs[i].seq <= NB * PER);
            times[out.msgs[i].seq]++;
        }
        published += out.count;
        proto_batch_free(&out);
        stub_msg_free(&m);
    }
    assert_int_equal(published, 2 * NB * PER);
    for (unsigned q = 1; q <= NB * PER; q++)
        assert_int_equal(times[q], 2);
    expect_dense(room, NB * PER);
    close_rt(rt);
}

static void
test_join(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "join");
    proto_join_reply rep;
    join(rt, CHATD_STORE, room, false, 0, &rep);
    assert_int_equal(rep.seq, 0);
    assert_int_equal(rep.count, 0);
    assert_false(rep.more);
    proto_join_reply_free(&rep);
    join(rt, CHATD_STORE, room, true, 0, &rep);
    assert_int_equal(rep.seq, 0);
    assert_int_equal(rep.count, 0);
    assert_false(rep.more);
    proto_join_reply_free(&rep);

    /* one-byte texts: 500 of them fit STORE_REPLY_BYTES_MAX, so the count
     * bound is the one that cuts (test_reply_bytes: the byte bound) */
    proto_msg *a = make_sized(room, "j", 1, 1000, "dave", 1);
    store_ok(rt, CHATD_STORE, 1, a, 1000);
    proto_msg *b = make_sized(room, "j", 1001, 200, "dave", 1);
    store_ok(rt, CHATD_STORE, 2, b, 200);

    join(rt, CHATD_STORE, room, false, 0, &rep);
    assert_int_equal(rep.seq, 1200);
    assert_int_equal(rep.count, 0);
    assert_false(rep.more);
    proto_join_reply_free(&rep);

    const struct { uint64_t since; size_t count; uint64_t first; bool more; } pages[] = {
        { 0, 500, 1, true }, { 500, 500, 501, true }, { 1000, 200, 1001, false },
        { 700, 500, 701, false }, { 699, 500, 700, true }, { 1199, 1, 1200, false },
        { 1200, 0, 0, false }, { 5000, 0, 0, false },
    };
    for (size_t p = 0; p < sizeof(pages) / sizeof(pages[0]); p++) {
        join(rt, CHATD_STORE, room, true, pages[p].since, &rep);
        assert_int_equal(rep.seq, 1200);
        assert_int_equal(rep.count, pages[p].count);
        assert_int_equal(rep.more, pages[p].more);
        expect_seqs(rep.missed, rep.count, pages[p].first);
        if (rep.count) {
            proto_msg *want = pages[p].first <= 1000 ? &a[pages[p].first - 1]
                                                     : &b[pages[p].first - 1001];
            want->seq = pages[p].first;
            assert_true(proto_msg_equal(&rep.missed[0], want));
        }
        proto_join_reply_free(&rep);
    }
    free_msgs(a, 1000);
    free_msgs(b, 200);
    close_rt(rt);
}

static void
test_history(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64], empty[64];
    fresh_room(room, sizeof(room), "hist");
    fresh_room(empty, sizeof(empty), "histempty");
    proto_history_reply h;
    history(rt, empty, false, 0, 50, &h);
    assert_int_equal(h.count, 0);
    assert_false(h.more);
    proto_history_reply_free(&h);

    proto_msg *a = make_msgs(room, "h", 1, 250, "erin");
    store_ok(rt, CHATD_STORE, 1, a, 250);
    const struct { bool has_before; uint64_t before, limit; size_t count; uint64_t first;
                   bool more; } cases[] = {
        { false, 0, 50, 50, 201, true },
        { false, 0, 200, 200, 51, true },
        { true, 51, 50, 50, 1, false },
        { true, 60, 200, 59, 1, false },
        { true, 101, 50, 50, 51, true },
        { true, 2, 1, 1, 1, false },
        { true, 1, 10, 0, 0, false },
        { true, 0, 10, 0, 0, false },
        { true, 100000, 1, 1, 250, true },
        { true, UINT64_MAX, 5, 5, 246, true },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        history(rt, room, cases[c].has_before, cases[c].before, cases[c].limit, &h);
        assert_int_equal(h.count, cases[c].count);
        assert_int_equal(h.more, cases[c].more);
        expect_seqs(h.msgs, h.count, cases[c].first);
        proto_history_reply_free(&h);
    }
    history(rt, room, false, 0, 3, &h);
    a[249].seq = 250;
    assert_true(proto_msg_equal(&h.msgs[2], &a[249]));
    proto_history_reply_free(&h);
    free_msgs(a, 250);
    close_rt(rt);
}

/* What a message costs against the reply's byte bound (store.h), computed
 * here from its fields. */
static size_t
cost_of(const proto_msg *m)
{
    return m->room_len + m->id_len + m->user_len + m->text_len + STORE_MSG_OVERHEAD;
}

/* Asserts that a page of n messages (in reply order from page[0]) is within
 * the byte bound, and, when it says more and holds fewer than count_max,
 * that the next message (next, in reply order) would not have fit. */
static void
expect_page_bound(const proto_msg *page, size_t n, bool more, size_t count_max,
                  const proto_msg *next)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += cost_of(&page[i]);
    assert_true(n >= 1);
    assert_true(n == 1 || bytes <= STORE_REPLY_BYTES_MAX);
    if (more && n < count_max) {
        assert_non_null(next);
        assert_true(bytes + cost_of(next) > STORE_REPLY_BYTES_MAX);
    }
}

/* Big messages: a join's missed and a history page stop at
 * STORE_REPLY_BYTES_MAX with more = true, and paging through (join again
 * with since = the last seq; history with before = the first seq) returns
 * every message exactly once, in order, with its text. */
static void
test_reply_bytes(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "bytes");
    /* 60 of 4000 bytes, 30 tiny ones, 30 of 2500: uneven page boundaries */
    enum { NA = 60, NB = 30, NC = 30, N = NA + NB + NC };
    proto_msg *a = make_sized(room, "big", 1, NA, "kim", 4000);
    proto_msg *b = make_sized(room, "tiny", 1, NB, "kim", 1);
    proto_msg *c = make_sized(room, "mid", 1, NC, "kim", 2500);
    proto_msg all[N];
    store_ok(rt, CHATD_STORE, 1, a, NA);
    store_ok(rt, CHATD_STORE, 2, b, NB);
    store_ok(rt, CHATD_STORE, 3, c, NC);
    for (size_t i = 0; i < N; i++) {
        all[i] = i < NA ? a[i] : i < NA + NB ? b[i - NA] : c[i - NA - NB];
        all[i].seq = i + 1;
    }

    /* join since, page by page */
    uint64_t since = 0;
    size_t pages = 0;
    bool more = true;
    while (more) {
        proto_join_reply rep;
        join(rt, CHATD_STORE, room, true, since, &rep);
        assert_int_equal(rep.seq, N);
        assert_true(rep.count >= 1);
        expect_seqs(rep.missed, rep.count, since + 1);
        for (size_t i = 0; i < rep.count; i++)
            assert_true(proto_msg_equal(&rep.missed[i], &all[since + i]));
        uint64_t last = rep.missed[rep.count - 1].seq;
        expect_page_bound(rep.missed, rep.count, rep.more, PROTO_JOIN_MISSED_MAX,
                          last < N ? &all[last] : NULL);
        assert_int_equal(rep.more, last < N);
        more = rep.more;
        since = last;
        pages++;
        proto_join_reply_free(&rep);
    }
    assert_int_equal(since, N);
    assert_true(pages >= 5);            /* 60 x 4 KB alone need 4 pages */

    /* history, newest first, page by page */
    uint64_t before = UINT64_MAX;
    size_t hpages = 0;
    more = true;
    while (more) {
        proto_history_reply h;
        history(rt, room, before != UINT64_MAX, before, 200, &h);
        assert_true(h.count >= 1);
        uint64_t first = h.msgs[0].seq, top = before == UINT64_MAX ? N : before - 1;
        expect_seqs(h.msgs, h.count, first);
        assert_int_equal(h.msgs[h.count - 1].seq, top);
        for (size_t i = 0; i < h.count; i++)
            assert_true(proto_msg_equal(&h.msgs[i], &all[first - 1 + i]));
        /* the bound applies from the newest down */
        proto_msg rev[N];
        for (size_t i = 0; i < h.count; i++)
            rev[i] = h.msgs[h.count - 1 - i];
        expect_page_bound(rev, h.count, h.more, 200, first > 1 ? &all[first - 2] : NULL);
        assert_int_equal(h.more, first > 1);
        more = h.more;
        before = first;
        hpages++;
        proto_history_reply_free(&h);
    }
    assert_int_equal(before, 1);
    assert_true(hpages >= 5);

    /* a small limit still bounds by count first */
    proto_history_reply h;
    history(rt, room, false, 0, 3, &h);
    assert_int_equal(h.count, 3);
    assert_true(h.more);
    expect_seqs(h.msgs, 3, N - 2);
    proto_history_reply_free(&h);
    free_msgs(a, NA);
    free_msgs(b, NB);
    free_msgs(c, NC);
    close_rt(rt);
}

/* Reads shed first, and never hold a batch: with the read queue full (and
 * more reads refused) when a batch arrives, the batch is stored, published
 * and answered while most of the queued reads still wait; every read gets
 * either its reply or unavailable; the metrics count the shed reads and no
 * shed batch. */
static void
test_reads_shed_not_batches(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64], wroom[64];
    fresh_room(room, sizeof(room), "storm");
    fresh_room(wroom, sizeof(wroom), "stormw");
    proto_msg *big = make_sized(room, "s", 1, 200, "lee", 4000);
    store_ok(rt, CHATD_STORE, 1, big, 200);
    close_rt(rt);

    /* a new store: requests sent before the loop runs all wait for its
     * connections, so the read queue is full when the batch comes */
    rt = open_with_store();
    enum { EXTRA = 476, READS = STORE_READ_QUEUE_MAX + EXTRA };
    send_joins(rt, CHATD_STORE, room, true, 0, 100000, READS);
    proto_msg *w = make_msgs(wroom, "w", 1, 50, "lee");
    send_batch(rt, CHATD_STORE, 7, w, 50);

    assert_true(wait_ack(rt, 7, NULL, 10000));
    size_t answered_then = stub_pending("socket");
    proto_batch out;
    wait_fanout(rt, &out);
    expect_seqs(out.msgs, 50, 1);
    proto_batch_free(&out);
    expect_dense(wroom, 50);
    print_message("reads answered (or shed) when the batch was: %zu of %d\n", answered_then,
                  READS);

    size_t replies = 0, unavailable = 0;
    for (size_t i = 0; i < READS; i++) {
        stub_msg m;
        assert_true(stub_wait(rt, "socket", 0, &m, 30000));
        assert_true(m.corr >= 100000 && m.corr < 100000 + READS);
        if (m.type == PROTO_T_JOIN_REPLY) {
            proto_join_reply rep;
            assert_int_equal(proto_join_reply_decode(m.payload, m.len, &rep), PROTO_OK);
            assert_true(rep.more);
            assert_true(rep.count >= 1);
            proto_join_reply_free(&rep);
            replies++;
        } else {
            assert_int_equal(m.type, PROTO_T_ACK);
            proto_ack ack;
            assert_int_equal(proto_ack_decode(m.payload, m.len, &ack), PROTO_OK);
            assert_false(ack.ok);
            assert_int_equal(ack.code, PROTO_ACK_UNAVAILABLE);
            assert_string_equal(ack.msg, "store overloaded");
            unavailable++;
        }
        stub_msg_free(&m);
    }
    /* the queue was full: a read or two may have finished (freeing room)
     * while the store was still taking the requests from its mailbox */
    assert_true(replies >= STORE_READ_QUEUE_MAX);
    assert_true(unavailable >= 1);
    assert_int_equal(rt_metric_value(rt, "chatd_store_shed_total", "queue=\"read\""),
                     unavailable);
    /* when the batch was answered: the shed ones, plus well under half of
     * the queued ones */
    assert_true(answered_then >= unavailable);
    assert_true(answered_then < unavailable + STORE_READ_QUEUE_MAX / 2);
    assert_int_equal(rt_metric_value(rt, "chatd_store_shed_total", "queue=\"write\""), 0);
    assert_int_equal(rt_metric_value(rt, "chatd_store_queue_depth", "queue=\"read\""), 0);
    assert_int_equal(rt_metric_value(rt, "chatd_store_queue_depth", "queue=\"write\""), 0);
    free_msgs(big, 200);
    free_msgs(w, 50);
    close_rt(rt);
}

/* The consumer is answered only once the fanout confirmed the publish: a
 * fanout that refuses gets the batch answered unavailable (committed, not
 * yet published), one that stays silent too, after the request timeout, and
 * one that is gone at once; the consumer's retry then stores nothing and
 * publishes the same messages with the same seqs. */
static void
test_publish_confirmed(void **state)
{
    (void)state;
    int saved = cfg.request_timeout_ms;
    cfg.request_timeout_ms = 300;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "confirm");
    proto_msg *a = make_msgs(room, "c", 1, 3, "ivan");
    proto_batch out;
    proto_ack ack;

    stub_answer("fanout", PROTO_T_MESSAGE_BATCH, PROTO_ACK_UNAVAILABLE);
    send_batch(rt, CHATD_STORE, 1, a, 3);
    assert_false(wait_ack(rt, 1, &ack, 10000));
    assert_int_equal(ack.code, PROTO_ACK_UNAVAILABLE);
    wait_fanout(rt, &out);
    expect_seqs(out.msgs, 3, 1);
    proto_batch_free(&out);
    expect_dense(room, 3);

    stub_answer("fanout", 0, PROTO_ACK_NONE);             /* silent */
    double t0 = rt_now_ms(rt);
    send_batch(rt, CHATD_STORE, 1, a, 3);
    assert_false(wait_ack(rt, 1, &ack, 10000));
    assert_string_equal(ack.msg, "publish not confirmed");
    assert_true(rt_now_ms(rt) - t0 >= 300 - 20);
    wait_fanout(rt, &out);
    expect_seqs(out.msgs, 3, 1);
    proto_batch_free(&out);

    stub_answer("fanout", PROTO_T_MESSAGE_BATCH, PROTO_ACK_NONE);
    store_ok(rt, CHATD_STORE, 1, a, 3);
    wait_fanout(rt, &out);
    expect_seqs(out.msgs, 3, 1);
    proto_batch_free(&out);
    expect_dense(room, 3);

    rt_kill(rt, rt_whereis(rt, "fanout"), RT_EXIT_KILLED, "test");
    rt_test_run_for(rt, 20);
    send_batch(rt, CHATD_STORE, 2, a, 3);
    assert_false(wait_ack(rt, 2, &ack, 10000));
    assert_string_equal(ack.msg, "fanout unavailable");
    close_rt(rt);
    free_msgs(a, 3);
    cfg.request_timeout_ms = saved;
}

/* Requests sent before the connection is up wait and are served after. */
static void
test_request_before_connect(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "early");
    proto_msg *a = make_msgs(room, "e", 1, 3, "frank");
    send_batch(rt, CHATD_STORE, 11, a, 3);     /* the loop has not run yet */
    assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"postgres\""), 0);
    assert_true(wait_ack(rt, 11, NULL, 10000));
    proto_batch out;
    wait_fanout(rt, &out);
    expect_seqs(out.msgs, 3, 1);
    proto_batch_free(&out);
    free_msgs(a, 3);
    close_rt(rt);
}

/* Restarts the server under the test: CHATD_PG_RESTART if set (a shell
 * command), else pg_ctl restart -m fast on the server's own data directory. */
static void
restart_postgres(void)
{
    const char *cmd = getenv("CHATD_PG_RESTART");
    char buf[2048];
    if (!cmd) {
        PGconn *c = db();
        PGresult *r = PQexec(c, "SELECT current_setting('data_directory'), "
                                "(SELECT setting FROM pg_config WHERE name = 'BINDIR'), "
                                "current_setting('port')");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("cannot find the data directory: %s", PQerrorMessage(c));
        /* the server refuses to run as root: scripts/services.sh runs it as
         * SERVICES_PG_USER (default postgres) */
        const char *user = getenv("SERVICES_PG_USER") ? getenv("SERVICES_PG_USER")
                                                      : "postgres";
        char as[128] = "";
        if (geteuid() == 0)
            snprintf(as, sizeof(as), "runuser -u '%s' -- ", user);
        snprintf(buf, sizeof(buf),
                 "%s%s/pg_ctl -D '%s' -w -t 60 -m fast -l /tmp/chatd-test-pg-%s.log "
                 "restart >/dev/null 2>&1",
                 as, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2));
        PQclear(r);
        PQfinish(c);
        cmd = buf;
    }
    if (system(cmd) != 0)
        fail_msg("restarting PostgreSQL failed: %s", cmd);
}

static const rt_child_spec store_child[] = {
    { .name = CHATD_STORE, .actor = &chatd_store_spec, .arg = &cfg, .restart = RT_PERMANENT },
};

static const rt_sup_spec store_sup = {
    .strategy = RT_ONE_FOR_ONE, .intensity = 50, .period_ms = 60000,
    .backoff_min_ms = 50, .backoff_max_ms = 1000,
    .children = store_child, .nchildren = 1,
};

/* PostgreSQL restarts: the store crashes, is restarted, serves again; a
 * batch not acked is resent until ok and is stored exactly once. */
static void
test_postgres_restart(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "consumer");
    stub_spawn(rt, "socket");
    stub_spawn(rt, "fanout");
    stub_answer("fanout", PROTO_T_MESSAGE_BATCH, PROTO_ACK_NONE);
    assert_true(rt_sup_start(rt, 0, &store_sup, "sup", NULL) != 0);
    char room[64];
    fresh_room(room, sizeof(room), "restart");
    proto_msg *a = make_msgs(room, "r", 1, 10, "gina");
    store_ok(rt, CHATD_STORE, 1, a, 10);
    rt_id first = rt_whereis(rt, CHATD_STORE);

    proto_msg *b = make_msgs(room, "r", 11, 10, "gina");
    send_batch(rt, CHATD_STORE, 2, b, 10);
    restart_postgres();                 /* the store has not seen batch 2 yet */

    proto_ack ack;
    bool ok = wait_ack(rt, 2, &ack, 10000);
    int tries = 0;
    while (!ok) {
        assert_int_equal(ack.code, PROTO_ACK_UNAVAILABLE);
        assert_true(++tries < 100);
        rt_test_run_for(rt, 100);
        if (!rt_whereis(rt, CHATD_STORE))
            continue;
        send_batch(rt, CHATD_STORE, 2, b, 10);
        ok = wait_ack(rt, 2, &ack, 10000);
    }
    rt_id now = rt_whereis(rt, CHATD_STORE);
    assert_true(now != 0 && now != first);
    assert_true(rt_stats_get(rt, CHATD_STORE)->crashes >= 1);
    assert_true(rt_stats_get(rt, CHATD_STORE)->restarts >= 1);
    expect_dense(room, 20);
    for (unsigned i = 11; i <= 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "r%u", i);
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM messages WHERE room = $1 AND id = '%s'",
                 id);
        assert_int_equal(db_int(sql, room), 1);
    }
    proto_join_reply rep;
    join(rt, CHATD_STORE, room, true, 10, &rep);
    assert_int_equal(rep.seq, 20);
    assert_int_equal(rep.count, 10);
    expect_seqs(rep.missed, 10, 11);
    proto_join_reply_free(&rep);
    assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"postgres\""), 1);
    free_msgs(a, 10);
    free_msgs(b, 10);
    close_rt(rt);
}

/* Malformed payloads are answered bad_request; the actor stays up. */
static void
test_malformed(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    rt_id id = rt_whereis(rt, CHATD_STORE);
    const uint8_t junk[] = { 0xc1, 0x00, 0x13 };
    const uint32_t types[] = { PROTO_T_MESSAGE_BATCH, PROTO_T_JOIN_REQ, PROTO_T_HISTORY_REQ };
    for (size_t t = 0; t < 3; t++) {
        assert_int_equal(send_raw(rt, "consumer", CHATD_STORE, types[t], 90 + t, junk,
                                  sizeof(junk)), RT_OK);
        proto_ack ack;
        assert_false(wait_ack(rt, 90 + t, &ack, 5000));
        assert_int_equal(ack.code, PROTO_ACK_BAD_REQUEST);
    }
    /* an ack is a fanout's confirmation: one naming no publish of ours (or
     * junk) is dropped, never answered (an ack for an ack could loop) */
    assert_int_equal(send_raw(rt, "consumer", CHATD_STORE, PROTO_T_ACK, 93, junk, sizeof(junk)),
                     RT_OK);
    rt_test_run_for(rt, 200);
    assert_int_equal(stub_pending("consumer"), 0);
    /* a well-formed map that is not a batch */
    uint8_t mem[64];
    proto_mp_buf buf;
    proto_mp_buf_fixed(&buf, mem, sizeof(mem));
    proto_room r = { .room = "x", .room_len = 1 };
    assert_int_equal(proto_room_encode(&r, &buf), PROTO_OK);
    assert_int_equal(send_raw(rt, "consumer", CHATD_STORE, PROTO_T_MESSAGE_BATCH, 99, buf.data,
                              buf.len), RT_OK);
    proto_ack ack;
    assert_false(wait_ack(rt, 99, &ack, 5000));
    assert_int_equal(ack.code, PROTO_ACK_BAD_REQUEST);

    char room[64];
    fresh_room(room, sizeof(room), "afterjunk");
    proto_join_reply rep;
    join(rt, CHATD_STORE, room, true, 0, &rep);
    proto_join_reply_free(&rep);
    assert_int_equal(rt_whereis(rt, CHATD_STORE), id);
    assert_int_equal(rt_stats_get(rt, CHATD_STORE)->crashes, 0);
    close_rt(rt);
}

/* A DSN that cannot connect crashes the actor with a reason (the supervisor's
 * business), it never hangs or blocks. */
static void
test_connect_failure_crashes(void **state)
{
    (void)state;
    chatd_config bad = cfg;
    bad.pg_dsn = "host=127.0.0.1 port=1 dbname=chatd user=postgres";
    rt_runtime *rt = rt_test_open(NULL);
    rt_id id = rt_spawn(rt, 0, &chatd_store_spec, &bad, CHATD_STORE, NULL);
    assert_true(id != 0);
    assert_true(rt_test_wait_dead(rt, id, 5000));
    assert_true(strstr(rt_last_failure(rt), "cannot connect to PostgreSQL") != NULL);
    assert_int_equal(rt_stats_get(rt, CHATD_STORE)->crashes, 1);
    close_rt(rt);
}

/* A schema migration that cannot finish (another session holds the
 * migration's advisory lock) crashes the store when STORE_CONNECT_TIMEOUT_MS
 * has passed since init, with the reason; a request it held is answered
 * unavailable, not left to its sender's deadline. */
static void
test_migration_deadline(void **state)
{
    (void)state;
    PGconn *lock = db();
    PGresult *r = PQexec(lock, "SELECT pg_advisory_lock(7236510017)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    rt_runtime *rt = open_with_store();
    rt_id id = rt_whereis(rt, CHATD_STORE);
    char room[64];
    fresh_room(room, sizeof(room), "deadline");
    proto_msg *a = make_msgs(room, "d", 0, 2, "judy");
    send_batch(rt, CHATD_STORE, 5, a, 2);
    rt_test_run_for(rt, STORE_CONNECT_TIMEOUT_MS / 2);
    assert_true(rt_alive(rt, id));
    assert_int_equal(stub_pending("consumer"), 0);
    assert_true(rt_test_wait_dead(rt, id, STORE_CONNECT_TIMEOUT_MS));
    assert_non_null(strstr(rt_last_failure(rt), "PostgreSQL schema migration did not finish "
                                                "within 10000 ms"));
    proto_ack ack;
    assert_false(wait_ack(rt, 5, &ack, 1000));
    assert_int_equal(ack.code, PROTO_ACK_UNAVAILABLE);
    PQfinish(lock);
    free_msgs(a, 2);
    close_rt(rt);
}

/* Throughput of 1000-message batches, one at a time (as the consumer sends
 * them) and all queued at once. Printed, not asserted. */
static void
test_throughput(void **state)
{
    (void)state;
    rt_runtime *rt = open_with_store();
    char room[64];
    fresh_room(room, sizeof(room), "perf");
    proto_join_reply rep;
    join(rt, CHATD_STORE, room, false, 0, &rep);   /* connected */
    proto_join_reply_free(&rep);
    enum { NB = 20, PER = 1000 };
    proto_msg *ms[NB];
    for (unsigned b = 0; b < NB; b++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "p%u-", b);
        ms[b] = make_msgs(room, prefix, 0, PER, "ivan");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned b = 0; b < NB / 2; b++)
        store_ok(rt, CHATD_STORE, b + 1, ms[b], PER);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s1 = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned b = NB / 2; b < NB; b++)
        send_batch(rt, CHATD_STORE, b + 1, ms[b], PER);
    for (unsigned b = NB / 2; b < NB; b++)
        assert_true(wait_ack(rt, b + 1, NULL, 20000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s2 = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("store throughput, %d-message batches into one room: %.0f rows/s one at a "
                  "time (%.1f ms per batch), %.0f rows/s queued\n", PER,
                  NB / 2 * PER / s1, s1 * 1e3 / (NB / 2), NB / 2 * PER / s2);
    expect_dense(room, NB * PER);
    for (unsigned b = 0; b < NB; b++)
        free_msgs(ms[b], PER);
    close_rt(rt);
}

int
main(void)
{
    harness_config(&cfg, "CHATD_PG_DSN");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(tag, sizeof(tag), "%ld-%d-%d", (long)time(NULL), (int)getpid(), rand() % 100000);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_twice),
        cmocka_unit_test(test_batch_dense_seqs),
        cmocka_unit_test(test_resend_is_idempotent),
        cmocka_unit_test(test_mixed_rooms),
        cmocka_unit_test(test_two_stores_concurrent),
        cmocka_unit_test(test_two_stores_same_batches),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_reply_bytes),
        cmocka_unit_test(test_reads_shed_not_batches),
        cmocka_unit_test(test_publish_confirmed),
        cmocka_unit_test(test_request_before_connect),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_connect_failure_crashes),
        cmocka_unit_test(test_postgres_restart),
        cmocka_unit_test(test_migration_deadline),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
