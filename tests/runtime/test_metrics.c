/* Metrics: counters and gauges by name and labels, rendered for Prometheus
 * together with every actor's stats. */
#include "tests/runtime/rt_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"

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
    char *text = rt_metrics_render(rt, &len);
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
    char *text = rt_metrics_render(rt, &len);
    assert_non_null(text);
    assert_true(len > 500 * 20);
    assert_non_null(strstr(text, "chatd_many_total{n=\"499\"} 499\n"));
    free(text);
    rt_test_close(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_render_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
