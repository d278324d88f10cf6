/*
 * The store actor (see store.h for its contract).
 *
 * One PostgreSQL connection (adapters/pg.h) whose setup query is the schema
 * migration (actors/store_sql.c), so "ready" means connected and migrated.
 * Requests become jobs in a FIFO; one job's query is in flight at a time, and
 * its result becomes the reply. The connection's failures crash the actor.
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

static void
job_done(store_state *st, store_job *j)
{
    st->held--;
    job_free(j);
}

/* --- jobs: sending queries ----------------------------------------------- */

/* Sends the query for j. Returns PG_OK when sent, JOB_ANSWERED when j needs
 * no query (it has been answered), else pg_send's error. */
static int
send_job(rt_actor *self, store_state *st, store_job *j)
{
    store_query *q = &st->query;
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
        store_query_join(q, &j->u.join);
        break;
    case JOB_HISTORY:
        store_query_history(q, &j->u.history);
        break;
    }
    return pg_send(st->pg, q->sql, q->nparams, q->values);
}

/* Starts queued jobs until one is in flight or the queue is empty. */
static void
pump(rt_actor *self, store_state *st)
{
    while (st->ready && !st->busy && !rt_list_empty(&st->waiting)) {
        store_job *j = RT_CONTAINER(rt_list_pop_front(&st->waiting), store_job, link);
        int r = send_job(self, st, j);
        if (r == PG_OK) {
            st->busy = j;
            return;
        }
        if (r == PG_ELOST) {
            st->busy = j;       /* terminate answers it */
            st->ready = false;
            store_crash(self, "%s", pg_error(st->pg));
            return;
        }
        if (r == PG_ERR) {
            rt_warn(rt_who(self), "%s", pg_error(st->pg));
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
        }
        job_done(st, j);
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
    if (store_read_join(res, &j->u.join, &rep) && proto_join_reply_encode(&rep, &buf) == PROTO_OK)
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
    if (store_read_history(res, &j->u.history, &rep) &&
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
    rt_actor *self = data;
    store_state *st = rt_state(self);
    st->ready = true;
    rt_metric_set(st->up, 1);
    rt_info(rt_who(self), "connected to PostgreSQL, schema version %d, %zu requests waiting",
            STORE_SCHEMA_VERSION, st->held);
    pump(self, st);
}

static void
on_result(pg_conn *c, void *data, const PGresult *res, const char *error)
{
    (void)c;
    rt_actor *self = data;
    store_state *st = rt_state(self);
    store_job *j = st->busy;
    st->busy = NULL;
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
                st->busy = j;   /* its second query is in flight */
                return;
            }
            break;
        case JOB_JOIN: finish_join(self, j, res); break;
        case JOB_HISTORY: finish_history(self, j, res); break;
        }
    }
    job_done(st, j);
    pump(self, st);
}

static void
on_failed(pg_conn *c, void *data, pg_failure kind, const char *why)
{
    (void)c;
    (void)kind;                 /* every failure is a crash; why says which */
    rt_actor *self = data;
    store_state *st = rt_state(self);
    st->ready = false;
    store_crash(self, "%s", why);
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
    st->republished = rt_metric_get(rt, RT_COUNTER, "chatd_messages_republished_total", NULL,
                                    "Messages stored before (redelivered records) published again.");
    rt_metric_set(st->up, 0);

    /* init must not crash: a connect that fails at once is reported later,
     * from the handler (pg_timer) */
    pg_options o = {
        .conninfo = st->cfg && st->cfg->pg_dsn ? st->cfg->pg_dsn : "",
        .setup_sql = store_migration_sql,
        .setup_name = "schema migration",
        .connect_timeout_ms = STORE_CONNECT_TIMEOUT_MS,
        /* nobody waits longer for a reply: the requesters answer unavailable */
        .query_timeout_ms = st->cfg ? st->cfg->request_timeout_ms : 0,
        .timer_type = CHATD_T_TICK,
        .cb = { .on_ready = on_ready, .on_result = on_result, .on_failed = on_failed },
        .data = self,
    };
    st->pg = pg_open(self, &o);
    if (!st->pg) {
        rt_error(rt_who(self), "cannot start connecting to PostgreSQL: out of memory");
        return RT_ERR;
    }
    return RT_OK;
}

static void
enqueue(rt_actor *self, store_state *st, store_job *j)
{
    if (st->held >= STORE_QUEUE_MAX) {
        rt_warn(rt_who(self), "queue full (%zu requests): refusing corr %" PRIu64 " from #%"
                PRIu64, st->held, j->corr, j->from);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "store overloaded");
        job_free(j);
        return;
    }
    st->held++;
    rt_list_push_back(&st->waiting, &j->link);
    pump(self, st);
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
        else
            pg_timer(st->pg, msg);
        return RT_OK;
    }
    if (msg->type == RT_T_EXIT)
        return RT_OK;
    if (msg->type == PROTO_T_ACK) {
        store_pub_ack(self, st, msg);
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
    store_job *busy = st->busy;
    st->busy = NULL;
    if (busy) {
        chatd_reply_ack(self, busy->from, busy->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        job_free(busy);
    }
    rt_link *l;
    while ((l = rt_list_pop_front(&st->waiting))) {
        store_job *j = RT_CONTAINER(l, store_job, link);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        job_free(j);
    }
    st->held = 0;
    store_pubs_abandon(self, st);
    pg_free_exited(st->pg);     /* the runtime has freed its watcher and timers */
    st->pg = NULL;
    store_query_free(&st->query);
    rt_metric_set(st->up, 0);
}

const rt_actor_spec chatd_store_spec = {
    .name = CHATD_STORE,
    .state_size = sizeof(store_state),
    .init = store_init,
    .handle = store_handle,
    .terminate = store_terminate,
    .mailbox_cap = 4096,
    .overflow = RT_OVERFLOW_REJECT,
    .batch = 64,
};
