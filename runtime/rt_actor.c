/*
 * Actors: the table of live actors by id, spawning, and exits.
 *
 * Exits are deferred, as Redis frees clients: rt_exit only marks the actor and
 * puts it on the reap list; the reap step (rt_reap_all, from the loop hooks in
 * rt_sched.c) frees it after the current callback returned, so no actor is
 * freed under its own feet. Reaping stops the actor's watchers, calls its
 * terminate, and tells its parent with an RT_T_EXIT message.
 */
#include "runtime/rt_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mp.h"
#include "runtime/log.h"

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

/* --- the actor table ------------------------------------------------------ */

rt_actor *
rt_table_newest(rt_runtime *rt, bool top_only)
{
    rt_actor *newest = NULL;
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&rt->actors, &pos, &e);) {
        rt_actor *a = e->value;
        if (a->exiting || (top_only && (a->parent || a->stopping)))
            continue;
        if (!newest || a->id > newest->id)
            newest = a;
    }
    return newest;
}

/* --- exit signals ------------------------------------------------------------ */

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
    rt_actor *p = rt_table_get(rt, a->parent);
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
    rt_runq_push(rt, p);
}

/* --- releasing and reaping ----------------------------------------------------- */

static void
free_actor(rt_actor *a)
{
    free(a->state);
    free(a->name);
    free(a);
}

/* Stops and frees everything the runtime holds for a, calls terminate.
 * Returns how many queued messages were dropped. */
static size_t
release(rt_runtime *rt, rt_actor *a, rt_exit_kind kind)
{
    rt_runq_remove(rt, a);
    rt_delay_stop(a);
    rt_timers_free(a);
    rt_ios_free(a);
    if (a->init_called && a->spec->terminate)
        a->spec->terminate(a, kind);
    rt_timers_free(a);      /* terminate may have started some again */
    rt_ios_free(a);
    return rt_mailbox_clear(&a->mb) + rt_mailbox_clear(&a->sys);
}

/* Takes a out of the table and the names; for a top-level actor, counts it
 * out of rt_run's live set. */
static void
unlist(rt_runtime *rt, rt_actor *a)
{
    rt_name_remove(rt, a);
    rt_map_del_u64(&rt->actors, a->id);
    if (!a->parent)
        rt->top_live--;
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

    unlist(rt, a);
    notify_parent(rt, a);
    if (!a->parent) {
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

void
rt_reap_all(rt_runtime *rt)
{
    for (rt_link *l; (l = rt_list_pop_front(&rt->reap));)
        reap(rt, RT_CONTAINER(l, rt_actor, reap_link));
}

/* --- exits -------------------------------------------------------------------- */

static void
vexit(rt_actor *a, rt_exit_kind kind, const char *fmt, va_list ap)
{
    if (a->exiting)
        return;                 /* the first reason stands */
    a->exiting = true;
    a->exit_kind = kind;
    if (fmt)
        vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    rt_runq_remove(a->rt, a);
    rt_list_push_back(&a->rt->reap, &a->reap_link);
    rt_sched_wake(a->rt);
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
    rt_actor *a = rt_table_get(rt, id);
    if (!a || a->exiting)
        return RT_ENOACTOR;
    rt_exit(a, kind, "%s", reason ? reason : "");
    return RT_OK;
}

int
rt_stop_child(rt_runtime *rt, rt_id id)
{
    rt_actor *a = rt_table_get(rt, id);
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

/* --- spawning ------------------------------------------------------------------ */

/* Allocates a, its state, its name and stats; NULL when out of memory. */
static rt_actor *
new_actor(rt_runtime *rt, rt_id parent, const rt_actor_spec *spec, const char *name)
{
    rt_actor *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->rt = rt;
    a->spec = spec;
    a->parent = parent;
    a->id = rt->next_id++;
    if ((spec->state_size && !(a->state = calloc(1, spec->state_size))) ||
        (name && !(a->name = strdup(name))) ||
        !(a->stats = rt_stats_for(rt, name ? name : spec->name))) {
        free_actor(a);
        return NULL;
    }
    snprintf(a->who, sizeof(a->who), "%s#%" PRIu64, a->stats->name, a->id);
    rt_mailbox_init(&a->mb, spec->mailbox_cap ? spec->mailbox_cap : RT_MAILBOX_DEFAULT,
                    spec->overflow);
    rt_mailbox_init(&a->sys, 1, RT_OVERFLOW_REJECT);
    rt_delay_init(a);
    return a;
}

/* Registers a's name and puts a in the table; false when out of memory (then
 * neither holds a). */
static bool
enlist(rt_runtime *rt, rt_actor *a)
{
    if (a->name && !rt_name_add(rt, a->name, a->id))
        return false;
    if (!rt_map_put_u64(&rt->actors, a->id, a)) {
        rt_name_remove(rt, a);
        return false;
    }
    if (!a->parent)
        rt->top_live++;
    return true;
}

/* Runs init (or an injected "init" fault). Returns NULL when a started, else
 * why it did not. */
static const char *
start(rt_runtime *rt, rt_actor *a, const void *arg)
{
    double unused;
    if (rt_faults_check(rt->faults, a->stats->name, a->id, "init", &unused) == RT_FAULT_CRASH)
        return "injected fault at init";
    a->init_called = true;
    if (a->spec->init && a->spec->init(a, arg) != RT_OK)
        return "init failed";
    return a->exiting ? a->reason : NULL;
}

/* The start failed: undo everything, synchronously; nobody is told but the
 * caller. */
static void
undo_start(rt_runtime *rt, rt_actor *a, const char *why)
{
    rt_warn(a->who, "start failed: %s", why);
    if (a->exiting)
        rt_list_remove(&rt->reap, &a->reap_link);   /* init called rt_exit */
    release(rt, a, RT_EXIT_CRASH);
    a->stats->s.crashes++;
    unlist(rt, a);
    free_actor(a);
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
    if (name && rt_name_find(rt, name)) {
        rt_error("runtime", "cannot spawn %s: the name is taken", name);
        *err = RT_EINVAL;
        return 0;
    }
    rt_actor *a = new_actor(rt, parent, spec, name);
    if (!a || !enlist(rt, a)) {
        if (a)
            free_actor(a);
        *err = RT_ENOMEM;
        return 0;
    }
    a->stats->s.spawned++;

    const char *why = start(rt, a, arg);
    if (why) {
        undo_start(rt, a, why);
        *err = RT_ERR;
        return 0;
    }
    rt_debug(a->who, "started");
    if (rt_has_work(a))
        rt_runq_push(rt, a);
    return a->id;
}

/* --- accessors ------------------------------------------------------------------ */

bool
rt_alive(rt_runtime *rt, rt_id id)
{
    rt_actor *a = rt_table_get(rt, id);
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
