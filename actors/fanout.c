/*
 * The fanout actor: Redis Pub/Sub and presence. The contract is fanout.h.
 *
 * hiredis notes (0.14.1, see LIBRARIES.md):
 *
 * - hiredis frees a context itself after a failed connect and after a
 *   disconnect; its callbacks clear our pointer first, and we free only what
 *   is still alive, in terminate.
 * - redisAsyncFree runs every pending callback with reply == NULL and the
 *   disconnect callback; terminate sets `closing` first, and every callback
 *   does nothing but free its own privdata while it is set. Callbacks reach the
 *   state through ac->data; the state outlives both contexts (terminate frees
 *   them before the runtime frees the state), and privdata never points into
 *   the state.
 * - When the last channel of a connection is unsubscribed, hiredis 0.14 drops
 *   its "subscribed" flag, and a SUBSCRIBE reply already on its way then hits
 *   an assert. The subscriber therefore keeps one channel of its own,
 *   "chatd:node:<node_key>", on which nobody publishes: the count never falls
 *   to 0. Its confirmation is also what tells us the subscriber is up.
 * - Its per-channel callback table is keyed by name: SUBSCRIBE x, UNSUBSCRIBE x,
 *   SUBSCRIBE x in flight together lose the callback of the last one. So a
 *   room has at most one SUBSCRIBE or UNSUBSCRIBE in flight; what the socket
 *   asks for meanwhile is recorded (want) and done when the reply arrives.
 */
#include "actors/fanout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "actors/chatd.h"
#include "proto/envelope.h"
#include "proto/record.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "runtime/metrics.h"

#define ROOM_PREFIX "chatd:room:"
#define PRESENCE_PREFIX "chatd:presence:"
#define NODE_PREFIX "chatd:node:"

/* corr of our own CHATD_T_TICK timers */
enum {
    TICK_WATCHDOG = 1,      /* connect took too long */
    TICK_REFRESH,           /* refresh presence, check the publisher */
    TICK_CONNECT_FAILED,    /* redisAsyncConnect failed at once */
};

typedef struct fo_waiter {
    rt_id to;
    uint64_t corr;
} fo_waiter;

typedef struct fo_room {
    char name[PROTO_DM_ROOM_MAX + 1];
    size_t len;
    bool want;              /* the socket wants it subscribed */
    bool live;              /* Redis confirmed the subscription */
    bool inflight;          /* a SUBSCRIBE or UNSUBSCRIBE awaits its reply */
    fo_waiter *waiters;     /* SUBSCRIBE requests to ack once live */
    size_t nwaiters, capwaiters;
    size_t index;           /* its place in fanout_state.rooms */
} fo_room;

typedef struct fo_entry {
    char room[PROTO_DM_ROOM_MAX + 1];
    char user[PROTO_USER_MAX + 1];
} fo_entry;

typedef struct fo_pending {
    uint32_t type;
    rt_id from;
    uint64_t corr;
    uint8_t *payload;
    size_t len;
} fo_pending;

/* privdata of a presence query */
typedef struct fo_query {
    rt_id to;
    uint64_t corr;
} fo_query;

typedef struct fanout_state {
    rt_actor *self;
    rt_runtime *rt;
    const chatd_config *cfg;
    const char *socket;
    char node_hex[17];
    char node_channel[sizeof(NODE_PREFIX) + 16];

    redisAsyncContext *pub, *sub;
    bool pub_up, sub_up, up;
    bool closing;               /* terminate is freeing the contexts */
    bool pub_dirty, sub_dirty;  /* commands issued this turn */
    uint64_t pub_outstanding;   /* publisher commands without a reply */
    double pub_progress_ms;     /* last reply (or first command) */
    rt_timer_id watchdog;

    fo_room **rooms;
    size_t nrooms, caprooms;
    rt_map room_index;      /* name -> fo_room */
    fo_entry *presence;
    size_t npresence, cappresence;
    fo_pending *pending;
    size_t npending, cappending;

    proto_mp_buf rec;           /* scratch: a record */
    uint8_t *env;               /* scratch: an envelope */
    size_t envcap;

    rt_metric *m_published, *m_received, *m_bad, *m_refused, *m_up;
} fanout_state;

/* static tags for the publisher's replies, named in logs */
static const char CMD_PUBLISH[] = "PUBLISH";
static const char CMD_ZADD[] = "ZADD";
static const char CMD_ZREM[] = "ZREM";
static const char CMD_EXPIRE[] = "PEXPIRE";
static const char CMD_ZREMRANGE[] = "ZREMRANGEBYSCORE";

static int dispatch(fanout_state *st, const proto_env *msg);

/* ---- helpers ---------------------------------------------------------- */

/* Parses "redis://HOST[:PORT][/...]". Returns false when it cannot. */
static bool
parse_url(const char *url, char *host, size_t hostcap, int *port)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) == 0)
        p += 8;
    const char *end = p + strcspn(p, ":/");
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= hostcap)
        return false;
    memcpy(host, p, n);
    host[n] = '\0';
    *port = 6379;
    if (*end == ':') {
        char *e;
        long v = strtol(end + 1, &e, 10);
        if (e == end + 1 || v <= 0 || v > 65535 || (*e && *e != '/'))
            return false;
        *port = (int)v;
    }
    return true;
}

static void
mark_issued(fanout_state *st, redisAsyncContext *ac)
{
    if (ac == st->pub) {
        if (st->pub_outstanding++ == 0)
            st->pub_progress_ms = rt_now_ms(st->rt);
        st->pub_dirty = true;
    } else {
        st->sub_dirty = true;
    }
}

/* ---- publisher -------------------------------------------------------- */

static void
on_pub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fanout_state *st = ac->data;
    redisReply *reply = r;
    if (st->pub_outstanding)
        st->pub_outstanding--;
    if (st->closing || !reply)
        return;
    st->pub_progress_ms = rt_now_ms(st->rt);
    if (reply->type == REDIS_REPLY_ERROR) {
        rt_warn(rt_who(st->self), "redis %s failed: %s", (const char *)privdata, reply->str);
        return;
    }
    if (privdata == CMD_PUBLISH)
        rt_metric_add(st->m_published, 1);
}

/* Publishes payload wrapped in an envelope of type on room's channel. */
static void
publish(fanout_state *st, uint32_t type, const char *room, size_t room_len,
        const uint8_t *payload, size_t len)
{
    size_t need = PROTO_ENV_OVERHEAD + len;
    if (need > st->envcap) {
        uint8_t *p = realloc(st->env, need);
        if (!p) {
            rt_warn(rt_who(st->self), "out of memory: message to %.*s not published",
                    (int)room_len, room);
            return;
        }
        st->env = p;
        st->envcap = need;
    }
    proto_env env = { .type = type, .payload = payload, .payload_len = len };
    size_t elen;
    proto_err e = proto_env_encode(&env, st->env, st->envcap, &elen);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "cannot encode an envelope for %.*s: %s", (int)room_len,
                room, proto_strerror(e));
        return;
    }
    char chan[sizeof(ROOM_PREFIX) + PROTO_DM_ROOM_MAX];
    int clen = snprintf(chan, sizeof(chan), ROOM_PREFIX "%.*s", (int)room_len, room);
    if (redisAsyncCommand(st->pub, on_pub_reply, (void *)CMD_PUBLISH, "PUBLISH %b %b", chan,
                          (size_t)clen, st->env, elen) == REDIS_OK)
        mark_issued(st, st->pub);
}

static int
handle_batch(fanout_state *st, const proto_env *msg)
{
    proto_batch b;
    proto_err e = proto_batch_decode(msg->payload, msg->payload_len, &b);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad message batch from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        return RT_OK;
    }
    for (size_t i = 0; i < b.count; i++) {
        const proto_msg *m = &b.msgs[i];
        st->rec.len = 0;
        st->rec.failed = false;
        e = proto_msg_encode(m, &st->rec);
        if (e != PROTO_OK) {
            rt_warn(rt_who(st->self), "cannot encode message %s of %s: %s", m->id, m->room,
                    proto_strerror(e));
            continue;
        }
        publish(st, PROTO_T_MESSAGE, m->room, m->room_len, st->rec.data, st->rec.len);
    }
    proto_batch_free(&b);
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
    publish(st, PROTO_T_TYPING, t.room, t.room_len, msg->payload, msg->payload_len);
    proto_typing_free(&t);
    return RT_OK;
}

/* ---- presence --------------------------------------------------------- */

static void
presence_key(char *key, size_t cap, const char *room)
{
    snprintf(key, cap, PRESENCE_PREFIX "%s", room);
}

static void
presence_member(const fanout_state *st, char *member, size_t cap, const char *user)
{
    snprintf(member, cap, "%s %s", user, st->node_hex);
}

/* ZADD the entry with a fresh expiry, and push the key's own expiry. */
static void
presence_write(fanout_state *st, const fo_entry *en)
{
    char key[sizeof(PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char member[PROTO_USER_MAX + 18];
    char score[24], keyttl[24];
    presence_key(key, sizeof(key), en->room);
    presence_member(st, member, sizeof(member), en->user);
    snprintf(score, sizeof(score), "%" PRIu64,
             chatd_wall_ms() + (uint64_t)st->cfg->presence_ttl_ms);
    snprintf(keyttl, sizeof(keyttl), "%" PRIu64, 2 * (uint64_t)st->cfg->presence_ttl_ms);
    if (redisAsyncCommand(st->pub, on_pub_reply, (void *)CMD_ZADD, "ZADD %s %s %s", key,
                          score, member) == REDIS_OK)
        mark_issued(st, st->pub);
    if (redisAsyncCommand(st->pub, on_pub_reply, (void *)CMD_EXPIRE, "PEXPIRE %s %s", key,
                          keyttl) == REDIS_OK)
        mark_issued(st, st->pub);
}

static void
presence_remove(fanout_state *st, const fo_entry *en)
{
    char key[sizeof(PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char member[PROTO_USER_MAX + 18];
    presence_key(key, sizeof(key), en->room);
    presence_member(st, member, sizeof(member), en->user);
    if (redisAsyncCommand(st->pub, on_pub_reply, (void *)CMD_ZREM, "ZREM %s %s", key,
                          member) == REDIS_OK)
        mark_issued(st, st->pub);
}

static ptrdiff_t
presence_find(const fanout_state *st, const proto_member *m)
{
    for (size_t i = 0; i < st->npresence; i++)
        if (strcmp(st->presence[i].room, m->room) == 0 &&
            strcmp(st->presence[i].user, m->user) == 0)
            return (ptrdiff_t)i;
    return -1;
}

static int
handle_presence(fanout_state *st, const proto_env *msg, bool add)
{
    proto_member m;
    proto_err e = proto_member_decode(msg->payload, msg->payload_len, &m);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad presence record from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        return RT_OK;
    }
    ptrdiff_t at = presence_find(st, &m);
    if (add) {
        if (at < 0) {
            if (st->npresence == st->cappresence) {
                size_t cap = st->cappresence ? 2 * st->cappresence : 16;
                fo_entry *p = realloc(st->presence, cap * sizeof(*p));
                if (!p) {
                    rt_warn(rt_who(st->self), "out of memory: presence of %s in %s not kept",
                            m.user, m.room);
                    return RT_OK;
                }
                st->presence = p;
                st->cappresence = cap;
            }
            at = (ptrdiff_t)st->npresence++;
            snprintf(st->presence[at].room, sizeof(st->presence[at].room), "%s", m.room);
            snprintf(st->presence[at].user, sizeof(st->presence[at].user), "%s", m.user);
        }
        presence_write(st, &st->presence[at]);
    } else {
        fo_entry en;
        snprintf(en.room, sizeof(en.room), "%s", m.room);
        snprintf(en.user, sizeof(en.user), "%s", m.user);
        presence_remove(st, &en);
        if (at >= 0)
            st->presence[at] = st->presence[--st->npresence];
    }
    return RT_OK;
}

static int
cmp_user(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void
on_query_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fanout_state *st = ac->data;
    redisReply *reply = r;
    fo_query *q = privdata;
    if (st->pub_outstanding)
        st->pub_outstanding--;
    if (st->closing) {
        free(q);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rt_warn(rt_who(st->self), "presence query failed: %s",
                !reply ? "connection lost"
                       : reply->type == REDIS_REPLY_ERROR ? reply->str : "not an array");
        chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE, "presence unavailable");
        free(q);
        return;
    }
    st->pub_progress_ms = rt_now_ms(st->rt);
    proto_users u = { 0 };
    u.users = calloc(reply->elements ? reply->elements : 1, sizeof(*u.users));
    if (!u.users) {
        chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        free(q);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *el = reply->element[i];
        const char *sp = el->type == REDIS_REPLY_STRING ? memrchr(el->str, ' ', el->len) : NULL;
        size_t ulen = sp ? (size_t)(sp - el->str) : 0;
        if (!sp || proto_check_user(el->str, ulen) != PROTO_OK) {
            rt_warn(rt_who(st->self), "bad presence member ignored");
            continue;
        }
        memcpy(u.users[u.count], el->str, ulen);
        u.users[u.count][ulen] = '\0';
        u.count++;
    }
    qsort(u.users, u.count, sizeof(*u.users), cmp_user);
    size_t n = 0;
    for (size_t i = 0; i < u.count; i++)
        if (n == 0 || strcmp(u.users[n - 1], u.users[i]) != 0)
            memmove(u.users[n++], u.users[i], sizeof(*u.users));
    u.count = n < PROTO_USERS_MAX ? n : PROTO_USERS_MAX;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    if (proto_users_encode(&u, &b) == PROTO_OK)
        rt_send(st->rt, rt_self(st->self), q->to, PROTO_T_USERS, q->corr, b.data, b.len);
    else
        chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE, "cannot encode users");
    proto_mp_buf_free(&b);
    free(u.users);
    free(q);
}

static int
handle_query(fanout_state *st, const proto_env *msg)
{
    proto_room r;
    proto_err e = proto_room_decode(msg->payload, msg->payload_len, &r);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad presence query from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, proto_strerror(e));
        return RT_OK;
    }
    char key[sizeof(PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char now[24], before[25];
    uint64_t t = chatd_wall_ms();
    presence_key(key, sizeof(key), r.room);
    snprintf(now, sizeof(now), "%" PRIu64, t);
    snprintf(before, sizeof(before), "(%" PRIu64, t);
    fo_query *q = malloc(sizeof(*q));
    if (!q) {
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return RT_OK;
    }
    q->to = msg->from;
    q->corr = msg->corr;
    /* Expired entries of nodes that died: remove them while we are here. */
    if (redisAsyncCommand(st->pub, on_pub_reply, (void *)CMD_ZREMRANGE,
                          "ZREMRANGEBYSCORE %s -inf %s", key, before) == REDIS_OK)
        mark_issued(st, st->pub);
    if (redisAsyncCommand(st->pub, on_query_reply, q, "ZRANGEBYSCORE %s %s +inf", key,
                          now) != REDIS_OK) {
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "redis unavailable");
        free(q);
        return RT_OK;
    }
    mark_issued(st, st->pub);
    return RT_OK;
}

/* ---- subscriptions ---------------------------------------------------- */

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata);

static fo_room *
room_find(fanout_state *st, const char *name, size_t len, size_t *index)
{
    fo_room *r = rt_map_get(&st->room_index, name, len);
    if (r && index)
        *index = r->index;
    return r;
}

static fo_room *
room_add(fanout_state *st, const char *name, size_t len)
{
    if (st->nrooms == st->caprooms) {
        size_t cap = st->caprooms ? 2 * st->caprooms : 16;
        fo_room **p = realloc(st->rooms, cap * sizeof(*p));
        if (!p)
            return NULL;
        st->rooms = p;
        st->caprooms = cap;
    }
    fo_room *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->name, name, len);
    r->len = len;
    if (!rt_map_put(&st->room_index, r->name, len, r)) {
        free(r);
        return NULL;
    }
    r->index = st->nrooms;
    st->rooms[st->nrooms++] = r;
    return r;
}

/* Forgets rooms[i], moving the last room into its place. */
static void
room_remove_at(fanout_state *st, size_t i)
{
    fo_room *r = st->rooms[i];
    rt_map_del(&st->room_index, r->name, r->len);
    st->rooms[i] = st->rooms[--st->nrooms];
    st->rooms[i]->index = i;
}

static void
room_free(fo_room *r)
{
    free(r->waiters);
    free(r);
}

static void
room_ack_waiters(fanout_state *st, fo_room *r)
{
    for (size_t i = 0; i < r->nwaiters; i++)
        chatd_reply_ack(st->self, r->waiters[i].to, r->waiters[i].corr, PROTO_ACK_NONE, NULL);
    r->nwaiters = 0;
}

/* Brings Redis towards what the socket wants: at most one command in flight
 * per room. Forgets a room nobody wants any more. */
static void
room_sync(fanout_state *st, fo_room *r)
{
    if (r->inflight)
        return;
    if (r->want != r->live) {
        char chan[sizeof(ROOM_PREFIX) + PROTO_DM_ROOM_MAX];
        snprintf(chan, sizeof(chan), ROOM_PREFIX "%s", r->name);
        if (redisAsyncCommand(st->sub, on_sub_reply, NULL,
                              r->want ? "SUBSCRIBE %s" : "UNSUBSCRIBE %s", chan) == REDIS_OK) {
            r->inflight = true;
            mark_issued(st, st->sub);
        }
        return;
    }
    if (!r->want && !r->live && r->nwaiters == 0) {
        size_t i;
        if (room_find(st, r->name, r->len, &i)) {
            room_remove_at(st, i);
            room_free(r);
        }
    }
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
            chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, proto_strerror(e));
        return RT_OK;
    }
    fo_room *r = room_find(st, pr.room, pr.room_len, NULL);
    if (!subscribe) {
        if (r) {
            r->want = false;
            room_sync(st, r);
        }
        return RT_OK;
    }
    if (!r && !(r = room_add(st, pr.room, pr.room_len))) {
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return RT_OK;
    }
    r->want = true;
    if (r->live && !r->inflight) {
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_NONE, NULL);
        return RT_OK;
    }
    if (r->nwaiters == r->capwaiters) {
        size_t cap = r->capwaiters ? 2 * r->capwaiters : 4;
        fo_waiter *w = realloc(r->waiters, cap * sizeof(*w));
        if (!w) {
            chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
            return RT_OK;
        }
        r->waiters = w;
        r->capwaiters = cap;
    }
    r->waiters[r->nwaiters++] = (fo_waiter){ msg->from, msg->corr };
    room_sync(st, r);
    return RT_OK;
}

/* A message on a room channel: outside input, checked strictly. */
static void
deliver(fanout_state *st, const char *room, size_t room_len, const redisReply *data)
{
    const char *why = NULL;
    proto_err e = PROTO_OK;
    proto_env env;
    if (data->type != REDIS_REPLY_STRING) {
        why = "payload is not a string";
        goto bad;
    }
    if ((e = proto_env_decode((const uint8_t *)data->str, data->len, &env)) != PROTO_OK) {
        why = "envelope";
        goto bad;
    }
    if (env.from != 0 || env.to != 0 || env.corr != 0) {
        why = "envelope carries an address (from, to and corr must be 0)";
        goto bad;
    }
    if (env.type == PROTO_T_MESSAGE) {
        proto_msg m;
        if ((e = proto_msg_decode(env.payload, env.payload_len, &m)) != PROTO_OK) {
            why = "message record";
            goto bad;
        }
        bool same = m.room_len == room_len && memcmp(m.room, room, room_len) == 0;
        bool stored = m.seq != 0;
        proto_msg_free(&m);
        if (!same) {
            why = "message of another room";
            goto bad;
        }
        if (!stored) {
            why = "message without a seq";
            goto bad;
        }
    } else if (env.type == PROTO_T_TYPING) {
        proto_typing t;
        if ((e = proto_typing_decode(env.payload, env.payload_len, &t)) != PROTO_OK) {
            why = "typing record";
            goto bad;
        }
        bool same = t.room_len == room_len && memcmp(t.room, room, room_len) == 0;
        proto_typing_free(&t);
        if (!same) {
            why = "typing of another room";
            goto bad;
        }
    } else {
        why = "envelope type is neither message nor typing";
        goto bad;
    }
    rt_metric_add(st->m_received, 1);
    rt_send_named(st->rt, rt_self(st->self), st->socket, env.type, 0, env.payload,
                  env.payload_len);
    return;
bad:
    rt_metric_add(st->m_bad, 1);
    rt_warn(rt_who(st->self), "dropped a bad message on " ROOM_PREFIX "%.*s: %s%s%s",
            (int)room_len, room, why, e != PROTO_OK ? ": " : "",
            e != PROTO_OK ? proto_strerror(e) : "");
}

static void check_up(fanout_state *st);

/* Every reply on the subscriber: subscribe / unsubscribe confirmations and
 * channel messages, all through this one callback. */
static void
on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    fanout_state *st = ac->data;
    redisReply *reply = r;
    if (st->closing || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        rt_warn(rt_who(st->self), "redis subscriber: %s", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        rt_warn(rt_who(st->self), "redis subscriber: unexpected reply");
        return;
    }
    const char *kind = reply->element[0]->str;
    const char *chan = reply->element[1]->str;
    size_t chan_len = reply->element[1]->len;
    if (strcmp(chan, st->node_channel) == 0) {
        if (strcmp(kind, "subscribe") == 0 && !st->sub_up) {
            st->sub_up = true;
            check_up(st);
        }
        return;
    }
    size_t plen = sizeof(ROOM_PREFIX) - 1;
    if (chan_len <= plen || memcmp(chan, ROOM_PREFIX, plen) != 0) {
        rt_warn(rt_who(st->self), "redis subscriber: reply on a foreign channel");
        return;
    }
    const char *room = chan + plen;
    size_t room_len = chan_len - plen;
    if (strcmp(kind, "message") == 0) {
        deliver(st, room, room_len, reply->element[2]);
        return;
    }
    bool sub = strcmp(kind, "subscribe") == 0;
    if (!sub && strcmp(kind, "unsubscribe") != 0)
        return;
    fo_room *rm = room_find(st, room, room_len, NULL);
    if (!rm)
        return;
    rm->inflight = false;
    rm->live = sub;
    if (sub)
        room_ack_waiters(st, rm);
    room_sync(st, rm);
}

/* ---- connections ------------------------------------------------------ */

static void
queue_flush(fanout_state *st)
{
    /* dispatch may not queue again now that we are up */
    for (size_t i = 0; i < st->npending; i++) {
        fo_pending *p = &st->pending[i];
        proto_env m = { .type = p->type, .from = p->from, .corr = p->corr,
                        .payload = p->payload, .payload_len = p->len };
        dispatch(st, &m);
        free(p->payload);
    }
    st->npending = 0;
}

static void
check_up(fanout_state *st)
{
    if (st->up || !st->pub_up || !st->sub_up)
        return;
    st->up = true;
    if (st->watchdog)
        rt_cancel_timer(st->self, st->watchdog);
    st->watchdog = 0;
    rt_metric_set(st->m_up, 1);
    rt_info(rt_who(st->self), "redis connected (publisher and subscriber)");
    rt_send_named(st->rt, rt_self(st->self), st->socket, CHATD_T_FANOUT_UP, 0, NULL, 0);
    int every = st->cfg->presence_ttl_ms / 3;
    rt_send_after(st->self, every > 0 ? every : 1, CHATD_T_TICK, TICK_REFRESH, NULL, 0);
    queue_flush(st);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    fanout_state *st = ac->data;
    bool is_pub = ac == st->pub;
    const char *which = is_pub ? "publisher" : "subscriber";
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        if (is_pub)
            st->pub = NULL;
        else
            st->sub = NULL;
        if (!st->closing)
            rt_crash(st->self, "redis %s: connect failed: %s", which, ac->errstr);
        return;
    }
    if (st->closing)
        return;
    if (is_pub) {
        st->pub_up = true;
        check_up(st);
    } else if (redisAsyncCommand(st->sub, on_sub_reply, NULL, "SUBSCRIBE %s",
                                 st->node_channel) != REDIS_OK) {
        rt_crash(st->self, "redis subscriber: cannot subscribe");
    }
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    fanout_state *st = ac->data;
    bool is_pub = ac == st->pub;
    /* hiredis frees the context after this callback */
    if (is_pub)
        st->pub = NULL;
    else if (ac == st->sub)
        st->sub = NULL;
    if (st->closing)
        return;
    rt_crash(st->self, "redis %s: connection lost: %s", is_pub ? "publisher" : "subscriber",
             status == REDIS_OK ? "closed" : ac->errstr);
}

static redisAsyncContext *
connect_one(fanout_state *st, const char *host, int port, const char *which)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac) {
        rt_warn(rt_who(st->self), "redis %s: out of memory", which);
        return NULL;
    }
    if (ac->err) {
        rt_warn(rt_who(st->self), "redis %s: %s", which, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = st;
    if (redisLibevAttach(rt_loop(st->rt), ac) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

/* ---- the actor -------------------------------------------------------- */

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
    snprintf(st->node_channel, sizeof(st->node_channel), NODE_PREFIX "%s", st->node_hex);
    proto_mp_buf_growing(&st->rec);

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

    char host[256];
    int port;
    if (!parse_url(st->cfg->redis_url, host, sizeof(host), &port)) {
        rt_error(rt_who(self), "cannot parse redis url \"%s\"", st->cfg->redis_url);
        return RT_ERR;
    }
    st->pub = connect_one(st, host, port, "publisher");
    st->sub = st->pub ? connect_one(st, host, port, "subscriber") : NULL;
    if (!st->pub || !st->sub) {
        /* a start that failed at once crashes on the next turn, so the
         * supervisor's backoff applies rather than aborting its start */
        rt_send_after(self, 0, CHATD_T_TICK, TICK_CONNECT_FAILED, NULL, 0);
        return RT_OK;
    }
    st->watchdog = rt_send_after(self, st->cfg->request_timeout_ms, CHATD_T_TICK,
                                 TICK_WATCHDOG, NULL, 0);
    return RT_OK;
}

static int
handle_tick(fanout_state *st, const proto_env *msg)
{
    switch (msg->corr) {
    case TICK_CONNECT_FAILED:
        rt_crash(st->self, "redis: cannot connect to %s", st->cfg->redis_url);
        return RT_OK;
    case TICK_WATCHDOG:
        st->watchdog = 0;
        if (!st->up)
            rt_crash(st->self, "redis: no connection to %s within %d ms (publisher %s, "
                     "subscriber %s)", st->cfg->redis_url, st->cfg->request_timeout_ms,
                     st->pub_up ? "up" : "down", st->sub_up ? "up" : "down");
        return RT_OK;
    case TICK_REFRESH: {
        if (st->pub_outstanding &&
            rt_now_ms(st->rt) - st->pub_progress_ms > st->cfg->request_timeout_ms) {
            rt_crash(st->self, "redis publisher: no reply for %d ms",
                     st->cfg->request_timeout_ms);
            return RT_OK;
        }
        for (size_t i = 0; i < st->npresence; i++)
            presence_write(st, &st->presence[i]);
        int every = st->cfg->presence_ttl_ms / 3;
        rt_send_after(st->self, every > 0 ? every : 1, CHATD_T_TICK, TICK_REFRESH, NULL, 0);
        return RT_OK;
    }
    default:
        return RT_OK;
    }
}

/* The socket restarted: nothing of its connections is left. */
static int
handle_socket_up(fanout_state *st)
{
    for (size_t i = st->nrooms; i-- > 0;) {
        fo_room *r = st->rooms[i];
        r->want = false;
        r->nwaiters = 0;
        room_sync(st, r);
    }
    for (size_t i = 0; i < st->npresence; i++)
        presence_remove(st, &st->presence[i]);
    st->npresence = 0;
    rt_info(rt_who(st->self), "socket restarted: subscriptions and presence dropped");
    return RT_OK;
}

/* Requests before Redis is up wait here, in order. */
static int
queue_request(fanout_state *st, const proto_env *msg)
{
    bool has_reply = msg->type == CHATD_T_SUBSCRIBE || msg->type == CHATD_T_PRESENCE_QUERY;
    if (st->npending == FANOUT_PENDING_MAX) {
        rt_metric_add(st->m_refused, 1);
        if (has_reply)
            chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE,
                      "redis not connected yet");
        return RT_OK;
    }
    if (st->npending == st->cappending) {
        size_t cap = st->cappending ? 2 * st->cappending : 16;
        fo_pending *p = realloc(st->pending, cap * sizeof(*p));
        if (!p)
            goto nomem;
        st->pending = p;
        st->cappending = cap;
    }
    uint8_t *copy = malloc(msg->payload_len ? msg->payload_len : 1);
    if (!copy)
        goto nomem;
    if (msg->payload_len)
        memcpy(copy, msg->payload, msg->payload_len);
    st->pending[st->npending++] = (fo_pending){ msg->type, msg->from, msg->corr, copy,
                                                msg->payload_len };
    return RT_OK;
nomem:
    rt_metric_add(st->m_refused, 1);
    if (has_reply)
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
    return RT_OK;
}

static int
dispatch(fanout_state *st, const proto_env *msg)
{
    switch (msg->type) {
    case PROTO_T_MESSAGE_BATCH:
    case PROTO_T_TYPING:
    case CHATD_T_SUBSCRIBE:
    case CHATD_T_UNSUBSCRIBE:
    case CHATD_T_PRESENCE_ADD:
    case CHATD_T_PRESENCE_DEL:
    case CHATD_T_PRESENCE_QUERY:
    case CHATD_T_SOCKET_UP:
        if (!st->up)
            return queue_request(st, msg);
        break;
    default:
        break;
    }
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
        return handle_presence(st, msg, true);
    case CHATD_T_PRESENCE_DEL:
        return handle_presence(st, msg, false);
    case CHATD_T_PRESENCE_QUERY:
        return handle_query(st, msg);
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

static int
fanout_handle(rt_actor *self, const proto_env *msg)
{
    return dispatch(rt_state(self), msg);
}

/* Sends what the turn issued now rather than on the next loop iteration. */
static void
fanout_after_turn(rt_actor *self)
{
    fanout_state *st = rt_state(self);
    if (st->pub_dirty && st->pub && st->pub_up) {
        st->pub_dirty = false;
        redisAsyncHandleWrite(st->pub);
    }
    if (st->sub_dirty && st->sub && st->sub_up) {
        st->sub_dirty = false;
        redisAsyncHandleWrite(st->sub);
    }
}

static void
fanout_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    fanout_state *st = rt_state(self);
    st->closing = true;
    if (st->m_up)
        rt_metric_set(st->m_up, 0);
    redisAsyncContext *ac;
    if ((ac = st->pub)) {
        st->pub = NULL;
        redisAsyncFree(ac);
    }
    if ((ac = st->sub)) {
        st->sub = NULL;
        redisAsyncFree(ac);
    }
    for (size_t i = 0; i < st->nrooms; i++)
        room_free(st->rooms[i]);
    free(st->rooms);
    rt_map_free(&st->room_index);
    free(st->presence);
    for (size_t i = 0; i < st->npending; i++)
        free(st->pending[i].payload);
    free(st->pending);
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
