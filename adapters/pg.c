/*
 * adapters/pg (see pg.h for the contract and the libpq facts it rests on).
 *
 * Re-entrancy. Callbacks are called only between enter() and leave(), in the
 * two dispatch points (the watcher's on_io and pg_timer). A failure found on
 * the way is recorded (fail: state PG_S_FAILED, watcher stopped, timers
 * cancelled) and reported by leave(), once, after whatever else that dispatch
 * did; every loop in between stops as soon as the connection is no longer
 * live (failed, or freed by the owner from a callback). pg_free inside a
 * callback only marks the connection: leave() of the outermost dispatch frees
 * it.
 */
#include "adapters/pg.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"

typedef enum pg_state {
    PG_S_CONNECTING = 0,
    PG_S_SETUP,                 /* the setup query is in flight */
    PG_S_READY,
    PG_S_FAILED,
} pg_state;

/* What an adapter timer is for: the low byte of its corr; the rest is the
 * connection's serial, so a timer of a freed connection is never taken for
 * a later one's. */
enum {
    TIMER_FAILED = 1,           /* report a failure found inside pg_open */
    TIMER_DEADLINE,             /* connect plus setup took too long */
    TIMER_QUERY,                /* the server did not answer a query in time */
};

struct pg_conn {
    rt_actor *self;
    pg_options opts;
    PGconn *conn;
    pg_state state;
    pg_failure failure;         /* why, once failed */
    bool failure_told;          /* on_failed called, or returned as PG_ELOST */

    rt_io *io;
    int io_fd;
    uint64_t serial;
    rt_timer_id deadline;
    rt_timer_id query_timer;
    rt_timer_id failed_timer;
    char *setup_text;           /* what the setup phase sends; NULL: nothing */

    bool busy;                  /* a query (the owner's or the setup) is in flight */
    bool flushing;              /* PQflush returned 1: watching for writability */
    PGresult *res;              /* the in-flight query's last rows */
    bool res_failed;
    char res_err[256];

    unsigned in_cb;             /* dispatches of this connection on the stack */
    bool free_pending;          /* pg_free was called inside one */

    char err[256];
};

/* Serials need only be distinct, not ordered with anything: relaxed. */
static atomic_uint_fast64_t next_serial = 1;

/* --- text --------------------------------------------------------------------- */

/* Puts s on one line: tabs and newlines become spaces, runs of spaces one
 * space, none at either end. */
static void
squeeze(char *s)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        char ch = *p == '\n' || *p == '\t' || *p == '\r' ? ' ' : *p;
        if (ch != ' ' || (w > s && w[-1] != ' '))
            *w++ = ch;
    }
    while (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static const char *
pq_text(const pg_conn *c)
{
    const char *e = PQerrorMessage(c->conn);
    return e && *e ? e : "unknown error";
}

static void
set_err(pg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_err(pg_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    squeeze(c->err);
}

static const char *
setup_name(const pg_conn *c)
{
    return c->opts.setup_name ? c->opts.setup_name : "setup";
}

/* --- state ---------------------------------------------------------------------- */

static bool
live(const pg_conn *c)
{
    return c->state != PG_S_FAILED && !c->free_pending;
}

static void
result_reset(pg_conn *c)
{
    PQclear(c->res);
    c->res = NULL;
    c->res_failed = false;
    c->res_err[0] = '\0';
}

static void
stop_timers(pg_conn *c)
{
    if (c->deadline)
        rt_cancel_timer(c->self, c->deadline);
    c->deadline = 0;
    if (c->query_timer)
        rt_cancel_timer(c->self, c->query_timer);
    c->query_timer = 0;
}

/* Records the failure (the first one stands) and stops watching: nothing
 * more happens on this connection. The report is leave()'s, or the caller's
 * return value. */
static void
fail(pg_conn *c, pg_failure kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
fail(pg_conn *c, pg_failure kind, const char *fmt, ...)
{
    if (c->state == PG_S_FAILED)
        return;
    c->state = PG_S_FAILED;
    c->failure = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    squeeze(c->err);
    if (c->io)
        rt_io_stop(c->self, c->io);
    c->io = NULL;
    stop_timers(c);
    c->busy = false;
    c->flushing = false;
    result_reset(c);
}

/* A broken socket while connecting is a failed connect, after it a loss. */
static pg_failure
broken_kind(const pg_conn *c)
{
    return c->state == PG_S_CONNECTING ? PG_FAIL_CONNECT : PG_FAIL_LOST;
}

static void
destroy(pg_conn *c, bool exited)
{
    if (!exited) {
        if (c->io)
            rt_io_stop(c->self, c->io);
        stop_timers(c);
        if (c->failed_timer)
            rt_cancel_timer(c->self, c->failed_timer);
    }
    PQclear(c->res);
    if (c->conn)
        PQfinish(c->conn);
    free(c->setup_text);
    free(c);
}

static void
enter(pg_conn *c)
{
    c->in_cb++;
}

/* Ends a dispatch: reports a failure not yet told (the connection is still
 * "in callback" while on_failed runs), then frees the connection if the
 * owner asked for that from a callback. */
static void
leave(pg_conn *c)
{
    if (c->state == PG_S_FAILED && !c->failure_told && !c->free_pending) {
        c->failure_told = true;
        if (c->opts.cb.on_failed)
            c->opts.cb.on_failed(c, c->opts.data, c->failure, c->err);
    }
    if (--c->in_cb == 0 && c->free_pending)
        destroy(c, false);
}

/* --- watcher and output ------------------------------------------------------- */

static int on_io(rt_actor *self, rt_io *io, int fd, int revents);

/* Watches the socket for events; fresh: make a new watcher even when the fd
 * number did not change (while connecting, libpq may have closed and
 * reopened it). Returns false after failing. */
static bool
watch(pg_conn *c, int events, bool fresh)
{
    int fd = PQsocket(c->conn);
    if (fd < 0) {
        fail(c, broken_kind(c), "PostgreSQL connection has no socket: %s", pq_text(c));
        return false;
    }
    if (c->io && (fresh || fd != c->io_fd)) {
        rt_io_stop(c->self, c->io);
        c->io = NULL;
    }
    if (!c->io) {
        c->io = rt_io_start(c->self, fd, events, on_io, c);
        if (!c->io) {
            fail(c, broken_kind(c), "out of memory (io watcher)");
            return false;
        }
        c->io_fd = fd;
    } else {
        rt_io_set(c->io, events);
    }
    return true;
}

/* Pushes queued output to the server. Returns false after failing. */
static bool
flush_out(pg_conn *c)
{
    int r = PQflush(c->conn);
    if (r < 0) {
        fail(c, broken_kind(c), "lost connection to PostgreSQL (send): %s", pq_text(c));
        return false;
    }
    c->flushing = r == 1;
    return watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, false);
}

/* --- input -------------------------------------------------------------------- */

static void
become_ready(pg_conn *c)
{
    c->state = PG_S_READY;
    stop_timers(c);
    if (c->opts.cb.on_ready)
        c->opts.cb.on_ready(c, c->opts.data);
}

/* Keeps the last result with rows and the first failure's text. */
static void
collect(pg_conn *c, PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK) {
        PQclear(c->res);
        c->res = r;
        return;
    }
    if (s != PGRES_COMMAND_OK && !c->res_failed) {
        c->res_failed = true;
        const char *e = PQresultErrorMessage(r);
        snprintf(c->res_err, sizeof(c->res_err), "%s", e && *e ? e : PQresStatus(s));
        squeeze(c->res_err);
    }
    PQclear(r);
}

/* The in-flight query has ended (PQgetResult returned NULL). */
static void
query_end(pg_conn *c)
{
    c->busy = false;
    if (c->query_timer)
        rt_cancel_timer(c->self, c->query_timer);
    c->query_timer = 0;
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        fail(c, PG_FAIL_LOST, "lost connection to PostgreSQL: %s",
             c->res_failed ? c->res_err : pq_text(c));
        return;
    }
    /* Taken out first: the owner may send the next query from on_result. */
    PGresult *res = c->res;
    bool failed = c->res_failed;
    char err[sizeof(c->res_err)];
    memcpy(err, c->res_err, sizeof(err));
    c->res = NULL;
    result_reset(c);
    if (c->state == PG_S_SETUP) {
        PQclear(res);
        if (failed)
            fail(c, PG_FAIL_SETUP, "%s failed: %s", setup_name(c), err);
        else
            become_ready(c);
        return;
    }
    if (c->opts.cb.on_result)
        c->opts.cb.on_result(c, c->opts.data, res, failed ? err : NULL);
    PQclear(res);
}

static void
read_in(pg_conn *c)
{
    if (!PQconsumeInput(c->conn)) {
        fail(c, PG_FAIL_LOST, "lost connection to PostgreSQL: %s", pq_text(c));
        return;
    }
    if (c->flushing && !flush_out(c))
        return;
    while (live(c) && c->busy && !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (r)
            collect(c, r);
        else
            query_end(c);
    }
    if (!live(c))
        return;
    PGnotify *n;
    while ((n = PQnotifies(c->conn)))
        PQfreemem(n);
    if (PQstatus(c->conn) == CONNECTION_BAD)
        fail(c, PG_FAIL_LOST, "lost connection to PostgreSQL: %s", pq_text(c));
}

/* --- connecting ------------------------------------------------------------------ */

static void
on_notice(void *arg, const char *message)
{
    rt_debug((const char *)arg, "postgres: %s", message);
}

static void
connected(pg_conn *c)
{
    if (PQsetnonblocking(c->conn, 1) != 0) {
        fail(c, PG_FAIL_CONNECT, "PQsetnonblocking failed: %s", pq_text(c));
        return;
    }
    PQsetNoticeProcessor(c->conn, on_notice, (void *)rt_who(c->self));
    if (!c->setup_text) {
        /* the socket is final now: one fresh watcher for the connection's life */
        if (watch(c, EV_READ, true))
            become_ready(c);
        return;
    }
    c->state = PG_S_SETUP;
    if (!PQsendQuery(c->conn, c->setup_text)) {
        fail(c, PG_FAIL_SETUP, "cannot send the %s: %s", setup_name(c), pq_text(c));
        return;
    }
    c->busy = true;
    result_reset(c);
    if (watch(c, EV_READ, true))
        flush_out(c);
}

static void
connect_step(pg_conn *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_OK:
        connected(c);
        break;
    case PGRES_POLLING_READING:
        watch(c, EV_READ, true);
        break;
    case PGRES_POLLING_WRITING:
        watch(c, EV_WRITE, true);
        break;
    default:
        fail(c, PG_FAIL_CONNECT, "cannot connect to PostgreSQL: %s", pq_text(c));
        break;
    }
}

static int
on_io(rt_actor *self, rt_io *io, int fd, int revents)
{
    (void)self;
    (void)fd;
    pg_conn *c = rt_io_data(io);
    if (!live(c))
        return RT_OK;
    enter(c);
    if (c->state == PG_S_CONNECTING) {
        connect_step(c);
    } else {
        bool ok = !((revents & EV_WRITE) && c->flushing) || flush_out(c);
        if (ok && (revents & EV_READ))
            read_in(c);
    }
    leave(c);
    return RT_OK;
}

static rt_timer_id
arm(pg_conn *c, int ms, unsigned what)
{
    return rt_send_after(c->self, ms, c->opts.timer_type, c->serial << 8 | what, NULL, 0);
}

/* The setup phase's query: the owner's setup, then the server-side statement
 * timeout (after the setup, which may wait on locks for longer; a statement's
 * timeout applies to each statement of a simple query since PostgreSQL 13).
 * Returns false when out of memory. */
static bool
make_setup(pg_conn *c)
{
    const char *own = c->opts.setup_sql;
    int ms = c->opts.query_timeout_ms;
    if (ms <= 0) {
        c->setup_text = own ? strdup(own) : NULL;
        return !own || c->setup_text;
    }
    if (asprintf(&c->setup_text, "%s%sSET statement_timeout = %d", own ? own : "",
                 own ? ";\n" : "", ms) < 0) {
        c->setup_text = NULL;
        return false;
    }
    return true;
}

/* --- the calls ------------------------------------------------------------------- */

pg_conn *
pg_open(rt_actor *self, const pg_options *opts)
{
    pg_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->self = self;
    c->opts = *opts;
    c->io_fd = -1;
    c->serial = atomic_fetch_add_explicit(&next_serial, 1, memory_order_relaxed);
    if (!make_setup(c))
        goto err;
    c->conn = PQconnectStart(opts->conninfo ? opts->conninfo : "");
    if (!c->conn)
        goto err;
    if (opts->connect_timeout_ms > 0 &&
        !(c->deadline = arm(c, opts->connect_timeout_ms, TIMER_DEADLINE)))
        goto err;
    /* A connect that failed at once is reported from the first dispatch. */
    if (PQstatus(c->conn) == CONNECTION_BAD || PQsocket(c->conn) < 0) {
        fail(c, PG_FAIL_CONNECT, "cannot connect to PostgreSQL: %s", pq_text(c));
        if (!(c->failed_timer = arm(c, 0, TIMER_FAILED)))
            goto err;
        return c;
    }
    /* libpq: before the first PQconnectPoll, behave as if it asked for writing */
    c->io = rt_io_start(self, PQsocket(c->conn), EV_WRITE, on_io, c);
    if (!c->io)
        goto err;
    c->io_fd = PQsocket(c->conn);
    return c;
err:
    destroy(c, false);
    return NULL;
}

bool
pg_timer(pg_conn *c, const proto_env *msg)
{
    if (!c || msg->type != c->opts.timer_type || msg->corr >> 8 != c->serial)
        return false;
    if (!live(c) && c->failure_told)
        return true;
    enter(c);
    switch (msg->corr & 0xff) {
    case TIMER_DEADLINE:
        c->deadline = 0;
        if (c->state == PG_S_CONNECTING || c->state == PG_S_SETUP)
            fail(c, PG_FAIL_TIMEOUT, "PostgreSQL %s did not finish within %d ms",
                 c->state == PG_S_CONNECTING ? "connect" : setup_name(c),
                 c->opts.connect_timeout_ms);
        break;
    case TIMER_QUERY:
        c->query_timer = 0;
        if (c->state == PG_S_READY && c->busy)
            fail(c, PG_FAIL_TIMEOUT, "PostgreSQL did not answer a query within %d ms",
                 c->opts.query_timeout_ms + PG_QUERY_GRACE_MS);
        break;
    case TIMER_FAILED:
        c->failed_timer = 0;    /* the failure is recorded: leave() reports it */
        break;
    }
    leave(c);
    return true;
}

int
pg_send(pg_conn *c, const char *sql, int nparams, const char *const *values)
{
    if (c->state == PG_S_FAILED) {
        c->failure_told = true;     /* this return tells it, if nothing did */
        return PG_ELOST;
    }
    if (c->state != PG_S_READY || c->busy) {
        set_err(c, "%s", c->busy ? "a query is in flight" : "not connected yet");
        return PG_ERR;
    }
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, values, NULL, NULL, 1)) {
        if (PQstatus(c->conn) == CONNECTION_BAD) {
            fail(c, PG_FAIL_LOST, "lost connection to PostgreSQL: %s", pq_text(c));
            c->failure_told = true;
            return PG_ELOST;
        }
        set_err(c, "cannot send a query: %s", pq_text(c));
        return PG_ERR;
    }
    c->busy = true;
    result_reset(c);
    if (!flush_out(c)) {
        c->failure_told = true;
        return PG_ELOST;
    }
    if (c->opts.query_timeout_ms > 0 &&
        !(c->query_timer = arm(c, c->opts.query_timeout_ms + PG_QUERY_GRACE_MS, TIMER_QUERY))) {
        fail(c, PG_FAIL_LOST, "out of memory (query timer)");
        c->failure_told = true;
        return PG_ELOST;
    }
    return PG_OK;
}

bool
pg_ready(const pg_conn *c)
{
    return c->state == PG_S_READY;
}

bool
pg_busy(const pg_conn *c)
{
    return c->state == PG_S_READY && c->busy;
}

const char *
pg_error(const pg_conn *c)
{
    return c->err;
}

void
pg_free(pg_conn *c)
{
    if (!c)
        return;
    if (c->in_cb) {
        c->free_pending = true;
        return;
    }
    destroy(c, false);
}

void
pg_free_exited(pg_conn *c)
{
    if (c)
        destroy(c, true);
}
