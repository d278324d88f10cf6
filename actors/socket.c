/*
 * The socket actor (see socket.h; its parts: socket_private.h).
 *
 * This file holds the spec, the connections and their Engine.IO/Socket.IO
 * packets, pings and sending to clients. The WebSocket machinery (the lws
 * context, connection lifecycle, send queues and coalesced writes, message
 * reassembly) is adapters/ws.c; its callbacks below run from the loop's I/O
 * watchers, outside the actor's handler, and touch only the actor's state,
 * as the handler does (one thread). The actor never frees a connection
 * itself: it calls ws_close and frees its sk_conn in the `close` callback.
 */
#include "actors/socket.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "actors/socket_private.h"
#include "runtime/log.h"

#define SWEEP_MIN_MS 50

enum { T_SWEEP = CHATD_T_TICK, T_DRAIN };

double
sk_now_ms(const socket_state *st)
{
    return rt_now_ms(rt_of(st->self));
}

int
sk_ask(socket_state *st, const char *peer, uint32_t type, uint64_t corr, const proto_mp_buf *b)
{
    return rt_send_named(rt_of(st->self), rt_self(st->self), peer, type, corr, b->data, b->len);
}

/* --- sending to clients ----------------------------------------------------- */

/* Queues f on c. A reader whose queue is full is too slow: it is closed (it
 * catches up later with join since). */
static void
push(socket_state *st, sk_conn *c, ws_frame *f)
{
    switch (ws_send(c->ws, f)) {
    case WS_OK:
    case WS_ECLOSING:
        return;
    case WS_EFULL:
        rt_metric_add(st->m.slow_closes, 1);
        rt_info_limited(rt_who(st->self), "closing connection %" PRIu64 " (%s): send queue "
                        "full (%zu frames, %zu bytes)", c->id, c->user, ws_queued(c->ws),
                        ws_queued_bytes(c->ws));
        ws_close(c->ws, WS_CLOSE_POLICY_VIOLATION, "send queue overflow");
        return;
    default:
        ws_close(c->ws, WS_CLOSE_UNEXPECTED, "out of memory");
        return;
    }
}

/* Sends what st->out holds to c as one frame, and empties st->out. */
static void
send_out(socket_state *st, sk_conn *c)
{
    ws_frame *f = ws_frame_text(st->out.data, st->out.len);
    proto_mp_buf_reset(&st->out);
    if (!f) {
        ws_close(c->ws, WS_CLOSE_UNEXPECTED, "out of memory");
        return;
    }
    push(st, c, f);
    ws_frame_unref(f);
}

void
sk_send(socket_state *st, sk_conn *c)
{
    send_out(st, c);
}

size_t
sk_broadcast_out(socket_state *st, sk_room *r, const sk_conn *skip, uint64_t seq)
{
    ws_frame *f = ws_frame_text(st->out.data, st->out.len);
    proto_mp_buf_reset(&st->out);
    if (!f)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < r->nmembers; i++) {
        if (r->members[i] != skip && (!seq || r->joined[i] < seq)) {
            push(st, r->members[i], f);
            n++;
        }
    }
    ws_frame_unref(f);
    return n;
}

void
sk_ack_ok(socket_state *st, sk_conn *c, bool has_ack, uint64_t ack_id, json_t *fields)
{
    rt_metric_add(st->m.acks_ok, 1);
    if (has_ack && sio_encode_ack_ok(&st->out, ack_id, fields) == PROTO_OK)
        send_out(st, c);
    proto_mp_buf_reset(&st->out);
    json_decref(fields);
}

void
sk_ack_err(socket_state *st, sk_conn *c, bool has_ack, uint64_t ack_id, sio_error err,
           const char *message)
{
    rt_metric_add(st->m.acks_err[err], 1);
    if (has_ack && sio_encode_ack_error(&st->out, ack_id, err, message) == PROTO_OK)
        send_out(st, c);
    proto_mp_buf_reset(&st->out);
}

/* After a turn: every connection that got frames writes them, in one write. */
static void
socket_after_turn(rt_actor *self)
{
    socket_state *st = rt_state(self);
    ws_flush(st->ws);
}

/* --- packets ------------------------------------------------------------------ */

static void
random_sid(char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t bytes[32];
    if (getrandom(bytes, n - 1, 0) != (ssize_t)(n - 1))
        for (size_t i = 0; i < n - 1; i++)
            bytes[i] = (uint8_t)rand();
    for (size_t i = 0; i < n - 1; i++)
        out[i] = alphabet[bytes[i] & 63];
    out[n - 1] = '\0';
}

static void
on_connect(socket_state *st, sk_conn *c, const sio_packet *p)
{
    if (c->phase == SK_CONNECTED)
        return;     /* a second CONNECT: already connected, nothing changes */
    if (!sk_auth_connect(st, c, p)) {
        send_out(st, c);        /* the refusal */
        return;
    }
    c->phase = SK_CONNECTED;
    char sid[21];
    random_sid(sid, sizeof(sid));
    if (sio_encode_connect(&st->out, sid, strlen(sid)) == PROTO_OK)
        send_out(st, c);
}

/* One complete text message from the client (the adapter's `message`). */
static void
on_message(void *owner, void *conn_data, const char *data, size_t len)
{
    socket_state *st = owner;
    sk_conn *c = conn_data;
    sio_packet p;
    switch (sio_parse(data, len, &p)) {
    case SIO_PKT_INVALID:
        rt_metric_add(st->m.bad_frames, 1);
        rt_info_limited(rt_who(st->self), "connection %" PRIu64 ": not an Engine.IO packet: "
                        "closing", c->id);
        ws_close(c->ws, WS_CLOSE_PROTOCOL_ERROR, "invalid packet");
        break;
    case SIO_PKT_PONG:
        c->awaiting_pong = false;
        break;
    case SIO_PKT_PING:
        if (sio_encode_pong(&st->out, p.data, p.data_len) == PROTO_OK)
            send_out(st, c);
        break;
    case SIO_PKT_CLOSE:
        ws_close(c->ws, WS_CLOSE_NORMAL, "bye");
        break;
    case SIO_PKT_CONNECT:
        on_connect(st, c, &p);
        break;
    case SIO_PKT_CONNECT_ERROR:
        if (sio_encode_connect_error(&st->out, p.nsp, p.nsp_len, p.message) == PROTO_OK)
            send_out(st, c);
        break;
    case SIO_PKT_DISCONNECT:
        while (c->nrooms)
            sk_member_remove(st, c, c->rooms[c->nrooms - 1]);
        c->phase = SK_OPEN;
        c->opened_at = sk_now_ms(st);   /* it may CONNECT again, in time */
        break;
    case SIO_PKT_EVENT:
        if (c->phase == SK_CONNECTED) {
            sk_on_event(st, c, &p);
            break;
        }
        /* before CONNECT, after DISCONNECT or a refused CONNECT */
        /* fallthrough */
    case SIO_PKT_FOREIGN_EVENT:
        /* as the reference server does (socket.io's Client.ondecoded) */
        rt_metric_add(st->m.bad_frames, 1);
        rt_info_limited(rt_who(st->self), "connection %" PRIu64 ": event on a namespace it "
                        "is not connected to: closing", c->id);
        ws_close(c->ws, WS_CLOSE_PROTOCOL_ERROR, "not connected to the namespace");
        break;
    case SIO_PKT_IGNORE:
        break;
    }
    proto_mp_buf_reset(&st->out);
    sio_packet_free(&p);
}

/* --- connections ------------------------------------------------------------------ */

/* Only /socket.io/?EIO=4&transport=websocket upgrades, and none while
 * draining. */
static bool
on_accept(void *owner, ws_request *req)
{
    socket_state *st = owner;
    char path[64], eio[16], transport[32];
    if (st->draining || !ws_request_path(req, path, sizeof(path)))
        return false;
    if (strcmp(path, "/socket.io/") != 0 && strcmp(path, "/socket.io") != 0)
        return false;
    const char *v = ws_request_arg(req, "EIO=", eio, sizeof(eio));
    if (!v || strcmp(v, "4") != 0)
        return false;
    v = ws_request_arg(req, "transport=", transport, sizeof(transport));
    return v && strcmp(v, "websocket") == 0;
}

/* A new connection: the Engine.IO open packet goes out at once. */
static void *
on_open(void *owner, ws_conn *w)
{
    socket_state *st = owner;
    sk_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ws = w;
    c->id = ws_conn_id(w);
    c->tokens = st->cfg->rate_burst;
    c->tokens_at = c->ping_at = c->opened_at = sk_now_ms(st);
    random_sid(c->sid, 21);
    if (!rt_map_put_u64(&st->conns, c->id, c)) {
        free(c);
        return NULL;
    }
    rt_metric_set(st->m.connections, (double)st->conns.len);
    sk_auth_on_open(st, c);
    if (sio_encode_open(&st->out, c->sid, strlen(c->sid), (unsigned)st->cfg->ping_interval_ms,
                        (unsigned)st->cfg->ping_timeout_ms,
                        (unsigned long)st->cfg->max_payload) == PROTO_OK)
        send_out(st, c);
    proto_mp_buf_reset(&st->out);
    if (st->draining)
        ws_close(w, WS_CLOSE_GOING_AWAY, "shutting down");
    return c;
}

/* The connection is gone: its memberships end. */
static void
on_close(void *owner, void *conn_data)
{
    socket_state *st = owner;
    sk_conn *c = conn_data;
    while (c->nrooms)
        sk_member_remove(st, c, c->rooms[c->nrooms - 1]);
    rt_map_del_u64(&st->conns, c->id);
    rt_metric_set(st->m.connections, (double)st->conns.len);
    free(c->rooms);
    free(c->bearer);
    free(c);
}

static int
on_http(void *owner, ws_request *req, const char *path)
{
    socket_state *st = owner;
    return chatd_http_serve(&st->http, req, path);
}

/* --- timers: pings, request deadlines ---------------------------------------------- */

static void
sweep(socket_state *st)
{
    double now = sk_now_ms(st);
    sk_reqs_expire(st, now);
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&st->conns, &pos, &e);) {
        sk_conn *c = e->value;
        if (ws_closing(c->ws))
            continue;
        if (c->phase == SK_OPEN && now - c->opened_at >= st->cfg->connect_timeout_ms) {
            rt_info_limited(rt_who(st->self), "connection %" PRIu64 ": no Socket.IO CONNECT "
                            "within %d ms: closing", c->id, st->cfg->connect_timeout_ms);
            ws_close(c->ws, WS_CLOSE_POLICY_VIOLATION, "connect timeout");
            continue;
        }
        sk_auth_sweep(st, c);
        if (c->awaiting_pong) {
            if (now - c->ping_at >= st->cfg->ping_timeout_ms) {
                rt_info_limited(rt_who(st->self), "connection %" PRIu64 ": no pong: closing",
                                c->id);
                ws_close(c->ws, WS_CLOSE_GOING_AWAY, "ping timeout");
            }
        } else if (now - c->ping_at >= st->cfg->ping_interval_ms) {
            c->ping_at = now;
            c->awaiting_pong = true;
            if (sio_encode_ping(&st->out) == PROTO_OK)
                send_out(st, c);
        }
    }
}

static double
sweep_period(const chatd_config *cfg)
{
    double p = (cfg->ping_interval_ms < cfg->ping_timeout_ms ? cfg->ping_interval_ms
                                                             : cfg->ping_timeout_ms) / 4.0;
    if (p > 1000)
        p = 1000;
    if (p > cfg->request_timeout_ms / 4.0)
        p = cfg->request_timeout_ms / 4.0;
    return p < SWEEP_MIN_MS ? SWEEP_MIN_MS : p;
}

/* --- the actor ------------------------------------------------------------------------ */

static void
metrics_init(socket_state *st, rt_runtime *rt)
{
    st->m.connections = rt_metric_get(rt, RT_GAUGE, "chatd_connections", NULL,
                                      "Open client connections.");
    for (int e = SIO_EV_JOIN; e <= SIO_EV_PRESENCE; e++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "event=\"%s\"", sio_event_name((sio_event)e));
        st->m.events[e] = rt_metric_get(rt, RT_COUNTER, "chatd_events_total", labels,
                                        "Valid client events by type.");
    }
    st->m.acks_ok = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"ok\"",
                                  "Acks sent to clients by result.");
    for (int e = SIO_E_BAD_REQUEST; e <= SIO_E_UNAVAILABLE; e++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "result=\"%s\"", sio_error_code((sio_error)e));
        st->m.acks_err[e] = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", labels, NULL);
    }
    st->m.delivered = rt_metric_get(rt, RT_COUNTER, "chatd_messages_delivered_total", NULL,
                                    "Message events queued to client connections.");
    st->m.acked = chatd_stage_histogram(rt, CHATD_STAGE_ACKED);
    st->m.delivered_age = chatd_stage_histogram(rt, CHATD_STAGE_DELIVERED);
    st->m.typing_delivered = rt_metric_get(rt, RT_COUNTER, "chatd_typing_delivered_total",
                                           NULL, "Typing events queued to client connections.");
    st->m.live_stale = rt_metric_get(rt, RT_COUNTER, "chatd_live_stale_dropped_total", NULL,
                                     "Live messages at or below their room's last live seq "
                                     "(published again), not delivered twice.");
    st->m.slow_closes = rt_metric_get(rt, RT_COUNTER, "chatd_slow_consumer_closes_total", NULL,
                                      "Connections closed because their send queue overflowed.");
    st->m.bad_frames = rt_metric_get(rt, RT_COUNTER, "chatd_invalid_packets_total", NULL,
                                     "Frames that were not Engine.IO packets, or events "
                                     "outside a connected namespace.");
}

static int
socket_init(rt_actor *self, const void *arg)
{
    socket_state *st = rt_state(self);
    st->cfg = arg;
    st->self = self;
    proto_mp_buf_growing(&st->out);
    rt_runtime *rt = rt_of(self);
    metrics_init(st, rt);
    if (chatd_http_init(&st->http, rt, st->cfg, rt_who(self)) != 0 || sk_auth_init(st) != RT_OK)
        return RT_ERR;

    static const ws_callbacks callbacks = {
        .http = on_http, .accept = on_accept, .open = on_open, .message = on_message,
        .close = on_close,
    };
    ws_config wc = {
        .loop = rt_loop(rt),
        .host = st->cfg->host,
        .port = st->cfg->port,
        .max_message = (size_t)st->cfg->max_payload,
        .queue_max = (size_t)st->cfg->send_queue_max,
        .queue_bytes = (size_t)st->cfg->send_queue_bytes,
        .who = rt_who(self),
    };
    if (!(st->ws = ws_server_new(&wc, &callbacks, st)))
        return RT_ERR;
    rt_info(rt_who(self), "listening on %s:%d", st->cfg->host, st->cfg->port);
    rt_send_after(self, sweep_period(st->cfg), T_SWEEP, 0, NULL, 0);
    /* whatever fanout holds of an earlier socket is stale */
    rt_send_named(rt, rt_self(self), CHATD_FANOUT, CHATD_T_SOCKET_UP, 0, NULL, 0);
    return RT_OK;
}

static int
socket_handle(rt_actor *self, const proto_env *msg)
{
    socket_state *st = rt_state(self);
    switch (msg->type) {
    case T_SWEEP:
        sweep(st);
        rt_send_after(self, sweep_period(st->cfg), T_SWEEP, 0, NULL, 0);
        return RT_OK;
    case T_DRAIN:
        rt_exit(self, RT_EXIT_SHUTDOWN, "drained");
        return RT_OK;
    case PROTO_T_MESSAGE:
        sk_on_live_message(st, msg);
        return RT_OK;
    case PROTO_T_TYPING:
        sk_on_live_typing(st, msg);
        return RT_OK;
    case CHATD_T_FANOUT_UP:
        sk_on_fanout_up(st);
        return RT_OK;
    case PROTO_T_ACK:
    case PROTO_T_JOIN_REPLY:
    case PROTO_T_HISTORY_REPLY:
    case PROTO_T_USERS:
        sk_on_reply(st, msg);
        return RT_OK;
    }
    rt_warn(rt_who(self), "unexpected message type %" PRIu32 " from #%" PRIu64 " ignored",
            msg->type, msg->from);
    return RT_OK;
}

/* Stop accepting, close every connection with "going away", give them a
 * moment to leave cleanly, then exit. */
static int
socket_shutdown(rt_actor *self)
{
    socket_state *st = rt_state(self);
    st->draining = true;
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&st->conns, &pos, &e);) {
        sk_conn *c = e->value;
        ws_close(c->ws, WS_CLOSE_GOING_AWAY, "shutting down");
    }
    if (st->conns.len == 0)
        return RT_OK;
    rt_send_after(self, 500, T_DRAIN, 0, NULL, 0);
    return RT_PENDING;
}

static void
socket_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    socket_state *st = rt_state(self);
    /* the adapter's close callbacks free every connection (rooms still exist
     * for their bookkeeping) */
    ws_server_free(st->ws);
    st->ws = NULL;
    sk_reqs_free(st);
    sk_rooms_free(st);
    rt_map_free(&st->conns);
    chatd_http_free(&st->http);
    sk_auth_free(st);
    proto_mp_buf_free(&st->out);
    rt_metric_set(st->m.connections, 0);
}

const rt_actor_spec chatd_socket_spec = {
    .name = CHATD_SOCKET,
    .state_size = sizeof(socket_state),
    .init = socket_init,
    .handle = socket_handle,
    .terminate = socket_terminate,
    .shutdown = socket_shutdown,
    .after_turn = socket_after_turn,
    .mailbox_cap = 65536,
    .overflow = RT_OVERFLOW_REJECT,
    .batch = 256,
};
