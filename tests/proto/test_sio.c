/*
 * Tests of proto/sio: every packet type, every validation rule and the order
 * of error codes, ack ids that survive undecodable JSON, namespaces, binary
 * packets, and the exact bytes of every encoder. jansson allocates through a
 * counting allocator: each test ends by proving that nothing it decoded is
 * still allocated.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/sio.h"

/* ---- allocation accounting ---------------------------------------------- */

static long live_allocs;
static long fail_after = -1;    /* >= 0: that many more mallocs succeed */

static void *
count_malloc(size_t n)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    void *p = malloc(n);
    if (p)
        live_allocs++;
    return p;
}

static void
count_free(void *p)
{
    if (p)
        live_allocs--;
    free(p);
}

static int
setup(void **state)
{
    (void)state;
    live_allocs = 0;
    fail_after = -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fail_after = -1;
    assert_int_equal(live_allocs, 0);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static sio_kind
parse(const char *frame, sio_packet *pkt)
{
    return sio_parse(frame, strlen(frame), pkt);
}

/* Parses frame as alice's and validates it; returns the error, stores the
 * message. The packet is freed. */
static sio_error
check_as(const char *user, const char *frame, const char **message)
{
    sio_packet pkt;
    sio_request req;
    const char *msg = NULL;
    parse(frame, &pkt);
    sio_error err = sio_request_parse(&pkt, user, strlen(user), &req, &msg);
    if (err != SIO_OK) {
        assert_non_null(msg);
        assert_int_equal(req.event, SIO_EV_NONE);
        assert_null(req.room);
    }
    if (message)
        *message = msg;
    sio_packet_free(&pkt);
    return err;
}

static sio_error
check(const char *frame)
{
    return check_as("alice", frame, NULL);
}

static void
assert_bad(const char *frame)
{
    const char *msg = NULL;
    sio_error err = check_as("alice", frame, &msg);
    if (err != SIO_E_BAD_REQUEST)
        fail_msg("expected bad_request for %s, got %s", frame, sio_error_code(err));
}

/* Asserts that b holds exactly expect, then empties it. */
static void
assert_buf(proto_mp_buf *b, const char *expect)
{
    size_t n = strlen(expect);
    if (b->len != n || memcmp(b->data, expect, n) != 0)
        fail_msg("expected <%s>\n     got <%.*s>", expect, (int)b->len, b->data);
    proto_mp_buf_reset(b);
}

/* ---- Engine.IO --------------------------------------------------------------- */

static void
test_eio_types(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("1", &p), SIO_PKT_CLOSE);
    sio_packet_free(&p);
    assert_int_equal(parse("2", &p), SIO_PKT_PING);
    assert_int_equal(p.data_len, 0);
    sio_packet_free(&p);
    assert_int_equal(parse("2probe", &p), SIO_PKT_PING);
    assert_int_equal(p.data_len, 5);
    assert_memory_equal(p.data, "probe", 5);
    sio_packet_free(&p);
    assert_int_equal(parse("3", &p), SIO_PKT_PONG);
    sio_packet_free(&p);
    assert_int_equal(parse("3probe", &p), SIO_PKT_PONG);
    sio_packet_free(&p);
    assert_int_equal(parse("5", &p), SIO_PKT_IGNORE);
    sio_packet_free(&p);
    assert_int_equal(parse("6", &p), SIO_PKT_IGNORE);
    sio_packet_free(&p);

    /* Clients never send open; anything else is not Engine.IO. */
    const char *invalid[] = {"", "0", "0{\"sid\":\"x\"}", "7", "9", "x", "{}", " 4",
                             "4", "47", "4x", "4-", "44{\"message\":\"x\"}"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (parse(invalid[i], &p) != SIO_PKT_INVALID)
            fail_msg("expected INVALID for <%s>", invalid[i]);
        sio_packet_free(&p);
    }
}

/* ---- CONNECT / DISCONNECT ------------------------------------------------------ */

static void
test_connect_ok(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("40{\"user\":\"alice\"}", &p), SIO_PKT_CONNECT);
    assert_string_equal(p.user, "alice");
    assert_int_equal(p.user_len, 5);
    assert_null(p.root);
    sio_packet_free(&p);

    /* Explicit "/" namespace, extra auth fields, the longest name. */
    assert_int_equal(parse("40/,{\"token\":1,\"user\":\"A_b.c-9\"}", &p), SIO_PKT_CONNECT);
    assert_string_equal(p.user, "A_b.c-9");
    sio_packet_free(&p);
    assert_int_equal(parse("40{\"user\":\"abcdefghijklmnopqrstuvwxyz012345\"}", &p),
                     SIO_PKT_CONNECT);
    assert_int_equal(p.user_len, 32);
    sio_packet_free(&p);

    /* No name: the caller decides (a token, or "invalid user"). */
    const char *nameless[] = { "40", "40{}", "40{\"auth\":{\"user\":\"alice\"}}" };
    for (size_t i = 0; i < sizeof(nameless) / sizeof(nameless[0]); i++) {
        assert_int_equal(parse(nameless[i], &p), SIO_PKT_CONNECT);
        assert_int_equal(p.user_len, 0);
        assert_false(p.has_token);
        sio_packet_free(&p);
    }
    /* A token is kept with the packet; one that is not a string is flagged. */
    assert_int_equal(parse("40{\"token\":\"a.b.c\"}", &p), SIO_PKT_CONNECT);
    assert_true(p.has_token);
    assert_int_equal(p.token_len, 5);
    assert_memory_equal(p.token, "a.b.c", 5);
    sio_packet_free(&p);
    assert_int_equal(parse("40{\"token\":1,\"user\":\"bob\"}", &p), SIO_PKT_CONNECT);
    assert_true(p.has_token);
    assert_null(p.token);
    assert_string_equal(p.user, "bob");
    sio_packet_free(&p);
}

static void
test_connect_invalid_user(void **state)
{
    (void)state;
    const char *frames[] = {
        "40{\"user\":1}", "40{\"user\":null}", "40{\"user\":\"\"}",
        "40{\"user\":\"a b\"}", "40{\"user\":\"al:ce\"}", "40{\"user\":\"\\u00e9\"}",
        "40{\"user\":\"abcdefghijklmnopqrstuvwxyz0123456\"}",  /* 33 */
        "40[\"alice\"]", "40\"alice\"", "40{\"user\":", "40{\"user\":\"\\ud800\"}",
        "40{\"user\":\"alice\",\"user\":\"bob\"}", "40{\"user\":\"a b\",\"token\":\"t\"}",
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        sio_packet p;
        if (parse(frames[i], &p) != SIO_PKT_CONNECT_ERROR)
            fail_msg("expected CONNECT_ERROR for <%s>", frames[i]);
        assert_string_equal(p.message, "invalid user");
        assert_int_equal(p.nsp_len, 1);
        assert_int_equal(p.user_len, 0);
        sio_packet_free(&p);
    }
}

static void
test_connect_other_namespace(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("40/admin,{\"user\":\"alice\"}", &p), SIO_PKT_CONNECT_ERROR);
    assert_string_equal(p.message, "Invalid namespace");
    assert_int_equal(p.nsp_len, 6);
    assert_memory_equal(p.nsp, "/admin", 6);
    sio_packet_free(&p);

    assert_int_equal(parse("40/admin", &p), SIO_PKT_CONNECT_ERROR);
    assert_memory_equal(p.nsp, "/admin", 6);
    sio_packet_free(&p);

    /* The reply goes to that namespace. */
    char mem[128];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(parse("40/chat,", &p), SIO_PKT_CONNECT_ERROR);
    assert_int_equal(sio_encode_connect_error(&b, p.nsp, p.nsp_len, p.message), PROTO_OK);
    assert_buf(&b, "44/chat,{\"message\":\"Invalid namespace\"}");
    sio_packet_free(&p);
}

static void
test_namespace_limits(void **state)
{
    (void)state;
    sio_packet p;
    char frame[SIO_NSP_MAX + 64];
    /* SIO_NSP_MAX bytes is fine, one more is not. */
    strcpy(frame, "42/");
    memset(frame + 3, 'n', SIO_NSP_MAX - 1);
    strcpy(frame + 2 + SIO_NSP_MAX, ",[\"x\"]");
    assert_int_equal(parse(frame, &p), SIO_PKT_FOREIGN_EVENT);
    assert_int_equal(p.nsp_len, SIO_NSP_MAX);
    sio_packet_free(&p);
    strcpy(frame, "42/");
    memset(frame + 3, 'n', SIO_NSP_MAX);
    strcpy(frame + 3 + SIO_NSP_MAX, ",[\"x\"]");
    assert_int_equal(parse(frame, &p), SIO_PKT_INVALID);
    sio_packet_free(&p);

    assert_int_equal(parse("40/a\nb,{}", &p), SIO_PKT_INVALID);
    sio_packet_free(&p);
    assert_int_equal(parse("40/a\x7f,{}", &p), SIO_PKT_INVALID);
    sio_packet_free(&p);
}

static void
test_disconnect(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("41", &p), SIO_PKT_DISCONNECT);
    sio_packet_free(&p);
    assert_int_equal(parse("41/,", &p), SIO_PKT_DISCONNECT);
    sio_packet_free(&p);
    assert_int_equal(parse("41/admin,", &p), SIO_PKT_IGNORE);
    sio_packet_free(&p);
}

static void
test_client_acks_ignored(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("431[{\"ok\":true}]", &p), SIO_PKT_IGNORE);
    sio_packet_free(&p);
    assert_int_equal(parse("43", &p), SIO_PKT_IGNORE);
    sio_packet_free(&p);
    assert_int_equal(parse("461-3[{\"_placeholder\":true,\"num\":0}]", &p), SIO_PKT_IGNORE);
    assert_int_equal(p.attachments, 1);
    sio_packet_free(&p);
}

/* ---- EVENT ------------------------------------------------------------------------ */

static void
test_event_parse(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("42[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_int_equal(p.err, SIO_OK);
    assert_false(p.has_ack);
    assert_string_equal(p.event, "join");
    assert_int_equal(p.event_len, 4);
    assert_true(json_is_object(p.args));
    sio_packet_free(&p);

    assert_int_equal(parse("4217[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_true(p.has_ack);
    assert_int_equal(p.ack_id, 17);
    sio_packet_free(&p);

    assert_int_equal(parse("420[\"typing\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_true(p.has_ack);
    assert_int_equal(p.ack_id, 0);
    sio_packet_free(&p);

    /* Leading zeros read as JavaScript's Number() reads them. */
    assert_int_equal(parse("42007[\"typing\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_int_equal(p.ack_id, 7);
    sio_packet_free(&p);

    /* Explicit root namespace. */
    assert_int_equal(parse("42/,3[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_int_equal(p.ack_id, 3);
    assert_int_equal(p.err, SIO_OK);
    sio_packet_free(&p);

    /* Other namespaces were never connected: the caller closes. */
    assert_int_equal(parse("42/admin,3[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_FOREIGN_EVENT);
    sio_packet_free(&p);
    assert_int_equal(parse("42/admin,[\"join\"", &p), SIO_PKT_FOREIGN_EVENT);
    sio_packet_free(&p);
}

static void
test_ack_id_bounds(void **state)
{
    (void)state;
    sio_packet p;
    assert_int_equal(parse("429007199254740991[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    assert_int_equal(p.err, SIO_OK);
    assert_true(p.has_ack);
    assert_true(p.ack_id == SIO_ACK_ID_MAX);
    sio_packet_free(&p);

    const char *huge[] = {
        "429007199254740992[\"join\",{\"room\":\"r\"}]",
        "4218446744073709551615[\"join\",{\"room\":\"r\"}]",
        "4218446744073709551616[\"join\",{\"room\":\"r\"}]",
        "42123456789012345678901234567890123456789[\"join\",{\"room\":\"r\"}]",
        "4299999999999999999999",
    };
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        const char *msg;
        assert_int_equal(parse(huge[i], &p), SIO_PKT_EVENT);
        assert_false(p.has_ack);
        assert_int_equal(p.err, SIO_E_BAD_REQUEST);
        assert_null(p.root);
        sio_packet_free(&p);
        assert_int_equal(check_as("alice", huge[i], &msg), SIO_E_BAD_REQUEST);
        assert_string_equal(msg, "invalid ack id");
    }
}

static void
test_undecodable_keeps_ack_id(void **state)
{
    (void)state;
    const char *frames[] = {
        "4242[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"\\ud800\"}]",
        "4242[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"a\\udfffb\"}]",
        "4242[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"\\ude00\\ud83d\"}]",
        "4242[\"join\",{\"room\":\"r\",\"room\":\"s\"}]",
        "4242[\"join\",{\"room\":\"r\"}",
        "4242[\"join\",{\"room\":\"r\"}]x",
        "4242[\"join\",{\"room\":\"r\",\"since\":99999999999999999999}]",
        "4242{broken",
        "4242 ",
        "4242\"join\"",
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        sio_packet p;
        assert_int_equal(parse(frames[i], &p), SIO_PKT_EVENT);
        if (!p.has_ack || p.ack_id != 42 || p.err != SIO_E_BAD_REQUEST)
            fail_msg("ack id lost or error missing for <%s>", frames[i]);
        sio_packet_free(&p);
        const char *msg;
        assert_int_equal(check_as("alice", frames[i], &msg), SIO_E_BAD_REQUEST);
    }

    /* A surrogate pair is a scalar value and is fine. */
    assert_int_equal(check("42[\"message\",{\"room\":\"r\",\"id\":\"1\","
                           "\"text\":\"\\ud83d\\ude00\"}]"), SIO_OK);
}

static void
test_missing_payload(void **state)
{
    (void)state;
    sio_packet p;
    const char *msg;
    assert_int_equal(parse("427", &p), SIO_PKT_EVENT);
    assert_true(p.has_ack);
    assert_int_equal(p.ack_id, 7);
    assert_int_equal(p.err, SIO_E_BAD_REQUEST);
    sio_packet_free(&p);
    assert_int_equal(check_as("alice", "42", &msg), SIO_E_BAD_REQUEST);
    assert_string_equal(msg, "missing payload");
}

static void
test_binary_event(void **state)
{
    (void)state;
    sio_packet p;
    const char *msg;
    assert_int_equal(parse("451-[\"message\",{\"_placeholder\":true,\"num\":0}]", &p),
                     SIO_PKT_EVENT);
    assert_int_equal(p.attachments, 1);
    assert_false(p.has_ack);
    assert_int_equal(p.err, SIO_E_BAD_REQUEST);
    sio_packet_free(&p);

    assert_int_equal(parse("4512-9[\"message\",{\"a\":{\"_placeholder\":true,\"num\":0}}]", &p),
                     SIO_PKT_EVENT);
    assert_int_equal(p.attachments, 12);
    assert_true(p.has_ack);
    assert_int_equal(p.ack_id, 9);
    assert_int_equal(p.err, SIO_E_BAD_REQUEST);
    sio_packet_free(&p);
    assert_int_equal(check_as("alice", "452-/,9[\"join\",{\"room\":\"r\"}]", &msg),
                     SIO_E_BAD_REQUEST);
    assert_string_equal(msg, "binary attachments are not supported");

    assert_int_equal(parse("451-/admin,9[\"x\"]", &p), SIO_PKT_FOREIGN_EVENT);
    sio_packet_free(&p);

    const char *invalid[] = {"45", "45-[\"x\"]", "451[\"x\"]", "45x-[\"x\"]", "451",
                             "451234567890-[\"x\"]", "46-", "46"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (parse(invalid[i], &p) != SIO_PKT_INVALID)
            fail_msg("expected INVALID for <%s>", invalid[i]);
        sio_packet_free(&p);
    }
}

static void
test_event_shape(void **state)
{
    (void)state;
    const char *msg;
    assert_bad("42{\"room\":\"r\"}");
    assert_bad("42[]");
    assert_bad("42[1,{\"room\":\"r\"}]");
    assert_bad("42[null]");
    assert_bad("42[\"join\"]");
    assert_bad("42[\"join\",\"r\"]");
    assert_bad("42[\"join\",[\"r\"]]");
    assert_bad("42[\"join\",null]");
    assert_bad("42[\"join\",{\"room\":\"r\"},1]");
    assert_bad("42[\"join\",{\"room\":\"r\"},{}]");

    /* A non-EVENT packet is not a request. */
    sio_packet p;
    sio_request req;
    parse("3", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_E_BAD_REQUEST);
    sio_packet_free(&p);
}

static void
test_unknown_event(void **state)
{
    (void)state;
    const char *msg;
    const char *frames[] = {
        "421[\"nope\",{\"room\":\"r\"}]",
        "421[\"JOIN\",{\"room\":\"r\"}]",
        "421[\"join \",{\"room\":\"r\"}]",
        "421[\"\",{}]",
        "421[\"joi\",{\"room\":\"r\"}]",
        "421[\"joinx\",{\"room\":\"r\"}]",
        /* Unknown comes first: the shape of an unknown event is not checked. */
        "421[\"nope\"]",
        "421[\"nope\",1,2,3]",
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        assert_int_equal(check_as("alice", frames[i], &msg), SIO_E_BAD_REQUEST);
        assert_string_equal(msg, "unknown event");
    }
}

/* ---- validation per event ---------------------------------------------------------- */

static void
test_room_rules(void **state)
{
    (void)state;
    static const char *events[] = {"join", "leave", "message", "history", "typing",
                                   "presence"};
    static const char *bad_rooms[] = {
        "{}", "{\"room\":1}", "{\"room\":null}", "{\"room\":\"\"}", "{\"room\":\"a b\"}",
        "{\"room\":\"a/b\"}", "{\"room\":\"\\u00e9\"}",
        "{\"room\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        "{\"room\":\"dm:bob:alice\"}", "{\"room\":\"dm:alice\"}", "{\"room\":\"dm:alice:alice\"}",
        "{\"room\":\"dm:alice:bob:carol\"}", "{\"room\":\"dm:alice:b.b:\"}",
        "{\"room\":\"dm:\"}", "{\"room\":[\"r\"]}", "{\"room\":true}",
        "{\"Room\":\"r\"}",
    };
    char frame[512];
    for (size_t e = 0; e < sizeof(events) / sizeof(events[0]); e++) {
        for (size_t r = 0; r < sizeof(bad_rooms) / sizeof(bad_rooms[0]); r++) {
            snprintf(frame, sizeof(frame), "42[\"%s\",%s]", events[e], bad_rooms[r]);
            assert_bad(frame);
        }
    }

    /* 64 characters, and the longest dm room (68). */
    assert_int_equal(check("42[\"leave\",{\"room\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]"), SIO_OK);
    assert_int_equal(check_as("abcdefghijklmnopqrstuvwxyz01234a",
        "42[\"leave\",{\"room\":\"dm:abcdefghijklmnopqrstuvwxyz01234a:"
        "abcdefghijklmnopqrstuvwxyz01234b\"}]", NULL), SIO_OK);
    assert_int_equal(check("42[\"leave\",{\"room\":\"a.b:c-d_E9\"}]"), SIO_OK);
}

static void
test_nul_in_text_not_in_names(void **state)
{
    (void)state;
    sio_packet p;
    sio_request req;
    const char *msg;

    /* U+0000 is a scalar value: text may hold it, with its length */
    parse("421[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"a\\u0000b\"}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_int_equal(req.text_len, 3);
    assert_memory_equal(req.text, "a\0b", 3);
    sio_packet_free(&p);

    /* names cannot: their character sets exclude it */
    parse("422[\"join\",{\"room\":\"r\\u0000x\"}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_E_BAD_REQUEST);
    sio_packet_free(&p);
    parse("423[\"message\",{\"room\":\"r\",\"id\":\"a\\u0000\",\"text\":\"x\"}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_E_BAD_REQUEST);
    sio_packet_free(&p);
}

static void
test_join(void **state)
{
    (void)state;
    sio_packet p;
    sio_request req;
    const char *msg;

    parse("425[\"join\",{\"room\":\"lobby\",\"extra\":[1,2]}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_null(msg);
    assert_int_equal(req.event, SIO_EV_JOIN);
    assert_string_equal(req.room, "lobby");
    assert_int_equal(req.room_len, 5);
    assert_false(req.has_since);
    sio_packet_free(&p);

    parse("42[\"join\",{\"room\":\"lobby\",\"since\":0}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_true(req.has_since);
    assert_int_equal(req.since, 0);
    sio_packet_free(&p);

    parse("42[\"join\",{\"room\":\"lobby\",\"since\":9223372036854775807}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_true(req.since == UINT64_C(9223372036854775807));
    sio_packet_free(&p);

    parse("42[\"join\",{\"room\":\"lobby\",\"since\":null}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_false(req.has_since);
    sio_packet_free(&p);

    const char *bad[] = {"-1", "1.5", "5.0", "1e3", "\"5\"", "true", "false", "[]", "{}",
                         "-0.0"};
    char frame[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(frame, sizeof(frame), "42[\"join\",{\"room\":\"r\",\"since\":%s}]", bad[i]);
        assert_bad(frame);
    }
}

static void
test_leave_typing_presence(void **state)
{
    (void)state;
    static const struct { const char *name; sio_event ev; } evs[] = {
        {"leave", SIO_EV_LEAVE}, {"typing", SIO_EV_TYPING}, {"presence", SIO_EV_PRESENCE},
    };
    for (size_t i = 0; i < 3; i++) {
        char frame[128];
        sio_packet p;
        sio_request req;
        const char *msg;
        snprintf(frame, sizeof(frame), "421[\"%s\",{\"room\":\"r1\",\"since\":\"x\"}]",
                 evs[i].name);
        parse(frame, &p);
        assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
        assert_int_equal(req.event, evs[i].ev);
        assert_string_equal(req.room, "r1");
        assert_string_equal(sio_event_name(req.event), evs[i].name);
        sio_packet_free(&p);
    }
}

static void
test_message(void **state)
{
    (void)state;
    sio_packet p;
    sio_request req;
    const char *msg;

    parse("429[\"message\",{\"room\":\"r\",\"id\":\"m-1 x~\",\"text\":\"h\\u00e9\\n\\\"\"}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_int_equal(req.event, SIO_EV_MESSAGE);
    assert_string_equal(req.id, "m-1 x~");
    assert_int_equal(req.id_len, 6);
    assert_int_equal(req.text_len, 5);
    assert_memory_equal(req.text, "h\xc3\xa9\n\"", 5);
    sio_packet_free(&p);

    assert_bad("42[\"message\",{\"room\":\"r\",\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":1,\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"\",\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"a\\nb\",\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"\\u00e9\",\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"a\\u007f\",\"text\":\"t\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":"
               "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
               "\"text\":\"t\"}]");     /* 65 bytes: bad_request, not too_large */
    assert_int_equal(check("42[\"message\",{\"room\":\"r\",\"id\":"
               "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
               "\"text\":\"t\"}]"), SIO_OK);
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"1\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"\"}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":5}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":null}]");
    assert_bad("42[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":[\"t\"]}]");
}

/* Builds 42["message",{"room":room,"id":id,"text":<n copies of unit>}]. */
static char *
message_frame(const char *room, const char *id, const char *unit, size_t n)
{
    size_t ulen = strlen(unit);
    size_t cap = 128 + strlen(room) + strlen(id) + ulen * n;
    char *f = malloc(cap);
    assert_non_null(f);
    int k = snprintf(f, cap, "421[\"message\",{\"room\":\"%s\",\"id\":\"%s\",\"text\":\"",
                     room, id);
    char *w = f + k;
    for (size_t i = 0; i < n; i++, w += ulen)
        memcpy(w, unit, ulen);
    strcpy(w, "\"}]");
    return f;
}

static void
test_text_size(void **state)
{
    (void)state;
    const char *msg;
    char *f;

    f = message_frame("r", "1", "a", 4096);
    assert_int_equal(check(f), SIO_OK);
    free(f);
    f = message_frame("r", "1", "a", 4097);
    assert_int_equal(check_as("alice", f, &msg), SIO_E_TOO_LARGE);
    assert_string_equal(msg, "text over 4096 bytes");
    free(f);
    /* Bytes, not characters: 2048 x "é" is 4096 bytes, 2049 is over. */
    f = message_frame("r", "1", "\xc3\xa9", 2048);
    assert_int_equal(check(f), SIO_OK);
    free(f);
    f = message_frame("r", "1", "\\u00e9", 2049);
    assert_int_equal(check(f), SIO_E_TOO_LARGE);
    free(f);
    /* An escaped character counts as its decoded bytes. */
    f = message_frame("r", "1", "\\n", 4096);
    assert_int_equal(check(f), SIO_OK);
    free(f);
}

static void
test_error_order(void **state)
{
    (void)state;
    char *f;
    /* bad_request beats too_large. */
    f = message_frame("r", "", "a", 5000);
    assert_int_equal(check(f), SIO_E_BAD_REQUEST);
    free(f);
    f = message_frame("a b", "1", "a", 5000);
    assert_int_equal(check(f), SIO_E_BAD_REQUEST);
    free(f);
    f = message_frame("dm:bob:alice", "1", "a", 5000);   /* malformed dm */
    assert_int_equal(check_as("carol", f, NULL), SIO_E_BAD_REQUEST);
    free(f);
    /* too_large beats forbidden. */
    f = message_frame("dm:alice:bob", "1", "a", 5000);
    assert_int_equal(check_as("carol", f, NULL), SIO_E_TOO_LARGE);
    free(f);
    f = message_frame("dm:alice:bob", "1", "a", 10);
    assert_int_equal(check_as("carol", f, NULL), SIO_E_FORBIDDEN);
    assert_int_equal(check_as("alice", f, NULL), SIO_OK);
    assert_int_equal(check_as("bob", f, NULL), SIO_OK);
    free(f);
    /* bad_request beats forbidden. */
    assert_int_equal(check_as("carol", "42[\"join\",{\"room\":\"dm:alice:bob\",\"since\":-1}]",
                              NULL), SIO_E_BAD_REQUEST);
    assert_int_equal(check_as("carol", "42[\"history\",{\"room\":\"dm:alice:bob\",\"limit\":0}]",
                              NULL), SIO_E_BAD_REQUEST);
}

static void
test_forbidden_dm(void **state)
{
    (void)state;
    static const char *frames[] = {
        "421[\"join\",{\"room\":\"dm:alice:bob\"}]",
        "421[\"leave\",{\"room\":\"dm:alice:bob\"}]",
        "421[\"message\",{\"room\":\"dm:alice:bob\",\"id\":\"1\",\"text\":\"hi\"}]",
        "421[\"history\",{\"room\":\"dm:alice:bob\"}]",
        "421[\"typing\",{\"room\":\"dm:alice:bob\"}]",
        "421[\"presence\",{\"room\":\"dm:alice:bob\"}]",
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        const char *msg;
        assert_int_equal(check_as("carol", frames[i], &msg), SIO_E_FORBIDDEN);
        assert_int_equal(check_as("alic", frames[i], &msg), SIO_E_FORBIDDEN);
        assert_int_equal(check_as("alicebob", frames[i], &msg), SIO_E_FORBIDDEN);
        assert_int_equal(check_as("alice", frames[i], &msg), SIO_OK);
        assert_int_equal(check_as("bob", frames[i], &msg), SIO_OK);
    }
    /* A room that merely contains "dm" is not a dm room. */
    assert_int_equal(check_as("carol", "42[\"join\",{\"room\":\"dmx:alice:bob\"}]", NULL),
                     SIO_OK);
}

static void
test_history(void **state)
{
    (void)state;
    sio_packet p;
    sio_request req;
    const char *msg;

    parse("42[\"history\",{\"room\":\"r\"}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_int_equal(req.event, SIO_EV_HISTORY);
    assert_false(req.has_before);
    assert_int_equal(req.limit, 50);
    sio_packet_free(&p);

    parse("42[\"history\",{\"room\":\"r\",\"before\":10,\"limit\":200}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_true(req.has_before);
    assert_int_equal(req.before, 10);
    assert_int_equal(req.limit, 200);
    sio_packet_free(&p);

    parse("42[\"history\",{\"room\":\"r\",\"before\":0,\"limit\":1}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_true(req.has_before);
    assert_int_equal(req.before, 0);
    assert_int_equal(req.limit, 1);
    sio_packet_free(&p);

    parse("42[\"history\",{\"room\":\"r\",\"before\":null,\"limit\":null}]", &p);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_OK);
    assert_false(req.has_before);
    assert_int_equal(req.limit, 50);
    sio_packet_free(&p);

    const char *bad_limit[] = {"0", "201", "-1", "1.0", "50.5", "\"5\"", "true", "[]",
                               "9223372036854775807"};
    const char *bad_before[] = {"-1", "2.5", "1e2", "\"10\"", "false", "{}"};
    char frame[128];
    for (size_t i = 0; i < sizeof(bad_limit) / sizeof(bad_limit[0]); i++) {
        snprintf(frame, sizeof(frame), "42[\"history\",{\"room\":\"r\",\"limit\":%s}]",
                 bad_limit[i]);
        assert_bad(frame);
    }
    for (size_t i = 0; i < sizeof(bad_before) / sizeof(bad_before[0]); i++) {
        snprintf(frame, sizeof(frame), "42[\"history\",{\"room\":\"r\",\"before\":%s}]",
                 bad_before[i]);
        assert_bad(frame);
    }
}

static void
test_out_of_memory(void **state)
{
    (void)state;
    sio_packet p;
    const char *msg;
    sio_request req;

    fail_after = 0;
    assert_int_equal(parse("425[\"join\",{\"room\":\"r\"}]", &p), SIO_PKT_EVENT);
    fail_after = -1;
    assert_int_equal(p.err, SIO_E_UNAVAILABLE);
    assert_true(p.has_ack);
    assert_int_equal(sio_request_parse(&p, "alice", 5, &req, &msg), SIO_E_UNAVAILABLE);
    sio_packet_free(&p);

    fail_after = 0;
    assert_int_equal(parse("40{\"user\":\"alice\"}", &p), SIO_PKT_CONNECT_ERROR);
    fail_after = -1;
    assert_string_equal(p.message, "unavailable");
    sio_packet_free(&p);

    /* Failing at every later allocation never leaks. */
    for (long n = 1; n < 40; n++) {
        fail_after = n;
        parse("425[\"message\",{\"room\":\"r\",\"id\":\"1\",\"text\":\"t\",\"x\":[1,{\"a\":2}]}]",
              &p);
        fail_after = -1;
        sio_packet_free(&p);
    }
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(sio_error_code(SIO_OK), "ok");
    assert_string_equal(sio_error_code(SIO_E_BAD_REQUEST), "bad_request");
    assert_string_equal(sio_error_code(SIO_E_TOO_LARGE), "too_large");
    assert_string_equal(sio_error_code(SIO_E_FORBIDDEN), "forbidden");
    assert_string_equal(sio_error_code(SIO_E_NOT_MEMBER), "not_member");
    assert_string_equal(sio_error_code(SIO_E_RATE_LIMITED), "rate_limited");
    assert_string_equal(sio_error_code(SIO_E_UNAVAILABLE), "unavailable");
    /* The enum follows the protocol's order of checks. */
    assert_true(SIO_E_BAD_REQUEST < SIO_E_TOO_LARGE && SIO_E_TOO_LARGE < SIO_E_FORBIDDEN &&
                SIO_E_FORBIDDEN < SIO_E_NOT_MEMBER && SIO_E_NOT_MEMBER < SIO_E_RATE_LIMITED &&
                SIO_E_RATE_LIMITED < SIO_E_UNAVAILABLE);
    assert_string_equal(sio_event_name(SIO_EV_JOIN), "join");
    assert_string_equal(sio_event_name(SIO_EV_MESSAGE), "message");
    assert_string_equal(sio_event_name(SIO_EV_HISTORY), "history");
    assert_string_equal(sio_event_name(SIO_EV_NONE), "");
    assert_string_equal(sio_event_name((sio_event)99), "");
}

/* ---- encoders ------------------------------------------------------------------------ */

static void
test_encode_engineio(void **state)
{
    (void)state;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    assert_int_equal(sio_encode_open(&b, "AbC-12_x", 8, 25000, 20000, 1000000), PROTO_OK);
    assert_buf(&b, "0{\"sid\":\"AbC-12_x\",\"upgrades\":[],\"pingInterval\":25000,"
                   "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    assert_int_equal(sio_encode_ping(&b), PROTO_OK);
    assert_buf(&b, "2");
    assert_int_equal(sio_encode_pong(&b, "probe", 5), PROTO_OK);
    assert_buf(&b, "3probe");
    assert_int_equal(sio_encode_pong(&b, "", 0), PROTO_OK);
    assert_buf(&b, "3");
    assert_int_equal(sio_encode_pong(&b, "\xff", 1), PROTO_E_UTF8);
    assert_int_equal(b.len, 0);
    proto_mp_buf_free(&b);
}

static void
test_encode_connect(void **state)
{
    (void)state;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    assert_int_equal(sio_encode_connect(&b, "s1d", 3), PROTO_OK);
    assert_buf(&b, "40{\"sid\":\"s1d\"}");
    assert_int_equal(sio_encode_connect_error(&b, "/", 1, "invalid user"), PROTO_OK);
    assert_buf(&b, "44{\"message\":\"invalid user\"}");
    assert_int_equal(sio_encode_connect_error(&b, "/admin", 6, "Invalid namespace"),
                     PROTO_OK);
    assert_buf(&b, "44/admin,{\"message\":\"Invalid namespace\"}");
    assert_int_equal(sio_encode_connect_error(&b, "", 0, "x"), PROTO_E_SYNTAX);
    assert_int_equal(sio_encode_connect_error(&b, "admin", 5, "x"), PROTO_E_SYNTAX);
    assert_int_equal(sio_encode_connect_error(&b, "/a,b", 4, "x"), PROTO_E_SYNTAX);
    assert_int_equal(sio_encode_connect_error(&b, "/a\xff", 3, "x"), PROTO_E_UTF8);
    assert_int_equal(b.len, 0);
    assert_int_equal(sio_encode_connect_refused(&b, "invalid token", "expired"), PROTO_OK);
    assert_buf(&b, "44{\"message\":\"invalid token\",\"data\":{\"reason\":\"expired\"}}");
    assert_int_equal(sio_encode_token_expired(&b, "expired"), PROTO_OK);
    assert_buf(&b, "42[\"token_expired\",{\"reason\":\"expired\"}]");
    assert_int_equal(sio_encode_disconnect(&b), PROTO_OK);
    assert_buf(&b, "41");
    proto_mp_buf_free(&b);
}

static void
test_encode_acks(void **state)
{
    (void)state;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);

    assert_int_equal(sio_encode_ack_ok(&b, 5, NULL), PROTO_OK);
    assert_buf(&b, "435[{\"ok\":true}]");
    assert_int_equal(sio_encode_ack_ok(&b, SIO_ACK_ID_MAX, NULL), PROTO_OK);
    assert_buf(&b, "439007199254740991[{\"ok\":true}]");

    json_t *f = json_pack("{s:s, s:I, s:[], s:b}", "room", "lobby", "seq", (json_int_t)3,
                          "missed", "more", 0);
    assert_non_null(f);
    assert_int_equal(sio_encode_ack_ok(&b, 0, f), PROTO_OK);
    assert_buf(&b, "430[{\"ok\":true,\"room\":\"lobby\",\"seq\":3,\"missed\":[],\"more\":false}]");
    json_decref(f);

    /* Nested values, escaping, a stray "ok" member skipped. */
    f = json_pack("{s:b, s:[{s:s, s:I}], s:s, s:[s,s]}", "ok", 0,
                  "messages", "text", "a\"b\\c\n\x01\xc3\xa9", "seq", (json_int_t)1,
                  "k\"ey", "v", "users", "alice", "bob");
    assert_non_null(f);
    assert_int_equal(sio_encode_ack_ok(&b, 12, f), PROTO_OK);
    assert_buf(&b, "4312[{\"ok\":true,\"messages\":[{\"text\":\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\","
                   "\"seq\":1}],\"k\\\"ey\":\"v\",\"users\":[\"alice\",\"bob\"]}]");
    json_decref(f);

    f = json_array();
    assert_int_equal(sio_encode_ack_ok(&b, 1, f), PROTO_E_TYPE);
    assert_int_equal(b.len, 0);
    json_decref(f);

    assert_int_equal(sio_encode_ack_error(&b, 1, SIO_E_BAD_REQUEST, "unknown event"), PROTO_OK);
    assert_buf(&b, "431[{\"ok\":false,\"error\":{\"code\":\"bad_request\","
                   "\"message\":\"unknown event\"}}]");
    static const struct { sio_error e; const char *code; } codes[] = {
        {SIO_E_TOO_LARGE, "too_large"}, {SIO_E_FORBIDDEN, "forbidden"},
        {SIO_E_NOT_MEMBER, "not_member"}, {SIO_E_RATE_LIMITED, "rate_limited"},
        {SIO_E_UNAVAILABLE, "unavailable"},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char expect[160];
        snprintf(expect, sizeof(expect),
                 "4377[{\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"m \\\"q\\\"\"}}]",
                 codes[i].code);
        assert_int_equal(sio_encode_ack_error(&b, 77, codes[i].e, "m \"q\""), PROTO_OK);
        assert_buf(&b, expect);
    }
    assert_int_equal(sio_encode_ack_error(&b, 1, SIO_OK, "x"), PROTO_E_RANGE);
    assert_int_equal(sio_encode_ack_error(&b, 1, (sio_error)42, "x"), PROTO_E_RANGE);
    assert_int_equal(b.len, 0);
    proto_mp_buf_free(&b);
}

static void
test_encode_server_events(void **state)
{
    (void)state;
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    sio_message m = {
        .room = "lobby", .room_len = 5, .seq = 42, .id = "m1", .id_len = 2,
        .user = "alice", .user_len = 5, .text = "hi", .text_len = 2, .ts = 1700000000123,
    };
    assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);
    assert_buf(&b, "42[\"message\",{\"room\":\"lobby\",\"seq\":42,\"id\":\"m1\",\"user\":\"alice\","
                   "\"text\":\"hi\",\"ts\":1700000000123}]");

    /* Escaping: quote, backslash, named and numeric control escapes, DEL and
     * non-ASCII pass through, an id with a quote. */
    m.id = "a\"b";
    m.id_len = 3;
    m.text = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xf0\x9f\x98\x80";
    m.text_len = strlen(m.text);
    assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);
    assert_buf(&b, "42[\"message\",{\"room\":\"lobby\",\"seq\":42,\"id\":\"a\\\"b\","
                   "\"user\":\"alice\",\"text\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f"
                   "\x7f\xc3\xa9\xf0\x9f\x98\x80\",\"ts\":1700000000123}]");

    /* A NUL byte inside a length-given string is escaped too. */
    m.text = "a\0b";
    m.text_len = 3;
    assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);
    assert_non_null(memmem(b.data, b.len, "\"a\\u0000b\"", 10));
    proto_mp_buf_reset(&b);

    /* Invalid UTF-8 (and CESU-encoded surrogates) append nothing. */
    assert_int_equal(sio_encode_ping(&b), PROTO_OK);
    m.text = "\xed\xa0\x80";
    m.text_len = 3;
    assert_int_equal(sio_encode_message(&b, &m), PROTO_E_UTF8);
    m.text = "ok\xc3";
    assert_int_equal(sio_encode_message(&b, &m), PROTO_E_UTF8);
    assert_buf(&b, "2");

    assert_int_equal(sio_encode_typing(&b, "dm:alice:bob", 12, "bob", 3), PROTO_OK);
    assert_buf(&b, "42[\"typing\",{\"room\":\"dm:alice:bob\",\"user\":\"bob\"}]");

    m.seq = UINT64_MAX;
    m.ts = INT64_MIN;
    m.text = "x";
    m.text_len = 1;
    m.id = "i";
    m.id_len = 1;
    assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);
    assert_buf(&b, "42[\"message\",{\"room\":\"lobby\",\"seq\":18446744073709551615,\"id\":\"i\","
                   "\"user\":\"alice\",\"text\":\"x\",\"ts\":-9223372036854775808}]");
    proto_mp_buf_free(&b);
}

/* Every byte string the encoder writes decodes back to what went in. */
static void
test_encode_roundtrip(void **state)
{
    (void)state;
    char text[256];
    for (int i = 0; i < 127; i++)
        text[i] = (char)(i + 1);
    memcpy(text + 127, "\xc3\xa9\xe2\x80\xa8\xf4\x8f\xbf\xbf", 9);
    size_t tlen = 136;

    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    sio_message m = {.room = "r", .room_len = 1, .seq = 1, .id = text + 31, .id_len = 95,
                     .user = "u", .user_len = 1, .text = text, .text_len = tlen, .ts = 1};
    assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);

    sio_packet p;
    assert_int_equal(sio_parse((const char *)b.data, b.len, &p), SIO_PKT_EVENT);
    assert_int_equal(p.err, SIO_OK);
    assert_string_equal(p.event, "message");
    json_t *t = json_object_get(p.args, "text");
    assert_int_equal(json_string_length(t), tlen);
    assert_memory_equal(json_string_value(t), text, tlen);
    json_t *id = json_object_get(p.args, "id");
    assert_int_equal(json_string_length(id), 95);
    assert_memory_equal(json_string_value(id), text + 31, 95);
    sio_packet_free(&p);
    proto_mp_buf_free(&b);
}

static void
test_buffers(void **state)
{
    (void)state;
    char mem[16];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    const char *sid = "0123456789";
    /* 40{"sid":"0123456789"} is 22 bytes: does not fit, nothing written. */
    assert_int_equal(sio_encode_connect(&b, sid, 10), PROTO_E_NOSPACE);
    assert_int_equal(b.len, 0);
    /* Packets append; a failing one leaves earlier ones intact. */
    assert_int_equal(sio_encode_ping(&b), PROTO_OK);
    assert_int_equal(sio_encode_connect(&b, sid, 3), PROTO_OK);   /* 15 bytes */
    assert_int_equal(b.len, 16);
    assert_memory_equal(mem, "240{\"sid\":\"012\"}", 16);
    assert_int_equal(sio_encode_ping(&b), PROTO_E_NOSPACE);
    assert_int_equal(b.len, 16);
    proto_mp_buf_free(&b);                   /* fixed: only reset */
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, mem);

    /* Exactly fitting. */
    proto_mp_buf_fixed(&b, mem, 1);
    assert_int_equal(sio_encode_ping(&b), PROTO_OK);
    assert_int_equal(b.len, 1);
    proto_mp_buf_fixed(&b, mem, 0);
    assert_int_equal(sio_encode_ping(&b), PROTO_E_NOSPACE);

    /* Growing past its first allocation. */
    proto_mp_buf_growing(&b);
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'x', 10000);
    sio_message m = {.room = "r", .room_len = 1, .seq = 1, .id = "i", .id_len = 1,
                     .user = "u", .user_len = 1, .text = big, .text_len = 10000, .ts = 0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sio_encode_message(&b, &m), PROTO_OK);
    assert_true(b.len > 30000);
    assert_true(b.cap >= b.len);
    free(big);
    proto_mp_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

int
main(void)
{
    json_set_alloc_funcs(count_malloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eio_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_invalid_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_other_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_acks_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_id_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_keeps_ack_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_typing_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forbidden_dm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_engineio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_server_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_text_not_in_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
