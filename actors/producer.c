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

#include <errno.h>
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

/* How often the deadline check and the shutdown drain run. */
#define TICK_MS 100
#define DRAIN_TICK_MS 10

typedef struct pending {
    struct pending *prev, *next;
    rt_id sender;
    uint64_t corr;
    double deadline;            /* loop ms after which we answer unavailable */
    bool answered;
} pending;

typedef struct producer {
    const chatd_config *cfg;
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    chatd_kafka_wake wake;
    pending *head, *tail;
    size_t waiting;             /* entries not yet answered */
    rt_timer_id tick;           /* the scheduled CHATD_T_TICK, 0 when none */
    bool closing;               /* shutdown asked: refuse new messages */
    double drain_deadline;
    bool terminating;           /* in terminate: callbacks only free */
    rt_metric *produced, *up;
} producer;

static void
unlink_pending(producer *st, pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        st->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        st->tail = p->prev;
}

static void
arm_tick(rt_actor *self, producer *st, double ms)
{
    if (!st->tick)
        st->tick = rt_send_after(self, ms, CHATD_T_TICK, 0, NULL, 0);
}

/* Delivery report, served by rd_kafka_poll on the loop. */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    rt_actor *self = opaque;
    producer *st = rt_state(self);
    pending *p = m->_private;
    if (!p)
        return;
    unlink_pending(st, p);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rt_metric_add(st->produced, 1);
        rt_metric_set(st->up, 1);
    }
    if (!p->answered && !st->terminating) {
        st->waiting--;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            chatd_reply_ack(self, p->sender, p->corr, PROTO_ACK_NONE, NULL);
        } else {
            rt_debug(rt_who(self), "delivery failed: %s", rd_kafka_err2str(m->err));
            chatd_reply_ack(self, p->sender, p->corr, PROTO_ACK_UNAVAILABLE, "kafka unavailable");
        }
    }
    free(p);
}

static int
on_wake(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)io, (void)fd, (void)revents;
    producer *st = rt_state(self);
    chatd_kafka_wake_drain(&st->wake);
    rd_kafka_poll(st->rk, 0);
    return RT_OK;
}

static int
producer_init(rt_actor *self, const void *arg)
{
    producer *st = rt_state(self);
    st->cfg = arg;
    st->produced = rt_metric_get(rt_of(self), RT_COUNTER, "chatd_messages_produced_total", NULL,
                                 "Messages the Kafka broker acknowledged.");
    st->up = chatd_kafka_up_gauge(self);

    char timeout[32], err[512];
    snprintf(timeout, sizeof(timeout), "%d", st->cfg->produce_timeout_ms);
    const char *defaults[] = {
        "acks", "all",
        "enable.idempotence", "true",
        "message.timeout.ms", timeout,
        /* The client's ack waits for the broker: do not hold a lone message
         * for librdkafka's default 5 ms; under load batches form anyway
         * while a request is in flight. */
        "linger.ms", "1",
        "socket.nagle.disable", "true",
        NULL,
    };
    rd_kafka_conf_t *conf = chatd_kafka_conf_new(self, st->cfg, defaults, err, sizeof(err));
    if (!conf) {
        rt_error(rt_who(self), "%s", err);
        return RT_ERR;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!st->rk) {
        rd_kafka_conf_destroy(conf);
        rt_error(rt_who(self), "kafka producer: %s", err);
        return RT_ERR;
    }
    chatd_kafka_route_logs(st->rk);
    st->mainq = rd_kafka_queue_get_main(st->rk);
    if (chatd_kafka_wake_open(self, &st->wake, st->mainq, on_wake) < 0) {
        rt_error(rt_who(self), "kafka wake pipe: %s", strerror(errno));
        return RT_ERR;
    }
    /* Anything queued before the pipe was wired would not wake us. */
    rd_kafka_poll(st->rk, 0);
    return RT_OK;
}

static void
produce(rt_actor *self, producer *st, const proto_env *msg)
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
    rd_kafka_resp_err_t err = rd_kafka_producev(
        st->rk, RD_KAFKA_V_TOPIC(st->cfg->kafka_topic),
        RD_KAFKA_V_KEY(m.room, m.room_len),
        RD_KAFKA_V_VALUE(value, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
        RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
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
    p->prev = st->tail;
    if (st->tail)
        st->tail->next = p;
    else
        st->head = p;
    st->tail = p;
    st->waiting++;
    arm_tick(self, st, TICK_MS);
    /* The fault point "fatal" (--faults 'crash:producer.fatal,after=N,max=1')
     * makes librdkafka raise a real fatal error, the one a fenced idempotent
     * producer gets, so the way from on_error to a restart is tested. */
    if (rt_fault_point(self, "fatal", NULL) == RT_FAULT_CRASH)
        rd_kafka_test_fatal_error(st->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "injected by a fault rule (producer.fatal)");
}

/* Answers unavailable for entries past their deadline (they stay linked
 * until their delivery report frees them). Entries are in deadline order. */
static void
expire(rt_actor *self, producer *st)
{
    double now = rt_now_ms(rt_of(self));
    for (pending *p = st->head; p; p = p->next) {
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
tick(rt_actor *self, producer *st)
{
    st->tick = 0;
    if (st->closing)
        rd_kafka_flush(st->rk, 0);      /* non-blocking: send now, serve reports */
    else
        rd_kafka_poll(st->rk, 0);
    expire(self, st);
    if (st->closing) {
        if (st->waiting == 0 || rt_now_ms(rt_of(self)) >= st->drain_deadline) {
            if (st->waiting)
                rt_warn(rt_who(self), "shutdown: %zu deliveries still pending", st->waiting);
            rt_exit(self, RT_EXIT_SHUTDOWN, NULL);
            return;
        }
        arm_tick(self, st, DRAIN_TICK_MS);
    } else if (st->head) {
        arm_tick(self, st, TICK_MS);
    }
}

static int
producer_handle(rt_actor *self, const proto_env *msg)
{
    producer *st = rt_state(self);
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
    producer *st = rt_state(self);
    st->closing = true;
    if (st->waiting == 0)
        return RT_OK;
    double bound = st->cfg->produce_timeout_ms < CHATD_PRODUCER_DRAIN_MS
                       ? st->cfg->produce_timeout_ms : CHATD_PRODUCER_DRAIN_MS;
    st->drain_deadline = rt_now_ms(rt_of(self)) + bound;
    rd_kafka_flush(st->rk, 0);
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
    producer *st = rt_state(self);
    st->terminating = true;
    if (st->rk) {
        /* Purge so that destroy does not wait on the broker; the purged
         * messages' reports only free their entries now. */
        rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                   RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_poll(st->rk, 0);
        chatd_kafka_wake_close(self, &st->wake, st->mainq);
        rd_kafka_queue_destroy(st->mainq);
        ev_now_update(rt_loop(rt_of(self)));
        double t0 = rt_now_ms(rt_of(self));
        rd_kafka_destroy(st->rk);
        ev_now_update(rt_loop(rt_of(self)));
        rt_debug(rt_who(self), "rd_kafka_destroy took %.1f ms", rt_now_ms(rt_of(self)) - t0);
        st->rk = NULL;
    }
    while (st->head) {
        pending *p = st->head;
        st->head = p->next;
        free(p);
    }
    st->tail = NULL;
    rt_metric_set(st->up, 0);
}

const rt_actor_spec chatd_producer_spec = {
    .name = CHATD_PRODUCER,
    .state_size = sizeof(producer),
    .init = producer_init,
    .handle = producer_handle,
    .terminate = producer_terminate,
    .shutdown = producer_shutdown,
    .mailbox_cap = 8192,
    .overflow = RT_OVERFLOW_REJECT,
};
