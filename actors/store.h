/*
 * The store actor: chat history in PostgreSQL, registered as "store".
 *
 * It talks to PostgreSQL through adapters/pg.h (libpq's non-blocking API on
 * the runtime's loop, never a blocking libpq call), on two connections, each
 * with one query at a time and a bounded FIFO of pending requests behind it:
 * one for batches (the write path), one for joins and history (client
 * reads), so that neither waits behind the other. Requests (actors/chatd.h):
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
 * A reply's messages (missed, msgs) are bounded in count (join: at most
 * PROTO_JOIN_MISSED_MAX; history: the request's limit) and in bytes: their
 * costs (STORE_MSG_COST: room, id, user and text bytes plus
 * STORE_MSG_OVERHEAD) sum to at most STORE_REPLY_BYTES_MAX, except that a
 * reply always holds at least one message when any matches. A page cut
 * short by either bound says more = true: join keeps the oldest messages
 * after since (ask again with since = the last one's seq), history the
 * newest before before (ask again with before = the first one's seq).
 *
 * Every reply echoes the request's corr. A request that fails in the
 * database, or finds its queue full (batches: STORE_QUEUE_MAX; joins and
 * history: STORE_READ_QUEUE_MAX), is answered PROTO_T_ACK not ok, code
 * unavailable: nothing was stored, a retry is safe. Reads are shed first: a
 * full read queue refuses reads only; batches have their own queue and
 * connection, so a read storm neither refuses nor queues a batch (it waits
 * at most for the store's handling of the requests ahead of it in the
 * mailbox, each refused read costing a few microseconds).
 * A payload that does not decode is answered not ok, code bad_request (a
 * message of an unknown type: bad_request too), and the actor stays up.
 *
 * Lifecycle: init starts two asynchronous connects (PQconnectStart) and
 * never fails but for lack of memory. Once the write connection is up the
 * actor creates or migrates its schema on it, under a transaction-scoped
 * advisory lock so that nodes starting together do not race, then serves
 * batches; reads are served once the read connection is up too and the
 * schema migrated. Requests that arrive before that wait in their queue. A
 * failed connect, a connect (plus, for the write connection, migration) that
 * does not finish within STORE_CONNECT_TIMEOUT_MS, or a lost connection
 * (either one) crashes the actor (rt_crash, with the reason); its supervisor
 * restarts it.
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
 * Metrics: gauge chatd_backend_up{backend="postgres"} (1 while both
 * connections are up and the schema migrated, 0 after terminate); counter
 * chatd_messages_stored_total; per queue (queue="write" or "read"): gauge
 * chatd_store_queue_depth (requests held: queued plus in flight) and counter
 * chatd_store_shed_total (requests refused because the queue was full).
 *
 * Schema (version 2): rooms(room, last_seq), messages(room, seq, id,
 * user_name, body bytea, ts), chatd_schema_version(version) and the function
 * chatd_store_batch() (version 2: run on one generic plan); see store_sql.c
 * for the seq-assignment argument.
 *
 * Files: store.c (the actor: jobs, replies), store_sql.c (the schema, the
 * queries, records to parameters and rows to records).
 */
#ifndef CHATD_ACTORS_STORE_H
#define CHATD_ACTORS_STORE_H

#include "actors/config.h"
#include "runtime/rt.h"

/* Batches held (queued plus the one in flight) before new ones are refused
 * (the consumer sends one at a time: only several consumers, or a test, get
 * near it). */
#define STORE_QUEUE_MAX 4096

/* Joins and history requests held before new ones are refused (shed). At
 * about a millisecond each, a full queue is about the request timeout's
 * worth of reads: more would be answered after their requesters gave up. */
#define STORE_READ_QUEUE_MAX 1024

/* The store's mailbox: big enough for a read storm beside the batches (each
 * message is small; reads past STORE_READ_QUEUE_MAX are refused as soon as
 * they are taken). */
#define STORE_MAILBOX_CAP 16384

/* A join's missed or a history page holds messages costing at most this
 * many bytes in all (and always one, when any matches). */
#define STORE_REPLY_BYTES_MAX 65536

/* What one message costs against STORE_REPLY_BYTES_MAX: its room, id, user
 * and text bytes plus STORE_MSG_OVERHEAD, about what the rest of its JSON
 * event costs on the wire (keys, quotes, seq, ts); JSON escapes in the text
 * are not counted. */
#define STORE_MSG_OVERHEAD 64
#define STORE_MSG_COST(room_len, id_len, user_len, text_len) \
    ((size_t)(room_len) + (size_t)(id_len) + (size_t)(user_len) + (size_t)(text_len) + \
     STORE_MSG_OVERHEAD)

/* Connect plus schema migration must finish within this long, else crash. */
#define STORE_CONNECT_TIMEOUT_MS 10000

/* The store's spec. Its init argument is a `const chatd_config *` (pg_dsn is
 * used) that must outlive the actor. */
extern const rt_actor_spec chatd_store_spec;

#endif
