/*
 * The fanout actor: Redis Pub/Sub between the nodes, and presence.
 *
 * Registered as "fanout" (CHATD_FANOUT). It talks to Redis through one
 * client of adapters/redis.h on the runtime's loop (a command connection
 * and a subscriber, anchored on the node's own channel "chatd:node:<node_key
 * as 16 hex digits>", on which nobody publishes). The actor is two files:
 * actors/fanout.c (subscriptions, delivery, publishing) and actors/presence.c.
 *
 * What it does (actors/chatd.h has the messages):
 *
 *   PROTO_T_MESSAGE_BATCH   each message is PUBLISHed as an envelope
 *                           {type PROTO_T_MESSAGE, from 0, payload the
 *                           message} on "chatd:room:<room>"; all the
 *                           PUBLISHes of a turn leave in one write.
 *   PROTO_T_TYPING          PUBLISHed the same way, as PROTO_T_TYPING.
 *   CHATD_T_SUBSCRIBE       SUBSCRIBE the room's channel; PROTO_T_ACK ok (same
 *                           corr) to the sender once Redis confirmed it (at
 *                           once when it already had).
 *   CHATD_T_UNSUBSCRIBE     UNSUBSCRIBE it. No reference counting here: the
 *                           socket subscribes for its first local member and
 *                           unsubscribes after its last.
 *   channel messages        checked strictly (a bad one is logged and dropped),
 *                           then the record's bytes go unchanged to the socket
 *                           as PROTO_T_MESSAGE or PROTO_T_TYPING.
 *   CHATD_T_PRESENCE_ADD    ZADD "chatd:presence:<room>" "<user> <node_key as
 *                           16 hex digits>" scored now + presence_ttl_ms (ms
 *                           since the epoch), remembered and refreshed every
 *                           presence_ttl_ms / 3; the key itself expires after
 *                           2 * presence_ttl_ms without a refresh from any node.
 *   CHATD_T_PRESENCE_DEL    ZREM, forgotten. Entries are a set: two ADDs of
 *                           one (room, user) make one entry, which one DEL
 *                           removes (the socket counts its connections).
 *   CHATD_T_PRESENCE_QUERY  PROTO_T_USERS with the distinct users whose entry
 *                           has not expired, sorted bytewise; PROTO_T_ACK not
 *                           ok (unavailable) when Redis fails.
 *   CHATD_T_SOCKET_UP       the socket restarted: every subscription and every
 *                           presence entry of this node is dropped.
 *
 * Once both connections are up it sends CHATD_T_FANOUT_UP to the socket and
 * sets chatd_backend_up{backend="redis"} to 1 (0 again when it ends).
 * Requests that arrive before that are handled at once: their Redis
 * commands wait in the client's queue (at most FANOUT_PENDING_MAX; past
 * that, a query is answered unavailable, other commands are dropped, and
 * both are counted), and their subscriptions are made once it is up.
 *
 * Failure: the client does not reconnect here, so a failed connect, a lost
 * connection, a connect that takes longer than request_timeout_ms, or a
 * command connection that has not answered for request_timeout_ms crash the
 * actor: its supervisor restarts it (with backoff), and the new instance
 * announces itself with CHATD_T_FANOUT_UP so that the socket subscribes and
 * adds its presence entries again. A query still waiting in the client's
 * queue when the connect fails is answered unavailable before the crash.
 *
 * Metrics: chatd_messages_published_total, chatd_messages_received_total
 * (channel messages handed to the socket), chatd_fanout_dropped_total{reason=}
 * (bad channel messages, Redis commands refused by a full queue),
 * chatd_backend_up{backend="redis"}.
 */
#ifndef CHATD_ACTORS_FANOUT_H
#define CHATD_ACTORS_FANOUT_H

#include "actors/config.h"
#include "runtime/rt.h"

/* Redis commands kept while Redis is not yet connected. */
#define FANOUT_PENDING_MAX 4096

/*
 * The init argument of chatd_fanout_spec. It must outlive the actor (a
 * supervisor's child spec keeps pointing at it across restarts).
 *
 * The peer's name is a field here rather than the fixed CHATD_SOCKET so that
 * one runtime can hold two fanout actors playing two nodes (the tests do):
 * each then talks to its own socket. In chatd itself socket is NULL.
 */
typedef struct chatd_fanout_arg {
    const chatd_config *cfg;    /* redis_url, node_key, presence_ttl_ms,
                                 * request_timeout_ms are read */
    const char *socket;         /* the socket's registered name; NULL: "socket" */
} chatd_fanout_arg;

/* The fanout actor; init arg: const chatd_fanout_arg *. Its init fails
 * (RT_ERR) only when redis_url cannot be parsed or memory runs out; a Redis
 * that cannot be reached is a crash later, not a failed start. */
extern const rt_actor_spec chatd_fanout_spec;

#endif
