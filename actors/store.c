/*
 * The store actor (see store.h for its contract).
 *
 * Connection. PQconnectStart, then PQconnectPoll each time the socket is
 * ready in the direction the last poll asked for; the watcher is recreated
 * after every poll, because libpq may close the socket and open another
 * (possibly under the same number) while it tries addresses. A deadline timer
 * bounds connect plus migration. Once connected the socket is non-blocking
 * (PQsetnonblocking) and stays watched for reading whatever we do, so that a
 * server going away is seen even while idle.
 *
 * Queries. One at a time: PQsendQuery / PQsendQueryParams, then PQflush until
 * it returns 0 (watching for writability while it returns 1); on
 * readability PQconsumeInput, then PQgetResult while !PQisBusy, until it
 * returns NULL: only then is the query over (and, for a statement outside a
 * transaction block, committed: ReadyForQuery has arrived). Results come in
 * binary format (int8 as 8 bytes big-endian, text and bytea as raw bytes).
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
#include "actors/store.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "actors/chatd.h"
#include "proto/record.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

/* --- SQL ------------------------------------------------------------------ */

#define STORE_SCHEMA_VERSION 1
#define STORE_LOCK_KEY "7236510017"   /* pg_advisory_xact_lock key: "chatd store" */

static const char MIGRATION_SQL[] =
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
    "END\n"
    "$mig$;\n"
    "COMMIT;\n";

static const char BATCH_SQL[] =
    "SELECT o_ord, o_seq FROM chatd_store_batch($1::text[], $2::text[], $3::text[], "
    "$4::bytea[], $5::bigint[])";

/* One row at least (the room's last seq), then the missed messages if any. */
static const char JOIN_SQL[] =
    "SELECT r.last_seq, m.seq, m.id, m.user_name, m.body, m.ts "
    "FROM (SELECT coalesce(max(last_seq), 0)::bigint AS last_seq FROM rooms "
    "      WHERE room = $1) r "
    "LEFT JOIN LATERAL (SELECT seq, id, user_name, body, ts FROM messages "
    "      WHERE room = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::integer) m ON true "
    "ORDER BY m.seq";

static const char HISTORY_SQL[] =
    "SELECT seq, id, user_name, body, ts FROM messages "
    "WHERE room = $1 AND seq < $2::bigint ORDER BY seq DESC LIMIT $3::integer";

/* --- state ---------------------------------------------------------------- */

enum {
    TICK_DEADLINE = 1,          /* connect + migration took too long */
    TICK_FAILED,                /* PQconnectStart failed at once */
};

typedef enum store_phase {
    PH_CONNECTING = 0,
    PH_MIGRATING,
    PH_READY,
} store_phase;

typedef enum job_kind {
    JOB_BATCH,
    JOB_JOIN,
    JOB_HISTORY,
} job_kind;

typedef struct store_job {
    struct store_job *next;
    job_kind kind;
    rt_id from;
    uint64_t corr;
    union {
        proto_batch batch;
        proto_join_req join;
        proto_history_req history;
    } u;
} store_job;

/* A growing byte string for query parameters. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

typedef struct store_state {
    const chatd_config *cfg;
    PGconn *conn;
    store_phase phase;
    bool dead;                  /* crashed: do nothing more */

    rt_io *io;
    int io_fd;

    rt_timer_id deadline;

    store_job *head, *tail;     /* waiting */
    size_t held;                /* waiting + busy */
    store_job *busy;            /* its query is in flight */
    bool inflight;              /* a query (a job's or the migration) is in flight */
    bool flushing;              /* PQflush returned 1 */

    PGresult *res;              /* the in-flight query's rows */
    bool res_failed;
    char errmsg[256];

    sbuf params[5];

    rt_metric *up;
    rt_metric *stored;
} store_state;

/* --- small helpers -------------------------------------------------------- */

static void
sb_reset(sbuf *b)
{
    b->len = 0;
    b->failed = false;
}

static void
sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_putc(sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

/* Appends s as a double-quoted array element. */
static void
sb_put_elem(sbuf *b, const char *s, size_t n)
{
    sb_putc(b, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            sb_put(b, s + start, i - start);
            sb_putc(b, '\\');
            start = i;
        }
    }
    sb_put(b, s + start, n - start);
    sb_putc(b, '"');
}

/* Appends bytes as a quoted bytea array element in hex ("\\x4142"). */
static void
sb_put_bytea(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"\\\\x", 4);
    char chunk[256];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        chunk[k++] = hex[c >> 4];
        chunk[k++] = hex[c & 15];
        if (k == sizeof(chunk)) {
            sb_put(b, chunk, k);
            k = 0;
        }
    }
    sb_put(b, chunk, k);
    sb_putc(b, '"');
}

static void
store_crash(rt_actor *self, store_state *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
store_crash(rt_actor *self, store_state *st, const char *fmt, ...)
{
    if (st->dead)
        return;
    st->dead = true;
    char reason[RT_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    /* libpq messages end with a newline: keep the reason on one line */
    char *w = reason;
    for (char *p = reason; *p; p++) {
        char c = *p == '\n' || *p == '\t' ? ' ' : *p;
        if (c != ' ' || (w > reason && w[-1] != ' '))
            *w++ = c;
    }
    *w = '\0';
    size_t n = strlen(reason);
    while (n > 0 && reason[n - 1] == ' ')
        reason[--n] = '\0';
    rt_warn(rt_who(self), "%s", reason);
    rt_crash(self, "%s", reason);
}

static const char *
pq_error(const PGconn *conn)
{
    const char *e = PQerrorMessage(conn);
    return e && *e ? e : "unknown error";
}

static void
send_record(rt_actor *self, rt_id to, uint32_t type, uint64_t corr, proto_mp_buf *b)
{
    int r = rt_send(rt_of(self), rt_self(self), to, type, corr, b->data, b->len);
    if (r != RT_OK && r != RT_ENOACTOR)
        rt_warn(rt_who(self), "reply %s to #%" PRIu64 " not delivered: %d",
                proto_type_name(type), to, r);
}

static void
job_free(store_job *j)
{
    if (!j)
        return;
    switch (j->kind) {
    case JOB_BATCH: proto_batch_free(&j->u.batch); break;
    case JOB_JOIN: proto_join_req_free(&j->u.join); break;
    case JOB_HISTORY: proto_history_req_free(&j->u.history); break;
    }
    free(j);
}

static void
job_done(store_state *st, store_job *j)
{
    st->held--;
    job_free(j);
}

static void
result_reset(store_state *st)
{
    PQclear(st->res);
    st->res = NULL;
    st->res_failed = false;
    st->errmsg[0] = '\0';
}

/* --- watcher and output ----------------------------------------------------- */

/* Watches the connection's socket for events; fresh: make a new watcher even
 * when the fd number did not change (during connect, libpq may have closed
 * and reopened it). Returns false after crashing. */
static int on_io(rt_actor *self, rt_io *io, int fd, int revents);

static bool
watch(rt_actor *self, store_state *st, int events, bool fresh)
{
    int fd = PQsocket(st->conn);
    if (fd < 0) {
        store_crash(self, st, "PostgreSQL connection has no socket: %s", pq_error(st->conn));
        return false;
    }
    if (st->io && (fresh || fd != st->io_fd)) {
        rt_io_stop(self, st->io);
        st->io = NULL;
    }
    if (!st->io) {
        st->io = rt_io_start(self, fd, events, on_io, NULL);
        if (!st->io) {
            store_crash(self, st, "out of memory (io watcher)");
            return false;
        }
        st->io_fd = fd;
    } else {
        rt_io_set(st->io, events);
    }
    return true;
}

/* Pushes queued output to the server. Returns false after crashing. */
static bool
flush_out(rt_actor *self, store_state *st)
{
    int r = PQflush(st->conn);
    if (r < 0) {
        store_crash(self, st, "lost connection to PostgreSQL (send): %s", pq_error(st->conn));
        return false;
    }
    st->flushing = r == 1;
    return watch(self, st, st->flushing ? EV_READ | EV_WRITE : EV_READ, false);
}

/* --- jobs: sending queries ----------------------------------------------- */

static void pump(rt_actor *self, store_state *st);

/* Sends the query for j. Returns 1 when sent, 0 when j needs no query (it has
 * been answered), -1 when sending failed (j answered unless crashed). */
static int
send_batch(rt_actor *self, store_state *st, store_job *j)
{
    const proto_batch *b = &j->u.batch;
    if (b->count == 0) {
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_NONE, NULL);
        return 0;
    }
    sbuf *p = st->params;
    for (int i = 0; i < 5; i++) {
        sb_reset(&p[i]);
        sb_putc(&p[i], '{');
    }
    for (size_t i = 0; i < b->count; i++) {
        const proto_msg *m = &b->msgs[i];
        if (i) {
            for (int k = 0; k < 5; k++)
                sb_putc(&p[k], ',');
        }
        sb_put_elem(&p[0], m->room, m->room_len);
        sb_put_elem(&p[1], m->id, m->id_len);
        sb_put_elem(&p[2], m->user, m->user_len);
        sb_put_bytea(&p[3], m->text, m->text_len);
        char num[32];
        int n = snprintf(num, sizeof(num), "%" PRId64,
                         m->ts > INT64_MAX ? INT64_MAX : (int64_t)m->ts);
        sb_put(&p[4], num, (size_t)n);
    }
    const char *values[5];
    for (int i = 0; i < 5; i++) {
        sb_putc(&p[i], '}');
        if (p[i].failed) {
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "out of memory");
            return 0;
        }
        values[i] = p[i].p;
    }
    return PQsendQueryParams(st->conn, BATCH_SQL, 5, NULL, values, NULL, NULL, 1) ? 1 : -1;
}

static int
send_job(rt_actor *self, store_state *st, store_job *j)
{
    char a[32], b[32];
    const char *values[3];
    switch (j->kind) {
    case JOB_BATCH:
        return send_batch(self, st, j);
    case JOB_JOIN: {
        const proto_join_req *r = &j->u.join;
        uint64_t since = r->has_since ? r->since : 0;
        snprintf(a, sizeof(a), "%" PRId64, since > INT64_MAX ? INT64_MAX : (int64_t)since);
        snprintf(b, sizeof(b), "%d", r->has_since ? PROTO_JOIN_MISSED_MAX + 1 : 0);
        values[0] = r->room;
        values[1] = a;
        values[2] = b;
        return PQsendQueryParams(st->conn, JOIN_SQL, 3, NULL, values, NULL, NULL, 1) ? 1 : -1;
    }
    case JOB_HISTORY: {
        const proto_history_req *r = &j->u.history;
        uint64_t before = r->has_before ? r->before : UINT64_MAX;
        snprintf(a, sizeof(a), "%" PRId64, before > INT64_MAX ? INT64_MAX : (int64_t)before);
        snprintf(b, sizeof(b), "%" PRIu64, r->limit + 1);
        values[0] = r->room;
        values[1] = a;
        values[2] = b;
        return PQsendQueryParams(st->conn, HISTORY_SQL, 3, NULL, values, NULL, NULL, 1)
            ? 1 : -1;
    }
    }
    return 0;
}

/* Starts queued jobs until one is in flight or the queue is empty. */
static void
pump(rt_actor *self, store_state *st)
{
    while (!st->dead && st->phase == PH_READY && !st->inflight && st->head) {
        store_job *j = st->head;
        st->head = j->next;
        if (!st->head)
            st->tail = NULL;
        j->next = NULL;
        int r = send_job(self, st, j);
        if (r == 1) {
            st->busy = j;
            st->inflight = true;
            result_reset(st);
            flush_out(self, st);
            return;
        }
        if (r < 0) {
            if (PQstatus(st->conn) == CONNECTION_BAD) {
                st->busy = j;   /* terminate answers it */
                store_crash(self, st, "lost connection to PostgreSQL: %s",
                            pq_error(st->conn));
                return;
            }
            rt_warn(rt_who(self), "cannot send a query: %s", pq_error(st->conn));
            chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
        }
        job_done(st, j);
    }
}

/* --- jobs: reading results ------------------------------------------------ */

static bool
col_i64(const PGresult *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return false;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    *out = (int64_t)v;
    return true;
}

/* Fills m from the columns seq, id, user_name, body, ts starting at col. */
static bool
row_msg(const PGresult *r, int row, int col, const char *room, size_t room_len, proto_msg *m)
{
    int64_t seq, ts;
    if (!col_i64(r, row, col, &seq) || !col_i64(r, row, col + 4, &ts) || seq <= 0 || ts < 0)
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

static void
finish_batch(rt_actor *self, store_state *st, store_job *j)
{
    proto_batch *b = &j->u.batch;
    const PGresult *r = st->res;
    int rows = r ? PQntuples(r) : 0;
    proto_msg *fresh = rows ? calloc((size_t)rows, sizeof(*fresh)) : NULL;
    if (rows && !fresh) {
        /* committed, but we cannot say what: the retry finds them stored */
        rt_error(rt_who(self), "out of memory after storing batch %" PRIu64, j->corr);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "out of memory");
        return;
    }
    size_t n = 0;
    for (int i = 0; i < rows; i++) {
        int64_t ord, seq;
        if (!col_i64(r, i, 0, &ord) || !col_i64(r, i, 1, &seq) || ord < 1 ||
            (uint64_t)ord > b->count || seq < 1) {
            rt_error(rt_who(self), "chatd_store_batch returned a bad row %d", i);
            continue;
        }
        b->msgs[ord - 1].seq = (uint64_t)seq;
        fresh[n++] = b->msgs[ord - 1];      /* shallow: only encoded */
    }
    rt_metric_add(st->stored, (double)n);
    rt_debug(rt_who(self), "batch %" PRIu64 ": %zu messages, %zu new", j->corr, b->count, n);
    if (n) {
        proto_batch out = { .msgs = fresh, .count = n };
        proto_mp_buf buf;
        proto_mp_buf_growing(&buf);
        if (proto_batch_encode(&out, &buf) == PROTO_OK) {
            int s = rt_send_named(rt_of(self), rt_self(self), CHATD_FANOUT,
                                  PROTO_T_MESSAGE_BATCH, j->corr, buf.data, buf.len);
            if (s != RT_OK && s != RT_ENOACTOR)
                rt_warn(rt_who(self), "fanout refused batch %" PRIu64 " (%d): live delivery "
                        "of %zu messages lost", j->corr, s, n);
        } else {
            rt_error(rt_who(self), "cannot encode the stored batch %" PRIu64, j->corr);
        }
        proto_mp_buf_free(&buf);
    }
    free(fresh);
    chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_NONE, NULL);
}

static void
finish_join(rt_actor *self, store_state *st, store_job *j)
{
    const proto_join_req *q = &j->u.join;
    const PGresult *r = st->res;
    proto_join_reply rep = {0};
    int rows = r ? PQntuples(r) : 0;
    int64_t last;
    if (rows < 1 || !col_i64(r, 0, 0, &last) || last < 0)
        goto bad;
    rep.seq = (uint64_t)last;
    if (rows > 0 && !PQgetisnull(r, 0, 1)) {
        size_t take = (size_t)rows > PROTO_JOIN_MISSED_MAX ? PROTO_JOIN_MISSED_MAX
                                                           : (size_t)rows;
        rep.more = (size_t)rows > take;
        rep.missed = calloc(take, sizeof(*rep.missed));
        if (!rep.missed)
            goto bad;
        for (size_t i = 0; i < take; i++) {
            if (!row_msg(r, (int)i, 1, q->room, q->room_len, &rep.missed[i]))
                goto bad;
            rep.count++;
        }
    }
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    if (proto_join_reply_encode(&rep, &buf) != PROTO_OK) {
        proto_mp_buf_free(&buf);
        goto bad;
    }
    send_record(self, j->from, PROTO_T_JOIN_REPLY, j->corr, &buf);
    proto_mp_buf_free(&buf);
    proto_join_reply_free(&rep);
    return;
bad:
    rt_error(rt_who(self), "join %s: cannot build the reply from the stored rows", q->room);
    proto_join_reply_free(&rep);
    chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "bad stored data");
}

static void
finish_history(rt_actor *self, store_state *st, store_job *j)
{
    const proto_history_req *q = &j->u.history;
    const PGresult *r = st->res;
    proto_history_reply rep = {0};
    size_t rows = r ? (size_t)PQntuples(r) : 0;
    size_t take = rows > q->limit ? (size_t)q->limit : rows;
    rep.more = rows > take;
    if (take) {
        rep.msgs = calloc(take, sizeof(*rep.msgs));
        if (!rep.msgs)
            goto bad;
        /* rows are newest first; the reply is ascending */
        for (size_t i = 0; i < take; i++) {
            if (!row_msg(r, (int)(take - 1 - i), 0, q->room, q->room_len, &rep.msgs[i]))
                goto bad;
            rep.count++;
        }
    }
    proto_mp_buf buf;
    proto_mp_buf_growing(&buf);
    if (proto_history_reply_encode(&rep, &buf) != PROTO_OK) {
        proto_mp_buf_free(&buf);
        goto bad;
    }
    send_record(self, j->from, PROTO_T_HISTORY_REPLY, j->corr, &buf);
    proto_mp_buf_free(&buf);
    proto_history_reply_free(&rep);
    return;
bad:
    rt_error(rt_who(self), "history %s: cannot build the reply from the stored rows", q->room);
    proto_history_reply_free(&rep);
    chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_INTERNAL, "bad stored data");
}

/* The in-flight query has ended (PQgetResult returned NULL). */
static void
query_done(rt_actor *self, store_state *st)
{
    st->inflight = false;
    if (PQstatus(st->conn) == CONNECTION_BAD) {
        store_crash(self, st, "lost connection to PostgreSQL: %s",
                    st->errmsg[0] ? st->errmsg : pq_error(st->conn));
        return;
    }
    if (st->phase == PH_MIGRATING) {
        if (st->res_failed) {
            store_crash(self, st, "schema migration failed: %s", st->errmsg);
            return;
        }
        result_reset(st);
        st->phase = PH_READY;
        if (st->deadline)
            rt_cancel_timer(self, st->deadline);
        st->deadline = 0;
        rt_metric_set(st->up, 1);
        rt_info(rt_who(self), "connected to PostgreSQL, schema version %d, %zu requests waiting",
                STORE_SCHEMA_VERSION, st->held);
        pump(self, st);
        return;
    }
    store_job *j = st->busy;
    st->busy = NULL;
    if (!j)
        return;
    if (st->res_failed) {
        /* a statement failed: the transaction was rolled back (autocommit) */
        rt_warn(rt_who(self), "%s for #%" PRIu64 " corr %" PRIu64 " failed: %s",
                j->kind == JOB_BATCH ? "batch" : j->kind == JOB_JOIN ? "join" : "history",
                j->from, j->corr, st->errmsg);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "database error");
    } else {
        switch (j->kind) {
        case JOB_BATCH: finish_batch(self, st, j); break;
        case JOB_JOIN: finish_join(self, st, j); break;
        case JOB_HISTORY: finish_history(self, st, j); break;
        }
    }
    result_reset(st);
    job_done(st, j);
    pump(self, st);
}

static void
collect(store_state *st, PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK) {
        PQclear(st->res);
        st->res = r;
        return;
    }
    if (s != PGRES_COMMAND_OK && !st->res_failed) {
        st->res_failed = true;
        const char *e = PQresultErrorMessage(r);
        snprintf(st->errmsg, sizeof(st->errmsg), "%s",
                 e && *e ? e : PQresStatus(s));
        size_t n = strlen(st->errmsg);
        while (n > 0 && (st->errmsg[n - 1] == '\n' || st->errmsg[n - 1] == ' '))
            st->errmsg[--n] = '\0';
    }
    PQclear(r);
}

static void
read_in(rt_actor *self, store_state *st)
{
    if (!PQconsumeInput(st->conn)) {
        store_crash(self, st, "lost connection to PostgreSQL: %s", pq_error(st->conn));
        return;
    }
    if (st->flushing && !flush_out(self, st))
        return;
    while (!st->dead && st->inflight && !PQisBusy(st->conn)) {
        PGresult *r = PQgetResult(st->conn);
        if (r)
            collect(st, r);
        else
            query_done(self, st);
    }
    if (st->dead)
        return;
    PGnotify *n;
    while ((n = PQnotifies(st->conn)))
        PQfreemem(n);
    if (PQstatus(st->conn) == CONNECTION_BAD)
        store_crash(self, st, "lost connection to PostgreSQL: %s", pq_error(st->conn));
}

/* --- connecting -------------------------------------------------------------- */

static void
on_notice(void *arg, const char *message)
{
    rt_debug((const char *)arg, "postgres: %s", message);
}

static void
connected(rt_actor *self, store_state *st)
{
    if (PQsetnonblocking(st->conn, 1) != 0) {
        store_crash(self, st, "PQsetnonblocking failed: %s", pq_error(st->conn));
        return;
    }
    PQsetNoticeProcessor(st->conn, on_notice, (void *)rt_who(self));
    st->phase = PH_MIGRATING;
    if (!PQsendQuery(st->conn, MIGRATION_SQL)) {
        store_crash(self, st, "cannot send the schema migration: %s", pq_error(st->conn));
        return;
    }
    st->inflight = true;
    result_reset(st);
    /* the socket is final now: one fresh watcher for the connection's life */
    if (watch(self, st, EV_READ, true))
        flush_out(self, st);
}

static void
connect_step(rt_actor *self, store_state *st)
{
    switch (PQconnectPoll(st->conn)) {
    case PGRES_POLLING_OK:
        connected(self, st);
        break;
    case PGRES_POLLING_READING:
        watch(self, st, EV_READ, true);
        break;
    case PGRES_POLLING_WRITING:
        watch(self, st, EV_WRITE, true);
        break;
    default:
        store_crash(self, st, "cannot connect to PostgreSQL: %s", pq_error(st->conn));
        break;
    }
}

static int
on_io(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)io;
    (void)fd;
    store_state *st = rt_state(self);
    if (st->dead)
        return RT_OK;
    if (st->phase == PH_CONNECTING) {
        connect_step(self, st);
        return RT_OK;
    }
    if ((revents & EV_WRITE) && st->flushing && !flush_out(self, st))
        return RT_OK;
    if (revents & EV_READ)
        read_in(self, st);
    return RT_OK;
}

/* --- the actor ----------------------------------------------------------------- */

static int
store_init(rt_actor *self, const void *arg)
{
    store_state *st = rt_state(self);
    st->cfg = arg;
    st->io_fd = -1;
    rt_runtime *rt = rt_of(self);
    st->up = rt_metric_get(rt, RT_GAUGE, "chatd_backend_up",
                           "backend=\"" CHATD_BACKEND_POSTGRES "\"",
                           "1 when the backend is connected.");
    st->stored = rt_metric_get(rt, RT_COUNTER, "chatd_messages_stored_total", NULL,
                               "Messages newly stored in PostgreSQL.");
    rt_metric_set(st->up, 0);

    st->conn = PQconnectStart(st->cfg && st->cfg->pg_dsn ? st->cfg->pg_dsn : "");
    if (!st->conn) {
        rt_error(rt_who(self), "PQconnectStart: out of memory");
        return RT_ERR;
    }
    st->deadline = rt_send_after(self, STORE_CONNECT_TIMEOUT_MS, CHATD_T_TICK, TICK_DEADLINE,
                                 NULL, 0);
    if (!st->deadline)
        return RT_ERR;
    /* init must not crash: a connect that failed at once is reported from
     * the handler, through a message to ourselves */
    if (PQstatus(st->conn) == CONNECTION_BAD) {
        if (!rt_send_after(self, 0, CHATD_T_TICK, TICK_FAILED, NULL, 0))
            return RT_ERR;
        return RT_OK;
    }
    int fd = PQsocket(st->conn);
    if (fd < 0) {
        if (!rt_send_after(self, 0, CHATD_T_TICK, TICK_FAILED, NULL, 0))
            return RT_ERR;
        return RT_OK;
    }
    st->io = rt_io_start(self, fd, EV_WRITE, on_io, NULL);
    if (!st->io)
        return RT_ERR;
    st->io_fd = fd;
    return RT_OK;
}

static void
enqueue(rt_actor *self, store_state *st, store_job *j)
{
    if (st->held >= STORE_QUEUE_MAX) {
        rt_warn(rt_who(self), "queue full (%zu requests): refusing corr %" PRIu64 " from #%"
                PRIu64, st->held, j->corr, j->from);
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "store overloaded");
        job_free(j);
        return;
    }
    st->held++;
    if (st->tail)
        st->tail->next = j;
    else
        st->head = j;
    st->tail = j;
    pump(self, st);
}

static int
store_handle(rt_actor *self, const proto_env *msg)
{
    store_state *st = rt_state(self);
    if (msg->type == CHATD_T_TICK) {
        if (msg->corr == TICK_FAILED)
            store_crash(self, st, "cannot connect to PostgreSQL: %s", pq_error(st->conn));
        else if (msg->corr == TICK_DEADLINE && st->phase != PH_READY)
            store_crash(self, st, "PostgreSQL %s did not finish within %d ms",
                        st->phase == PH_CONNECTING ? "connect" : "schema migration",
                        STORE_CONNECT_TIMEOUT_MS);
        return RT_OK;
    }
    if (msg->type == RT_T_EXIT)
        return RT_OK;

    store_job *j = calloc(1, sizeof(*j));
    if (!j) {
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_UNAVAILABLE, "out of memory");
        return RT_OK;
    }
    j->from = msg->from;
    j->corr = msg->corr;
    proto_err e;
    switch (msg->type) {
    case PROTO_T_MESSAGE_BATCH:
        j->kind = JOB_BATCH;
        e = proto_batch_decode(msg->payload, msg->payload_len, &j->u.batch);
        break;
    case PROTO_T_JOIN_REQ:
        j->kind = JOB_JOIN;
        e = proto_join_req_decode(msg->payload, msg->payload_len, &j->u.join);
        break;
    case PROTO_T_HISTORY_REQ:
        j->kind = JOB_HISTORY;
        e = proto_history_req_decode(msg->payload, msg->payload_len, &j->u.history);
        break;
    default:
        rt_warn(rt_who(self), "unexpected message type %" PRIu32 " from #%" PRIu64,
                msg->type, msg->from);
        free(j);
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, "unexpected message type");
        return RT_OK;
    }
    if (e != PROTO_OK) {
        rt_warn(rt_who(self), "malformed %s from #%" PRIu64 " corr %" PRIu64 ": %s",
                proto_type_name(msg->type), msg->from, msg->corr, proto_strerror(e));
        free(j);                /* a failed decode leaves nothing to free */
        char why[128];
        snprintf(why, sizeof(why), "malformed %s: %s", proto_type_name(msg->type),
                 proto_strerror(e));
        chatd_reply_ack(self, msg->from, msg->corr, PROTO_ACK_BAD_REQUEST, why);
        return RT_OK;
    }
    enqueue(self, st, j);
    return RT_OK;
}

static void
store_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    store_state *st = rt_state(self);
    st->io = NULL;              /* the runtime has freed our watchers */
    /* Answer what we still hold, so senders retry now rather than at their
     * deadline. */
    store_job *busy = st->busy;
    st->busy = NULL;
    if (busy) {
        chatd_reply_ack(self, busy->from, busy->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        job_free(busy);
    }
    while (st->head) {
        store_job *j = st->head;
        st->head = j->next;
        chatd_reply_ack(self, j->from, j->corr, PROTO_ACK_UNAVAILABLE, "store restarting");
        job_free(j);
    }
    st->tail = NULL;
    st->held = 0;
    result_reset(st);
    if (st->conn)
        PQfinish(st->conn);
    st->conn = NULL;
    for (int i = 0; i < 5; i++)
        free(st->params[i].p);
    rt_metric_set(st->up, 0);
}

const rt_actor_spec chatd_store_spec = {
    .name = CHATD_STORE,
    .state_size = sizeof(store_state),
    .init = store_init,
    .handle = store_handle,
    .terminate = store_terminate,
    .mailbox_cap = 4096,
    .overflow = RT_OVERFLOW_REJECT,
    .batch = 64,
};
