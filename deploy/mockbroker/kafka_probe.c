/*
 * chatd-kafka-probe: checks a Kafka broker (real or chatd-mockbroker) end to end.
 *
 *   chatd-kafka-probe BROKERS TOPIC produce   [TIMEOUT_MS]
 *   chatd-kafka-probe BROKERS TOPIC roundtrip [TIMEOUT_MS]
 *   chatd-kafka-probe BROKERS TOPIC topic=N   [TIMEOUT_MS]
 *   chatd-kafka-probe BROKERS TOPIC latency=N [TIMEOUT_MS]
 *
 * produce:   sends one message (acks=all) and waits for its delivery report.
 * roundtrip: produce, then reads the message back from the partition and offset the
 *            delivery report named (plain assign, no consumer group, so no
 *            group-join delay) and checks the payload is byte-identical.
 *
 * topic=N:   the readiness check of a real broker: creates TOPIC with N partitions
 *            (replication factor 1; an existing topic is kept), then asks for
 *            metadata until the broker is listed and every one of the N partitions
 *            has a leader. A topic that exists with another partition count fails.
 *
 * latency=N: a benchmark, not a check: produces N messages of 100 bytes one at a
 *            time with chatd's producer settings (acks=all, idempotence,
 *            linger.ms=1), each after the previous one's delivery report, and
 *            prints the produce->ack median, p90, p99 and max in ms.
 *
 * TIMEOUT_MS (default 10000) bounds the whole run: message.timeout.ms is set to it,
 * and the consume phase gets what is left. Exit 0 and one "ok ..." line on stdout on
 * success; exit 1 and one "fail ..." line otherwise; exit 2 on bad usage.
 * librdkafka's own log lines go to stderr.
 */

#include <librdkafka/rdkafka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct delivery {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
    return now_us() / 1000;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct delivery *d = m->_private;
    (void)rk;
    (void)opaque;
    d->done = 1;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        printf("fail config %s=%s: %s\n", k, v, errstr);
        return -1;
    }
    return 0;
}

/* client: a librdkafka client of TYPE for BROKERS, its client.id set, then the
 * NULL-terminated key/value pairs KV; producers report deliveries to
 * on_delivery. NULL, with a "fail ..." line printed, when it cannot be made. */
static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *const *kv)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    if (set(conf, "bootstrap.servers", brokers) || set(conf, "client.id", "chatd-kafka-probe")) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (; kv && kv[0]; kv += 2) {
        if (set(conf, kv[0], kv[1])) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) {
        printf("fail client: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* produce_one: returns 0 and fills d on delivery, -1 on failure (line printed). */
static int produce_one(const char *brokers, const char *topic, const char *payload,
                       int timeout_ms, struct delivery *d)
{
    char tmo[32];
    rd_kafka_t *rk;
    rd_kafka_resp_err_t err;
    int64_t deadline = now_ms() + timeout_ms;

    snprintf(tmo, sizeof tmo, "%d", timeout_ms);
    const char *kv[] = { "acks", "all", "message.timeout.ms", tmo, "linger.ms", "0", NULL };
    if (!(rk = client(RD_KAFKA_PRODUCER, brokers, kv)))
        return -1;
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_VALUE((void *)payload, strlen(payload)),
                            RD_KAFKA_V_KEY("probe", 5), RD_KAFKA_V_OPAQUE(d),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
        printf("fail produce: %s\n", rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return -1;
    }
    /* The message timeout fires the report at the latest; the extra second only
     * guards against a report that never comes. */
    while (!d->done && now_ms() < deadline + 1000)
        rd_kafka_poll(rk, 50);
    /* Do not wait for anything else in flight: the broker may be down. */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    if (!d->done) {
        printf("fail produce: no delivery report within %d ms\n", timeout_ms + 1000);
        return -1;
    }
    if (d->err) {
        printf("fail produce: %s (%s)\n", rd_kafka_err2name(d->err), rd_kafka_err2str(d->err));
        return -1;
    }
    return 0;
}

/* consume_at: reads topic[partition] from offset until payload shows up. */
static int consume_at(const char *brokers, const char *topic, const struct delivery *d,
                      const char *payload, int64_t deadline)
{
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts;
    int found = 0;
    const char *kv[] = { "group.id", "chatd-kafka-probe", "enable.auto.commit", "false",
                         "fetch.wait.max.ms", "10", NULL };

    if (!(rk = client(RD_KAFKA_CONSUMER, brokers, kv)))
        return -1;
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, d->partition)->offset = d->offset;
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);

    while (!found && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err && m->len == strlen(payload) && memcmp(m->payload, payload, m->len) == 0)
            found = 1;
        else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "chatd-kafka-probe: consume: %s\n", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!found) {
        printf("fail consume: message not read back from %s [%" PRId32 "] @%" PRId64 "\n",
               topic, d->partition, d->offset);
        return -1;
    }
    return 0;
}

/* topic_ready: 1 when the metadata lists a broker and TOPIC with `partitions`
 * partitions that all have a leader, 0 when not yet, -1 when it never will (wrong
 * partition count; line printed). */
static int topic_ready(rd_kafka_t *rk, const char *topic, int partitions)
{
    const struct rd_kafka_metadata *md;
    int ready = 0;

    if (rd_kafka_metadata(rk, 1, NULL, &md, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < md->topic_cnt && md->broker_cnt > 0; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (strcmp(t->topic, topic) != 0 || t->err)
            continue;
        if (t->partition_cnt != partitions) {
            printf("fail topic %s has %d partitions, not %d\n", topic, t->partition_cnt,
                   partitions);
            ready = -1;
            break;
        }
        ready = 1;
        for (int j = 0; j < t->partition_cnt; j++)
            if (t->partitions[j].err || t->partitions[j].leader < 0)
                ready = 0;
    }
    rd_kafka_metadata_destroy(md);
    return ready;
}

/* create_topic: creates TOPIC (an existing one is fine) and waits until
 * topic_ready. Returns 0, or -1 with a line printed. */
static int create_topic(const char *brokers, const char *topic, int partitions,
                        int64_t deadline)
{
    char errstr[256];
    rd_kafka_t *rk;
    int ready = 0, created = 0;

    if (!(rk = client(RD_KAFKA_PRODUCER, brokers, NULL)))
        return -1;
    while (ready == 0 && now_ms() < deadline) {
        if (!created) {
            rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr,
                                                            sizeof errstr);
            rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
            rd_kafka_event_t *ev;
            rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
            ev = rd_kafka_queue_poll(q, (int)(deadline - now_ms()));
            if (ev) {
                size_t n = 0;
                const rd_kafka_topic_result_t **res =
                    rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
                rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
                if (!err && n == 1)
                    err = rd_kafka_topic_result_error(res[0]);
                if (!err || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                    created = 1;
                else
                    fprintf(stderr, "chatd-kafka-probe: create %s: %s\n", topic,
                            rd_kafka_err2str(err));
                rd_kafka_event_destroy(ev);
            }
            rd_kafka_queue_destroy(q);
            rd_kafka_NewTopic_destroy(nt);
        }
        if (created)
            ready = topic_ready(rk, topic, partitions);
        if (ready == 0)
            usleep(100 * 1000);
    }
    rd_kafka_destroy(rk);
    if (ready == 0)
        printf("fail topic %s: no leaders for its %d partitions in time\n", topic, partitions);
    return ready == 1 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* latency: N sequential produce->ack round trips; prints the percentiles. */
static int latency(const char *brokers, const char *topic, int n, int timeout_ms)
{
    char payload[100], key[16];
    const char *kv[] = { "acks", "all", "enable.idempotence", "true", "linger.ms", "1", NULL };
    rd_kafka_t *rk;
    double *lat = calloc((size_t)n, sizeof *lat);
    int rc = -1;

    memset(payload, 'x', sizeof payload);
    if (!lat || !(rk = client(RD_KAFKA_PRODUCER, brokers, kv))) {
        free(lat);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct delivery d = {0};
        int64_t t0 = now_us(), deadline = t0 + (int64_t)timeout_ms * 1000;
        snprintf(key, sizeof key, "room%d", i % 16);
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_VALUE(payload, sizeof payload),
                              RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_OPAQUE(&d),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) {
            printf("fail produce %d\n", i);
            goto out;
        }
        while (!d.done && now_us() < deadline)
            rd_kafka_poll(rk, 1);
        if (!d.done || d.err) {
            printf("fail message %d: %s\n", i, d.done ? rd_kafka_err2str(d.err) : "no report");
            goto out;
        }
        lat[i] = (double)(now_us() - t0) / 1e3;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("ok latency %s: %d produce->ack, median %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           brokers, n, lat[n / 2], lat[n * 90 / 100], lat[n * 99 / 100], lat[n - 1]);
    rc = 0;
out:
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(rk);
    free(lat);
    return rc;
}

int main(int argc, char **argv)
{
    struct delivery d = {0};
    char payload[128];
    int timeout_ms = 10000;
    int64_t start = now_ms();
    int roundtrip, partitions = 0, count = 0;

    if (argc >= 4 && (strncmp(argv[3], "topic=", 6) == 0 || strncmp(argv[3], "latency=", 8) == 0)) {
        char *end;
        int is_topic = argv[3][0] == 't';
        long v = strtol(strchr(argv[3], '=') + 1, &end, 10);
        if (*end || v < 1 || v > (is_topic ? 10000 : 1000000)) {
            fprintf(stderr, "chatd-kafka-probe: %s wants a count in range\n", argv[3]);
            return 2;
        }
        *(is_topic ? &partitions : &count) = (int)v;
    }
    if (argc < 4 || argc > 5 ||
        (!partitions && !count && strcmp(argv[3], "produce") != 0 &&
         strcmp(argv[3], "roundtrip") != 0)) {
        fprintf(stderr, "usage: chatd-kafka-probe BROKERS TOPIC "
                        "produce|roundtrip|topic=N|latency=N [TIMEOUT_MS]\n");
        return 2;
    }
    if (argc == 5) {
        char *end;
        long v = strtol(argv[4], &end, 10);
        if (*end || v < 100 || v > 600000) {
            fprintf(stderr, "chatd-kafka-probe: TIMEOUT_MS must be 100..600000\n");
            return 2;
        }
        timeout_ms = (int)v;
    }
    if (count)
        return latency(argv[1], argv[2], count, timeout_ms) ? 1 : 0;
    if (partitions) {
        if (create_topic(argv[1], argv[2], partitions, start + timeout_ms))
            return 1;
        printf("ok topic %s with %d partitions, all led, in %" PRId64 " ms\n", argv[2],
               partitions, now_ms() - start);
        return 0;
    }
    roundtrip = strcmp(argv[3], "roundtrip") == 0;
    snprintf(payload, sizeof payload, "chatd-kafka-probe pid=%ld t=%" PRId64, (long)getpid(),
             start);

    if (produce_one(argv[1], argv[2], payload, timeout_ms, &d))
        return 1;
    if (roundtrip && consume_at(argv[1], argv[2], &d, payload, start + timeout_ms))
        return 1;
    printf("ok %s %s [%" PRId32 "] @%" PRId64 " in %" PRId64 " ms\n", argv[3], argv[2],
           d.partition, d.offset, now_ms() - start);
    return 0;
}
