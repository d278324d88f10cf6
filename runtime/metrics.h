/*
 * Metrics: named counters, gauges and latency histograms, kept by the runtime for all its actors
 * (so they survive restarts), rendered in the Prometheus text format.
 *
 * A metric is a name plus an optional label set written as Prometheus does,
 * e.g. rt_metric_get(rt, RT_COUNTER, "app_acks_total", "result=\"ok\"",
 * "Acks sent."). Look a metric up once (at init) and keep the pointer: it
 * stays valid for the runtime's life. Updating is a plain add on the loop
 * thread.
 */
#ifndef CHATD_RUNTIME_METRICS_H
#define CHATD_RUNTIME_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"

typedef enum rt_metric_kind {
    RT_COUNTER,
    RT_GAUGE,
    RT_HISTOGRAM,           /* rt_histogram_get, not rt_metric_get */
} rt_metric_kind;

typedef struct rt_metric {
    double value;
} rt_metric;

/*
 * Returns the metric with this name and labels (labels may be NULL), creating
 * it at 0 on first use. help is the HELP text for the name (the first one
 * given counts). Returns NULL only when out of memory or when name was
 * registered before with another kind.
 */
rt_metric *rt_metric_get(rt_runtime *rt, rt_metric_kind kind, const char *name,
                         const char *labels, const char *help);

static inline void
rt_metric_add(rt_metric *m, double n)
{
    if (m)
        m->value += n;
}

static inline void
rt_metric_set(rt_metric *m, double v)
{
    if (m)
        m->value = v;
}

/*
 * Histograms of durations in seconds, with one fixed set of buckets: upper
 * bounds of 50 us x 2^(k/4), k = 0 .. RT_HISTOGRAM_BUCKETS - 1 (50 us to
 * 2.7 s, each bound 19% above the one before), then +Inf. Rendered as
 * Prometheus histograms (NAME_bucket{le=...} cumulative, NAME_sum,
 * NAME_count). Same lifetime and lookup rules as rt_metric_get; NULL when
 * out of memory or when the name is registered with another kind.
 */
#define RT_HISTOGRAM_BUCKETS 64
#define RT_HISTOGRAM_FIRST_S 50e-6

typedef struct rt_histogram rt_histogram;

rt_histogram *rt_histogram_get(rt_runtime *rt, const char *name, const char *labels,
                               const char *help);

/* Counts one duration (seconds; a negative one counts as 0). h may be NULL. */
void rt_histogram_observe(rt_histogram *h, double seconds);

/* The upper bound of bucket k (0 <= k < RT_HISTOGRAM_BUCKETS), seconds. */
double rt_histogram_bound(int k);

/* Observations so far, and how many of them were <= bound k (k as above). */
uint64_t rt_histogram_count(const rt_histogram *h);
uint64_t rt_histogram_below(const rt_histogram *h, int k);

/* The current value of a metric, 0 when it does not exist. */
double rt_metric_value(rt_runtime *rt, const char *name, const char *labels);

/*
 * Renders every metric, then the runtime's per-actor stats and the faults
 * fired, in the Prometheus text format, into a malloc'd, NUL-terminated
 * string the caller frees (its length in *len when len is not NULL). The
 * runtime's own series are named PREFIX_NAME, e.g. with prefix "app":
 * app_actor_up{actor="..."}, app_actor_restarts_total,
 * app_actor_crashes_total, app_actor_messages_handled_total,
 * app_mailbox_depth, app_mailbox_high_water, app_mailbox_overflows_total,
 * app_mailbox_shed_total, app_fault_drops_total and
 * app_faults_injected_total{action="..."} (prefix NULL or "": the bare
 * names). The program's metrics keep the names
 * they were registered under. Returns NULL when out of memory.
 */
char *rt_metrics_render(rt_runtime *rt, const char *prefix, size_t *len);

/* --- the registry (for rt.c) --------------------------------------------------- */

/*
 * The registry behind rt_metric_get: rt_create makes one per runtime
 * (reached with rt_metrics_of), rt_destroy frees it with every metric.
 * Returns NULL when out of memory.
 */
rt_metrics *rt_metrics_new(void);
void rt_metrics_free(rt_metrics *reg);

#endif
