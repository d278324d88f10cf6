/*
 * The producer and consumer actors against a real Apache Kafka broker.
 *
 * Needs CHATD_KAFKA_BROKERS (a broker holding cfg.kafka_topic, as
 * services_start_kafka --topic chatd-test --partitions 4 makes) and
 * CHATD_KAFKA_OPTIONS="session.timeout.ms=6000,fetch.wait.max.ms=10".
 * The broker-down test alone runs against the mock stand-in
 * (CHATD_MOCK_KAFKA_BROKERS and its control socket CHATD_KAFKA_CONTROL): it takes
 * the broker down and up several times within one test in milliseconds, which a
 * real broker cannot do on one machine (a restart takes seconds and would stall
 * the tests after it); the real broker's kill and restart are in
 * tests/integration/faults.test.mjs. The topic is shared
 * between tests and runs, so each test uses its own rooms (a per-run prefix)
 * and its own consumer group, and looks only at its own rooms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "actors/consumer.h"
#include "actors/producer.h"
#include "proto/envelope.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "tests/actors/harness.h"

static char run_prefix[32];
static chatd_config cfg;
static char group_buf[64];

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* setup_config_on: the test's config for the broker named by the environment
 * variable brokers_env (also required: the rest of the comma list needs). */
static void
setup_config_on(const char *brokers_env, const char *needs, const char *group_suffix)
{
    harness_config(&cfg, needs);
    cfg.kafka_brokers = getenv(brokers_env);
    cfg.produce_timeout_ms = 1500;
    cfg.request_timeout_ms = 1000;
    snprintf(group_buf, sizeof(group_buf), "%s-%s", run_prefix, group_suffix);
    cfg.kafka_group = group_buf;
}

static void
setup_config(const char *group_suffix)
{
    setup_config_on("CHATD_KAFKA_BROKERS", "CHATD_KAFKA_BROKERS", group_suffix);
}

static void
room_name(char *out, size_t cap, const char *test, int i)
{
    snprintf(out, cap, "%s-%s-%d", run_prefix, test, i);
}

static rt_id
spawn(rt_runtime *rt, const rt_actor_spec *spec, const char *name)
{
    int err = 0;
    rt_id id = rt_spawn(rt, 0, spec, &cfg, name, &err);
    assert_true(id != 0);
    return id;
}

/* A runtime with a stub "socket" (its id in *sock), a stub "store" unless
 * store is NULL (its id there), and a producer. */
static rt_runtime *
open_producer(rt_id *sock, rt_id *store)
{
    rt_runtime *rt = rt_test_open(NULL);
    *sock = stub_spawn(rt, CHATD_SOCKET);
    if (store)
        *store = stub_spawn(rt, CHATD_STORE);
    spawn(rt, &chatd_producer_spec, CHATD_PRODUCER);
    return rt;
}

static void
send_message(rt_runtime *rt, rt_id from, const char *room, int n, uint64_t corr)
{
    char id[32], text[64];
    snprintf(id, sizeof(id), "m%d", n);
    snprintf(text, sizeof(text), "hello %d", n);
    proto_msg m;
    assert_int_equal(proto_msg_set(&m, room, strlen(room), id, strlen(id), "alice", 5, text,
                                   strlen(text), 1700000000000ull + (uint64_t)n, 0),
                     PROTO_OK);
    uint8_t buf[512];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    assert_int_equal(proto_msg_encode(&m, &b), PROTO_OK);
    proto_msg_free(&m);
    assert_int_equal(rt_send_named(rt, from, CHATD_PRODUCER, PROTO_T_MESSAGE, corr, b.data,
                                   b.len), RT_OK);
}

static proto_ack
decode_ack(const stub_msg *s)
{
    proto_ack a;
    assert_int_equal(proto_ack_decode(s->payload, s->len, &a), PROTO_OK);
    return a;
}

static void
send_ack(rt_runtime *rt, rt_id from, rt_id to, uint64_t corr, bool ok)
{
    proto_ack a = { .ok = ok };
    if (!ok)
        proto_ack_set_error(&a, PROTO_ACK_UNAVAILABLE, "test says no");
    uint8_t buf[400];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    assert_int_equal(proto_ack_encode(&a, &b), PROTO_OK);
    rt_send(rt, from, to, PROTO_T_ACK, corr, b.data, b.len);
}

/* Stops an actor through its shutdown hook and waits for it to end;
 * returns how long that took. */
static double
stop_actor(rt_runtime *rt, rt_id id)
{
    double t0 = now_ms();
    assert_int_equal(rt_stop_child(rt, id), RT_OK);
    assert_true(rt_test_wait_dead(rt, id, 10000));
    return now_ms() - t0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Produces n messages into rooms (i % nrooms) from the stub "socket" and
 * waits until every one is acked ok. */
static void
produce_all(rt_runtime *rt, rt_id sock, const char *test, int first, int n, int nrooms)
{
    for (int i = first; i < first + n; i++) {
        char room[80];
        room_name(room, sizeof(room), test, i % nrooms);
        send_message(rt, sock, room, i, 1000000 + (uint64_t)i);
    }
    for (int i = 0; i < n; i++) {
        stub_msg s;
        assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 10000));
        assert_true(decode_ack(&s).ok);
        stub_msg_free(&s);
    }
}

/* --- producer ------------------------------------------------------------ */

static void
test_produce_ack_after_delivery(void **state)
{
    (void)state;
    setup_config("p1");
    rt_id sock;
    rt_runtime *rt = open_producer(&sock, NULL);

    char room[80];
    room_name(room, sizeof(room), "ack", 0);
    double before = rt_metric_value(rt, "chatd_messages_produced_total", NULL);
    send_message(rt, sock, room, 1, 42);
    stub_msg s;
    assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 5000));
    assert_int_equal(s.corr, 42);
    assert_true(decode_ack(&s).ok);
    /* The ok came from the delivery report, which counts the delivery. */
    assert_true(rt_metric_value(rt, "chatd_messages_produced_total", NULL) == before + 1);
    assert_true(rt_metric_value(rt, "chatd_backend_up", "backend=\"kafka\"") == 1);
    stub_msg_free(&s);

    /* A message that does not decode: bad_request, at once. */
    assert_int_equal(rt_send_named(rt, sock, CHATD_PRODUCER, PROTO_T_MESSAGE, 43, "\xc1", 1),
                     RT_OK);
    assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 1000));
    assert_int_equal(s.corr, 43);
    proto_ack a = decode_ack(&s);
    assert_false(a.ok);
    assert_int_equal(a.code, PROTO_ACK_BAD_REQUEST);
    stub_msg_free(&s);

    /* Latency, one message at a time. */
    enum { N = 200 };
    static double lat[N];
    for (int i = 0; i < N; i++) {
        double t0 = now_ms();
        send_message(rt, sock, room, 100 + i, 100 + (uint64_t)i);
        assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 5000));
        lat[i] = now_ms() - t0;
        assert_int_equal(s.corr, 100 + (uint64_t)i);
        assert_true(decode_ack(&s).ok);
        stub_msg_free(&s);
    }
    qsort(lat, N, sizeof(lat[0]), cmp_double);
    print_message("produce->ack latency (one at a time, %d msgs): median %.2f ms, p99 %.2f ms\n",
                  N, lat[N / 2], lat[N * 99 / 100]);

    double shut = stop_actor(rt, rt_whereis(rt, CHATD_PRODUCER));
    print_message("producer shutdown took %.1f ms\n", shut);
    rt_test_close(rt);
    stub_reset();
}

static int
control(const char *cmd)
{
    const char *path = getenv("CHATD_KAFKA_CONTROL");
    if (!path) {
        print_error("CHATD_KAFKA_CONTROL is not set (the mock broker's control socket)\n");
        fail();
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char line[128];
    int n = snprintf(line, sizeof(line), "%s\n", cmd);
    assert_int_equal(write(fd, line, (size_t)n), n);
    char reply[256];
    ssize_t r = read(fd, reply, sizeof(reply) - 1);
    close(fd);
    assert_true(r > 0);
    reply[r] = '\0';
    return strncmp(reply, "ok", 2) == 0 ? 0 : -1;
}

static void
test_broker_down_then_up(void **state)
{
    (void)state;
    setup_config_on("CHATD_MOCK_KAFKA_BROKERS", "CHATD_MOCK_KAFKA_BROKERS,CHATD_KAFKA_CONTROL",
                    "p3");
    rt_id sock;
    rt_runtime *rt = open_producer(&sock, NULL);
    char room[80];
    room_name(room, sizeof(room), "down", 0);

    /* Connected first. */
    send_message(rt, sock, room, 1, 1);
    stub_msg s;
    assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 5000));
    assert_true(decode_ack(&s).ok);
    stub_msg_free(&s);

    assert_int_equal(control("down all"), 0);
    double t0 = now_ms();
    send_message(rt, sock, room, 2, 2);
    assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, cfg.produce_timeout_ms + 1000));
    double took = now_ms() - t0;
    assert_int_equal(s.corr, 2);
    proto_ack a = decode_ack(&s);
    assert_false(a.ok);
    assert_int_equal(a.code, PROTO_ACK_UNAVAILABLE);
    stub_msg_free(&s);
    assert_true(rt_metric_value(rt, "chatd_backend_up", "backend=\"kafka\"") == 0);
    print_message("broker down: unavailable after %.0f ms (produce_timeout_ms %d)\n", took,
                  cfg.produce_timeout_ms);
    assert_true(took < cfg.produce_timeout_ms + 300);

    /* Shutdown with a delivery pending: bounded by produce_timeout_ms, and
     * the pending request gets its unavailable. */
    send_message(rt, sock, room, 4, 4);
    rt_test_run_for(rt, 50);
    took = stop_actor(rt, rt_whereis(rt, CHATD_PRODUCER));
    print_message("producer shutdown with the broker down took %.0f ms\n", took);
    assert_true(took < cfg.produce_timeout_ms + 300);
    assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 100));
    assert_int_equal(s.corr, 4);
    assert_false(decode_ack(&s).ok);
    stub_msg_free(&s);
    spawn(rt, &chatd_producer_spec, CHATD_PRODUCER);

    assert_int_equal(control("up all"), 0);
    /* Back: a retry goes through within a few reconnect backoffs. */
    bool ok = false;
    t0 = now_ms();
    for (uint64_t corr = 10; !ok && now_ms() - t0 < 15000; corr++) {
        send_message(rt, sock, room, 3, corr);
        assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, cfg.produce_timeout_ms + 1000));
        assert_int_equal(s.corr, corr);
        ok = decode_ack(&s).ok;
        stub_msg_free(&s);
    }
    assert_true(ok);
    print_message("broker up: produce ok again after %.0f ms\n", now_ms() - t0);
    /* Late reports of the timed-out message must not answer twice. */
    rt_test_run_for(rt, 300);
    assert_int_equal(stub_pending(CHATD_SOCKET), 0);

    /* Ended (not shut down) with messages in flight to a dead broker: the
     * teardown purges instead of waiting. */
    assert_int_equal(control("down all"), 0);
    for (int i = 0; i < 100; i++)
        send_message(rt, sock, room, 10 + i, 1000 + (uint64_t)i);
    rt_test_run_for(rt, 100);
    t0 = now_ms();
    rt_test_close(rt);
    took = now_ms() - t0;
    assert_int_equal(control("up all"), 0);
    print_message("runtime teardown with 100 deliveries pending took %.0f ms\n", took);
    assert_true(took < 1000);
    stub_reset();
}

/* --- consumer ------------------------------------------------------------ */

#define MAX_ROOMS 16

typedef struct seen {
    int last[MAX_ROOMS];        /* last message number seen per room, -1: none */
    int count;                  /* messages of this test's rooms */
    int dups;
    int batches;
} seen;

/* Asserts that m is the message send_message(room, n) made, as sent. */
static void
assert_sent_content(const proto_msg *m, int n)
{
    char text[64];
    snprintf(text, sizeof(text), "hello %d", n);
    assert_int_equal(m->user_len, 5);
    assert_memory_equal(m->user, "alice", 5);
    assert_int_equal(m->text_len, strlen(text));
    assert_memory_equal(m->text, text, m->text_len);
    assert_int_equal(m->ts, 1700000000000ull + (uint64_t)n);
    assert_int_equal(m->seq, 0);
}

/* Checks a batch: messages of this test's rooms in per-room order, each
 * with the content it was sent with. */
static void
record_batch(const stub_msg *s, const char *test, seen *sn)
{
    proto_batch b;
    assert_int_equal(proto_batch_decode(s->payload, s->len, &b), PROTO_OK);
    char prefix[80];
    snprintf(prefix, sizeof(prefix), "%s-%s-", run_prefix, test);
    for (size_t i = 0; i < b.count; i++) {
        proto_msg *m = &b.msgs[i];
        if (strncmp(m->room, prefix, strlen(prefix)) != 0)
            continue;
        int room = atoi(m->room + strlen(prefix));
        int n = atoi(m->id + 1);
        assert_true(room >= 0 && room < MAX_ROOMS);
        assert_sent_content(m, n);
        if (n <= sn->last[room]) {
            sn->dups++;
        } else {
            sn->count++;
            sn->last[room] = n;
        }
    }
    sn->batches++;
    proto_batch_free(&b);
}

static void
seen_init(seen *sn)
{
    memset(sn, 0, sizeof(*sn));
    for (int i = 0; i < MAX_ROOMS; i++)
        sn->last[i] = -1;
}

/* A second set of rooms whose messages store_until records too. */
static const char *also_test;
static seen *also_seen;
static double first_batch_at;   /* when store_until got its first batch */

/* Receives batches as the store, acking each, until want messages of test's
 * rooms were seen or timeout_ms passed. */
static void
store_until(rt_runtime *rt, rt_id store, const char *test, seen *sn, int want,
            double timeout_ms)
{
    double t0 = now_ms();
    while (sn->count < want && now_ms() - t0 < timeout_ms) {
        stub_msg s;
        if (!stub_wait(rt, CHATD_STORE, PROTO_T_MESSAGE_BATCH, &s, 200))
            continue;
        if (!first_batch_at)
            first_batch_at = now_ms();
        record_batch(&s, test, sn);
        if (also_seen)
            record_batch(&s, also_test, also_seen);
        send_ack(rt, store, s.from, s.corr, true);
        stub_msg_free(&s);
    }
}

static void
produce_garbage(const char *room)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", cfg.kafka_brokers, err,
                                       sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(cfg.kafka_topic),
                                       RD_KAFKA_V_KEY(room, strlen(room)),
                                       RD_KAFKA_V_VALUE("not an envelope", 15),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
    assert_int_equal(rd_kafka_flush(rk, 5000), 0);
    rd_kafka_destroy(rk);
}

/* Every message Kafka acked comes back to a consumer exactly once, in order
 * per room, with its content: a fresh group reads the topic from the start
 * and must see the 1001 messages of this test's rooms, each room's in the
 * order they were sent, none twice (record_batch counts a repeat or a step
 * back as a dup), none missing. */
static void
test_produce_1000(void **state)
{
    (void)state;
    enum { N = 1000, ROOMS = 10 };
    setup_config("p2");
    rt_id sock, store;
    rt_runtime *rt = open_producer(&sock, &store);
    double t0 = now_ms();
    produce_all(rt, sock, "burst", 0, 1, 1);     /* connect, get a producer id */
    double first = now_ms() - t0;
    t0 = now_ms();
    produce_all(rt, sock, "burst", 1, N, ROOMS);
    print_message("first ack after %.1f ms; then %d messages produced and acked in %.1f ms\n",
                  first, N, now_ms() - t0);

    rt_id cons = spawn(rt, &chatd_consumer_spec, CHATD_CONSUMER);
    seen sn;
    seen_init(&sn);
    t0 = now_ms();
    store_until(rt, store, "burst", &sn, N + 1, 20000);
    print_message("consumed back: %d of %d in %.0f ms, %d dups\n", sn.count, N + 1,
                  now_ms() - t0, sn.dups);
    assert_int_equal(sn.count, N + 1);
    /* Room r got the numbers r, r + ROOMS, ... up to N: the last is the
     * highest, and with no step back and the count right none is missing. */
    for (int r = 0; r < ROOMS; r++)
        assert_int_equal(sn.last[r], N - (N - r) % ROOMS);
    /* A late duplicate would come right after: keep reading a little. */
    store_until(rt, store, "burst", &sn, N + 2, 500);
    assert_int_equal(sn.count, N + 1);
    assert_int_equal(sn.dups, 0);
    stop_actor(rt, cons);
    rt_test_close(rt);
    stub_reset();
}

static void
test_consume_in_order_and_commit(void **state)
{
    (void)state;
    enum { N = 1000, ROOMS = 10, BACKLOG = 10000 };
    setup_config("c1");
    rt_id sock, store;
    rt_runtime *rt = open_producer(&sock, &store);
    produce_all(rt, sock, "order", 0, N / 2, ROOMS);
    char room[80];
    room_name(room, sizeof(room), "order", 0);
    produce_garbage(room);
    double poison0 = rt_metric_value(rt, "chatd_kafka_poison_total", NULL);

    /* Then a backlog, to time reading it (acks by a stub store). */
    for (int k = 0; k < BACKLOG / 1000; k++)
        produce_all(rt, sock, "backlog", k * 1000, 1000, ROOMS);

    double t0 = now_ms();
    rt_id cons = spawn(rt, &chatd_consumer_spec, CHATD_CONSUMER);
    seen sn, bl;
    seen_init(&sn);
    seen_init(&bl);
    also_test = "backlog";
    also_seen = &bl;
    first_batch_at = 0;
    store_until(rt, store, "order", &sn, N / 2, 20000);
    double first = now_ms() - t0;
    assert_int_equal(sn.count, N / 2);
    also_seen = NULL;
    t0 = now_ms();
    store_until(rt, store, "backlog", &bl, BACKLOG, 20000);
    assert_int_equal(bl.count, BACKLOG);
    assert_int_equal(bl.dups, 0);
    double dt = now_ms() - first_batch_at;
    print_message("consumer: %d msgs read and acked in %.0f ms from the first batch "
                  "(%.0f msgs/s, %d batches)\n", N / 2 + BACKLOG, dt,
                  (N / 2 + BACKLOG) / (dt / 1e3), bl.batches);
    /* The second half arrives while the consumer is running. */
    for (int i = N / 2; i < N; i++) {
        room_name(room, sizeof(room), "order", i % ROOMS);
        send_message(rt, sock, room, i, (uint64_t)i);
    }
    t0 = now_ms();
    store_until(rt, store, "order", &sn, N, 20000);
    double second = now_ms() - t0;
    assert_int_equal(sn.count, N);
    assert_int_equal(sn.dups, 0);
    assert_true(rt_metric_value(rt, "chatd_kafka_poison_total", NULL) >= poison0 + 1);
    print_message("consumer: first %d msgs after %.0f ms (incl. group join), next %d produced "
                  "and consumed in %.0f ms, %d batches\n", N / 2, first, N / 2, second,
                  sn.batches);
    /* Drain the socket stub's acks. */
    for (int i = N / 2; i < N; i++) {
        stub_msg s;
        assert_true(stub_wait(rt, CHATD_SOCKET, PROTO_T_ACK, &s, 5000));
        stub_msg_free(&s);
    }
    /* Let the last commit go out, then leave the group cleanly. */
    rt_test_run_for(rt, 200);
    double shut = stop_actor(rt, cons);
    print_message("consumer shutdown (commit + group leave) took %.0f ms\n", shut);
    rt_test_close(rt);
    stub_reset();

    /* Same group, new runtime: nothing old comes again, a new message does. */
    rt = open_producer(&sock, &store);
    cons = spawn(rt, &chatd_consumer_spec, CHATD_CONSUMER);
    room_name(room, sizeof(room), "order", 1);
    send_message(rt, sock, room, N + 1, 1);
    seen_init(&sn);
    store_until(rt, store, "order", &sn, 1, 20000);
    assert_int_equal(sn.count, 1);
    assert_int_equal(sn.last[1], N + 1);
    assert_int_equal(sn.dups, 0);
    stop_actor(rt, cons);
    rt_test_close(rt);
    stub_reset();
}

static void
test_unacked_batch_resent_and_restart_resumes(void **state)
{
    (void)state;
    enum { N = 300, ROOMS = 4 };
    setup_config("c2");
    rt_id sock, store;
    rt_runtime *rt = open_producer(&sock, &store);
    produce_all(rt, sock, "resend", 0, N, ROOMS);

    rt_id cons = spawn(rt, &chatd_consumer_spec, CHATD_CONSUMER);
    /* No ack: the same batch (same corr) comes again after request_timeout_ms. */
    stub_msg s1, s2;
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_MESSAGE_BATCH, &s1, 20000));
    double t0 = now_ms();
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_MESSAGE_BATCH, &s2, 5000));
    double gap = now_ms() - t0;
    assert_int_equal(s1.corr, s2.corr);
    assert_int_equal(s1.len, s2.len);
    assert_memory_equal(s1.payload, s2.payload, s1.len);
    assert_true(gap >= cfg.request_timeout_ms - 50);
    /* Not ok: again after the short backoff. */
    send_ack(rt, store, s2.from, s2.corr, false);
    stub_msg_free(&s2);
    t0 = now_ms();
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_MESSAGE_BATCH, &s2, 5000));
    assert_int_equal(s1.corr, s2.corr);
    assert_true(now_ms() - t0 < cfg.request_timeout_ms);
    stub_msg_free(&s2);
    /* Ack it: offsets committed, reading goes on. */
    seen sn;
    seen_init(&sn);
    record_batch(&s1, "resend", &sn);
    send_ack(rt, store, s1.from, s1.corr, true);
    stub_msg_free(&s1);
    /* Take one more batch without acking it, then crash the consumer. */
    if (sn.count < N) {
        assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_MESSAGE_BATCH, &s1, 5000));
        stub_msg_free(&s1);
    }
    rt_test_run_for(rt, 200);
    rt_kill(rt, cons, RT_EXIT_CRASH, "test");
    assert_true(rt_test_wait_dead(rt, cons, 2000));
    rt_test_close(rt);
    stub_reset();

    /* A new member of the group resumes from the committed offsets: every
     * message of the test comes (those after the acked batch again). */
    rt = rt_test_open(NULL);
    store = stub_spawn(rt, CHATD_STORE);
    cons = spawn(rt, &chatd_consumer_spec, CHATD_CONSUMER);
    t0 = now_ms();
    store_until(rt, store, "resend", &sn, N, 30000);
    print_message("restart: %d msgs resumed after %.0f ms, %d dups\n", sn.count,
                  now_ms() - t0, sn.dups);
    assert_int_equal(sn.count, N);
    stop_actor(rt, cons);
    rt_test_close(rt);
    stub_reset();
}

int
main(void)
{
    snprintf(run_prefix, sizeof(run_prefix), "t%ld-%d", (long)time(NULL), (int)getpid());
    rt_log_level level;
    if (getenv("CHATD_TEST_LOG") && rt_log_parse_level(getenv("CHATD_TEST_LOG"), &level))
        rt_log_set_level(level);       /* CHATD_TEST_LOG=info shows the actors' lines */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_produce_ack_after_delivery),
        cmocka_unit_test(test_produce_1000),
        cmocka_unit_test(test_consume_in_order_and_commit),
        cmocka_unit_test(test_unacked_batch_resent_and_restart_resumes),
        cmocka_unit_test(test_broker_down_then_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
