/*
 * The socket actor's local rooms (socket_private.h): who is a member of
 * which room on this node, the users present (announced to fanout, which
 * keeps the cluster-wide presence in Redis), and live delivery of the room's
 * messages and typing events to its members.
 */
#include <stdlib.h>
#include <string.h>

#include "actors/socket_private.h"
#include "runtime/grow.h"
#include "runtime/log.h"

sk_room *
sk_room_get(socket_state *st, const char *name, size_t len, bool create)
{
    sk_room *r = rt_map_get(&st->rooms, name, len);
    if (r || !create)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->name, name, len);
    r->name_len = len;
    if (!rt_map_put(&st->rooms, name, len, r)) {
        free(r);
        return NULL;
    }
    return r;
}

bool
sk_is_member(const sk_conn *c, const sk_room *r)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r)
            return true;
    return false;
}

int
sk_ask_room(socket_state *st, uint32_t type, uint64_t corr, const char *name, size_t len)
{
    proto_room pr = {0};
    memcpy(pr.room, name, len);
    pr.room_len = len;
    uint8_t mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_room_encode(&pr, &b) != PROTO_OK)
        return RT_EINVAL;
    return sk_ask(st, CHATD_FANOUT, type, corr, &b);
}

/* Tells fanout that user is (PRESENCE_ADD) or is no longer (PRESENCE_DEL)
 * in room r on this node. */
static void
presence_send(socket_state *st, uint32_t type, const sk_room *r, const char *user,
              size_t user_len)
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
        sk_ask(st, CHATD_FANOUT, type, 0, &b);
}

static sk_presence *
presence_find(sk_room *r, const char *user)
{
    for (size_t i = 0; i < r->nusers; i++)
        if (strcmp(r->users[i].user, user) == 0)
            return &r->users[i];
    return NULL;
}

bool
sk_member_add(socket_state *st, sk_conn *c, sk_room *r)
{
    if (!rt_grow((void **)&c->rooms, &c->rooms_cap, c->nrooms + 1, sizeof(*c->rooms)) ||
        !rt_grow((void **)&r->members, &r->members_cap, r->nmembers + 1, sizeof(*r->members)) ||
        !rt_grow((void **)&r->joined, &r->joined_cap, r->nmembers + 1, sizeof(*r->joined)))
        return false;
    sk_presence *p = presence_find(r, c->user);
    if (!p) {
        if (!rt_grow((void **)&r->users, &r->users_cap, r->nusers + 1, sizeof(*r->users)))
            return false;
        p = &r->users[r->nusers++];
        memset(p, 0, sizeof(*p));
        memcpy(p->user, c->user, c->user_len);
    }
    c->rooms[c->nrooms++] = r;
    r->joined[r->nmembers] = 0;
    r->members[r->nmembers++] = c;
    if (p->conns++ == 0)
        presence_send(st, CHATD_T_PRESENCE_ADD, r, c->user, c->user_len);
    return true;
}

static void
room_free(sk_room *r)
{
    for (size_t i = 0; i < r->nheld; i++)
        proto_msg_free(&r->held[i]);
    free(r->held);
    free(r->members);
    free(r->joined);
    free(r->users);
    free(r->waiting);
    free(r);
}

void
sk_room_release(socket_state *st, sk_room *r)
{
    if (r->nmembers || r->nwaiting || r->sub_req || r->holds)
        return;
    if (r->sub == SK_SUB_LIVE)
        sk_ask_room(st, CHATD_T_UNSUBSCRIBE, 0, r->name, r->name_len);
    rt_map_del(&st->rooms, r->name, r->name_len);
    room_free(r);
}

void
sk_member_remove(socket_state *st, sk_conn *c, sk_room *r)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r) {
            c->rooms[i] = c->rooms[--c->nrooms];
            break;
        }
    for (size_t i = 0; i < r->nmembers; i++)
        if (r->members[i] == c) {
            r->members[i] = r->members[--r->nmembers];
            r->joined[i] = r->joined[r->nmembers];
            break;
        }
    sk_presence *p = presence_find(r, c->user);
    if (p && --p->conns == 0) {
        presence_send(st, CHATD_T_PRESENCE_DEL, r, c->user, c->user_len);
        *p = r->users[--r->nusers];
    }
    sk_room_release(st, r);
}

void
sk_member_joined(sk_room *r, const sk_conn *c, uint64_t seq)
{
    if (seq > r->join_seq)
        r->join_seq = seq;
    for (size_t i = 0; i < r->nmembers; i++)
        if (r->members[i] == c && seq > r->joined[i])
            r->joined[i] = seq;
}

/* A stored message from fanout: to every local member of its room, as one
 * frame they all share. One at or below the room's live seq is dropped: it
 * was delivered already (published again after a redelivery: the store
 * publishes at least once) or it comes after a later one, which its members
 * saw as a gap and filled with join since. */
void
sk_on_live_message(socket_state *st, const proto_env *msg)
{
    proto_msg m;
    if (proto_msg_decode(msg->payload, msg->payload_len, &m) != PROTO_OK) {
        rt_warn(rt_who(st->self), "undecodable live message dropped");
        return;
    }
    sk_room *r = sk_room_get(st, m.room, m.room_len, false);
    if (r && r->catching_up) {
        /* after the fetched ones: a live one could overtake a missed one,
         * which its seq would then drop as a repeat */
        if (r->nheld < SK_HELD_MAX &&
            rt_grow((void **)&r->held, &r->held_cap, r->nheld + 1, sizeof(*r->held))) {
            r->held[r->nheld++] = m;
            return;
        }
        rt_warn(rt_who(st->self), "%.*s: too many live messages while catching up; "
                "members fill the gap with join since", (int)r->name_len, r->name);
    } else if (r) {
        sk_room_deliver(st, r, &m);
    }
    proto_msg_free(&m);
}

void
sk_room_caught_up(socket_state *st, sk_room *r)
{
    r->catching_up = false;
    for (size_t i = 0; i < r->nheld; i++) {
        sk_room_deliver(st, r, &r->held[i]);
        proto_msg_free(&r->held[i]);
    }
    r->nheld = 0;
}

void
sk_room_deliver(socket_state *st, sk_room *r, const proto_msg *m)
{
    if (m->seq <= r->live_seq) {
        rt_metric_add(st->m.live_stale, 1);
        return;
    }
    if (!r->nmembers)
        return;
    r->live_seq = m->seq;
    sio_message sm = { m->room, m->room_len, m->seq, m->id, m->id_len, m->user, m->user_len,
                       m->text, m->text_len, (int64_t)m->ts };
    if (sio_encode_message(&st->out, &sm) == PROTO_OK) {
        rt_metric_add(st->m.delivered, (double)sk_broadcast_out(st, r, NULL, m->seq));
        chatd_stage_observe(st->m.delivered_age, m->rx_us);
    }
    proto_mp_buf_reset(&st->out);
}

/* A typing event from fanout (from any node, this one included): to every
 * local member but the connection it came from. */
void
sk_on_live_typing(socket_state *st, const proto_env *msg)
{
    proto_typing t;
    if (proto_typing_decode(msg->payload, msg->payload_len, &t) != PROTO_OK) {
        rt_warn(rt_who(st->self), "undecodable typing event dropped");
        return;
    }
    sk_room *r = sk_room_get(st, t.room, t.room_len, false);
    if (r && r->nmembers) {
        const sk_conn *skip = t.node == st->cfg->node_key ? rt_map_get_u64(&st->conns, t.conn)
                                                           : NULL;
        if (sio_encode_typing(&st->out, t.room, t.room_len, t.user, t.user_len) == PROTO_OK)
            rt_metric_add(st->m.typing_delivered, (double)sk_broadcast_out(st, r, skip, 0));
        proto_mp_buf_reset(&st->out);
    }
    proto_typing_free(&t);
}

/* fanout (re)started: it knows nothing of this node's rooms any more. */
void
sk_on_fanout_up(socket_state *st)
{
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&st->rooms, &pos, &e);) {
        sk_room *r = e->value;
        for (size_t i = 0; i < r->nusers; i++)
            presence_send(st, CHATD_T_PRESENCE_ADD, r, r->users[i].user,
                          strlen(r->users[i].user));
        if (r->sub == SK_SUB_LIVE)
            sk_resubscribe(st, r);
    }
}

void
sk_rooms_free(socket_state *st)
{
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&st->rooms, &pos, &e);)
        room_free(e->value);
    rt_map_free(&st->rooms);
}
