/*
 * The store actor's batches (see store_private.h): a batch's stored rows, the
 * lookup of the records it held that were stored before, and publishing
 * through the fanout, whose confirmation is what answers the consumer.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "actors/chatd.h"
#include "actors/store_private.h"
#include "runtime/log.h"

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
void
store_pub_ack(rt_actor *self, store_state *st, const proto_env *msg)
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

void
store_pub_timer(rt_actor *self, store_state *st, uint64_t corr)
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
bool
store_finish_batch(rt_actor *self, store_state *st, store_job *j, const PGresult *res)
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
    rt_histogram_observe(st->h_batch, (double)(chatd_wall_us() - j->sent_us) / 1e6);
    if (bad)
        rt_error(rt_who(self), "chatd_store_batch returned %zu bad rows", bad);
    rt_metric_add(st->stored, (double)j->nfresh);
    for (size_t i = 0; i < j->nfresh; i++)
        chatd_stage_observe(st->h_stored, j->fresh[i].rx_us);
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
    store_lane *w = &st->lanes[LANE_WRITE];
    bool sent = ords && store_query_stored(&w->query, b, ords, n) &&
                pg_send(w->pg, w->query.sql, w->query.nparams, w->query.values) == PG_OK;
    free(ords);
    if (!sent) {
        rt_warn(rt_who(self), "batch %" PRIu64 ": cannot look up its messages stored before: %s",
                j->corr, pg_error(w->pg));
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
        return false;
    }
    j->looking_up = true;
    return true;
}

/* The messages of the batch stored before are in: publish them (older,
 * first) with the fresh ones. */
void
store_finish_lookup(rt_actor *self, store_state *st, store_job *j, const PGresult *res)
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

void
store_pubs_abandon(rt_actor *self, store_state *st)
{
    rt_link *l;
    while ((l = rt_list_pop_front(&st->pubs))) {
        store_pub *p = RT_CONTAINER(l, store_pub, link);
        /* maybe published, maybe not: the retry publishes again */
        chatd_reply_ack(self, p->from, p->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        free(p->enc);
        free(p);
    }
}
