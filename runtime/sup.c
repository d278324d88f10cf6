/*
 * Supervisors: a supervisor is an ordinary actor whose handler receives its
 * children's exit signals (RT_T_EXIT) and its own timer messages. Restarts
 * and group stops are asynchronous state machines driven by those messages,
 * so a supervisor never blocks and always stays responsive.
 */
#include "runtime/sup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"

enum {
    SUP_T_RESTART = 2,      /* corr: child index (one_for_one) or group epoch */
    SUP_T_KILL = 3,         /* corr: id of the child being stopped */
};

typedef struct child {
    const rt_child_spec *spec;
    rt_id id;               /* 0 when not running */
    bool removed;           /* a temporary child that ended */
    bool stopped;           /* ended and not to be restarted (until a group restart) */
    unsigned fails;         /* quick consecutive failures, for the backoff */
    double started_at;
    rt_timer_id restart_timer;
} child;

typedef enum phase {
    PHASE_RUNNING,
    PHASE_GROUP_STOP,       /* stopping [lo, n) before restarting it */
    PHASE_GROUP_WAIT,       /* backoff before starting [lo, n) */
    PHASE_SHUTDOWN,         /* stopping everything, then exit shutdown */
    PHASE_GIVE_UP,          /* stopping everything, then exit crash */
} phase;

typedef struct sup {
    const rt_sup_spec *spec;
    child *children;
    size_t n;
    double *restart_times;  /* ring of the last intensity+1 restarts */
    size_t ring_len, ring_next;
    phase phase;
    size_t lo;              /* group range start */
    size_t cursor;          /* stop sequence: next index to look at, + 1 */
    rt_id stopping;         /* child being stopped, or 0 */
    rt_timer_id kill_timer;
    rt_timer_id group_timer;
    uint64_t epoch;
    double pending_delay;   /* backoff before the group starts again */
    char give_up_reason[RT_REASON_MAX + 96];
} sup;

static unsigned
period_ms(const sup *s)
{
    return s->spec->period_ms ? s->spec->period_ms : 5000;
}

const char *
rt_strategy_name(rt_strategy st)
{
    switch (st) {
    case RT_ONE_FOR_ONE:  return "one_for_one";
    case RT_ONE_FOR_ALL:  return "one_for_all";
    case RT_REST_FOR_ONE: return "rest_for_one";
    }
    return "unknown";
}

const char *
rt_restart_name(rt_restart r)
{
    switch (r) {
    case RT_PERMANENT: return "permanent";
    case RT_TRANSIENT: return "transient";
    case RT_TEMPORARY: return "temporary";
    }
    return "unknown";
}

/* Starts child c now. Returns true on success. */
static bool
start_child(rt_actor *self, child *c, bool restart)
{
    rt_runtime *rt = rt_of(self);
    int err;
    if (restart)
        rt_stats_count_restart(rt, c->spec->name);
    if (c->spec->sup)
        c->id = rt_sup_start(rt, rt_self(self), c->spec->sup, c->spec->name, &err);
    else
        c->id = rt_spawn(rt, rt_self(self), c->spec->actor, c->spec->arg, c->spec->name, &err);
    c->stopped = false;
    c->started_at = rt_now_ms(rt);
    return c->id != 0;
}

static int
shutdown_ms_of(const child *c)
{
    if (c->spec->shutdown_ms != RT_SHUTDOWN_DEFAULT)
        return c->spec->shutdown_ms;
    return c->spec->sup ? RT_SHUTDOWN_INFINITY : RT_WORKER_SHUTDOWN_MS;
}

static child *
find_child(sup *s, rt_id id, size_t *idx)
{
    for (size_t i = 0; id && i < s->n; i++) {
        if (s->children[i].id == id) {
            *idx = i;
            return &s->children[i];
        }
    }
    return NULL;
}

/* Records a restart; returns false when that exceeds the intensity. */
static bool
count_restart(rt_actor *self)
{
    sup *s = rt_state(self);
    double now = rt_now_ms(rt_of(self));
    s->restart_times[s->ring_next] = now;
    s->ring_next = (s->ring_next + 1) % s->ring_len;
    unsigned recent = 0;
    for (size_t i = 0; i < s->ring_len; i++)
        if (s->restart_times[i] > 0 && now - s->restart_times[i] <= period_ms(s))
            recent++;
    return recent <= s->spec->intensity;
}

/* The delay before restarting c: doubles with each failure that comes within
 * period_ms of its start. */
static double
backoff_ms(sup *s, child *c, double now)
{
    if (now - c->started_at > period_ms(s))
        c->fails = 0;
    c->fails++;
    if (s->spec->backoff_min_ms == 0)
        return 0;
    double max = s->spec->backoff_max_ms ? s->spec->backoff_max_ms
                                         : (double)s->spec->backoff_min_ms * 64;
    double d = s->spec->backoff_min_ms;
    for (unsigned i = 1; i < c->fails && d < max; i++)
        d *= 2;
    return d < max ? d : max;
}

static void handle_failure(rt_actor *self, size_t idx, const char *why);

/* Starts [lo, n) in order after a group stop. Temporary children the group
 * stopped are removed; a start that fails is a failure of that child. */
static void
group_start(rt_actor *self)
{
    sup *s = rt_state(self);
    s->phase = PHASE_RUNNING;
    for (size_t i = s->lo; i < s->n; i++) {
        child *c = &s->children[i];
        if (c->spec->restart == RT_TEMPORARY)
            c->removed = true;
        if (c->removed || c->id)
            continue;
        if (!start_child(self, c, true)) {
            handle_failure(self, i, "failed to restart");
            return;
        }
    }
}

/* The stop sequence ended: go on per phase. */
static void
stop_done(rt_actor *self)
{
    sup *s = rt_state(self);
    switch (s->phase) {
    case PHASE_SHUTDOWN:
        rt_exit(self, RT_EXIT_SHUTDOWN, "shutdown");
        break;
    case PHASE_GIVE_UP:
        rt_exit(self, RT_EXIT_CRASH, "%s", s->give_up_reason);
        break;
    case PHASE_GROUP_STOP:
        s->phase = PHASE_GROUP_WAIT;
        s->group_timer = rt_send_after(self, s->pending_delay, SUP_T_RESTART, ++s->epoch,
                                       NULL, 0);
        break;
    case PHASE_RUNNING:
    case PHASE_GROUP_WAIT:
        break;
    }
}

/* Stops the next running child below the cursor (newest first), or ends the
 * sequence when none is left in [lo, n). */
static void
stop_next(rt_actor *self)
{
    sup *s = rt_state(self);
    rt_runtime *rt = rt_of(self);
    while (s->cursor > s->lo) {
        child *c = &s->children[--s->cursor];
        if (!c->id)
            continue;
        int ms = shutdown_ms_of(c);
        s->stopping = c->id;
        rt_debug(rt_who(self), "stopping %s#%" PRIu64, c->spec->name, c->id);
        if (ms == RT_SHUTDOWN_BRUTAL) {
            rt_kill(rt, c->id, RT_EXIT_KILLED, "brutal kill");
        } else {
            rt_stop_child(rt, c->id);
            if (ms > 0)
                s->kill_timer = rt_send_after(self, ms, SUP_T_KILL, c->id, NULL, 0);
        }
        return;     /* on with the next one when its exit arrives */
    }
    s->stopping = 0;
    stop_done(self);
}

static void
cancel_restart_timers(rt_actor *self)
{
    sup *s = rt_state(self);
    for (size_t i = 0; i < s->n; i++) {
        if (s->children[i].restart_timer) {
            rt_cancel_timer(self, s->children[i].restart_timer);
            s->children[i].restart_timer = 0;
        }
    }
    if (s->group_timer) {
        rt_cancel_timer(self, s->group_timer);
        s->group_timer = 0;
    }
}

/* Starts stopping [lo, n), newest first, then goes on per phase. */
static void
begin_stop(rt_actor *self, phase ph, size_t lo)
{
    sup *s = rt_state(self);
    cancel_restart_timers(self);
    s->phase = ph;
    s->lo = lo;
    s->cursor = s->n;
    if (!s->stopping)
        stop_next(self);
}

static void
give_up(rt_actor *self, const child *c, const char *why)
{
    sup *s = rt_state(self);
    snprintf(s->give_up_reason, sizeof(s->give_up_reason),
             "reached max restart intensity (%u restarts in %u ms); last: %s %s",
             s->spec->intensity, period_ms(s), c->spec->name, why);
    rt_error(rt_who(self), "giving up: %s", s->give_up_reason);
    begin_stop(self, PHASE_GIVE_UP, 0);
}

/* Child idx ended (or failed to start again) and is to be restarted. */
static void
handle_failure(rt_actor *self, size_t idx, const char *why)
{
    sup *s = rt_state(self);
    child *c = &s->children[idx];
    if (!count_restart(self)) {
        give_up(self, c, why);
        return;
    }
    double delay = backoff_ms(s, c, rt_now_ms(rt_of(self)));

    if (s->spec->strategy == RT_ONE_FOR_ONE) {
        rt_warn(rt_who(self), "restarting %s (%s) in %.0f ms after: %s", c->spec->name,
                rt_restart_name(c->spec->restart), delay, why);
        c->restart_timer = rt_send_after(self, delay, SUP_T_RESTART, idx, NULL, 0);
        return;
    }

    size_t lo = s->spec->strategy == RT_ONE_FOR_ALL ? 0 : idx;
    rt_warn(rt_who(self), "restarting %s%s (%s) in %.0f ms after: %s", c->spec->name,
            s->spec->strategy == RT_ONE_FOR_ALL ? " and all its siblings"
                                                : " and the children after it",
            rt_strategy_name(s->spec->strategy), delay, why);
    if (s->phase == PHASE_GROUP_STOP) {
        /* a group restart is under way: widen it; the sequence goes on down */
        if (lo < s->lo)
            s->lo = lo;
        if (delay > s->pending_delay)
            s->pending_delay = delay;
        return;
    }
    if (s->phase == PHASE_GROUP_WAIT) {
        if (s->lo < lo)
            lo = s->lo;
        if (s->pending_delay > delay)
            delay = s->pending_delay;
    }
    s->pending_delay = delay;
    begin_stop(self, PHASE_GROUP_STOP, lo);
}

static void
on_child_exit(rt_actor *self, const rt_exit_info *info)
{
    sup *s = rt_state(self);
    size_t idx;
    child *c = find_child(s, info->id, &idx);
    if (!c)
        return;     /* not ours any more */
    c->id = 0;

    bool expected = info->id == s->stopping;
    if (expected) {
        if (s->kill_timer)
            rt_cancel_timer(self, s->kill_timer);
        s->kill_timer = 0;
        s->stopping = 0;
    }

    if (s->phase == PHASE_SHUTDOWN || s->phase == PHASE_GIVE_UP ||
        (s->phase == PHASE_GROUP_STOP && idx >= s->lo)) {
        /* part of a stop sequence (or ending on its own in the middle of one) */
        if (c->spec->restart == RT_TEMPORARY)
            c->removed = true;
        if (expected || !s->stopping)
            stop_next(self);
        return;
    }

    bool abnormal = rt_exit_abnormal(info->kind);
    bool restart = c->spec->restart == RT_PERMANENT ||
                   (c->spec->restart == RT_TRANSIENT && abnormal);
    RT_LOG(abnormal ? RT_LOG_WARN : RT_LOG_INFO, rt_who(self), "child %s#%" PRIu64
           " (%s) exited: %s%s%s", c->spec->name, info->id, rt_restart_name(c->spec->restart),
           rt_exit_kind_name(info->kind), info->reason[0] ? ": " : "", info->reason);
    if (c->spec->restart == RT_TEMPORARY)
        c->removed = true;
    else if (!restart)
        c->stopped = true;
    if (restart) {
        char why[RT_REASON_MAX + 16];
        snprintf(why, sizeof(why), "%s%s%s", rt_exit_kind_name(info->kind),
                 info->reason[0] ? ": " : "", info->reason);
        handle_failure(self, idx, why);
    }
}

static void
on_restart_timer(rt_actor *self, uint64_t corr)
{
    sup *s = rt_state(self);
    if (s->spec->strategy != RT_ONE_FOR_ONE) {
        if (s->phase == PHASE_GROUP_WAIT && corr == s->epoch) {
            s->group_timer = 0;
            group_start(self);
        }
        return;
    }
    if (corr >= s->n || s->phase != PHASE_RUNNING)
        return;
    child *c = &s->children[corr];
    c->restart_timer = 0;
    if (c->id || c->removed)
        return;
    if (!start_child(self, c, true))
        handle_failure(self, (size_t)corr, "failed to restart");
}

static int
sup_handle(rt_actor *self, const proto_env *msg)
{
    sup *s = rt_state(self);
    switch (msg->type) {
    case RT_T_EXIT: {
        rt_exit_info info;
        if (rt_exit_info_decode(msg, &info) != RT_OK) {
            rt_error(rt_who(self), "undecodable exit signal");
            return RT_ERR;
        }
        on_child_exit(self, &info);
        return RT_OK;
    }
    case SUP_T_RESTART:
        on_restart_timer(self, msg->corr);
        return RT_OK;
    case SUP_T_KILL:
        if (s->stopping == msg->corr) {
            s->kill_timer = 0;
            rt_warn(rt_who(self), "child #%" PRIu64 " did not stop in time: killing it",
                    msg->corr);
            rt_kill(rt_of(self), msg->corr, RT_EXIT_KILLED, "shutdown timeout");
        }
        return RT_OK;
    default:
        rt_warn(rt_who(self), "unexpected message type %" PRIu32 " ignored", msg->type);
        return RT_OK;
    }
}

static int
sup_shutdown(rt_actor *self)
{
    sup *s = rt_state(self);
    if (s->phase == PHASE_SHUTDOWN || s->phase == PHASE_GIVE_UP)
        return RT_PENDING;
    if (s->phase == PHASE_GROUP_STOP && s->stopping) {
        /* finish stopping the group's current child, then the rest */
        cancel_restart_timers(self);
        s->phase = PHASE_SHUTDOWN;
        s->lo = 0;
        return RT_PENDING;
    }
    begin_stop(self, PHASE_SHUTDOWN, 0);
    return RT_PENDING;
}

static void
sup_terminate(rt_actor *self, rt_exit_kind kind)
{
    sup *s = rt_state(self);
    /* Ended other than through its own stop sequence (a fault, a kill): its
     * children must not outlive it. */
    for (size_t i = s->n; i-- > 0;)
        if (s->children && s->children[i].id)
            rt_kill(rt_of(self), s->children[i].id,
                    kind == RT_EXIT_SHUTDOWN ? RT_EXIT_SHUTDOWN : RT_EXIT_KILLED,
                    "supervisor ended");
    free(s->children);
    free(s->restart_times);
}

static int
sup_init(rt_actor *self, const void *arg)
{
    sup *s = rt_state(self);
    s->spec = arg;
    s->n = s->spec->nchildren;
    s->ring_len = (size_t)s->spec->intensity + 1;
    s->children = calloc(s->n ? s->n : 1, sizeof(*s->children));
    s->restart_times = calloc(s->ring_len, sizeof(*s->restart_times));
    if (!s->children || !s->restart_times)
        return RT_ERR;
    for (size_t i = 0; i < s->n; i++)
        s->children[i].spec = &s->spec->children[i];

    for (size_t i = 0; i < s->n; i++) {
        child *c = &s->children[i];
        if (start_child(self, c, false))
            continue;
        rt_error(rt_who(self), "child %s failed to start: aborting the start", c->spec->name);
        for (size_t j = i; j-- > 0;) {
            rt_kill(rt_of(self), s->children[j].id, RT_EXIT_SHUTDOWN, "supervisor start aborted");
            s->children[j].id = 0;
        }
        return RT_ERR;
    }
    return RT_OK;
}

static const rt_actor_spec sup_actor = {
    .name = "supervisor",
    .state_size = sizeof(sup),
    .init = sup_init,
    .handle = sup_handle,
    .terminate = sup_terminate,
    .shutdown = sup_shutdown,
    .mailbox_cap = 64,
    .overflow = RT_OVERFLOW_REJECT,
};

rt_id
rt_sup_start(rt_runtime *rt, rt_id parent, const rt_sup_spec *spec, const char *name, int *err)
{
    for (size_t i = 0; i < spec->nchildren; i++) {
        const rt_child_spec *c = &spec->children[i];
        if (!c->name || (!c->actor == !c->sup)) {
            rt_error(name ? name : "supervisor", "child %zu: give a name and either an "
                     "actor or a supervisor spec", i);
            if (err)
                *err = RT_EINVAL;
            return 0;
        }
    }
    return rt_spawn(rt, parent, &sup_actor, spec, name, err);
}
