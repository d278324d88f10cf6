/* The PostgreSQL adapter (adapters/pg.h) against a real server (CHATD_PG_DSN):
 * connect plus setup, rows in binary, one query at a time, error texts on one
 * line, failures (refused, bad conninfo at once, a server that never answers,
 * a failed setup, a connection killed while idle) reported once and never
 * from inside the call that found them, pg_free from inside callbacks,
 * output larger than the socket takes at once, and array literals. Each test
 * ends with the loop empty (rt_test_close). */
#include "tests/runtime/rt_test.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/pg.h"

enum {
    HOST_TIMER = 300,           /* the adapter's timers */
    HOST_QUERY,                 /* pg_send the host's query */
};

/* One actor holding one connection; the test sets the first block and reads
 * what the callbacks recorded. */
typedef struct host {
    const char *conninfo;
    const char *setup;
    int timeout_ms;
    int query_timeout_ms;
    bool free_in_result;        /* pg_free first thing in on_result */
    bool free_in_failed;
    const char *sql;            /* sent on HOST_QUERY */
    int nparams;
    const char *values[3];
    void (*check)(struct host *h, const PGresult *res);

    pg_conn *c;
    int ready, results, failed;
    pg_failure kind;
    char why[256];
    char error[256];            /* of the last result; "" when ok */
    int rows;
    int64_t i64;                /* row 0, column 0 when it is an int8 */
    int sends;
    int send_rc[4];
    char send_err[4][128];
} host;

static const char *dsn;

static void
on_ready(pg_conn *c, void *data)
{
    host *h = data;
    assert_true(pg_ready(c));
    assert_false(pg_busy(c));
    h->ready++;
}

static void
on_result(pg_conn *c, void *data, const PGresult *res, const char *error)
{
    host *h = data;
    if (h->free_in_result) {
        pg_free(c);             /* deferred: res and c stay valid until we return */
        h->c = NULL;
    } else {
        assert_false(pg_busy(c));
    }
    h->results++;
    snprintf(h->error, sizeof(h->error), "%s", error ? error : "");
    h->rows = res ? PQntuples(res) : -1;
    h->i64 = 0;
    if (res && h->rows > 0 && PQftype(res, 0) == 20)
        assert_true(pg_col_i64(res, 0, 0, &h->i64));
    if (h->check)
        h->check(h, res);
}

static void
on_failed(pg_conn *c, void *data, pg_failure kind, const char *why)
{
    host *h = data;
    assert_false(pg_ready(c));
    h->failed++;
    h->kind = kind;
    snprintf(h->why, sizeof(h->why), "%s", why);
    if (h->free_in_failed) {
        pg_free(c);
        h->c = NULL;
    }
}

static int
host_init(rt_actor *self, const void *arg)
{
    host *h = (host *)arg;
    *(host **)rt_state(self) = h;
    pg_options o = {
        .conninfo = h->conninfo,
        .setup_sql = h->setup,
        .setup_name = "test setup",
        .connect_timeout_ms = h->timeout_ms,
        .query_timeout_ms = h->query_timeout_ms,
        .timer_type = HOST_TIMER,
        .cb = { .on_ready = on_ready, .on_result = on_result, .on_failed = on_failed },
        .data = h,
    };
    h->c = pg_open(self, &o);
    return h->c ? RT_OK : RT_ERR;
}

static int
host_handle(rt_actor *self, const proto_env *msg)
{
    host *h = *(host **)rt_state(self);
    if (msg->type == HOST_TIMER) {
        if (h->c)
            assert_true(pg_timer(h->c, msg));
    } else if (msg->type == HOST_QUERY && h->c && h->sends < 4) {
        int i = h->sends++;
        h->send_rc[i] = pg_send(h->c, h->sql, h->nparams, h->values);
        snprintf(h->send_err[i], sizeof(h->send_err[i]), "%s", pg_error(h->c));
    }
    return RT_OK;
}

static void
host_terminate(rt_actor *self, rt_exit_kind kind)
{
    (void)kind;
    host *h = *(host **)rt_state(self);
    pg_free_exited(h->c);
    h->c = NULL;
}

static const rt_actor_spec host_spec = {
    .name = "host",
    .state_size = sizeof(host *),
    .init = host_init,
    .handle = host_handle,
    .terminate = host_terminate,
};

/* --- helpers ---------------------------------------------------------------- */

static bool
is_ready(void *ud)
{
    return ((host *)ud)->ready > 0 || ((host *)ud)->failed > 0;
}

static bool
has_failed(void *ud)
{
    return ((host *)ud)->failed > 0;
}

static int want_results;

static bool
has_results(void *ud)
{
    return ((host *)ud)->results >= want_results || ((host *)ud)->failed > 0;
}

static rt_id
spawn(rt_runtime *rt, host *h, const char *name)
{
    rt_id id = rt_spawn(rt, 0, &host_spec, h, name, NULL);
    assert_true(id != 0);
    return id;
}

static void
spawn_ready(rt_runtime *rt, host *h, const char *name)
{
    spawn(rt, h, name);
    assert_true(rt_test_run_until(rt, is_ready, h, 10000));
    if (h->failed)
        fail_msg("%s did not connect: %s", name, h->why);
    assert_int_equal(h->ready, 1);
}

/* Runs h's query (its sql and values) and waits for its result. */
static void
query(rt_runtime *rt, host *h, const char *name, const char *sql, int n, const char *v0,
      const char *v1)
{
    h->sql = sql;
    h->nparams = n;
    h->values[0] = v0;
    h->values[1] = v1;
    h->sends = 0;
    want_results = h->results + 1;
    assert_int_equal(rt_test_send(rt, name, HOST_QUERY), RT_OK);
    assert_true(rt_test_run_until(rt, has_results, h, 10000));
    assert_int_equal(h->send_rc[0], PG_OK);
}

static void
host_reset(host *h)
{
    memset(h, 0, sizeof(*h));
    h->conninfo = dsn;
    h->timeout_ms = 10000;
}

/* --- tests --------------------------------------------------------------------- */

/* Connect, setup, a query with parameters and int8 rows in binary; a second
 * pg_send while one is in flight is refused, and the first still ends. */
static void
test_query_rows(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    h.setup = "SET application_name = 'chatd-test-pg'; SET client_min_messages = warning";
    spawn_ready(rt, &h, "a");

    query(rt, &h, "a", "SELECT $1::bigint * 2, current_setting('application_name')", 1,
          "21", NULL);
    assert_string_equal(h.error, "");
    assert_int_equal(h.rows, 1);
    assert_int_equal(h.i64, 42);

    h.sql = "SELECT pg_sleep(0.05)::text";
    h.nparams = 0;
    h.sends = 0;
    want_results = h.results + 1;
    assert_int_equal(rt_test_send(rt, "a", HOST_QUERY), RT_OK);
    assert_int_equal(rt_test_send(rt, "a", HOST_QUERY), RT_OK);   /* same turn */
    assert_true(rt_test_run_until(rt, has_results, &h, 10000));
    assert_int_equal(h.sends, 2);
    assert_int_equal(h.send_rc[0], PG_OK);
    assert_int_equal(h.send_rc[1], PG_ERR);
    assert_string_equal(h.send_err[1], "a query is in flight");
    assert_string_equal(h.error, "");
    rt_test_run_for(rt, 100);
    assert_int_equal(h.results, 2);
    assert_int_equal(h.failed, 0);
    rt_test_close(rt);
}

/* A failed statement gives its error on one line, the connection stays
 * usable; in a multi-row query the rows come back. */
static void
test_error_then_usable(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    spawn_ready(rt, &h, "a");
    query(rt, &h, "a", "SELECT 1 / $1::integer", 1, "0", NULL);
    assert_non_null(strstr(h.error, "division by zero"));
    assert_null(strchr(h.error, '\n'));
    assert_int_equal(h.rows, -1);
    query(rt, &h, "a", "SELECT generate_series(1, $1::bigint)", 1, "300", NULL);
    assert_string_equal(h.error, "");
    assert_int_equal(h.rows, 300);
    assert_int_equal(h.i64, 1);
    assert_int_equal(h.failed, 0);
    rt_test_close(rt);
}

/* query_timeout_ms: the setup is not bound by it; a statement that runs
 * longer is cancelled by the server (an error result, the connection stays
 * usable); a query the server does not answer (here: one whose session turned
 * the server's timeout off, as a hung server would behave) fails the
 * connection with PG_FAIL_TIMEOUT once the grace is over, and only then. */
static void
test_query_timeouts(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    h.query_timeout_ms = 300;
    h.setup = "SELECT pg_sleep(0.5)";
    spawn_ready(rt, &h, "a");
    assert_int_equal(h.failed, 0);

    query(rt, &h, "a", "SELECT current_setting('statement_timeout')", 0, NULL, NULL);
    assert_string_equal(h.error, "");
    query(rt, &h, "a", "SELECT pg_sleep(2)::text", 0, NULL, NULL);
    assert_non_null(strstr(h.error, "statement timeout"));
    assert_int_equal(h.failed, 0);
    query(rt, &h, "a", "SELECT 7::bigint", 0, NULL, NULL);
    assert_string_equal(h.error, "");
    assert_int_equal(h.i64, 7);

    query(rt, &h, "a", "SELECT set_config('statement_timeout', '0', false)", 0, NULL, NULL);
    assert_string_equal(h.error, "");
    h.sql = "SELECT pg_sleep(5)::text";
    h.nparams = 0;
    h.sends = 0;
    double t0 = rt_now_ms(rt);
    assert_int_equal(rt_test_send(rt, "a", HOST_QUERY), RT_OK);
    assert_true(rt_test_run_until(rt, has_failed, &h, 5000));
    double took = rt_now_ms(rt) - t0;
    assert_int_equal(h.send_rc[0], PG_OK);
    assert_int_equal(h.kind, PG_FAIL_TIMEOUT);
    assert_string_equal(h.why, "PostgreSQL did not answer a query within 1300 ms");
    assert_true(took >= 1300 - 50);
    assert_int_equal(h.results, 4);          /* the hung query never ended */
    rt_test_close(rt);
}

/* A setup that fails is reported as PG_FAIL_SETUP with the server's words;
 * on_ready never comes; pg_free from inside on_failed is safe. */
static void
test_setup_failure(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    h.setup = "SELECT 1; SELECT chatd_no_such_function()";
    h.free_in_failed = true;
    spawn(rt, &h, "a");
    assert_true(rt_test_run_until(rt, has_failed, &h, 10000));
    assert_int_equal(h.kind, PG_FAIL_SETUP);
    assert_non_null(strstr(h.why, "test setup failed: "));
    assert_non_null(strstr(h.why, "chatd_no_such_function"));
    assert_null(h.c);
    rt_test_run_for(rt, 50);
    assert_int_equal(h.ready, 0);
    assert_int_equal(h.failed, 1);
    rt_test_close(rt);
}

/* Nobody listening: PG_FAIL_CONNECT, reported from the loop, not from
 * pg_open. A conninfo libpq rejects at once takes the same way. */
static void
test_connect_failures(void **state)
{
    (void)state;
    const char *bad[] = {
        "host=127.0.0.1 port=1 dbname=chatd user=postgres",
        "chatd_no_such_option=1",
    };
    for (size_t i = 0; i < 2; i++) {
        rt_runtime *rt = rt_test_open(NULL);
        host h;
        host_reset(&h);
        h.conninfo = bad[i];
        spawn(rt, &h, "a");
        assert_int_equal(h.failed, 0);
        assert_true(rt_test_run_until(rt, has_failed, &h, 5000));
        assert_int_equal(h.kind, PG_FAIL_CONNECT);
        assert_non_null(strstr(h.why, "cannot connect to PostgreSQL: "));
        assert_null(strchr(h.why, '\n'));
        rt_test_run_for(rt, 50);
        assert_int_equal(h.failed, 1);
        rt_test_close(rt);
    }
}

/* A server that accepts the TCP connection and never answers: the connect
 * deadline fails it with PG_FAIL_TIMEOUT, once. */
static void
test_connect_timeout(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=chatd user=postgres",
             ntohs(a.sin_port));

    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    h.conninfo = conninfo;
    h.timeout_ms = 300;
    spawn(rt, &h, "a");
    rt_test_run_for(rt, 150);
    assert_int_equal(h.failed, 0);
    assert_true(rt_test_run_until(rt, has_failed, &h, 5000));
    assert_int_equal(h.kind, PG_FAIL_TIMEOUT);
    assert_string_equal(h.why, "PostgreSQL connect did not finish within 300 ms");
    rt_test_run_for(rt, 50);
    assert_int_equal(h.failed, 1);
    rt_test_close(rt);
    close(fd);
}

/* pg_free inside on_result: the result is still readable in the callback,
 * and nothing is called afterwards. */
static void
test_free_inside_result(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    spawn_ready(rt, &h, "a");
    h.free_in_result = true;
    query(rt, &h, "a", "SELECT $1::bigint", 1, "7", NULL);
    assert_null(h.c);
    assert_int_equal(h.i64, 7);
    rt_test_run_for(rt, 50);
    assert_int_equal(h.results, 1);
    assert_int_equal(h.failed, 0);
    rt_test_close(rt);
}

/* A connection the server ends while idle is seen at once: PG_FAIL_LOST. */
static void
test_lost_while_idle(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host a, b;
    host_reset(&a);
    host_reset(&b);
    spawn_ready(rt, &a, "a");
    spawn_ready(rt, &b, "b");
    query(rt, &a, "a", "SELECT pg_backend_pid()::bigint", 0, NULL, NULL);
    char pid[32];
    snprintf(pid, sizeof(pid), "%" PRId64, a.i64);
    query(rt, &b, "b", "SELECT pg_terminate_backend($1::integer)::text", 1, pid, NULL);
    assert_string_equal(b.error, "");
    assert_true(rt_test_run_until(rt, has_failed, &a, 5000));
    assert_int_equal(a.kind, PG_FAIL_LOST);
    assert_non_null(strstr(a.why, "lost connection to PostgreSQL"));
    a.sends = 0;
    assert_int_equal(rt_test_send(rt, "a", HOST_QUERY), RT_OK);
    rt_test_run_for(rt, 20);
    assert_int_equal(a.send_rc[0], PG_ELOST);      /* and no second report */
    rt_test_run_for(rt, 50);
    assert_int_equal(a.failed, 1);
    assert_int_equal(b.failed, 0);
    rt_test_close(rt);
}

/* 8 MiB of parameter: more than the socket takes at once, so pg_send leaves
 * output queued and the adapter flushes it as the socket drains. */
static void
test_large_output(void **state)
{
    (void)state;
    enum { N = 8 << 20 };
    char *big = malloc(N + 1);
    assert_non_null(big);
    memset(big, 'x', N);
    big[N] = '\0';
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    spawn_ready(rt, &h, "a");
    query(rt, &h, "a", "SELECT length($1)::bigint", 1, big, NULL);
    assert_string_equal(h.error, "");
    assert_int_equal(h.i64, N);
    rt_test_close(rt);
    free(big);
}

/* Array literals: quotes, backslashes, commas, braces, empty and non-ASCII
 * text; every byte value in bytea; int64 extremes. */
static const char *const texts[] = { "plain", "a\"b", "back\\slash", "", "c,d{e}",
                                     "NULL", "h\xc3\xa9llo" };
enum { NTEXTS = sizeof(texts) / sizeof(texts[0]) };
static unsigned char all_bytes[256];

static void
check_arrays(host *h, const PGresult *res)
{
    (void)h;
    assert_non_null(res);
    assert_int_equal(PQntuples(res), NTEXTS);
    for (int i = 0; i < NTEXTS; i++) {
        assert_int_equal(PQgetlength(res, i, 0), (int)strlen(texts[i]));
        assert_memory_equal(PQgetvalue(res, i, 0), texts[i], strlen(texts[i]));
        int n = i == 0 ? 256 : i;
        assert_int_equal(PQgetlength(res, i, 1), n);
        assert_memory_equal(PQgetvalue(res, i, 1), i == 0 ? all_bytes : all_bytes + 256 - i,
                            (size_t)n);
        int64_t v;
        assert_true(pg_col_i64(res, i, 2, &v));
        assert_true(v == (i == 0 ? INT64_MIN : i == 1 ? INT64_MAX : -i));
    }
}

static void
test_arrays(void **state)
{
    (void)state;
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (unsigned char)i;
    pg_array t = {0}, b = {0}, n = {0};
    for (int round = 0; round < 2; round++) {    /* the second reuses the buffers */
        pg_array_begin(&t);
        pg_array_begin(&b);
        pg_array_begin(&n);
        for (int i = 0; i < NTEXTS; i++) {
            pg_array_add_text(&t, texts[i], strlen(texts[i]));
            if (i == 0)
                pg_array_add_bytea(&b, all_bytes, 256);
            else
                pg_array_add_bytea(&b, all_bytes + 256 - i, (size_t)i);
            pg_array_add_int64(&n, i == 0 ? INT64_MIN : i == 1 ? INT64_MAX : -i);
        }
        assert_non_null(pg_array_end(&t));
        assert_non_null(pg_array_end(&b));
        assert_non_null(pg_array_end(&n));
    }
    pg_array empty = {0};
    pg_array_begin(&empty);
    assert_string_equal(pg_array_end(&empty), "{}");
    pg_array_free(&empty);

    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    spawn_ready(rt, &h, "a");        /* no setup: ready right after connecting */
    h.check = check_arrays;
    h.sql = "SELECT x.t, x.b, x.n FROM unnest($1::text[], $2::bytea[], $3::bigint[]) "
            "WITH ORDINALITY AS x(t, b, n, o) ORDER BY x.o";
    h.nparams = 3;
    h.values[0] = t.text;
    h.values[1] = b.text;
    h.values[2] = n.text;
    want_results = 1;
    assert_int_equal(rt_test_send(rt, "a", HOST_QUERY), RT_OK);
    assert_true(rt_test_run_until(rt, has_results, &h, 10000));
    assert_int_equal(h.send_rc[0], PG_OK);
    assert_string_equal(h.error, "");
    rt_test_close(rt);
    pg_array_free(&t);
    pg_array_free(&b);
    pg_array_free(&n);
}

/* The runtime goes away while the adapter is still connecting: terminate's
 * pg_free_exited leaves nothing behind. */
static void
test_free_while_connecting(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    host h;
    host_reset(&h);
    spawn(rt, &h, "a");
    rt_test_close(rt);
    assert_null(h.c);
    assert_int_equal(h.ready + h.failed, 0);
}

int
main(void)
{
    dsn = getenv("CHATD_PG_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "test_pg: CHATD_PG_DSN is not set (scripts/test starts PostgreSQL "
                "and sets it)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_rows),
        cmocka_unit_test(test_error_then_usable),
        cmocka_unit_test(test_setup_failure),
        cmocka_unit_test(test_connect_failures),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_free_inside_result),
        cmocka_unit_test(test_lost_while_idle),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_free_while_connecting),
        cmocka_unit_test(test_query_timeouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
