/*
 * adapters/pg: one PostgreSQL connection, driven by libpq's non-blocking API
 * on an actor's loop (the runtime's rt_io watchers and rt_send_after timers),
 * never by a blocking libpq call. It runs the queries it is given, one at a
 * time, and knows nothing of what they mean. Files: pg.c (the connection),
 * pg_array.c (the data formats: pg_col_i64, pg_array).
 *
 * How libpq is driven (the facts this adapter is built on):
 *
 * Connecting. PQconnectStart, then PQconnectPoll each time the socket is
 * ready in the direction the last poll asked for (the first time: writable).
 * The watcher is recreated after every poll, because libpq may close the
 * socket and open another (possibly under the same number) while it tries
 * addresses. Once connected the socket is made non-blocking
 * (PQsetnonblocking) and stays watched for reading whatever happens, so that
 * a server going away is seen even while idle. Notices (NOTICE, WARNING from
 * the server) go to the log at debug level instead of libpq's stderr.
 *
 * Queries. One at a time: PQsendQuery / PQsendQueryParams, then PQflush until
 * it returns 0 (watching for writability while it returns 1); on readability
 * PQconsumeInput, then PQgetResult while !PQisBusy, until it returns NULL:
 * only then is the query over (and, for a statement outside a transaction
 * block, committed: ReadyForQuery has arrived). A query string of several
 * statements yields one result per statement; the server stops at the first
 * that fails. libpq's error texts end with a newline and may span lines: every
 * text this adapter hands out is squeezed onto one line.
 *
 * Results of pg_send come in binary format: int8 as 8 bytes big-endian (read
 * them with pg_col_i64), text and bytea as their raw bytes (PQgetvalue,
 * PQgetlength). Parameters go as text; arrays as array literals (pg_array).
 *
 * The life of a connection:
 *
 *   pg_open ──▶ connecting ──▶ setup query (if any) ──▶ ready ◀──▶ query in flight
 *                   │                  │                  │
 *                   └──────────────────┴──────────────────┴──▶ failed (on_failed, once)
 *
 * Callbacks run on the loop in the actor's context, only from the adapter's
 * own watcher and from pg_timer, never inside pg_open, pg_send or pg_free. A
 * failure the adapter finds by itself (a socket event, a deadline) comes
 * through on_failed; a failure found by a call the owner makes is that call's
 * return value and no callback follows for it. Either way a connection fails
 * once, and after that it calls nothing more: the owner frees it.
 *
 * Freeing: while the actor runs, pg_free, also from inside any of the
 * callbacks (the adapter then marks the connection and frees it once the
 * callback has returned to it, as hiredis's async context does). From the
 * actor's terminate, pg_free_exited: the runtime has already freed the
 * watcher and the timers then, and it touches neither.
 *
 * Deadlines. The adapter's timers are messages to the owner (rt_send_after),
 * of a type the owner gives (pg_options.timer_type) and hands back through
 * pg_timer: connect plus setup must finish within connect_timeout_ms, and,
 * with query_timeout_ms, each query twice over: the server is asked to cancel
 * a statement that runs longer (statement_timeout, set at the end of the
 * setup phase, so the owner's setup is not bound by it; the owner then gets
 * on_result with the server's "canceling statement due to statement timeout"
 * and the connection stays usable), and a query the server has not answered
 * PG_QUERY_GRACE_MS after that (a hung server: SIGSTOP, a dead host behind an
 * open TCP connection) fails the connection with PG_FAIL_TIMEOUT. Without that
 * client-side deadline a hung server would hold the owner's queue forever:
 * TCP gives no error while the peer's kernel still acknowledges.
 */
#ifndef CHATD_ADAPTERS_PG_H
#define CHATD_ADAPTERS_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "proto/envelope.h"
#include "runtime/rt.h"

typedef struct pg_conn pg_conn;

/* How long past query_timeout_ms the server may take to report its own
 * statement timeout before the connection is taken for hung. */
#define PG_QUERY_GRACE_MS 1000

/* Return codes of pg_send. */
enum {
    PG_OK = 0,
    PG_ERR = -1,        /* not sent; the connection is still usable */
    PG_ELOST = -2,      /* not sent: the connection has failed (pg_error says
                         * why); no on_failed follows for it */
};

/* Why a connection failed. */
typedef enum pg_failure {
    PG_FAIL_CONNECT = 1,    /* the server could not be reached or refused us */
    PG_FAIL_TIMEOUT,        /* connect plus setup took longer than allowed, or
                             * the server did not answer a query in time */
    PG_FAIL_SETUP,          /* the setup query failed */
    PG_FAIL_LOST,           /* the connection broke after it was made */
} pg_failure;

typedef struct pg_callbacks {
    /* Connected and the setup query (if any) succeeded: pg_send may be
     * called from now on (also from inside this callback). */
    void (*on_ready)(pg_conn *c, void *data);

    /* The query of the last pg_send has ended. res is the last result that
     * carried rows (PGRES_TUPLES_OK), or NULL when none did; error is NULL
     * when every statement succeeded, else the first failure's message (a
     * failed statement outside a transaction block was rolled back). Both
     * belong to the adapter and live until this callback returns. The next
     * pg_send may be made from inside this callback. */
    void (*on_result)(pg_conn *c, void *data, const PGresult *res, const char *error);

    /* The connection has failed (why: one line naming what failed, with
     * libpq's or the server's words). Nothing is called after this. */
    void (*on_failed)(pg_conn *c, void *data, pg_failure kind, const char *why);
} pg_callbacks;

typedef struct pg_options {
    const char *conninfo;       /* libpq connection string ("" or NULL: libpq's
                                 * defaults and PG* environment variables) */
    const char *setup_sql;      /* run once connected, before on_ready, as one
                                 * simple query (several statements allowed);
                                 * NULL: none */
    const char *setup_name;     /* names the setup in texts ("schema
                                 * migration"); NULL: "setup" */
    int connect_timeout_ms;     /* connect plus setup deadline; 0: none */
    int query_timeout_ms;       /* statement_timeout of every query after the
                                 * setup; the connection fails when the server
                                 * has not answered PG_QUERY_GRACE_MS later;
                                 * 0: neither */
    uint32_t timer_type;        /* message type of the adapter's timers */
    pg_callbacks cb;
    void *data;                 /* passed to every callback */
} pg_options;

/*
 * Starts connecting for the actor self (call it from self's init or
 * handler). The strings in opts must outlive the connection. A connection
 * that fails at once is reported through on_failed from the first pg_timer
 * call, never from here. Returns NULL only when out of memory.
 */
pg_conn *pg_open(rt_actor *self, const pg_options *opts);

/*
 * The owner's handler passes every message of type opts.timer_type here.
 * Returns true when the message was this connection's (handled: it may have
 * called on_failed), false when it was not (another connection's or stale).
 */
bool pg_timer(pg_conn *c, const proto_env *msg);

/*
 * Sends one statement with nparams text parameters (values[i] NUL-terminated,
 * NULL for SQL NULL); rows come back in binary format through on_result.
 * Only when ready and no query is in flight. Returns PG_OK, PG_ERR (not
 * ready, busy, or libpq refused; pg_error says why) or PG_ELOST.
 */
int pg_send(pg_conn *c, const char *sql, int nparams, const char *const *values);

/* True once on_ready was called and until the connection fails. */
bool pg_ready(const pg_conn *c);

/* True while a query sent by pg_send has not ended. */
bool pg_busy(const pg_conn *c);

/* The last error text (one line; "" when none). Valid until the next call. */
const char *pg_error(const pg_conn *c);

/* Closes the connection and frees it while the actor runs (its handler, or
 * inside a callback: deferred until the callback returns); no callback
 * follows. NULL is ignored. */
void pg_free(pg_conn *c);

/* The same for the actor's terminate (or after a failed init), once the
 * runtime has freed the actor's watchers and timers. NULL is ignored. */
void pg_free_exited(pg_conn *c);

/* Reads a binary int8 column. Returns false when it is NULL or not 8 bytes. */
bool pg_col_i64(const PGresult *r, int row, int col, int64_t *out);

/*
 * An array parameter in PostgreSQL's text format ('{"a","b\"c"}',
 * '{"\\x4142"}', '{1,2}'), built one element at a time. Zero it before the
 * first use; keep it to reuse its buffer; pg_array_free at the end. Running
 * out of memory is remembered and reported by pg_array_end.
 */
typedef struct pg_array {
    char *text;
    size_t len, cap;
    size_t count;
    bool failed;
} pg_array;

/* Empties the array (keeps the buffer). */
void pg_array_begin(pg_array *a);
void pg_array_add_text(pg_array *a, const char *s, size_t n);
void pg_array_add_bytea(pg_array *a, const void *bytes, size_t n);
void pg_array_add_int64(pg_array *a, int64_t v);
/* Closes the literal. Returns its text (the array's, valid until the next
 * change), or NULL when memory ran out on the way. */
const char *pg_array_end(pg_array *a);
void pg_array_free(pg_array *a);

#endif
