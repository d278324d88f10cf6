/*
 * Timers: rt_send_after queues a message for the calling actor after a
 * delay. Each timer owns its message until it fires; an actor's pending
 * timers are on its list and freed when it exits.
 */
#include "runtime/rt_internal.h"

#include <stdlib.h>

typedef struct rt_timer {
    ev_timer w;                 /* first: the watcher pointer is the timer */
    rt_actor *owner;
    rt_timer_id id;
    rt_msg *msg;
    rt_link link;               /* in owner->timers */
} rt_timer;

static void
free_timer(rt_actor *a, rt_timer *t)
{
    ev_timer_stop(a->rt->loop, &t->w);
    rt_list_remove(&a->timers, &t->link);
    rt_msg_free(t->msg);
    free(t);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_timer *t = (rt_timer *)w;
    rt_actor *a = t->owner;
    rt_list_remove(&a->timers, &t->link);
    rt_mailbox_push_force(&a->mb, t->msg);
    rt_note_depth(a);
    free(t);
    rt_runq_push(a->rt, a);
}

rt_timer_id
rt_send_after(rt_actor *self, double ms, uint32_t type, uint64_t corr,
              const void *payload, size_t len)
{
    rt_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return 0;
    proto_env env = { .type = type, .from = self->id, .to = self->id, .corr = corr,
                      .payload = payload, .payload_len = len };
    if (!(t->msg = rt_msg_new(&env))) {
        free(t);
        return 0;
    }
    t->owner = self;
    t->id = self->rt->next_timer_id++;
    rt_list_push_front(&self->timers, &t->link);
    ev_timer_init(&t->w, on_timer, ms > 0 ? ms / 1e3 : 0., 0.);
    ev_timer_start(self->rt->loop, &t->w);
    return t->id;
}

bool
rt_cancel_timer(rt_actor *self, rt_timer_id timer)
{
    for (rt_link *l = self->timers.head; l; l = l->next) {
        rt_timer *t = RT_CONTAINER(l, rt_timer, link);
        if (t->id == timer) {
            free_timer(self, t);
            return true;
        }
    }
    return false;
}

void
rt_timers_free(rt_actor *a)
{
    while (a->timers.head)
        free_timer(a, RT_CONTAINER(a->timers.head, rt_timer, link));
}
