/*
 * The store actor: chat history in PostgreSQL, registered as "store".
 *
 * It talks to PostgreSQL through adapters/pg.h (libpq's non-blocking API on
 * the runtime's loop, never a blocking libpq call), one query at a time, with
 * a bounded FIFO of pending requests behind it. Requests (actors/chatd.h):
 *
 *   PROTO_T_MESSAGE_BATCH  (corr = batch number) stores the batch in one
 *       transaction, in order: a message whose (room, user, id) is already
 *       stored (or came earlier in the same batch) is skipped and keeps its
 *       first text and seq; every new message gets its room's next seq, dense
 *       from 1, also when store actors on several nodes write the same room
 *       at once. After the commit the newly stored messages (with seq) go to
 *       "fanout" as one PROTO_T_MESSAGE_BATCH (nothing is sent when none is
 *       new, or when fanout is absent), then the sender gets PROTO_T_ACK ok.
 *   PROTO_T_JOIN_REQ     -> PROTO_T_JOIN_REPLY {seq, missed, more}
 *   PROTO_T_HISTORY_REQ  -> PROTO_T_HISTORY_REPLY {msgs, more}
 *
 * Every reply echoes the request's corr. A request that fails in the
 * database, or finds the queue full (STORE_QUEUE_MAX), is answered
 * PROTO_T_ACK not ok, code unavailable: nothing was stored, a retry is safe.
 * A payload that does not decode is answered not ok, code bad_request (a
 * message of an unknown type: bad_request too), and the actor stays up.
 *
 * Lifecycle: init starts an asynchronous connect (PQconnectStart) and never
 * fails but for lack of memory. Once connected the actor creates or migrates
 * its schema, under a transaction-scoped advisory lock so that nodes starting
 * together do not race, then serves the queue. Requests that arrive before
 * that wait in the queue. A failed connect, a connect plus migration that
 * does not finish within STORE_CONNECT_TIMEOUT_MS, or a lost connection
 * crashes the actor (rt_crash, with the reason); its supervisor restarts it.
 * Every query runs under statement_timeout = the config's request timeout
 * (its requesters wait no longer): a slow statement is cancelled by the
 * server and its request answered unavailable; a server that does not answer
 * at all within PG_QUERY_GRACE_MS more (hung, e.g. SIGSTOP) crashes the
 * actor like a lost connection, so the queue moves on instead of stalling.
 * A crashing or stopping store answers every request it still holds with
 * unavailable, so its senders retry at once instead of waiting for their
 * deadline. (A batch whose connection died before the reply may have been
 * committed: its retry then finds every message stored and publishes none.)
 *
 * Metrics: gauge chatd_backend_up{backend="postgres"} (1 while connected and
 * migrated, 0 after terminate); counter chatd_messages_stored_total.
 *
 * Schema (version 1): rooms(room, last_seq), messages(room, seq, id,
 * user_name, body bytea, ts), chatd_schema_version(version) and the function
 * chatd_store_batch(); see store_sql.c for the seq-assignment argument.
 *
 * Files: store.c (the actor: jobs, replies), store_sql.c (the schema, the
 * queries, records to parameters and rows to records).
 */
#ifndef CHATD_ACTORS_STORE_H
#define CHATD_ACTORS_STORE_H

#include "actors/config.h"
#include "runtime/rt.h"

/* Requests held (queued plus the one in flight) before new ones are refused. */
#define STORE_QUEUE_MAX 4096

/* Connect plus schema migration must finish within this long, else crash. */
#define STORE_CONNECT_TIMEOUT_MS 10000

/* The store's spec. Its init argument is a `const chatd_config *` (pg_dsn is
 * used) that must outlive the actor. */
extern const rt_actor_spec chatd_store_spec;

#endif
