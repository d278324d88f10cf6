/*
 * The fanout actor against a real Redis (CHATD_REDIS_URL).
 *
 * Two fanout actors in one runtime play two nodes: "fanout" (node key
 * NODE1) talks to the stub "socket", "fanout2" (NODE2) to the stub "socket2".
 * Rooms carry the test's pid so that runs sharing a Redis do not meet. The
 * restart test runs its own redis-server on a free port, since it kills it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "actors/fanout.h"
#include "proto/envelope.h"
#include "proto/record.h"
#include "runtime/metrics.h"
#include "tests/actors/harness.h"
#include "tests/actors/loopback.h"
#include "tests/actors/redis_util.h"

#define NODE1 0x1111222233334444ull
#define NODE2 0xaaaabbbbccccddddull
#define WAIT_MS 3000

static chatd_config cfg1, cfg2;
static chatd_fanout_arg arg1 = { &cfg1, "socket" };
static chatd_fanout_arg arg2 = { &cfg2, "socket2" };
static char roombuf[8][PROTO_ROOM_MAX + 1];

/* A room name of this run: "t<pid>-<tag>". */
static const char *
room(int i, const char *tag)
{
    snprintf(roombuf[i], sizeof(roombuf[i]), "t%d-%s", (int)getpid(), tag);
    return roombuf[i];
}

static void
configs(int ttl_ms)
{
    harness_config(&cfg1, "CHATD_REDIS_URL");
    harness_config(&cfg2, "CHATD_REDIS_URL");
    cfg1.node_key = NODE1;
    cfg2.node_key = NODE2;
    cfg1.presence_ttl_ms = cfg2.presence_ttl_ms = ttl_ms;
    cfg1.request_timeout_ms = cfg2.request_timeout_ms = 2000;
}

/* ---- a synchronous Redis for the test's own looks ---- */

static long long
redis_int(redisContext *c, const char *fmt, const char *a)
{
    redisReply *r = redisCommand(c, fmt, a);
    assert_non_null(r);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_INTEGER)
        v = r->element[1]->integer;     /* PUBSUB NUMSUB */
    freeReplyObject(r);
    return v;
}

static long long
numsub(const char *rm)
{
    redisContext *c = redis_util_sync(cfg1.redis_url);
    char chan[128];
    snprintf(chan, sizeof(chan), "chatd:room:%s", rm);
    long long v = redis_int(c, "PUBSUB NUMSUB %s", chan);
    redisFree(c);
    return v;
}

/* ---- messages to the actors ---- */

static void
send_room(rt_runtime *rt, const char *from_stub, const char *to, uint32_t type, uint64_t corr,
          const char *rm)
{
    proto_room r = { 0 };
    r.room_len = strlen(rm);
    memcpy(r.room, rm, r.room_len);
    uint8_t buf[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    assert_int_equal(proto_room_encode(&r, &b), PROTO_OK);
    assert_int_equal(rt_send(rt, rt_whereis(rt, from_stub), rt_whereis(rt, to), type, corr,
                             b.data, b.len), RT_OK);
}

static void
send_member(rt_runtime *rt, const char *to, uint32_t type, const char *rm, const char *user)
{
    proto_member m = { 0 };
    m.room_len = strlen(rm);
    m.user_len = strlen(user);
    memcpy(m.room, rm, m.room_len);
    memcpy(m.user, user, m.user_len);
    uint8_t buf[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    assert_int_equal(proto_member_encode(&m, &b), PROTO_OK);
    assert_int_equal(rt_send(rt, 0, rt_whereis(rt, to), type, 0, b.data, b.len), RT_OK);
}

/* Sends to `to`, from the stub `from` (NULL: nobody), a batch of n messages
 * with corr: message i in rooms[i % nrooms], seq i + 1, id "m<i>". */
static void
send_batch_from(rt_runtime *rt, const char *from, const char *to, const char **rooms,
                size_t nrooms, size_t n, uint64_t corr)
{
    proto_batch b = { calloc(n, sizeof(proto_msg)), n };
    assert_non_null(b.msgs);
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof(id), "m%zu", i);
        const char *rm = rooms[i % nrooms];
        assert_int_equal(proto_msg_set(&b.msgs[i], rm, strlen(rm), id, strlen(id), "alice", 5,
                                       "hello", 5, 1700000000000ull, i + 1), PROTO_OK);
    }
    proto_mp_buf out;
    proto_mp_buf_growing(&out);
    assert_int_equal(proto_batch_encode(&b, &out), PROTO_OK);
    assert_int_equal(rt_send(rt, from ? rt_whereis(rt, from) : 0, rt_whereis(rt, to),
                             PROTO_T_MESSAGE_BATCH, corr, out.data, out.len), RT_OK);
    proto_mp_buf_free(&out);
    proto_batch_free(&b);
}

static void
send_batch(rt_runtime *rt, const char *to, const char **rooms, size_t nrooms, size_t n)
{
    send_batch_from(rt, NULL, to, rooms, nrooms, n, 7);
}

static void
expect_ack(rt_runtime *rt, const char *stub, uint64_t corr, bool ok)
{
    stub_msg m;
    assert_true(stub_wait(rt, stub, PROTO_T_ACK, &m, WAIT_MS));
    assert_int_equal(m.corr, corr);
    proto_ack ack;
    assert_int_equal(proto_ack_decode(m.payload, m.len, &ack), PROTO_OK);
    assert_int_equal(ack.ok, ok);
    stub_msg_free(&m);
}

static void
subscribe(rt_runtime *rt, const char *stub, const char *fanout, const char *rm, uint64_t corr)
{
    send_room(rt, stub, fanout, CHATD_T_SUBSCRIBE, corr, rm);
    expect_ack(rt, stub, corr, true);
}

/* Waits for a message on stub and checks its room and seq. */
static void
expect_msg(rt_runtime *rt, const char *stub, const char *rm, uint64_t seq)
{
    stub_msg m;
    assert_true(stub_wait(rt, stub, PROTO_T_MESSAGE, &m, WAIT_MS));
    proto_msg pm;
    assert_int_equal(proto_msg_decode(m.payload, m.len, &pm), PROTO_OK);
    assert_string_equal(pm.room, rm);
    assert_int_equal(pm.seq, seq);
    assert_string_equal(pm.user, "alice");
    proto_msg_free(&pm);
    stub_msg_free(&m);
}

static void
expect_nothing(rt_runtime *rt, const char *stub, uint32_t type, double ms)
{
    stub_msg m;
    if (stub_wait(rt, stub, type, &m, ms)) {
        stub_msg_free(&m);
        fail_msg("%s got an unexpected message of type %u", stub, (unsigned)type);
    }
}

/* Queries presence through fanout and checks the users (NULL-terminated). */
static void
expect_users(rt_runtime *rt, const char *stub, const char *fanout, const char *rm, ...)
{
    static uint64_t corr = 1000;
    send_room(rt, stub, fanout, CHATD_T_PRESENCE_QUERY, ++corr, rm);
    stub_msg m;
    assert_true(stub_wait(rt, stub, PROTO_T_USERS, &m, WAIT_MS));
    assert_int_equal(m.corr, corr);
    proto_users u;
    assert_int_equal(proto_users_decode(m.payload, m.len, &u), PROTO_OK);
    va_list ap;
    va_start(ap, rm);
    size_t i = 0;
    for (const char *want; (want = va_arg(ap, const char *)); i++) {
        assert_true(i < u.count);
        assert_string_equal(u.users[i], want);
    }
    va_end(ap);
    assert_int_equal(u.count, i);
    proto_users_free(&u);
    stub_msg_free(&m);
}

static void
expect_up(rt_runtime *rt, const char *stub)
{
    stub_msg m;
    assert_true(stub_wait(rt, stub, CHATD_T_FANOUT_UP, &m, WAIT_MS));
    stub_msg_free(&m);
}

/* Two nodes, both connected. */
static rt_runtime *
open_two(int ttl_ms)
{
    configs(ttl_ms);
    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "socket");
    stub_spawn(rt, "socket2");
    assert_true(rt_spawn(rt, 0, &chatd_fanout_spec, &arg1, "fanout", NULL) != 0);
    assert_true(rt_spawn(rt, 0, &chatd_fanout_spec, &arg2, "fanout2", NULL) != 0);
    expect_up(rt, "socket");
    expect_up(rt, "socket2");
    assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"redis\""), 1);
    return rt;
}

static void
close_rt(rt_runtime *rt)
{
    rt_test_close(rt);
    stub_reset();
}

static double
metric(rt_runtime *rt, const char *name)
{
    return rt_metric_value(rt, name, NULL);
}

/* ---- tests ---- */

static void
test_subscribe_acked_after_redis(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *r = room(0, "sub");
    send_room(rt, "socket", "fanout", CHATD_T_SUBSCRIBE, 11, r);
    /* the ack comes only with Redis' confirmation: by then Redis counts it */
    expect_ack(rt, "socket", 11, true);
    assert_int_equal(numsub(r), 1);
    /* already subscribed: acked at once, nothing more asked of Redis */
    send_room(rt, "socket", "fanout", CHATD_T_SUBSCRIBE, 12, r);
    expect_ack(rt, "socket", 12, true);
    assert_int_equal(numsub(r), 1);
    close_rt(rt);
}

static void
test_requests_before_connect_are_queued(void **state)
{
    (void)state;
    configs(30000);
    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "socket");
    assert_true(rt_spawn(rt, 0, &chatd_fanout_spec, &arg1, "fanout", NULL) != 0);
    /* sent before the actor could have connected */
    const char *r = room(0, "early");
    send_room(rt, "socket", "fanout", CHATD_T_SUBSCRIBE, 21, r);
    expect_up(rt, "socket");
    expect_ack(rt, "socket", 21, true);
    assert_int_equal(numsub(r), 1);
    close_rt(rt);
}

static void
test_batch_reaches_subscribed_nodes_only(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *a = room(0, "a"), *b = room(1, "b");
    subscribe(rt, "socket2", "fanout2", a, 1);
    const char *rooms[] = { a, b };
    send_batch(rt, "fanout", rooms, 2, 6);     /* a: seq 1,3,5; b: 2,4,6 */
    expect_msg(rt, "socket2", a, 1);
    expect_msg(rt, "socket2", a, 3);
    expect_msg(rt, "socket2", a, 5);
    expect_nothing(rt, "socket2", PROTO_T_MESSAGE, 200);
    expect_nothing(rt, "socket", PROTO_T_MESSAGE, 0);
    assert_int_equal(metric(rt, "chatd_messages_published_total"), 6);
    /* node 1 subscribes nothing, node 2 only a: 3 received in all */
    assert_int_equal(metric(rt, "chatd_messages_received_total"), 3);
    close_rt(rt);
}

static void
test_unsubscribe_stops_delivery(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *a = room(0, "unsub");
    const char *rooms[] = { a };
    subscribe(rt, "socket2", "fanout2", a, 1);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket2", a, 1);
    send_room(rt, "socket2", "fanout2", CHATD_T_UNSUBSCRIBE, 0, a);
    rt_test_run_for(rt, 100);
    assert_int_equal(numsub(a), 0);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_nothing(rt, "socket2", PROTO_T_MESSAGE, 200);
    /* subscribe, unsubscribe, subscribe back to back: the last one wins */
    send_room(rt, "socket2", "fanout2", CHATD_T_SUBSCRIBE, 2, a);
    send_room(rt, "socket2", "fanout2", CHATD_T_UNSUBSCRIBE, 0, a);
    send_room(rt, "socket2", "fanout2", CHATD_T_SUBSCRIBE, 3, a);
    expect_ack(rt, "socket2", 2, true);
    expect_ack(rt, "socket2", 3, true);
    rt_test_run_for(rt, 100);
    assert_int_equal(numsub(a), 1);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket2", a, 1);
    /* unsubscribe then subscribe while live: the subscribe waits for the
     * unsubscribe's reply (hiredis keys its callbacks by channel) */
    send_room(rt, "socket2", "fanout2", CHATD_T_UNSUBSCRIBE, 0, a);
    send_room(rt, "socket2", "fanout2", CHATD_T_SUBSCRIBE, 4, a);
    expect_ack(rt, "socket2", 4, true);
    assert_int_equal(numsub(a), 1);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket2", a, 1);
    close_rt(rt);
}

static void
test_typing_crosses_nodes(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *a = room(0, "typing");
    subscribe(rt, "socket2", "fanout2", a, 1);
    proto_typing t = { 0 };
    t.room_len = strlen(a);
    memcpy(t.room, a, t.room_len);
    memcpy(t.user, "bob", 3);
    t.user_len = 3;
    t.node = NODE1;
    t.conn = 42;
    uint8_t buf[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    assert_int_equal(proto_typing_encode(&t, &b), PROTO_OK);
    assert_int_equal(rt_send(rt, rt_whereis(rt, "socket"), rt_whereis(rt, "fanout"),
                             PROTO_T_TYPING, 0, b.data, b.len), RT_OK);
    stub_msg m;
    assert_true(stub_wait(rt, "socket2", PROTO_T_TYPING, &m, WAIT_MS));
    /* the record's bytes, unchanged */
    assert_int_equal(m.len, b.len);
    assert_memory_equal(m.payload, b.data, b.len);
    stub_msg_free(&m);
    close_rt(rt);
}

static void
test_presence_across_nodes(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(300);
    const char *a = room(0, "pres");
    send_member(rt, "fanout", CHATD_T_PRESENCE_ADD, a, "carol");
    send_member(rt, "fanout", CHATD_T_PRESENCE_ADD, a, "alice");
    send_member(rt, "fanout", CHATD_T_PRESENCE_ADD, a, "dave");
    send_member(rt, "fanout2", CHATD_T_PRESENCE_ADD, a, "alice");
    send_member(rt, "fanout2", CHATD_T_PRESENCE_ADD, a, "bob");
    send_member(rt, "fanout2", CHATD_T_PRESENCE_ADD, a, "bob");     /* twice: one entry */
    rt_test_run_for(rt, 50);
    expect_users(rt, "socket", "fanout", a, "alice", "bob", "carol", "dave", NULL);
    expect_users(rt, "socket2", "fanout2", a, "alice", "bob", "carol", "dave", NULL);
    /* refreshed: still there well past the ttl */
    rt_test_run_for(rt, 700);
    expect_users(rt, "socket2", "fanout2", a, "alice", "bob", "carol", "dave", NULL);
    /* del on node 1 */
    send_member(rt, "fanout", CHATD_T_PRESENCE_DEL, a, "carol");
    rt_test_run_for(rt, 50);
    expect_users(rt, "socket2", "fanout2", a, "alice", "bob", "dave", NULL);
    /* the key itself expires when nobody refreshes it */
    redisContext *c = redis_util_sync(cfg1.redis_url);
    char key[128];
    snprintf(key, sizeof(key), "chatd:presence:%s", a);
    long long pttl = redis_int(c, "PTTL %s", key);
    assert_true(pttl > 0 && pttl <= 600);
    /* node 1 dies without a word: its users go within the ttl, alice stays
     * (node 2 has her too) */
    assert_int_equal(rt_kill(rt, rt_whereis(rt, "fanout"), RT_EXIT_KILLED, "test"), RT_OK);
    rt_test_run_for(rt, 400);
    expect_users(rt, "socket2", "fanout2", a, "alice", "bob", NULL);
    /* the query removed node 1's expired entries from Redis too */
    assert_int_equal(redis_int(c, "ZCARD %s", key), 2);
    redisFree(c);
    close_rt(rt);
}

static void
test_malformed_channel_messages_dropped(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *a = room(0, "bad"), *other = room(1, "other");
    subscribe(rt, "socket2", "fanout2", a, 1);
    rt_id id = rt_whereis(rt, "fanout2");
    redisContext *c = redis_util_sync(cfg1.redis_url);
    char chan[128];
    snprintf(chan, sizeof(chan), "chatd:room:%s", a);

    uint8_t rec[512], env[600];
    size_t elen;
    proto_mp_buf b;
    proto_msg m;
    proto_env e = { .type = PROTO_T_MESSAGE };
    /* 1: not msgpack */
    freeReplyObject(redisCommand(c, "PUBLISH %s %s", chan, "garbage"));
    /* 2: a valid message of another room */
    assert_int_equal(proto_msg_set(&m, other, strlen(other), "x", 1, "alice", 5, "hi", 2, 1, 1),
                     PROTO_OK);
    proto_mp_buf_fixed(&b, rec, sizeof(rec));
    assert_int_equal(proto_msg_encode(&m, &b), PROTO_OK);
    proto_msg_free(&m);
    e.payload = b.data;
    e.payload_len = b.len;
    assert_int_equal(proto_env_encode(&e, env, sizeof(env), &elen), PROTO_OK);
    freeReplyObject(redisCommand(c, "PUBLISH %s %b", chan, env, elen));
    /* 3: a message record under an ack's type */
    assert_int_equal(proto_msg_set(&m, a, strlen(a), "x", 1, "alice", 5, "hi", 2, 1, 1),
                     PROTO_OK);
    proto_mp_buf_fixed(&b, rec, sizeof(rec));
    assert_int_equal(proto_msg_encode(&m, &b), PROTO_OK);
    proto_msg_free(&m);
    e.type = PROTO_T_ACK;
    e.payload = b.data;
    e.payload_len = b.len;
    assert_int_equal(proto_env_encode(&e, env, sizeof(env), &elen), PROTO_OK);
    freeReplyObject(redisCommand(c, "PUBLISH %s %b", chan, env, elen));
    /* 4: a message record cut short */
    e.type = PROTO_T_MESSAGE;
    e.payload_len = b.len - 3;
    assert_int_equal(proto_env_encode(&e, env, sizeof(env), &elen), PROTO_OK);
    freeReplyObject(redisCommand(c, "PUBLISH %s %b", chan, env, elen));
    /* 5: a valid envelope with trailing bytes */
    e.payload_len = b.len;
    assert_int_equal(proto_env_encode(&e, env, sizeof(env), &elen), PROTO_OK);
    env[elen] = 0xc0;
    freeReplyObject(redisCommand(c, "PUBLISH %s %b", chan, env, elen + 1));
    /* and then a good one */
    freeReplyObject(redisCommand(c, "PUBLISH %s %b", chan, env, elen));
    redisFree(c);

    rt_log_set_level(RT_LOG_WARN);      /* the drops are logged */
    unsigned long warns = rt_log_count(RT_LOG_WARN);
    expect_msg(rt, "socket2", a, 1);
    rt_log_set_level(RT_LOG_OFF);
    assert_true(rt_log_count(RT_LOG_WARN) >= warns + 5);
    expect_nothing(rt, "socket2", PROTO_T_MESSAGE, 100);
    assert_int_equal(rt_metric_value(rt, "chatd_fanout_dropped_total", "reason=\"malformed\""),
                     5);
    assert_int_equal(metric(rt, "chatd_messages_received_total"), 1);
    assert_true(rt_alive(rt, id));
    close_rt(rt);
}

static void
test_socket_up_clears_node_state(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    const char *a = room(0, "sockup"), *b = room(1, "sockup2");
    subscribe(rt, "socket2", "fanout2", a, 1);
    subscribe(rt, "socket2", "fanout2", b, 2);
    send_member(rt, "fanout2", CHATD_T_PRESENCE_ADD, a, "alice");
    send_member(rt, "fanout", CHATD_T_PRESENCE_ADD, a, "bob");
    rt_test_run_for(rt, 50);
    expect_users(rt, "socket", "fanout", a, "alice", "bob", NULL);
    assert_int_equal(rt_send(rt, rt_whereis(rt, "socket2"), rt_whereis(rt, "fanout2"),
                             CHATD_T_SOCKET_UP, 0, NULL, 0), RT_OK);
    rt_test_run_for(rt, 100);
    assert_int_equal(numsub(a), 0);
    assert_int_equal(numsub(b), 0);
    expect_users(rt, "socket", "fanout", a, "bob", NULL);
    const char *rooms[] = { a, b };
    send_batch(rt, "fanout", rooms, 2, 2);
    expect_nothing(rt, "socket2", PROTO_T_MESSAGE, 200);
    /* and it works afresh */
    subscribe(rt, "socket2", "fanout2", a, 3);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket2", a, 1);
    close_rt(rt);
}

/* ---- a private redis-server, to kill ---- */

static const rt_child_spec restart_children[] = {
    { .name = "fanout", .actor = &chatd_fanout_spec, .arg = &arg1, .restart = RT_PERMANENT },
};

static const rt_sup_spec restart_sup = {
    .strategy = RT_ONE_FOR_ONE,
    .intensity = 1000,
    .period_ms = 10000,
    .backoff_min_ms = 20,
    .backoff_max_ms = 200,
    .children = restart_children,
    .nchildren = 1,
};

static void
test_redis_restart(void **state)
{
    (void)state;
    configs(30000);
    int port = loopback_free_port();
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    cfg1.redis_url = url;
    pid_t pid = redis_util_start(port);

    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "socket");
    assert_true(rt_sup_start(rt, 0, &restart_sup, "sup", NULL) != 0);
    expect_up(rt, "socket");
    const char *a = room(0, "restart");
    const char *rooms[] = { a };
    subscribe(rt, "socket", "fanout", a, 1);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket", a, 1);
    rt_id first = rt_whereis(rt, "fanout");

    redis_util_kill(pid);
    assert_true(rt_test_wait_dead(rt, first, WAIT_MS));
    rt_test_run_for(rt, 300);      /* restarts that cannot connect, with backoff */
    assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"redis\""), 0);
    assert_true(rt_stats_get(rt, "fanout")->crashes >= 2);
    expect_nothing(rt, "socket", CHATD_T_FANOUT_UP, 0);

    pid = redis_util_start(port);
    expect_up(rt, "socket");
    assert_true(rt_stats_get(rt, "fanout")->restarts >= 2);
    assert_int_equal(rt_metric_value(rt, "chatd_backend_up", "backend=\"redis\""), 1);
    /* what the socket does on FANOUT_UP: subscribe again */
    subscribe(rt, "socket", "fanout", a, 2);
    send_batch(rt, "fanout", rooms, 1, 1);
    expect_msg(rt, "socket", a, 1);

    close_rt(rt);
    redis_util_kill(pid);
}

/* ---- a Redis that accepts and never answers ---- */

static char silent_url[64];

/* One fanout ("fanout", cfg1) whose Redis is a silent server, beside a stub
 * "socket"; its id in *id, the server's fd in *fd (close it after). */
static rt_runtime *
open_silent(int request_timeout_ms, rt_id *id, int *fd)
{
    configs(30000);
    *fd = redis_util_silent_server(silent_url, sizeof(silent_url));
    cfg1.redis_url = silent_url;
    cfg1.request_timeout_ms = request_timeout_ms;
    rt_runtime *rt = rt_test_open(NULL);
    stub_spawn(rt, "socket");
    *id = rt_spawn(rt, 0, &chatd_fanout_spec, &arg1, "fanout", NULL);
    assert_true(*id != 0);
    return rt;
}

/* A server that accepts but never answers: the watchdog ends the wait. */
static void
test_connect_watchdog(void **state)
{
    (void)state;
    rt_id id;
    int fd;
    rt_runtime *rt = open_silent(200, &id, &fd);
    send_room(rt, "socket", "fanout", CHATD_T_PRESENCE_QUERY, 5, room(0, "wd"));
    assert_true(rt_test_wait_dead(rt, id, WAIT_MS));
    assert_int_equal(rt_stats_get(rt, "fanout")->crashes, 1);
    expect_nothing(rt, "socket", CHATD_T_FANOUT_UP, 0);
    close(fd);
    close_rt(rt);
}

/* Before Redis is up, commands wait in a queue of FANOUT_PENDING_MAX: past
 * it they are dropped and counted, and a query is answered unavailable at
 * once. */
static void
test_queue_bound_before_connect(void **state)
{
    (void)state;
    rt_id id;
    int fd;
    rt_runtime *rt = open_silent(3000, &id, &fd);
    /* each ADD is two commands (ZADD, PEXPIRE): one more than fits */
    const char *a = room(0, "bound");
    for (int i = 0; i < FANOUT_PENDING_MAX / 2 + 1; i++) {
        char user[16];
        snprintf(user, sizeof(user), "u%d", i);
        send_member(rt, "fanout", CHATD_T_PRESENCE_ADD, a, user);
        if (i % 1000 == 999)
            rt_test_run_for(rt, 10);
    }
    rt_test_run_for(rt, 50);
    assert_int_equal(rt_metric_value(rt, "chatd_fanout_dropped_total", "reason=\"queue_full\""),
                     2);
    send_room(rt, "socket", "fanout", CHATD_T_PRESENCE_QUERY, 9, a);
    expect_ack(rt, "socket", 9, false);
    assert_int_equal(rt_metric_value(rt, "chatd_fanout_dropped_total", "reason=\"queue_full\""),
                     3);
    assert_true(rt_alive(rt, id));
    expect_nothing(rt, "socket", CHATD_T_FANOUT_UP, 0);
    close(fd);
    close_rt(rt);
}

/* A stored batch is confirmed to its sender (the store) once Redis replied
 * to every PUBLISH of it; one waiting for a connection that then fails is
 * answered unavailable, so the store has it published again. */
static void
test_batch_confirmed(void **state)
{
    (void)state;
    rt_runtime *rt = open_two(30000);
    stub_spawn(rt, "store");
    const char *a = room(0, "confirm");
    const char *rooms[] = { a };
    subscribe(rt, "socket2", "fanout2", a, 1);
    send_batch_from(rt, "store", "fanout", rooms, 1, 3, 41);
    expect_ack(rt, "store", 41, true);
    assert_int_equal(metric(rt, "chatd_messages_published_total"), 3);
    for (uint64_t q = 1; q <= 3; q++)
        expect_msg(rt, "socket2", a, q);
    close_rt(rt);

    rt_id id;
    int fd;
    rt = open_silent(200, &id, &fd);
    stub_spawn(rt, "store");
    send_batch_from(rt, "store", "fanout", rooms, 1, 2, 42);
    expect_ack(rt, "store", 42, false);
    assert_true(rt_test_wait_dead(rt, id, WAIT_MS));
    close(fd);
    close_rt(rt);
}

/* A query waiting for the connection is answered unavailable when the
 * connect fails, before the actor crashes. */
static void
test_queued_query_answered_when_connect_fails(void **state)
{
    (void)state;
    rt_id id;
    int fd;
    rt_runtime *rt = open_silent(200, &id, &fd);
    send_room(rt, "socket", "fanout", CHATD_T_PRESENCE_QUERY, 6, room(0, "wdq"));
    expect_ack(rt, "socket", 6, false);
    assert_true(rt_test_wait_dead(rt, id, WAIT_MS));
    assert_int_equal(rt_stats_get(rt, "fanout")->crashes, 1);
    close(fd);
    close_rt(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_acked_after_redis),
        cmocka_unit_test(test_requests_before_connect_are_queued),
        cmocka_unit_test(test_batch_reaches_subscribed_nodes_only),
        cmocka_unit_test(test_unsubscribe_stops_delivery),
        cmocka_unit_test(test_typing_crosses_nodes),
        cmocka_unit_test(test_presence_across_nodes),
        cmocka_unit_test(test_malformed_channel_messages_dropped),
        cmocka_unit_test(test_socket_up_clears_node_state),
        cmocka_unit_test(test_redis_restart),
        cmocka_unit_test(test_connect_watchdog),
        cmocka_unit_test(test_queue_bound_before_connect),
        cmocka_unit_test(test_queued_query_answered_when_connect_fails),
        cmocka_unit_test(test_batch_confirmed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
