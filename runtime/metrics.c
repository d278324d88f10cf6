#include "runtime/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    rt_metric m;            /* first: a series pointer is its metric */
    char *labels;           /* "" when none */
    struct series *next;
} series;

typedef struct family {
    char *name;
    char *help;
    rt_metric_kind kind;
    series *head, *tail;
    struct family *next;
} family;

struct rt_metrics_registry {
    family *head, *tail;
};

/* Defined in rt.c: where the runtime keeps its registry. */
struct rt_metrics_registry **rt_metrics_registry_of(rt_runtime *rt);
void rt_metrics_free_registry(struct rt_metrics_registry *reg);

static family *
find_family(struct rt_metrics_registry *reg, const char *name)
{
    for (family *f = reg ? reg->head : NULL; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static series *
find_series(family *f, const char *labels)
{
    for (series *s = f->head; s; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    return NULL;
}

rt_metric *
rt_metric_get(rt_runtime *rt, rt_metric_kind kind, const char *name, const char *labels,
              const char *help)
{
    struct rt_metrics_registry **regp = rt_metrics_registry_of(rt);
    if (!*regp && !(*regp = calloc(1, sizeof(**regp))))
        return NULL;
    struct rt_metrics_registry *reg = *regp;
    if (!labels)
        labels = "";

    family *f = find_family(reg, name);
    if (f && f->kind != kind)
        return NULL;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f || !(f->name = strdup(name)) || !(f->help = strdup(help ? help : ""))) {
            if (f)
                free(f->name);
            free(f);
            return NULL;
        }
        f->kind = kind;
        if (reg->tail)
            reg->tail->next = f;
        else
            reg->head = f;
        reg->tail = f;
    }
    series *s = find_series(f, labels);
    if (s)
        return &s->m;
    s = calloc(1, sizeof(*s));
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        return NULL;
    }
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    return &s->m;
}

double
rt_metric_value(rt_runtime *rt, const char *name, const char *labels)
{
    family *f = find_family(*rt_metrics_registry_of(rt), name);
    series *s = f ? find_series(f, labels ? labels : "") : NULL;
    return s ? s->m.value : 0;
}

void
rt_metrics_free_registry(struct rt_metrics_registry *reg)
{
    if (!reg)
        return;
    for (family *f = reg->head, *fn; f; f = fn) {
        fn = f->next;
        for (series *s = f->head, *sn; s; s = sn) {
            sn = s->next;
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    free(reg);
}

/* --- rendering --------------------------------------------------------- */

typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out;

static void __attribute__((format(printf, 2, 3)))
put(out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

static void
put_value(out *o, const char *name, const char *labels, double v)
{
    if (labels && *labels)
        put(o, "%s{%s} %.17g\n", name, labels, v);
    else
        put(o, "%s %.17g\n", name, v);
}

typedef struct stat_field {
    const char *name;
    const char *help;
    const char *type;
} stat_field;

static const stat_field stat_fields[] = {
    { "chatd_actor_up", "1 when an instance of the actor is alive.", "gauge" },
    { "chatd_actor_restarts_total", "Restarts of the actor by its supervisor.", "counter" },
    { "chatd_actor_crashes_total", "Abnormal exits of the actor.", "counter" },
    { "chatd_actor_messages_handled_total", "Messages the actor handled.", "counter" },
    { "chatd_mailbox_depth", "Messages queued in the actor's mailbox.", "gauge" },
    { "chatd_mailbox_high_water", "Largest mailbox depth seen.", "gauge" },
    { "chatd_mailbox_overflows_total", "Sends that found the mailbox full.", "counter" },
    { "chatd_mailbox_shed_total", "Messages dropped by a drop-oldest mailbox.", "counter" },
    { "chatd_fault_drops_total", "Messages dropped by fault injection.", "counter" },
};
#define NSTAT (sizeof(stat_fields) / sizeof(stat_fields[0]))

typedef struct stat_ctx {
    out *o;
    size_t field;
} stat_ctx;

static void
put_stat(const rt_stats *s, void *ud)
{
    stat_ctx *c = ud;
    double v = 0;
    switch (c->field) {
    case 0: v = s->alive; break;
    case 1: v = (double)s->restarts; break;
    case 2: v = (double)s->crashes; break;
    case 3: v = (double)s->handled; break;
    case 4: v = (double)s->depth; break;
    case 5: v = (double)s->high_water; break;
    case 6: v = (double)s->overflows; break;
    case 7: v = (double)s->shed; break;
    case 8: v = (double)s->fault_drops; break;
    }
    put(c->o, "%s{actor=\"%s\"} %.17g\n", stat_fields[c->field].name, s->name, v);
}

char *
rt_metrics_render(rt_runtime *rt, size_t *len)
{
    out o = { .cap = 4096 };
    if (!(o.buf = malloc(o.cap)))
        return NULL;
    o.buf[0] = '\0';

    for (family *f = (*rt_metrics_registry_of(rt)) ? (*rt_metrics_registry_of(rt))->head : NULL;
         f; f = f->next) {
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
            f->kind == RT_COUNTER ? "counter" : "gauge");
        for (series *s = f->head; s; s = s->next)
            put_value(&o, f->name, s->labels, s->m.value);
    }
    for (size_t i = 0; i < NSTAT; i++) {
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", stat_fields[i].name, stat_fields[i].help,
            stat_fields[i].name, stat_fields[i].type);
        stat_ctx c = { &o, i };
        rt_stats_foreach(rt, put_stat, &c);
    }
    rt_faults *faults = rt_faults_of(rt);
    put(&o, "# HELP chatd_faults_injected_total Faults fired by fault injection.\n"
            "# TYPE chatd_faults_injected_total counter\n");
    for (int a = RT_FAULT_CRASH; a <= RT_FAULT_DROP; a++)
        put(&o, "chatd_faults_injected_total{action=\"%s\"} %" PRIu64 "\n",
            rt_fault_action_name((rt_fault_action)a), rt_faults_fired(faults, (rt_fault_action)a));

    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    if (len)
        *len = o.len;
    return o.buf;
}
