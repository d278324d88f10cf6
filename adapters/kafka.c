/*
 * The librdkafka adapter: see kafka.h for its contract.
 *
 * Threading: librdkafka runs its own threads, but every callback we register
 * (delivery reports, rebalances, errors, logs, statistics, commits) is served
 * only inside rd_kafka_poll / rd_kafka_consumer_poll / rd_kafka_queue_poll /
 * rd_kafka_flush calls made here on the loop thread, so they run in the
 * actor's context. The conf's opaque is the client.
 *
 * Re-entrancy, as hiredis's async.c: `depth` counts the adapter calls that
 * serve callbacks and are still running; kafka_free inside one only marks
 * the client `freeing` (which silences every callback at once) and the
 * outermost call frees it on its way out.
 */
#include "adapters/kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "runtime/log.h"

/* Events served per close step at most. */
#define CLOSE_SERVE_MAX 64

struct kafka_client {
    rt_actor *self;
    rd_kafka_type_t type;
    const kafka_callbacks *cb;
    void *ud;
    rt_metric *up;

    rd_kafka_t *rk;
    rd_kafka_queue_t *q;        /* producer: main queue; consumer: consumer queue */
    rd_kafka_queue_t *closeq;   /* while leaving the group, q is forwarded here */

    int rfd, wfd;               /* the wake-up pipe, -1 when closed */
    rt_io *io;                  /* the watcher on rfd */
    bool watching;

    int depth;                  /* callback-serving calls running */
    bool freeing;               /* kafka_free was called: no more callbacks */
    bool closing;               /* kafka_close_start succeeded */
    bool closed;                /* the group was left cleanly */
};

static void destroy(kafka_client *k);

static void
enter(kafka_client *k)
{
    k->depth++;
}

/* Returns false when the client was freed on the way out. */
static bool
leave(kafka_client *k)
{
    if (--k->depth == 0 && k->freeing) {
        destroy(k);
        return false;
    }
    return true;
}

static void
set_up(kafka_client *k, bool up)
{
    if (k->up)
        rt_metric_set(k->up, up ? 1 : 0);
}

/* --- librdkafka's callbacks ------------------------------------------------ */

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_client *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        rt_error(rt_who(k->self), "kafka fatal error: %s", why);
        if (!k->freeing && k->cb->fatal)
            k->cb->fatal(k->ud, why);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        set_up(k, false);
    rt_warn(rt_who(k->self), "kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kafka_client *k = rd_kafka_opaque(rk);
    /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
    rt_log_level l = level <= 3 ? RT_LOG_ERROR : level == 4 ? RT_LOG_WARN
                     : level <= 6 ? RT_LOG_INFO : RT_LOG_DEBUG;
    /* Connection failures reach on_error too: one line is enough. The
     * options go to both kinds of client, so each warns about the other's. */
    if (strcmp(fac, "FAIL") == 0 ||
        (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "will be ignored by this")))
        l = RT_LOG_DEBUG;
    RT_LOG(l, k ? rt_who(k->self) : "kafka", "rdkafka %s: %s", fac, buf);
}

/* librdkafka's statistics, every second: up while at least one real broker
 * connection (nodeid >= 0, not the bootstrap entry) is UP. This answers
 * before any message moved, and takes it back when every broker is gone.
 * Returns 0: librdkafka frees the JSON. */
static int
on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    kafka_client *k = opaque;
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
        set_up(k, up);
    return 0;
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_client *k = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        set_up(k, true);
    if (!k->freeing && m->_private && k->cb->delivered)
        k->cb->delivered(k->ud, m->_private, m->err);
}

/* Follows a rebalance (eager or cooperative): the caller hears of revoked
 * partitions before they are unassigned. */
static void
on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
             void *opaque)
{
    kafka_client *k = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    rt_info(rt_who(k->self), "rebalance: %s %d partition(s)", assign ? "assigned" : "revoked",
            parts->cnt);
    rd_kafka_error_t *e = NULL;
    if (assign) {
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
    } else {
        if (!k->freeing && k->cb->revoked)
            k->cb->revoked(k->ud, parts);
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (e)
        rd_kafka_error_destroy(e);
}

static void
on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
          void *opaque)
{
    (void)rk, (void)offsets;
    kafka_client *k = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        rt_warn(rt_who(k->self), "offset commit failed (records will be redelivered): %s",
                rd_kafka_err2str(err));
}

/* --- opening --------------------------------------------------------------- */

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

/* bootstrap.servers, logs to a queue (served by our polls, not printed by
 * librdkafka's threads), statistics every second, the defaults, then the
 * overrides; the callbacks of the client's type. NULL on error (in err). */
static rd_kafka_conf_t *
conf_new(kafka_client *k, const kafka_setup *s, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf_set(conf, "bootstrap.servers", s->brokers, err, errlen) < 0 ||
        conf_set(conf, "log.queue", "true", err, errlen) < 0 ||
        conf_set(conf, "statistics.interval.ms", "1000", err, errlen) < 0)
        goto err;
    for (size_t i = 0; s->defaults && s->defaults[i]; i += 2)
        if (conf_set(conf, s->defaults[i], s->defaults[i + 1], err, errlen) < 0)
            goto err;
    for (size_t i = 0; i < s->noptions; i++) {
        const char *kv = s->options[i];
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
    if (s->type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    } else {
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    }
    rd_kafka_conf_set_opaque(conf, k);
    return conf;

err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void serve_close(kafka_client *k);

static void
drain_wake(kafka_client *k)
{
    char buf[256];
    while (read(k->rfd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
}

static int
on_wake(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)self, (void)fd, (void)revents;
    kafka_client *k = rt_io_data(io);
    drain_wake(k);
    enter(k);
    if (k->closing)
        serve_close(k);
    else if (k->type == RD_KAFKA_PRODUCER)
        rd_kafka_poll(k->rk, 0);
    else if (!k->freeing && k->cb->readable)
        k->cb->readable(k->ud);
    leave(k);
    return RT_OK;
}

/* The pipe (both ends non-blocking, close-on-exec), librdkafka writing to it
 * when q becomes non-empty, and our watcher on it. 0, or -1 with errno. */
static int
wake_open(kafka_client *k)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    k->rfd = fds[0];
    k->wfd = fds[1];
    k->io = rt_io_start(k->self, k->rfd, EV_READ, on_wake, k);
    if (!k->io) {
        errno = ENOMEM;
        return -1;
    }
    k->watching = true;
    rd_kafka_queue_io_event_enable(k->q, k->wfd, "1", 1);
    return 0;
}

static int
subscribe(kafka_client *k, const char *topic, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        snprintf(err, errlen, "kafka subscribe %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

kafka_client *
kafka_open(rt_actor *self, const kafka_setup *s, char *err, size_t errlen)
{
    kafka_client *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->self = self;
    k->type = s->type;
    k->cb = s->cb;
    k->ud = s->ud;
    k->up = s->up;
    k->rfd = k->wfd = -1;
    bool producer = s->type == RD_KAFKA_PRODUCER;
    char why[512];
    rd_kafka_conf_t *conf = conf_new(k, s, err, errlen);
    if (!conf)
        goto err;
    k->rk = rd_kafka_new(s->type, conf, why, sizeof(why));
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka %s: %s", producer ? "producer" : "consumer", why);
        goto err;
    }
    rd_kafka_set_log_queue(k->rk, NULL);
    if (!producer)
        rd_kafka_poll_set_consumer(k->rk);  /* errors, logs, rebalances come here too */
    k->q = producer ? rd_kafka_queue_get_main(k->rk) : rd_kafka_queue_get_consumer(k->rk);
    if (wake_open(k) < 0) {
        snprintf(err, errlen, "kafka wake pipe: %s", strerror(errno));
        goto err;
    }
    if (!producer && subscribe(k, s->topic, err, errlen) < 0)
        goto err;
    if (producer)
        kafka_poll(k);      /* anything queued before the pipe was wired */
    return k;

err:
    k->freeing = true;
    destroy(k);
    return NULL;
}

/* --- freeing --------------------------------------------------------------- */

static void
wake_close(kafka_client *k)
{
    if (k->io && rt_alive(rt_of(k->self), rt_self(k->self)))
        rt_io_stop(k->self, k->io);
    k->io = NULL;
    if (k->rfd < 0)
        return;
    /* librdkafka must not write to a closed fd: the io event goes first. */
    if (k->q || k->closeq)
        rd_kafka_queue_io_event_enable(k->closeq ? k->closeq : k->q, -1, NULL, 0);
    close(k->rfd);
    close(k->wfd);
    k->rfd = k->wfd = -1;
}

static void
destroy(kafka_client *k)
{
    rt_actor *self = k->self;
    if (k->rk && k->type == RD_KAFKA_PRODUCER) {
        /* Purge so that destroy does not wait on the broker; the purged
         * messages' reports are served here and go nowhere (freeing). */
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                  RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_poll(k->rk, 0);
    }
    wake_close(k);
    if (k->closeq)
        rd_kafka_queue_destroy(k->closeq);
    if (k->q)
        rd_kafka_queue_destroy(k->q);
    if (k->rk) {
        struct ev_loop *loop = rt_loop(rt_of(self));
        ev_now_update(loop);
        double t0 = rt_now_ms(rt_of(self));
        bool leave_group = k->type == RD_KAFKA_PRODUCER || k->closed;
        rd_kafka_destroy_flags(k->rk, leave_group ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        ev_now_update(loop);
        rt_debug(rt_who(self), "rd_kafka_destroy took %.1f ms", rt_now_ms(rt_of(self)) - t0);
    }
    set_up(k, false);
    free(k);
}

void
kafka_free(kafka_client *k)
{
    if (!k)
        return;
    k->freeing = true;
    if (k->depth == 0)
        destroy(k);
}

/* --- producer -------------------------------------------------------------- */

rd_kafka_resp_err_t
kafka_produce(kafka_client *k, const char *topic, const void *key, size_t keylen, void *value,
              size_t len, void *msg)
{
    return rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_KEY(key, keylen),
                             RD_KAFKA_V_VALUE(value, len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                             RD_KAFKA_V_OPAQUE(msg), RD_KAFKA_V_END);
}

void
kafka_poll(kafka_client *k)
{
    enter(k);
    rd_kafka_poll(k->rk, 0);
    leave(k);
}

void
kafka_flush(kafka_client *k)
{
    enter(k);
    rd_kafka_flush(k->rk, 0);
    leave(k);
}

void
kafka_test_fatal(kafka_client *k, rd_kafka_resp_err_t err, const char *why)
{
    rd_kafka_test_fatal_error(k->rk, err, why);
}

/* --- consumer -------------------------------------------------------------- */

size_t
kafka_consume(kafka_client *k, size_t max)
{
    size_t i;
    enter(k);
    for (i = 0; i < max && !k->freeing && !k->closing; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
        if (!m)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                rt_warn(rt_who(k->self), "kafka consume: %s", rd_kafka_message_errstr(m));
        } else {
            set_up(k, true);
            if (!k->freeing && k->cb->record)
                k->cb->record(k->ud, m);
        }
        rd_kafka_message_destroy(m);
    }
    leave(k);
    return i;
}

void
kafka_pause(kafka_client *k)
{
    if (k->io && k->watching) {
        rt_io_set(k->io, 0);
        k->watching = false;
    }
}

void
kafka_resume(kafka_client *k)
{
    if (k->io && !k->watching) {
        rt_io_set(k->io, EV_READ);
        k->watching = true;
    }
}

void
kafka_commit(kafka_client *k, const rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (!offsets || offsets->cnt == 0 || rd_kafka_assignment(k->rk, &owned))
        goto out;
    rd_kafka_topic_partition_list_t *keep = rd_kafka_topic_partition_list_new(offsets->cnt);
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (rd_kafka_topic_partition_list_find(owned, p->topic, p->partition))
            rd_kafka_topic_partition_list_add(keep, p->topic, p->partition)->offset = p->offset;
    }
    if (keep->cnt) {
        rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, keep, 1);
        if (e)
            rt_warn(rt_who(k->self), "offset commit: %s", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(keep);
out:
    if (owned)
        rd_kafka_topic_partition_list_destroy(owned);
}

/* Serves the close queue with the event API, as rd_kafka_consumer_close
 * does internally: rebalances are followed, fetched messages and other
 * events dropped (rd_kafka_queue_poll_callback would assert on a fetched
 * message). */
static void
serve_close(kafka_client *k)
{
    rd_kafka_event_t *ev;
    for (int i = 0; i < CLOSE_SERVE_MAX && (ev = rd_kafka_queue_poll(k->closeq, 0)); i++) {
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_REBALANCE:
            on_rebalance(k->rk, rd_kafka_event_error(ev),
                         rd_kafka_event_topic_partition_list(ev), k);
            break;
        case RD_KAFKA_EVENT_ERROR:
            rt_warn(rt_who(k->self), "kafka (closing): %s", rd_kafka_event_error_string(ev));
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
}

int
kafka_close_start(kafka_client *k)
{
    k->closeq = rd_kafka_queue_new(k->rk);
    /* The io event belongs on the final queue of a forwarding chain. */
    rd_kafka_queue_io_event_enable(k->q, -1, NULL, 0);
    rd_kafka_queue_io_event_enable(k->closeq, k->wfd, "1", 1);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, k->closeq);
    if (e) {
        rt_warn(rt_who(k->self), "consumer close: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    k->closing = true;
    kafka_resume(k);
    kafka_close_poll(k);
    return 0;
}

bool
kafka_close_poll(kafka_client *k)
{
    enter(k);
    serve_close(k);
    if (!k->closed && rd_kafka_consumer_closed(k->rk))
        k->closed = true;
    bool closed = k->closed;
    leave(k);
    return closed;
}
