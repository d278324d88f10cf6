/*
 * The store actor's SQL (part of the store actor, actors/store.h; not a
 * contract for anyone else): the schema and its migration, the three
 * queries, and the translation between records and the queries' parameters
 * and rows. Everything here is pure: no connection, no actor.
 */
#ifndef CHATD_ACTORS_STORE_SQL_H
#define CHATD_ACTORS_STORE_SQL_H

#include <stdbool.h>
#include <stddef.h>

#include "adapters/pg.h"
#include "proto/record.h"

#define STORE_SCHEMA_VERSION 2

/* Creates or migrates the schema to STORE_SCHEMA_VERSION, under a
 * transaction-scoped advisory lock: one simple query of several statements,
 * run as the connection's setup. */
extern const char store_migration_sql[];

/* The parameters of one query; zero it before the first use, keep it to
 * reuse its buffers, store_query_free at the end. */
typedef struct store_query {
    const char *sql;
    int nparams;
    const char *values[5];
    pg_array arrays[5];
    char nums[4][32];
} store_query;

/* Fills q for storing batch b (count > 0): chatd_store_batch() with the
 * batch as five arrays. Returns false when out of memory. */
bool store_query_batch(store_query *q, const proto_batch *b);

/* Fills q for looking up the messages of b at the 1-based ordinals
 * ords[0..n) that chatd_store_batch did not store anew (stored before, by an
 * earlier delivery of the same records, or twice in b). Returns false when
 * out of memory. */
bool store_query_stored(store_query *q, const proto_batch *b, const size_t *ords, size_t n);

/* Fills q for a join: the room's last seq, then (when r->has_since) up to
 * PROTO_JOIN_MISSED_MAX + 1 messages after r->since, cut after the first
 * that does not fit max_bytes (store_read_join). */
void store_query_join(store_query *q, const proto_join_req *r, size_t max_bytes);

/* Fills q for a history page: up to r->limit + 1 messages before r->before
 * (or the newest), newest first, cut as store_query_join. */
void store_query_history(store_query *q, const proto_history_req *r, size_t max_bytes);

void store_query_free(store_query *q);

/*
 * Reads the rows (ordinal, seq) of a stored batch: sets the seq of each
 * newly stored message of b and copies it (shallow: it shares b's strings)
 * into fresh, which holds PQntuples(r) entries. Returns how many are fresh;
 * *bad counts rows that made no sense (skipped).
 */
size_t store_read_batch(const PGresult *r, proto_batch *b, proto_msg *fresh, size_t *bad);

/*
 * Reads the rows of store_query_stored into out (PQntuples(r) entries): each
 * a shallow copy of its batch message with the stored seq, ts and text, the
 * text pointing into r (valid while r is). Skips a message already among
 * fresh[0..nfresh) (stored anew by this batch) or already in out. Returns how
 * many; *bad counts rows that made no sense.
 */
size_t store_read_stored(const PGresult *r, const proto_batch *b, const proto_msg *fresh,
                         size_t nfresh, proto_msg *out, size_t *bad);

/* Builds a join reply from the join query's rows: the oldest missed
 * messages whose costs (STORE_MSG_COST, actors/store.h) sum to at most
 * max_bytes, at least one when any was missed; more when rows were left
 * out. Returns false on bad rows or out of memory (rep is then still safe
 * to free). */
bool store_read_join(const PGresult *r, const proto_join_req *q, size_t max_bytes,
                     proto_join_reply *rep);

/* Builds a history reply (ascending) from the history query's rows: the
 * newest messages within the limit and max_bytes, as store_read_join.
 * Returns false as store_read_join. */
bool store_read_history(const PGresult *r, const proto_history_req *q, size_t max_bytes,
                        proto_history_reply *rep);

#endif
