/*
 * The consumer actor: see consumer.h for its contract.
 *
 * States: reading (the adapter's watcher on, collecting a batch inside one
 * wake-up), in flight (watcher paused, one encoded batch kept for resends,
 * one timer: the ack timeout or the retry backoff), closing (the adapter
 * leaves the group; a timer polls it and bounds it). The Kafka mechanics
 * (configuration, rebalances, commits of owned partitions only, the group
 * leave) are the adapter's (adapters/kafka.h).
 */
#include "actors/consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/chatd.h"
#include "actors/config.h"
#include "adapters/kafka.h"
#include "proto/envelope.h"
#include "proto/record.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

/* Records read per wake-up at most (then we yield and continue by timer). */
#define READ_MAX PROTO_BATCH_MAX
#define CLOSE_TICK_MS 10

enum timer_kind { T_CONTINUE = 1, T_RESEND, T_CLOSE, T_ACK_WAIT };

typedef struct consumer_state {
    const chatd_config *cfg;
    kafka_client *kafka;

    /* the batch being collected (empty between callbacks) */
    proto_msg *msgs;                /* PROTO_BATCH_MAX */
    int32_t *parts;                 /* partition of each message */
    size_t n;
    rd_kafka_topic_partition_list_t *offsets;   /* next offset per partition read */

    /* the batch in flight */
    bool inflight;
    uint64_t batch_no;
    uint8_t *enc;
    size_t enc_len, enc_count;
    rd_kafka_topic_partition_list_t *inflight_offsets;
    rt_timer_id timer;              /* T_RESEND or T_ACK_WAIT */
    rt_timer_id cont;               /* T_CONTINUE */

    bool closing;                   /* shutdown asked */
    double close_deadline;
    rt_timer_id close_timer;

    rt_metric *consumed, *poison;
    struct rt_histogram *h_consumed;    /* chatd_stage_seconds{stage="consumed"} */
} consumer_state;

static void read_some(rt_actor *self, consumer_state *st);
static void start_close(rt_actor *self, consumer_state *st);

/* Partitions taken away: what was read from them and not sent is dropped
 * (their new owner reads it again), and so are their offsets. */
static void
on_revoked(void *ud, const rd_kafka_topic_partition_list_t *revoked)
{
    consumer_state *st = rt_state(ud);
    size_t k = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (rd_kafka_topic_partition_list_find(revoked, st->cfg->kafka_topic, st->parts[i])) {
            proto_msg_free(&st->msgs[i]);
            continue;
        }
        st->msgs[k] = st->msgs[i];
        st->parts[k] = st->parts[i];
        k++;
    }
    for (size_t i = k; i < st->n; i++)
        memset(&st->msgs[i], 0, sizeof(st->msgs[i]));
    st->n = k;
    for (int i = 0; i < revoked->cnt; i++)
        rd_kafka_topic_partition_list_del(st->offsets, revoked->elems[i].topic,
                                          revoked->elems[i].partition);
}

static void
on_readable(void *ud)
{
    rt_actor *self = ud;
    consumer_state *st = rt_state(self);
    if (!st->inflight)
        read_some(self, st);
}

static void
on_fatal(void *ud, const char *why)
{
    rt_crash(ud, "kafka fatal error: %s", why);
}

static void on_record(void *ud, const rd_kafka_message_t *m);

static const kafka_callbacks consumer_kafka_callbacks = {
    .readable = on_readable,
    .record = on_record,
    .revoked = on_revoked,
    .fatal = on_fatal,
};

static int
consumer_init(rt_actor *self, const void *arg)
{
    consumer_state *st = rt_state(self);
    st->cfg = arg;
    rt_runtime *rt = rt_of(self);
    st->consumed = rt_metric_get(rt, RT_COUNTER, "chatd_messages_consumed_total", NULL,
                                 "Messages read from Kafka and acked by the store.");
    st->poison = rt_metric_get(rt, RT_COUNTER, "chatd_kafka_poison_total", NULL,
                               "Kafka records that did not decode and were skipped.");
    st->h_consumed = chatd_stage_histogram(rt, CHATD_STAGE_CONSUMED);
    st->msgs = calloc(PROTO_BATCH_MAX, sizeof(*st->msgs));
    st->parts = calloc(PROTO_BATCH_MAX, sizeof(*st->parts));
    st->offsets = rd_kafka_topic_partition_list_new(8);
    if (!st->msgs || !st->parts || !st->offsets) {
        rt_error(rt_who(self), "out of memory");
        return RT_ERR;
    }

    const char *defaults[] = {
        "group.id", st->cfg->kafka_group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest",
        NULL,
    };
    kafka_setup setup = {
        .type = RD_KAFKA_CONSUMER,
        .defaults = defaults,
        .topic = st->cfg->kafka_topic,
        .cb = &consumer_kafka_callbacks,
    };
    st->kafka = chatd_kafka_open(self, st->cfg, &setup);
    if (!st->kafka)
        return RT_ERR;
    read_some(self, st);
    return RT_OK;
}

/* Adds one record to the batch being collected (or counts it as poison). */
static void
on_record(void *ud, const rd_kafka_message_t *m)
{
    rt_actor *self = ud;
    consumer_state *st = rt_state(self);
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_find(st->offsets, rd_kafka_topic_name(m->rkt), m->partition);
    if (!tp)
        tp = rd_kafka_topic_partition_list_add(st->offsets, rd_kafka_topic_name(m->rkt),
                                               m->partition);
    tp->offset = m->offset + 1;

    proto_env env;
    proto_err perr = m->payload ? proto_env_decode(m->payload, m->len, &env) : PROTO_E_MALFORMED;
    if (perr == PROTO_OK && env.type != PROTO_T_MESSAGE)
        perr = PROTO_E_UNKNOWN;
    if (perr == PROTO_OK)
        perr = proto_msg_decode(env.payload, env.payload_len, &st->msgs[st->n]);
    if (perr != PROTO_OK) {
        rt_metric_add(st->poison, 1);
        rt_warn(rt_who(self), "skipping poison record %s/%" PRId32 "@%" PRId64 ": %s",
                rd_kafka_topic_name(m->rkt), m->partition, m->offset, proto_strerror(perr));
        return;
    }
    chatd_stage_observe(st->h_consumed, st->msgs[st->n].rx_us);
    st->parts[st->n++] = m->partition;
}

static void
arm(rt_actor *self, rt_timer_id *t, double ms, int kind, uint64_t corr)
{
    if (*t)
        rt_cancel_timer(self, *t);
    *t = rt_send_after(self, ms, CHATD_T_TICK, ((uint64_t)kind << 56) | corr, NULL, 0);
}

static void
send_to_store(rt_actor *self, consumer_state *st)
{
    int rc = rt_send_named(rt_of(self), rt_self(self), CHATD_STORE, PROTO_T_MESSAGE_BATCH,
                           st->batch_no, st->enc, st->enc_len);
    if (rc != RT_OK) {
        rt_debug(rt_who(self), "store unreachable (%d): batch %" PRIu64 " again in %d ms", rc,
                 st->batch_no, CHATD_CONSUMER_RETRY_MS);
        arm(self, &st->timer, CHATD_CONSUMER_RETRY_MS, T_RESEND, st->batch_no);
        return;
    }
    arm(self, &st->timer, st->cfg->request_timeout_ms, T_RESEND, st->batch_no);
}

/* Moves the collected batch in flight and sends it; a batch of poison
 * records only is committed at once. */
static void
send_batch(rt_actor *self, consumer_state *st)
{
    if (st->n == 0) {
        kafka_commit(st->kafka, st->offsets);
        rd_kafka_topic_partition_list_destroy(st->offsets);
        st->offsets = rd_kafka_topic_partition_list_new(8);
        return;
    }
    proto_batch b = { .msgs = st->msgs, .count = st->n };
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    proto_err perr = proto_batch_encode(&b, &buf);
    if (perr == PROTO_OK)
        perr = proto_mp_buf_release(&buf, &st->enc, &st->enc_len);
    else
        proto_mp_buf_free(&buf);
    for (size_t i = 0; i < st->n; i++)
        proto_msg_free(&st->msgs[i]);
    st->enc_count = st->n;
    st->n = 0;
    if (perr != PROTO_OK) {
        /* Decoded messages always encode again; only memory can fail. The
         * offsets are not committed: the records come again after a restart. */
        rt_crash(self, "encoding a batch: %s", proto_strerror(perr));
        return;
    }
    st->inflight_offsets = st->offsets;
    st->offsets = rd_kafka_topic_partition_list_new(8);
    st->inflight = true;
    st->batch_no++;
    kafka_pause(st->kafka);
    send_to_store(self, st);
}

static void
read_some(rt_actor *self, consumer_state *st)
{
    /* The batch is empty here, so READ_MAX events fit it. */
    bool more = kafka_consume(st->kafka, READ_MAX) == READ_MAX;
    if (st->n || st->offsets->cnt)
        send_batch(self, st);
    /* Stopped before the queue was empty: no new wake-up edge will come. */
    if (more && !st->inflight && !st->cont)
        st->cont = rt_send_after(self, 0, CHATD_T_TICK, (uint64_t)T_CONTINUE << 56, NULL, 0);
}

static void
finish_inflight(consumer_state *st)
{
    free(st->enc);
    st->enc = NULL;
    st->enc_len = st->enc_count = 0;
    if (st->inflight_offsets)
        rd_kafka_topic_partition_list_destroy(st->inflight_offsets);
    st->inflight_offsets = NULL;
    st->inflight = false;
}

static void
on_ack(rt_actor *self, consumer_state *st, const proto_env *msg)
{
    if (!st->inflight || msg->corr != st->batch_no)
        return;
    proto_ack ack;
    if (proto_ack_decode(msg->payload, msg->payload_len, &ack) != PROTO_OK || !ack.ok) {
        rt_warn(rt_who(self), "store refused batch %" PRIu64 ": %s; again in %d ms",
                st->batch_no, ack.ok ? "bad ack" : ack.msg, CHATD_CONSUMER_RETRY_MS);
        arm(self, &st->timer, CHATD_CONSUMER_RETRY_MS, T_RESEND, st->batch_no);
        return;
    }
    rt_cancel_timer(self, st->timer);
    st->timer = 0;
    rt_metric_add(st->consumed, (double)st->enc_count);
    kafka_commit(st->kafka, st->inflight_offsets);
    finish_inflight(st);
    if (st->closing) {
        start_close(self, st);
        return;
    }
    kafka_resume(st->kafka);
    read_some(self, st);
}

static void
on_tick(rt_actor *self, consumer_state *st, const proto_env *msg)
{
    int kind = (int)(msg->corr >> 56);
    uint64_t corr = msg->corr & ((1ull << 56) - 1);
    switch (kind) {
    case T_CONTINUE:
        st->cont = 0;
        if (!st->inflight && !st->closing)
            read_some(self, st);
        break;
    case T_RESEND:
        st->timer = 0;
        if (st->inflight && corr == st->batch_no && !st->closing) {
            rt_warn(rt_who(self), "resending batch %" PRIu64 " to the store", st->batch_no);
            send_to_store(self, st);
        }
        break;
    case T_ACK_WAIT:
        st->timer = 0;
        if (st->inflight) {
            rt_warn(rt_who(self), "shutdown: batch %" PRIu64 " not acked; dropped uncommitted",
                    st->batch_no);
            finish_inflight(st);
            start_close(self, st);
        }
        break;
    case T_CLOSE:
        st->close_timer = 0;
        if (kafka_close_poll(st->kafka)) {
            rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
        } else if (rt_now_ms(rt_of(self)) >= st->close_deadline) {
            rt_warn(rt_who(self), "shutdown: group leave not finished in %d ms",
                    CHATD_CONSUMER_CLOSE_MS);
            rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
        } else {
            st->close_timer = rt_send_after(self, CLOSE_TICK_MS, CHATD_T_TICK,
                                            (uint64_t)T_CLOSE << 56, NULL, 0);
        }
        break;
    }
}

static int
consumer_handle(rt_actor *self, const proto_env *msg)
{
    consumer_state *st = rt_state(self);
    switch (msg->type) {
    case PROTO_T_ACK:
        on_ack(self, st, msg);
        break;
    case CHATD_T_TICK:
        on_tick(self, st, msg);
        break;
    default:
        rt_debug(rt_who(self), "ignoring message of type %u", (unsigned)msg->type);
        break;
    }
    return RT_OK;
}

/* Starts leaving the group in librdkafka's background; a timer polls the
 * close until it is done or the deadline passes. */
static void
start_close(rt_actor *self, consumer_state *st)
{
    st->close_deadline = rt_now_ms(rt_of(self)) + CHATD_CONSUMER_CLOSE_MS;
    if (kafka_close_start(st->kafka) < 0) {
        rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
        return;
    }
    st->close_timer = rt_send_after(self, CLOSE_TICK_MS, CHATD_T_TICK,
                                    (uint64_t)T_CLOSE << 56, NULL, 0);
}

static int
consumer_shutdown(rt_actor *self)
{
    consumer_state *st = rt_state(self);
    st->closing = true;
    if (st->inflight) {
        /* Keep any resend timer; bound the whole wait. */
        rt_send_after(self, CHATD_CONSUMER_ACK_WAIT_MS, CHATD_T_TICK,
                      (uint64_t)T_ACK_WAIT << 56, NULL, 0);
        return RT_PENDING;
    }
    start_close(self, st);
    return RT_PENDING;
}

static void
consumer_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    consumer_state *st = rt_state(self);
    for (size_t i = 0; i < st->n; i++)
        proto_msg_free(&st->msgs[i]);
    free(st->msgs);
    free(st->parts);
    if (st->offsets)
        rd_kafka_topic_partition_list_destroy(st->offsets);
    finish_inflight(st);
    kafka_free(st->kafka);
    st->kafka = NULL;
}

const rt_actor_spec chatd_consumer_spec = {
    .name = CHATD_CONSUMER,
    .state_size = sizeof(consumer_state),
    .init = consumer_init,
    .handle = consumer_handle,
    .terminate = consumer_terminate,
    .shutdown = consumer_shutdown,
};
