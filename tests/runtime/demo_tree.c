#include "tests/runtime/demo_tree.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "proto/mp.h"
#include "runtime/log.h"
#include "runtime/sup.h"

enum {
    DEMO_TICK = RT_T_TEST_BASE + 0x400, /* timer: source produces, monitor reports */
    DEMO_ITEM,              /* payload: msgpack uint, the item's number */
};

static const demo_config *config;
static demo_totals *totals;
static uint64_t next_item;  /* numbering goes on across source restarts */

static int
send_item(rt_actor *self, const char *to, uint64_t n)
{
    uint8_t buf[16];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, buf, sizeof(buf));
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_uint64(&pk, n);
    return rt_send_named(rt_of(self), rt_self(self), to, DEMO_ITEM, 0, b.data, b.len);
}

static bool
read_item(const proto_env *m, uint64_t *n)
{
    proto_mp_doc doc;
    if (proto_mp_parse(&doc, m->payload, m->payload_len) != PROTO_OK)
        return false;
    bool ok = doc.root.type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (ok)
        *n = doc.root.via.u64;
    proto_mp_doc_free(&doc);
    return ok;
}

/* --- source --- */

static int
source_init(rt_actor *self, const void *arg)
{
    (void)arg;
    return rt_send_after(self, config->tick_ms, DEMO_TICK, 0, NULL, 0) ? RT_OK : RT_ERR;
}

static int
source_handle(rt_actor *self, const proto_env *m)
{
    if (m->type != DEMO_TICK)
        return RT_OK;
    int r = send_item(self, "worker", ++next_item);
    if (r == RT_OK)
        totals->produced++;
    else
        rt_debug(rt_who(self), "item %" PRIu64 " not sent (%d)", next_item, r);
    return rt_send_after(self, config->tick_ms, DEMO_TICK, 0, NULL, 0) ? RT_OK : RT_ERR;
}

/* --- worker --- */

static int
worker_handle(rt_actor *self, const proto_env *m)
{
    uint64_t n;
    if (m->type != DEMO_ITEM || !read_item(m, &n))
        return RT_ERR;
    send_item(self, "sink", n);
    return RT_OK;
}

/* --- sink --- */

typedef struct sink_state {
    uint64_t last;
} sink_state;

static int
sink_handle(rt_actor *self, const proto_env *m)
{
    sink_state *st = rt_state(self);
    uint64_t n;
    if (m->type != DEMO_ITEM || !read_item(m, &n))
        return RT_ERR;
    if (st->last && n > st->last + 1)
        totals->gaps += n - st->last - 1;
    st->last = n;
    totals->delivered++;
    return RT_OK;
}

/* --- monitor --- */

static void
print_one(const rt_stats *s, void *ud)
{
    (void)ud;
    printf("  %-10s %s handled=%-6" PRIu64 " crashes=%-3" PRIu64 " restarts=%-3" PRIu64
           " fault_drops=%-3" PRIu64 " lost_on_exit=%-3" PRIu64 " depth=%zu hwm=%zu\n",
           s->name, s->alive ? "up  " : "down", s->handled, s->crashes, s->restarts,
           s->fault_drops, s->lost_on_exit, s->depth, s->high_water);
}

void
demo_print_stats(rt_runtime *rt)
{
    rt_stats_foreach(rt, print_one, NULL);
    rt_faults *f = rt_faults_of(rt);
    printf("  faults fired: crash=%" PRIu64 " delay=%" PRIu64 " drop=%" PRIu64 "\n",
           rt_faults_fired(f, RT_FAULT_CRASH), rt_faults_fired(f, RT_FAULT_DELAY),
           rt_faults_fired(f, RT_FAULT_DROP));
    fflush(stdout);
}

static int
monitor_init(rt_actor *self, const void *arg)
{
    (void)arg;
    return rt_send_after(self, config->report_ms, DEMO_TICK, 0, NULL, 0) ? RT_OK : RT_ERR;
}

static int
monitor_handle(rt_actor *self, const proto_env *m)
{
    if (m->type != DEMO_TICK)
        return RT_OK;
    totals->reports++;
    if (config->print) {
        printf("t=%.1fs produced=%" PRIu64 " delivered=%" PRIu64 " lost=%" PRIu64 "\n",
               totals->reports * config->report_ms / 1e3, totals->produced,
               totals->delivered, totals->gaps);
        demo_print_stats(rt_of(self));
    }
    return rt_send_after(self, config->report_ms, DEMO_TICK, 0, NULL, 0) ? RT_OK : RT_ERR;
}

static const rt_actor_spec source_spec = {
    .name = "source", .init = source_init, .handle = source_handle,
};
static const rt_actor_spec worker_spec = {
    .name = "worker", .handle = worker_handle,
    .mailbox_cap = 256, .overflow = RT_OVERFLOW_REJECT,
};
static const rt_actor_spec sink_spec = {
    .name = "sink", .state_size = sizeof(sink_state), .handle = sink_handle,
    .mailbox_cap = 256, .overflow = RT_OVERFLOW_DROP_OLDEST,
};
static const rt_actor_spec monitor_spec = {
    .name = "monitor", .init = monitor_init, .handle = monitor_handle,
};

static const rt_child_spec pipeline_children[] = {
    { .name = "source", .actor = &source_spec, .restart = RT_PERMANENT },
    { .name = "worker", .actor = &worker_spec, .restart = RT_PERMANENT },
    { .name = "sink", .actor = &sink_spec, .restart = RT_PERMANENT },
};
static const rt_sup_spec pipeline_spec = {
    .strategy = RT_REST_FOR_ONE, .intensity = 10, .period_ms = 2000,
    .backoff_min_ms = 5, .backoff_max_ms = 200,
    .children = pipeline_children, .nchildren = 3,
};
static const rt_child_spec root_children[] = {
    { .name = "pipeline", .sup = &pipeline_spec, .restart = RT_PERMANENT },
    { .name = "monitor", .actor = &monitor_spec, .restart = RT_PERMANENT },
};
static const rt_sup_spec root_spec = {
    .strategy = RT_ONE_FOR_ONE, .intensity = 10, .period_ms = 10000,
    .backoff_min_ms = 50, .backoff_max_ms = 1000,
    .children = root_children, .nchildren = 2,
};

rt_id
demo_start(rt_runtime *rt, const demo_config *cfg, demo_totals *t)
{
    config = cfg;
    totals = t;
    next_item = 0;
    return rt_sup_start(rt, 0, &root_spec, "root", NULL);
}
