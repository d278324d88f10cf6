/*
 * I/O watchers: rt_io_start watches a file descriptor on the runtime's loop
 * for an actor. The watchers are on the actor's list and stopped and freed
 * when it exits; the descriptors stay open (they are the actor's).
 */
#include "runtime/rt_internal.h"

#include <stdlib.h>

struct rt_io {
    ev_io w;                    /* first: the watcher pointer is the rt_io */
    rt_actor *owner;
    rt_io_cb cb;
    void *data;
    rt_link link;               /* in owner->ios */
};

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    rt_io *io = (rt_io *)w;
    rt_actor *a = io->owner;
    if (a->exiting)
        return;
    if (io->cb(a, io, w->fd, revents) != RT_OK)
        rt_crash(a, "I/O callback failed on fd %d", w->fd);
}

rt_io *
rt_io_start(rt_actor *self, int fd, int events, rt_io_cb cb, void *data)
{
    rt_io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->owner = self;
    io->cb = cb;
    io->data = data;
    rt_list_push_front(&self->ios, &io->link);
    ev_io_init(&io->w, on_io, fd, events);
    if (events)
        ev_io_start(self->rt->loop, &io->w);
    return io;
}

void
rt_io_set(rt_io *io, int events)
{
    struct ev_loop *loop = io->owner->rt->loop;
    if ((io->w.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&io->w))
        return;
    ev_io_stop(loop, &io->w);
    ev_io_set(&io->w, io->w.fd, events);
    if (events)
        ev_io_start(loop, &io->w);
}

void *
rt_io_data(const rt_io *io)
{
    return io->data;
}

void
rt_io_stop(rt_actor *self, rt_io *io)
{
    ev_io_stop(self->rt->loop, &io->w);
    rt_list_remove(&self->ios, &io->link);
    free(io);
}

void
rt_ios_free(rt_actor *a)
{
    while (a->ios.head)
        rt_io_stop(a, RT_CONTAINER(a->ios.head, rt_io, link));
}
