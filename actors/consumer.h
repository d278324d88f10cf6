/*
 * The consumer actor ("consumer"): a Kafka consumer-group member that hands
 * the chat topic's records to the store in batches.
 *
 * Group cfg->kafka_group, topic cfg->kafka_topic, auto.offset.reset=earliest,
 * no auto commit, no auto offset store: offsets are committed only after the
 * store has the messages (at-least-once; the store dedupes).
 *
 * Reading: each record's value is an envelope holding a PROTO_T_MESSAGE. Up
 * to PROTO_BATCH_MAX decoded messages go to "store" as one
 * PROTO_T_MESSAGE_BATCH with corr = a batch number (increasing per instance),
 * in the order read, so messages of one partition (one room) stay in order.
 * A record that does not decode (a poison record) is logged with its
 * topic/partition/offset, counted in chatd_kafka_poison_total and skipped:
 * its offset is committed with the batch it was read with.
 *
 * One batch in flight: while the store has not acked it, the consumer reads
 * nothing (its wake-up watcher is stopped). Store's PROTO_T_ACK with the
 * batch's corr:
 *   ok      the batch's offsets (last offset + 1 per partition, only for
 *           partitions still assigned) are committed asynchronously, and
 *           reading resumes;
 *   not ok  the same batch (same corr) is sent again after
 *           CHATD_CONSUMER_RETRY_MS.
 * A store that is absent (rt_send fails) gets the batch again after
 * CHATD_CONSUMER_RETRY_MS; a store that does not answer within
 * cfg->request_timeout_ms gets it again at once. Acks with another corr are
 * ignored.
 *
 * Rebalance (eager protocol by default; cooperative is followed too):
 * assigned partitions start at their committed offsets; messages read but
 * not yet sent from revoked partitions are dropped (their new owner reads them
 * again). Offsets of a partition no longer assigned are never committed.
 * Rebalance callbacks are served only while reading, so a batch in flight
 * delays our part of a rebalance until the store answers (bounded by
 * max.poll.interval.ms, after which librdkafka leaves the group).
 *
 * Metrics: chatd_messages_consumed_total (messages the store acked),
 * chatd_kafka_poison_total, chatd_backend_up{backend="kafka"}.
 *
 * Shutdown: waits for the in-flight batch's ack for at most
 * CHATD_CONSUMER_ACK_WAIT_MS (then drops it uncommitted), commits, and closes
 * the consumer without blocking the loop (rd_kafka_consumer_close_queue,
 * served from the wake-up pipe and a timer) for at most
 * CHATD_CONSUMER_CLOSE_MS; past that it is destroyed without a clean leave
 * (the group then rebalances after session.timeout.ms). Give it a supervisor
 * shutdown_ms above the sum.
 */
#ifndef CHATD_ACTORS_CONSUMER_H
#define CHATD_ACTORS_CONSUMER_H

#include "runtime/rt.h"

#define CHATD_CONSUMER_RETRY_MS 200      /* backoff before resending a batch */
#define CHATD_CONSUMER_ACK_WAIT_MS 2000  /* shutdown: wait for the in-flight ack */
#define CHATD_CONSUMER_CLOSE_MS 2500     /* shutdown: wait for the group leave */

/* init arg: const chatd_config * (must outlive the actor). */
extern const rt_actor_spec chatd_consumer_spec;

#endif
