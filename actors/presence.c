/*
 * The fanout actor's presence half: this node's entries in the sorted sets
 * "chatd:presence:<room>", their refresh and the queries across nodes. The
 * contract is fanout.h; the state is fanout_internal.h.
 *
 * An entry is the member "<user> <node_key as 16 hex digits>" scored by its
 * expiry (ms since the epoch). Entries are a set: two ADDs of one (room,
 * user) make one entry, which one DEL removes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/chatd.h"
#include "actors/fanout_internal.h"
#include "runtime/log.h"

/* "<room>\0<user>": the index key of an entry */
static size_t
entry_key(char *key, const char *room, size_t room_len, const char *user, size_t user_len)
{
    memcpy(key, room, room_len);
    key[room_len] = '\0';
    memcpy(key + room_len + 1, user, user_len);
    return room_len + 1 + user_len;
}

/* ZADD the entry with a fresh expiry, and push the key's own expiry. */
static void
entry_write(fanout_state *st, const fanout_entry *en)
{
    char key[sizeof(FANOUT_PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char member[PROTO_USER_MAX + 18];
    char score[24], keyttl[24];
    snprintf(key, sizeof(key), FANOUT_PRESENCE_PREFIX "%s", en->room);
    snprintf(member, sizeof(member), "%s %s", en->user, st->node_hex);
    snprintf(score, sizeof(score), "%" PRIu64,
             chatd_wall_ms() + (uint64_t)st->cfg->presence_ttl_ms);
    snprintf(keyttl, sizeof(keyttl), "%" PRIu64, 2 * (uint64_t)st->cfg->presence_ttl_ms);
    if (redis_command(st->redis, (void *)&FANOUT_CMD_ZADD, "ZADD %s %s %s", key, score,
                      member) == REDIS_CLIENT_FULL)
        rt_metric_add(st->m_refused, 1);
    if (redis_command(st->redis, (void *)&FANOUT_CMD_PEXPIRE, "PEXPIRE %s %s", key,
                      keyttl) == REDIS_CLIENT_FULL)
        rt_metric_add(st->m_refused, 1);
}

static void
entry_remove(fanout_state *st, const char *room, const char *user)
{
    char key[sizeof(FANOUT_PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char member[PROTO_USER_MAX + 18];
    snprintf(key, sizeof(key), FANOUT_PRESENCE_PREFIX "%s", room);
    snprintf(member, sizeof(member), "%s %s", user, st->node_hex);
    if (redis_command(st->redis, (void *)&FANOUT_CMD_ZREM, "ZREM %s %s", key, member) ==
        REDIS_CLIENT_FULL)
        rt_metric_add(st->m_refused, 1);
}

int
presence_handle_member(fanout_state *st, const proto_env *msg, bool add)
{
    proto_member m;
    proto_err e = proto_member_decode(msg->payload, msg->payload_len, &m);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad presence record from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        return RT_OK;
    }
    char key[sizeof(m.room) + sizeof(m.user)];
    size_t klen = entry_key(key, m.room, m.room_len, m.user, m.user_len);
    fanout_entry *en = rt_map_get(&st->presence, key, klen);
    if (!add) {
        entry_remove(st, m.room, m.user);
        if (en) {
            rt_map_del(&st->presence, key, klen);
            free(en);
        }
        return RT_OK;
    }
    if (!en) {
        en = malloc(sizeof(*en));
        if (!en || !rt_map_put(&st->presence, key, klen, en)) {
            free(en);
            rt_warn(rt_who(st->self), "out of memory: presence of %s in %s not kept", m.user,
                    m.room);
            return RT_OK;
        }
        snprintf(en->room, sizeof(en->room), "%s", m.room);
        snprintf(en->user, sizeof(en->user), "%s", m.user);
    }
    entry_write(st, en);
    return RT_OK;
}

void
presence_refresh(fanout_state *st)
{
    rt_map_entry *e;
    for (size_t i = 0; rt_map_next(&st->presence, &i, &e);)
        entry_write(st, e->value);
}

void
presence_drop_all(fanout_state *st)
{
    rt_map_entry *e;
    for (size_t i = 0; rt_map_next(&st->presence, &i, &e);) {
        fanout_entry *en = e->value;
        entry_remove(st, en->room, en->user);
        free(en);
    }
    rt_map_free(&st->presence);
    rt_map_init(&st->presence);
}

int
presence_handle_query(fanout_state *st, const proto_env *msg)
{
    proto_room r;
    proto_err e = proto_room_decode(msg->payload, msg->payload_len, &r);
    if (e != PROTO_OK) {
        rt_warn(rt_who(st->self), "bad presence query from %" PRIu64 ": %s", msg->from,
                proto_strerror(e));
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, proto_strerror(e));
        return RT_OK;
    }
    char key[sizeof(FANOUT_PRESENCE_PREFIX) + PROTO_DM_ROOM_MAX];
    char now[24], before[25];
    uint64_t t = chatd_wall_ms();
    snprintf(key, sizeof(key), FANOUT_PRESENCE_PREFIX "%s", r.room);
    snprintf(now, sizeof(now), "%" PRIu64, t);
    snprintf(before, sizeof(before), "(%" PRIu64, t);
    fanout_query *q = malloc(sizeof(*q));
    if (!q) {
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return RT_OK;
    }
    *q = (fanout_query){ .cmd = { "ZRANGEBYSCORE", true }, .to = msg->from, .corr = msg->corr };
    /* Expired entries of nodes that died: remove them while we are here. */
    redis_command(st->redis, (void *)&FANOUT_CMD_ZREMRANGE, "ZREMRANGEBYSCORE %s -inf %s", key,
                  before);
    int rc = redis_command(st->redis, &q->cmd, "ZRANGEBYSCORE %s %s +inf", key, now);
    if (rc != REDIS_CLIENT_OK) {
        if (rc == REDIS_CLIENT_FULL)
            rt_metric_add(st->m_refused, 1);
        chatd_reply_ack(st->self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE,
                        rc == REDIS_CLIENT_FULL ? "redis not connected yet" : "redis unavailable");
        free(q);
        return RT_OK;
    }
    rt_list_push_back(&st->queries, &q->link);
    return RT_OK;
}

static int
cmp_user(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The distinct users of a ZRANGEBYSCORE reply, sorted bytewise, into u
 * (u->users sized for every element). */
static void
users_of_reply(fanout_state *st, const redisReply *reply, proto_users *u)
{
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *el = reply->element[i];
        const char *sp = el->type == REDIS_REPLY_STRING ? memrchr(el->str, ' ', el->len) : NULL;
        size_t ulen = sp ? (size_t)(sp - el->str) : 0;
        if (!sp || proto_check_user(el->str, ulen) != PROTO_OK) {
            rt_warn(rt_who(st->self), "bad presence member ignored");
            continue;
        }
        memcpy(u->users[u->count], el->str, ulen);
        u->users[u->count][ulen] = '\0';
        u->count++;
    }
    qsort(u->users, u->count, sizeof(*u->users), cmp_user);
    size_t n = 0;
    for (size_t i = 0; i < u->count; i++)
        if (n == 0 || strcmp(u->users[n - 1], u->users[i]) != 0)
            memmove(u->users[n++], u->users[i], sizeof(*u->users));
    u->count = n < PROTO_USERS_MAX ? n : PROTO_USERS_MAX;
}

void
presence_query_reply(fanout_state *st, fanout_query *q, const redisReply *reply)
{
    rt_list_remove(&st->queries, &q->link);
    proto_users u = { 0 };
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rt_warn(rt_who(st->self), "presence query failed: %s",
                !reply ? "connection lost"
                       : reply->type == REDIS_REPLY_ERROR ? reply->str : "not an array");
        chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE, "presence unavailable");
    } else if (!(u.users = calloc(reply->elements ? reply->elements : 1, sizeof(*u.users)))) {
        chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
    } else {
        users_of_reply(st, reply, &u);
        proto_mp_buf b;
        proto_mp_buf_growing(&b);
        if (proto_users_encode(&u, &b) == PROTO_OK)
            rt_send(st->rt, rt_self(st->self), q->to, PROTO_T_USERS, q->corr, b.data, b.len);
        else
            chatd_reply_ack(st->self, q->to, q->corr, PROTO_ACK_UNAVAILABLE,
                            "cannot encode users");
        proto_mp_buf_free(&b);
        free(u.users);
    }
    free(q);
}

void
presence_free(fanout_state *st)
{
    rt_map_entry *e;
    for (size_t i = 0; rt_map_next(&st->presence, &i, &e);)
        free(e->value);
    rt_map_free(&st->presence);
    for (rt_link *l; (l = rt_list_pop_front(&st->queries));)
        free(RT_CONTAINER(l, fanout_query, link));
}
