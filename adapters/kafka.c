#include "adapters/kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "actors/chatd.h"
#include "runtime/log.h"

static int
conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *err, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, key, val, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka option %s=%s: %s", key, val, why);
        return -1;
    }
    return 0;
}

/* Errors come from librdkafka's threads through the queue we poll, so this
 * runs on the loop, in the actor's context. */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    rt_actor *self = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        rt_error(rt_who(self), "kafka fatal error: %s", why);
        rt_crash(self, "kafka fatal error: %s", why);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        rt_metric_set(chatd_kafka_up_gauge(self), 0);
    rt_warn(rt_who(self), "kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    rt_actor *self = rd_kafka_opaque(rk);
    /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
    rt_log_level l = level <= 3 ? RT_LOG_ERROR : level == 4 ? RT_LOG_WARN
                     : level <= 6 ? RT_LOG_INFO : RT_LOG_DEBUG;
    /* Connection failures reach on_error too: one line is enough. The
     * kafka options go to both clients, so each warns about the other's. */
    if (strcmp(fac, "FAIL") == 0 ||
        (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "will be ignored by this")))
        l = RT_LOG_DEBUG;
    RT_LOG(l, self ? rt_who(self) : "kafka", "rdkafka %s: %s", fac, buf);
}

/* librdkafka's statistics, every second: the backend is up while at least
 * one real broker connection (nodeid >= 0, not the bootstrap entry) is UP.
 * This gives /readyz its answer before any message moved, and takes it back
 * when every broker is gone. Returns 0: librdkafka frees the JSON. */
static int
on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    rt_actor *self = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    const char *name;
    json_t *b;
    bool up = false;
    json_object_foreach(brokers, name, b) {
        const char *state = json_string_value(json_object_get(b, "state"));
        json_int_t node = json_integer_value(json_object_get(b, "nodeid"));
        if (state && strcmp(state, "UP") == 0 && node >= 0)
            up = true;
    }
    json_decref(root);
    if (root)
        rt_metric_set(chatd_kafka_up_gauge(self), up ? 1 : 0);
    return 0;
}

rd_kafka_conf_t *
chatd_kafka_conf_new(rt_actor *self, const chatd_config *cfg, const char *const *defaults,
                     char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) < 0 ||
        conf_set(conf, "log.queue", "true", err, errlen) < 0 ||
        conf_set(conf, "statistics.interval.ms", "1000", err, errlen) < 0)
        goto err;
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], err, errlen) < 0)
            goto err;
    for (size_t i = 0; i < cfg->nkafka_options; i++) {
        const char *kv = cfg->kafka_options[i];
        const char *eq = strchr(kv, '=');
        char key[128];
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
            snprintf(err, errlen, "kafka option '%s': expected KEY=VALUE", kv);
            goto err;
        }
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = '\0';
        if (conf_set(conf, key, eq + 1, err, errlen) < 0)
            goto err;
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, self);
    return conf;

err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int
chatd_kafka_route_logs(rd_kafka_t *rk)
{
    return rd_kafka_set_log_queue(rk, NULL) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

rt_metric *
chatd_kafka_up_gauge(rt_actor *self)
{
    return rt_metric_get(rt_of(self), RT_GAUGE, "chatd_backend_up",
                         "backend=\"" CHATD_BACKEND_KAFKA "\"",
                         "1 when the backend is reachable.");
}

int
chatd_kafka_wake_open(rt_actor *self, chatd_kafka_wake *w, rd_kafka_queue_t *q, rt_io_cb cb)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    w->io = rt_io_start(self, fds[0], EV_READ, cb, NULL);
    if (!w->io) {
        close(fds[0]);
        close(fds[1]);
        errno = ENOMEM;
        return -1;
    }
    w->rfd = fds[0];
    w->wfd = fds[1];
    w->open = true;
    w->watching = true;
    rd_kafka_queue_io_event_enable(q, w->wfd, "1", 1);
    return 0;
}

void
chatd_kafka_wake_drain(chatd_kafka_wake *w)
{
    char buf[256];
    if (!w->open)
        return;
    while (read(w->rfd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
}

void
chatd_kafka_wake_pause(chatd_kafka_wake *w)
{
    if (w->open && w->watching) {
        rt_io_set(w->io, 0);
        w->watching = false;
    }
}

void
chatd_kafka_wake_resume(chatd_kafka_wake *w)
{
    if (w->open && !w->watching) {
        rt_io_set(w->io, EV_READ);
        w->watching = true;
    }
}

void
chatd_kafka_wake_close(rt_actor *self, chatd_kafka_wake *w, rd_kafka_queue_t *q)
{
    (void)self;
    if (!w->open)
        return;
    if (q)
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
    close(w->rfd);
    close(w->wfd);
    w->open = false;
    w->io = NULL;
    w->watching = false;
}
