/*
 * The actor runtime.
 *
 * An actor is private state plus a handler, created from a spec (init,
 * handle, terminate). It touches nothing but its own state and its mailbox:
 * actors share no pointers and talk only by sending msgpack-encoded envelopes
 * (proto/envelope.h). Sending never blocks; mailboxes are bounded
 * (runtime/mailbox.h).
 *
 * All actors of a runtime run on one libev loop, on the thread that runs it;
 * every function here must be called from that thread. Each loop iteration
 * gives every runnable actor one turn of at most spec->batch messages, after
 * the loop's I/O callbacks ran, so no actor starves the loop or the others.
 *
 * Addresses: an actor has an id (rt_id), never reused in a runtime's life,
 * and may have a registered name. A restarted actor is a new actor with a new
 * id under the same name: address long-lived peers by name.
 *
 * Exits: an actor ends
 *   normally    its handler returned RT_STOP, or it called rt_exit(NORMAL);
 *   by shutdown its parent asked it to stop (rt_stop_child);
 *   by crash    its handler returned RT_ERR, an I/O callback did, it called
 *               rt_crash() (say, its backend connection was lost), or an
 *               injected fault hit it;
 *   killed      it did not stop within its shutdown timeout.
 * Whatever the reason, the runtime then (never inside the actor's own
 * callback: at the end of the current loop step) stops and frees the
 * actor's timers and I/O watchers, calls its terminate(), frees its state and
 * mailbox, and sends its parent an RT_T_EXIT message (rt_exit_info). That is
 * how supervisors (runtime/sup.h) learn of their children's exits.
 */
#ifndef CHATD_RUNTIME_RT_H
#define CHATD_RUNTIME_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "proto/envelope.h"
#include "runtime/fault.h"
#include "runtime/mailbox.h"

typedef struct rt_runtime rt_runtime;
typedef struct rt_actor rt_actor;
typedef struct rt_metrics rt_metrics;   /* runtime/metrics.h */
typedef uint64_t rt_id;

/* Return codes. Handlers return RT_OK, RT_STOP or RT_ERR. */
enum {
    RT_OK = 0,
    RT_STOP = 1,         /* handler: exit normally */
    RT_PENDING = 2,      /* shutdown hook: will call rt_exit() when drained */
    RT_ERR = -1,         /* handler: crash; functions: failed */
    RT_ENOACTOR = -2,    /* no live actor at that address */
    RT_EFULL = -3,       /* the receiver's mailbox is full (REJECT policy) */
    RT_ENOMEM = -4,
    RT_EINVAL = -5,
};

/*
 * Message types 1..99 are the runtime's; proto records start at 100 and the
 * program's own types follow them. Types from RT_T_TEST_BASE up are reserved
 * for tests (probe actors linked beside the program's actors), so a test's
 * types never collide with the program's: a program asserts at compile time
 * that its types stay below RT_T_TEST_BASE.
 */
enum {
    RT_T_EXIT = 1,       /* to a parent: a child exited; payload rt_exit_info */
    RT_T_SYS_MAX = 99,
};
#define RT_T_TEST_BASE 0x70000000u

typedef enum rt_exit_kind {
    RT_EXIT_NORMAL = 0,
    RT_EXIT_SHUTDOWN,
    RT_EXIT_CRASH,
    RT_EXIT_KILLED,
} rt_exit_kind;

/* True for the exits a transient child is restarted after. */
static inline bool
rt_exit_abnormal(rt_exit_kind k)
{
    return k == RT_EXIT_CRASH || k == RT_EXIT_KILLED;
}

const char *rt_exit_kind_name(rt_exit_kind k);

#define RT_REASON_MAX 160

typedef struct rt_exit_info {
    rt_id id;
    rt_exit_kind kind;
    char reason[RT_REASON_MAX];
} rt_exit_info;

/* Decodes the payload of an RT_T_EXIT message. Returns RT_OK or RT_EINVAL. */
int rt_exit_info_decode(const proto_env *msg, rt_exit_info *out);

typedef struct rt_actor_spec {
    const char *name;               /* for logs, faults and stats */
    size_t state_size;              /* bytes of zeroed state the runtime owns */

    /* Called once at spawn, synchronously. arg is the spawner's; it must
     * outlive the actor. Returns RT_OK, or RT_ERR to fail the start. Must not
     * block: connect asynchronously and crash later if that fails. */
    int (*init)(rt_actor *self, const void *arg);

    /* Called for each message, in order. msg and its payload live until the
     * handler returns. Returns RT_OK, RT_STOP or RT_ERR. */
    int (*handle)(rt_actor *self, const proto_env *msg);

    /* Called exactly once for every actor whose init was called, whatever
     * the exit, even when init failed: free what init and handle acquired
     * beyond the state (state is zeroed before init, so check what is set).
     * May be NULL. */
    void (*terminate)(rt_actor *self, rt_exit_kind kind);

    /* Called when the parent asks the actor to stop. Returns RT_OK to exit
     * now, or RT_PENDING to go on until it calls rt_exit() (to drain work);
     * the parent kills it when its shutdown timeout passes first. NULL: exit
     * now. */
    int (*shutdown)(rt_actor *self);

    /* Called after each turn in which the actor handled messages (and did not
     * exit), before other actors run: the place to flush what the turn's
     * messages batched up (socket writes, a Redis pipeline). May be NULL. */
    void (*after_turn)(rt_actor *self);

    size_t mailbox_cap;             /* 0: RT_MAILBOX_DEFAULT */
    rt_overflow overflow;           /* what a full mailbox does */
    unsigned batch;                 /* messages per turn; 0: RT_BATCH_DEFAULT */
} rt_actor_spec;

#define RT_MAILBOX_DEFAULT 1024
#define RT_BATCH_DEFAULT 64

/* --- the runtime ------------------------------------------------------- */

typedef struct rt_config {
    struct ev_loop *loop;           /* NULL: the runtime creates and owns one */
    const char *faults;             /* fault spec (runtime/fault.h) or NULL */
    uint64_t fault_seed;            /* overrides the spec's seed when nonzero */
} rt_config;

/*
 * Creates a runtime. On error returns NULL and writes the reason into err
 * (a bad fault spec, out of memory).
 */
rt_runtime *rt_create(const rt_config *cfg, char *err, size_t errlen);

/*
 * Destroys the runtime: kills every actor still alive (terminate is called
 * for each, children before parents), frees all messages, and stops the
 * runtime's own watchers, so the loop has nothing of the runtime left on it.
 * A loop the runtime created is destroyed too.
 */
void rt_destroy(rt_runtime *rt);

struct ev_loop *rt_loop(rt_runtime *rt);

/*
 * Runs the loop until no top-level actor (one spawned with parent 0) is
 * alive, or rt_break() was called. Returns 0 when every top-level actor ended
 * normally or by shutdown, 1 when one crashed or was killed (its reason is in
 * rt_last_failure()).
 */
int rt_run(rt_runtime *rt);

/* Makes rt_run return after the current loop step. */
void rt_break(rt_runtime *rt);

/* Asks every top-level actor to stop, newest first (as rt_stop_child). */
void rt_shutdown(rt_runtime *rt);

/* Installs SIGTERM and SIGINT watchers that call rt_shutdown (a second
 * signal breaks the loop at once). Removed by rt_destroy. */
void rt_handle_signals(rt_runtime *rt);

/* Why the last top-level actor that failed, failed ("" if none did). */
const char *rt_last_failure(const rt_runtime *rt);

/* --- actors ------------------------------------------------------------- */

/*
 * Spawns an actor: allocates it, registers name (if not NULL; fails with
 * RT_EINVAL when taken), runs spec->init synchronously. parent (0 for none)
 * gets an RT_T_EXIT message when the actor exits. Returns the new id, or 0
 * when the start failed; *err (if not NULL) then holds RT_ERR (init failed or
 * an injected "init" fault), RT_EINVAL or RT_ENOMEM. When init fails the
 * actor's terminate has been called and nothing is left behind.
 */
rt_id rt_spawn(rt_runtime *rt, rt_id parent, const rt_actor_spec *spec, const void *arg,
               const char *name, int *err);

/* The current id registered under name, or 0. */
rt_id rt_whereis(rt_runtime *rt, const char *name);

/* True while id names an actor that has not exited. */
bool rt_alive(rt_runtime *rt, rt_id id);

rt_id rt_self(const rt_actor *self);
rt_id rt_parent(const rt_actor *self);
rt_runtime *rt_of(const rt_actor *self);
void *rt_state(rt_actor *self);
/* "name#id", for logs. */
const char *rt_who(const rt_actor *self);
const char *rt_actor_name(const rt_actor *self);

/*
 * Sends a message: encodes an envelope {type, from, to, corr, payload} and
 * queues it in to's mailbox. The payload bytes are copied: the caller keeps
 * its buffer. Returns RT_OK (also when the receiver shed its oldest message
 * to take this one), RT_ENOACTOR (no live actor: the message is dropped),
 * RT_EFULL (the receiver's mailbox is full and refuses) or RT_ENOMEM.
 * Overflows are counted on the receiver. Never blocks, never calls a handler.
 */
int rt_send(rt_runtime *rt, rt_id from, rt_id to, uint32_t type, uint64_t corr,
            const void *payload, size_t len);

/* The same, to the actor registered under name. */
int rt_send_named(rt_runtime *rt, rt_id from, const char *to, uint32_t type, uint64_t corr,
                  const void *payload, size_t len);

/*
 * Queues an already-encoded message. Always takes m: on any error it is
 * freed. Same results as rt_send.
 */
int rt_send_msg(rt_runtime *rt, rt_id to, rt_msg *m);

/* Ends the calling actor after its current callback, with kind and a reason
 * (printf format; NULL for none). */
void rt_exit(rt_actor *self, rt_exit_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rt_exit(self, RT_EXIT_CRASH, ...): for handlers and library callbacks that
 * find their backend gone. Safe from any callback of the actor. */
void rt_crash(rt_actor *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Asks a child to stop (its shutdown hook runs now; see rt_actor_spec).
 * Returns RT_OK, or RT_ENOACTOR when it is not alive. The exit arrives later
 * as RT_T_EXIT to its parent.
 */
int rt_stop_child(rt_runtime *rt, rt_id id);

/* Ends an actor at once, with kind (RT_EXIT_KILLED for a brutal kill) and
 * reason; the exit is reported to its parent as any other. */
int rt_kill(rt_runtime *rt, rt_id id, rt_exit_kind kind, const char *reason);

/*
 * Asks the fault injector about a named point of the calling actor. Returns
 * RT_FAULT_CRASH (the caller should crash: rt_crash and return), RT_FAULT_DELAY
 * (with *delay_ms) or RT_FAULT_NONE.
 */
rt_fault_action rt_fault_point(rt_actor *self, const char *point, double *delay_ms);

/* --- timers --------------------------------------------------------------- */

typedef uint64_t rt_timer_id;

/*
 * After ms milliseconds, sends the calling actor a message {type, corr,
 * payload}. The timer belongs to the actor: it is cancelled when the actor
 * exits. Timer messages are queued even into a full mailbox (the actor set
 * them itself). Returns the timer's id (> 0), or 0 when out of memory.
 */
rt_timer_id rt_send_after(rt_actor *self, double ms, uint32_t type, uint64_t corr,
                          const void *payload, size_t len);

/* Cancels a pending timer. Returns true when it was pending. */
bool rt_cancel_timer(rt_actor *self, rt_timer_id timer);

/* --- I/O -------------------------------------------------------------------- */

typedef struct rt_io rt_io;

/* Called on the loop when fd is ready; returns RT_OK, or RT_ERR to crash the
 * actor. */
typedef int (*rt_io_cb)(rt_actor *self, rt_io *io, int fd, int revents);

/*
 * Watches fd for events (EV_READ | EV_WRITE) on the runtime's loop, calling
 * cb in the actor's context. The watcher belongs to the actor and is stopped
 * and freed when it exits (the fd is not closed: terminate closes what init
 * opened). Returns NULL when out of memory.
 */
rt_io *rt_io_start(rt_actor *self, int fd, int events, rt_io_cb cb, void *data);
void rt_io_set(rt_io *io, int events);
void *rt_io_data(const rt_io *io);
void rt_io_stop(rt_actor *self, rt_io *io);

/* --- introspection ------------------------------------------------------- */

/*
 * Counters per actor name, kept across restarts, for logs and /metrics.
 * depth is the current instance's mailbox depth (0 when none is alive).
 */
typedef struct rt_stats {
    const char *name;
    uint64_t spawned;           /* instances started */
    uint64_t crashes;           /* abnormal exits */
    uint64_t restarts;          /* restarts by a supervisor */
    uint64_t handled;           /* messages handled */
    uint64_t overflows;         /* sends that found the mailbox full */
    uint64_t shed;              /* messages dropped by DROP_OLDEST */
    uint64_t fault_drops;       /* messages dropped by fault injection */
    uint64_t lost_on_exit;      /* messages still queued when an instance ended */
    size_t depth;
    size_t high_water;
    bool alive;
} rt_stats;

/* Calls fn for every name ever spawned, in first-spawn order. */
void rt_stats_foreach(rt_runtime *rt, void (*fn)(const rt_stats *s, void *ud), void *ud);

/* The stats of one name, or NULL. */
const rt_stats *rt_stats_get(rt_runtime *rt, const char *name);

/* Counts a restart of name (supervisors call this). */
void rt_stats_count_restart(rt_runtime *rt, const char *name);

/* Number of live actors. */
size_t rt_actor_count(const rt_runtime *rt);

/* The runtime's fault set (runtime/fault.h) and metrics registry
 * (runtime/metrics.h), both created by rt_create and freed by rt_destroy. */
rt_faults *rt_faults_of(rt_runtime *rt);
rt_metrics *rt_metrics_of(rt_runtime *rt);

/* Monotonic time in ms from the loop's clock. */
double rt_now_ms(rt_runtime *rt);

#endif
