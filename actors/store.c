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
 * second publish is harmless and a missing one is not.
 */
#include "actors/store.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "actors/chatd.h"
#include "actors/store_sql.h"
#include "adapters/pg.h"
#include "proto/record.h"
#include "runtime/list.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

typedef enum job_kind {
    JOB_BATCH,
    JOB_JOIN,
    JOB_HISTORY,
} job_kind;

typedef struct store_job {
    rt_link link;               /* in store_state.waiting */
    job_kind kind;
    bool looking_up;            /* a batch's second query: its messages stored before */
    proto_msg *fresh;           /* a batch's messages stored anew (shallow) */
    size_t nfresh;
    rt_id from;
    uint64_t corr;
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

typedef struct store_state {
    const chatd_config *cfg;
    pg_conn *pg;
    bool ready;                 /* connected and migrated, until it fails */

    rt_list waiting;            /* store_job, oldest first */
    size_t held;                /* waiting + busy */
    store_job *busy;            /* its query is in flight */
    store_query query;          /* the parameters' buffers, reused */
    rt_list pubs;               /* store_pub, oldest first */
    uint64_t next_pub;

    rt_metric *up;
    rt_metric *stored;
    rt_metric *republished;
} store_state;

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

/* --- batches: publishing --------------------------------------------------- */

static void
pub_free(store_state *st, store_pub *p)
{
    rt_list_remove(&st->pubs, &p->link);
    free(p->enc);
    free(p);
}

/* Answers the consumer for p and forgets it. */
static void
pub_done(rt_actor *self, store_state *st, store_pub *p, proto_ack_code code, const char *why)
{
    if (p->timer)
        rt_cancel_timer(self, p->timer);
    chatd_reply_ack(self, p->from, p->corr, code, why);
    pub_free(st, p);
}

/* Hands p's batch to the fanout and waits (at most the request timeout) for
 * its confirmation. */
static void
pub_send(rt_actor *self, store_state *st, store_pub *p)
{
    int s = rt_send_named(rt_of(self), rt_self(self), CHATD_FANOUT, PROTO_T_MESSAGE_BATCH,
                          p->id, p->enc, p->enc_len);
    free(p->enc);
    p->enc = NULL;
    if (s != RT_OK) {
        rt_warn(rt_who(self), "fanout unreachable (%d): batch %" PRIu64 " not published", s,
                p->corr);
        pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, "fanout unavailable");
        return;
    }
    p->timer = rt_send_after(self, st->cfg ? st->cfg->request_timeout_ms : 5000, CHATD_T_TICK,
                             PUB_TIMER | p->id, NULL, 0);
    if (!p->timer)
        pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, "out of memory");
}

/* Publishes msgs[0..n) of batch job j (stored: committed) through the fanout;
 * j's requester is answered once the fanout confirms. The fault point
 * "publish" sits between the commit and the publish: crash there, or delay
 * the publish (so a test can kill the node in between). */
static void
publish(rt_actor *self, store_state *st, store_job *j, const proto_msg *msgs, size_t n)
{
    if (n == 0) {
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_NONE, NULL);
        return;
    }
    store_pub *p = calloc(1, sizeof(*p));
    proto_batch out = { .msgs = (proto_msg *)msgs, .count = n };
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    if (!p || proto_batch_encode(&out, &buf) != PROTO_OK ||
        proto_mp_buf_release(&buf, &p->enc, &p->enc_len) != PROTO_OK) {
        proto_mp_buf_free(&buf);
        free(p);
        /* committed: the consumer's retry finds the messages and publishes them */
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return;
    }
    p->id = ++st->next_pub;
    p->from = j->from;
    p->corr = j->corr;
    rt_list_push_back(&st->pubs, &p->link);
    double delay = 0;
    switch (rt_fault_point(self, "publish", &delay)) {
    case RT_FAULT_CRASH:
        rt_crash(self, "fault injected before publishing batch %" PRIu64, j->corr);
        return;                 /* terminate answers p */
    case RT_FAULT_DELAY:
        p->timer = rt_send_after(self, delay, CHATD_T_TICK, PUB_TIMER | PUB_SEND | p->id,
                                 NULL, 0);
        if (!p->timer)
            pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, "out of memory");
        return;
    default:
        pub_send(self, st, p);
    }
}

static store_pub *
pub_find(store_state *st, uint64_t id)
{
    for (rt_link *l = st->pubs.head; l; l = l->next) {
        store_pub *p = RT_CONTAINER(l, store_pub, link);
        if (p->id == id)
            return p;
    }
    return NULL;
}

/* The fanout's confirmation (PROTO_T_ACK, corr = the pub's id). */
static void
on_pub_ack(rt_actor *self, store_state *st, const proto_env *msg)
{
    store_pub *p = pub_find(st, msg->corr);
    if (!p)
        return;                 /* late: the consumer was answered already */
    proto_ack ack;
    if (proto_ack_decode(msg->payload, msg->payload_len, &ack) != PROTO_OK)
        pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, "bad ack from the fanout");
    else if (!ack.ok)
        pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, ack.msg);
    else
        pub_done(self, st, p, PROTO_ACK_NONE, NULL);
}

static void
on_pub_timer(rt_actor *self, store_state *st, uint64_t corr)
{
    store_pub *p = pub_find(st, corr & ~(PUB_TIMER | PUB_SEND));
    if (!p)
        return;
    p->timer = 0;
    if (corr & PUB_SEND) {
        pub_send(self, st, p);
        return;
    }
    rt_warn(rt_who(self), "fanout did not confirm batch %" PRIu64 " within %d ms", p->corr,
            st->cfg ? st->cfg->request_timeout_ms : 5000);
    pub_done(self, st, p, PROTO_ACK_UNAVAILABLE, "publish not confirmed");
}

/* --- batches: results ------------------------------------------------------- */

/* The batch's stored rows are in. Returns true when a second query (the
 * messages stored before) was sent for j, false when j is answered. */
static bool
finish_batch(rt_actor *self, store_state *st, store_job *j, const PGresult *res)
{
    proto_batch *b = &j->u.batch;
    int rows = res ? PQntuples(res) : 0;
    j->fresh = calloc((size_t)rows + 1, sizeof(*j->fresh));
    if (!j->fresh) {
        /* committed, but we cannot say what: the retry finds them stored */
        rt_error(rt_who(self), "out of memory after storing batch %" PRIu64, j->corr);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "out of memory");
        return false;
    }
    size_t bad;
    j->nfresh = store_read_batch(res, b, j->fresh, &bad);
    if (bad)
        rt_error(rt_who(self), "chatd_store_batch returned %zu bad rows", bad);
    rt_metric_add(st->stored, (double)j->nfresh);
    rt_debug(rt_who(self), "batch %" PRIu64 ": %zu messages, %zu new", j->corr, b->count,
             j->nfresh);
    if (j->nfresh + bad >= b->count) {
        publish(self, st, j, j->fresh, j->nfresh);
        return false;
    }
    /* some were stored before: find them (seq stays 0 for those) */
    size_t *ords = malloc(b->count * sizeof(*ords)), n = 0;
    for (size_t i = 0; ords && i < b->count; i++)
        if (b->msgs[i].seq == 0)
            ords[n++] = i + 1;
    bool sent = ords && store_query_stored(&st->query, b, ords, n) &&
                pg_send(st->pg, st->query.sql, st->query.nparams, st->query.values) == PG_OK;
    free(ords);
    if (!sent) {
        rt_warn(rt_who(self), "batch %" PRIu64 ": cannot look up its messages stored before: %s",
                j->corr, pg_error(st->pg));
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
        return false;
    }
    j->looking_up = true;
    return true;
}

/* The messages of the batch stored before are in: publish them (older,
 * first) with the fresh ones. */
static void
finish_lookup(rt_actor *self, store_state *st, store_job *j, const PGresult *res)
{
    int rows = res ? PQntuples(res) : 0;
    proto_msg *all = calloc((size_t)rows + j->nfresh + 1, sizeof(*all));
    if (!all) {
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return;
    }
    size_t bad;
    size_t n = store_read_stored(res, &j->u.batch, j->fresh, j->nfresh, all, &bad);
    if (bad)
        rt_error(rt_who(self), "the stored-messages lookup returned %zu bad rows", bad);
    rt_metric_add(st->republished, (double)n);
    rt_debug(rt_who(self), "batch %" PRIu64 ": %zu stored before, published again", j->corr, n);
    for (size_t i = 0; i < j->nfresh; i++)
        all[n + i] = j->fresh[i];
    publish(self, st, j, all, n + j->nfresh);
    free(all);                  /* shallow: the job and res own the strings */
}

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
                finish_lookup(self, st, j, res);
            } else if (finish_batch(self, st, j, res)) {
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
            on_pub_timer(self, st, msg->corr);
        else
            pg_timer(st->pg, msg);
        return RT_OK;
    }
    if (msg->type == RT_T_EXIT)
        return RT_OK;
    if (msg->type == PROTO_T_ACK) {
        on_pub_ack(self, st, msg);
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
    while ((l = rt_list_pop_front(&st->pubs))) {
        store_pub *p = RT_CONTAINER(l, store_pub, link);
        /* maybe published, maybe not: the retry publishes again */
        chatd_reply_ack(self, p->from, p->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        free(p->enc);
        free(p);
    }
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
