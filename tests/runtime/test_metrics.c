/* Metrics: counters, gauges and histograms by name and labels, rendered for Prometheus
 * together with every actor's stats. */
#include "tests/runtime/rt_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"

/* What test_render_exact renders, as the runtime rendered it before the
 * prefix became a parameter (RT_TEST_PRINT_METRICS=1 prints it). */
#define EXPECTED_RENDER \
    "# HELP chatd_acks_total Acks.\n" \
    "# TYPE chatd_acks_total counter\n" \
    "chatd_acks_total{result=\"ok\"} 3\n" \
    "# HELP chatd_backend_up Up.\n" \
    "# TYPE chatd_backend_up gauge\n" \
    "chatd_backend_up 1\n" \
    "# HELP chatd_actor_up 1 when an instance of the actor is alive.\n" \
    "# TYPE chatd_actor_up gauge\n" \
    "chatd_actor_up{actor=\"worker\"} 1\n" \
    "# HELP chatd_actor_restarts_total Restarts of the actor by its supervisor.\n" \
    "# TYPE chatd_actor_restarts_total counter\n" \
    "chatd_actor_restarts_total{actor=\"worker\"} 0\n" \
    "# HELP chatd_actor_crashes_total Abnormal exits of the actor.\n" \
    "# TYPE chatd_actor_crashes_total counter\n" \
    "chatd_actor_crashes_total{actor=\"worker\"} 0\n" \
    "# HELP chatd_actor_messages_handled_total Messages the actor handled.\n" \
    "# TYPE chatd_actor_messages_handled_total counter\n" \
    "chatd_actor_messages_handled_total{actor=\"worker\"} 2\n" \
    "# HELP chatd_mailbox_depth Messages queued in the actor's mailbox.\n" \
    "# TYPE chatd_mailbox_depth gauge\n" \
    "chatd_mailbox_depth{actor=\"worker\"} 0\n" \
    "# HELP chatd_mailbox_high_water Largest mailbox depth seen.\n" \
    "# TYPE chatd_mailbox_high_water gauge\n" \
    "chatd_mailbox_high_water{actor=\"worker\"} 4\n" \
    "# HELP chatd_mailbox_overflows_total Sends that found the mailbox full.\n" \
    "# TYPE chatd_mailbox_overflows_total counter\n" \
    "chatd_mailbox_overflows_total{actor=\"worker\"} 0\n" \
    "# HELP chatd_mailbox_shed_total Messages dropped by a drop-oldest mailbox.\n" \
    "# TYPE chatd_mailbox_shed_total counter\n" \
    "chatd_mailbox_shed_total{actor=\"worker\"} 0\n" \
    "# HELP chatd_fault_drops_total Messages dropped by fault injection.\n" \
    "# TYPE chatd_fault_drops_total counter\n" \
    "chatd_fault_drops_total{actor=\"worker\"} 2\n" \
    "# HELP chatd_faults_injected_total Faults fired by fault injection.\n" \
    "# TYPE chatd_faults_injected_total counter\n" \
    "chatd_faults_injected_total{action=\"crash\"} 0\n" \
    "chatd_faults_injected_total{action=\"delay\"} 0\n" \
    "chatd_faults_injected_total{action=\"drop\"} 2\n"

static void
test_counters_and_gauges(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_metric *ok = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"ok\"", "Acks.");
    rt_metric *bad = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"bad_request\"",
                                   "ignored");
    rt_metric *up = rt_metric_get(rt, RT_GAUGE, "chatd_backend_up", "backend=\"redis\"", "Up.");
    assert_non_null(ok);
    assert_non_null(bad);
    assert_ptr_not_equal(ok, bad);
    /* the same name and labels give the same metric */
    assert_ptr_equal(rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"ok\"", NULL), ok);
    /* a name keeps its kind */
    assert_null(rt_metric_get(rt, RT_GAUGE, "chatd_acks_total", NULL, NULL));

    rt_metric_add(ok, 3);
    rt_metric_add(ok, 2);
    rt_metric_add(bad, 1);
    rt_metric_set(up, 1);
    rt_metric_set(up, 0);
    rt_metric_add(NULL, 1);     /* harmless */
    assert_true(rt_metric_value(rt, "chatd_acks_total", "result=\"ok\"") == 5);
    assert_true(rt_metric_value(rt, "chatd_backend_up", "backend=\"redis\"") == 0);
    assert_true(rt_metric_value(rt, "nothing", NULL) == 0);

    rt_spawn(rt, 0, &probe_spec, NULL, "worker", NULL);
    rt_test_send(rt, "worker", PROBE_PING);
    rt_test_run_for(rt, 5);

    size_t len = 0;
    char *text = rt_metrics_render(rt, "chatd", &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "# HELP chatd_acks_total Acks.\n# TYPE chatd_acks_total counter\n"
                                 "chatd_acks_total{result=\"ok\"} 5\n"
                                 "chatd_acks_total{result=\"bad_request\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE chatd_backend_up gauge\nchatd_backend_up{backend=\"redis\"} 0\n"));
    assert_non_null(strstr(text, "chatd_actor_up{actor=\"worker\"} 1\n"));
    assert_non_null(strstr(text, "chatd_actor_messages_handled_total{actor=\"worker\"} 1\n"));
    assert_non_null(strstr(text, "chatd_faults_injected_total{action=\"crash\"} 0\n"));
    free(text);
    rt_test_close(rt);
}

static void
test_render_grows(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    char labels[64];
    for (int i = 0; i < 500; i++) {
        snprintf(labels, sizeof(labels), "n=\"%d\"", i);
        rt_metric_add(rt_metric_get(rt, RT_COUNTER, "chatd_many_total", labels, "Many."), i);
    }
    size_t len;
    char *text = rt_metrics_render(rt, "chatd", &len);
    assert_non_null(text);
    assert_true(len > 500 * 20);
    assert_non_null(strstr(text, "chatd_many_total{n=\"499\"} 499\n"));
    free(text);
    rt_test_close(rt);
}

/* The whole text, byte for byte: /metrics scrapers and the integration tests
 * read these names, so a change to the rendering must show up here. */
static void
test_render_exact(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open("drop:worker,every=2");
    rt_metric *acks = rt_metric_get(rt, RT_COUNTER, "chatd_acks_total", "result=\"ok\"", "Acks.");
    rt_metric_add(acks, 3);
    rt_metric_set(rt_metric_get(rt, RT_GAUGE, "chatd_backend_up", NULL, "Up."), 1);
    rt_spawn(rt, 0, &probe_spec, NULL, "worker", NULL);
    for (int i = 0; i < 4; i++)
        rt_test_send(rt, "worker", PROBE_PING);
    rt_test_run_for(rt, 5);

    char *text = rt_metrics_render(rt, "chatd", NULL);
    assert_non_null(text);
    if (getenv("RT_TEST_PRINT_METRICS"))
        fputs(text, stdout);
    assert_string_equal(text, EXPECTED_RENDER);
    free(text);

    /* without a prefix, the runtime's series have their bare names */
    text = rt_metrics_render(rt, NULL, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nactor_up{actor=\"worker\"} 1\n"));
    assert_non_null(strstr(text, "\n# TYPE faults_injected_total counter\n"));
    assert_null(strstr(text, "_actor_up"));
    free(text);
    rt_test_close(rt);
}

/* Buckets: each observation lands in the first bucket whose bound is at or
 * above it; the rendering is cumulative with +Inf last, then sum and count. */
static void
test_histogram(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    rt_histogram *h = rt_histogram_get(rt, "app_stage_seconds", "stage=\"a\"", "Stage.");
    assert_non_null(h);
    assert_ptr_equal(rt_histogram_get(rt, "app_stage_seconds", "stage=\"a\"", NULL), h);
    /* a name keeps its kind, both ways */
    assert_null(rt_metric_get(rt, RT_COUNTER, "app_stage_seconds", NULL, NULL));
    assert_null(rt_metric_get(rt, RT_HISTOGRAM, "app_other", NULL, NULL));
    rt_metric_add(rt_metric_get(rt, RT_COUNTER, "app_total", NULL, "N."), 1);
    assert_null(rt_histogram_get(rt, "app_total", NULL, NULL));

    assert_true(rt_histogram_bound(0) == RT_HISTOGRAM_FIRST_S);
    assert_true(fabs(rt_histogram_bound(4) - 2 * RT_HISTOGRAM_FIRST_S) < 1e-12);
    for (int k = 1; k < RT_HISTOGRAM_BUCKETS; k++)
        assert_true(rt_histogram_bound(k) > rt_histogram_bound(k - 1) * 1.18);

    rt_histogram_observe(h, -1);                        /* counts as 0: bucket 0 */
    rt_histogram_observe(h, RT_HISTOGRAM_FIRST_S);      /* on a bound: that bucket */
    rt_histogram_observe(h, rt_histogram_bound(10));
    rt_histogram_observe(h, rt_histogram_bound(10) * 1.01);     /* the next one */
    rt_histogram_observe(h, 3600);                      /* +Inf */
    rt_histogram_observe(NULL, 1);                      /* harmless */
    assert_int_equal(rt_histogram_count(h), 5);
    assert_int_equal(rt_histogram_below(h, 0), 2);
    assert_int_equal(rt_histogram_below(h, 9), 2);
    assert_int_equal(rt_histogram_below(h, 10), 3);
    assert_int_equal(rt_histogram_below(h, 11), 4);
    assert_int_equal(rt_histogram_below(h, RT_HISTOGRAM_BUCKETS - 1), 4);
    assert_int_equal(rt_histogram_below(h, RT_HISTOGRAM_BUCKETS), 5);

    char *text = rt_metrics_render(rt, "app", NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "# HELP app_stage_seconds Stage.\n"
                                 "# TYPE app_stage_seconds histogram\n"
                                 "app_stage_seconds_bucket{stage=\"a\",le=\"5e-05\"} 2\n"));
    char line[128];
    snprintf(line, sizeof(line), "app_stage_seconds_bucket{stage=\"a\",le=\"%.6g\"} 3\n",
             rt_histogram_bound(10));
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "app_stage_seconds_bucket{stage=\"a\",le=\"+Inf\"} 5\n"
                                 "app_stage_seconds_sum{stage=\"a\"} "));
    assert_non_null(strstr(text, "\napp_stage_seconds_count{stage=\"a\"} 5\n"));
    free(text);
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_render_grows),
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_histogram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
