/*
 * The librdkafka adapter (adapters/kafka.h) against a real Apache Kafka
 * broker, without any chat actor: a small host actor opens a client and
 * drives it on the test's messages; the callbacks write into `seen`.
 *
 * Needs CHATD_KAFKA_BROKERS and CHATD_KAFKA_TOPIC (a topic of 4 partitions,
 * as scripts/test makes), and takes CHATD_KAFKA_OPTIONS (comma-separated
 * KEY=VALUE) as chatd does. Each test uses its own keys (a per-run prefix)
 * and its own consumer group, and looks only at its own keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapters/kafka.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "tests/runtime/rt_test.h"

#define NKEYS 4
#define MAXMSG 2000
#define OPTIONS_MAX 16

enum {
    HOST_PRODUCE = 300,     /* corr = how many records */
    HOST_FREE,
    HOST_COMMIT,            /* commits the offsets after what was consumed */
    HOST_CLOSE,             /* starts the group leave, polled by HOST_CLOSE_TICK */
    HOST_CLOSE_TICK,
    HOST_CONTINUE,
};

static char run_prefix[48];
static char options_buf[1024];
static const char *options[OPTIONS_MAX];
static size_t noptions;

/* What the callbacks saw. */
static struct {
    int delivered, delivered_ok;
    int free_in_report;             /* > 0: kafka_free from the n-th report */
    int opaque_bad;                 /* a report whose opaque was not ours */
    int records, dups, out_of_order, bad_value;
    int last[NKEYS];                /* last value number per key, -1: none */
    int64_t next_offset[NKEYS * 8]; /* per partition (< 32), 0: none */
    int revoked;
    bool closed;
    int produced;                   /* records queued by HOST_PRODUCE so far */
    int slot[MAXMSG];               /* the opaques: slot[i] for record i */
} seen;

typedef struct host_state {
    kafka_client *k;
    const kafka_setup *setup;
} host_state;

static void
seen_reset(void)
{
    memset(&seen, 0, sizeof(seen));
    for (int i = 0; i < NKEYS; i++)
        seen.last[i] = -1;
}

static void
on_delivered(void *ud, void *msg, rd_kafka_resp_err_t err)
{
    rt_actor *self = ud;
    host_state *st = rt_state(self);
    int *slot = msg;
    if (slot < seen.slot || slot >= seen.slot + MAXMSG || *slot != (int)(slot - seen.slot))
        seen.opaque_bad++;
    seen.delivered++;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        seen.delivered_ok++;
    if (seen.free_in_report && seen.delivered == seen.free_in_report) {
        kafka_free(st->k);          /* deferred: we are inside its poll */
        st->k = NULL;
    }
}

static void
on_record(void *ud, const rd_kafka_message_t *m)
{
    (void)ud;
    size_t plen = strlen(run_prefix);
    if (m->key_len != plen + 2 || memcmp(m->key, run_prefix, plen) != 0)
        return;                     /* another test's or run's record */
    int key = ((const char *)m->key)[plen + 1] - '0';
    char value[32];
    int n = -1;
    if (m->len < sizeof(value)) {
        memcpy(value, m->payload, m->len);
        value[m->len] = '\0';
        if (sscanf(value, "v%d", &n) != 1 || n % NKEYS != key)
            n = -1;
    }
    if (key < 0 || key >= NKEYS || n < 0) {
        seen.bad_value++;
        return;
    }
    seen.records++;
    if (n == seen.last[key])
        seen.dups++;
    else if (n < seen.last[key])
        seen.out_of_order++;
    seen.last[key] = n > seen.last[key] ? n : seen.last[key];
    if (m->partition >= 0 && m->partition < NKEYS * 8)
        seen.next_offset[m->partition] = m->offset + 1;
}

static void
on_readable(void *ud)
{
    rt_actor *self = ud;
    host_state *st = rt_state(self);
    if (kafka_consume(st->k, 64) == 64)
        rt_send_after(self, 0, HOST_CONTINUE, 0, NULL, 0);
}

static void
on_revoked(void *ud, const rd_kafka_topic_partition_list_t *parts)
{
    (void)ud;
    seen.revoked += parts->cnt;
}

static void
on_fatal(void *ud, const char *why)
{
    rt_crash(ud, "kafka fatal error: %s", why);
}

static const kafka_callbacks callbacks = {
    .delivered = on_delivered,
    .readable = on_readable,
    .record = on_record,
    .revoked = on_revoked,
    .fatal = on_fatal,
};

static char open_err[512];

static int
host_init(rt_actor *self, const void *arg)
{
    host_state *st = rt_state(self);
    st->setup = arg;
    kafka_setup s = *st->setup;
    s.ud = self;
    st->k = kafka_open(self, &s, open_err, sizeof(open_err));
    return st->k ? RT_OK : RT_ERR;
}

static void
produce(host_state *st, int count)
{
    for (int i = 0; i < count && seen.produced < MAXMSG; i++) {
        int n = seen.produced++;
        char key[64], value[32];
        snprintf(key, sizeof(key), "%s-%d", run_prefix, n % NKEYS);
        int len = snprintf(value, sizeof(value), "v%d", n);
        char *v = strdup(value);
        assert_non_null(v);
        seen.slot[n] = n;
        rd_kafka_resp_err_t err = kafka_produce(st->k, getenv("CHATD_KAFKA_TOPIC"), key,
                                                strlen(key), v, (size_t)len, &seen.slot[n]);
        if (err) {
            free(v);
            fail_msg("kafka_produce refused record %d: %s", n, rd_kafka_err2str(err));
        }
    }
    kafka_poll(st->k);
}

static void
commit(host_state *st)
{
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < NKEYS * 8; p++)
        if (seen.next_offset[p])
            rd_kafka_topic_partition_list_add(offsets, getenv("CHATD_KAFKA_TOPIC"),
                                              p)->offset = seen.next_offset[p];
    kafka_commit(st->k, offsets);
    rd_kafka_topic_partition_list_destroy(offsets);
}

static int
host_handle(rt_actor *self, const proto_env *msg)
{
    host_state *st = rt_state(self);
    if (!st->k)
        return RT_OK;               /* freed: nothing more to drive */
    switch (msg->type) {
    case HOST_PRODUCE:
        produce(st, (int)msg->corr);
        break;
    case HOST_FREE:
        kafka_free(st->k);
        st->k = NULL;
        break;
    case HOST_COMMIT:
        commit(st);
        break;
    case HOST_CLOSE:
        assert_int_equal(kafka_close_start(st->k), 0);
        rt_send_after(self, 10, HOST_CLOSE_TICK, 0, NULL, 0);
        break;
    case HOST_CLOSE_TICK:
        if (kafka_close_poll(st->k))
            seen.closed = true;
        else
            rt_send_after(self, 10, HOST_CLOSE_TICK, 0, NULL, 0);
        break;
    case HOST_CONTINUE:
        on_readable(self);
        break;
    }
    return RT_OK;
}

static void
host_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    host_state *st = rt_state(self);
    kafka_free(st->k);
    st->k = NULL;
}

static const rt_actor_spec host_spec = {
    .name = "host",
    .state_size = sizeof(host_state),
    .init = host_init,
    .handle = host_handle,
    .terminate = host_terminate,
};

static rt_metric *up_gauge;

/* A setup for a client of type on the test broker; group names a consumer
 * group (with the run prefix), NULL for a producer. */
static kafka_setup
setup_for(rt_runtime *rt, rd_kafka_type_t type, const char *group)
{
    static char group_id[96];
    static const char *defaults[16];
    size_t d = 0;
    if (type == RD_KAFKA_PRODUCER) {
        defaults[d++] = "acks";
        defaults[d++] = "all";
        defaults[d++] = "enable.idempotence";
        defaults[d++] = "true";
        defaults[d++] = "linger.ms";
        defaults[d++] = "1";
    } else {
        snprintf(group_id, sizeof(group_id), "%s-%s", run_prefix, group);
        defaults[d++] = "group.id";
        defaults[d++] = group_id;
        defaults[d++] = "enable.auto.commit";
        defaults[d++] = "false";
        defaults[d++] = "auto.offset.reset";
        defaults[d++] = "earliest";
    }
    defaults[d] = NULL;
    const char *brokers = getenv("CHATD_KAFKA_BROKERS"), *topic = getenv("CHATD_KAFKA_TOPIC");
    if (!brokers || !topic)
        fail_msg("CHATD_KAFKA_BROKERS and CHATD_KAFKA_TOPIC are not set: run the adapter "
                 "tests through scripts/test, which starts the broker");
    up_gauge = rt_metric_get(rt, RT_GAUGE, "test_kafka_up", NULL, "adapter test gauge");
    return (kafka_setup){
        .type = type, .brokers = brokers, .defaults = defaults,
        .options = options, .noptions = noptions,
        .topic = topic, .up = up_gauge, .cb = &callbacks,
    };
}

static rt_id
spawn_host(rt_runtime *rt, const kafka_setup *s)
{
    rt_id id = rt_spawn(rt, 0, &host_spec, s, "host", NULL);
    if (!id)
        fail_msg("kafka_open failed: %s", open_err);
    return id;
}

static void
send_host(rt_runtime *rt, rt_id host, uint32_t type, uint64_t corr)
{
    assert_int_equal(rt_send(rt, 0, host, type, corr, NULL, 0), RT_OK);
}

static bool
all_delivered(void *ud)
{
    return seen.delivered >= *(int *)ud;
}

static bool
all_consumed(void *ud)
{
    return seen.records >= *(int *)ud;
}

static bool
gauge_down(void *ud)
{
    return rt_metric_value(ud, "test_kafka_up", NULL) == 0;
}

static bool
is_closed(void *ud)
{
    (void)ud;
    return seen.closed;
}

/* The offset the group committed on each partition of the topic. */
static void
committed(const char *group, int64_t out[NKEYS])
{
    char err[256], group_id[96];
    snprintf(group_id, sizeof(group_id), "%s-%s", run_prefix, group);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", getenv("CHATD_KAFKA_BROKERS"),
                                       err, sizeof(err)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group_id, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(NKEYS);
    for (int p = 0; p < NKEYS; p++)
        rd_kafka_topic_partition_list_add(parts, getenv("CHATD_KAFKA_TOPIC"), p);
    assert_int_equal(rd_kafka_committed(rk, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < NKEYS; p++)
        out[p] = parts->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

/* --- tests ---------------------------------------------------------------- */

/* Bad configuration: NULL with the reason, nothing left open (the loop is
 * empty at rt_test_close, ASan sees no leak). */
static void
test_open_refuses_bad_options(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    kafka_setup s = setup_for(rt, RD_KAFKA_PRODUCER, NULL);
    const char *unknown[] = { "no.such.property=1" };
    s.options = unknown;
    s.noptions = 1;
    assert_int_equal(rt_spawn(rt, 0, &host_spec, &s, "host", NULL), 0);
    assert_non_null(strstr(open_err, "no.such.property"));
    const char *no_eq[] = { "linger.ms" };
    s.options = no_eq;
    assert_int_equal(rt_spawn(rt, 0, &host_spec, &s, "host", NULL), 0);
    assert_non_null(strstr(open_err, "expected KEY=VALUE"));
    /* An override beats a default: a bad value for a defaulted key fails. */
    const char *bad_acks[] = { "acks=sometimes" };
    s.options = bad_acks;
    assert_int_equal(rt_spawn(rt, 0, &host_spec, &s, "host", NULL), 0);
    assert_non_null(strstr(open_err, "acks=sometimes"));
    rt_test_close(rt);
}

/* Produce, every report with our opaque; a fresh group consumes every
 * record once, in order per key; the commit is the group's committed
 * offset; the group is left cleanly; the gauge follows. */
static void
test_produce_consume_commit_close(void **state)
{
    (void)state;
    enum { N = 400 };
    seen_reset();
    rt_runtime *rt = rt_test_open(NULL);
    kafka_setup ps = setup_for(rt, RD_KAFKA_PRODUCER, NULL);
    rt_id prod = spawn_host(rt, &ps);
    send_host(rt, prod, HOST_PRODUCE, N);
    int want = N;
    assert_true(rt_test_run_until(rt, all_delivered, &want, 15000));
    assert_int_equal(seen.delivered_ok, N);
    assert_int_equal(seen.opaque_bad, 0);
    assert_true(rt_metric_value(rt, "test_kafka_up", NULL) == 1);
    assert_int_equal(rt_stop_child(rt, prod), RT_OK);
    assert_true(rt_test_wait_dead(rt, prod, 5000));
    assert_true(rt_test_run_until(rt, gauge_down, rt, 1000));  /* freed at the reap */

    kafka_setup cs = setup_for(rt, RD_KAFKA_CONSUMER, "rt");
    rt_id cons = spawn_host(rt, &cs);
    assert_true(rt_test_run_until(rt, all_consumed, &want, 20000));
    rt_test_run_for(rt, 200);       /* a late duplicate would come now */
    assert_int_equal(seen.records, N);
    assert_int_equal(seen.dups, 0);
    assert_int_equal(seen.out_of_order, 0);
    assert_int_equal(seen.bad_value, 0);
    for (int key = 0; key < NKEYS; key++)
        assert_int_equal(seen.last[key], N - NKEYS + key);

    send_host(rt, cons, HOST_COMMIT, 0);
    rt_test_run_for(rt, 500);
    send_host(rt, cons, HOST_CLOSE, 0);
    assert_true(rt_test_run_until(rt, is_closed, NULL, 5000));
    assert_true(seen.revoked > 0);  /* leaving revokes what we held */
    int64_t off[NKEYS];
    committed("rt", off);
    for (int p = 0; p < NKEYS; p++)
        if (seen.next_offset[p])
            assert_int_equal(off[p], seen.next_offset[p]);
    assert_int_equal(rt_stop_child(rt, cons), RT_OK);
    assert_true(rt_test_wait_dead(rt, cons, 5000));
    rt_test_close(rt);
}

/* kafka_free from inside a delivery report: the free waits until the poll
 * that called us returns, and no report comes after it, though many were
 * still to come. The watcher goes with the client (rt_test_close checks the
 * loop is empty; ASan checks nothing is touched after the free). */
static void
test_free_inside_report_is_deferred(void **state)
{
    (void)state;
    enum { N = 200 };
    seen_reset();
    seen.free_in_report = 1;
    rt_runtime *rt = rt_test_open(NULL);
    kafka_setup ps = setup_for(rt, RD_KAFKA_PRODUCER, NULL);
    rt_id prod = spawn_host(rt, &ps);
    send_host(rt, prod, HOST_PRODUCE, N);
    int one = 1;
    assert_true(rt_test_run_until(rt, all_delivered, &one, 15000));
    rt_test_run_for(rt, 500);
    assert_int_equal(seen.delivered, 1);
    assert_int_equal(seen.opaque_bad, 0);
    assert_true(rt_metric_value(rt, "test_kafka_up", NULL) == 0);
    assert_true(rt_alive(rt, prod));
    rt_test_close(rt);
}

/* kafka_free with every record still queued: no report at all, and it does
 * not wait for the broker. */
static void
test_free_drops_pending_reports(void **state)
{
    (void)state;
    seen_reset();
    rt_runtime *rt = rt_test_open(NULL);
    kafka_setup ps = setup_for(rt, RD_KAFKA_PRODUCER, NULL);
    rt_id prod = spawn_host(rt, &ps);
    send_host(rt, prod, HOST_PRODUCE, 500);
    send_host(rt, prod, HOST_FREE, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rt_test_run_for(rt, 300);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(seen.produced, 500);
    assert_int_equal(seen.delivered, 0);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms < 2000);
    rt_test_close(rt);
}

int
main(void)
{
    snprintf(run_prefix, sizeof(run_prefix), "a%ld-%d", (long)time(NULL), (int)getpid());
    const char *env = getenv("CHATD_KAFKA_OPTIONS");
    snprintf(options_buf, sizeof(options_buf), "%s", env ? env : "");
    for (char *save = NULL, *kv = strtok_r(options_buf, ",", &save);
         kv && noptions < OPTIONS_MAX; kv = strtok_r(NULL, ",", &save))
        options[noptions++] = kv;
    rt_log_level level;
    if (getenv("CHATD_TEST_LOG") && rt_log_parse_level(getenv("CHATD_TEST_LOG"), &level))
        rt_log_set_level(level);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refuses_bad_options),
        cmocka_unit_test(test_produce_consume_commit_close),
        cmocka_unit_test(test_free_inside_report_is_deferred),
        cmocka_unit_test(test_free_drops_pending_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
