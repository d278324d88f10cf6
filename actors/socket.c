/*
 * The socket actor (see socket.h).
 *
 * Ownership: the actor's state owns the lws context, every connection (conn),
 * every room and every pending request. lws owns the wsi; a conn is created
 * on ESTABLISHED and freed on CLOSED. Frames are reference-counted: a
 * broadcast frame is shared by the send queues of all the members it goes to.
 *
 * Re-entrancy: lws callbacks run from the loop's I/O watchers, outside the
 * actor's handler; they only touch the actor's state, as the handler does
 * (one thread). The actor never frees a conn itself: it asks lws to close
 * the connection and frees the conn in the CLOSED callback.
 */
#include "actors/socket.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "actors/chatd.h"
#include "actors/config.h"
#include "proto/record.h"
#include "proto/sio.h"
#include "proto/utf8.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "runtime/metrics.h"

#define FRAME_HEADER_MAX 10
#define WRITE_CHUNK (64 * 1024)     /* bytes gathered into one raw write */
#define SWEEP_MIN_MS 50

enum { T_SWEEP = CHATD_T_TICK, T_DRAIN };

/* --- frames ------------------------------------------------------------- */

typedef struct frame {
    uint32_t refs;
    uint32_t len;                   /* header + payload */
    uint8_t data[];
} frame;

/* A WebSocket text frame (server to client: FIN, opcode 1, no mask) holding
 * payload. NULL when out of memory. */
static frame *
frame_new(const void *payload, size_t len)
{
    frame *f = malloc(sizeof(*f) + FRAME_HEADER_MAX + len);
    if (!f)
        return NULL;
    uint8_t *p = f->data;
    *p++ = 0x81;
    if (len < 126) {
        *p++ = (uint8_t)len;
    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    } else {
        *p++ = 127;
        for (int i = 7; i >= 0; i--)
            *p++ = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(p, payload, len);
    f->len = (uint32_t)(p - f->data + len);
    f->refs = 1;
    return f;
}

static void
frame_unref(frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* --- state -------------------------------------------------------------- */

typedef struct room room;
typedef struct req req;

typedef enum conn_state {
    CONN_OPEN,          /* Engine.IO open sent, waiting for CONNECT */
    CONN_CONNECTED,     /* Socket.IO connected as user */
} conn_state;

typedef struct conn {
    struct lws *wsi;
    uint64_t id;
    conn_state state;
    bool closing;
    bool dirty;                     /* on the flush list */
    struct conn *dirty_next;
    char sid[24];
    char user[PROTO_USER_MAX + 1];
    size_t user_len;

    char *rx;                       /* the message being reassembled */
    size_t rx_len, rx_cap;

    frame **q;                      /* send queue: ring of frames */
    size_t q_head, q_len, q_cap;

    room **rooms;                   /* rooms joined */
    size_t nrooms, rooms_cap;

    unsigned inflight;
    double tokens;
    double tokens_at;               /* ms */
    double ping_at;                 /* ms: when the last ping was sent */
    bool awaiting_pong;
} conn;

typedef struct presence_entry {
    char user[PROTO_USER_MAX + 1];
    unsigned conns;                 /* local connections of user in the room */
} presence_entry;

typedef enum sub_state { SUB_NONE, SUB_PENDING, SUB_LIVE } sub_state;

struct room {
    char name[PROTO_DM_ROOM_MAX + 1];
    size_t name_len;
    conn **members;
    size_t n, cap;
    presence_entry *users;
    size_t nusers, users_cap;
    sub_state sub;
    req *sub_req;                   /* the pending SUBSCRIBE */
    req **waiting;                  /* joins waiting for the subscription */
    size_t nwaiting, waiting_cap;
};

typedef enum req_kind {
    REQ_JOIN_SUB,       /* a SUBSCRIBE for a room (no client) */
    REQ_JOIN,           /* a client's join, waiting for the store */
    REQ_MESSAGE,
    REQ_HISTORY,
    REQ_PRESENCE,
} req_kind;

struct req {
    uint64_t corr;
    req_kind kind;
    uint64_t conn_id;               /* 0 for REQ_JOIN_SUB */
    bool has_ack;
    uint64_t ack_id;
    double deadline;                /* ms */
    room *room;                     /* JOIN_SUB (a room with a pending
                                     * subscription is never freed) */
    bool added;                     /* JOIN: this join made the conn a member */
    bool sent;                      /* JOIN: the store was asked */
    char room_name[PROTO_DM_ROOM_MAX + 1];
    char msg_id[PROTO_MSGID_MAX + 1];
    size_t room_len, msg_id_len;
    bool has_since;
    uint64_t since;
    req *prev, *next;               /* in deadline order */
};

typedef struct socket_state {
    const chatd_config *cfg;
    rt_actor *self;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    void *foreign_loops[1];

    rt_map conns;                   /* id -> conn */
    rt_map rooms;                   /* name -> room */
    rt_map reqs;                    /* corr -> req */
    req *req_head, *req_tail;
    uint64_t next_conn_id;
    uint64_t next_corr;
    conn *dirty_head;
    size_t nconns;

    proto_mp_buf out;                    /* scratch for encoding */
    uint8_t *wbuf;                  /* LWS_PRE + WRITE_CHUNK, for raw writes */
    bool draining;

    struct {
        rt_metric *connections;
        rt_metric *events[SIO_EV_PRESENCE + 1];
        rt_metric *acks_ok;
        rt_metric *acks_err[SIO_E_UNAVAILABLE + 1];
        rt_metric *delivered;
        rt_metric *typing_delivered;
        rt_metric *slow_closes;
        rt_metric *bad_frames;
        rt_metric *http[4];
    } m;
} socket_state;

static void conn_close(socket_state *s, conn *c, enum lws_close_status why, const char *text);
static void fail_req(socket_state *s, req *r, sio_error err, const char *message);

static double
now_ms(socket_state *s)
{
    return rt_now_ms(rt_of(s->self));
}

/* --- sending to clients ---------------------------------------------------- */

/* Queues f (taking a reference) on c. A reader whose queue is full is too
 * slow: it is closed and catches up later with join since. */
static void
conn_push(socket_state *s, conn *c, frame *f)
{
    if (c->closing)
        return;
    if (c->q_len == c->q_cap) {
        if (c->q_cap >= (size_t)s->cfg->send_queue_max) {
            rt_metric_add(s->m.slow_closes, 1);
            rt_info(rt_who(s->self), "closing connection %" PRIu64 " (%s): send queue full",
                    c->id, c->user);
            conn_close(s, c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "send queue overflow");
            return;
        }
        size_t cap = c->q_cap ? c->q_cap * 2 : 4;
        if (cap > (size_t)s->cfg->send_queue_max)
            cap = (size_t)s->cfg->send_queue_max;
        frame **q = malloc(cap * sizeof(*q));
        if (!q) {
            conn_close(s, c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
            return;
        }
        for (size_t i = 0; i < c->q_len; i++)
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q;
        c->q_head = 0;
        c->q_cap = cap;
    }
    f->refs++;
    c->q[(c->q_head + c->q_len++) % c->q_cap] = f;
    if (!c->dirty) {
        c->dirty = true;
        c->dirty_next = s->dirty_head;
        s->dirty_head = c;
    }
}

/* Writes what is queued on c, as many frames per write as fit in WRITE_CHUNK.
 * Stops when lws had to buffer (the rest goes in the WRITEABLE callback).
 * Returns -1 when the write failed (lws closes the connection). */
static int
conn_write(socket_state *s, conn *c)
{
    while (c->q_len && !lws_partial_buffered(c->wsi)) {
        uint8_t *dst = s->wbuf + LWS_PRE;
        size_t total = 0;
        frame *big = NULL;
        while (c->q_len) {
            frame *f = c->q[c->q_head];
            if (total + f->len > WRITE_CHUNK) {
                if (total == 0)
                    big = f;        /* larger than the chunk: alone, below */
                break;
            }
            memcpy(dst + total, f->data, f->len);
            total += f->len;
            c->q_head = (c->q_head + 1) % c->q_cap;
            c->q_len--;
            frame_unref(f);
        }
        if (big) {
            uint8_t *tmp = malloc(LWS_PRE + big->len);
            if (!tmp)
                return -1;
            memcpy(tmp + LWS_PRE, big->data, big->len);
            c->q_head = (c->q_head + 1) % c->q_cap;
            c->q_len--;
            int n = lws_write(c->wsi, tmp + LWS_PRE, big->len, LWS_WRITE_RAW);
            free(tmp);
            frame_unref(big);
            if (n < 0)
                return -1;
            continue;
        }
        if (lws_write(c->wsi, dst, total, LWS_WRITE_RAW) < 0)
            return -1;
    }
    if (c->q_len == 0 && c->q_cap > 16) {
        /* an idle connection keeps no large queue */
        free(c->q);
        c->q = NULL;
        c->q_cap = c->q_head = 0;
    }
    if (c->q_len)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* Encodes what s->out holds as one frame and queues it on c. */
static void
send_out(socket_state *s, conn *c)
{
    frame *f = frame_new(s->out.data, s->out.len);
    proto_mp_buf_reset(&s->out);
    if (!f) {
        conn_close(s, c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    conn_push(s, c, f);
    frame_unref(f);
}

static void
ack_ok(socket_state *s, conn *c, bool has_ack, uint64_t ack_id, json_t *fields)
{
    rt_metric_add(s->m.acks_ok, 1);
    if (has_ack && sio_encode_ack_ok(&s->out, ack_id, fields) == PROTO_OK)
        send_out(s, c);
    proto_mp_buf_reset(&s->out);
    json_decref(fields);
}

static void
ack_err(socket_state *s, conn *c, bool has_ack, uint64_t ack_id, sio_error err,
        const char *message)
{
    rt_metric_add(s->m.acks_err[err], 1);
    if (has_ack && sio_encode_ack_error(&s->out, ack_id, err, message) == PROTO_OK)
        send_out(s, c);
    proto_mp_buf_reset(&s->out);
}

/* Queues the frame in s->out to every member of room r but skip. Returns how
 * many it went to. */
static size_t
broadcast_out(socket_state *s, room *r, conn *skip)
{
    frame *f = frame_new(s->out.data, s->out.len);
    proto_mp_buf_reset(&s->out);
    if (!f)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->members[i] != skip) {
            conn_push(s, r->members[i], f);
            n++;
        }
    }
    frame_unref(f);
    return n;
}

/* After a turn: write every connection that got frames, directly (no
 * WRITEABLE round trip) when lws holds nothing of it. */
static void
socket_after_turn(rt_actor *self)
{
    socket_state *s = rt_state(self);
    conn *c = s->dirty_head;
    s->dirty_head = NULL;
    while (c) {
        conn *next = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (!c->closing) {
            if (lws_partial_buffered(c->wsi))
                lws_callback_on_writable(c->wsi);
            else if (conn_write(s, c) < 0)
                conn_close(s, c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "write failed");
        }
        c = next;
    }
}

static void
conn_close(socket_state *s, conn *c, enum lws_close_status why, const char *text)
{
    (void)s;
    if (c->closing)
        return;
    c->closing = true;
    lws_close_reason(c->wsi, why, (unsigned char *)text, strlen(text));
    /* lws closes it from its own context, then calls CLOSED */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* --- requests --------------------------------------------------------------- */

static req *
req_new(socket_state *s, req_kind kind, conn *c, bool has_ack, uint64_t ack_id)
{
    req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->corr = ++s->next_corr;
    r->kind = kind;
    r->conn_id = c ? c->id : 0;
    r->has_ack = has_ack;
    r->ack_id = ack_id;
    r->deadline = now_ms(s) + s->cfg->request_timeout_ms;
    if (!rt_map_put_u64(&s->reqs, r->corr, r)) {
        free(r);
        return NULL;
    }
    r->prev = s->req_tail;
    if (s->req_tail)
        s->req_tail->next = r;
    else
        s->req_head = r;
    s->req_tail = r;
    if (c)
        c->inflight++;
    return r;
}

static void
req_free(socket_state *s, req *r)
{
    rt_map_del_u64(&s->reqs, r->corr);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->req_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->req_tail = r->prev;
    conn *c = r->conn_id ? rt_map_get_u64(&s->conns, r->conn_id) : NULL;
    if (c && c->inflight)
        c->inflight--;
    free(r);
}

/* Sends a request payload to a peer actor. Returns RT_OK or an error (the
 * peer is down or its mailbox is full): the caller answers unavailable. */
static int
ask(socket_state *s, const char *peer, uint32_t type, uint64_t corr, const proto_mp_buf *b)
{
    return rt_send_named(rt_of(s->self), rt_self(s->self), peer, type, corr, b->data, b->len);
}

/* --- rooms -------------------------------------------------------------------- */

static room *
room_get(socket_state *s, const char *name, size_t len, bool create)
{
    room *r = rt_map_get(&s->rooms, name, len);
    if (r || !create)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->name, name, len);
    r->name_len = len;
    if (!rt_map_put(&s->rooms, name, len, r)) {
        free(r);
        return NULL;
    }
    return r;
}

static bool
is_member(const conn *c, const room *r)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r)
            return true;
    return false;
}

/* Grows an array of pointers-sized elements; false when out of memory. */
static bool
grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap * 2 : 4;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = n;
    return true;
}

static void
presence_send(socket_state *s, uint32_t type, const room *r, const char *user, size_t user_len)
{
    proto_member m = {0};
    memcpy(m.room, r->name, r->name_len);
    m.room_len = r->name_len;
    memcpy(m.user, user, user_len);
    m.user_len = user_len;
    uint8_t mem[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_member_encode(&m, &b) == PROTO_OK)
        ask(s, CHATD_FANOUT, type, 0, &b);
}

/* Sends fanout a request about a room ({room} record). Returns RT_OK or the
 * send's error. */
static int
ask_room(socket_state *s, uint32_t type, uint64_t corr, const char *name, size_t len)
{
    proto_room pr = {0};
    memcpy(pr.room, name, len);
    pr.room_len = len;
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_room_encode(&pr, &b) != PROTO_OK)
        return RT_EINVAL;
    return ask(s, CHATD_FANOUT, type, corr, &b);
}

static bool
member_add(socket_state *s, conn *c, room *r)
{
    if (!grow((void **)&c->rooms, &c->rooms_cap, c->nrooms + 1, sizeof(*c->rooms)) ||
        !grow((void **)&r->members, &r->cap, r->n + 1, sizeof(*r->members)))
        return false;
    presence_entry *p = NULL;
    for (size_t i = 0; i < r->nusers; i++)
        if (strcmp(r->users[i].user, c->user) == 0)
            p = &r->users[i];
    if (!p) {
        if (!grow((void **)&r->users, &r->users_cap, r->nusers + 1, sizeof(*r->users)))
            return false;
        p = &r->users[r->nusers++];
        memset(p, 0, sizeof(*p));
        memcpy(p->user, c->user, c->user_len);
    }
    c->rooms[c->nrooms++] = r;
    r->members[r->n++] = c;
    if (p->conns++ == 0)
        presence_send(s, CHATD_T_PRESENCE_ADD, r, c->user, c->user_len);
    return true;
}

/* Frees r when nobody is in it and nothing waits on it, unsubscribing. */
static void
room_release(socket_state *s, room *r)
{
    if (r->n || r->nwaiting || r->sub_req)
        return;
    if (r->sub == SUB_LIVE)
        ask_room(s, CHATD_T_UNSUBSCRIBE, 0, r->name, r->name_len);
    rt_map_del(&s->rooms, r->name, r->name_len);
    free(r->members);
    free(r->users);
    free(r->waiting);
    free(r);
}

static void
member_remove(socket_state *s, conn *c, room *r)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r) {
            c->rooms[i] = c->rooms[--c->nrooms];
            break;
        }
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] == c) {
            r->members[i] = r->members[--r->n];
            break;
        }
    for (size_t i = 0; i < r->nusers; i++)
        if (strcmp(r->users[i].user, c->user) == 0) {
            if (--r->users[i].conns == 0) {
                presence_send(s, CHATD_T_PRESENCE_DEL, r, c->user, c->user_len);
                r->users[i] = r->users[--r->nusers];
            }
            break;
        }
    room_release(s, r);
}

/* --- replies from the backends ------------------------------------------------ */

static json_t *
msg_json(const proto_msg *m)
{
    return json_pack("{s:s%,s:I,s:s%,s:s%,s:s%,s:I}", "room", m->room, m->room_len,
                     "seq", (json_int_t)m->seq, "id", m->id, m->id_len,
                     "user", m->user, m->user_len, "text", m->text, m->text_len,
                     "ts", (json_int_t)m->ts);
}

static json_t *
msgs_json(const proto_msg *msgs, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, msg_json(&msgs[i]));
    return a;
}

/* Asks the store for a join's seq and missed messages. */
static void
join_ask_store(socket_state *s, req *r)
{
    proto_join_req jr = { .has_since = r->has_since, .since = r->since };
    memcpy(jr.room, r->room_name, r->room_len);
    jr.room_len = r->room_len;
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    r->sent = true;
    if (proto_join_req_encode(&jr, &b) != PROTO_OK ||
        ask(s, CHATD_STORE, PROTO_T_JOIN_REQ, r->corr, &b) != RT_OK)
        fail_req(s, r, SIO_E_UNAVAILABLE, "the message store is unavailable");
}

/* The room's subscription is live (ok) or failed: go on with its joins. */
static void
sub_done(socket_state *s, room *r, bool ok)
{
    r->sub = ok ? SUB_LIVE : SUB_NONE;
    size_t n = r->nwaiting;
    req **waiting = r->waiting;
    r->waiting = NULL;
    r->nwaiting = r->waiting_cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (ok)
            join_ask_store(s, waiting[i]);
        else
            fail_req(s, waiting[i], SIO_E_UNAVAILABLE, "live delivery is unavailable");
    }
    free(waiting);
    room_release(s, r);
}

/* Answers a failed request (unavailable...) and undoes what it did. */
static void
fail_req(socket_state *s, req *r, sio_error err, const char *message)
{
    conn *c = r->conn_id ? rt_map_get_u64(&s->conns, r->conn_id) : NULL;
    if (r->kind == REQ_JOIN_SUB) {
        room *rm = r->room;
        rm->sub_req = NULL;
        req_free(s, r);
        sub_done(s, rm, false);
        return;
    }
    if (r->kind == REQ_JOIN) {
        /* by name: the room may have been freed since (everybody left) */
        room *rm = room_get(s, r->room_name, r->room_len, false);
        if (rm) {
            for (size_t i = 0; i < rm->nwaiting; i++)
                if (rm->waiting[i] == r) {
                    rm->waiting[i] = rm->waiting[--rm->nwaiting];
                    break;
                }
            if (c && r->added && is_member(c, rm))
                member_remove(s, c, rm);
            else
                room_release(s, rm);
        }
    }
    if (c)
        ack_err(s, c, r->has_ack, r->ack_id, err, message);
    req_free(s, r);
}

static void
on_ack(socket_state *s, req *r, const proto_env *msg)
{
    proto_ack a;
    if (proto_ack_decode(msg->payload, msg->payload_len, &a) != PROTO_OK) {
        rt_warn(rt_who(s->self), "undecodable ack from #%" PRIu64, msg->from);
        fail_req(s, r, SIO_E_UNAVAILABLE, "internal error");
        return;
    }
    if (!a.ok) {
        fail_req(s, r, SIO_E_UNAVAILABLE, a.msg_len ? a.msg : "a backend is unavailable");
        return;
    }
    if (r->kind == REQ_JOIN_SUB) {
        room *rm = r->room;
        rm->sub_req = NULL;
        req_free(s, r);
        sub_done(s, rm, true);
        return;
    }
    conn *c = rt_map_get_u64(&s->conns, r->conn_id);
    if (c && r->kind == REQ_MESSAGE) {
        json_t *f = json_pack("{s:s%}", "id", r->msg_id, r->msg_id_len);
        ack_ok(s, c, r->has_ack, r->ack_id, f);
    } else if (c) {
        /* an ok ack where a reply record was expected */
        ack_err(s, c, r->has_ack, r->ack_id, SIO_E_UNAVAILABLE, "internal error");
    }
    req_free(s, r);
}

static void
on_reply(socket_state *s, const proto_env *msg)
{
    req *r = rt_map_get_u64(&s->reqs, msg->corr);
    if (!r)
        return;     /* timed out already, or its connection is gone */
    if (msg->type == PROTO_T_ACK) {
        on_ack(s, r, msg);
        return;
    }
    conn *c = rt_map_get_u64(&s->conns, r->conn_id);
    if (msg->type == PROTO_T_JOIN_REPLY && r->kind == REQ_JOIN) {
        proto_join_reply jr;
        if (proto_join_reply_decode(msg->payload, msg->payload_len, &jr) != PROTO_OK) {
            fail_req(s, r, SIO_E_UNAVAILABLE, "internal error");
            return;
        }
        if (c) {
            json_t *f = json_pack("{s:s%,s:I,s:o,s:b}", "room", r->room_name, r->room_len,
                                  "seq", (json_int_t)jr.seq, "missed",
                                  msgs_json(jr.missed, jr.count), "more", jr.more);
            ack_ok(s, c, r->has_ack, r->ack_id, f);
        }
        proto_join_reply_free(&jr);
    } else if (msg->type == PROTO_T_HISTORY_REPLY && r->kind == REQ_HISTORY) {
        proto_history_reply hr;
        if (proto_history_reply_decode(msg->payload, msg->payload_len, &hr) != PROTO_OK) {
            fail_req(s, r, SIO_E_UNAVAILABLE, "internal error");
            return;
        }
        if (c) {
            json_t *f = json_pack("{s:o,s:b}", "messages", msgs_json(hr.msgs, hr.count),
                                  "more", hr.more);
            ack_ok(s, c, r->has_ack, r->ack_id, f);
        }
        proto_history_reply_free(&hr);
    } else if (msg->type == PROTO_T_USERS && r->kind == REQ_PRESENCE) {
        proto_users u;
        if (proto_users_decode(msg->payload, msg->payload_len, &u) != PROTO_OK) {
            fail_req(s, r, SIO_E_UNAVAILABLE, "internal error");
            return;
        }
        if (c) {
            json_t *users = json_array();
            for (size_t i = 0; users && i < u.count; i++)
                json_array_append_new(users, json_string(u.users[i]));
            ack_ok(s, c, r->has_ack, r->ack_id, json_pack("{s:o}", "users", users));
        }
        proto_users_free(&u);
    } else {
        rt_warn(rt_who(s->self), "unexpected reply type %" PRIu32 " for request %" PRIu64,
                msg->type, msg->corr);
        fail_req(s, r, SIO_E_UNAVAILABLE, "internal error");
        return;
    }
    req_free(s, r);
}

/* A stored message from fanout: to every local member of its room. */
static void
on_live_message(socket_state *s, const proto_env *msg)
{
    proto_msg m;
    if (proto_msg_decode(msg->payload, msg->payload_len, &m) != PROTO_OK) {
        rt_warn(rt_who(s->self), "undecodable live message dropped");
        return;
    }
    room *r = room_get(s, m.room, m.room_len, false);
    if (r && r->n) {
        sio_message sm = { m.room, m.room_len, m.seq, m.id, m.id_len, m.user, m.user_len,
                           m.text, m.text_len, (int64_t)m.ts };
        if (sio_encode_message(&s->out, &sm) == PROTO_OK)
            rt_metric_add(s->m.delivered, (double)broadcast_out(s, r, NULL));
        proto_mp_buf_reset(&s->out);
    }
    proto_msg_free(&m);
}

static void
on_live_typing(socket_state *s, const proto_env *msg)
{
    proto_typing t;
    if (proto_typing_decode(msg->payload, msg->payload_len, &t) != PROTO_OK)
        return;
    room *r = room_get(s, t.room, t.room_len, false);
    if (r && r->n) {
        conn *skip = t.node == s->cfg->node_key ? rt_map_get_u64(&s->conns, t.conn) : NULL;
        if (sio_encode_typing(&s->out, t.room, t.room_len, t.user, t.user_len) == PROTO_OK)
            rt_metric_add(s->m.typing_delivered, (double)broadcast_out(s, r, skip));
        proto_mp_buf_reset(&s->out);
    }
}

/* fanout (re)started: it knows nothing of this node's rooms any more. */
static void
on_fanout_up(socket_state *s)
{
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&s->rooms, &pos, &e);) {
        room *r = e->value;
        for (size_t i = 0; i < r->nusers; i++)
            presence_send(s, CHATD_T_PRESENCE_ADD, r, r->users[i].user,
                          strlen(r->users[i].user));
        if (r->sub == SUB_LIVE)
            ask_room(s, CHATD_T_SUBSCRIBE, 0, r->name, r->name_len);
    }
}

/* --- client events -------------------------------------------------------------- */

/* Token bucket plus in-flight bound. */
static bool
rate_ok(socket_state *s, conn *c)
{
    double now = now_ms(s);
    c->tokens += (now - c->tokens_at) * s->cfg->rate_per_s / 1e3;
    if (c->tokens > s->cfg->rate_burst)
        c->tokens = s->cfg->rate_burst;
    c->tokens_at = now;
    if (c->tokens < 1 || c->inflight >= (unsigned)s->cfg->max_inflight)
        return false;
    c->tokens -= 1;
    return true;
}

static void
ev_join(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    room *r = room_get(s, rq->room, rq->room_len, true);
    req *j = r ? req_new(s, REQ_JOIN, c, p->has_ack, p->ack_id) : NULL;
    if (!j) {
        if (r)
            room_release(s, r);
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    memcpy(j->room_name, rq->room, rq->room_len);
    j->room_len = rq->room_len;
    j->has_since = rq->has_since;
    j->since = rq->since;
    if (!is_member(c, r)) {
        if (!member_add(s, c, r)) {
            fail_req(s, j, SIO_E_UNAVAILABLE, "out of memory");
            return;
        }
        j->added = true;
    }
    if (r->sub == SUB_LIVE) {
        join_ask_store(s, j);
        return;
    }
    if (!grow((void **)&r->waiting, &r->waiting_cap, r->nwaiting + 1, sizeof(*r->waiting))) {
        fail_req(s, j, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    r->waiting[r->nwaiting++] = j;
    if (r->sub == SUB_PENDING)
        return;
    req *sub = req_new(s, REQ_JOIN_SUB, NULL, false, 0);
    if (!sub) {
        sub_done(s, r, false);
        return;
    }
    sub->room = r;
    r->sub_req = sub;
    r->sub = SUB_PENDING;
    if (ask_room(s, CHATD_T_SUBSCRIBE, sub->corr, r->name, r->name_len) != RT_OK)
        fail_req(s, sub, SIO_E_UNAVAILABLE, "live delivery is unavailable");
}

static void
ev_leave(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    room *r = room_get(s, rq->room, rq->room_len, false);
    if (r && is_member(c, r))
        member_remove(s, c, r);
    ack_ok(s, c, p->has_ack, p->ack_id, json_pack("{s:s%}", "room", rq->room, rq->room_len));
}

static void
ev_message(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_msg m;
    if (proto_msg_set(&m, rq->room, rq->room_len, rq->id, rq->id_len, c->user, c->user_len,
                      rq->text, rq->text_len, chatd_wall_ms(), 0) != PROTO_OK) {
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_BAD_REQUEST, "invalid message");
        return;
    }
    req *r = req_new(s, REQ_MESSAGE, c, p->has_ack, p->ack_id);
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    if (!r || proto_msg_encode(&m, &b) != PROTO_OK) {
        if (r)
            req_free(s, r);
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
    } else {
        memcpy(r->msg_id, rq->id, rq->id_len);
        r->msg_id_len = rq->id_len;
        if (ask(s, CHATD_PRODUCER, PROTO_T_MESSAGE, r->corr, &b) != RT_OK)
            fail_req(s, r, SIO_E_UNAVAILABLE, "the message broker is unavailable");
    }
    proto_mp_buf_free(&b);
    proto_msg_free(&m);
}

static void
ev_history(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_history_req hr = { .has_before = rq->has_before, .before = rq->before,
                             .limit = rq->limit };
    memcpy(hr.room, rq->room, rq->room_len);
    hr.room_len = rq->room_len;
    req *r = req_new(s, REQ_HISTORY, c, p->has_ack, p->ack_id);
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (!r) {
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    if (proto_history_req_encode(&hr, &b) != PROTO_OK ||
        ask(s, CHATD_STORE, PROTO_T_HISTORY_REQ, r->corr, &b) != RT_OK)
        fail_req(s, r, SIO_E_UNAVAILABLE, "the message store is unavailable");
}

static void
ev_typing(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_typing t = { .node = s->cfg->node_key, .conn = c->id };
    memcpy(t.room, rq->room, rq->room_len);
    t.room_len = rq->room_len;
    memcpy(t.user, c->user, c->user_len);
    t.user_len = c->user_len;
    uint8_t mem[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_typing_encode(&t, &b) != PROTO_OK ||
        ask(s, CHATD_FANOUT, PROTO_T_TYPING, 0, &b) != RT_OK)
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "live delivery is unavailable");
    else
        ack_ok(s, c, p->has_ack, p->ack_id, NULL);
}

static void
ev_presence(socket_state *s, conn *c, const sio_packet *p, const sio_request *rq)
{
    req *r = req_new(s, REQ_PRESENCE, c, p->has_ack, p->ack_id);
    if (!r) {
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    if (ask_room(s, CHATD_T_PRESENCE_QUERY, r->corr, rq->room, rq->room_len) != RT_OK)
        fail_req(s, r, SIO_E_UNAVAILABLE, "presence is unavailable");
}

static void
on_event(socket_state *s, conn *c, const sio_packet *p)
{
    if (p->err != SIO_OK) {
        ack_err(s, c, p->has_ack, p->ack_id, p->err, p->message);
        return;
    }
    sio_request rq;
    const char *message = NULL;
    sio_error err = sio_request_parse(p, c->user, c->user_len, &rq, &message);
    if (err != SIO_OK) {
        ack_err(s, c, p->has_ack, p->ack_id, err, message);
        return;
    }
    rt_metric_add(s->m.events[rq.event], 1);

    /* not_member, then rate_limited, then unavailable (PROTOCOL.md order) */
    if (rq.event == SIO_EV_MESSAGE || rq.event == SIO_EV_TYPING) {
        room *r = room_get(s, rq.room, rq.room_len, false);
        if (!r || !is_member(c, r)) {
            ack_err(s, c, p->has_ack, p->ack_id, SIO_E_NOT_MEMBER, "join the room first");
            return;
        }
    }
    if (!rate_ok(s, c)) {
        ack_err(s, c, p->has_ack, p->ack_id, SIO_E_RATE_LIMITED, "slow down");
        return;
    }
    switch (rq.event) {
    case SIO_EV_JOIN:     ev_join(s, c, p, &rq); break;
    case SIO_EV_LEAVE:    ev_leave(s, c, p, &rq); break;
    case SIO_EV_MESSAGE:  ev_message(s, c, p, &rq); break;
    case SIO_EV_HISTORY:  ev_history(s, c, p, &rq); break;
    case SIO_EV_TYPING:   ev_typing(s, c, p, &rq); break;
    case SIO_EV_PRESENCE: ev_presence(s, c, p, &rq); break;
    case SIO_EV_NONE:     break;
    }
}

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

/* One complete text message from the client. */
static void
on_frame(socket_state *s, conn *c, const char *data, size_t len)
{
    sio_packet p;
    switch (sio_parse(data, len, &p)) {
    case SIO_PKT_INVALID:
        rt_metric_add(s->m.bad_frames, 1);
        rt_info(rt_who(s->self), "connection %" PRIu64 ": not an Engine.IO packet: closing",
                c->id);
        conn_close(s, c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "invalid packet");
        break;
    case SIO_PKT_PONG:
        c->awaiting_pong = false;
        break;
    case SIO_PKT_PING:
        if (sio_encode_pong(&s->out, p.data, p.data_len) == PROTO_OK)
            send_out(s, c);
        break;
    case SIO_PKT_CLOSE:
        conn_close(s, c, LWS_CLOSE_STATUS_NORMAL, "bye");
        break;
    case SIO_PKT_CONNECT:
        if (c->state == CONN_CONNECTED)
            break;      /* a second CONNECT: already connected, nothing changes */
        memcpy(c->user, p.user, p.user_len + 1);
        c->user_len = p.user_len;
        c->state = CONN_CONNECTED;
        char sid[21];
        random_sid(sid, sizeof(sid));
        if (sio_encode_connect(&s->out, sid, strlen(sid)) == PROTO_OK)
            send_out(s, c);
        break;
    case SIO_PKT_CONNECT_ERROR:
        if (sio_encode_connect_error(&s->out, p.nsp, p.nsp_len, p.message) == PROTO_OK)
            send_out(s, c);
        break;
    case SIO_PKT_DISCONNECT:
        while (c->nrooms)
            member_remove(s, c, c->rooms[c->nrooms - 1]);
        c->state = CONN_OPEN;
        break;
    case SIO_PKT_EVENT:
        if (c->state == CONN_CONNECTED)
            on_event(s, c, &p);
        break;
    case SIO_PKT_IGNORE:
        break;
    }
    proto_mp_buf_reset(&s->out);
    sio_packet_free(&p);
}

/* --- HTTP ------------------------------------------------------------------------ */

static int
http_reply(struct lws *wsi, unsigned status, const char *type, const char *body, size_t len,
           const char *cache)
{
    size_t cap = LWS_PRE + 1024 + len;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + cap - 1;
    int rc = -1;
    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &p, end))
        goto out;
    if (cache && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                              (const unsigned char *)cache,
                                              (int)strlen(cache), &p, end))
        goto out;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        goto out;
    memcpy(p, body, len);
    if (lws_write(wsi, p, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        goto out;
    rc = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    free(buf);
    return rc;
}

/* Answers {"status": good|bad, "down": [...]}: 200 when down (taken) is
 * empty, else 503. */
static int
http_status(struct lws *wsi, const char *good, const char *bad, json_t *down)
{
    bool ok = json_array_size(down) == 0;
    json_t *body = json_pack("{s:s,s:o}", "status", ok ? good : bad, "down", down);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc = text ? http_reply(wsi, ok ? 200 : 503, "application/json", text, strlen(text),
                               "no-store")
                  : -1;
    free(text);
    return rc;
}

/* The backends this node's roles need, with their gauge. */
static const struct { unsigned roles; const char *backend; } backends[] = {
    { CHATD_ROLE_PRODUCER | CHATD_ROLE_CONSUMER, CHATD_BACKEND_KAFKA },
    { CHATD_ROLE_FANOUT, CHATD_BACKEND_REDIS },
    { CHATD_ROLE_STORE, CHATD_BACKEND_POSTGRES },
};

static int
http_readyz(socket_state *s, struct lws *wsi)
{
    json_t *down = json_array();
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (!(s->cfg->roles & backends[i].roles))
            continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "backend=\"%s\"", backends[i].backend);
        if (rt_metric_value(rt_of(s->self), "chatd_backend_up", labels) != 1)
            json_array_append_new(down, json_string(backends[i].backend));
    }
    return http_status(wsi, "ready", "unavailable", down);
}

static int
http_healthz(socket_state *s, struct lws *wsi)
{
    static const struct { unsigned role; const char *name; } actors[] = {
        { CHATD_ROLE_SOCKET, CHATD_SOCKET }, { CHATD_ROLE_PRODUCER, CHATD_PRODUCER },
        { CHATD_ROLE_CONSUMER, CHATD_CONSUMER }, { CHATD_ROLE_STORE, CHATD_STORE },
        { CHATD_ROLE_FANOUT, CHATD_FANOUT },
    };
    json_t *down = json_array();
    rt_runtime *rt = rt_of(s->self);
    for (size_t i = 0; i < sizeof(actors) / sizeof(actors[0]); i++)
        if ((s->cfg->roles & actors[i].role) && !rt_alive(rt, rt_whereis(rt, actors[i].name)))
            json_array_append_new(down, json_string(actors[i].name));
    return http_status(wsi, "ok", "down", down);
}

static int
http_metrics(socket_state *s, struct lws *wsi)
{
    rt_metric_set(s->m.connections, (double)s->nconns);
    size_t len = 0;
    char *text = rt_metrics_render(rt_of(s->self), "chatd", &len);
    if (!text)
        return -1;
    int rc = http_reply(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
                        "no-store");
    free(text);
    return rc;
}

static const struct { const char *ext; const char *type; } content_types[] = {
    { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
    { ".json", "application/json" }, { ".map", "application/json" },
    { ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
    { ".txt", "text/plain; charset=utf-8" }, { ".webmanifest", "application/manifest+json" },
};

/* Serves a file of the web root: "/" is index.html. Only plain relative
 * paths of [A-Za-z0-9._/-] without "..": anything else is 404. Files under
 * /assets/ carry a content hash in their names and are cached for a year;
 * everything else is revalidated. Returns 1 when the path is not served,
 * else what http_reply returned. */
static int
http_static(socket_state *s, struct lws *wsi, const char *path)
{
    if (!s->cfg->web_root || path[0] != '/')
        return 1;
    const char *rel = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    size_t n = strlen(rel);
    if (n == 0 || n > 200 || strstr(rel, "..") || rel[0] == '/')
        return 1;
    for (size_t i = 0; i < n; i++) {
        char c = rel[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/'))
            return 1;
    }
    const char *type = NULL;
    const char *dot = strrchr(rel, '.');
    for (size_t i = 0; dot && i < sizeof(content_types) / sizeof(content_types[0]); i++)
        if (strcmp(dot, content_types[i].ext) == 0)
            type = content_types[i].type;
    if (!type)
        return 1;

    char file[512];
    snprintf(file, sizeof(file), "%s/%s", s->cfg->web_root, rel);
    FILE *f = fopen(file, "rb");
    if (!f)
        return 1;
    char *body = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && len <= 16 * 1024 * 1024 &&
        fseek(f, 0, SEEK_SET) == 0 && (body = malloc((size_t)len + 1)) &&
        fread(body, 1, (size_t)len, f) != (size_t)len)
        len = -1;
    fclose(f);
    if (!body || len < 0) {
        free(body);
        return 1;
    }
    const char *cache = strncmp(rel, "assets/", 7) == 0 ? "public, max-age=31536000, immutable"
                                                        : "no-cache";
    int rc = http_reply(wsi, 200, type, body, (size_t)len, cache);
    free(body);
    return rc;
}

static int
on_http(socket_state *s, struct lws *wsi, const char *path)
{
    static const char polling[] =
        "{\"code\":0,\"message\":\"HTTP long-polling is not supported: use transports: "
        "['websocket']\"}";
    static const char not_found[] = "{\"code\":404,\"message\":\"not found\"}";

    if (strcmp(path, "/healthz") == 0) {
        rt_metric_add(s->m.http[0], 1);
        return http_healthz(s, wsi);
    }
    if (strcmp(path, "/readyz") == 0) {
        rt_metric_add(s->m.http[1], 1);
        return http_readyz(s, wsi);
    }
    if (strcmp(path, "/metrics") == 0) {
        rt_metric_add(s->m.http[2], 1);
        return http_metrics(s, wsi);
    }
    rt_metric_add(s->m.http[3], 1);
    if (strncmp(path, "/socket.io", 10) == 0 && (path[10] == '/' || path[10] == '\0'))
        return http_reply(wsi, 400, "application/json", polling, sizeof(polling) - 1,
                          "no-store");
    int rc = http_static(s, wsi, path);
    if (rc != 1)
        return rc;
    return http_reply(wsi, 404, "application/json", not_found, sizeof(not_found) - 1,
                      "no-store");
}

/* Only /socket.io/?EIO=4&transport=websocket upgrades. */
static bool
upgrade_allowed(struct lws *wsi)
{
    char path[64], eio[16], transport[32];
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
        return false;
    if (strcmp(path, "/socket.io/") != 0 && strcmp(path, "/socket.io") != 0)
        return false;
    /* the buffer receives "name=value"; the result points at the value */
    const char *v = lws_get_urlarg_by_name(wsi, "EIO=", eio, sizeof(eio));
    if (!v || strcmp(v, "4") != 0)
        return false;
    v = lws_get_urlarg_by_name(wsi, "transport=", transport, sizeof(transport));
    return v && strcmp(v, "websocket") == 0;
}

/* --- the lws callback ------------------------------------------------------------- */

typedef struct session {
    conn *c;
} session;

static void
conn_free(socket_state *s, conn *c)
{
    while (c->nrooms)
        member_remove(s, c, c->rooms[c->nrooms - 1]);
    for (size_t i = 0; i < c->q_len; i++)
        frame_unref(c->q[(c->q_head + i) % c->q_cap]);
    if (c->dirty) {
        conn **pp = &s->dirty_head;
        while (*pp != c)
            pp = &(*pp)->dirty_next;
        *pp = c->dirty_next;
    }
    rt_map_del_u64(&s->conns, c->id);
    s->nconns--;
    rt_metric_set(s->m.connections, (double)s->nconns);
    free(c->q);
    free(c->rooms);
    free(c->rx);
    free(c);
}

static int
on_established(socket_state *s, struct lws *wsi, session *ss)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->wsi = wsi;
    c->id = ++s->next_conn_id;
    c->tokens = s->cfg->rate_burst;
    c->tokens_at = c->ping_at = now_ms(s);
    random_sid(c->sid, 21);
    if (!rt_map_put_u64(&s->conns, c->id, c)) {
        free(c);
        return -1;
    }
    ss->c = c;
    s->nconns++;
    rt_metric_set(s->m.connections, (double)s->nconns);
    if (sio_encode_open(&s->out, c->sid, strlen(c->sid), (unsigned)s->cfg->ping_interval_ms,
                        (unsigned)s->cfg->ping_timeout_ms,
                        (unsigned long)s->cfg->max_payload) == PROTO_OK)
        send_out(s, c);
    if (s->draining)
        conn_close(s, c, LWS_CLOSE_STATUS_GOINGAWAY, "shutting down");
    lws_callback_on_writable(wsi);
    return 0;
}

static int
on_receive(socket_state *s, struct lws *wsi, conn *c, const char *in, size_t len)
{
    if (c->closing)
        return 0;
    if (lws_frame_is_binary(wsi)) {
        /* no binary attachment is ever meaningful here */
        if (lws_is_final_fragment(wsi))
            c->rx_len = 0;
        return 0;
    }
    if (c->rx_len + len > (size_t)s->cfg->max_payload) {
        rt_info(rt_who(s->self), "connection %" PRIu64 ": packet over %d bytes: closing",
                c->id, s->cfg->max_payload);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"packet too large", 16);
        return -1;
    }
    bool final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    if (final && c->rx_len == 0) {
        /* the common case: one fragment, no copy */
        if (!proto_utf8_valid(in, len))
            goto bad_utf8;
        on_frame(s, c, in, len);
    } else {
        if (c->rx_len + len > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 1024;
            while (cap < c->rx_len + len)
                cap *= 2;
            char *p = realloc(c->rx, cap);
            if (!p)
                return -1;
            c->rx = p;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (!final)
            return 0;
        size_t n = c->rx_len;
        c->rx_len = 0;
        if (!proto_utf8_valid(c->rx, n))
            goto bad_utf8;
        on_frame(s, c, c->rx, n);
        if (c->rx_cap > 4096) {
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
    if (c->q_len)
        lws_callback_on_writable(wsi);
    return 0;

bad_utf8:
    lws_close_reason(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, (unsigned char *)"invalid UTF-8", 13);
    return -1;
}

static int
lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    socket_state *s = ctx ? lws_context_user(ctx) : NULL;
    session *ss = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return s ? on_http(s, wsi, in ? (const char *)in : "/") : -1;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return upgrade_allowed(wsi) && s && !s->draining ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(s, wsi, ss);
    case LWS_CALLBACK_RECEIVE:
        return ss && ss->c ? on_receive(s, wsi, ss->c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!ss || !ss->c)
            return 0;
        if (ss->c->closing)
            return -1;
        return conn_write(s, ss->c) < 0 ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (ss && ss->c) {
            conn_free(s, ss->c);
            ss->c = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* --- timers: pings, request deadlines ---------------------------------------------- */

static void
sweep(socket_state *s)
{
    double now = now_ms(s);
    while (s->req_head && s->req_head->deadline <= now) {
        req *r = s->req_head;
        rt_warn(rt_who(s->self), "request %" PRIu64 " timed out", r->corr);
        fail_req(s, r, SIO_E_UNAVAILABLE, "a backend did not answer in time");
    }
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&s->conns, &pos, &e);) {
        conn *c = e->value;
        if (c->closing)
            continue;
        if (c->awaiting_pong) {
            if (now - c->ping_at >= s->cfg->ping_timeout_ms) {
                rt_info(rt_who(s->self), "connection %" PRIu64 ": no pong: closing", c->id);
                conn_close(s, c, LWS_CLOSE_STATUS_GOINGAWAY, "ping timeout");
            }
        } else if (now - c->ping_at >= s->cfg->ping_interval_ms) {
            c->ping_at = now;
            c->awaiting_pong = true;
            if (sio_encode_ping(&s->out) == PROTO_OK)
                send_out(s, c);
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

static int
socket_init(rt_actor *self, const void *arg)
{
    socket_state *s = rt_state(self);
    s->cfg = arg;
    s->self = self;
    proto_mp_buf_growing(&s->out);
    if (!(s->wbuf = malloc(LWS_PRE + WRITE_CHUNK)))
        return RT_ERR;

    rt_runtime *rt = rt_of(self);
    s->m.connections = rt_metric_get(rt, RT_GAUGE, "chatd_connections", NULL,
                                     "Open client connections.");
    for (int e = SIO_EV_JOIN; e <= SIO_EV_PRESENCE; e++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "event=\"%s\"", sio_event_name((sio_event)e));
        s->m.events[e] = rt_metric_get(rt, RT_COUNTER, "chatd_events_total", labels,
                                       "Valid client events by type.");
    }
    s->m.acks_ok = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"ok\"",
                                 "Acks sent to clients by result.");
    for (int e = SIO_E_BAD_REQUEST; e <= SIO_E_UNAVAILABLE; e++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "result=\"%s\"", sio_error_code((sio_error)e));
        s->m.acks_err[e] = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", labels, NULL);
    }
    s->m.delivered = rt_metric_get(rt, RT_COUNTER, "chatd_messages_delivered_total", NULL,
                                   "Message events queued to client connections.");
    s->m.typing_delivered = rt_metric_get(rt, RT_COUNTER, "chatd_typing_delivered_total", NULL,
                                          "Typing events queued to client connections.");
    s->m.slow_closes = rt_metric_get(rt, RT_COUNTER, "chatd_slow_consumer_closes_total", NULL,
                                     "Connections closed because their send queue overflowed.");
    s->m.bad_frames = rt_metric_get(rt, RT_COUNTER, "chatd_invalid_packets_total", NULL,
                                    "Frames that were not Engine.IO packets.");
    static const char *paths[] = { "/healthz", "/readyz", "/metrics", "other" };
    for (int i = 0; i < 4; i++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "path=\"%s\"", paths[i]);
        s->m.http[i] = rt_metric_get(rt, RT_COUNTER, "chatd_http_requests_total", labels,
                                     "HTTP requests by path.");
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    s->protocols[0] = (struct lws_protocols){
        .name = "chatd",
        .callback = lws_cb,
        .per_session_data_size = sizeof(session),
        .rx_buffer_size = 1024,
        .tx_packet_size = LWS_PRE + WRITE_CHUNK + 1024,
    };
    s->foreign_loops[0] = rt_loop(rt);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = s->cfg->port;
    info.iface = strcmp(s->cfg->host, "0.0.0.0") == 0 ? NULL : s->cfg->host;
    info.protocols = s->protocols;
    info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = s->foreign_loops;
    info.user = s;
    info.max_http_header_data = 1024;
    info.timeout_secs = 10;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        rt_error(rt_who(self), "cannot listen on %s:%d (is the port taken? is the "
                 "libwebsockets-evlib-ev package installed?)", s->cfg->host, s->cfg->port);
        return RT_ERR;
    }
    rt_info(rt_who(self), "listening on %s:%d", s->cfg->host, s->cfg->port);
    rt_send_after(self, sweep_period(s->cfg), T_SWEEP, 0, NULL, 0);
    /* whatever fanout holds of an earlier socket is stale */
    rt_send_named(rt, rt_self(self), CHATD_FANOUT, CHATD_T_SOCKET_UP, 0, NULL, 0);
    return RT_OK;
}

static int
socket_handle(rt_actor *self, const proto_env *msg)
{
    socket_state *s = rt_state(self);
    switch (msg->type) {
    case T_SWEEP:
        sweep(s);
        rt_send_after(self, sweep_period(s->cfg), T_SWEEP, 0, NULL, 0);
        return RT_OK;
    case T_DRAIN:
        rt_exit(self, RT_EXIT_SHUTDOWN, "drained");
        return RT_OK;
    case PROTO_T_MESSAGE:
        on_live_message(s, msg);
        return RT_OK;
    case PROTO_T_TYPING:
        on_live_typing(s, msg);
        return RT_OK;
    case CHATD_T_FANOUT_UP:
        on_fanout_up(s);
        return RT_OK;
    case PROTO_T_ACK:
    case PROTO_T_JOIN_REPLY:
    case PROTO_T_HISTORY_REPLY:
    case PROTO_T_USERS:
        on_reply(s, msg);
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
    socket_state *s = rt_state(self);
    s->draining = true;
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&s->conns, &pos, &e);)
        conn_close(s, e->value, LWS_CLOSE_STATUS_GOINGAWAY, "shutting down");
    if (s->nconns == 0)
        return RT_OK;
    rt_send_after(self, 500, T_DRAIN, 0, NULL, 0);
    return RT_PENDING;
}

static void
socket_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    socket_state *s = rt_state(self);
    if (s->ctx) {
        /* CLOSED callbacks free the connections */
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
    }
    while (s->req_head)
        req_free(s, s->req_head);
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&s->conns, &pos, &e);) {
        conn *c = e->value;
        c->nrooms = 0;      /* rooms are freed below */
        for (size_t i = 0; i < c->q_len; i++)
            frame_unref(c->q[(c->q_head + i) % c->q_cap]);
        free(c->q);
        free(c->rooms);
        free(c->rx);
        free(c);
    }
    for (size_t pos = 0; rt_map_next(&s->rooms, &pos, &e);) {
        room *r = e->value;
        free(r->members);
        free(r->users);
        free(r->waiting);
        free(r);
    }
    rt_map_free(&s->conns);
    rt_map_free(&s->rooms);
    rt_map_free(&s->reqs);
    proto_mp_buf_free(&s->out);
    free(s->wbuf);
    rt_metric_set(s->m.connections, 0);
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
