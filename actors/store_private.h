/*
 * What the store actor's files share (part of the store actor, actors/store.h;
 * not a contract for anyone else): its state and jobs, and the batch half
 * (actors/store_batch.c: a stored batch's results, the lookup of records
 * stored before, and publishing through the fanout until it confirms) that
 * actors/store.c (the queue, joins, history, the connection, the actor) calls.
 */
#ifndef CHATD_ACTORS_STORE_PRIVATE_H
#define CHATD_ACTORS_STORE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/config.h"
#include "actors/store_sql.h"
#include "adapters/pg.h"
#include "proto/envelope.h"
#include "proto/record.h"
#include "runtime/list.h"
#include "runtime/metrics.h"
#include "runtime/rt.h"

typedef enum job_kind {
    JOB_BATCH,
    JOB_JOIN,
    JOB_HISTORY,
} job_kind;

typedef struct store_job {
    rt_link link;               /* in its store_lane's waiting */
    job_kind kind;
    bool looking_up;            /* a batch's second query: its messages stored before */
    proto_msg *fresh;           /* a batch's messages stored anew (shallow) */
    size_t nfresh;
    rt_id from;
    uint64_t corr;
    uint64_t sent_us;           /* when its (first) query was sent */
    union {
        proto_batch batch;
        proto_join_req join;
        proto_history_req history;
    } u;
} store_job;

/* A stored batch whose publish the fanout has not confirmed yet. */
typedef struct store_pub {
    rt_link link;               /* in store_state.pubs */
    uint64_t id;                /* the corr of the batch sent to the fanout */
    rt_id from;                 /* the consumer, answered on confirmation */
    uint64_t corr;
    rt_timer_id timer;          /* the deadline, or the delayed send (fault) */
    uint8_t *enc;               /* the encoded batch, until sent */
    size_t enc_len;
} store_pub;

/* Store timers of its own carry this bit; the adapter's never do. */
#define PUB_TIMER (1ull << 63)
#define PUB_SEND (1ull << 62)   /* with PUB_TIMER: the delayed send, not the deadline */

/* The store's two queues, each with its own PostgreSQL connection: batches
 * (the write path) and joins/history (client reads). Neither waits behind
 * the other; a full read queue sheds reads, never batches. */
typedef enum store_lane_id {
    LANE_WRITE,
    LANE_READ,
    LANES,
} store_lane_id;

struct store_state;

typedef struct store_lane {
    rt_actor *self;
    struct store_state *st;
    store_lane_id id;
    const char *name;           /* "write" or "read": the metrics' queue label */
    pg_conn *pg;
    bool ready;                 /* connected (the write lane: and migrated) */
    rt_list waiting;            /* store_job, oldest first */
    size_t held;                /* waiting + busy */
    size_t max;                 /* held at most; one more is refused */
    bool shedding;              /* refused one since the queue was last down to max / 2 */
    uint64_t episode_shed;      /* refused since shedding began */
    store_job *busy;            /* its query is in flight */
    store_query query;          /* the parameters' buffers, reused */
    rt_metric *depth;           /* gauge chatd_store_queue_depth{queue=name} */
    rt_metric *shed;            /* counter chatd_store_shed_total{queue=name} */
} store_lane;

typedef struct store_state {
    const chatd_config *cfg;
    store_lane lanes[LANES];
    rt_list pubs;               /* store_pub, oldest first */
    uint64_t next_pub;

    rt_metric *up;
    rt_metric *stored;
    struct rt_histogram *h_stored;  /* chatd_stage_seconds{stage="stored"} */
    struct rt_histogram *h_batch;   /* chatd_store_batch_seconds: a batch's query */
    rt_metric *republished;
} store_state;

/* ---- store_batch.c ---- */

/* The rows of a batch's chatd_store_batch() are in (committed). Returns true
 * when a second query (its messages stored before) was sent for j, false
 * when j is answered or waits for the fanout's confirmation. */
bool store_finish_batch(rt_actor *self, store_state *st, store_job *j, const PGresult *res);

/* The rows of that second query are in: publishes them with the fresh ones. */
void store_finish_lookup(rt_actor *self, store_state *st, store_job *j, const PGresult *res);

/* A PROTO_T_ACK from the fanout (a confirmation, or a refusal). */
void store_pub_ack(rt_actor *self, store_state *st, const proto_env *msg);

/* A CHATD_T_TICK whose corr has PUB_TIMER set. */
void store_pub_timer(rt_actor *self, store_state *st, uint64_t corr);

/* Answers every batch still waiting for the fanout unavailable (terminate). */
void store_pubs_abandon(rt_actor *self, store_state *st);

#endif
