#include "runtime/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/grow.h"
#include "runtime/list.h"

/* A histogram's counts: per bucket (not cumulative), the last one +Inf. */
struct rt_histogram {
    uint64_t counts[RT_HISTOGRAM_BUCKETS + 1];
    uint64_t count;
    double sum;
};

typedef struct series {
    rt_metric m;            /* first: a series pointer is its metric */
    rt_histogram *hist;     /* a histogram's counts; NULL for the other kinds */
    char *labels;           /* "" when none */
    rt_link link;           /* in family.series, first-use order */
} series;

typedef struct family {
    char *name;
    char *help;
    rt_metric_kind kind;
    rt_list series;
    rt_link link;           /* in rt_metrics.families, first-use order */
} family;

struct rt_metrics {
    rt_list families;
};

rt_metrics *
rt_metrics_new(void)
{
    return calloc(1, sizeof(rt_metrics));
}

void
rt_metrics_free(rt_metrics *reg)
{
    if (!reg)
        return;
    for (rt_link *fl; (fl = rt_list_pop_front(&reg->families));) {
        family *f = RT_CONTAINER(fl, family, link);
        for (rt_link *sl; (sl = rt_list_pop_front(&f->series));) {
            series *s = RT_CONTAINER(sl, series, link);
            free(s->hist);
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    free(reg);
}

static family *
find_family(rt_metrics *reg, const char *name)
{
    for (rt_link *l = reg->families.head; l; l = l->next) {
        family *f = RT_CONTAINER(l, family, link);
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static series *
find_series(family *f, const char *labels)
{
    for (rt_link *l = f->series.head; l; l = l->next) {
        series *s = RT_CONTAINER(l, series, link);
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

static family *
add_family(rt_metrics *reg, rt_metric_kind kind, const char *name, const char *help)
{
    family *f = calloc(1, sizeof(*f));
    if (!f || !(f->name = strdup(name)) || !(f->help = strdup(help ? help : ""))) {
        if (f)
            free(f->name);
        free(f);
        return NULL;
    }
    f->kind = kind;
    rt_list_push_back(&reg->families, &f->link);
    return f;
}

static series *
get_series(rt_runtime *rt, rt_metric_kind kind, const char *name, const char *labels,
           const char *help)
{
    rt_metrics *reg = rt_metrics_of(rt);
    if (!labels)
        labels = "";
    family *f = find_family(reg, name);
    if (f && f->kind != kind)
        return NULL;
    if (!f && !(f = add_family(reg, kind, name, help)))
        return NULL;
    series *s = find_series(f, labels);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s || !(s->labels = strdup(labels)) ||
        (kind == RT_HISTOGRAM && !(s->hist = calloc(1, sizeof(*s->hist))))) {
        if (s)
            free(s->labels);
        free(s);
        return NULL;
    }
    rt_list_push_back(&f->series, &s->link);
    return s;
}

rt_metric *
rt_metric_get(rt_runtime *rt, rt_metric_kind kind, const char *name, const char *labels,
              const char *help)
{
    if (kind == RT_HISTOGRAM)
        return NULL;
    series *s = get_series(rt, kind, name, labels, help);
    return s ? &s->m : NULL;
}

rt_histogram *
rt_histogram_get(rt_runtime *rt, const char *name, const char *labels, const char *help)
{
    series *s = get_series(rt, RT_HISTOGRAM, name, labels, help);
    return s ? s->hist : NULL;
}

double
rt_histogram_bound(int k)
{
    return RT_HISTOGRAM_FIRST_S * exp2(k / 4.0);
}

void
rt_histogram_observe(rt_histogram *h, double seconds)
{
    if (!h)
        return;
    if (!(seconds > 0))     /* negative (clocks of two nodes) or NaN */
        seconds = 0;
    int k = 0;
    if (seconds > RT_HISTOGRAM_FIRST_S) {
        double x = ceil(4 * log2(seconds / RT_HISTOGRAM_FIRST_S) - 1e-9);
        k = x > RT_HISTOGRAM_BUCKETS ? RT_HISTOGRAM_BUCKETS : (int)x;
    }
    h->counts[k]++;
    h->count++;
    h->sum += seconds;
}

uint64_t
rt_histogram_count(const rt_histogram *h)
{
    return h ? h->count : 0;
}

uint64_t
rt_histogram_below(const rt_histogram *h, int k)
{
    uint64_t n = 0;
    for (int i = 0; h && i <= k && i <= RT_HISTOGRAM_BUCKETS; i++)
        n += h->counts[i];
    return n;
}

double
rt_metric_value(rt_runtime *rt, const char *name, const char *labels)
{
    family *f = find_family(rt_metrics_of(rt), name);
    series *s = f ? find_series(f, labels ? labels : "") : NULL;
    return s ? s->m.value : 0;
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
        if (!rt_grow((void **)&o->buf, &o->cap, o->len + (size_t)n + 1, 1)) {
            o->failed = true;
            return;
        }
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

/* NAME_bucket{LABELS,le="..."} cumulative counts, then NAME_sum and NAME_count. */
static void
put_histogram(out *o, const char *name, const char *labels, const rt_histogram *h)
{
    const char *sep = *labels ? "," : "";
    uint64_t below = 0;
    for (int k = 0; k <= RT_HISTOGRAM_BUCKETS; k++) {
        below += h->counts[k];
        if (k < RT_HISTOGRAM_BUCKETS)
            put(o, "%s_bucket{%s%sle=\"%.6g\"} %" PRIu64 "\n", name, labels, sep,
                rt_histogram_bound(k), below);
        else
            put(o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, below);
    }
    char n[256];
    snprintf(n, sizeof(n), "%s_sum", name);
    put_value(o, n, labels, h->sum);
    snprintf(n, sizeof(n), "%s_count", name);
    put_value(o, n, labels, (double)h->count);
}

/* The prefix and its separator: "app" gives "app_", NULL or "" none. */
typedef struct ns {
    const char *prefix, *sep;
} ns;

static void
put_header(out *o, ns n, const char *name, const char *help, const char *type)
{
    put(o, "# HELP %s%s%s %s\n# TYPE %s%s%s %s\n", n.prefix, n.sep, name, help, n.prefix,
        n.sep, name, type);
}

typedef struct stat_field {
    const char *name;
    const char *help;
    const char *type;
} stat_field;

static const stat_field stat_fields[] = {
    { "actor_up", "1 when an instance of the actor is alive.", "gauge" },
    { "actor_restarts_total", "Restarts of the actor by its supervisor.", "counter" },
    { "actor_crashes_total", "Abnormal exits of the actor.", "counter" },
    { "actor_messages_handled_total", "Messages the actor handled.", "counter" },
    { "mailbox_depth", "Messages queued in the actor's mailbox.", "gauge" },
    { "mailbox_high_water", "Largest mailbox depth seen.", "gauge" },
    { "mailbox_overflows_total", "Sends that found the mailbox full.", "counter" },
    { "mailbox_shed_total", "Messages dropped by a drop-oldest mailbox.", "counter" },
    { "fault_drops_total", "Messages dropped by fault injection.", "counter" },
};
#define NSTAT (sizeof(stat_fields) / sizeof(stat_fields[0]))

typedef struct stat_ctx {
    out *o;
    ns n;
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
    put(c->o, "%s%s%s{actor=\"%s\"} %.17g\n", c->n.prefix, c->n.sep, stat_fields[c->field].name,
        s->name, v);
}

static void
put_runtime(out *o, rt_runtime *rt, ns n)
{
    for (size_t i = 0; i < NSTAT; i++) {
        put_header(o, n, stat_fields[i].name, stat_fields[i].help, stat_fields[i].type);
        stat_ctx c = { o, n, i };
        rt_stats_foreach(rt, put_stat, &c);
    }
    rt_faults *faults = rt_faults_of(rt);
    put_header(o, n, "faults_injected_total", "Faults fired by fault injection.", "counter");
    for (int a = RT_FAULT_CRASH; a <= RT_FAULT_DROP; a++)
        put(o, "%s%sfaults_injected_total{action=\"%s\"} %" PRIu64 "\n", n.prefix, n.sep,
            rt_fault_action_name((rt_fault_action)a), rt_faults_fired(faults, (rt_fault_action)a));
}

char *
rt_metrics_render(rt_runtime *rt, const char *prefix, size_t *len)
{
    out o = { .cap = 4096 };
    if (!(o.buf = malloc(o.cap)))
        return NULL;
    o.buf[0] = '\0';

    static const char *const kinds[] = {
        [RT_COUNTER] = "counter", [RT_GAUGE] = "gauge", [RT_HISTOGRAM] = "histogram",
    };
    for (rt_link *fl = rt_metrics_of(rt)->families.head; fl; fl = fl->next) {
        family *f = RT_CONTAINER(fl, family, link);
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kinds[f->kind]);
        for (rt_link *sl = f->series.head; sl; sl = sl->next) {
            series *s = RT_CONTAINER(sl, series, link);
            if (s->hist)
                put_histogram(&o, f->name, s->labels, s->hist);
            else
                put_value(&o, f->name, s->labels, s->m.value);
        }
    }
    ns n = { "", "" };
    if (prefix && *prefix)
        n = (ns){ prefix, "_" };
    put_runtime(&o, rt, n);

    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    if (len)
        *len = o.len;
    return o.buf;
}
