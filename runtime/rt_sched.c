/*
 * Scheduling and sending.
 *
 * A runnable actor (messages queued, not suspended, not exiting) is on the
 * run queue exactly once. After each poll, a check watcher of the lowest
 * priority (so it runs after that iteration's I/O and timer callbacks) gives
 * every actor that was runnable when it started one turn of at most
 * spec->batch messages; an actor with messages left goes to the back of the
 * queue. While the queue or the reap list is not empty, an idle watcher keeps
 * the loop from blocking in poll.
 */
#include "runtime/rt_internal.h"

#include <inttypes.h>

#include "runtime/log.h"

/* --- the run queue ---------------------------------------------------------- */

void
rt_runq_push(rt_runtime *rt, rt_actor *a)
{
    if (a->in_runq || a->exiting || a->suspended)
        return;
    a->in_runq = true;
    rt_list_push_back(&rt->runq, &a->runq_link);
}

void
rt_runq_remove(rt_runtime *rt, rt_actor *a)
{
    if (!a->in_runq)
        return;
    rt_list_remove(&rt->runq, &a->runq_link);
    a->in_runq = false;
}

void
rt_sched_wake(rt_runtime *rt)
{
    if (!ev_is_active(&rt->idle_w))
        ev_idle_start(rt->loop, &rt->idle_w);
}

/* --- fault delays --------------------------------------------------------------- */

static void
on_delay_end(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_actor *a = w->data;
    a->suspended = false;
    if (rt_has_work(a))
        rt_runq_push(a->rt, a);
}

void
rt_delay_init(rt_actor *a)
{
    ev_timer_init(&a->delay_w, on_delay_end, 0., 0.);
    a->delay_w.data = a;
}

void
rt_delay_stop(rt_actor *a)
{
    ev_timer_stop(a->rt->loop, &a->delay_w);
}

/* --- turns ---------------------------------------------------------------------- */

/* What the injector says about the head of a's mailbox. */
typedef enum head_verdict {
    HEAD_HANDLE,        /* handle it */
    HEAD_DROPPED,       /* it was dropped: go on with the next */
    HEAD_STOP,          /* the turn ends: a crashed or is suspended */
} head_verdict;

static head_verdict
check_head(rt_runtime *rt, rt_actor *a)
{
    if (a->skip_fault)
        return HEAD_HANDLE;     /* it passed once, before a delay */
    double delay = 0;
    switch (rt_faults_check(rt->faults, a->stats->name, a->id, "recv", &delay)) {
    case RT_FAULT_CRASH:
        rt_exit(a, RT_EXIT_CRASH, "injected fault at recv");
        return HEAD_STOP;
    case RT_FAULT_DELAY:
        a->suspended = true;
        a->skip_fault = true;
        ev_timer_set(&a->delay_w, delay / 1e3, 0.);
        ev_timer_start(rt->loop, &a->delay_w);
        return HEAD_STOP;
    case RT_FAULT_DROP:
        rt_msg_free(rt_mailbox_pop(&a->mb));
        a->stats->s.fault_drops++;
        return HEAD_DROPPED;
    case RT_FAULT_NONE:
        break;
    }
    return HEAD_HANDLE;
}

/* Decodes m and hands it to a's handler; frees m. */
static void
deliver(rt_actor *a, rt_msg *m)
{
    proto_env env;
    proto_err perr = proto_env_decode(m->data, m->len, &env);
    if (perr != PROTO_OK) {
        rt_msg_free(m);
        rt_exit(a, RT_EXIT_CRASH, "undecodable envelope: %s", proto_strerror(perr));
        return;
    }
    int r = a->spec->handle(a, &env);
    a->stats->s.handled++;
    rt_msg_free(m);
    if (r == RT_STOP)
        rt_exit(a, RT_EXIT_NORMAL, NULL);
    else if (r != RT_OK)
        rt_exit(a, RT_EXIT_CRASH, "handler failed on message type %" PRIu32, env.type);
}

/* One turn of a: exit signals first, then at most spec->batch messages
 * (dropped ones count), each past the fault injector. */
static void
run_turn(rt_runtime *rt, rt_actor *a)
{
    unsigned budget = a->spec->batch ? a->spec->batch : RT_BATCH_DEFAULT;

    while (budget > 0 && !a->exiting && !a->suspended && rt_has_work(a)) {
        rt_msg *m;
        if (a->sys.depth) {
            m = rt_mailbox_pop(&a->sys);
        } else {
            head_verdict v = check_head(rt, a);
            if (v == HEAD_STOP)
                return;
            if (v == HEAD_DROPPED) {
                budget--;
                continue;
            }
            a->skip_fault = false;
            m = rt_mailbox_pop(&a->mb);
        }
        budget--;
        deliver(a, m);
    }
    if (a->spec->after_turn && !a->exiting)
        a->spec->after_turn(a);
    if (rt_has_work(a))
        rt_runq_push(rt, a);
}

static void
on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_runtime *rt = w->data;

    /* One turn for each actor runnable now; those made runnable during the
     * round (or with messages left) wait for the next loop iteration. */
    rt_link *last = rt->runq.tail;
    for (rt_link *l; (l = rt->runq.head);) {
        rt_actor *a = RT_CONTAINER(l, rt_actor, runq_link);
        rt_runq_remove(rt, a);
        run_turn(rt, a);
        if (l == last)
            break;
    }
    rt_reap_all(rt);
}

static void
on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    rt_runtime *rt = w->data;
    rt_reap_all(rt);
    if (!rt_list_empty(&rt->runq)) {
        if (!ev_is_active(&rt->idle_w))
            ev_idle_start(loop, &rt->idle_w);
    } else if (ev_is_active(&rt->idle_w)) {
        ev_idle_stop(loop, &rt->idle_w);
    }
}

static void
on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* Nothing to do: being active keeps poll from blocking while actors
     * have messages; on_check does the work. */
    (void)loop;
    (void)w;
    (void)revents;
}

void
rt_sched_start(rt_runtime *rt)
{
    ev_prepare_init(&rt->prepare_w, on_prepare);
    ev_check_init(&rt->check_w, on_check);
    ev_idle_init(&rt->idle_w, on_idle);
    rt->prepare_w.data = rt->check_w.data = rt->idle_w.data = rt;
    ev_set_priority(&rt->check_w, EV_MINPRI);
    ev_prepare_start(rt->loop, &rt->prepare_w);
    ev_check_start(rt->loop, &rt->check_w);
}

void
rt_sched_stop(rt_runtime *rt)
{
    ev_prepare_stop(rt->loop, &rt->prepare_w);
    ev_check_stop(rt->loop, &rt->check_w);
    ev_idle_stop(rt->loop, &rt->idle_w);
}

/* --- sending ----------------------------------------------------------------------- */

/* Queues m in a's mailbox (a is live); always takes m. */
static int
enqueue(rt_runtime *rt, rt_actor *a, rt_msg *m)
{
    switch (rt_mailbox_push(&a->mb, m)) {
    case RT_PUSH_REFUSED:
        a->stats->s.overflows++;
        rt_msg_free(m);
        return RT_EFULL;
    case RT_PUSH_SHED:
        a->stats->s.overflows++;
        a->stats->s.shed++;
        a->skip_fault = false;      /* the head that passed the injector is gone */
        break;
    case RT_PUSH_OK:
        break;
    }
    rt_note_depth(a);
    rt_runq_push(rt, a);
    return RT_OK;
}

int
rt_send_msg(rt_runtime *rt, rt_id to, rt_msg *m)
{
    rt_actor *a = rt_table_get(rt, to);
    if (!a || a->exiting) {
        rt_msg_free(m);
        return RT_ENOACTOR;
    }
    return enqueue(rt, a, m);
}

int
rt_send(rt_runtime *rt, rt_id from, rt_id to, uint32_t type, uint64_t corr,
        const void *payload, size_t len)
{
    /* One lookup: encoding cannot make the receiver exit. */
    rt_actor *a = rt_table_get(rt, to);
    if (!a || a->exiting)
        return RT_ENOACTOR;
    proto_env env = { .type = type, .from = from, .to = to, .corr = corr,
                      .payload = payload, .payload_len = len };
    rt_msg *m = rt_msg_new(&env);
    if (!m)
        return len > PROTO_ENV_PAYLOAD_MAX ? RT_EINVAL : RT_ENOMEM;
    return enqueue(rt, a, m);
}

int
rt_send_named(rt_runtime *rt, rt_id from, const char *to, uint32_t type, uint64_t corr,
              const void *payload, size_t len)
{
    rt_id id = rt_whereis(rt, to);
    return id ? rt_send(rt, from, id, type, corr, payload, len) : RT_ENOACTOR;
}
