/*
 * The consumer actor: see consumer.h for its contract.
 *
 * States: reading (watcher on, collecting a batch inside one wake-up), in
 * flight (watcher off, one encoded batch kept for resends, one timer: the
 * ack timeout or the retry backoff), closing (rd_kafka_consumer_close_queue
 * running; the watcher serves the close queue and a timer bounds it).
 */
#include "actors/consumer.h"

#include <errno.h>
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

typedef struct consumer {
    const chatd_config *cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *cq;           /* the consumer queue (everything is forwarded here) */
    rd_kafka_queue_t *closeq;       /* while closing, cq is forwarded here */
    chatd_kafka_wake wake;

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
    bool close_started;             /* rd_kafka_consumer_close_queue called */
    bool closed;                    /* the group was left cleanly */
    double close_deadline;
    rt_timer_id close_timer;

    rt_metric *consumed, *poison, *up;
} consumer;

static void read_some(rt_actor *self, consumer *st);
static void start_close(rt_actor *self, consumer *st);

static void
drop_partitions(consumer *st, const rd_kafka_topic_partition_list_t *revoked)
{
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
on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
             void *opaque)
{
    rt_actor *self = opaque;
    consumer *st = rt_state(self);
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rt_info(rt_who(self), "rebalance: %s %d partition(s)",
            err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked", parts->cnt);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, parts);
        }
        return;
    }
    drop_partitions(st, parts);
    if (coop) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static void
on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
          void *opaque)
{
    (void)rk, (void)offsets;
    rt_actor *self = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        rt_warn(rt_who(self), "offset commit failed (records will be redelivered): %s",
                rd_kafka_err2str(err));
}

/* While closing: serves the close queue with the event API, as
 * rd_kafka_consumer_close does internally: rebalances are followed, fetched
 * messages and other events dropped (rd_kafka_queue_poll_callback would
 * assert on a fetched message). */
static void
serve_close(rt_actor *self, consumer *st)
{
    rd_kafka_event_t *ev;
    for (int i = 0; i < READ_MAX && (ev = rd_kafka_queue_poll(st->closeq, 0)); i++) {
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_REBALANCE:
            on_rebalance(st->rk, rd_kafka_event_error(ev),
                         rd_kafka_event_topic_partition_list(ev), self);
            break;
        case RD_KAFKA_EVENT_ERROR:
            rt_warn(rt_who(self), "kafka (closing): %s", rd_kafka_event_error_string(ev));
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
}

static int
on_wake(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)io, (void)fd, (void)revents;
    consumer *st = rt_state(self);
    chatd_kafka_wake_drain(&st->wake);
    if (st->close_started) {
        serve_close(self, st);
        return RT_OK;
    }
    if (!st->inflight)
        read_some(self, st);
    return RT_OK;
}

static int
consumer_init(rt_actor *self, const void *arg)
{
    consumer *st = rt_state(self);
    st->cfg = arg;
    rt_runtime *rt = rt_of(self);
    st->consumed = rt_metric_get(rt, RT_COUNTER, "chatd_messages_consumed_total", NULL,
                                 "Messages read from Kafka and acked by the store.");
    st->poison = rt_metric_get(rt, RT_COUNTER, "chatd_kafka_poison_total", NULL,
                               "Kafka records that did not decode and were skipped.");
    st->up = chatd_kafka_up_gauge(self);
    st->msgs = calloc(PROTO_BATCH_MAX, sizeof(*st->msgs));
    st->parts = calloc(PROTO_BATCH_MAX, sizeof(*st->parts));
    st->offsets = rd_kafka_topic_partition_list_new(8);
    if (!st->msgs || !st->parts || !st->offsets) {
        rt_error(rt_who(self), "out of memory");
        return RT_ERR;
    }

    char err[512];
    const char *defaults[] = {
        "group.id", st->cfg->kafka_group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest",
        NULL,
    };
    rd_kafka_conf_t *conf = chatd_kafka_conf_new(self, st->cfg, defaults, err, sizeof(err));
    if (!conf) {
        rt_error(rt_who(self), "%s", err);
        return RT_ERR;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    st->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!st->rk) {
        rd_kafka_conf_destroy(conf);
        rt_error(rt_who(self), "kafka consumer: %s", err);
        return RT_ERR;
    }
    chatd_kafka_route_logs(st->rk);
    /* Errors, logs and rebalances too are served by rd_kafka_consumer_poll. */
    rd_kafka_poll_set_consumer(st->rk);
    st->cq = rd_kafka_queue_get_consumer(st->rk);
    if (chatd_kafka_wake_open(self, &st->wake, st->cq, on_wake) < 0) {
        rt_error(rt_who(self), "kafka wake pipe: %s", strerror(errno));
        return RT_ERR;
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, st->cfg->kafka_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(st->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        rt_error(rt_who(self), "kafka subscribe %s: %s", st->cfg->kafka_topic,
                 rd_kafka_err2str(e));
        return RT_ERR;
    }
    read_some(self, st);
    return RT_OK;
}

/* Adds one record to the batch being collected (or counts it as poison). */
static void
take_record(rt_actor *self, consumer *st, const rd_kafka_message_t *m)
{
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
send_to_store(rt_actor *self, consumer *st)
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

/* Commits offsets, leaving out partitions we no longer own. */
static void
commit(rt_actor *self, consumer *st, rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (!offsets || offsets->cnt == 0 || rd_kafka_assignment(st->rk, &owned))
        goto out;
    rd_kafka_topic_partition_list_t *keep = rd_kafka_topic_partition_list_new(offsets->cnt);
    for (int i = 0; i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (rd_kafka_topic_partition_list_find(owned, p->topic, p->partition))
            rd_kafka_topic_partition_list_add(keep, p->topic, p->partition)->offset = p->offset;
    }
    if (keep->cnt) {
        rd_kafka_resp_err_t e = rd_kafka_commit(st->rk, keep, 1);
        if (e)
            rt_warn(rt_who(self), "offset commit: %s", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(keep);
out:
    if (owned)
        rd_kafka_topic_partition_list_destroy(owned);
}

/* Moves the collected batch in flight and sends it; a batch of poison
 * records only is committed at once. */
static void
send_batch(rt_actor *self, consumer *st)
{
    if (st->n == 0) {
        commit(self, st, st->offsets);
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
    chatd_kafka_wake_pause(&st->wake);
    send_to_store(self, st);
}

static void
read_some(rt_actor *self, consumer *st)
{
    size_t i;
    for (i = 0; i < READ_MAX && st->n < PROTO_BATCH_MAX && !st->close_started; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(st->rk, 0);
        if (!m)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                rt_warn(rt_who(self), "kafka consume: %s", rd_kafka_message_errstr(m));
        } else {
            rt_metric_set(st->up, 1);
            take_record(self, st, m);
        }
        rd_kafka_message_destroy(m);
    }
    bool more = i == READ_MAX || st->n == PROTO_BATCH_MAX;
    if (st->n || st->offsets->cnt)
        send_batch(self, st);
    /* Stopped before the queue was empty: no new wake-up edge will come. */
    if (more && !st->inflight && !st->cont)
        st->cont = rt_send_after(self, 0, CHATD_T_TICK, (uint64_t)T_CONTINUE << 56, NULL, 0);
}

static void
finish_inflight(consumer *st)
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
on_ack(rt_actor *self, consumer *st, const proto_env *msg)
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
    commit(self, st, st->inflight_offsets);
    finish_inflight(st);
    if (st->closing) {
        start_close(self, st);
        return;
    }
    chatd_kafka_wake_resume(&st->wake);
    read_some(self, st);
}

static void
on_tick(rt_actor *self, consumer *st, const proto_env *msg)
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
        serve_close(self, st);
        if (rd_kafka_consumer_closed(st->rk)) {
            st->closed = true;
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
    consumer *st = rt_state(self);
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

/* Starts leaving the group in librdkafka's background; the wake-up watcher
 * and a timer serve the queue until it is closed or the deadline passes. */
static void
start_close(rt_actor *self, consumer *st)
{
    st->close_started = true;
    st->close_deadline = rt_now_ms(rt_of(self)) + CHATD_CONSUMER_CLOSE_MS;
    st->closeq = rd_kafka_queue_new(st->rk);
    /* The io event belongs on the final queue of a forwarding chain. */
    rd_kafka_queue_io_event_enable(st->cq, -1, NULL, 0);
    rd_kafka_queue_io_event_enable(st->closeq, st->wake.wfd, "1", 1);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(st->rk, st->closeq);
    if (e) {
        rt_warn(rt_who(self), "consumer close: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
        return;
    }
    chatd_kafka_wake_resume(&st->wake);
    serve_close(self, st);
    st->close_timer = rt_send_after(self, CLOSE_TICK_MS, CHATD_T_TICK,
                                    (uint64_t)T_CLOSE << 56, NULL, 0);
}

static int
consumer_shutdown(rt_actor *self)
{
    consumer *st = rt_state(self);
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
    consumer *st = rt_state(self);
    for (size_t i = 0; i < st->n; i++)
        proto_msg_free(&st->msgs[i]);
    free(st->msgs);
    free(st->parts);
    if (st->offsets)
        rd_kafka_topic_partition_list_destroy(st->offsets);
    finish_inflight(st);
    if (st->rk) {
        chatd_kafka_wake_close(self, &st->wake, st->closeq ? st->closeq : st->cq);
        if (st->closeq)
            rd_kafka_queue_destroy(st->closeq);
        if (st->cq)
            rd_kafka_queue_destroy(st->cq);
        /* Without a finished close, do not let destroy leave the group: that
         * blocks up to session.timeout.ms. The group notices us gone then. */
        ev_now_update(rt_loop(rt_of(self)));
        double t0 = rt_now_ms(rt_of(self));
        rd_kafka_destroy_flags(st->rk, st->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        ev_now_update(rt_loop(rt_of(self)));
        rt_debug(rt_who(self), "rd_kafka_destroy took %.1f ms", rt_now_ms(rt_of(self)) - t0);
        st->rk = NULL;
    }
    rt_metric_set(st->up, 0);
}

const rt_actor_spec chatd_consumer_spec = {
    .name = CHATD_CONSUMER,
    .state_size = sizeof(consumer),
    .init = consumer_init,
    .handle = consumer_handle,
    .terminate = consumer_terminate,
    .shutdown = consumer_shutdown,
};
