/*
 * The fanout actor: room subscriptions, delivery of channel messages to the
 * socket, publishing of stored batches and typing. The contract is fanout.h;
 * presence is actors/presence.c, the state they share fanout_internal.h, and
 * everything hiredis (connections, watchdog, queueing while down, the
 * per-channel rules) is the Redis client's, adapters/redis.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/chatd.h"
#include "actors/fanout_internal.h"
#include "proto/envelope.h"
#include "runtime/grow.h"
#include "runtime/log.h"

/* corr of our own CHATD_T_TICK timer */
enum { TICK_REFRESH = 1 };     /* refresh presence */

const fanout_cmd FANOUT_CMD_PUBLISH = { "PUBLISH", false, false };
const fanout_cmd FANOUT_CMD_ZADD = { "ZADD", false, false };
const fanout_cmd FANOUT_CMD_ZREM = { "ZREM", false, false };
const fanout_cmd FANOUT_CMD_PEXPIRE = { "PEXPIRE", false, false };
const fanout_cmd FANOUT_CMD_ZREMRANGE = { "ZREMRANGEBYSCORE", false, false };

/* ---- publishing ------------------------------------------------------- */

/* Publishes payload wrapped in an envelope of type on room's channel; its
 * reply comes to on_reply with tag. Returns true when the PUBLISH was issued. */
static bool
publish(fanout_state *st, uint32_t type, const char *room, size_t room_len,
        const uint8_t *payload, size_t len, const fanout_cmd *tag)
{
    if (!rt_grow((void **)&st->env, &st->env_cap, PROTO_ENV_OVERHEAD + len, 1)) {
        rt_warn(rt_who(st->self), "out of memory: message to %.*s not published",
                (int)room_len, room);
        return false;
    }
    proto_env env = { .type = type, .payload = payload, .payload_len = len };
    size_t elen;
    proto_err e = proto_env_encode(&env, st->env, st->env_cap, &elen);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "cannot encode an envelope for %.*s: %s", (int)room_len,
                room, proto_strerror(e));
        return false;
    }
    char chan[sizeof(FANOUT_ROOM_PREFIX) + PROTO_DM_ROOM_MAX];
    int clen = snprintf(chan, sizeof(chan), FANOUT_ROOM_PREFIX "%.*s", (int)room_len, room);
    int rc = redis_publish(st->redis, (void *)tag, chan, (size_t)clen, st->env, elen);
    if (rc == REDIS_CLIENT_FULL)
        rt_metric_add(st->m_refused, 1);
    return rc == REDIS_CLIENT_OK;
}

/* Answers a batch's requester once nothing of it is left, and frees it. */
static void
batch_settle(fanout_state *st, fanout_batch *fb)
{
    if (fb->left)
        return;
    if (fb->failed)
        chatd_reply_ack(st->self, fb->to, fb->corr, PROTO_ACK_UNAVAILABLE,
                        "redis did not take every publish");
    else
        chatd_reply_ack(st->self, fb->to, fb->corr, PROTO_ACK_NONE, NULL);
    rt_list_remove(&st->batches, &fb->link);
    free(fb);
}

/* PROTO_T_MESSAGE_BATCH from the store: publishes each message; answered
 * (PROTO_T_ACK, the batch's corr) once Redis replied to every PUBLISH, not
 * ok when one was refused or lost, so the store can have it delivered again. */
static int
handle_batch(fanout_state *st, const proto_env *msg)
{
    proto_batch b;
    proto_err e = proto_batch_decode(msg->payload, msg->payload_len, &b);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad message batch from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, proto_strerror(e));
        return RT_OK;
    }
    fanout_batch *fb = calloc(1, sizeof(*fb) + b.count * sizeof(fb->rx_us[0]));
    if (!fb) {
        proto_batch_free(&b);
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return RT_OK;
    }
    fb->cmd = (fanout_cmd){ "PUBLISH", false, true };
    fb->to = msg->from;
    fb->corr = msg->corr;
    rt_list_push_back(&st->batches, &fb->link);
    for (size_t i = 0; i < b.count; i++) {
        const proto_msg *m = &b.msgs[i];
        st->rec.len = 0;
        st->rec.failed = false;
        e = proto_msg_encode(m, &st->rec);
        if (e != PROTO_OK) {
            rt_warn(rt_who(st->self), "cannot encode message %s of %s: %s", m->id, m->room,
                    proto_strerror(e));
            fb->failed = true;
            continue;
        }
        if (publish(st, PROTO_T_MESSAGE, m->room, m->room_len, st->rec.data, st->rec.len,
                    &fb->cmd)) {
            fb->left++;
            fb->rx_us[fb->queued++] = m->rx_us;
        } else
            fb->failed = true;
    }
    proto_batch_free(&b);
    batch_settle(st, fb);
    return RT_OK;
}

static int
handle_typing(fanout_state *st, const proto_env *msg)
{
    proto_typing t;
    proto_err e = proto_typing_decode(msg->payload, msg->payload_len, &t);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad typing record from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        return RT_OK;
    }
    publish(st, PROTO_T_TYPING, t.room, t.room_len, msg->payload, msg->payload_len,
            &FANOUT_CMD_PUBLISH);
    proto_typing_free(&t);
    return RT_OK;
}

/* ---- subscriptions ---------------------------------------------------- */

static size_t
room_channel(char *chan, size_t cap, const char *room, size_t room_len)
{
    return (size_t)snprintf(chan, cap, FANOUT_ROOM_PREFIX "%.*s", (int)room_len, room);
}

static void
room_free(fanout_room *r)
{
    free(r->waiters);
    free(r);
}

/* Keeps a SUBSCRIBE request to ack once Redis confirms the room. */
static bool
room_wait(fanout_state *st, const proto_room *pr, rt_id to, uint64_t corr)
{
    fanout_room *r = rt_map_get(&st->rooms, pr->room, pr->room_len);
    if (!r) {
        if (!(r = calloc(1, sizeof(*r))))
            return false;
        memcpy(r->name, pr->room, pr->room_len);
        r->len = pr->room_len;
        if (!rt_map_put(&st->rooms, r->name, r->len, r)) {
            free(r);
            return false;
        }
    }
    if (!rt_grow((void **)&r->waiters, &r->waiters_cap, r->nwaiters + 1, sizeof(*r->waiters)))
        return false;
    r->waiters[r->nwaiters++] = (fanout_waiter){ to, corr };
    return true;
}

static int
handle_subscribe(fanout_state *st, const proto_env *msg, bool subscribe)
{
    proto_room pr;
    proto_err e = proto_room_decode(msg->payload, msg->payload_len, &pr);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad %s from %" PRIu64 ": %s",
                subscribe ? "subscribe" : "unsubscribe", msg->from, proto_strerror(e));
        if (subscribe)
            chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST,
                            proto_strerror(e));
        return RT_OK;
    }
    char chan[sizeof(FANOUT_ROOM_PREFIX) + PROTO_DM_ROOM_MAX];
    size_t clen = room_channel(chan, sizeof(chan), pr.room, pr.room_len);
    if (!subscribe) {
        redis_unsubscribe(st->redis, chan, clen);
        return RT_OK;
    }
    int rc = redis_subscribe(st->redis, chan, clen);
    if (rc == REDIS_SUB_LIVE)
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_NONE, NULL);
    else if (rc != REDIS_SUB_PENDING || !room_wait(st, &pr, msg->from, msg->corr))
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
    return RT_OK;
}

/* The socket restarted: nothing of its connections is left. */
static int
handle_socket_up(fanout_state *st)
{
    redis_unsubscribe_all(st->redis);
    rt_map_entry *e;
    for (size_t i = 0; rt_map_next(&st->rooms, &i, &e);)
        room_free(e->value);
    rt_map_free(&st->rooms);
    rt_map_init(&st->rooms);
    presence_drop_all(st);
    rt_info(rt_who(st->self), "socket restarted: subscriptions and presence dropped");
    return RT_OK;
}

/* ---- the Redis client's callbacks ------------------------------------- */

static void
on_up(void *data)
{
    fanout_state *st = data;
    rt_metric_set(st->m_up, 1);
    rt_info(rt_who(st->self), "redis connected (publisher and subscriber)");
    rt_send_named(st->rt, rt_self(st->self), st->socket, CHATD_T_FANOUT_UP, 0, NULL, 0);
    int every = st->cfg->presence_ttl_ms / 3;
    rt_send_after(st->self, every > 0 ? every : 1, CHATD_T_TICK, TICK_REFRESH, NULL, 0);
}

/* No reconnect here: the supervisor restarts the actor (with backoff), and
 * the new instance's CHATD_T_FANOUT_UP makes the socket subscribe again. */
static void
on_down(void *data, const char *reason)
{
    fanout_state *st = data;
    rt_metric_set(st->m_up, 0);
    rt_crash(st->self, "redis %s: %s", st->cfg->redis_url, reason);
}

static void
on_reply(void *data, const redisReply *reply, void *privdata)
{
    fanout_state *st = data;
    const fanout_cmd *cmd = privdata;
    if (cmd->is_query) {
        presence_query_reply(st, (fanout_query *)(void *)privdata, reply);
        return;
    }
    if (cmd->is_batch) {
        fanout_batch *fb = (fanout_batch *)(void *)privdata;
        fb->left--;
        uint64_t rx_us = fb->replied < fb->queued ? fb->rx_us[fb->replied++] : 0;
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            fb->failed = true;
        } else {
            rt_metric_add(st->m_published, 1);
            chatd_stage_observe(st->h_published, rx_us);
        }
        batch_settle(st, fb);
        if (!reply || reply->type != REDIS_REPLY_ERROR)
            return;
    }
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        rt_warn(rt_who(st->self), "redis %s failed: %s", cmd->name, reply->str);
    else if (cmd == &FANOUT_CMD_PUBLISH)
        rt_metric_add(st->m_published, 1);
}

static void
on_subscribed(void *data, const char *chan, size_t chan_len)
{
    fanout_state *st = data;
    size_t plen = sizeof(FANOUT_ROOM_PREFIX) - 1;
    if (chan_len <= plen || memcmp(chan, FANOUT_ROOM_PREFIX, plen) != 0)
        return;
    fanout_room *r = rt_map_del(&st->rooms, chan + plen, chan_len - plen);
    if (!r)
        return;
    for (size_t i = 0; i < r->nwaiters; i++)
        chatd_reply_ack(st->self, r->waiters[i].to, r->waiters[i].corr, PROTO_ACK_NONE, NULL);
    room_free(r);
}

/* Why a channel message of room is not fit for the socket, or NULL. */
static const char *
check_channel_message(const proto_env *env, const char *room, size_t room_len, proto_err *e,
                      uint64_t *rx_us)
{
    if (env->from != 0 || env->to != 0 || env->corr != 0)
        return "envelope carries an address (from, to and corr must be 0)";
    if (env->type == PROTO_T_MESSAGE) {
        proto_msg m;
        if ((*e = proto_msg_decode(env->payload, env->payload_len, &m)) != PROTO_OK)
            return "message record";
        bool same = m.room_len == room_len && memcmp(m.room, room, room_len) == 0;
        bool stored = m.seq != 0;
        *rx_us = m.rx_us;
        proto_msg_free(&m);
        if (!same)
            return "message of another room";
        return stored ? NULL : "message without a seq";
    }
    if (env->type == PROTO_T_TYPING) {
        proto_typing t;
        if ((*e = proto_typing_decode(env->payload, env->payload_len, &t)) != PROTO_OK)
            return "typing record";
        bool same = t.room_len == room_len && memcmp(t.room, room, room_len) == 0;
        proto_typing_free(&t);
        return same ? NULL : "typing of another room";
    }
    return "envelope type is neither message nor typing";
}

/* A message on a room channel: outside input, checked strictly, then the
 * record's bytes go unchanged to the socket. */
static void
on_message(void *data, const char *chan, size_t chan_len, const char *payload, size_t len)
{
    fanout_state *st = data;
    size_t plen = sizeof(FANOUT_ROOM_PREFIX) - 1;
    if (chan_len <= plen || memcmp(chan, FANOUT_ROOM_PREFIX, plen) != 0) {
        rt_warn(rt_who(st->self), "redis subscriber: reply on a foreign channel");
        return;
    }
    const char *room = chan + plen;
    size_t room_len = chan_len - plen;
    proto_err e = PROTO_OK;
    proto_env env;
    const char *why;
    uint64_t rx_us = 0;
    if ((e = proto_env_decode((const uint8_t *)payload, len, &env)) != PROTO_OK)
        why = "envelope";
    else
        why = check_channel_message(&env, room, room_len, &e, &rx_us);
    if (why) {
        rt_metric_add(st->m_bad, 1);
        rt_warn(rt_who(st->self), "dropped a bad message on " FANOUT_ROOM_PREFIX "%.*s: %s%s%s",
                (int)room_len, room, why, e != PROTO_OK ? ": " : "",
                e != PROTO_OK ? proto_strerror(e) : "");
        return;
    }
    rt_metric_add(st->m_received, 1);
    chatd_stage_observe(st->h_received, rx_us);
    rt_send_named(st->rt, rt_self(st->self), st->socket, env.type, 0, env.payload,
                  env.payload_len);
}

static const redis_callbacks fanout_redis_callbacks = {
    .on_up = on_up,
    .on_down = on_down,
    .on_reply = on_reply,
    .on_subscribed = on_subscribed,
    .on_message = on_message,
};

/* ---- the actor -------------------------------------------------------- */

static void
metrics_get(fanout_state *st)
{
    st->m_published = rt_metric_get(st->rt, RT_COUNTER, "chatd_messages_published_total", NULL,
                                    "Messages published to Redis.");
    st->m_received = rt_metric_get(st->rt, RT_COUNTER, "chatd_messages_received_total", NULL,
                                   "Messages and typing events received from Redis.");
    st->m_bad = rt_metric_get(st->rt, RT_COUNTER, "chatd_fanout_dropped_total",
                              "reason=\"malformed\"", "Fanout input dropped.");
    st->m_refused = rt_metric_get(st->rt, RT_COUNTER, "chatd_fanout_dropped_total",
                                  "reason=\"queue_full\"", "Fanout input dropped.");
    st->m_up = rt_metric_get(st->rt, RT_GAUGE, "chatd_backend_up", "backend=\"redis\"",
                             "1 when the backend is connected.");
    st->h_published = chatd_stage_histogram(st->rt, CHATD_STAGE_PUBLISHED);
    st->h_received = chatd_stage_histogram(st->rt, CHATD_STAGE_RECEIVED);
}

static int
fanout_init(rt_actor *self, const void *arg)
{
    const chatd_fanout_arg *a = arg;
    fanout_state *st = rt_state(self);
    st->self = self;
    st->rt = rt_of(self);
    st->cfg = a->cfg;
    st->socket = a->socket ? a->socket : CHATD_SOCKET;
    snprintf(st->node_hex, sizeof(st->node_hex), "%016" PRIx64, st->cfg->node_key);
    snprintf(st->node_channel, sizeof(st->node_channel), FANOUT_NODE_PREFIX "%s", st->node_hex);
    proto_mp_buf_growing(&st->rec);
    metrics_get(st);

    /* The node's own channel, on which nobody publishes, is the client's
     * anchor (adapters/redis.h says why it needs one). */
    redis_options opt = {
        .url = st->cfg->redis_url,
        .anchor = st->node_channel,
        .log_name = rt_who(self),
        .timeout_ms = st->cfg->request_timeout_ms,
        .queue_max = FANOUT_PENDING_MAX,
    };
    char err[256];
    st->redis = redis_new(rt_loop(st->rt), &opt, &fanout_redis_callbacks, st, err, sizeof(err));
    if (!st->redis) {
        rt_error(rt_who(self), "%s", err);
        return RT_ERR;
    }
    return RT_OK;
}

static int
handle_tick(fanout_state *st, const proto_env *msg)
{
    if (msg->corr != TICK_REFRESH)
        return RT_OK;
    presence_refresh(st);
    int every = st->cfg->presence_ttl_ms / 3;
    rt_send_after(st->self, every > 0 ? every : 1, CHATD_T_TICK, TICK_REFRESH, NULL, 0);
    return RT_OK;
}

static int
fanout_handle(rt_actor *self, const proto_env *msg)
{
    fanout_state *st = rt_state(self);
    switch (msg->type) {
    case PROTO_T_MESSAGE_BATCH:
        return handle_batch(st, msg);
    case PROTO_T_TYPING:
        return handle_typing(st, msg);
    case CHATD_T_SUBSCRIBE:
        return handle_subscribe(st, msg, true);
    case CHATD_T_UNSUBSCRIBE:
        return handle_subscribe(st, msg, false);
    case CHATD_T_PRESENCE_ADD:
        return presence_handle_member(st, msg, true);
    case CHATD_T_PRESENCE_DEL:
        return presence_handle_member(st, msg, false);
    case CHATD_T_PRESENCE_QUERY:
        return presence_handle_query(st, msg);
    case CHATD_T_SOCKET_UP:
        return handle_socket_up(st);
    case CHATD_T_TICK:
        return handle_tick(st, msg);
    case PROTO_T_ACK:
        return RT_OK;       /* nothing we asked for */
    default:
        rt_warn(rt_who(st->self), "unexpected message type %" PRIu32 " from %" PRIu64,
                msg->type, msg->from);
        return RT_OK;
    }
}

/* Sends what the turn issued now rather than on the next loop iteration. */
static void
fanout_after_turn(rt_actor *self)
{
    fanout_state *st = rt_state(self);
    if (st->redis)
        redis_flush(st->redis);
}

static void
fanout_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    fanout_state *st = rt_state(self);
    if (st->m_up)
        rt_metric_set(st->m_up, 0);
    redis_free(st->redis);      /* no callback after this */
    st->redis = NULL;
    rt_link *l;
    while ((l = rt_list_pop_front(&st->batches))) {
        fanout_batch *fb = RT_CONTAINER(l, fanout_batch, link);
        /* perhaps published: the store has it published again */
        chatd_reply_ack(st->self, fb->to, fb->corr, PROTO_ACK_UNAVAILABLE, "fanout restarting");
        free(fb);
    }
    rt_map_entry *e;
    for (size_t i = 0; rt_map_next(&st->rooms, &i, &e);)
        room_free(e->value);
    rt_map_free(&st->rooms);
    presence_free(st);
    proto_mp_buf_free(&st->rec);
    free(st->env);
}

const rt_actor_spec chatd_fanout_spec = {
    .name = "fanout",
    .state_size = sizeof(fanout_state),
    .init = fanout_init,
    .handle = fanout_handle,
    .terminate = fanout_terminate,
    .after_turn = fanout_after_turn,
    .mailbox_cap = 65536,
    .overflow = RT_OVERFLOW_REJECT,
};
