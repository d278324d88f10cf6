/*
 * The store actor's SQL (see store_sql.h).
 *
 * Seq assignment. A batch is one call of chatd_store_batch(rooms[], ids[],
 * users[], bodies[], ts[]), a PL/pgSQL function run as a single autocommit
 * statement: one round trip, one transaction. It runs two statements under
 * READ COMMITTED:
 *
 *   1. INSERT INTO rooms ... SELECT DISTINCT room ... ORDER BY room
 *      ON CONFLICT (room) DO UPDATE SET last_seq = rooms.last_seq
 *      which creates the batch's missing rooms rows and row-locks every one
 *      of them, in room order (so two batches sharing rooms lock them in the
 *      same order and cannot deadlock). Until COMMIT nobody else can insert
 *      into those rooms, because every writer takes the same locks first.
 *   2. One statement (data-modifying CTEs) that, with a snapshot taken AFTER
 *      the locks were granted (PL/pgSQL takes a fresh snapshot per statement
 *      of a volatile function under READ COMMITTED), so it sees every message
 *      committed by whoever held the locks before: drops messages whose
 *      (room, user, id) is already stored or came earlier in the batch, numbers
 *      the rest per room in batch order (row_number over the batch ordinal)
 *      from the room's last_seq + 1, inserts them, adds their count to
 *      last_seq, and returns (ordinal, seq) of each new message.
 *
 * Doing it in ONE statement would be wrong: a statement's snapshot is taken
 * before it waits for a row lock, so after waiting it would not see the rows
 * the previous lock holder inserted (the duplicate check would miss them).
 */
#include "actors/store_sql.h"

#include "actors/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_LOCK_KEY "7236510017"   /* pg_advisory_xact_lock key: "chatd store" */

const char store_migration_sql[] =
    "SET client_min_messages = warning;\n"
    "BEGIN;\n"
    "SELECT pg_advisory_xact_lock(" STORE_LOCK_KEY ");\n"
    "CREATE TABLE IF NOT EXISTS chatd_schema_version (version integer NOT NULL);\n"
    "DO $mig$\n"
    "DECLARE v integer;\n"
    "BEGIN\n"
    "  SELECT coalesce(max(version), 0) INTO v FROM chatd_schema_version;\n"
    "  IF v < 1 THEN\n"
    "    CREATE TABLE IF NOT EXISTS rooms (\n"
    "      room text PRIMARY KEY,\n"
    "      last_seq bigint NOT NULL);\n"
    "    CREATE TABLE IF NOT EXISTS messages (\n"
    "      room text NOT NULL,\n"
    "      seq bigint NOT NULL,\n"
    "      id text NOT NULL,\n"
    "      user_name text NOT NULL,\n"
    "      body bytea NOT NULL,\n"
    "      ts bigint NOT NULL,\n"
    "      PRIMARY KEY (room, seq),\n"
    "      UNIQUE (room, user_name, id));\n"
    "    CREATE OR REPLACE FUNCTION chatd_store_batch(\n"
    "        p_rooms text[], p_ids text[], p_users text[], p_bodies bytea[], p_ts bigint[])\n"
    "    RETURNS TABLE (o_ord bigint, o_seq bigint)\n"
    "    LANGUAGE plpgsql VOLATILE AS $fn$\n"
    "    BEGIN\n"
    "      INSERT INTO rooms AS r (room, last_seq)\n"
    "        SELECT DISTINCT x.room, 0::bigint FROM unnest(p_rooms) AS x(room) ORDER BY 1\n"
    "        ON CONFLICT (room) DO UPDATE SET last_seq = r.last_seq;\n"
    "      RETURN QUERY\n"
    "      WITH b AS (\n"
    "        SELECT x.room, x.id, x.user_name, x.body, x.ts, x.ord\n"
    "        FROM unnest(p_rooms, p_ids, p_users, p_bodies, p_ts) WITH ORDINALITY\n"
    "             AS x(room, id, user_name, body, ts, ord)\n"
    "      ), firsts AS (\n"
    "        SELECT DISTINCT ON (b.room, b.user_name, b.id) b.*\n"
    "        FROM b ORDER BY b.room, b.user_name, b.id, b.ord\n"
    "      ), fresh AS (\n"
    "        SELECT f.*, row_number() OVER (PARTITION BY f.room ORDER BY f.ord) AS n\n"
    "        FROM firsts f\n"
    "        WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.room = f.room\n"
    "                          AND m.user_name = f.user_name AND m.id = f.id)\n"
    "      ), numbered AS (\n"
    "        SELECT fr.*, r.last_seq + fr.n AS seq\n"
    "        FROM fresh fr JOIN rooms r ON r.room = fr.room\n"
    "      ), ins AS (\n"
    "        INSERT INTO messages (room, seq, id, user_name, body, ts)\n"
    "        SELECT nb.room, nb.seq, nb.id, nb.user_name, nb.body, nb.ts FROM numbered nb\n"
    "      ), upd AS (\n"
    "        UPDATE rooms r SET last_seq = r.last_seq + c.cnt\n"
    "        FROM (SELECT fr.room, max(fr.n) AS cnt FROM fresh fr GROUP BY fr.room) c\n"
    "        WHERE r.room = c.room\n"
    "      )\n"
    "      SELECT nb.ord, nb.seq FROM numbered nb ORDER BY nb.ord;\n"
    "    END\n"
    "    $fn$;\n"
    "    INSERT INTO chatd_schema_version VALUES (1);\n"
    "  END IF;\n"
    /* Version 2: one generic plan for the batch function's statements.
     * PostgreSQL kept planning them anew on every call (custom plans), which
     * cost about as much as running them. Measured: chatd_store_batch_seconds
     * of one-message batches on one node, 1.34-1.70 ms mean before, 0.84-1.01
     * ms after (two runs each; the disk's fdatasync is 0.13 ms); the store
     * stage of scripts/bench/compare.sh, 1.51 -> 1.38 ms p50 (medians of 3).
     * The statements' plans do not depend on the arrays' contents: index
     * lookups per message either way. */
    "  IF v < 2 THEN\n"
    "    ALTER FUNCTION chatd_store_batch(text[], text[], text[], bytea[], bigint[])\n"
    "      SET plan_cache_mode = force_generic_plan;\n"
    "    INSERT INTO chatd_schema_version VALUES (2);\n"
    "  END IF;\n"
    "END\n"
    "$mig$;\n"
    "COMMIT;\n";

static const char BATCH_SQL[] =
    "SELECT o_ord, o_seq FROM chatd_store_batch($1::text[], $2::text[], $3::text[], "
    "$4::bytea[], $5::bigint[])";

/* The stored seq, body and ts of messages given by (room, id, user), with the
 * ordinal each had in its batch; in publishing order: by room, then seq. */
static const char STORED_SQL[] =
    "SELECT x.ord, m.seq, m.body, m.ts "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(room, id, user_name, ord) "
    "JOIN messages m ON m.room = x.room AND m.user_name = x.user_name AND m.id = x.id "
    "ORDER BY m.room, m.seq";

/*
 * The byte bound of a reply (store_read_join, store_read_history) is applied
 * to the rows when they are read; the queries only spare the transfer of
 * rows that cannot be in the reply. Each computes every row's cost as
 * STORE_MSG_COST does (id, user and body bytes plus $4 = the room's bytes +
 * STORE_MSG_OVERHEAD) and a running sum in reply order, and keeps the rows
 * whose predecessors cost at most $5 = the bound: the rows that fit, plus at
 * most one that does not (it says "more"). The first row always stays.
 */
#define ROW_COST "(octet_length(id) + octet_length(user_name) + octet_length(body) + $4::bigint)"

/* One row at least (the room's last seq), then the missed messages if any. */
static const char JOIN_SQL[] =
    "SELECT r.last_seq, m.seq, m.id, m.user_name, m.body, m.ts "
    "FROM (SELECT coalesce(max(last_seq), 0)::bigint AS last_seq FROM rooms "
    "      WHERE room = $1) r "
    "LEFT JOIN LATERAL (SELECT w.seq, w.id, w.user_name, w.body, w.ts FROM ("
    "      SELECT p.*, sum(p.cost) OVER (ORDER BY p.seq) - p.cost AS before_it FROM ("
    "        SELECT seq, id, user_name, body, ts, " ROW_COST " AS cost FROM messages "
    "        WHERE room = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::integer) p) w "
    "      WHERE w.before_it <= $5::bigint) m ON true "
    "ORDER BY m.seq";

static const char HISTORY_SQL[] =
    "SELECT w.seq, w.id, w.user_name, w.body, w.ts FROM ("
    "  SELECT p.*, sum(p.cost) OVER (ORDER BY p.seq DESC) - p.cost AS before_it FROM ("
    "    SELECT seq, id, user_name, body, ts, " ROW_COST " AS cost FROM messages "
    "    WHERE room = $1 AND seq < $2::bigint ORDER BY seq DESC LIMIT $3::integer) p) w "
    "WHERE w.before_it <= $5::bigint ORDER BY w.seq DESC";

/* --- parameters ----------------------------------------------------------- */

static int64_t
clamp_i64(uint64_t v)
{
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

bool
store_query_batch(store_query *q, const proto_batch *b)
{
    pg_array *a = q->arrays;
    for (int k = 0; k < 5; k++)
        pg_array_begin(&a[k]);
    for (size_t i = 0; i < b->count; i++) {
        const proto_msg *m = &b->msgs[i];
        pg_array_add_text(&a[0], m->room, m->room_len);
        pg_array_add_text(&a[1], m->id, m->id_len);
        pg_array_add_text(&a[2], m->user, m->user_len);
        pg_array_add_bytea(&a[3], m->text, m->text_len);
        pg_array_add_int64(&a[4], clamp_i64(m->ts));
    }
    bool ok = true;
    for (int k = 0; k < 5; k++)
        ok &= (q->values[k] = pg_array_end(&a[k])) != NULL;
    q->sql = BATCH_SQL;
    q->nparams = 5;
    return ok;
}

bool
store_query_stored(store_query *q, const proto_batch *b, const size_t *ords, size_t n)
{
    pg_array *a = q->arrays;
    for (int k = 0; k < 4; k++)
        pg_array_begin(&a[k]);
    for (size_t i = 0; i < n; i++) {
        const proto_msg *m = &b->msgs[ords[i] - 1];
        pg_array_add_text(&a[0], m->room, m->room_len);
        pg_array_add_text(&a[1], m->id, m->id_len);
        pg_array_add_text(&a[2], m->user, m->user_len);
        pg_array_add_int64(&a[3], (int64_t)ords[i]);
    }
    bool ok = true;
    for (int k = 0; k < 4; k++)
        ok &= (q->values[k] = pg_array_end(&a[k])) != NULL;
    q->sql = STORED_SQL;
    q->nparams = 4;
    return ok;
}

/* The parameters shared by the join and history queries: room, a seq, a row
 * count, and the byte bound's $4 and $5 (ROW_COST). */
static void
query_page(store_query *q, const char *sql, const char *room, size_t room_len, int64_t seq,
           uint64_t rows, size_t max_bytes)
{
    snprintf(q->nums[0], sizeof(q->nums[0]), "%" PRId64, seq);
    snprintf(q->nums[1], sizeof(q->nums[1]), "%" PRIu64, rows);
    snprintf(q->nums[2], sizeof(q->nums[2]), "%zu", STORE_MSG_COST(room_len, 0, 0, 0));
    snprintf(q->nums[3], sizeof(q->nums[3]), "%zu", max_bytes);
    q->values[0] = room;
    for (int k = 0; k < 4; k++)
        q->values[k + 1] = q->nums[k];
    q->sql = sql;
    q->nparams = 5;
}

void
store_query_join(store_query *q, const proto_join_req *r, size_t max_bytes)
{
    query_page(q, JOIN_SQL, r->room, r->room_len, clamp_i64(r->has_since ? r->since : 0),
               r->has_since ? PROTO_JOIN_MISSED_MAX + 1 : 0, max_bytes);
}

void
store_query_history(store_query *q, const proto_history_req *r, size_t max_bytes)
{
    query_page(q, HISTORY_SQL, r->room, r->room_len,
               clamp_i64(r->has_before ? r->before : UINT64_MAX), r->limit + 1, max_bytes);
}

void
store_query_free(store_query *q)
{
    for (int k = 0; k < 5; k++)
        pg_array_free(&q->arrays[k]);
}

/* --- rows ------------------------------------------------------------------ */

/* Fills m from the columns seq, id, user_name, body, ts starting at col. */
static bool
row_msg(const PGresult *r, int row, int col, const char *room, size_t room_len, proto_msg *m)
{
    int64_t seq, ts;
    if (!pg_col_i64(r, row, col, &seq) || !pg_col_i64(r, row, col + 4, &ts) || seq <= 0 ||
        ts < 0)
        return false;
    for (int c = col + 1; c <= col + 3; c++)
        if (PQgetisnull(r, row, c))
            return false;
    return proto_msg_set(m, room, room_len,
                         PQgetvalue(r, row, col + 1), (size_t)PQgetlength(r, row, col + 1),
                         PQgetvalue(r, row, col + 2), (size_t)PQgetlength(r, row, col + 2),
                         PQgetvalue(r, row, col + 3), (size_t)PQgetlength(r, row, col + 3),
                         (uint64_t)ts, (uint64_t)seq) == PROTO_OK;
}

/* What the row's message (columns seq, id, user_name, body, ts from col)
 * costs against a reply's byte bound. */
static size_t
row_cost(const PGresult *r, int row, int col, size_t room_len)
{
    return STORE_MSG_COST(room_len, PQgetlength(r, row, col + 1), PQgetlength(r, row, col + 2),
                          PQgetlength(r, row, col + 3));
}

/* How many of rows[0..n) (in reply order from the first) fit max_bytes: at
 * least one when n > 0. */
static size_t
rows_fitting(const PGresult *r, size_t n, int col, size_t room_len, size_t max_bytes)
{
    size_t take = 0, bytes = 0;
    while (take < n) {
        size_t cost = row_cost(r, (int)take, col, room_len);
        if (take && bytes + cost > max_bytes)
            break;
        bytes += cost;
        take++;
    }
    return take;
}

size_t
store_read_batch(const PGresult *r, proto_batch *b, proto_msg *fresh, size_t *bad)
{
    int rows = r ? PQntuples(r) : 0;
    size_t n = 0;
    *bad = 0;
    for (int i = 0; i < rows; i++) {
        int64_t ord, seq;
        if (!pg_col_i64(r, i, 0, &ord) || !pg_col_i64(r, i, 1, &seq) || ord < 1 ||
            (uint64_t)ord > b->count || seq < 1) {
            (*bad)++;
            continue;
        }
        b->msgs[ord - 1].seq = (uint64_t)seq;
        fresh[n++] = b->msgs[ord - 1];
    }
    return n;
}

/* True when fresh[0..n) holds a message of room m's room with m's seq. */
static bool
among(const proto_msg *fresh, size_t n, const proto_msg *m)
{
    for (size_t i = 0; i < n; i++)
        if (fresh[i].seq == m->seq && fresh[i].room_len == m->room_len &&
            memcmp(fresh[i].room, m->room, m->room_len) == 0)
            return true;
    return false;
}

size_t
store_read_stored(const PGresult *r, const proto_batch *b, const proto_msg *fresh,
                  size_t nfresh, proto_msg *out, size_t *bad)
{
    int rows = r ? PQntuples(r) : 0;
    size_t n = 0;
    *bad = 0;
    for (int i = 0; i < rows; i++) {
        int64_t ord, seq, ts;
        if (!pg_col_i64(r, i, 0, &ord) || !pg_col_i64(r, i, 1, &seq) ||
            !pg_col_i64(r, i, 3, &ts) || ord < 1 || (uint64_t)ord > b->count || seq < 1 ||
            ts < 0 || PQgetisnull(r, i, 2)) {
            (*bad)++;
            continue;
        }
        proto_msg m = b->msgs[ord - 1];
        m.seq = (uint64_t)seq;
        m.ts = (uint64_t)ts;
        m.text = PQgetvalue(r, i, 2);
        m.text_len = (size_t)PQgetlength(r, i, 2);
        /* the same message twice in the batch: once is enough. Rows are by
         * room and seq, so a repeat follows its first. The O(n * fresh)
         * search runs only for batches that held a message stored before. */
        if ((n && out[n - 1].seq == m.seq && out[n - 1].room_len == m.room_len &&
             memcmp(out[n - 1].room, m.room, m.room_len) == 0) ||
            among(fresh, nfresh, &m))
            continue;
        out[n++] = m;
    }
    return n;
}

bool
store_read_join(const PGresult *r, const proto_join_req *q, size_t max_bytes,
                proto_join_reply *rep)
{
    int rows = r ? PQntuples(r) : 0;
    int64_t last;
    if (rows < 1 || !pg_col_i64(r, 0, 0, &last) || last < 0)
        return false;
    rep->seq = (uint64_t)last;
    if (PQgetisnull(r, 0, 1))
        return true;            /* nothing missed (or no since) */
    size_t take = (size_t)rows > PROTO_JOIN_MISSED_MAX ? PROTO_JOIN_MISSED_MAX : (size_t)rows;
    take = rows_fitting(r, take, 1, q->room_len, max_bytes);
    rep->more = (size_t)rows > take;
    rep->missed = calloc(take, sizeof(*rep->missed));
    if (!rep->missed)
        return false;
    for (size_t i = 0; i < take; i++) {
        if (!row_msg(r, (int)i, 1, q->room, q->room_len, &rep->missed[i]))
            return false;
        rep->count++;
    }
    return true;
}

bool
store_read_history(const PGresult *r, const proto_history_req *q, size_t max_bytes,
                   proto_history_reply *rep)
{
    size_t rows = r ? (size_t)PQntuples(r) : 0;
    size_t take = rows > q->limit ? (size_t)q->limit : rows;
    take = rows_fitting(r, take, 0, q->room_len, max_bytes);    /* the newest first */
    rep->more = rows > take;
    if (!take)
        return true;
    rep->msgs = calloc(take, sizeof(*rep->msgs));
    if (!rep->msgs)
        return false;
    /* rows are newest first; the reply is ascending */
    for (size_t i = 0; i < take; i++) {
        if (!row_msg(r, (int)(take - 1 - i), 0, q->room, q->room_len, &rep->msgs[i]))
            return false;
        rep->count++;
    }
    return true;
}
