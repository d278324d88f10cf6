/*
 * What the producer and the consumer share about librdkafka: building a
 * configuration from chatd_config, waking the actor's loop when a librdkafka
 * queue has something to serve, and reporting errors and broker state.
 *
 * Threading: librdkafka runs its own threads, but every callback we register
 * (delivery reports, rebalance, errors, logs, commits) is served only inside
 * rd_kafka_poll / rd_kafka_consumer_poll / rd_kafka_queue_poll calls that the
 * actor makes on the loop thread, so callbacks run in the actor's context and
 * may use rt_* functions. librdkafka wakes the loop by writing one byte into a
 * pipe whenever a queue goes from empty to non-empty
 * (rd_kafka_queue_io_event_enable); the actor watches the pipe's read end,
 * drains it, and polls with timeout 0. Because the wake-up only comes on the
 * empty -> non-empty edge, whoever stops polling before the queue is empty
 * must poll again later on its own (a timer), or it will not be woken.
 *
 * The conf's opaque is the actor (rt_actor *): callbacks get it back with
 * rd_kafka_opaque(rk).
 */
#ifndef CHATD_ADAPTERS_KAFKA_H
#define CHATD_ADAPTERS_KAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "actors/config.h"
#include "runtime/metrics.h"
#include "runtime/rt.h"

/*
 * Creates a librdkafka configuration for the actor self: bootstrap.servers
 * from cfg->kafka_brokers, the given defaults (a NULL-terminated list of
 * key, value pairs; may be NULL), then every cfg->kafka_options "KEY=VALUE"
 * (so options override defaults), plus logs routed to a queue
 * (log.queue=true: call chatd_kafka_route_logs after rd_kafka_new), the
 * shared error and log callbacks, and opaque = self.
 * Returns the conf, or NULL with the reason in err (an unknown property, a
 * bad value, an option without '=').
 */
rd_kafka_conf_t *chatd_kafka_conf_new(rt_actor *self, const chatd_config *cfg,
                                      const char *const *defaults, char *err, size_t errlen);

/* Sends librdkafka's log lines to rk's main queue (served by our polls, on the
 * loop thread) instead of its own threads' stderr. Returns 0 or -1. */
int chatd_kafka_route_logs(rd_kafka_t *rk);

/* The gauge chatd_backend_up{backend="kafka"} of self's runtime. */
rt_metric *chatd_kafka_up_gauge(rt_actor *self);

/* A pipe that librdkafka writes to when a queue becomes non-empty, and the
 * actor's watcher on it. Zero it before use. */
typedef struct chatd_kafka_wake {
    int rfd, wfd;               /* valid while open */
    bool open;
    rt_io *io;
    bool watching;
} chatd_kafka_wake;

/*
 * Opens the pipe (both ends non-blocking, close-on-exec), enables io events of
 * queue q on it and starts watching its read end with cb (data = NULL).
 * Returns 0, or -1 (errno set; nothing is left open).
 */
int chatd_kafka_wake_open(rt_actor *self, chatd_kafka_wake *w, rd_kafka_queue_t *q,
                          rt_io_cb cb);

/* Reads and discards whatever the pipe holds (call it before polling). */
void chatd_kafka_wake_drain(chatd_kafka_wake *w);

/* Stops / restarts watching (the pipe stays open and keeps collecting bytes).
 * Idempotent. */
void chatd_kafka_wake_pause(chatd_kafka_wake *w);
void chatd_kafka_wake_resume(chatd_kafka_wake *w);

/*
 * For terminate: disables io events on q (when q is not NULL) and closes the
 * pipe. The watcher is not touched (the runtime has freed it when the actor
 * exited). Safe on a zeroed or closed wake. Call it before destroying q's
 * handle: librdkafka must not write to a closed fd.
 */
void chatd_kafka_wake_close(rt_actor *self, chatd_kafka_wake *w, rd_kafka_queue_t *q);

#endif
