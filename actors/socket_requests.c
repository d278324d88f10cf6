/*
 * The socket actor's client events and the requests they make
 * (socket_private.h): each event is checked in PROTOCOL.md's order, turned
 * into a request to the producer, store or fanout with a deadline, and the
 * reply (or the deadline) becomes the client's ack.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "actors/socket_private.h"
#include "runtime/grow.h"
#include "runtime/log.h"

static void fail_req(socket_state *st, sk_req *r, sio_error err, const char *message);

/* --- requests ------------------------------------------------------------- */

static sk_req *
req_new(socket_state *st, sk_req_kind kind, sk_conn *c, bool has_ack, uint64_t ack_id)
{
    sk_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->corr = ++st->next_corr;
    r->kind = kind;
    r->conn_id = c ? c->id : 0;
    r->has_ack = has_ack;
    r->ack_id = ack_id;
    r->deadline = sk_now_ms(st) + st->cfg->request_timeout_ms;
    if (!rt_map_put_u64(&st->reqs, r->corr, r)) {
        free(r);
        return NULL;
    }
    /* every request has the same timeout: the list stays in deadline order */
    rt_list_push_back(&st->by_deadline, &r->link);
    if (c)
        c->inflight++;
    return r;
}

/* The request is forgotten (its connection's in-flight count drops). */
static void
req_free(socket_state *st, sk_req *r)
{
    rt_map_del_u64(&st->reqs, r->corr);
    rt_list_remove(&st->by_deadline, &r->link);
    sk_conn *c = r->conn_id ? rt_map_get_u64(&st->conns, r->conn_id) : NULL;
    if (c && c->inflight)
        c->inflight--;
    free(r);
}

void
sk_reqs_free(socket_state *st)
{
    rt_link *l;
    while ((l = st->by_deadline.head))
        req_free(st, RT_CONTAINER(l, sk_req, link));
    rt_map_free(&st->reqs);
}

void
sk_reqs_expire(socket_state *st, double now)
{
    rt_link *l;
    while ((l = st->by_deadline.head)) {
        sk_req *r = RT_CONTAINER(l, sk_req, link);
        if (r->deadline > now)
            break;
        rt_warn_limited(rt_who(st->self), "request %" PRIu64 " timed out", r->corr);
        fail_req(st, r, SIO_E_UNAVAILABLE, "a backend did not answer in time");
    }
}

/* Asks the store for a join's seq and missed messages. */
static void
join_ask_store(socket_state *st, sk_req *r)
{
    proto_join_req jr = { .has_since = r->has_since, .since = r->since };
    memcpy(jr.room, r->room_name, r->room_len);
    jr.room_len = r->room_len;
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_join_req_encode(&jr, &b) != PROTO_OK ||
        sk_ask(st, CHATD_STORE, PROTO_T_JOIN_REQ, r->corr, &b) != RT_OK)
        fail_req(st, r, SIO_E_UNAVAILABLE, "the message store is unavailable");
}

static void catch_up(socket_state *st, sk_room *r);
static void catch_up_reply(socket_state *st, sk_req *q, const proto_env *msg);

/* The room's subscription is live (ok) or failed: go on with its joins, and
 * after a resubscription fetch what its members missed while it was down. */
static void
sub_done(socket_state *st, sk_room *r, bool ok)
{
    r->sub = ok ? SK_SUB_LIVE : SK_SUB_NONE;
    if (ok && r->catch_up && r->nmembers)
        catch_up(st, r);
    r->catch_up = false;
    size_t n = r->nwaiting;
    sk_req **waiting = r->waiting;
    r->waiting = NULL;
    r->nwaiting = r->waiting_cap = 0;
    /* a join that fails here undoes its membership, which may leave the room
     * empty: it must not be freed under this loop (a store restarting at the
     * moment a subscription came live did that; the soak found it) */
    r->holds++;
    for (size_t i = 0; i < n; i++) {
        if (ok)
            join_ask_store(st, waiting[i]);
        else
            fail_req(st, waiting[i], SIO_E_UNAVAILABLE, "live delivery is unavailable");
    }
    r->holds--;
    free(waiting);
    sk_room_release(st, r);
}

/* A join failed: it no longer waits on its room, and a membership it made
 * is undone. */
static void
join_undo(socket_state *st, sk_req *r, sk_conn *c)
{
    /* by name: the room may have been freed since (everybody left) */
    sk_room *rm = sk_room_get(st, r->room_name, r->room_len, false);
    if (!rm)
        return;
    for (size_t i = 0; i < rm->nwaiting; i++)
        if (rm->waiting[i] == r) {
            rm->waiting[i] = rm->waiting[--rm->nwaiting];
            break;
        }
    if (c && r->added && sk_is_member(c, rm))
        sk_member_remove(st, c, rm);
    else
        sk_room_release(st, rm);
}

/* Answers a failed request (unavailable...) and undoes what it did. */
static void
fail_req(socket_state *st, sk_req *r, sio_error err, const char *message)
{
    sk_conn *c = r->conn_id ? rt_map_get_u64(&st->conns, r->conn_id) : NULL;
    if (r->kind == SK_REQ_SUBSCRIBE) {
        sk_room *rm = r->room;
        rm->sub_req = NULL;
        req_free(st, r);
        sub_done(st, rm, false);
        return;
    }
    if (r->kind == SK_REQ_JOIN)
        join_undo(st, r, c);
    if (r->kind == SK_REQ_CATCHUP) {
        sk_room *rm = sk_room_get(st, r->room_name, r->room_len, false);
        if (rm)
            sk_room_caught_up(st, rm);
    }
    if (c)
        sk_ack_err(st, c, r->has_ack, r->ack_id, err, message);
    req_free(st, r);
}

/* --- replies ----------------------------------------------------------------- */

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

static void
on_ack(socket_state *st, sk_req *r, const proto_env *msg)
{
    proto_ack a;
    if (proto_ack_decode(msg->payload, msg->payload_len, &a) != PROTO_OK) {
        rt_warn(rt_who(st->self), "undecodable ack from #%" PRIu64, msg->from);
        fail_req(st, r, SIO_E_UNAVAILABLE, "internal error");
        return;
    }
    if (!a.ok) {
        fail_req(st, r, SIO_E_UNAVAILABLE, a.msg_len ? a.msg : "a backend is unavailable");
        return;
    }
    if (r->kind == SK_REQ_SUBSCRIBE) {
        sk_room *rm = r->room;
        rm->sub_req = NULL;
        req_free(st, r);
        sub_done(st, rm, true);
        return;
    }
    sk_conn *c = rt_map_get_u64(&st->conns, r->conn_id);
    if (r->kind == SK_REQ_MESSAGE) {
        chatd_stage_observe(st->m.acked, r->rx_us);
        if (c)
            sk_ack_ok(st, c, r->has_ack, r->ack_id,
                      json_pack("{s:s%}", "id", r->msg_id, r->msg_id_len));
    } else if (c) {
        /* an ok ack where a reply record was expected */
        sk_ack_err(st, c, r->has_ack, r->ack_id, SIO_E_UNAVAILABLE, "internal error");
    }
    req_free(st, r);
}

/* The ack fields of a reply record for r, or NULL with *bad set when the
 * reply does not decode. */
static json_t *
reply_fields(socket_state *st, const sk_req *r, const proto_env *msg, bool *bad)
{
    json_t *f = NULL;
    *bad = true;
    if (msg->type == PROTO_T_JOIN_REPLY && r->kind == SK_REQ_JOIN) {
        proto_join_reply jr;
        if (proto_join_reply_decode(msg->payload, msg->payload_len, &jr) != PROTO_OK)
            return NULL;
        f = json_pack("{s:s%,s:I,s:o,s:b}", "room", r->room_name, r->room_len,
                      "seq", (json_int_t)jr.seq, "missed", msgs_json(jr.missed, jr.count),
                      "more", jr.more);
        sk_room *rm = sk_room_get(st, r->room_name, r->room_len, false);
        sk_conn *c = rt_map_get_u64(&st->conns, r->conn_id);
        if (rm && c)
            sk_member_joined(rm, c, jr.seq);
        proto_join_reply_free(&jr);
    } else if (msg->type == PROTO_T_HISTORY_REPLY && r->kind == SK_REQ_HISTORY) {
        proto_history_reply hr;
        if (proto_history_reply_decode(msg->payload, msg->payload_len, &hr) != PROTO_OK)
            return NULL;
        f = json_pack("{s:o,s:b}", "messages", msgs_json(hr.msgs, hr.count), "more", hr.more);
        proto_history_reply_free(&hr);
    } else if (msg->type == PROTO_T_USERS && r->kind == SK_REQ_PRESENCE) {
        proto_users u;
        if (proto_users_decode(msg->payload, msg->payload_len, &u) != PROTO_OK)
            return NULL;
        json_t *users = json_array();
        for (size_t i = 0; users && i < u.count; i++)
            json_array_append_new(users, json_string(u.users[i]));
        f = json_pack("{s:o}", "users", users);
        proto_users_free(&u);
    } else {
        return NULL;
    }
    *bad = false;
    return f;
}

void
sk_on_reply(socket_state *st, const proto_env *msg)
{
    sk_req *r = rt_map_get_u64(&st->reqs, msg->corr);
    if (!r)
        return;     /* timed out already, or its connection is gone */
    if (msg->type == PROTO_T_ACK) {
        on_ack(st, r, msg);
        return;
    }
    if (r->kind == SK_REQ_CATCHUP && msg->type == PROTO_T_JOIN_REPLY) {
        catch_up_reply(st, r, msg);
        return;
    }
    bool bad;
    json_t *f = reply_fields(st, r, msg, &bad);
    if (bad) {
        rt_warn(rt_who(st->self), "unexpected or undecodable reply type %" PRIu32
                " for request %" PRIu64, msg->type, msg->corr);
        fail_req(st, r, SIO_E_UNAVAILABLE, "internal error");
        return;
    }
    sk_conn *c = rt_map_get_u64(&st->conns, r->conn_id);
    if (c)
        sk_ack_ok(st, c, r->has_ack, r->ack_id, f);
    else
        json_decref(f);
    req_free(st, r);
}

/* --- client events -------------------------------------------------------------- */

/* Token bucket plus in-flight bound. */
static bool
rate_ok(socket_state *st, sk_conn *c)
{
    double now = sk_now_ms(st);
    c->tokens += (now - c->tokens_at) * st->cfg->rate_per_s / 1e3;
    if (c->tokens > st->cfg->rate_burst)
        c->tokens = st->cfg->rate_burst;
    c->tokens_at = now;
    if (c->tokens < 1 || c->inflight >= (unsigned)st->cfg->max_inflight)
        return false;
    c->tokens -= 1;
    return true;
}

/* Asks fanout for r's subscription (r->sub becomes pending). */
static void
subscribe(socket_state *st, sk_room *r)
{
    sk_req *sub = req_new(st, SK_REQ_SUBSCRIBE, NULL, false, 0);
    if (!sub) {
        sub_done(st, r, false);
        return;
    }
    sub->room = r;
    r->sub_req = sub;
    r->sub = SK_SUB_PENDING;
    if (sk_ask_room(st, CHATD_T_SUBSCRIBE, sub->corr, r->name, r->name_len) != RT_OK)
        fail_req(st, sub, SIO_E_UNAVAILABLE, "live delivery is unavailable");
}

/* Asks fanout for r's subscription; j waits for it. */
static void
join_subscribe(socket_state *st, sk_room *r, sk_req *j)
{
    if (!rt_grow((void **)&r->waiting, &r->waiting_cap, r->nwaiting + 1, sizeof(*r->waiting))) {
        fail_req(st, j, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    r->waiting[r->nwaiting++] = j;
    if (r->sub != SK_SUB_PENDING)
        subscribe(st, r);
}

void
sk_resubscribe(socket_state *st, sk_room *r)
{
    r->catch_up = true;
    subscribe(st, r);
}

/* Asks the store for r's messages that no member can have had: past the
 * last one delivered live and past the last one a join here answered with
 * (a join since, for no client), to deliver them as if live. Messages below
 * the second a member may lack are not fetched: members that see a gap in
 * live seqs fill it with join since. */
static void
catch_up(socket_state *st, sk_room *r)
{
    sk_req *q = req_new(st, SK_REQ_CATCHUP, NULL, false, 0);
    if (!q) {
        sk_room_caught_up(st, r);   /* the next live message shows the gap */
        return;
    }
    memcpy(q->room_name, r->name, r->name_len);
    q->room_len = r->name_len;
    q->has_since = true;
    q->since = r->live_seq > r->join_seq ? r->live_seq : r->join_seq;
    r->catching_up = true;
    join_ask_store(st, q);
}

/* The store's answer to a catch-up: the missed messages go to the room's
 * members (those at or below its live seq by now are dropped there), then
 * the next page if there is more. */
static void
catch_up_reply(socket_state *st, sk_req *q, const proto_env *msg)
{
    proto_join_reply jr;
    sk_room *r = sk_room_get(st, q->room_name, q->room_len, false);
    if (proto_join_reply_decode(msg->payload, msg->payload_len, &jr) != PROTO_OK) {
        rt_warn(rt_who(st->self), "undecodable catch-up of %.*s", (int)q->room_len, q->room_name);
        req_free(st, q);
        if (r)
            sk_room_caught_up(st, r);
        return;
    }
    req_free(st, q);
    if (r) {
        for (size_t i = 0; i < jr.count; i++)
            sk_room_deliver(st, r, &jr.missed[i]);
        rt_info(rt_who(st->self), "%.*s: %zu missed while resubscribing, delivered",
                (int)r->name_len, r->name, jr.count);
        if (jr.more && r->nmembers)
            catch_up(st, r);
        else
            sk_room_caught_up(st, r);
    }
    proto_join_reply_free(&jr);
}

static void
ev_join(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    sk_room *r = sk_room_get(st, rq->room, rq->room_len, true);
    sk_req *j = r ? req_new(st, SK_REQ_JOIN, c, p->has_ack, p->ack_id) : NULL;
    if (!j) {
        if (r)
            sk_room_release(st, r);
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    memcpy(j->room_name, rq->room, rq->room_len);
    j->room_len = rq->room_len;
    j->has_since = rq->has_since;
    j->since = rq->since;
    if (!sk_is_member(c, r)) {
        if (!sk_member_add(st, c, r)) {
            fail_req(st, j, SIO_E_UNAVAILABLE, "out of memory");
            return;
        }
        j->added = true;
    }
    if (r->sub == SK_SUB_LIVE)
        join_ask_store(st, j);
    else
        join_subscribe(st, r, j);
}

static void
ev_leave(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    sk_room *r = sk_room_get(st, rq->room, rq->room_len, false);
    if (r && sk_is_member(c, r))
        sk_member_remove(st, c, r);
    sk_ack_ok(st, c, p->has_ack, p->ack_id,
              json_pack("{s:s%}", "room", rq->room, rq->room_len));
}

static void
ev_message(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_msg m;
    uint64_t rx_us = chatd_wall_us();
    if (proto_msg_set(&m, rq->room, rq->room_len, rq->id, rq->id_len, c->user, c->user_len,
                      rq->text, rq->text_len, rx_us / 1000, 0) != PROTO_OK) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_BAD_REQUEST, "invalid message");
        return;
    }
    m.rx_us = rx_us;
    sk_req *r = req_new(st, SK_REQ_MESSAGE, c, p->has_ack, p->ack_id);
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    if (!r || proto_msg_encode(&m, &b) != PROTO_OK) {
        if (r)
            req_free(st, r);
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
    } else {
        memcpy(r->msg_id, rq->id, rq->id_len);
        r->msg_id_len = rq->id_len;
        r->rx_us = rx_us;
        if (sk_ask(st, CHATD_PRODUCER, PROTO_T_MESSAGE, r->corr, &b) != RT_OK)
            fail_req(st, r, SIO_E_UNAVAILABLE, "the message broker is unavailable");
    }
    proto_mp_buf_free(&b);
    proto_msg_free(&m);
}

static void
ev_history(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_history_req hr = { .has_before = rq->has_before, .before = rq->before,
                             .limit = rq->limit };
    memcpy(hr.room, rq->room, rq->room_len);
    hr.room_len = rq->room_len;
    sk_req *r = req_new(st, SK_REQ_HISTORY, c, p->has_ack, p->ack_id);
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (!r) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    if (proto_history_req_encode(&hr, &b) != PROTO_OK ||
        sk_ask(st, CHATD_STORE, PROTO_T_HISTORY_REQ, r->corr, &b) != RT_OK)
        fail_req(st, r, SIO_E_UNAVAILABLE, "the message store is unavailable");
}

static void
ev_typing(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    proto_typing t = { .node = st->cfg->node_key, .conn = c->id };
    memcpy(t.room, rq->room, rq->room_len);
    t.room_len = rq->room_len;
    memcpy(t.user, c->user, c->user_len);
    t.user_len = c->user_len;
    uint8_t mem[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_typing_encode(&t, &b) != PROTO_OK ||
        sk_ask(st, CHATD_FANOUT, PROTO_T_TYPING, 0, &b) != RT_OK)
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE,
                   "live delivery is unavailable");
    else
        sk_ack_ok(st, c, p->has_ack, p->ack_id, NULL);
}

static void
ev_presence(socket_state *st, sk_conn *c, const sio_packet *p, const sio_request *rq)
{
    sk_req *r = req_new(st, SK_REQ_PRESENCE, c, p->has_ack, p->ack_id);
    if (!r) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_UNAVAILABLE, "out of memory");
        return;
    }
    if (sk_ask_room(st, CHATD_T_PRESENCE_QUERY, r->corr, rq->room, rq->room_len) != RT_OK)
        fail_req(st, r, SIO_E_UNAVAILABLE, "presence is unavailable");
}

void
sk_on_event(socket_state *st, sk_conn *c, const sio_packet *p)
{
    if (p->err != SIO_OK) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, p->err, p->message);
        return;
    }
    if (sk_auth_event(st, c, p))
        return;
    sio_request rq;
    const char *message = NULL;
    sio_error err = sio_request_parse(p, c->user, c->user_len, &rq, &message);
    if (err != SIO_OK) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, err, message);
        return;
    }
    rt_metric_add(st->m.events[rq.event], 1);

    /* not_member, then rate_limited, then unavailable (PROTOCOL.md order) */
    if (rq.event == SIO_EV_MESSAGE || rq.event == SIO_EV_TYPING) {
        sk_room *r = sk_room_get(st, rq.room, rq.room_len, false);
        if (!r || !sk_is_member(c, r)) {
            sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_NOT_MEMBER, "join the room first");
            return;
        }
    }
    if (!rate_ok(st, c)) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_RATE_LIMITED, "slow down");
        return;
    }
    switch (rq.event) {
    case SIO_EV_JOIN:     ev_join(st, c, p, &rq); break;
    case SIO_EV_LEAVE:    ev_leave(st, c, p, &rq); break;
    case SIO_EV_MESSAGE:  ev_message(st, c, p, &rq); break;
    case SIO_EV_HISTORY:  ev_history(st, c, p, &rq); break;
    case SIO_EV_TYPING:   ev_typing(st, c, p, &rq); break;
    case SIO_EV_PRESENCE: ev_presence(st, c, p, &rq); break;
    case SIO_EV_NONE:     break;
    }
}
