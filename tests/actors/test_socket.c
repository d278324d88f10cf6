/*
 * The socket actor against stub peers: a raw WebSocket client in the test
 * speaks Engine.IO/Socket.IO to it; stubs registered as "producer", "store"
 * and "fanout" receive its requests and the test answers for them. No
 * service is needed: this checks the socket's own rules (handshake, acks,
 * validation order, membership, live delivery, HTTP) quickly and exactly.
 */
#include "tests/actors/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/socket.h"
#include "runtime/metrics.h"

static int test_port;

/* --- a minimal client ------------------------------------------------------ */

typedef struct client {
    int fd;
    char buf[1 << 17];
    size_t len;
    int close_code;             /* from a close frame, or 0 */
    char head[2048];            /* the last HTTP response head */
    bool eof;
} client;

static int
tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void
send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EAGAIN)
            continue;
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

static bool
pump(void *ud)
{
    client *c = ud;
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r > 0) {
            c->len += (size_t)r;
            continue;
        }
        if (r == 0)
            c->eof = true;
        return c->eof;
    }
}

typedef struct grow_ctx {
    client *c;
    size_t had;
} grow_ctx;

static bool
grew(void *ud)
{
    grow_ctx *g = ud;
    pump(g->c);
    return g->c->len > g->had || g->c->eof;
}

/* Takes one complete frame off the client's buffer: its payload as a
 * NUL-terminated malloc'd string; NULL with *done set for a close frame;
 * NULL when the buffer holds no complete frame yet. Skips ws ping/pong. */
static char *
take_frame(client *c, bool *done)
{
    for (;;) {
        *done = false;
        if (c->len < 2)
            return NULL;
        uint8_t *b = (uint8_t *)c->buf;
        size_t hl = 2, len = b[1] & 0x7f;
        if (len == 126) {
            if (c->len < 4)
                return NULL;
            len = ((size_t)b[2] << 8) | b[3];
            hl = 4;
        } else if (len == 127) {
            if (c->len < 10)
                return NULL;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | b[2 + i];
            hl = 10;
        }
        if (c->len < hl + len)
            return NULL;
        int op = b[0] & 0x0f;
        char *out = malloc(len + 1);
        memcpy(out, c->buf + hl, len);
        out[len] = '\0';
        memmove(c->buf, c->buf + hl + len, c->len - hl - len);
        c->len -= hl + len;
        if (op == 8) {
            c->close_code = len >= 2 ? ((uint8_t)out[0] << 8) | (uint8_t)out[1] : 1005;
            free(out);
            *done = true;
            return NULL;
        }
        if (op == 9 || op == 10) {
            free(out);
            continue;
        }
        return out;
    }
}

/* Runs the loop until the client holds a complete frame; returns its payload
 * (malloc'd, NUL-terminated), or NULL at a close frame, EOF or timeout. */
static char *
next_frame(rt_runtime *rt, client *c, double timeout_ms)
{
    ev_now_update(rt_loop(rt));
    double end = rt_now_ms(rt) + timeout_ms;
    for (;;) {
        bool done;
        char *f = take_frame(c, &done);
        if (f || done || c->eof)
            return f;
        ev_now_update(rt_loop(rt));
        double left = end - rt_now_ms(rt);
        if (left <= 0)
            return NULL;
        grow_ctx g = { c, c->len };
        rt_test_run_until(rt, grew, &g, left);
    }
}

static void
send_frame(client *c, int opcode, const void *data, size_t len)
{
    uint8_t hdr[14];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (uint8_t)(len >> 8);
        hdr[hl++] = (uint8_t)len;
    } else {
        hdr[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    uint8_t *body = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        body[i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    send_all(c->fd, hdr, hl);
    send_all(c->fd, body, len);
    free(body);
}

static void
send_text(client *c, const char *text)
{
    send_frame(c, 1, text, strlen(text));
}

/* Reads until the HTTP response head is complete; returns the status. */
static int
http_head(rt_runtime *rt, client *c)
{
    for (int i = 0; i < 200; i++) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (end) {
            int status = atoi(c->buf + 9);
            size_t head = (size_t)(end + 4 - c->buf);
            snprintf(c->head, sizeof(c->head), "%.*s", (int)head, c->buf);
            memmove(c->buf, end + 4, c->len - head);
            c->len -= head;
            return status;
        }
        rt_test_run_until(rt, pump, c, 20);
    }
    fail_msg("no HTTP response");
    return 0;
}

static client *
ws_open(rt_runtime *rt, const char *query)
{
    client *c = calloc(1, sizeof(*c));
    c->fd = tcp_connect(test_port);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /socket.io/?%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n", query);
    send_all(c->fd, req, strlen(req));
    assert_int_equal(http_head(rt, c), 101);
    return c;
}

static void
client_free(client *c)
{
    close(c->fd);
    free(c);
}

/* Opens a connection and connects as user; checks the open packet. */
static client *
connect_user(rt_runtime *rt, const char *user)
{
    client *c = ws_open(rt, "EIO=4&transport=websocket");
    char *open = next_frame(rt, c, 1000);
    assert_non_null(open);
    assert_true(open[0] == '0');
    assert_non_null(strstr(open, "\"upgrades\":[]"));
    assert_non_null(strstr(open, "\"maxPayload\":65536"));
    free(open);
    char hello[128];
    snprintf(hello, sizeof(hello), "40{\"user\":\"%s\"}", user);
    send_text(c, hello);
    char *ok = next_frame(rt, c, 1000);
    assert_non_null(ok);
    assert_true(strncmp(ok, "40{\"sid\":\"", 10) == 0);
    free(ok);
    return c;
}

static void
expect_frame(rt_runtime *rt, client *c, const char *want)
{
    char *got = next_frame(rt, c, 2000);
    if (!got || strcmp(got, want) != 0) {
        print_error("want %s\nhave %s\n", want, got ? got : "(nothing)");
        free(got);
        fail();
    }
    free(got);
}

/* --- answering for the peers ------------------------------------------------- */

static void
reply(rt_runtime *rt, const stub_msg *to, uint32_t type, const proto_mp_buf *b)
{
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, type, to->corr, b ? b->data : NULL,
                                   b ? b->len : 0), RT_OK);
}

static void
reply_ack(rt_runtime *rt, const stub_msg *to, bool ok)
{
    proto_ack a = { .ok = ok };
    if (!ok)
        proto_ack_set_error(&a, PROTO_ACK_UNAVAILABLE, "down for the test");
    uint8_t mem[512];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_ack_encode(&a, &b), PROTO_OK);
    reply(rt, to, PROTO_T_ACK, &b);
}

/* Answers a join: the fanout's SUBSCRIBE (when the room is new on the node)
 * and the store's JOIN_REQ with seq and no missed messages. */
static void
serve_join(rt_runtime *rt, bool subscribe, uint64_t seq)
{
    stub_msg m;
    if (subscribe) {
        assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_SUBSCRIBE, &m, 2000));
        reply_ack(rt, &m, true);
        stub_msg_free(&m);
    }
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_JOIN_REQ, &m, 2000));
    proto_join_reply jr = { .seq = seq };
    uint8_t mem[256];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_join_reply_encode(&jr, &b), PROTO_OK);
    reply(rt, &m, PROTO_T_JOIN_REPLY, &b);
    stub_msg_free(&m);
}

static void
live_message(rt_runtime *rt, const char *room, uint64_t seq, const char *id, const char *text)
{
    proto_msg m;
    assert_int_equal(proto_msg_set(&m, room, strlen(room), id, strlen(id), "bob", 3, text,
                                   strlen(text), 1700000000000ull, seq), PROTO_OK);
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    assert_int_equal(proto_msg_encode(&m, &b), PROTO_OK);
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, PROTO_T_MESSAGE, 0, b.data, b.len),
                     RT_OK);
    proto_mp_buf_free(&b);
    proto_msg_free(&m);
}

/* --- fixture ------------------------------------------------------------------ */

static chatd_config cfg;
static char web_root[64];
static rt_runtime *current;     /* closed by the teardown if a test failed */

static rt_runtime *
open_socket(void)
{
    rt_runtime *rt = current = rt_test_open(NULL);
    chatd_config_defaults(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = test_port;
    cfg.roles = CHATD_ROLE_SOCKET;
    cfg.request_timeout_ms = 400;
    cfg.web_root = web_root;
    stub_spawn(rt, CHATD_FANOUT);
    stub_spawn(rt, CHATD_STORE);
    stub_spawn(rt, CHATD_PRODUCER);
    int err;
    assert_true(rt_spawn(rt, 0, &chatd_socket_spec, &cfg, CHATD_SOCKET, &err) != 0);
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_SOCKET_UP, &m, 1000));
    stub_msg_free(&m);
    return rt;
}

static void
close_socket(rt_runtime *rt)
{
    current = NULL;
    rt_test_close(rt);
    stub_reset();
}

static int
teardown(void **state)
{
    (void)state;
    if (current) {
        rt_destroy(current);    /* a failed test: free the port for the next */
        current = NULL;
        stub_reset();
    }
    return 0;
}

/* --- tests ---------------------------------------------------------------------- */

static void
test_http(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    static const struct { const char *path; int status; const char *body; const char *hdr; } cases[] = {
        { "/healthz", 200, "{\"status\":\"ok\",\"down\":[]}" },
        { "/socket.io/?EIO=4&transport=polling", 400,
          "{\"code\":0,\"message\":\"HTTP long-polling is not supported: use transports: "
          "['websocket']\"}" },
        { "/nothing", 404, NULL },
        { "/readyz", 200, "{\"status\":\"ready\",\"down\":[]}" },   /* socket role: no backend */
        { "/", 200, "<h1>page</h1>", "cache-control: no-cache" },
        { "/assets/app-1a2b.js", 200, "let x = 1;",
          "cache-control: public, max-age=31536000, immutable" },
        { "/../etc/passwd", 404, NULL },
        { "/assets/%2e%2e/secret.txt", 404, NULL },
        { "/noext", 404, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        client c = {0};
        c.fd = tcp_connect(test_port);
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 cases[i].path);
        send_all(c.fd, req, strlen(req));
        assert_int_equal(http_head(rt, &c), cases[i].status);
        if (cases[i].hdr && !strcasestr(c.head, cases[i].hdr)) {
            print_error("%s: no \"%s\" in\n%s\n", cases[i].path, cases[i].hdr, c.head);
            fail();
        }
        if (cases[i].body) {
            size_t want = strlen(cases[i].body);
            for (int k = 0; k < 100 && c.len < want; k++)
                rt_test_run_until(rt, pump, &c, 10);
            c.buf[c.len] = '\0';
            assert_string_equal(c.buf, cases[i].body);
        }
        close(c.fd);
    }
    /* /metrics: Prometheus text with the socket's families */
    client c = {0};
    c.fd = tcp_connect(test_port);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(c.fd, req, strlen(req));
    assert_int_equal(http_head(rt, &c), 200);
    for (int k = 0; k < 50 && !c.eof; k++)
        rt_test_run_until(rt, pump, &c, 10);
    c.buf[c.len] = '\0';
    assert_non_null(strstr(c.buf, "# TYPE chatd_connections gauge"));
    assert_non_null(strstr(c.buf, "chatd_http_requests_total{path=\"/healthz\"} 1"));
    assert_non_null(strstr(c.buf, "chatd_actor_up{actor=\"socket\"} 1"));
    close(c.fd);
    close_socket(rt);
}

static void
test_connect(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = ws_open(rt, "EIO=4&transport=websocket");
    char *open = next_frame(rt, c, 1000);
    assert_non_null(open);
    assert_non_null(strstr(open, "\"pingInterval\":25000"));
    assert_non_null(strstr(open, "\"pingTimeout\":20000"));
    free(open);
    /* invalid users are refused, the connection stays */
    send_text(c, "40{\"user\":\"no spaces\"}");
    expect_frame(rt, c, "44{\"message\":\"invalid user\"}");
    send_text(c, "40");
    expect_frame(rt, c, "44{\"message\":\"invalid user\"}");
    /* events before a successful CONNECT are not served */
    send_text(c, "420[\"join\",{\"room\":\"r\"}]");
    send_text(c, "40{\"user\":\"alice\"}");
    char *ok = next_frame(rt, c, 1000);
    assert_non_null(ok);
    assert_true(strncmp(ok, "40{\"sid\":", 9) == 0);
    free(ok);
    /* client ping is answered */
    send_text(c, "2probe");
    expect_frame(rt, c, "3probe");
    client_free(c);
    close_socket(rt);
}

static void
test_join_message_live(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = connect_user(rt, "alice");

    /* message before join: not_member, nothing reaches the producer */
    send_text(c, "421[\"message\",{\"room\":\"r\",\"id\":\"m1\",\"text\":\"hi\"}]");
    expect_frame(rt, c, "431[{\"ok\":false,\"error\":{\"code\":\"not_member\","
                        "\"message\":\"join the room first\"}}]");
    assert_int_equal(stub_pending(CHATD_PRODUCER), 0);

    send_text(c, "422[\"join\",{\"room\":\"r\"}]");
    serve_join(rt, true, 7);
    expect_frame(rt, c, "432[{\"ok\":true,\"room\":\"r\",\"seq\":7,\"missed\":[],\"more\":false}]");

    /* joining again is idempotent and needs no new subscription */
    send_text(c, "423[\"join\",{\"room\":\"r\"}]");
    serve_join(rt, false, 7);
    expect_frame(rt, c, "433[{\"ok\":true,\"room\":\"r\",\"seq\":7,\"missed\":[],\"more\":false}]");

    /* a message goes to the producer; the ack waits for its answer */
    send_text(c, "424[\"message\",{\"room\":\"r\",\"id\":\"m1\",\"text\":\"hi\"}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_PRODUCER, PROTO_T_MESSAGE, &m, 2000));
    proto_msg pm;
    assert_int_equal(proto_msg_decode(m.payload, m.len, &pm), PROTO_OK);
    assert_string_equal(pm.user, "alice");
    assert_string_equal(pm.text, "hi");
    assert_true(pm.ts > 1700000000000ull);
    proto_msg_free(&pm);
    assert_null(next_frame(rt, c, 50));     /* no ack yet */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    expect_frame(rt, c, "434[{\"ok\":true,\"id\":\"m1\"}]");

    /* a broker failure is unavailable */
    send_text(c, "425[\"message\",{\"room\":\"r\",\"id\":\"m2\",\"text\":\"x\"}]");
    assert_true(stub_wait(rt, CHATD_PRODUCER, PROTO_T_MESSAGE, &m, 2000));
    reply_ack(rt, &m, false);
    stub_msg_free(&m);
    expect_frame(rt, c, "435[{\"ok\":false,\"error\":{\"code\":\"unavailable\","
                        "\"message\":\"down for the test\"}}]");

    /* live messages of the room arrive; other rooms' do not */
    live_message(rt, "r", 8, "x1", "hello \"there\"");
    live_message(rt, "elsewhere", 1, "x2", "no");
    expect_frame(rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":8,\"id\":\"x1\",\"user\":\"bob\","
                        "\"text\":\"hello \\\"there\\\"\",\"ts\":1700000000000}]");
    assert_null(next_frame(rt, c, 50));

    /* leave: unsubscribes the room (last local member), then nothing arrives */
    send_text(c, "426[\"leave\",{\"room\":\"r\"}]");
    expect_frame(rt, c, "436[{\"ok\":true,\"room\":\"r\"}]");
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_UNSUBSCRIBE, &m, 1000));
    stub_msg_free(&m);
    live_message(rt, "r", 9, "x3", "gone");
    assert_null(next_frame(rt, c, 50));
    assert_true(rt_metric_value(rt, "chatd_messages_delivered_total", NULL) == 1);
    client_free(c);
    close_socket(rt);
}

/* A live message at or below its room's last live seq is a repeat (published
 * again after a redelivery) and reaches nobody twice; after fanout restarts,
 * the room is subscribed again and what nobody in it can have had (past the
 * last live seq) is fetched from the store and delivered, once. */
static void
test_live_repeats_and_catch_up(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = connect_user(rt, "alice");
    send_text(c, "421[\"join\",{\"room\":\"r\"}]");
    serve_join(rt, true, 7);
    expect_frame(rt, c, "431[{\"ok\":true,\"room\":\"r\",\"seq\":7,\"missed\":[],\"more\":false}]");

    live_message(rt, "r", 8, "x8", "eight");
    expect_frame(rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":8,\"id\":\"x8\",\"user\":\"bob\","
                        "\"text\":\"eight\",\"ts\":1700000000000}]");
    live_message(rt, "r", 8, "x8", "eight");        /* published again */
    live_message(rt, "r", 6, "x6", "older");
    live_message(rt, "r", 9, "x9", "nine");
    expect_frame(rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":9,\"id\":\"x9\",\"user\":\"bob\","
                        "\"text\":\"nine\",\"ts\":1700000000000}]");
    assert_null(next_frame(rt, c, 50));
    assert_true(rt_metric_value(rt, "chatd_live_stale_dropped_total", NULL) == 2);

    /* fanout restarted: subscribe again, then catch up from seq 9 */
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, CHATD_T_FANOUT_UP, 0, NULL, 0), RT_OK);
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_SUBSCRIBE, &m, 2000));
    assert_true(m.corr != 0);
    assert_null(next_frame(rt, c, 50));             /* nothing before it is live */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_JOIN_REQ, &m, 2000));
    proto_join_req q;
    assert_int_equal(proto_join_req_decode(m.payload, m.len, &q), PROTO_OK);
    assert_string_equal(q.room, "r");
    assert_true(q.has_since);
    assert_int_equal(q.since, 9);
    proto_msg missed[2];
    assert_int_equal(proto_msg_set(&missed[0], "r", 1, "x10", 3, "bob", 3, "ten", 3,
                                   1700000000000ull, 10), PROTO_OK);
    assert_int_equal(proto_msg_set(&missed[1], "r", 1, "x11", 3, "bob", 3, "eleven", 6,
                                   1700000000000ull, 11), PROTO_OK);
    proto_join_reply jr = { .seq = 11, .missed = missed, .count = 2 };
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    assert_int_equal(proto_join_reply_encode(&jr, &b), PROTO_OK);
    reply(rt, &m, PROTO_T_JOIN_REPLY, &b);
    proto_mp_buf_free(&b);
    stub_msg_free(&m);
    for (size_t i = 0; i < 2; i++)
        proto_msg_free(&missed[i]);
    expect_frame(rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":10,\"id\":\"x10\",\"user\":\"bob\","
                        "\"text\":\"ten\",\"ts\":1700000000000}]");
    expect_frame(rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":11,\"id\":\"x11\",\"user\":\"bob\","
                        "\"text\":\"eleven\",\"ts\":1700000000000}]");
    live_message(rt, "r", 11, "x11", "eleven");     /* the live copy, late */
    assert_null(next_frame(rt, c, 50));
    client_free(c);
    close_socket(rt);
}

static void
test_validation_order(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = connect_user(rt, "carol");
    send_text(c, "421[\"shout\",{\"room\":\"r\"}]");
    expect_frame(rt, c, "431[{\"ok\":false,\"error\":{\"code\":\"bad_request\","
                        "\"message\":\"unknown event\"}}]");
    /* bad_request beats forbidden: a dm room of others with a bad field */
    send_text(c, "422[\"message\",{\"room\":\"dm:al:bo\",\"id\":\"\",\"text\":\"x\"}]");
    char *f = next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"code\":\"bad_request\""));
    free(f);
    /* forbidden: a valid event on somebody else's dm room */
    send_text(c, "423[\"history\",{\"room\":\"dm:al:bo\"}]");
    f = next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"code\":\"forbidden\""));
    free(f);
    /* a lone surrogate: bad_request through the ack id; the connection stays */
    send_text(c, "424[\"message\",{\"room\":\"r\",\"id\":\"a\",\"text\":\"\\ud800\"}]");
    f = next_frame(rt, c, 1000);
    assert_non_null(f);
    assert_true(strncmp(f, "434[{\"ok\":false,\"error\":{\"code\":\"bad_request\"", 44) == 0);
    free(f);
    send_text(c, "2x");
    expect_frame(rt, c, "3x");
    client_free(c);
    close_socket(rt);
}

static void
test_timeout_is_unavailable(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = connect_user(rt, "dave");
    send_text(c, "427[\"history\",{\"room\":\"r\"}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_HISTORY_REQ, &m, 1000));
    proto_history_req hr;
    assert_int_equal(proto_history_req_decode(m.payload, m.len, &hr), PROTO_OK);
    assert_int_equal(hr.limit, 50);
    /* nobody answers: after request_timeout_ms the client hears unavailable */
    char *f = next_frame(rt, c, 2000);
    assert_non_null(f);
    assert_non_null(strstr(f, "437[{\"ok\":false,\"error\":{\"code\":\"unavailable\""));
    free(f);
    /* a late answer is ignored */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    assert_null(next_frame(rt, c, 50));

    /* a join whose subscription never comes back fails, and leaves no
     * membership behind: a message is then not_member */
    send_text(c, "428[\"join\",{\"room\":\"q\"}]");
    f = next_frame(rt, c, 2000);
    assert_non_null(strstr(f, "438[{\"ok\":false,\"error\":{\"code\":\"unavailable\""));
    free(f);
    send_text(c, "429[\"message\",{\"room\":\"q\",\"id\":\"m\",\"text\":\"x\"}]");
    f = next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"not_member\""));
    free(f);
    client_free(c);
    close_socket(rt);
}

static void
test_frame_limits(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *c = connect_user(rt, "erin");
    /* one byte over maxPayload: 1009 */
    size_t n = 65537;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, "42[\"message\",{\"text\":\"", 22);
    send_frame(c, 1, big, n);
    free(big);
    assert_null(next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1009);
    client_free(c);

    /* invalid UTF-8: 1007 */
    c = connect_user(rt, "erin");
    send_frame(c, 1, "42[\"x\xff\"]", 8);
    assert_null(next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1007);
    client_free(c);

    /* a fragmented message is reassembled */
    const char *msg = "420[\"leave\",{\"room\":\"frag\"}]";
    c = connect_user(rt, "erin");
    uint8_t first[64], second[64];
    size_t a = 10, b = strlen(msg) - 10;
    /* text frame without FIN, then a continuation with FIN */
    first[0] = 0x01;
    first[1] = (uint8_t)(0x80 | a);
    memset(first + 2, 0, 4);
    memcpy(first + 6, msg, a);
    second[0] = 0x80;
    second[1] = (uint8_t)(0x80 | b);
    memset(second + 2, 0, 4);
    memcpy(second + 6, msg + a, b);
    send_all(c->fd, first, 6 + a);
    send_all(c->fd, second, 6 + b);
    expect_frame(rt, c, "430[{\"ok\":true,\"room\":\"frag\"}]");
    client_free(c);
    close_socket(rt);
}

static void
test_typing_skips_sender(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *a = connect_user(rt, "ann");
    client *b = connect_user(rt, "ben");
    send_text(a, "421[\"join\",{\"room\":\"t\"}]");
    serve_join(rt, true, 0);
    expect_frame(rt, a, "431[{\"ok\":true,\"room\":\"t\",\"seq\":0,\"missed\":[],\"more\":false}]");
    send_text(b, "421[\"join\",{\"room\":\"t\"}]");
    serve_join(rt, false, 0);
    expect_frame(rt, b, "431[{\"ok\":true,\"room\":\"t\",\"seq\":0,\"missed\":[],\"more\":false}]");

    send_text(a, "422[\"typing\",{\"room\":\"t\"}]");
    expect_frame(rt, a, "432[{\"ok\":true}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, PROTO_T_TYPING, &m, 1000));
    /* fanout echoes it back to every node, this one included */
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, PROTO_T_TYPING, 0, m.payload, m.len),
                     RT_OK);
    stub_msg_free(&m);
    expect_frame(rt, b, "42[\"typing\",{\"room\":\"t\",\"user\":\"ann\"}]");
    assert_null(next_frame(rt, a, 50));
    client_free(a);
    client_free(b);
    close_socket(rt);
}

/* A typing event from another node reaches every local member through the
 * socket actor (the decoded record is freed: ASan's leak check runs this in
 * the actors-asan stage); the sender skip applies only to this node's own
 * connections, even when the other node's connection id matches one here. */
static void
test_typing_from_other_node(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    client *a = connect_user(rt, "amy");
    client *b = connect_user(rt, "bea");
    send_text(a, "421[\"join\",{\"room\":\"tt\"}]");
    serve_join(rt, true, 0);
    expect_frame(rt, a, "431[{\"ok\":true,\"room\":\"tt\",\"seq\":0,\"missed\":[],\"more\":false}]");
    send_text(b, "421[\"join\",{\"room\":\"tt\"}]");
    serve_join(rt, false, 0);
    expect_frame(rt, b, "431[{\"ok\":true,\"room\":\"tt\",\"seq\":0,\"missed\":[],\"more\":false}]");

    proto_typing t = { .node = cfg.node_key + 1, .conn = 1 };
    memcpy(t.room, "tt", 2);
    t.room_len = 2;
    memcpy(t.user, "zed", 3);
    t.user_len = 3;
    uint8_t mem[256];
    proto_mp_buf buf;
    proto_mp_buf_fixed(&buf, mem, sizeof(mem));
    assert_int_equal(proto_typing_encode(&t, &buf), PROTO_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, PROTO_T_TYPING, 0, buf.data,
                                       buf.len), RT_OK);
    /* and one that does not decode: dropped, nothing breaks */
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, PROTO_T_TYPING, 0, "\xc1", 1), RT_OK);
    for (int i = 0; i < 2; i++) {
        expect_frame(rt, a, "42[\"typing\",{\"room\":\"tt\",\"user\":\"zed\"}]");
        expect_frame(rt, b, "42[\"typing\",{\"room\":\"tt\",\"user\":\"zed\"}]");
    }
    assert_null(next_frame(rt, a, 50));
    assert_true(rt_metric_value(rt, "chatd_typing_delivered_total", NULL) == 4);
    send_text(b, "2alive");
    expect_frame(rt, b, "3alive");
    client_free(a);
    client_free(b);
    close_socket(rt);
}

/* Static files are read once, when the socket starts: a request never reads
 * the disk, so a file written later is served only after a restart. */
static void
test_static_loaded_at_start(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    char p[128];
    snprintf(p, sizeof(p), "%s/late.txt", web_root);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("late", f);
    fclose(f);
    static const char req[] = "GET /late.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    client c = {0};
    c.fd = tcp_connect(test_port);
    send_all(c.fd, req, sizeof(req) - 1);
    assert_int_equal(http_head(rt, &c), 404);
    close(c.fd);
    close_socket(rt);

    rt = open_socket();
    memset(&c, 0, sizeof(c));
    c.fd = tcp_connect(test_port);
    send_all(c.fd, req, sizeof(req) - 1);
    assert_int_equal(http_head(rt, &c), 200);
    assert_non_null(strcasestr(c.head, "content-type: text/plain; charset=utf-8"));
    for (int k = 0; k < 100 && c.len < 4; k++)
        rt_test_run_until(rt, pump, &c, 10);
    c.buf[c.len] = '\0';
    assert_string_equal(c.buf, "late");
    close(c.fd);
    assert_int_equal(unlink(p), 0);
    close_socket(rt);
}

static int
setup(void **state)
{
    (void)state;
    /* a web root with a page and a hashed asset */
    snprintf(web_root, sizeof(web_root), "/tmp/chatd-web-XXXXXX");
    assert_non_null(mkdtemp(web_root));
    char p[128];
    snprintf(p, sizeof(p), "%s/assets", web_root);
    mkdir(p, 0755);
    const struct { const char *name, *body; } files[] = {
        { "index.html", "<h1>page</h1>" }, { "assets/app-1a2b.js", "let x = 1;" },
    };
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", web_root, files[i].name);
        FILE *f = fopen(p, "w");
        fputs(files[i].body, f);
        fclose(f);
    }
    /* a free port: bind to 0, read it back, release it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    test_port = ntohs(a.sin_port);
    close(fd);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", web_root);
    return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_http, teardown),
        cmocka_unit_test_teardown(test_connect, teardown),
        cmocka_unit_test_teardown(test_join_message_live, teardown),
        cmocka_unit_test_teardown(test_live_repeats_and_catch_up, teardown),
        cmocka_unit_test_teardown(test_validation_order, teardown),
        cmocka_unit_test_teardown(test_timeout_is_unavailable, teardown),
        cmocka_unit_test_teardown(test_frame_limits, teardown),
        cmocka_unit_test_teardown(test_typing_skips_sender, teardown),
        cmocka_unit_test_teardown(test_typing_from_other_node, teardown),
        cmocka_unit_test_teardown(test_static_loaded_at_start, teardown),
    };
    return cmocka_run_group_tests(tests, setup, group_teardown);
}
