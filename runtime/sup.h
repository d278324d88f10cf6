/*
 * Supervisors, with Erlang/OTP semantics.
 *
 * A supervisor is an actor that starts its children in order, watches them
 * (their exits reach it as RT_T_EXIT messages) and restarts them per its
 * strategy:
 *
 *   RT_ONE_FOR_ONE   only the child that exited is restarted;
 *   RT_ONE_FOR_ALL   the others are stopped (in reverse order), then all are
 *                    started again (in order);
 *   RT_REST_FOR_ONE  the children started after it are stopped (in reverse
 *                    order), then it and they are started again (in order).
 *
 * and each child's restart type:
 *
 *   RT_PERMANENT     always restarted;
 *   RT_TRANSIENT     restarted only after an abnormal exit (crash, killed);
 *   RT_TEMPORARY     never restarted; removed once it ended, also when a
 *                    sibling's restart stopped it.
 *
 * Restart intensity: when more than `intensity` restarts happen within
 * `period_ms`, the supervisor stops all its children in reverse order and
 * exits with a crash, so its own parent acts per its strategy; the runtime's
 * rt_run() returns 1 when a top-level supervisor ends so (the program then
 * exits non-zero with rt_last_failure() as the reason). A restart that fails
 * to start counts as a restart and is retried through a message to the
 * supervisor itself, after the backoff: a child that keeps failing within
 * period_ms waits backoff_min_ms, then twice that, ... up to backoff_max_ms.
 *
 * Start: children start in order, synchronously; a child that fails to start
 * aborts the supervisor's start: the children already started are ended
 * (newest first, terminate called with RT_EXIT_SHUTDOWN) and rt_sup_start
 * returns 0.
 *
 * Stop: asked to stop (rt_stop_child), a supervisor stops its children one at
 * a time, newest first; each is asked to stop and killed if it has not ended
 * within its shutdown timeout. Then the supervisor exits (RT_EXIT_SHUTDOWN).
 *
 * Children are registered under their names: send to them by name
 * (rt_send_named); a restarted child has a new id but the same name.
 */
#ifndef CHATD_RUNTIME_SUP_H
#define CHATD_RUNTIME_SUP_H

#include "runtime/rt.h"

typedef enum rt_strategy {
    RT_ONE_FOR_ONE = 0,
    RT_ONE_FOR_ALL,
    RT_REST_FOR_ONE,
} rt_strategy;

typedef enum rt_restart {
    RT_PERMANENT = 0,
    RT_TRANSIENT,
    RT_TEMPORARY,
} rt_restart;

#define RT_SHUTDOWN_DEFAULT 0      /* workers: 5000 ms; supervisors: infinity */
#define RT_SHUTDOWN_INFINITY (-1)  /* wait as long as it takes */
#define RT_SHUTDOWN_BRUTAL (-2)    /* kill at once, no shutdown hook */
#define RT_WORKER_SHUTDOWN_MS 5000

typedef struct rt_sup_spec rt_sup_spec;

typedef struct rt_child_spec {
    const char *name;               /* registered name, unique in the runtime */
    const rt_actor_spec *actor;     /* a worker, or ... */
    const rt_sup_spec *sup;         /* ... a nested supervisor */
    const void *arg;                /* the worker's init argument */
    rt_restart restart;
    int shutdown_ms;                /* ms > 0, or RT_SHUTDOWN_* */
} rt_child_spec;

struct rt_sup_spec {
    rt_strategy strategy;
    unsigned intensity;             /* R: restarts allowed in period (0: none) */
    unsigned period_ms;             /* P; 0: 5000 */
    unsigned backoff_min_ms;        /* first restart delay; 0: at once, always */
    unsigned backoff_max_ms;        /* 0: backoff_min_ms * 64 */
    const rt_child_spec *children;  /* must outlive the supervisor */
    size_t nchildren;
};

/*
 * Starts a supervisor under parent (0: top level) and, synchronously, its
 * children in order. name (may be NULL) is registered. Returns its id, or 0
 * when it could not start (a child failed to start: see above); *err then
 * says why (RT_ERR, RT_EINVAL, RT_ENOMEM).
 */
rt_id rt_sup_start(rt_runtime *rt, rt_id parent, const rt_sup_spec *spec, const char *name,
                   int *err);

const char *rt_strategy_name(rt_strategy s);
const char *rt_restart_name(rt_restart r);

#endif
