/*
 * The runtime's lifecycle (create, run, shutdown, destroy, signals), its
 * registered names and the stats it keeps per actor name. The actors
 * themselves are in rt_actor.c, their scheduling in rt_sched.c, timers and
 * I/O watchers in rt_timer.c and rt_io.c (runtime/rt_internal.h).
 */
#include "runtime/rt_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/grow.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

/* --- names ---------------------------------------------------------------- */

rt_name *
rt_name_find(rt_runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->nnames; i++)
        if (strcmp(rt->names[i].name, name) == 0)
            return &rt->names[i];
    return NULL;
}

bool
rt_name_add(rt_runtime *rt, const char *name, rt_id id)
{
    if (!rt_grow((void **)&rt->names, &rt->names_cap, rt->nnames + 1, sizeof(*rt->names)))
        return false;
    char *copy = strdup(name);
    if (!copy)
        return false;
    rt->names[rt->nnames++] = (rt_name){ copy, id };
    return true;
}

void
rt_name_remove(rt_runtime *rt, rt_actor *a)
{
    if (!a->name)
        return;
    rt_name *e = rt_name_find(rt, a->name);
    if (e && e->id == a->id) {
        free(e->name);
        *e = rt->names[--rt->nnames];
    }
}

rt_id
rt_whereis(rt_runtime *rt, const char *name)
{
    rt_name *e = rt_name_find(rt, name);
    return e ? e->id : 0;
}

/* --- stats ---------------------------------------------------------------- */

static rt_stats_entry *
stats_find(rt_runtime *rt, const char *name)
{
    for (rt_link *l = rt->stats.head; l; l = l->next) {
        rt_stats_entry *e = RT_CONTAINER(l, rt_stats_entry, link);
        if (strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

rt_stats_entry *
rt_stats_for(rt_runtime *rt, const char *name)
{
    rt_stats_entry *e = stats_find(rt, name);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->s.name = e->name;
    rt_list_push_back(&rt->stats, &e->link);
    return e;
}

/* Fills in the gauges of e from the live instances. */
static const rt_stats *
stats_refresh(rt_runtime *rt, rt_stats_entry *e)
{
    e->s.depth = 0;
    e->s.alive = false;
    rt_map_entry *m;
    for (size_t pos = 0; rt_map_next(&rt->actors, &pos, &m);) {
        rt_actor *a = m->value;
        if (a->stats == e && !a->exiting) {
            e->s.depth += a->mb.depth;
            e->s.alive = true;
        }
    }
    return &e->s;
}

const rt_stats *
rt_stats_get(rt_runtime *rt, const char *name)
{
    rt_stats_entry *e = stats_find(rt, name);
    return e ? stats_refresh(rt, e) : NULL;
}

void
rt_stats_foreach(rt_runtime *rt, void (*fn)(const rt_stats *s, void *ud), void *ud)
{
    for (rt_link *l = rt->stats.head; l; l = l->next)
        fn(stats_refresh(rt, RT_CONTAINER(l, rt_stats_entry, link)), ud);
}

void
rt_stats_count_restart(rt_runtime *rt, const char *name)
{
    rt_stats_entry *e = rt_stats_for(rt, name);
    if (e)
        e->s.restarts++;
}

size_t
rt_actor_count(const rt_runtime *rt)
{
    return rt->actors.len;
}

/* --- lifecycle -------------------------------------------------------------- */

rt_runtime *
rt_create(const rt_config *cfg, char *err, size_t errlen)
{
    rt_config none = {0};
    if (!cfg)
        cfg = &none;

    rt_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(rt->metrics = rt_metrics_new())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (rt_faults_parse(cfg->faults, &rt->faults, err, errlen) < 0)
        goto fail;
    if (cfg->fault_seed)
        rt_faults_reseed(rt->faults, cfg->fault_seed);

    if (cfg->loop) {
        rt->loop = cfg->loop;
    } else {
        rt->loop = ev_loop_new(EVFLAG_AUTO);
        if (!rt->loop) {
            snprintf(err, errlen, "cannot create an event loop");
            goto fail;
        }
        rt->own_loop = true;
    }
    rt->next_id = 1;
    rt->next_timer_id = 1;
    rt_sched_start(rt);
    return rt;

fail:
    rt_faults_free(rt->faults);
    rt_metrics_free(rt->metrics);
    rt_map_free(&rt->actors);
    free(rt);
    return NULL;
}

static void
on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_runtime *rt = w->data;
    if (rt->signalled) {
        rt_warn("runtime", "signal %d again: stopping now", w->signum);
        rt_break(rt);
        return;
    }
    rt->signalled = true;
    rt_info("runtime", "signal %d: shutting down", w->signum);
    rt_shutdown(rt);
}

void
rt_handle_signals(rt_runtime *rt)
{
    if (rt->signals)
        return;
    ev_signal_init(&rt->sigterm_w, on_signal, SIGTERM);
    ev_signal_init(&rt->sigint_w, on_signal, SIGINT);
    rt->sigterm_w.data = rt->sigint_w.data = rt;
    ev_signal_start(rt->loop, &rt->sigterm_w);
    ev_signal_start(rt->loop, &rt->sigint_w);
    rt->signals = true;
}

void
rt_destroy(rt_runtime *rt)
{
    if (!rt)
        return;
    /* Children were spawned after their parents: newest first ends children
     * before parents. */
    while (rt->actors.len) {
        rt_actor *newest = rt_table_newest(rt, false);
        if (newest)
            rt_exit(newest, RT_EXIT_KILLED, "runtime destroyed");
        rt_reap_all(rt);
    }
    rt_sched_stop(rt);
    if (rt->signals) {
        ev_signal_stop(rt->loop, &rt->sigterm_w);
        ev_signal_stop(rt->loop, &rt->sigint_w);
    }
    for (size_t i = 0; i < rt->nnames; i++)
        free(rt->names[i].name);
    free(rt->names);
    for (rt_link *l; (l = rt_list_pop_front(&rt->stats));) {
        rt_stats_entry *e = RT_CONTAINER(l, rt_stats_entry, link);
        free(e->name);
        free(e);
    }
    rt_faults_free(rt->faults);
    rt_metrics_free(rt->metrics);
    rt_map_free(&rt->actors);
    if (rt->own_loop)
        ev_loop_destroy(rt->loop);
    free(rt);
}

struct ev_loop *
rt_loop(rt_runtime *rt)
{
    return rt->loop;
}

int
rt_run(rt_runtime *rt)
{
    if (rt->top_live > 0) {
        rt->running = true;
        ev_run(rt->loop, 0);
        rt->running = false;
    }
    return rt->failed ? 1 : 0;
}

void
rt_break(rt_runtime *rt)
{
    ev_break(rt->loop, EVBREAK_ONE);
}

void
rt_shutdown(rt_runtime *rt)
{
    for (rt_actor *a; (a = rt_table_newest(rt, true));)
        rt_stop_child(rt, a->id);
}

const char *
rt_last_failure(const rt_runtime *rt)
{
    return rt->last_failure;
}

rt_faults *
rt_faults_of(rt_runtime *rt)
{
    return rt->faults;
}

rt_metrics *
rt_metrics_of(rt_runtime *rt)
{
    return rt->metrics;
}

double
rt_now_ms(rt_runtime *rt)
{
    return ev_now(rt->loop) * 1e3;
}
