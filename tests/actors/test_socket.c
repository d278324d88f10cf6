/*
 * The socket actor against stub peers: a raw WebSocket client in the test
 * speaks Engine.IO/Socket.IO to it; stubs registered as "producer", "store"
 * and "fanout" receive its requests and the test answers for them. No
 * service is needed: this checks the socket's own rules (handshake, acks,
 * validation order, membership, live delivery, HTTP) quickly and exactly.
 */
#include "tests/actors/harness.h"
#include "tests/actors/loopback.h"
#include "tests/actors/ws_client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/socket.h"
#include "runtime/metrics.h"

static int test_port;

/* --- a client ------------------------------------------------------------ */

/* A WebSocket to the socket actor's Engine.IO endpoint with query. */
static ws_client *
ws_open(rt_runtime *rt, const char *query)
{
    char path[256];
    snprintf(path, sizeof(path), "/socket.io/?%s", query);
    int status;
    ws_client *c = ws_client_open(rt, test_port, path, &status);
    assert_int_equal(status, 101);
    return c;
}

/* A plain HTTP GET of path (Connection: close); *status is the answer's. */
static ws_client *
http_get(rt_runtime *rt, const char *path, int *status)
{
    ws_client *c = ws_client_connect(test_port);
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    ws_client_send_raw(c, req, strlen(req));
    *status = ws_client_http_head(rt, c);
    return c;
}

/* Opens a connection and connects as user; checks the open packet. */
static ws_client *
connect_user(rt_runtime *rt, const char *user)
{
    ws_client *c = ws_open(rt, "EIO=4&transport=websocket");
    char *open = ws_client_next_frame(rt, c, 1000);
    assert_non_null(open);
    assert_true(open[0] == '0');
    assert_non_null(strstr(open, "\"upgrades\":[]"));
    assert_non_null(strstr(open, "\"maxPayload\":65536"));
    free(open);
    char hello[128];
    snprintf(hello, sizeof(hello), "40{\"user\":\"%s\"}", user);
    ws_client_send_text(c, hello);
    char *ok = ws_client_next_frame(rt, c, 1000);
    assert_non_null(ok);
    assert_true(strncmp(ok, "40{\"sid\":\"", 10) == 0);
    free(ok);
    return c;
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

/* c joins room with Socket.IO ack id ack; the test answers for the fanout
 * (SUBSCRIBE, when subscribe) and the store (seq, nothing missed) and checks
 * the client's reply. */
static void
join_room(rt_runtime *rt, ws_client *c, int ack, const char *room, bool subscribe, uint64_t seq)
{
    char join[128], want[192];
    snprintf(join, sizeof(join), "42%d[\"join\",{\"room\":\"%s\"}]", ack, room);
    ws_client_send_text(c, join);
    serve_join(rt, subscribe, seq);
    snprintf(want, sizeof(want),
             "43%d[{\"ok\":true,\"room\":\"%s\",\"seq\":%" PRIu64 ",\"missed\":[],\"more\":false}]",
             ack, room, seq);
    ws_client_expect_frame(rt, c, want);
}

/* Two users connected as ua and ub, both members of a new room. */
static void
two_members(rt_runtime *rt, const char *room, const char *ua, ws_client **a, const char *ub,
            ws_client **b)
{
    *a = connect_user(rt, ua);
    *b = connect_user(rt, ub);
    join_room(rt, *a, 1, room, true, 0);
    join_room(rt, *b, 1, room, false, 0);
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
    cfg.auth = CHATD_AUTH_NONE;
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
        int status;
        ws_client *c = http_get(rt, cases[i].path, &status);
        assert_int_equal(status, cases[i].status);
        if (cases[i].hdr && !strcasestr(c->head, cases[i].hdr)) {
            print_error("%s: no \"%s\" in\n%s\n", cases[i].path, cases[i].hdr, c->head);
            fail();
        }
        if (cases[i].body)
            assert_string_equal(ws_client_http_body(rt, c, strlen(cases[i].body)),
                                cases[i].body);
        ws_client_free(c);
    }
    /* /metrics: Prometheus text with the socket's families */
    int status;
    ws_client *c = http_get(rt, "/metrics", &status);
    assert_int_equal(status, 200);
    const char *body = ws_client_http_body(rt, c, SIZE_MAX);
    assert_non_null(strstr(body, "# TYPE chatd_connections gauge"));
    assert_non_null(strstr(body, "chatd_http_requests_total{path=\"/healthz\"} 1"));
    assert_non_null(strstr(body, "chatd_actor_up{actor=\"socket\"} 1"));
    ws_client_free(c);
    close_socket(rt);
}

static void
test_connect(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = ws_open(rt, "EIO=4&transport=websocket");
    char *open = ws_client_next_frame(rt, c, 1000);
    assert_non_null(open);
    assert_non_null(strstr(open, "\"pingInterval\":25000"));
    assert_non_null(strstr(open, "\"pingTimeout\":20000"));
    free(open);
    /* invalid users are refused, the connection stays */
    ws_client_send_text(c, "40{\"user\":\"no spaces\"}");
    ws_client_expect_frame(rt, c, "44{\"message\":\"invalid user\"}");
    ws_client_send_text(c, "40");
    ws_client_expect_frame(rt, c, "44{\"message\":\"invalid user\"}");
    /* an event before a successful CONNECT closes the connection (1002), as
     * the reference server does */
    ws_client_send_text(c, "420[\"join\",{\"room\":\"r\"}]");
    assert_null(ws_client_next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1002);
    ws_client_free(c);
    c = ws_open(rt, "EIO=4&transport=websocket");
    free(ws_client_next_frame(rt, c, 1000));    /* the open packet */
    ws_client_send_text(c, "40{\"user\":\"alice\"}");
    char *ok = ws_client_next_frame(rt, c, 1000);
    assert_non_null(ok);
    assert_true(strncmp(ok, "40{\"sid\":", 9) == 0);
    free(ok);
    /* client ping is answered */
    ws_client_send_text(c, "2probe");
    ws_client_expect_frame(rt, c, "3probe");
    ws_client_free(c);
    close_socket(rt);
}

static void
test_join_message_live(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "alice");

    /* message before join: not_member, nothing reaches the producer */
    ws_client_send_text(c, "421[\"message\",{\"room\":\"r\",\"id\":\"m1\",\"text\":\"hi\"}]");
    ws_client_expect_frame(rt, c, "431[{\"ok\":false,\"error\":{\"code\":\"not_member\","
                                  "\"message\":\"join the room first\"}}]");
    assert_int_equal(stub_pending(CHATD_PRODUCER), 0);

    join_room(rt, c, 2, "r", true, 7);

    /* joining again is idempotent and needs no new subscription */
    join_room(rt, c, 3, "r", false, 7);

    /* a message goes to the producer; the ack waits for its answer */
    ws_client_send_text(c, "424[\"message\",{\"room\":\"r\",\"id\":\"m1\",\"text\":\"hi\"}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_PRODUCER, PROTO_T_MESSAGE, &m, 2000));
    proto_msg pm;
    assert_int_equal(proto_msg_decode(m.payload, m.len, &pm), PROTO_OK);
    assert_string_equal(pm.user, "alice");
    assert_string_equal(pm.text, "hi");
    assert_true(pm.ts > 1700000000000ull);
    proto_msg_free(&pm);
    assert_null(ws_client_next_frame(rt, c, 50));     /* no ack yet */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    ws_client_expect_frame(rt, c, "434[{\"ok\":true,\"id\":\"m1\"}]");

    /* a broker failure is unavailable */
    ws_client_send_text(c, "425[\"message\",{\"room\":\"r\",\"id\":\"m2\",\"text\":\"x\"}]");
    assert_true(stub_wait(rt, CHATD_PRODUCER, PROTO_T_MESSAGE, &m, 2000));
    reply_ack(rt, &m, false);
    stub_msg_free(&m);
    ws_client_expect_frame(rt, c, "435[{\"ok\":false,\"error\":{\"code\":\"unavailable\","
                                  "\"message\":\"down for the test\"}}]");

    /* live messages of the room arrive; other rooms' do not */
    live_message(rt, "r", 8, "x1", "hello \"there\"");
    live_message(rt, "elsewhere", 1, "x2", "no");
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":8,\"id\":\"x1\",\"user\":\"bob\","
            "\"text\":\"hello \\\"there\\\"\",\"ts\":1700000000000}]");
    assert_null(ws_client_next_frame(rt, c, 50));

    /* leave: unsubscribes the room (last local member), then nothing arrives */
    ws_client_send_text(c, "426[\"leave\",{\"room\":\"r\"}]");
    ws_client_expect_frame(rt, c, "436[{\"ok\":true,\"room\":\"r\"}]");
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_UNSUBSCRIBE, &m, 1000));
    stub_msg_free(&m);
    live_message(rt, "r", 9, "x3", "gone");
    assert_null(ws_client_next_frame(rt, c, 50));
    assert_true(rt_metric_value(rt, "chatd_messages_delivered_total", NULL) == 1);
    ws_client_free(c);
    close_socket(rt);
}

/* A live message at or below its room's last live seq is a repeat (published
 * again after a redelivery) and reaches nobody twice, nor one at or below the
 * seq a member's join answered; after fanout restarts,
 * the room is subscribed again and what nobody in it can have had (past the
 * last live seq) is fetched from the store and delivered, once. */
static void
test_live_repeats_and_catch_up(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "alice");
    join_room(rt, c, 1, "r", true, 7);

    /* at or below the join's seq: the member has it (or did not ask for it) */
    live_message(rt, "r", 5, "x5", "before the join");
    live_message(rt, "r", 8, "x8", "eight");
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":8,\"id\":\"x8\",\"user\":\"bob\","
            "\"text\":\"eight\",\"ts\":1700000000000}]");
    live_message(rt, "r", 8, "x8", "eight");        /* published again */
    live_message(rt, "r", 6, "x6", "older");
    live_message(rt, "r", 9, "x9", "nine");
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":9,\"id\":\"x9\",\"user\":\"bob\","
            "\"text\":\"nine\",\"ts\":1700000000000}]");
    assert_null(ws_client_next_frame(rt, c, 50));
    assert_true(rt_metric_value(rt, "chatd_live_stale_dropped_total", NULL) == 2);

    /* fanout restarted: subscribe again, then catch up from seq 9 */
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, CHATD_T_FANOUT_UP, 0, NULL, 0), RT_OK);
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_SUBSCRIBE, &m, 2000));
    assert_true(m.corr != 0);
    assert_null(ws_client_next_frame(rt, c, 50));             /* nothing before it is live */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_JOIN_REQ, &m, 2000));
    proto_join_req q;
    assert_int_equal(proto_join_req_decode(m.payload, m.len, &q), PROTO_OK);
    assert_string_equal(q.room, "r");
    assert_true(q.has_since);
    assert_int_equal(q.since, 9);
    /* live ones while the fetch is out wait for it: 12 overtaking 10 and 11
     * would make them look like repeats */
    live_message(rt, "r", 11, "x11", "eleven");
    live_message(rt, "r", 12, "x12", "twelve");
    assert_null(ws_client_next_frame(rt, c, 50));
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
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":10,\"id\":\"x10\",\"user\":\"bob\","
            "\"text\":\"ten\",\"ts\":1700000000000}]");
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":11,\"id\":\"x11\",\"user\":\"bob\","
            "\"text\":\"eleven\",\"ts\":1700000000000}]");
    ws_client_expect_frame(
        rt, c, "42[\"message\",{\"room\":\"r\",\"seq\":12,\"id\":\"x12\",\"user\":\"bob\","
            "\"text\":\"twelve\",\"ts\":1700000000000}]");
    live_message(rt, "r", 11, "x11", "eleven");     /* the live copy, late */
    assert_null(ws_client_next_frame(rt, c, 50));
    ws_client_free(c);
    close_socket(rt);
}

/* A join waiting for its room's subscription fails when the store is gone
 * by the time the subscription comes live: its membership is undone, which
 * empties the room, and the room is freed once, after the waiting joins are
 * answered (freeing it under that loop was a use-after-free under ASan). */
static void
test_join_fails_as_subscription_comes_live(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "alice");
    assert_int_equal(rt_kill(rt, rt_whereis(rt, CHATD_STORE), RT_EXIT_KILLED, "test"), RT_OK);
    ws_client_send_text(c, "421[\"join\",{\"room\":\"gone\"}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_SUBSCRIBE, &m, 2000));
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    ws_client_expect_frame(rt, c, "431[{\"ok\":false,\"error\":{\"code\":\"unavailable\","
                                  "\"message\":\"the message store is unavailable\"}}]");
    /* the empty room was given up: its subscription too */
    assert_true(stub_wait(rt, CHATD_FANOUT, CHATD_T_UNSUBSCRIBE, &m, 2000));
    stub_msg_free(&m);
    ws_client_free(c);
    close_socket(rt);
}

static void
test_validation_order(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "carol");
    ws_client_send_text(c, "421[\"shout\",{\"room\":\"r\"}]");
    ws_client_expect_frame(rt, c, "431[{\"ok\":false,\"error\":{\"code\":\"bad_request\","
                                  "\"message\":\"unknown event\"}}]");
    /* bad_request beats forbidden: a dm room of others with a bad field */
    ws_client_send_text(c, "422[\"message\",{\"room\":\"dm:al:bo\",\"id\":\"\",\"text\":\"x\"}]");
    char *f = ws_client_next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"code\":\"bad_request\""));
    free(f);
    /* forbidden: a valid event on somebody else's dm room */
    ws_client_send_text(c, "423[\"history\",{\"room\":\"dm:al:bo\"}]");
    f = ws_client_next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"code\":\"forbidden\""));
    free(f);
    /* a lone surrogate: bad_request through the ack id; the connection stays */
    ws_client_send_text(c, "424[\"message\",{\"room\":\"r\",\"id\":\"a\",\"text\":\"\\ud800\"}]");
    f = ws_client_next_frame(rt, c, 1000);
    assert_non_null(f);
    assert_true(strncmp(f, "434[{\"ok\":false,\"error\":{\"code\":\"bad_request\"", 44) == 0);
    free(f);
    ws_client_send_text(c, "2x");
    ws_client_expect_frame(rt, c, "3x");
    ws_client_free(c);
    close_socket(rt);
}

static void
test_timeout_is_unavailable(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "dave");
    ws_client_send_text(c, "427[\"history\",{\"room\":\"r\"}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_STORE, PROTO_T_HISTORY_REQ, &m, 1000));
    proto_history_req hr;
    assert_int_equal(proto_history_req_decode(m.payload, m.len, &hr), PROTO_OK);
    assert_int_equal(hr.limit, 50);
    /* nobody answers: after request_timeout_ms the client hears unavailable */
    char *f = ws_client_next_frame(rt, c, 2000);
    assert_non_null(f);
    assert_non_null(strstr(f, "437[{\"ok\":false,\"error\":{\"code\":\"unavailable\""));
    free(f);
    /* a late answer is ignored */
    reply_ack(rt, &m, true);
    stub_msg_free(&m);
    assert_null(ws_client_next_frame(rt, c, 50));

    /* a join whose subscription never comes back fails, and leaves no
     * membership behind: a message is then not_member */
    ws_client_send_text(c, "428[\"join\",{\"room\":\"q\"}]");
    f = ws_client_next_frame(rt, c, 2000);
    assert_non_null(strstr(f, "438[{\"ok\":false,\"error\":{\"code\":\"unavailable\""));
    free(f);
    ws_client_send_text(c, "429[\"message\",{\"room\":\"q\",\"id\":\"m\",\"text\":\"x\"}]");
    f = ws_client_next_frame(rt, c, 1000);
    assert_non_null(strstr(f, "\"not_member\""));
    free(f);
    ws_client_free(c);
    close_socket(rt);
}

static void
test_frame_limits(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *c = connect_user(rt, "erin");
    /* one byte over maxPayload: 1009 */
    size_t n = 65537;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, "42[\"message\",{\"text\":\"", 22);
    ws_client_send_frame(c, true, 1, big, n);
    free(big);
    assert_null(ws_client_next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1009);
    ws_client_free(c);

    /* invalid UTF-8: 1007 */
    c = connect_user(rt, "erin");
    ws_client_send_frame(c, true, 1, "42[\"x\xff\"]", 8);
    assert_null(ws_client_next_frame(rt, c, 2000));
    assert_int_equal(c->close_code, 1007);
    ws_client_free(c);

    /* a fragmented message is reassembled */
    const char *msg = "420[\"leave\",{\"room\":\"frag\"}]";
    c = connect_user(rt, "erin");
    /* text frame without FIN, then a continuation with FIN */
    ws_client_send_frame(c, false, 1, msg, 10);
    ws_client_send_frame(c, true, 0, msg + 10, strlen(msg) - 10);
    ws_client_expect_frame(rt, c, "430[{\"ok\":true,\"room\":\"frag\"}]");
    ws_client_free(c);
    close_socket(rt);
}

static void
test_typing_skips_sender(void **state)
{
    (void)state;
    rt_runtime *rt = open_socket();
    ws_client *a, *b;
    two_members(rt, "t", "ann", &a, "ben", &b);

    ws_client_send_text(a, "422[\"typing\",{\"room\":\"t\"}]");
    ws_client_expect_frame(rt, a, "432[{\"ok\":true}]");
    stub_msg m;
    assert_true(stub_wait(rt, CHATD_FANOUT, PROTO_T_TYPING, &m, 1000));
    /* fanout echoes it back to every node, this one included */
    assert_int_equal(rt_send_named(rt, 0, CHATD_SOCKET, PROTO_T_TYPING, 0, m.payload, m.len),
                     RT_OK);
    stub_msg_free(&m);
    ws_client_expect_frame(rt, b, "42[\"typing\",{\"room\":\"t\",\"user\":\"ann\"}]");
    assert_null(ws_client_next_frame(rt, a, 50));
    ws_client_free(a);
    ws_client_free(b);
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
    ws_client *a, *b;
    two_members(rt, "tt", "amy", &a, "bea", &b);

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
        ws_client_expect_frame(rt, a, "42[\"typing\",{\"room\":\"tt\",\"user\":\"zed\"}]");
        ws_client_expect_frame(rt, b, "42[\"typing\",{\"room\":\"tt\",\"user\":\"zed\"}]");
    }
    assert_null(ws_client_next_frame(rt, a, 50));
    assert_true(rt_metric_value(rt, "chatd_typing_delivered_total", NULL) == 4);
    ws_client_send_text(b, "2alive");
    ws_client_expect_frame(rt, b, "3alive");
    ws_client_free(a);
    ws_client_free(b);
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
    int status;
    ws_client *c = http_get(rt, "/late.txt", &status);
    assert_int_equal(status, 404);
    ws_client_free(c);
    close_socket(rt);

    rt = open_socket();
    c = http_get(rt, "/late.txt", &status);
    assert_int_equal(status, 200);
    assert_non_null(strcasestr(c->head, "content-type: text/plain; charset=utf-8"));
    assert_string_equal(ws_client_http_body(rt, c, 4), "late");
    ws_client_free(c);
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
    test_port = loopback_free_port();
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
        cmocka_unit_test_teardown(test_join_fails_as_subscription_comes_live, teardown),
        cmocka_unit_test_teardown(test_validation_order, teardown),
        cmocka_unit_test_teardown(test_timeout_is_unavailable, teardown),
        cmocka_unit_test_teardown(test_frame_limits, teardown),
        cmocka_unit_test_teardown(test_typing_skips_sender, teardown),
        cmocka_unit_test_teardown(test_typing_from_other_node, teardown),
        cmocka_unit_test_teardown(test_static_loaded_at_start, teardown),
    };
    return cmocka_run_group_tests(tests, setup, group_teardown);
}
