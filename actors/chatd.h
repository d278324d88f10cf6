/*
 * The chat actors and the messages between them.
 *
 * One node runs up to five actors, each registered under its name:
 *
 *   "socket"    WebSocket / Socket.IO clients, HTTP endpoints    actors/socket*.c, http.c
 *   "producer"  Kafka producer                                    actors/producer.c
 *   "consumer"  Kafka consumer-group member                       actors/consumer.c
 *   "store"     PostgreSQL                                        actors/store*.c
 *   "fanout"    Redis Pub/Sub, presence                           actors/fanout.c, presence.c
 *
 * Every message is an envelope (proto/envelope.h) whose type names its
 * payload's record (proto/record.h). A request carries a correlation id
 * (corr) chosen by the requester; the reply echoes it. A request whose
 * receiver is down (rt_send returns an error) or that gets no reply within
 * its deadline is answered `unavailable` by the requester itself.
 *
 * socket -> producer   PROTO_T_MESSAGE {room,id,user,text,ts,seq=0}
 *                      reply PROTO_T_ACK: ok once Kafka acked it (acks=all),
 *                      else code unavailable.
 * consumer -> store    PROTO_T_MESSAGE_BATCH, corr = batch number, messages
 *                      in partition order; reply PROTO_T_ACK once the batch
 *                      is committed in PostgreSQL and its messages were
 *                      handed to Redis (then the consumer commits the Kafka
 *                      offsets), or not ok (the consumer retries).
 * store -> fanout      PROTO_T_MESSAGE_BATCH of the messages the batch stored
 *                      anew and of those it held that were stored before (a
 *                      redelivery), with their seq, after the commit; corr is
 *                      the store's own. Reply PROTO_T_ACK once Redis took
 *                      every PUBLISH (not ok: one was refused or lost); only
 *                      then does the store answer the consumer.
 * socket -> store      PROTO_T_JOIN_REQ -> PROTO_T_JOIN_REPLY
 *                      PROTO_T_HISTORY_REQ -> PROTO_T_HISTORY_REPLY
 *                      or PROTO_T_ACK (not ok, unavailable) on failure.
 * socket -> fanout     CHATD_T_SUBSCRIBE {room} -> PROTO_T_ACK once the
 *                      node's Redis subscription to the room is live;
 *                      CHATD_T_UNSUBSCRIBE {room}, no reply;
 *                      CHATD_T_PRESENCE_ADD / _DEL {room, user}, no reply;
 *                      CHATD_T_PRESENCE_QUERY {room} -> PROTO_T_USERS (sorted,
 *                      distinct, across nodes) or PROTO_T_ACK not ok;
 *                      PROTO_T_TYPING {room,user,node,conn} -> published.
 * fanout -> socket     PROTO_T_MESSAGE (a stored message of a subscribed
 *                      room, from Redis) and PROTO_T_TYPING (from any node);
 *                      CHATD_T_FANOUT_UP {} when fanout (re)started: the
 *                      socket sends again every SUBSCRIBE and PRESENCE_ADD
 *                      it holds.
 * socket -> fanout     CHATD_T_SOCKET_UP {} when socket (re)started: fanout
 *                      drops the node's subscriptions and presence entries.
 *
 * Redis: channel "chatd:room:<room>" carries envelopes (PROTO_T_MESSAGE or
 * PROTO_T_TYPING, from = 0); presence is a sorted set "chatd:presence:<room>"
 * of "<user> <node>" members scored by their expiry (ms since the epoch),
 * refreshed by each node while the member is connected.
 *
 * Kafka: topic records are envelopes holding a PROTO_T_MESSAGE, key = room.
 *
 * Backends report their state as the gauge chatd_backend_up{backend="kafka"
 * |"redis"|"postgres"} (runtime/metrics.h), 1 when connected; /readyz reads
 * them.
 */
#ifndef CHATD_ACTORS_CHATD_H
#define CHATD_ACTORS_CHATD_H

#include <stdint.h>

#include "proto/record.h"
#include "runtime/rt.h"

#define CHATD_SOCKET   "socket"
#define CHATD_PRODUCER "producer"
#define CHATD_CONSUMER "consumer"
#define CHATD_STORE    "store"
#define CHATD_FANOUT   "fanout"

enum chatd_type {
    CHATD_T_SUBSCRIBE = 200,    /* proto_room */
    CHATD_T_UNSUBSCRIBE,        /* proto_room */
    CHATD_T_PRESENCE_ADD,       /* proto_member */
    CHATD_T_PRESENCE_DEL,       /* proto_member */
    CHATD_T_PRESENCE_QUERY,     /* proto_room */
    CHATD_T_FANOUT_UP,          /* empty payload */
    CHATD_T_SOCKET_UP,          /* empty payload */
    CHATD_T_TICK,               /* an actor's own timer; empty payload */
};
_Static_assert(CHATD_T_TICK < RT_T_TEST_BASE, "chatd types (TICK last) reach the test range");

/* Names of the backends in chatd_backend_up. */
#define CHATD_BACKEND_KAFKA    "kafka"
#define CHATD_BACKEND_REDIS    "redis"
#define CHATD_BACKEND_POSTGRES "postgres"

/* Replies to a request with PROTO_T_ACK: ok when code is PROTO_ACK_NONE,
 * else not ok with that code and the words in why (clipped to
 * PROTO_ACK_MSG_MAX). A requester of 0 gets nothing; a requester that is
 * gone is not an error (nobody is left to tell); any other failure to send
 * is logged under self's name. */
void chatd_reply_ack(rt_actor *self, rt_id to, uint64_t corr, proto_ack_code code,
                     const char *why);

/* Wall-clock time in milliseconds since the Unix epoch: message timestamps
 * and presence expiries, which other nodes read (rt_now_ms is the loop's
 * monotonic clock, for deadlines). */
uint64_t chatd_wall_ms(void);

/* The same clock in microseconds: a message's trace stamp (proto_msg.rx_us). */
uint64_t chatd_wall_us(void);

/*
 * The stages of a message's path, in order. At each one the actor there
 * observes the message's age (now - rx_us, the wall clock, so the stages on
 * another node are comparable on one machine and skewed by the clocks'
 * offset across machines) in chatd_stage_seconds{stage="..."}, a histogram:
 *   acked     the producer's delivery report reached the socket (Kafka acks=all)
 *   consumed  the consumer read it from Kafka
 *   stored    its batch was committed in PostgreSQL
 *   published Redis answered its PUBLISH
 *   received  the fanout of a node with members got it from Redis
 *   delivered the socket queued it on its members' connections (written
 *             right after that turn)
 */
typedef enum chatd_stage {
    CHATD_STAGE_ACKED,
    CHATD_STAGE_CONSUMED,
    CHATD_STAGE_STORED,
    CHATD_STAGE_PUBLISHED,
    CHATD_STAGE_RECEIVED,
    CHATD_STAGE_DELIVERED,
    CHATD_STAGES
} chatd_stage;

/* The stage's histogram; look it up once (at init) and keep the pointer. */
struct rt_histogram *chatd_stage_histogram(rt_runtime *rt, chatd_stage stage);

/* Observes the age of a message stamped rx_us; nothing when rx_us is 0
 * (a message read back from PostgreSQL carries no stamp). */
void chatd_stage_observe(struct rt_histogram *h, uint64_t rx_us);

struct chatd_config;
struct kafka_client;
struct kafka_setup;

/* Opens the Kafka client of a chat actor (adapters/kafka.h): the caller's s
 * names what is the actor's own (type, defaults, topic, cb); the brokers, the
 * "KEY=VALUE" options of cfg, the chatd_backend_up{backend="kafka"} gauge and
 * ud = self are filled in here (s itself is not changed). Returns the client,
 * or NULL after logging why under self's name. */
struct kafka_client *chatd_kafka_open(rt_actor *self, const struct chatd_config *cfg,
                                      const struct kafka_setup *s);

#endif
