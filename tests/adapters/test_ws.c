/*
 * adapters/ws.h's contract, against a raw WebSocket client on loopback: the
 * connection lifecycle (open, message, close once, refusal), who frees
 * frames (a frame shared by several queues is back to the caller's one
 * reference once written), reassembly and its limits, the queue bound, the
 * close code and reason, HTTP replies, and ws_server_free from inside a
 * callback. No service is needed. Each test ends with an empty loop.
 */
#include "tests/runtime/rt_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/ws.h"
#include "tests/actors/loopback.h"
#include "tests/actors/ws_client.h"

/* --- the owner: records what the adapter tells it ---------------------------- */

typedef struct owner {
    ws_server *srv;
    ws_conn *last;              /* the last connection opened */
    int opens, closes, messages, https;
    bool refuse;                /* `open` returns NULL */
    bool free_in_message;       /* ws_server_free from `message` */
    size_t queue_at_open;       /* frames `open` sends */
    char message[1 << 17];
    size_t message_len;
} owner;

typedef struct tconn {
    owner *o;
    ws_conn *c;
} tconn;

static int
o_http(void *ud, ws_request *req, const char *path)
{
    owner *o = ud;
    o->https++;
    char v[32];
    const char *arg = ws_request_arg(req, "q=", v, sizeof(v));
    char body[128];
    snprintf(body, sizeof(body), "%s %s", path, arg ? arg : "-");
    return ws_http_reply(req, 201, "text/plain", "no-store", body, strlen(body));
}

static bool
o_accept(void *ud, ws_request *req)
{
    (void)ud;
    char path[32];
    return ws_request_path(req, path, sizeof(path)) && strcmp(path, "/ws") == 0;
}

static void *
o_open(void *ud, ws_conn *c)
{
    owner *o = ud;
    o->opens++;
    if (o->refuse)
        return NULL;
    tconn *t = calloc(1, sizeof(*t));
    t->o = o;
    t->c = c;
    o->last = c;
    for (size_t i = 0; i < o->queue_at_open; i++)
        assert_int_equal(ws_send_text(c, "hello", 5), WS_OK);
    return t;
}

static void
o_message(void *ud, void *conn_data, const char *data, size_t len)
{
    owner *o = ud;
    tconn *t = conn_data;
    assert_ptr_equal(t->o, o);
    o->messages++;
    memcpy(o->message, data, len);
    o->message_len = len;
    if (o->free_in_message) {
        ws_server_free(o->srv);
        return;
    }
    /* echo */
    assert_int_equal(ws_send_text(t->c, data, len), WS_OK);
}

static void
o_close(void *ud, void *conn_data)
{
    owner *o = ud;
    o->closes++;
    free(conn_data);
}

static const ws_callbacks callbacks = {
    .http = o_http, .accept = o_accept, .open = o_open, .message = o_message,
    .close = o_close,
};

static int test_port;

static ws_server *
server_new_bytes(rt_runtime *rt, owner *o, size_t queue_max, size_t queue_bytes)
{
    ws_config cfg = { .loop = rt_loop(rt), .host = "127.0.0.1", .port = test_port,
                      .max_message = 65536, .queue_max = queue_max,
                      .queue_bytes = queue_bytes, .who = "test" };
    o->srv = ws_server_new(&cfg, &callbacks, o);
    assert_non_null(o->srv);
    return o->srv;
}

static ws_server *
server_new(rt_runtime *rt, owner *o, size_t queue_max)
{
    return server_new_bytes(rt, o, queue_max, SIZE_MAX);
}

typedef struct count_ctx {
    const int *value;
    int want;
} count_ctx;

static bool
count_reached(void *ud)
{
    count_ctx *c = ud;
    return *c->value >= c->want;
}

static void
wait_count(rt_runtime *rt, const int *value, int want)
{
    count_ctx c = { value, want };
    assert_true(rt_test_run_until(rt, count_reached, &c, 2000));
}

/* --- tests ------------------------------------------------------------------------ */

/* open, an echo, a client that goes away: close once, nothing left. */
static void
test_lifecycle(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = { .queue_at_open = 1 };
    server_new(rt, &o, 16);
    int status;
    ws_client *c = ws_client_open(rt, test_port, "/ws", &status);
    assert_int_equal(status, 101);
    assert_int_equal(o.opens, 1);
    assert_int_equal(ws_server_conns(o.srv), 1);
    assert_true(ws_conn_id(o.last) >= 1);
    ws_client_expect_frame(rt, c, "hello");       /* sent from `open` */
    ws_client_send_frame(c, true, 1, "ping me", 7);
    wait_count(rt, &o.messages, 1);
    ws_flush(o.srv);
    ws_client_expect_frame(rt, c, "ping me");
    ws_client_free(c);
    wait_count(rt, &o.closes, 1);
    assert_int_equal(ws_server_conns(o.srv), 0);
    rt_test_run_for(rt, 20);
    assert_int_equal(o.closes, 1);

    /* an upgrade the owner does not accept never opens */
    c = ws_client_open(rt, test_port, "/other", &status);
    assert_true(status != 101);
    assert_int_equal(o.opens, 1);
    ws_client_free(c);

    /* a refused open: closed, and no `close` for it */
    o.refuse = true;
    c = ws_client_open(rt, test_port, "/ws", &status);
    for (int i = 0; i < 100 && !c->eof; i++)
        rt_test_run_until(rt, ws_client_pump, c, 20);
    assert_true(c->eof);
    assert_int_equal(o.opens, 2);
    assert_int_equal(o.closes, 1);
    assert_int_equal(ws_server_conns(o.srv), 0);
    ws_client_free(c);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* One frame in two queues: each takes a reference, the write drops it, the
 * caller's is the one left; the frames queued on a connection arrive in
 * order. */
static void
test_shared_frame(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = {0};
    server_new(rt, &o, 16);
    int status;
    ws_client *a = ws_client_open(rt, test_port, "/ws", &status);
    ws_conn *ca = o.last;
    ws_client *b = ws_client_open(rt, test_port, "/ws", &status);
    ws_conn *cb = o.last;
    assert_int_equal(ws_server_conns(o.srv), 2);

    ws_frame *f = ws_frame_text("shared", 6);
    assert_non_null(f);
    for (int i = 0; i < 8; i++)
        assert_int_equal(ws_send(ca, f), WS_OK);
    assert_int_equal(ws_send(cb, f), WS_OK);
    assert_int_equal(f->refs, 10);
    assert_int_equal(ws_queued(ca), 8);
    ws_flush(o.srv);
    assert_int_equal(f->refs, 1);
    assert_int_equal(ws_queued(ca), 0);
    ws_frame_unref(f);
    for (int i = 0; i < 8; i++)
        ws_client_expect_frame(rt, a, "shared");
    ws_client_expect_frame(rt, b, "shared");

    /* a frame larger than one write chunk goes alone, whole */
    size_t n = WS_WRITE_CHUNK + 100;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    assert_int_equal(ws_send_text(ca, "small", 5), WS_OK);
    assert_int_equal(ws_send_text(ca, big, n), WS_OK);
    assert_int_equal(ws_send_text(ca, "after", 5), WS_OK);
    ws_flush(o.srv);
    ws_client_expect_frame(rt, a, "small");
    ws_client_expect_frame(rt, a, big);
    ws_client_expect_frame(rt, a, "after");
    free(big);

    ws_client_free(a);
    ws_client_free(b);
    wait_count(rt, &o.closes, 2);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* The frame bound writes what the socket takes before refusing; ws_close sends code and reason,
 * drops what was queued and refuses later sends; `close` follows. */
static void
test_queue_bound_and_close(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = {0};
    server_new(rt, &o, 3);
    int status;
    ws_client *c = ws_client_open(rt, test_port, "/ws", &status);
    ws_conn *w = o.last;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ws_send_text(w, "q", 1), WS_OK);
    /* the socket takes the three queued: room for the fourth (a peer that
     * reads nothing gets WS_EFULL: test_queue_bytes) */
    assert_int_equal(ws_send_text(w, "q", 1), WS_OK);
    assert_int_equal(ws_queued(w), 1);
    assert_false(ws_closing(w));
    ws_flush(o.srv);
    for (int i = 0; i < 4; i++)
        ws_client_expect_frame(rt, c, "q");
    assert_int_equal(ws_send_text(w, "dropped", 7), WS_OK);
    ws_close(w, WS_CLOSE_POLICY_VIOLATION, "too slow");
    ws_close(w, WS_CLOSE_NORMAL, "second");     /* the first code wins */
    assert_true(ws_closing(w));
    assert_int_equal(ws_send_text(w, "late", 4), WS_ECLOSING);
    ws_flush(o.srv);
    assert_null(ws_client_next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1008);
    assert_string_equal(c->close_reason, "too slow");
    wait_count(rt, &o.closes, 1);
    ws_client_free(c);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* The byte cap: a shared frame counts against each queue; a frame over the
 * cap goes to an empty queue only; a peer that reads nothing gets WS_EFULL
 * once the socket and the cap are full, never more than the cap and one
 * write held in the process. */
static void
test_queue_bytes(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = {0};
    const size_t cap = 4096;
    server_new_bytes(rt, &o, 100000, cap);
    int status;
    ws_client *a = ws_client_open(rt, test_port, "/ws", &status);
    ws_conn *ca = o.last;
    ws_client *b = ws_client_open(rt, test_port, "/ws", &status);
    ws_conn *cb = o.last;

    char payload[1001];
    memset(payload, 'p', 1000);
    payload[1000] = '\0';
    ws_frame *f = ws_frame_text(payload, 1000);
    assert_int_equal(ws_send(ca, f), WS_OK);
    assert_int_equal(ws_send(cb, f), WS_OK);
    size_t cost = ws_queued_bytes(ca);
    assert_true(cost >= f->len);
    assert_int_equal(ws_queued_bytes(cb), cost);
    ws_frame_unref(f);
    ws_flush(o.srv);
    assert_int_equal(ws_queued_bytes(ca), 0);
    ws_client_expect_frame(rt, a, payload);
    ws_client_expect_frame(rt, b, payload);

    /* larger than the cap: accepted alone, refused behind anything */
    char *big = malloc(2 * cap);
    memset(big, 'B', 2 * cap);
    big[2 * cap - 1] = '\0';
    assert_int_equal(ws_send_text(cb, "x", 1), WS_OK);
    assert_int_equal(ws_send_text(cb, big, 2 * cap - 1), WS_OK);   /* written to make room */
    ws_flush(o.srv);
    ws_client_expect_frame(rt, b, "x");
    ws_client_expect_frame(rt, b, big);
    free(big);

    /* the client reads nothing while the loop does not run: the kernel's
     * buffers fill, then the cap */
    int sent = 0, rc;
    while ((rc = ws_send_text(ca, payload, 1000)) == WS_OK && sent < 100000)
        sent++;
    assert_int_equal(rc, WS_EFULL);
    assert_false(ws_closing(ca));
    assert_true(ws_queued_bytes(ca) <= cap + WS_WRITE_CHUNK + cost);
    assert_true(ws_queued(ca) * cost <= cap);
    ws_client_free(a);
    ws_client_free(b);
    wait_count(rt, &o.closes, 2);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* Fragments are reassembled; over max_message is 1009, bad UTF-8 1007,
 * binary messages are discarded. */
static void
test_receive(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = {0};
    server_new(rt, &o, 16);
    int status;
    ws_client *c = ws_client_open(rt, test_port, "/ws", &status);
    ws_client_send_frame(c, false, 1, "frag", 4);
    ws_client_send_frame(c, false, 0, "men", 3);
    ws_client_send_frame(c, true, 0, "ted", 3);
    wait_count(rt, &o.messages, 1);
    assert_int_equal(o.message_len, 10);
    assert_memory_equal(o.message, "fragmented", 10);
    ws_client_send_frame(c, true, 2, "\x01\x02", 2);      /* binary: nothing */
    ws_client_send_frame(c, true, 1, "text", 4);
    wait_count(rt, &o.messages, 2);
    assert_memory_equal(o.message, "text", 4);
    ws_flush(o.srv);
    ws_client_expect_frame(rt, c, "fragmented");
    ws_client_expect_frame(rt, c, "text");

    /* exactly max_message in two fragments is fine; one byte more is not */
    char *big = malloc(65537);
    memset(big, 'a', 65537);
    ws_client_send_frame(c, false, 1, big, 40000);
    ws_client_send_frame(c, true, 0, big, 25536);
    wait_count(rt, &o.messages, 3);
    assert_int_equal(o.message_len, 65536);
    ws_client_send_frame(c, false, 1, big, 40000);
    ws_client_send_frame(c, true, 0, big, 25537);
    free(big);
    char *f;
    while ((f = ws_client_next_frame(rt, c, 2000)))
        free(f);    /* the echo of the first */
    assert_int_equal(c->close_code, 1009);
    ws_client_free(c);

    c = ws_client_open(rt, test_port, "/ws", &status);
    ws_client_send_frame(c, true, 1, "bad \xff", 5);
    assert_null(ws_client_next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1007);
    ws_client_free(c);
    wait_count(rt, &o.closes, 2);
    assert_int_equal(o.messages, 3);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* HTTP requests reach the owner with their path and query. */
static void
test_http(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = {0};
    server_new(rt, &o, 16);
    ws_client *c = ws_client_connect(test_port);
    const char *req = "GET /a/b?q=42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ws_client_send_raw(c, req, strlen(req));
    assert_int_equal(ws_client_http_head(rt, c), 201);
    assert_string_equal(ws_client_http_body(rt, c, 7), "/a/b 42");
    assert_int_equal(o.https, 1);
    ws_client_free(c);
    ws_server_free(o.srv);
    rt_test_close(rt);
}

/* ws_server_free from inside `message`: `close` for every connection before
 * it returns, no callback afterwards, the teardown on the next loop step. */
static void
test_free_inside_callback(void **state)
{
    (void)state;
    rt_runtime *rt = rt_test_open(NULL);
    owner o = { .free_in_message = true };
    server_new(rt, &o, 16);
    int status;
    ws_client *a = ws_client_open(rt, test_port, "/ws", &status);
    ws_client *b = ws_client_open(rt, test_port, "/ws", &status);
    assert_int_equal(o.opens, 2);
    ws_client_send_frame(a, true, 1, "bye", 3);
    wait_count(rt, &o.messages, 1);
    assert_int_equal(o.closes, 2);
    ws_client_send_frame(b, true, 1, "more", 4);
    rt_test_run_for(rt, 50);
    assert_int_equal(o.messages, 1);
    assert_int_equal(o.closes, 2);
    ws_client_free(a);
    ws_client_free(b);
    rt_test_close(rt);
}

static int
setup(void **state)
{
    (void)state;
    test_port = loopback_free_port();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_shared_frame),
        cmocka_unit_test(test_queue_bound_and_close),
        cmocka_unit_test(test_queue_bytes),
        cmocka_unit_test(test_receive),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_free_inside_callback),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
