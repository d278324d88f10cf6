/*
 * The actor runtime: actor table, names, scheduling, exits, timers, I/O.
 *
 * Scheduling. A runnable actor (messages queued, not suspended, not exiting)
 * is on the run queue exactly once. After each poll, a check watcher of the
 * lowest priority (so it runs after that iteration's I/O and timer callbacks)
 * gives every actor that was runnable when it started one turn of at most
 * spec->batch messages; an actor with messages left goes to the back of the
 * queue. While the queue or the reap list is not empty, an idle watcher keeps
 * the loop from blocking in poll.
 *
 * Exits are deferred, as Redis frees clients: rt_exit only marks the actor and
 * puts it on the reap list; the reap step frees it after the current callback
 * returned, so no actor is freed under its own feet.
 */
#include "runtime/rt.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mp.h"
#include "runtime/log.h"

typedef struct rt_timer {
    ev_timer w;                 /* first: the watcher pointer is the timer */
    rt_actor *owner;
    rt_timer_id id;
    rt_msg *msg;
    struct rt_timer *prev, *next;
} rt_timer;

struct rt_io {
    ev_io w;
    rt_actor *owner;
    rt_io_cb cb;
    void *data;
    struct rt_io *prev, *next;
};

typedef struct stats_entry {
    rt_stats s;
    char *name;
    struct stats_entry *next;
} stats_entry;

struct rt_actor {
    rt_runtime *rt;
    rt_id id;
    rt_id parent;
    const rt_actor_spec *spec;
    void *state;
    char *name;                 /* registered name, owned; NULL when none */
    stats_entry *stats;
    char who[96];

    rt_mailbox mb;              /* messages, bounded */
    rt_mailbox sys;             /* exit signals, before messages */

    rt_actor *runq_prev, *runq_next;
    bool in_runq;

    bool exiting;
    bool stopping;              /* shutdown requested */
    bool init_called;
    rt_exit_kind exit_kind;
    char reason[RT_REASON_MAX];
    rt_actor *reap_next;

    bool suspended;             /* delayed by an injected fault */
    bool skip_fault;            /* the head message already passed the injector */
    ev_timer delay_w;

    rt_timer *timers;
    rt_io *ios;
};

typedef struct name_entry {
    char *name;
    rt_id id;
} name_entry;

struct rt_runtime {
    struct ev_loop *loop;
    bool own_loop;

    /* actor table: open addressing on id, linear probing */
    rt_actor **table;
    size_t table_cap;           /* power of two */
    size_t live;
    size_t top_live;            /* live actors without parent */
    rt_id next_id;

    name_entry *names;
    size_t nnames, names_cap;

    rt_actor *runq_head, *runq_tail;
    rt_actor *reap_head, *reap_tail;

    ev_prepare prepare_w;
    ev_check check_w;
    ev_idle idle_w;
    ev_signal sigterm_w, sigint_w;
    bool signals;
    bool signalled;
    bool running;

    rt_faults *faults;
    stats_entry *stats_head, *stats_tail;

    struct rt_metrics_registry *metrics;     /* runtime/metrics.c */

    rt_timer_id next_timer_id;
    bool failed;
    char last_failure[RT_REASON_MAX + 128];
};

/* runtime/metrics.c keeps its registry in the runtime. */
struct rt_metrics_registry;
struct rt_metrics_registry **rt_metrics_registry_of(rt_runtime *rt);
void rt_metrics_free_registry(struct rt_metrics_registry *reg);

static void runq_push(rt_runtime *rt, rt_actor *a);
static void reap_all(rt_runtime *rt);

const char *
rt_exit_kind_name(rt_exit_kind k)
{
    switch (k) {
    case RT_EXIT_NORMAL:   return "normal";
    case RT_EXIT_SHUTDOWN: return "shutdown";
    case RT_EXIT_CRASH:    return "crash";
    case RT_EXIT_KILLED:   return "killed";
    }
    return "unknown";
}

/* --- actor table ------------------------------------------------------- */

static size_t
slot_of(const rt_runtime *rt, rt_id id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (rt->table_cap - 1);
}

static rt_actor *
lookup(const rt_runtime *rt, rt_id id)
{
    if (id == 0)
        return NULL;
    for (size_t i = slot_of(rt, id);; i = (i + 1) & (rt->table_cap - 1)) {
        rt_actor *a = rt->table[i];
        if (!a)
            return NULL;
        if (a->id == id)
            return a;
    }
}

static bool
table_insert(rt_runtime *rt, rt_actor *a)
{
    if ((rt->live + 1) * 2 > rt->table_cap) {
        size_t cap = rt->table_cap * 2;
        rt_actor **t = calloc(cap, sizeof(*t));
        if (!t)
            return false;
        rt_actor **old = rt->table;
        size_t old_cap = rt->table_cap;
        rt->table = t;
        rt->table_cap = cap;
        for (size_t i = 0; i < old_cap; i++) {
            if (!old[i])
                continue;
            size_t j = slot_of(rt, old[i]->id);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = old[i];
        }
        free(old);
    }
    size_t i = slot_of(rt, a->id);
    while (rt->table[i])
        i = (i + 1) & (rt->table_cap - 1);
    rt->table[i] = a;
    rt->live++;
    return true;
}

/* Removes a by backward-shift deletion, so lookups need no tombstones. */
static void
table_remove(rt_runtime *rt, rt_actor *a)
{
    size_t mask = rt->table_cap - 1;
    size_t i = slot_of(rt, a->id);
    while (rt->table[i] != a)
        i = (i + 1) & mask;
    rt->table[i] = NULL;
    for (size_t j = (i + 1) & mask; rt->table[j]; j = (j + 1) & mask) {
        size_t home = slot_of(rt, rt->table[j]->id);
        /* move j back to the hole at i unless its home lies in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            rt->table[i] = rt->table[j];
            rt->table[j] = NULL;
            i = j;
        }
    }
    rt->live--;
}

/* --- names and stats ----------------------------------------------------- */

static name_entry *
find_name(rt_runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->nnames; i++)
        if (strcmp(rt->names[i].name, name) == 0)
            return &rt->names[i];
    return NULL;
}

rt_id
rt_whereis(rt_runtime *rt, const char *name)
{
    name_entry *e = find_name(rt, name);
    return e ? e->id : 0;
}

static void
unregister(rt_runtime *rt, rt_actor *a)
{
    if (!a->name)
        return;
    name_entry *e = find_name(rt, a->name);
    if (e && e->id == a->id) {
        free(e->name);
        *e = rt->names[--rt->nnames];
    }
}

static stats_entry *
stats_for(rt_runtime *rt, const char *name)
{
    for (stats_entry *e = rt->stats_head; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    stats_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->s.name = e->name;
    if (rt->stats_tail)
        rt->stats_tail->next = e;
    else
        rt->stats_head = e;
    rt->stats_tail = e;
    return e;
}

const rt_stats *
rt_stats_get(rt_runtime *rt, const char *name)
{
    for (stats_entry *e = rt->stats_head; e; e = e->next)
        if (strcmp(e->name, name) == 0) {
            e->s.depth = 0;
            e->s.alive = false;
            for (size_t i = 0; i < rt->table_cap; i++) {
                rt_actor *a = rt->table[i];
                if (a && a->stats == e && !a->exiting) {
                    e->s.depth += a->mb.depth;
                    e->s.alive = true;
                }
            }
            return &e->s;
        }
    return NULL;
}

void
rt_stats_foreach(rt_runtime *rt, void (*fn)(const rt_stats *s, void *ud), void *ud)
{
    for (stats_entry *e = rt->stats_head; e; e = e->next)
        fn(rt_stats_get(rt, e->name), ud);
}

void
rt_stats_count_restart(rt_runtime *rt, const char *name)
{
    stats_entry *e = stats_for(rt, name);
    if (e)
        e->s.restarts++;
}

size_t
rt_actor_count(const rt_runtime *rt)
{
    return rt->live;
}

/* --- loop hooks ---------------------------------------------------------- */

static void
runq_push(rt_runtime *rt, rt_actor *a)
{
    if (a->in_runq || a->exiting || a->suspended)
        return;
    a->in_runq = true;
    a->runq_next = NULL;
    a->runq_prev = rt->runq_tail;
    if (rt->runq_tail)
        rt->runq_tail->runq_next = a;
    else
        rt->runq_head = a;
    rt->runq_tail = a;
}

static void
runq_remove(rt_runtime *rt, rt_actor *a)
{
    if (!a->in_runq)
        return;
    if (a->runq_prev)
        a->runq_prev->runq_next = a->runq_next;
    else
        rt->runq_head = a->runq_next;
    if (a->runq_next)
        a->runq_next->runq_prev = a->runq_prev;
    else
        rt->runq_tail = a->runq_prev;
    a->in_runq = false;
    a->runq_prev = a->runq_next = NULL;
}

static bool
has_work(const rt_actor *a)
{
    return a->sys.depth || a->mb.depth;
}

static void
run_turn(rt_runtime *rt, rt_actor *a)
{
    unsigned budget = a->spec->batch ? a->spec->batch : RT_BATCH_DEFAULT;

    while (budget > 0 && !a->exiting && !a->suspended && has_work(a)) {
        rt_msg *m;
        if (a->sys.depth) {
            m = rt_mailbox_pop(&a->sys);
        } else {
            if (!a->skip_fault) {
                double delay = 0;
                switch (rt_faults_check(rt->faults, a->stats->name, a->id, "recv", &delay)) {
                case RT_FAULT_CRASH:
                    rt_exit(a, RT_EXIT_CRASH, "injected fault at recv");
                    return;
                case RT_FAULT_DELAY:
                    a->suspended = true;
                    a->skip_fault = true;
                    ev_timer_set(&a->delay_w, delay / 1e3, 0.);
                    ev_timer_start(rt->loop, &a->delay_w);
                    return;
                case RT_FAULT_DROP:
                    rt_msg_free(rt_mailbox_pop(&a->mb));
                    a->stats->s.fault_drops++;
                    budget--;
                    continue;
                case RT_FAULT_NONE:
                    break;
                }
            }
            a->skip_fault = false;
            m = rt_mailbox_pop(&a->mb);
        }
        budget--;

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
    if (a->spec->after_turn && !a->exiting)
        a->spec->after_turn(a);
    if (has_work(a))
        runq_push(rt, a);
}

static void
on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_runtime *rt = w->data;

    /* One turn for each actor runnable now; those made runnable during the
     * round (or with messages left) wait for the next loop iteration. */
    rt_actor *last = rt->runq_tail;
    while (rt->runq_head) {
        rt_actor *a = rt->runq_head;
        runq_remove(rt, a);
        run_turn(rt, a);
        if (a == last)
            break;
    }
    reap_all(rt);
}

static void
on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    rt_runtime *rt = w->data;
    reap_all(rt);
    if (rt->runq_head) {
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

static void
on_delay_end(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_actor *a = w->data;
    a->suspended = false;
    if (has_work(a))
        runq_push(a->rt, a);
}

/* --- runtime ------------------------------------------------------------- */

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
    rt->table_cap = 64;
    rt->table = calloc(rt->table_cap, sizeof(*rt->table));
    if (!rt->table) {
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

    ev_prepare_init(&rt->prepare_w, on_prepare);
    ev_check_init(&rt->check_w, on_check);
    ev_idle_init(&rt->idle_w, on_idle);
    rt->prepare_w.data = rt->check_w.data = rt->idle_w.data = rt;
    ev_set_priority(&rt->check_w, EV_MINPRI);
    ev_prepare_start(rt->loop, &rt->prepare_w);
    ev_check_start(rt->loop, &rt->check_w);
    return rt;

fail:
    rt_faults_free(rt->faults);
    free(rt->table);
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
    while (rt->live) {
        rt_actor *newest = NULL;
        for (size_t i = 0; i < rt->table_cap; i++) {
            rt_actor *a = rt->table[i];
            if (a && !a->exiting && (!newest || a->id > newest->id))
                newest = a;
        }
        if (!newest) {
            reap_all(rt);
            continue;
        }
        rt_exit(newest, RT_EXIT_KILLED, "runtime destroyed");
        reap_all(rt);
    }
    ev_prepare_stop(rt->loop, &rt->prepare_w);
    ev_check_stop(rt->loop, &rt->check_w);
    ev_idle_stop(rt->loop, &rt->idle_w);
    if (rt->signals) {
        ev_signal_stop(rt->loop, &rt->sigterm_w);
        ev_signal_stop(rt->loop, &rt->sigint_w);
    }
    for (size_t i = 0; i < rt->nnames; i++)
        free(rt->names[i].name);
    free(rt->names);
    for (stats_entry *e = rt->stats_head, *next; e; e = next) {
        next = e->next;
        free(e->name);
        free(e);
    }
    rt_faults_free(rt->faults);
    rt_metrics_free_registry(rt->metrics);
    free(rt->table);
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
    for (;;) {
        rt_actor *newest = NULL;
        for (size_t i = 0; i < rt->table_cap; i++) {
            rt_actor *a = rt->table[i];
            if (a && !a->parent && !a->exiting && !a->stopping &&
                (!newest || a->id > newest->id))
                newest = a;
        }
        if (!newest)
            return;
        rt_stop_child(rt, newest->id);
    }
}

struct rt_metrics_registry **
rt_metrics_registry_of(rt_runtime *rt)
{
    return &rt->metrics;
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

double
rt_now_ms(rt_runtime *rt)
{
    return ev_now(rt->loop) * 1e3;
}

/* --- spawning and exits -------------------------------------------------- */

static void
free_actor(rt_actor *a)
{
    free(a->state);
    free(a->name);
    free(a);
}

/* Stops and frees a's timers and I/O watchers. */
static void
free_watchers(rt_runtime *rt, rt_actor *a)
{
    while (a->timers) {
        rt_timer *t = a->timers;
        a->timers = t->next;
        ev_timer_stop(rt->loop, &t->w);
        rt_msg_free(t->msg);
        free(t);
    }
    while (a->ios) {
        rt_io *io = a->ios;
        a->ios = io->next;
        ev_io_stop(rt->loop, &io->w);
        free(io);
    }
}

/* Stops and frees everything the runtime holds for a, calls terminate.
 * Returns how many queued messages were dropped. */
static size_t
release(rt_runtime *rt, rt_actor *a, rt_exit_kind kind)
{
    runq_remove(rt, a);
    ev_timer_stop(rt->loop, &a->delay_w);
    free_watchers(rt, a);
    if (a->init_called && a->spec->terminate)
        a->spec->terminate(a, kind);
    free_watchers(rt, a);   /* terminate may have started some again */
    return rt_mailbox_clear(&a->mb) + rt_mailbox_clear(&a->sys);
}

static int
encode_exit(const rt_actor *a, uint8_t *buf, size_t cap, size_t *len)
{
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, cap);
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 3);
    proto_mp_pack_str(&pk, "id", 2);
    msgpack_pack_uint64(&pk, a->id);
    proto_mp_pack_str(&pk, "kind", 4);
    msgpack_pack_uint32(&pk, a->exit_kind);
    proto_mp_pack_str(&pk, "reason", 6);
    proto_mp_pack_str(&pk, a->reason, strlen(a->reason));
    *len = b.len;
    return b.failed ? RT_ENOMEM : RT_OK;
}

int
rt_exit_info_decode(const proto_env *msg, rt_exit_info *out)
{
    memset(out, 0, sizeof(*out));
    if (msg->type != RT_T_EXIT)
        return RT_EINVAL;
    proto_mp_doc doc;
    if (proto_mp_parse(&doc, msg->payload, msg->payload_len) != PROTO_OK)
        return RT_EINVAL;
    const msgpack_object *id = proto_mp_map_get(&doc.root, "id");
    const msgpack_object *kind = proto_mp_map_get(&doc.root, "kind");
    const msgpack_object *reason = proto_mp_map_get(&doc.root, "reason");
    int r = RT_EINVAL;
    if (id && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        kind && kind->type == MSGPACK_OBJECT_POSITIVE_INTEGER && kind->via.u64 <= RT_EXIT_KILLED &&
        reason && reason->type == MSGPACK_OBJECT_STR && reason->via.str.size < RT_REASON_MAX) {
        out->id = id->via.u64;
        out->kind = (rt_exit_kind)kind->via.u64;
        memcpy(out->reason, reason->via.str.ptr, reason->via.str.size);
        r = RT_OK;
    }
    proto_mp_doc_free(&doc);
    return r;
}

static void
notify_parent(rt_runtime *rt, rt_actor *a)
{
    rt_actor *p = lookup(rt, a->parent);
    if (!p || p->exiting)
        return;
    uint8_t payload[RT_REASON_MAX + 64];
    size_t len;
    if (encode_exit(a, payload, sizeof(payload), &len) != RT_OK)
        return;
    proto_env env = { .type = RT_T_EXIT, .from = a->id, .to = p->id,
                      .payload = payload, .payload_len = len };
    rt_msg *m = rt_msg_new(&env);
    if (!m) {
        rt_error(p->who, "out of memory: exit signal of %s lost", a->who);
        return;
    }
    rt_mailbox_push_force(&p->sys, m);
    runq_push(rt, p);
}

static void
reap(rt_runtime *rt, rt_actor *a)
{
    size_t lost = release(rt, a, a->exit_kind);
    a->stats->s.lost_on_exit += lost;
    if (rt_exit_abnormal(a->exit_kind))
        a->stats->s.crashes++;

    rt_log_level lvl = rt_exit_abnormal(a->exit_kind) ? RT_LOG_WARN : RT_LOG_DEBUG;
    RT_LOG(lvl, a->who, "exited (%s)%s%s%s", rt_exit_kind_name(a->exit_kind),
           a->reason[0] ? ": " : "", a->reason,
           lost ? ", dropping queued messages" : "");

    unregister(rt, a);
    table_remove(rt, a);
    notify_parent(rt, a);
    if (!a->parent) {
        rt->top_live--;
        if (rt_exit_abnormal(a->exit_kind)) {
            rt->failed = true;
            snprintf(rt->last_failure, sizeof(rt->last_failure), "%s %s: %s", a->who,
                     rt_exit_kind_name(a->exit_kind), a->reason);
        }
        if (rt->top_live == 0 && rt->running)
            ev_break(rt->loop, EVBREAK_ONE);
    }
    free_actor(a);
}

static void
reap_all(rt_runtime *rt)
{
    while (rt->reap_head) {
        rt_actor *a = rt->reap_head;
        rt->reap_head = a->reap_next;
        if (!rt->reap_head)
            rt->reap_tail = NULL;
        reap(rt, a);
    }
}

static void
vexit(rt_actor *a, rt_exit_kind kind, const char *fmt, va_list ap)
{
    if (a->exiting)
        return;                 /* the first reason stands */
    a->exiting = true;
    a->exit_kind = kind;
    if (fmt)
        vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    runq_remove(a->rt, a);
    a->reap_next = NULL;
    if (a->rt->reap_tail)
        a->rt->reap_tail->reap_next = a;
    else
        a->rt->reap_head = a;
    a->rt->reap_tail = a;
    if (!ev_is_active(&a->rt->idle_w))
        ev_idle_start(a->rt->loop, &a->rt->idle_w);
}

void
rt_exit(rt_actor *self, rt_exit_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vexit(self, kind, fmt, ap);
    va_end(ap);
}

void
rt_crash(rt_actor *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vexit(self, RT_EXIT_CRASH, fmt, ap);
    va_end(ap);
}

int
rt_kill(rt_runtime *rt, rt_id id, rt_exit_kind kind, const char *reason)
{
    rt_actor *a = lookup(rt, id);
    if (!a || a->exiting)
        return RT_ENOACTOR;
    rt_exit(a, kind, "%s", reason ? reason : "");
    return RT_OK;
}

int
rt_stop_child(rt_runtime *rt, rt_id id)
{
    rt_actor *a = lookup(rt, id);
    if (!a || a->exiting)
        return RT_ENOACTOR;
    if (a->stopping)
        return RT_OK;
    a->stopping = true;
    int r = a->spec->shutdown ? a->spec->shutdown(a) : RT_OK;
    if (r != RT_PENDING)
        rt_exit(a, RT_EXIT_SHUTDOWN, "shutdown");
    return RT_OK;
}

rt_id
rt_spawn(rt_runtime *rt, rt_id parent, const rt_actor_spec *spec, const void *arg,
         const char *name, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = RT_OK;
    if (!spec || !spec->handle || !spec->name) {
        *err = RT_EINVAL;
        return 0;
    }
    if (name && find_name(rt, name)) {
        rt_error("runtime", "cannot spawn %s: the name is taken", name);
        *err = RT_EINVAL;
        return 0;
    }

    rt_actor *a = calloc(1, sizeof(*a));
    if (!a)
        goto nomem;
    a->rt = rt;
    a->spec = spec;
    a->parent = parent;
    a->id = rt->next_id++;
    if (spec->state_size && !(a->state = calloc(1, spec->state_size)))
        goto nomem;
    if (name && !(a->name = strdup(name)))
        goto nomem;
    if (!(a->stats = stats_for(rt, name ? name : spec->name)))
        goto nomem;
    snprintf(a->who, sizeof(a->who), "%s#%" PRIu64, a->stats->name, a->id);
    rt_mailbox_init(&a->mb, spec->mailbox_cap ? spec->mailbox_cap : RT_MAILBOX_DEFAULT,
                    spec->overflow);
    rt_mailbox_init(&a->sys, 1, RT_OVERFLOW_REJECT);
    ev_timer_init(&a->delay_w, on_delay_end, 0., 0.);
    a->delay_w.data = a;

    if (name) {
        if (rt->nnames == rt->names_cap) {
            size_t cap = rt->names_cap ? rt->names_cap * 2 : 8;
            name_entry *n = realloc(rt->names, cap * sizeof(*n));
            if (!n)
                goto nomem;
            rt->names = n;
            rt->names_cap = cap;
        }
        char *copy = strdup(name);
        if (!copy)
            goto nomem;
        rt->names[rt->nnames++] = (name_entry){ copy, a->id };
    }
    if (!table_insert(rt, a)) {
        unregister(rt, a);
        goto nomem;
    }
    if (!parent)
        rt->top_live++;
    a->stats->s.spawned++;

    double unused;
    const char *why = NULL;
    if (rt_faults_check(rt->faults, a->stats->name, a->id, "init", &unused) == RT_FAULT_CRASH) {
        why = "injected fault at init";
    } else {
        a->init_called = true;
        if (spec->init && spec->init(a, arg) != RT_OK)
            why = "init failed";
    }
    if (why || a->exiting) {
        /* The start failed: undo everything, synchronously; nobody is told
         * but the caller. */
        if (!why)
            why = a->reason;
        rt_warn(a->who, "start failed: %s", why);
        if (a->exiting) {
            /* init called rt_exit: take it off the reap list */
            rt_actor **pp = &rt->reap_head, *prev = NULL;
            while (*pp != a) {
                prev = *pp;
                pp = &(*pp)->reap_next;
            }
            *pp = a->reap_next;
            if (rt->reap_tail == a)
                rt->reap_tail = prev;
        }
        release(rt, a, RT_EXIT_CRASH);
        a->stats->s.crashes++;
        unregister(rt, a);
        table_remove(rt, a);
        if (!parent)
            rt->top_live--;
        free_actor(a);
        *err = RT_ERR;
        return 0;
    }
    rt_debug(a->who, "started");
    if (has_work(a))
        runq_push(rt, a);
    return a->id;

nomem:
    if (a)
        free_actor(a);
    *err = RT_ENOMEM;
    return 0;
}

bool
rt_alive(rt_runtime *rt, rt_id id)
{
    rt_actor *a = lookup(rt, id);
    return a && !a->exiting;
}

rt_id rt_self(const rt_actor *self) { return self->id; }
rt_id rt_parent(const rt_actor *self) { return self->parent; }
rt_runtime *rt_of(const rt_actor *self) { return self->rt; }
void *rt_state(rt_actor *self) { return self->state; }
const char *rt_who(const rt_actor *self) { return self->who; }
const char *rt_actor_name(const rt_actor *self) { return self->stats->name; }

rt_fault_action
rt_fault_point(rt_actor *self, const char *point, double *delay_ms)
{
    double d = 0;
    rt_fault_action act = rt_faults_check(self->rt->faults, self->stats->name, self->id,
                                          point, &d);
    if (act == RT_FAULT_DROP)
        act = RT_FAULT_NONE;    /* drops apply to messages only */
    if (delay_ms)
        *delay_ms = d;
    return act;
}

/* --- sending -------------------------------------------------------------- */

int
rt_send_msg(rt_runtime *rt, rt_id to, rt_msg *m)
{
    rt_actor *a = lookup(rt, to);
    if (!a || a->exiting) {
        rt_msg_free(m);
        return RT_ENOACTOR;
    }
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
    if (a->mb.high_water > a->stats->s.high_water)
        a->stats->s.high_water = a->mb.high_water;
    runq_push(rt, a);
    return RT_OK;
}

int
rt_send(rt_runtime *rt, rt_id from, rt_id to, uint32_t type, uint64_t corr,
        const void *payload, size_t len)
{
    if (!rt_alive(rt, to))
        return RT_ENOACTOR;
    proto_env env = { .type = type, .from = from, .to = to, .corr = corr,
                      .payload = payload, .payload_len = len };
    rt_msg *m = rt_msg_new(&env);
    if (!m)
        return len > PROTO_ENV_PAYLOAD_MAX ? RT_EINVAL : RT_ENOMEM;
    return rt_send_msg(rt, to, m);
}

int
rt_send_named(rt_runtime *rt, rt_id from, const char *to, uint32_t type, uint64_t corr,
              const void *payload, size_t len)
{
    rt_id id = rt_whereis(rt, to);
    return id ? rt_send(rt, from, id, type, corr, payload, len) : RT_ENOACTOR;
}

/* --- timers --------------------------------------------------------------- */

static void
unlink_timer(rt_actor *a, rt_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        a->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rt_timer *t = (rt_timer *)w;
    rt_actor *a = t->owner;
    unlink_timer(a, t);
    rt_mailbox_push_force(&a->mb, t->msg);
    if (a->mb.high_water > a->stats->s.high_water)
        a->stats->s.high_water = a->mb.high_water;
    free(t);
    runq_push(a->rt, a);
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
    t->next = self->timers;
    if (self->timers)
        self->timers->prev = t;
    self->timers = t;
    ev_timer_init(&t->w, on_timer, ms > 0 ? ms / 1e3 : 0., 0.);
    ev_timer_start(self->rt->loop, &t->w);
    return t->id;
}

bool
rt_cancel_timer(rt_actor *self, rt_timer_id timer)
{
    for (rt_timer *t = self->timers; t; t = t->next) {
        if (t->id == timer) {
            ev_timer_stop(self->rt->loop, &t->w);
            unlink_timer(self, t);
            rt_msg_free(t->msg);
            free(t);
            return true;
        }
    }
    return false;
}

/* --- I/O ------------------------------------------------------------------ */

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
    io->next = self->ios;
    if (self->ios)
        self->ios->prev = io;
    self->ios = io;
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
    if (io->prev)
        io->prev->next = io->next;
    else
        self->ios = io->next;
    if (io->next)
        io->next->prev = io->prev;
    free(io);
}
