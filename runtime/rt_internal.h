/*
 * What the runtime's own files share, and nothing else sees. Private to
 * runtime/rt*.c: actors, tests and the rest of the program use runtime/rt.h.
 * The runtime's SConscript defines RT_BUILDING_RUNTIME for its own sources
 * only, so an include from elsewhere fails the build.
 *
 * The runtime is split by job:
 *   rt.c        lifecycle (create, run, shutdown, destroy, signals), the
 *               registered names and the per-name stats
 *   rt_actor.c  the actor table, spawning, exits (deferred, then reaped) and
 *               the exit signal to the parent
 *   rt_sched.c  the run queue and the turns (batch per turn), sending
 *   rt_timer.c  timers (rt_send_after)
 *   rt_io.c     I/O watchers (rt_io_start)
 */
#ifndef CHATD_RUNTIME_RT_INTERNAL_H
#define CHATD_RUNTIME_RT_INTERNAL_H

#ifndef RT_BUILDING_RUNTIME
#error "runtime/rt_internal.h is private to runtime/: include runtime/rt.h"
#endif

#include "runtime/list.h"
#include "runtime/map.h"
#include "runtime/rt.h"

/* Counters of one actor name, kept across restarts (rt.c). */
typedef struct rt_stats_entry {
    rt_stats s;
    char *name;
    rt_link link;               /* in rt_runtime.stats, first-spawn order */
} rt_stats_entry;

typedef struct rt_name {
    char *name;                 /* owned */
    rt_id id;
} rt_name;

struct rt_actor {
    rt_runtime *rt;
    rt_id id;
    rt_id parent;
    const rt_actor_spec *spec;
    void *state;
    char *name;                 /* registered name, owned; NULL when none */
    rt_stats_entry *stats;
    char who[96];

    rt_mailbox mb;              /* messages, bounded */
    rt_mailbox sys;             /* exit signals, before messages */

    rt_link runq_link;          /* in rt_runtime.runq while in_runq */
    bool in_runq;

    bool exiting;               /* on rt_runtime.reap via reap_link */
    bool stopping;              /* shutdown requested */
    bool init_called;
    rt_exit_kind exit_kind;
    char reason[RT_REASON_MAX];
    rt_link reap_link;

    bool suspended;             /* delayed by an injected fault */
    bool skip_fault;            /* the head message already passed the injector */
    ev_timer delay_w;

    rt_list timers;             /* rt_timer.link */
    rt_list ios;                /* rt_io.link */
};

struct rt_runtime {
    struct ev_loop *loop;
    bool own_loop;

    rt_map actors;              /* rt_id -> rt_actor *: live and exiting, not reaped */
    size_t top_live;            /* live actors without parent */
    rt_id next_id;

    rt_name *names;
    size_t nnames, names_cap;

    rt_list runq;               /* rt_actor.runq_link */
    rt_list reap;               /* rt_actor.reap_link: exited, to be freed */

    ev_prepare prepare_w;
    ev_check check_w;
    ev_idle idle_w;
    ev_signal sigterm_w, sigint_w;
    bool signals;
    bool signalled;
    bool running;

    rt_faults *faults;
    rt_metrics *metrics;
    rt_list stats;              /* rt_stats_entry.link */

    rt_timer_id next_timer_id;
    bool failed;
    char last_failure[RT_REASON_MAX + 128];
};

/* --- rt.c: names and stats ---------------------------------------------- */

/* The entry registered under name, or NULL. */
rt_name *rt_name_find(rt_runtime *rt, const char *name);

/* Registers name for id (the name must be free). Returns false when out of
 * memory. */
bool rt_name_add(rt_runtime *rt, const char *name, rt_id id);

/* Drops a's registered name, if it still names a. */
void rt_name_remove(rt_runtime *rt, rt_actor *a);

/* The stats of name, created at zero on first use; NULL when out of
 * memory. */
rt_stats_entry *rt_stats_for(rt_runtime *rt, const char *name);

/* --- rt_actor.c: the actor table and exits ------------------------------ */

/* The actor with this id, exiting or not; NULL when there is none. The hot
 * path of every send. */
static inline rt_actor *
rt_table_get(const rt_runtime *rt, rt_id id)
{
    return rt_map_get_u64(&rt->actors, id);
}

/* The live actor with the highest id (the newest) that is not exiting and,
 * when top_only, has no parent and was not asked to stop; NULL when none. */
rt_actor *rt_table_newest(rt_runtime *rt, bool top_only);

/* Frees every actor on the reap list (at the end of a loop step). */
void rt_reap_all(rt_runtime *rt);

/* --- rt_sched.c: the run queue ------------------------------------------ */

/* Starts the runtime's loop watchers (prepare, check; idle on demand). */
void rt_sched_start(rt_runtime *rt);
void rt_sched_stop(rt_runtime *rt);

/* Keeps poll from blocking until the next check (something to run or
 * reap). */
void rt_sched_wake(rt_runtime *rt);

/* Puts a on the run queue unless it is there, exiting or suspended. */
void rt_runq_push(rt_runtime *rt, rt_actor *a);
void rt_runq_remove(rt_runtime *rt, rt_actor *a);

static inline bool
rt_has_work(const rt_actor *a)
{
    return a->sys.depth || a->mb.depth;
}

/* Starts a's fault delay timer (init) and stops it (exit). */
void rt_delay_init(rt_actor *a);
void rt_delay_stop(rt_actor *a);

/* Raises name's high-water mark to the mailbox's. */
static inline void
rt_note_depth(rt_actor *a)
{
    if (a->mb.high_water > a->stats->s.high_water)
        a->stats->s.high_water = a->mb.high_water;
}

/* --- rt_timer.c, rt_io.c -------------------------------------------------- */

/* Stops and frees every timer (and its message) of a. */
void rt_timers_free(rt_actor *a);

/* Stops and frees every I/O watcher of a. */
void rt_ios_free(rt_actor *a);

#endif
