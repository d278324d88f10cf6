/*
 * The store actor (see store.h for its contract).
 *
 * Two lanes (store_private.h), each a FIFO of jobs on its own PostgreSQL
 * connection (adapters/pg.h) with one query in flight at a time, whose result
 * becomes the reply: the write lane takes batches, and its connection's setup
 * query is the schema migration (actors/store_sql.c), so its "ready" means
 * connected and migrated; the read lane takes joins and history and starts
 * only once the write lane is ready (the tables exist). Reads and batches
 * thus never wait for each other's queries, and, since reads take no row
 * locks, a read storm costs a batch only the server's shared CPU and disk. A
 * read that finds its queue full is refused before it is even decoded, so
 * shedding it costs next to nothing. Either connection's failure crashes the
 * actor.
 *
 * A batch is answered only once the fanout confirms that Redis took the
 * PUBLISH of its messages (a store_pub waits for that), so the consumer
 * commits the Kafka offsets of no record whose message might not have been
 * published. The messages published are those the batch stored anew and,
 * when the batch held records stored before (a redelivery after a node died
 * between the commit and the publish, or a retried batch), those again with
 * their stored seq, looked up by a second query: members merge by seq, so a
 * second publish is harmless and a missing one is not. That half is
 * actors/store_batch.c; the state both files share, actors/store_private.h.
 */
#include "actors/store.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "actors/chatd.h"
#include "actors/store_private.h"
#include "runtime/log.h"

/* send_job: the job was answered without a query. */
#define JOB_ANSWERED 1

/* --- small helpers -------------------------------------------------------- */

static void
store_crash(rt_actor *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
store_crash(rt_actor *self, const char *fmt, ...)
{
    char reason[RT_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    rt_warn(rt_who(self), "%s", reason);
    rt_crash(self, "%s", reason);
}

static const char *
job_name(const store_job *j)
{
    return j->kind == JOB_BATCH ? "batch" : j->kind == JOB_JOIN ? "join" : "history";
}

static void
send_record(rt_actor *self, rt_id to, uint32_t type, uint64_t corr, proto_mp_buf *b)
{
    int r = rt_send(rt_of(self), rt_self(self), to, type, corr, b->data, b->len);
    if (r != RT_OK && r != RT_ENOACTOR)
        rt_warn(rt_who(self), "reply %s to #%" PRIu64 " not delivered: %d",
                proto_type_name(type), to, r);
}

static void
job_free(store_job *j)
{
    if (!j)
        return;
    switch (j->kind) {
    case JOB_BATCH: free(j->fresh); proto_batch_free(&j->u.batch); break;
    case JOB_JOIN: proto_join_req_free(&j->u.join); break;
    case JOB_HISTORY: proto_history_req_free(&j->u.history); break;
    }
    free(j);
}

static store_lane *
job_lane(store_state *st, job_kind kind)
{
    return &st->lanes[kind == JOB_BATCH ? LANE_WRITE : LANE_READ];
}

static void
lane_gauge(store_lane *l)
{
    rt_metric_set(l->depth, (double)l->held);
}

static void
job_done(store_lane *l, store_job *j)
{
    l->held--;
    lane_gauge(l);
    job_free(j);
    /* a shedding episode ends when the queue is down to half: one line for
     * the episode, not one per refusal, nor one per slot that frees */
    if (l->shedding && l->held <= l->max / 2) {
        rt_info(rt_who(l->self), "%s queue down to %zu requests: %" PRIu64 " refused while "
                "it was full", l->name, l->held, l->episode_shed);
        l->shedding = false;
        l->episode_shed = 0;
    }
}

/* --- jobs: sending queries ----------------------------------------------- */

/* Sends the query for j. Returns PG_OK when sent, JOB_ANSWERED when j needs
 * no query (it has been answered), else pg_send's error. */
static int
send_job(rt_actor *self, store_lane *l, store_job *j)
{
    store_query *q = &l->query;
    switch (j->kind) {
    case JOB_BATCH:
        if (j->u.batch.count == 0) {
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_NONE, NULL);
            return JOB_ANSWERED;
        }
        if (!store_query_batch(q, &j->u.batch)) {
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "out of memory");
            return JOB_ANSWERED;
        }
        break;
    case JOB_JOIN:
        store_query_join(q, &j->u.join, STORE_REPLY_BYTES_MAX);
        break;
    case JOB_HISTORY:
        store_query_history(q, &j->u.history, STORE_REPLY_BYTES_MAX);
        break;
    }
    j->sent_us = chatd_wall_us();
    return pg_send(l->pg, q->sql, q->nparams, q->values);
}

/* True when l may send queries: connected, and for reads, the schema is
 * migrated (the write lane is ready). */
static bool
lane_open(const store_lane *l)
{
    return l->ready && l->st->lanes[LANE_WRITE].ready;
}

/* Starts l's queued jobs until one is in flight or its queue is empty. */
static void
pump(rt_actor *self, store_lane *l)
{
    while (lane_open(l) && !l->busy && !rt_list_empty(&l->waiting)) {
        store_job *j = RT_CONTAINER(rt_list_pop_front(&l->waiting), store_job, link);
        int r = send_job(self, l, j);
        if (r == PG_OK) {
            l->busy = j;
            return;
        }
        if (r == PG_ELOST) {
            l->busy = j;        /* terminate answers it */
            l->ready = false;
            store_crash(self, "PostgreSQL (%s connection): %s", l->name, pg_error(l->pg));
            return;
        }
        if (r == PG_ERR) {
            rt_warn(rt_who(self), "%s", pg_error(l->pg));
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
        }
        job_done(l, j);
    }
}

/* --- jobs: replies from results ------------------------------------------- */

static void
bad_rows(rt_actor *self, const store_job *j, const char *room)
{
    rt_error(rt_who(self), "%s %s: cannot build the reply from the stored rows", job_name(j),
             room);
    chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "bad stored data");
}

static void
finish_join(rt_actor *self, store_job *j, const PGresult *res)
{
    proto_join_reply rep = {0};
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    if (store_read_join(res, &j->u.join, STORE_REPLY_BYTES_MAX, &rep) &&
        proto_join_reply_encode(&rep, &buf) == PROTO_OK)
        send_record(self, j->from, PROTO_T_JOIN_REPLY, j->corr, &buf);
    else
        bad_rows(self, j, j->u.join.room);
    proto_mp_buf_free(&buf);
    proto_join_reply_free(&rep);
}

static void
finish_history(rt_actor *self, store_job *j, const PGresult *res)
{
    proto_history_reply rep = {0};
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    if (store_read_history(res, &j->u.history, STORE_REPLY_BYTES_MAX, &rep) &&
        proto_history_reply_encode(&rep, &buf) == PROTO_OK)
        send_record(self, j->from, PROTO_T_HISTORY_REPLY, j->corr, &buf);
    else
        bad_rows(self, j, j->u.history.room);
    proto_mp_buf_free(&buf);
    proto_history_reply_free(&rep);
}

/* --- the connection's callbacks (adapters/pg.h) ----------------------------- */

static void
on_ready(pg_conn *c, void *data)
{
    (void)c;
    store_lane *l = data;
    rt_actor *self = l->self;
    store_state *st = l->st;
    store_lane *w = &st->lanes[LANE_WRITE], *r = &st->lanes[LANE_READ];
    l->ready = true;
    rt_metric_set(st->up, w->ready && r->ready ? 1 : 0);
    if (l == w)
        rt_info(rt_who(self), "connected to PostgreSQL, schema version %d, %zu batches and "
                "%zu reads waiting", STORE_SCHEMA_VERSION, w->held, r->held);
    pump(self, w);
    pump(self, r);
}

static void
on_result(pg_conn *c, void *data, const PGresult *res, const char *error)
{
    (void)c;
    store_lane *l = data;
    rt_actor *self = l->self;
    store_state *st = l->st;
    store_job *j = l->busy;
    l->busy = NULL;
    if (!j)
        return;
    if (error) {
        /* a statement failed: the transaction was rolled back (autocommit) */
        rt_warn(rt_who(self), "%s for #%" PRIu64 " corr %" PRIu64 " failed: %s",
                job_name(j), j->from, j->corr, error);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
    } else {
        switch (j->kind) {
        case JOB_BATCH:
            if (j->looking_up) {
                store_finish_lookup(self, st, j, res);
            } else if (store_finish_batch(self, st, j, res)) {
                l->busy = j;    /* its second query is in flight */
                return;
            }
            break;
        case JOB_JOIN: finish_join(self, j, res); break;
        case JOB_HISTORY: finish_history(self, j, res); break;
        }
    }
    job_done(l, j);
    pump(self, l);
}

static void
on_failed(pg_conn *c, void *data, pg_failure kind, const char *why)
{
    (void)c;
    (void)kind;                 /* every failure is a crash; why says which */
    store_lane *l = data;
    l->ready = false;
    if (l->id == LANE_WRITE)
        store_crash(l->self, "%s", why);
    else
        store_crash(l->self, "%s (read connection)", why);
}

/* --- the actor ----------------------------------------------------------------- */

static int
store_init(rt_actor *self, const void *arg)
{
    store_state *st = rt_state(self);
    st->cfg = arg;
    rt_runtime *rt = rt_of(self);
    st->up = rt_metric_get(rt, RT_GAUGE, "chatd_backend_up",
                           "backend=\"" CHATD_BACKEND_POSTGRES "\"",
                           "1 when the backend is connected.");
    st->stored = rt_metric_get(rt, RT_COUNTER, "chatd_messages_stored_total", NULL,
                               "Messages newly stored in PostgreSQL.");
    st->h_stored = chatd_stage_histogram(rt, CHATD_STAGE_STORED);
    st->h_batch = rt_histogram_get(rt, "chatd_store_batch_seconds", NULL,
                                   "A batch's transaction, from sending it to PostgreSQL's "
                                   "answer (commit included).");
    st->republished = rt_metric_get(rt, RT_COUNTER, "chatd_messages_republished_total", NULL,
                                    "Messages stored before (redelivered records) published again.");
    rt_metric_set(st->up, 0);

    static const struct {
        const char *name, *labels;
        size_t max;
    } lanes[LANES] = {
        [LANE_WRITE] = { "write", "queue=\"write\"", STORE_QUEUE_MAX },
        [LANE_READ] = { "read", "queue=\"read\"", STORE_READ_QUEUE_MAX },
    };
    for (int k = 0; k < LANES; k++) {
        store_lane *l = &st->lanes[k];
        l->self = self;
        l->st = st;
        l->id = (store_lane_id)k;
        l->name = lanes[k].name;
        l->max = lanes[k].max;
        l->depth = rt_metric_get(rt, RT_GAUGE, "chatd_store_queue_depth", lanes[k].labels,
                                 "Store requests held (queued plus in flight), per queue.");
        l->shed = rt_metric_get(rt, RT_COUNTER, "chatd_store_shed_total", lanes[k].labels,
                                "Store requests refused because their queue was full.");
        lane_gauge(l);
        /* init must not crash: a connect that fails at once is reported
         * later, from the handler (pg_timer) */
        pg_options o = {
            .conninfo = st->cfg && st->cfg->pg_dsn ? st->cfg->pg_dsn : "",
            .setup_sql = k == LANE_WRITE ? store_migration_sql : NULL,
            .setup_name = k == LANE_WRITE ? "schema migration" : "read connection setup",
            .connect_timeout_ms = STORE_CONNECT_TIMEOUT_MS,
            /* nobody waits longer for a reply: the requesters answer unavailable */
            .query_timeout_ms = st->cfg ? st->cfg->request_timeout_ms : 0,
            .timer_type = CHATD_T_TICK,
            .cb = { .on_ready = on_ready, .on_result = on_result, .on_failed = on_failed },
            .data = l,
        };
        l->pg = pg_open(self, &o);
        if (!l->pg) {
            rt_error(rt_who(self), "cannot start connecting to PostgreSQL: out of memory");
            return RT_ERR;
        }
    }
    return RT_OK;
}

/* Refuses a request because l is full; says so once per episode. */
static void
shed(rt_actor *self, store_lane *l, rt_id from, uint64_t corr)
{
    rt_metric_add(l->shed, 1);
    if (!l->shedding)
        rt_warn(rt_who(self), "%s queue full (%zu requests): refusing requests (counted in "
                "chatd_store_shed_total) until it is down to half", l->name, l->held);
    l->shedding = true;
    l->episode_shed++;
    chatd_reply_ack(self, from, corr, PROTO_ACK_UNAVAILABLE, "store overloaded");
}

static void
enqueue(rt_actor *self, store_state *st, store_job *j)
{
    store_lane *l = job_lane(st, j->kind);
    if (l->held >= l->max) {
        shed(self, l, j->from, j->corr);
        job_free(j);
        return;
    }
    l->held++;
    lane_gauge(l);
    rt_list_push_back(&l->waiting, &j->link);
    pump(self, l);
}

/* Decodes a request into a new job; answers and returns NULL when it cannot. */
static store_job *
job_new(rt_actor *self, const proto_env *msg)
{
    store_job *j = calloc(1, sizeof(*j));
    if (!j) {
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return NULL;
    }
    j->from = msg->from;
    j->corr = msg->corr;
    proto_err e;
    switch (msg->type) {
    case PROTO_T_MESSAGE_BATCH:
        j->kind = JOB_BATCH;
        e = proto_batch_decode(msg->payload, msg->payload_len, &j->u.batch);
        break;
    case PROTO_T_JOIN_REQ:
        j->kind = JOB_JOIN;
        e = proto_join_req_decode(msg->payload, msg->payload_len, &j->u.join);
        break;
    case PROTO_T_HISTORY_REQ:
        j->kind = JOB_HISTORY;
        e = proto_history_req_decode(msg->payload, msg->payload_len, &j->u.history);
        break;
    default:
        rt_warn(rt_who(self), "unexpected message type %" PRIu32 " from #%" PRIu64,
                msg->type, msg->from);
        free(j);
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST,
                        "unexpected message type");
        return NULL;
    }
    if (e != PROTO_OK) {
        rt_warn(rt_who(self), "malformed %s from #%" PRIu64 " corr %" PRIu64 ": %s",
                proto_type_name(msg->type), msg->from, msg->corr, proto_strerror(e));
        free(j);                /* a failed decode leaves nothing to free */
        char why[128];
        snprintf(why, sizeof(why), "malformed %s: %s", proto_type_name(msg->type),
                 proto_strerror(e));
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, why);
        return NULL;
    }
    return j;
}

static int
store_handle(rt_actor *self, const proto_env *msg)
{
    store_state *st = rt_state(self);
    if (msg->type == CHATD_T_TICK) {
        if (msg->corr & PUB_TIMER)
            store_pub_timer(self, st, msg->corr);
        else if (!pg_timer(st->lanes[LANE_WRITE].pg, msg))
            pg_timer(st->lanes[LANE_READ].pg, msg);
        return RT_OK;
    }
    if (msg->type == RT_T_EXIT)
        return RT_OK;
    if (msg->type == PROTO_T_ACK) {
        store_pub_ack(self, st, msg);
        return RT_OK;
    }
    /* a read that cannot be queued is refused undecoded: shedding is cheap */
    store_lane *r = &st->lanes[LANE_READ];
    if ((msg->type == PROTO_T_JOIN_REQ || msg->type == PROTO_T_HISTORY_REQ) && r->held >= r->max) {
        shed(self, r, msg->from, msg->corr);
        return RT_OK;
    }
    store_job *j = job_new(self, msg);
    if (j)
        enqueue(self, st, j);
    return RT_OK;
}

static void
store_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    store_state *st = rt_state(self);
    /* Answer what we still hold, so senders retry now rather than at their
     * deadline. */
    for (int k = 0; k < LANES; k++) {
        store_lane *l = &st->lanes[k];
        store_job *busy = l->busy;
        l->busy = NULL;
        if (busy) {
            chatd_reply_ack(self, busy->from, busy->corr, PROTO_ACK_UNAVAILABLE,
                            "store restarting");
            job_free(busy);
        }
        rt_link *link;
        while ((link = rt_list_pop_front(&l->waiting))) {
            store_job *j = RT_CONTAINER(link, store_job, link);
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
            job_free(j);
        }
        l->held = 0;
        lane_gauge(l);
        pg_free_exited(l->pg);  /* the runtime has freed its watcher and timers */
        l->pg = NULL;
        store_query_free(&l->query);
    }
    store_pubs_abandon(self, st);
    rt_metric_set(st->up, 0);
}

const rt_actor_spec chatd_store_spec = {
    .name = CHATD_STORE,
    .state_size = sizeof(store_state),
    .init = store_init,
    .handle = store_handle,
    .terminate = store_terminate,
    /* room for a read storm's requests beside the batches: each read past
     * the read queue's STORE_READ_QUEUE_MAX is refused as soon as it is
     * taken, so the mailbox drains fast and the consumer's batch finds room */
    .mailbox_cap = STORE_MAILBOX_CAP,
    .overflow = RT_OVERFLOW_REJECT,
    .batch = 64,
};
