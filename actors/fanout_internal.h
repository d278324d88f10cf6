/*
 * What the fanout actor's two files share: its state, the tags of its Redis
 * commands, and the presence half (actors/presence.c) that actors/fanout.c
 * calls. Not a contract for anyone else: the actor's contract is fanout.h.
 *
 * fanout.c holds the actor itself (init, dispatch, terminate), the Redis
 * callbacks, room subscriptions with their waiters, delivery of channel
 * messages to the socket, and the publishing of stored batches and typing.
 * presence.c holds the node's presence entries: the sorted-set writes, their
 * refresh on the tick and the queries.
 */
#ifndef CHATD_ACTORS_FANOUT_INTERNAL_H
#define CHATD_ACTORS_FANOUT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/fanout.h"
#include "adapters/redis.h"
#include "proto/record.h"
#include "runtime/list.h"
#include "runtime/map.h"
#include "runtime/metrics.h"
#include "runtime/rt.h"

#define FANOUT_ROOM_PREFIX "chatd:room:"
#define FANOUT_PRESENCE_PREFIX "chatd:presence:"
#define FANOUT_NODE_PREFIX "chatd:node:"

/*
 * The privdata of every command the actor issues: a static tag naming the
 * command (for logs), or the first member of a fanout_query.
 */
typedef struct fanout_cmd {
    const char *name;
    bool is_query;
    bool is_batch;              /* the first member of a fanout_batch */
} fanout_cmd;

extern const fanout_cmd FANOUT_CMD_PUBLISH, FANOUT_CMD_ZADD, FANOUT_CMD_ZREM,
    FANOUT_CMD_PEXPIRE, FANOUT_CMD_ZREMRANGE;

/* A presence query waiting for its reply; in fanout_state.queries. */
typedef struct fanout_query {
    fanout_cmd cmd;             /* first: the privdata points here */
    rt_link link;
    rt_id to;
    uint64_t corr;
} fanout_query;

/* A stored batch being published: its requester (the store) is answered once
 * Redis replied to every PUBLISH of it; in fanout_state.batches. */
typedef struct fanout_batch {
    fanout_cmd cmd;             /* first: the privdata of its PUBLISHes */
    rt_link link;
    rt_id to;
    uint64_t corr;
    size_t left;                /* PUBLISHes without a reply yet */
    bool failed;                /* one was refused or lost */
    /* the trace stamps of the messages published, in order (Redis answers
     * one connection's commands in order): replied of them answered */
    size_t queued, replied;
    uint64_t rx_us[];
} fanout_batch;

typedef struct fanout_waiter {
    rt_id to;
    uint64_t corr;
} fanout_waiter;

/* A room with SUBSCRIBE requests to ack once Redis confirms it (the
 * subscription itself is the Redis client's: redis_subscribe). */
typedef struct fanout_room {
    char name[PROTO_DM_ROOM_MAX + 1];
    size_t len;
    fanout_waiter *waiters;
    size_t nwaiters, waiters_cap;
} fanout_room;

/* A presence entry of this node: (room, user), written with a fresh expiry
 * on every refresh. */
typedef struct fanout_entry {
    char room[PROTO_DM_ROOM_MAX + 1];
    char user[PROTO_USER_MAX + 1];
} fanout_entry;

typedef struct fanout_state {
    rt_actor *self;
    rt_runtime *rt;
    const chatd_config *cfg;
    const char *socket;
    char node_hex[17];
    char node_channel[sizeof(FANOUT_NODE_PREFIX) + 16];

    redis_client *redis;

    rt_map rooms;               /* name -> fanout_room (only with waiters) */
    rt_map presence;            /* "<room>\0<user>" -> fanout_entry */
    rt_list queries;            /* fanout_query */
    rt_list batches;            /* fanout_batch */

    proto_mp_buf rec;           /* scratch: a record */
    uint8_t *env;               /* scratch: an envelope */
    size_t env_cap;

    rt_metric *m_published, *m_received, *m_bad, *m_refused, *m_up;
    struct rt_histogram *h_published, *h_received;  /* chatd_stage_seconds */
} fanout_state;

/* ---- presence.c ---- */

/* CHATD_T_PRESENCE_ADD (add) and CHATD_T_PRESENCE_DEL. */
int presence_handle_member(fanout_state *st, const proto_env *msg, bool add);

/* CHATD_T_PRESENCE_QUERY. */
int presence_handle_query(fanout_state *st, const proto_env *msg);

/* The reply to a query's ZRANGEBYSCORE (reply NULL: failed): answers the
 * requester and frees q. */
void presence_query_reply(fanout_state *st, fanout_query *q, const redisReply *reply);

/* Writes every entry again with a fresh expiry (the refresh tick). */
void presence_refresh(fanout_state *st);

/* Removes every entry from Redis and forgets it (the socket restarted). */
void presence_drop_all(fanout_state *st);

/* Frees the entries and the queries still waiting (terminate, after the
 * Redis client is freed: no reply comes any more). */
void presence_free(fanout_state *st);

#endif
