/*
 * The producer actor ("producer"): publishes chat messages to Kafka.
 *
 * Receives PROTO_T_MESSAGE {room,id,user,text,ts,seq=0} (from the socket,
 * with a corr), checks it, and produces one record to cfg->kafka_topic:
 * key = room, value = an envelope {type PROTO_T_MESSAGE, payload = the
 * message's bytes as received}. acks=all, idempotence on,
 * message.timeout.ms = cfg->produce_timeout_ms.
 *
 * Replies PROTO_T_ACK to the sender with the request's corr:
 *   ok                        from the delivery report (the broker has the
 *                             record, acks=all), never before;
 *   not ok, bad_request       the message did not decode or check;
 *   not ok, unavailable       delivery failed (timeout, broker down), the
 *                             local queue is full, or the producer is
 *                             shutting down. Also when no delivery report
 *                             came within produce_timeout_ms (librdkafka only
 *                             scans for timed-out messages about once a
 *                             second): the record may still land later, which
 *                             the protocol allows (a retry with the same id is
 *                             safe: the store dedupes).
 * Exactly one reply per request, except that requests still pending when the
 * actor ends get none (their requesters time out).
 *
 * Metrics: chatd_messages_produced_total (delivered records),
 * chatd_backend_up{backend="kafka"}.
 *
 * Shutdown: new messages are answered unavailable; pending deliveries are
 * flushed (non-blocking, polled from a timer) for at most
 * CHATD_PRODUCER_DRAIN_MS or produce_timeout_ms, whichever is smaller, then
 * the actor exits. Give it a supervisor shutdown_ms above that.
 */
#ifndef CHATD_ACTORS_PRODUCER_H
#define CHATD_ACTORS_PRODUCER_H

#include "runtime/rt.h"

/* Longest the shutdown hook waits for pending deliveries. */
#define CHATD_PRODUCER_DRAIN_MS 4000

/* init arg: const chatd_config * (must outlive the actor). */
extern const rt_actor_spec chatd_producer_spec;

#endif
