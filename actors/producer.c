/*
 * The producer actor: see producer.h for its contract.
 *
 * Each accepted message becomes a `pending` entry (sender, corr, deadline),
 * linked in arrival order and passed to librdkafka as the message's opaque;
 * the delivery report answers the sender (unless the entry was answered
 * already by the deadline check) and frees it. So the list holds exactly the
 * messages librdkafka still owns, which terminate frees after purging.
 */
#include "actors/producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/chatd.h"
#include "actors/config.h"
#include "adapters/kafka.h"
#include "proto/envelope.h"
#include "proto/record.h"
#include "runtime/list.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

/* How often the deadline check and the shutdown drain run. */
#define TICK_MS 100
#define DRAIN_TICK_MS 10

typedef struct pending {
    rt_link link;               /* in producer_state.pending, arrival order */
    rt_id sender;
    uint64_t corr;
    double deadline;            /* loop ms after which we answer unavailable */
    bool answered;
} pending;

typedef struct producer_state {
    const chatd_config *cfg;
    kafka_client *kafka;
    rt_list pending;            /* every message librdkafka still owns */
    size_t waiting;             /* entries not yet answered */
    rt_timer_id tick;           /* the scheduled CHATD_T_TICK, 0 when none */
    bool closing;               /* shutdown asked: refuse new messages */
    double drain_deadline;
    rt_metric *produced;
} producer_state;

static void
arm_tick(rt_actor *self, producer_state *st, double ms)
{
    if (!st->tick)
        st->tick = rt_send_after(self, ms, CHATD_T_TICK, 0, NULL, 0);
}

/* The delivery report of the message with entry msg. */
static void
on_delivered(void *ud, void *msg, rd_kafka_resp_err_t err)
{
    rt_actor *self = ud;
    producer_state *st = rt_state(self);
    pending *p = msg;
    rt_list_remove(&st->pending, &p->link);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        rt_metric_add(st->produced, 1);
    if (!p->answered) {
        st->waiting--;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            chatd_reply_ack(self, p->sender, p->corr, PROTO_ACK_NONE, NULL);
        } else {
            rt_debug(rt_who(self), "delivery failed: %s", rd_kafka_err2str(err));
            chatd_reply_ack(self, p->sender, p->corr, PROTO_ACK_UNAVAILABLE, "kafka unavailable");
        }
    }
    free(p);
}

static void
on_fatal(void *ud, const char *why)
{
    rt_crash(ud, "kafka fatal error: %s", why);
}

static const kafka_callbacks producer_kafka_callbacks = {
    .delivered = on_delivered,
    .fatal = on_fatal,
};

static int
producer_init(rt_actor *self, const void *arg)
{
    producer_state *st = rt_state(self);
    st->cfg = arg;
    rt_runtime *rt = rt_of(self);
    st->produced = rt_metric_get(rt, RT_COUNTER, "chatd_messages_produced_total", NULL,
                                 "Messages the Kafka broker acknowledged.");
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%d", st->cfg->produce_timeout_ms);
    const char *defaults[] = {
        "acks", "all",
        "enable.idempotence", "true",
        "message.timeout.ms", timeout,
        /* The client's ack waits for the broker: send a message at once.
         * Under load batches form anyway from what queues while requests are
         * in flight. Measured (scripts/bench/compare.sh, real Kafka, 200
         * msg/s into 10 rooms of 100): linger.ms 1 -> 0 took the acked stage
         * from 2.11 to 0.82 ms p50, cross-node delivery from 3.94 to 2.65 ms
         * p50 (p99 10.1 -> 8.6), CPU per delivery unchanged. */
        "linger.ms", "0",
        "socket.nagle.disable", "true",
        NULL,
    };
    kafka_setup setup = {
        .type = RD_KAFKA_PRODUCER,
        .defaults = defaults,
        .cb = &producer_kafka_callbacks,
    };
    st->kafka = chatd_kafka_open(self, st->cfg, &setup);
    if (!st->kafka)
        return RT_ERR;
    return RT_OK;
}

static void
produce(rt_actor *self, producer_state *st, const proto_env *msg)
{
    if (st->closing) {
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "shutting down");
        return;
    }
    proto_msg m = { 0 };
    proto_err perr = proto_msg_decode(msg->payload, msg->payload_len, &m);
    if (perr != PROTO_OK) {
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, proto_strerror(perr));
        return;
    }
    size_t cap = PROTO_ENV_OVERHEAD + msg->payload_len, len = 0;
    uint8_t *value = malloc(cap);
    pending *p = calloc(1, sizeof(*p));
    proto_env env = { .type = PROTO_T_MESSAGE, .payload = msg->payload,
                      .payload_len = msg->payload_len };
    if (!value || !p || proto_env_encode(&env, value, cap, &len) != PROTO_OK) {
        free(value);
        free(p);
        proto_msg_free(&m);
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_INTERNAL, "out of memory");
        return;
    }
    p->sender = msg->from;
    p->corr = msg->corr;
    p->deadline = rt_now_ms(rt_of(self)) + st->cfg->produce_timeout_ms;
    rd_kafka_resp_err_t err = kafka_produce(st->kafka, st->cfg->kafka_topic, m.room, m.room_len,
                                            value, len, p);
    proto_msg_free(&m);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Not taken: value and p are still ours. */
        free(value);
        free(p);
        rt_debug(rt_who(self), "produce refused: %s", rd_kafka_err2str(err));
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE,
              err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? "kafka queue full" : "kafka unavailable");
        return;
    }
    rt_list_push_back(&st->pending, &p->link);
    st->waiting++;
    arm_tick(self, st, TICK_MS);
    /* The fault point "fatal" (--faults 'crash:producer.fatal,after=N,max=1')
     * makes librdkafka raise a real fatal error, the one a fenced idempotent
     * producer gets, so the way from on_error to a restart is tested. */
    if (rt_fault_point(self, "fatal", NULL) == RT_FAULT_CRASH)
        kafka_test_fatal(st->kafka, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                         "injected by a fault rule (producer.fatal)");
}

/* Answers unavailable for entries past their deadline (they stay linked
 * until their delivery report frees them). Entries are in deadline order. */
static void
expire(rt_actor *self, producer_state *st)
{
    double now = rt_now_ms(rt_of(self));
    for (rt_link *l = st->pending.head; l; l = l->next) {
        pending *p = RT_CONTAINER(l, pending, link);
        if (p->answered)
            continue;
        if (p->deadline > now)
            break;
        p->answered = true;
        st->waiting--;
        chatd_reply_ack(self, p->sender, p->corr, PROTO_ACK_UNAVAILABLE, "kafka delivery timed out");
    }
}

static void
tick(rt_actor *self, producer_state *st)
{
    st->tick = 0;
    if (st->closing)
        kafka_flush(st->kafka);     /* non-blocking: send now, serve reports */
    else
        kafka_poll(st->kafka);
    expire(self, st);
    if (st->closing) {
        if (st->waiting == 0 || rt_now_ms(rt_of(self)) >= st->drain_deadline) {
            if (st->waiting)
                rt_warn(rt_who(self), "shutdown: %zu deliveries still pending", st->waiting);
            rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
            return;
        }
        arm_tick(self, st, DRAIN_TICK_MS);
    } else if (!rt_list_empty(&st->pending)) {
        arm_tick(self, st, TICK_MS);
    }
}

static int
producer_handle(rt_actor *self, const proto_env *msg)
{
    producer_state *st = rt_state(self);
    switch (msg->type) {
    case PROTO_T_MESSAGE:
        produce(self, st, msg);
        break;
    case CHATD_T_TICK:
        tick(self, st);
        break;
    default:
        rt_debug(rt_who(self), "ignoring message of type %u", (unsigned)msg->type);
        break;
    }
    return RT_OK;
}

static int
producer_shutdown(rt_actor *self)
{
    producer_state *st = rt_state(self);
    st->closing = true;
    if (st->waiting == 0)
        return RT_OK;
    double bound = st->cfg->produce_timeout_ms < CHATD_PRODUCER_DRAIN_MS
                       ? st->cfg->produce_timeout_ms : CHATD_PRODUCER_DRAIN_MS;
    st->drain_deadline = rt_now_ms(rt_of(self)) + bound;
    kafka_flush(st->kafka);
    if (st->waiting == 0)
        return RT_OK;
    /* Replace the slow deadline tick by the drain's fast one. */
    if (st->tick)
        rt_cancel_timer(self, st->tick);
    st->tick = 0;
    arm_tick(self, st, DRAIN_TICK_MS);
    return RT_PENDING;
}

static void
producer_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    producer_state *st = rt_state(self);
    /* No report comes from here on: the entries left are ours to free. */
    kafka_free(st->kafka);
    st->kafka = NULL;
    for (rt_link *l; (l = rt_list_pop_front(&st->pending));)
        free(RT_CONTAINER(l, pending, link));
}

const rt_actor_spec chatd_producer_spec = {
    .name = CHATD_PRODUCER,
    .state_size = sizeof(producer_state),
    .init = producer_init,
    .handle = producer_handle,
    .terminate = producer_terminate,
    .shutdown = producer_shutdown,
    .mailbox_cap = 8192,
    .overflow = RT_OVERFLOW_REJECT,
};
