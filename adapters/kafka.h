/*
 * The librdkafka adapter: one Kafka producer or consumer handle plugged into
 * an actor's loop, as hiredis's adapters/libev.h plugs a connection into
 * libev. It knows nothing of chat: topics, keys and values are bytes.
 *
 * What it owns: the rd_kafka_t handle and its queues, the configuration
 * sequence (bootstrap servers, the caller's defaults, then "KEY=VALUE"
 * overrides, so options win), librdkafka's error, log and statistics
 * callbacks (logged under the actor's name), the wake-up pipe and its
 * watcher, the consumer's rebalance assignments and its group leave, and
 * the "backend up" gauge the caller hands in (1 while a broker connection is
 * up or a message moved, 0 when all brokers are down and after kafka_free).
 *
 * Callbacks in: the kafka_callbacks table, each called with the caller's ud,
 * on the loop thread, in the actor's context (rt_* calls are allowed). They
 * are called only from the adapter's own watcher or from inside a kafka_*
 * call listed as serving callbacks, never after kafka_free was called.
 *
 * Calls out: kafka_* below, from the actor that opened the client only.
 *
 * Who frees what: the adapter never frees or reads a message's opaque (the
 * `msg` of kafka_produce); the caller frees it when its `delivered` report
 * came, or after kafka_free for those whose report never came (the caller
 * keeps them in a list). A produced value belongs to librdkafka once
 * kafka_produce returned 0. Record and partition lists passed to callbacks
 * are valid during the call only.
 *
 * Waking: librdkafka writes one byte into a pipe when a queue goes from
 * empty to non-empty; the adapter's watcher drains it and serves the queue.
 * The wake-up comes only on that edge, so a consumer that stops reading
 * before the queue is empty must call kafka_consume again later on its own
 * (a timer), or it will not be woken.
 */
#ifndef CHATD_ADAPTERS_KAFKA_H
#define CHATD_ADAPTERS_KAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "runtime/metrics.h"
#include "runtime/rt.h"

typedef struct kafka_client kafka_client;

typedef struct kafka_callbacks {
    /* Producer: the delivery report of the message produced with opaque msg:
     * err is RD_KAFKA_RESP_ERR_NO_ERROR when the broker has it. */
    void (*delivered)(void *ud, void *msg, rd_kafka_resp_err_t err);
    /* Consumer: the queue may hold records (call kafka_consume). Not called
     * while paused or closing. */
    void (*readable)(void *ud);
    /* Consumer, from kafka_consume: one record without error. */
    void (*record)(void *ud, const rd_kafka_message_t *m);
    /* Consumer: these partitions are taken away (drop what was read from
     * them and not committed); they are unassigned after the call. */
    void (*revoked)(void *ud, const rd_kafka_topic_partition_list_t *parts);
    /* A fatal error (already logged): the handle can do nothing more; the
     * owner should end (rt_crash) and open a new one when restarted. */
    void (*fatal)(void *ud, const char *why);
} kafka_callbacks;

typedef struct kafka_setup {
    rd_kafka_type_t type;               /* RD_KAFKA_PRODUCER or RD_KAFKA_CONSUMER */
    const char *brokers;                /* bootstrap.servers */
    const char *const *defaults;        /* NULL-terminated key, value pairs; may be NULL */
    const char *const *options;         /* "KEY=VALUE" overrides */
    size_t noptions;
    const char *topic;                  /* consumer: the topic it subscribes to */
    rt_metric *up;                      /* the backend-up gauge; may be NULL */
    const kafka_callbacks *cb;          /* must outlive the client */
    void *ud;
} kafka_setup;

/*
 * Opens a client for the actor self: builds the configuration, creates the
 * handle, routes its logs to our polls, wires the wake-up pipe, and for a
 * consumer subscribes to s->topic (the group's partitions come with later
 * rebalances). A producer's queue is served once before returning: that
 * serves callbacks.
 * Returns the client, or NULL with the reason in err (an unknown property, a
 * bad value, an option without '=', out of memory); nothing is left open.
 */
kafka_client *kafka_open(rt_actor *self, const kafka_setup *s, char *err, size_t errlen);

/*
 * Frees the client. No callback runs from the moment it is called. Called
 * inside one of the client's callbacks, the work is deferred until the
 * adapter's outermost call returns; either way the caller must not use k
 * again. A producer's queued and in-flight messages are purged (their
 * reports are not delivered: free their opaques yourself); a consumer that
 * finished kafka_close_* leaves cleanly, any other is destroyed without
 * leaving the group (that would block up to session.timeout.ms; the group
 * notices it gone then). The watcher is stopped when the actor still lives;
 * from terminate the runtime has freed it already. NULL is a no-op.
 */
void kafka_free(kafka_client *k);

/* --- producer ------------------------------------------------------------ */

/*
 * Queues one record for topic with key and value (librdkafka frees value
 * with free() once it returned 0) and the caller's opaque msg, which comes
 * back in `delivered`. Returns RD_KAFKA_RESP_ERR_NO_ERROR, or the refusal
 * (RD_KAFKA_RESP_ERR__QUEUE_FULL, ...): then value and msg are still the
 * caller's and no report will come.
 */
rd_kafka_resp_err_t kafka_produce(kafka_client *k, const char *topic, const void *key,
                                  size_t keylen, void *value, size_t len, void *msg);

/* Serves what is ready (delivery reports, errors, logs) without waiting.
 * Serves callbacks. */
void kafka_poll(kafka_client *k);

/* Sends what is queued now, without waiting, and serves what is ready.
 * Serves callbacks. */
void kafka_flush(kafka_client *k);

/* Makes librdkafka raise a real fatal error with err (a test hook: fault
 * injection takes the path of a fenced idempotent producer). */
void kafka_test_fatal(kafka_client *k, rd_kafka_resp_err_t err, const char *why);

/* --- consumer ------------------------------------------------------------ */

/*
 * Takes up to max events from the consumer queue without waiting: records
 * go to `record`, rebalances are followed (`revoked`), errors logged.
 * Returns how many events it took; max means more may be waiting. Serves
 * callbacks.
 */
size_t kafka_consume(kafka_client *k, size_t max);

/* Stops / restarts the wake-up watcher (`readable` stops; the pipe keeps
 * collecting). Idempotent. */
void kafka_pause(kafka_client *k);
void kafka_resume(kafka_client *k);

/*
 * Commits offsets (the next offset to read, per partition) asynchronously,
 * leaving out partitions no longer assigned. A failure is logged: those
 * records will be delivered again. NULL or empty: nothing.
 */
void kafka_commit(kafka_client *k, const rd_kafka_topic_partition_list_t *offsets);

/*
 * Starts leaving the group without blocking the loop: from now on the
 * watcher serves the close (rebalances followed, records dropped, no
 * `readable`). Returns 0, or -1 when librdkafka refused (logged; kafka_free
 * is all that is left).
 */
int kafka_close_start(kafka_client *k);

/* Serves the close; returns true once the group was left. Call it from a
 * timer until true or your deadline. Serves callbacks. */
bool kafka_close_poll(kafka_client *k);

#endif
