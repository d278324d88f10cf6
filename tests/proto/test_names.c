/* Tests for proto/names.{h,c}: every rule of the client contract's names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proto/names.h"
#include "tests/proto/leakcheck.h"

#define S(lit) lit, sizeof(lit) - 1

static void
test_user(void **state)
{
    (void)state;
    char buf[PROTO_USER_MAX + 1];
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(proto_check_user(S("alice")), PROTO_OK);
    assert_int_equal(proto_check_user(S("A-z_0.9")), PROTO_OK);
    assert_int_equal(proto_check_user(S("a")), PROTO_OK);
    assert_int_equal(proto_check_user(buf, PROTO_USER_MAX), PROTO_OK);
    assert_int_equal(proto_check_user(buf, PROTO_USER_MAX + 1), PROTO_E_TOO_LONG);
    assert_int_equal(proto_check_user(S("")), PROTO_E_EMPTY);
    /* every byte outside [A-Za-z0-9_.-] */
    for (int c = 0; c < 256; c++) {
        char u[3] = { 'a', (char)c, 'b' };
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        assert_int_equal(proto_check_user(u, 3), ok ? PROTO_OK : PROTO_E_SYNTAX);
    }
}

static void
test_room(void **state)
{
    (void)state;
    char buf[PROTO_ROOM_MAX + 1];
    memset(buf, 'r', sizeof(buf));
    assert_int_equal(proto_check_room(S("lobby")), PROTO_OK);
    assert_int_equal(proto_check_room(S("a:b:c")), PROTO_OK);
    assert_int_equal(proto_check_room(S(":")), PROTO_OK);
    assert_int_equal(proto_check_room(S("d")), PROTO_OK);
    assert_int_equal(proto_check_room(S("dm")), PROTO_OK);
    assert_int_equal(proto_check_room(S("dmx:a:b")), PROTO_OK);
    assert_int_equal(proto_check_room(S("DM:b:a")), PROTO_OK);  /* bytewise prefix */
    assert_int_equal(proto_check_room(buf, PROTO_ROOM_MAX), PROTO_OK);
    assert_int_equal(proto_check_room(buf, PROTO_ROOM_MAX + 1), PROTO_E_TOO_LONG);
    assert_int_equal(proto_check_room(S("")), PROTO_E_EMPTY);
    for (int c = 0; c < 256; c++) {
        char r[3] = { 'a', (char)c, 'b' };
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' || c == ':';
        assert_int_equal(proto_check_room(r, 3), ok ? PROTO_OK : PROTO_E_SYNTAX);
    }
}

static void
test_dm_room(void **state)
{
    (void)state;
    assert_int_equal(proto_check_room(S("dm:alice:bob")), PROTO_OK);
    assert_int_equal(proto_check_room(S("dm:a:b")), PROTO_OK);
    assert_int_equal(proto_check_room(S("dm:A:a")), PROTO_OK);      /* 'A' < 'a' */
    assert_int_equal(proto_check_room(S("dm:ab:abc")), PROTO_OK);   /* prefix sorts first */
    assert_int_equal(proto_check_room(S("dm:abc:ab")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:bob:alice")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:a:A")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:bob:bob")), PROTO_E_SYNTAX);   /* A == B */
    assert_int_equal(proto_check_room(S("dm:")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:alice")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm::bob")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:alice:")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:a:b:c")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:a b:c")), PROTO_E_SYNTAX);
    assert_int_equal(proto_check_room(S("dm:a:b\xc3\xa9")), PROTO_E_SYNTAX);

    /* longest: 3 + 32 + 1 + 32 = 68 bytes, over the plain room limit */
    char buf[80];
    memcpy(buf, "dm:", 3);
    memset(buf + 3, 'a', 32);
    buf[35] = ':';
    memset(buf + 36, 'b', 33);
    assert_int_equal(proto_check_room(buf, 68), PROTO_OK);
    assert_int_equal(proto_check_room(buf, 69), PROTO_E_TOO_LONG);   /* B of 33 */
    memset(buf + 3, 'a', 33);                                        /* A of 33 */
    buf[36] = ':';
    memset(buf + 37, 'b', 31);
    assert_int_equal(proto_check_room(buf, 68), PROTO_E_SYNTAX);

    assert_true(proto_room_is_dm(S("dm:a:b")));
    assert_true(proto_room_is_dm(S("dm:")));
    assert_false(proto_room_is_dm(S("dm")));
    assert_false(proto_room_is_dm(S("lobby")));
    assert_false(proto_room_is_dm(S("Dm:a:b")));
}

static void
test_room_allows(void **state)
{
    (void)state;
    assert_true(proto_room_allows(S("lobby"), S("anyone")));
    assert_true(proto_room_allows(S("dm:alice:bob"), S("alice")));
    assert_true(proto_room_allows(S("dm:alice:bob"), S("bob")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("carol")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("alic")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("alicex")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("bo")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("bobb")));
    assert_false(proto_room_allows(S("dm:alice:bob"), S("alice:bob")));
}

static void
test_msgid(void **state)
{
    (void)state;
    char buf[PROTO_MSGID_MAX + 1];
    memset(buf, '~', sizeof(buf));
    assert_int_equal(proto_check_msgid(S("m-1")), PROTO_OK);
    assert_int_equal(proto_check_msgid(S(" ")), PROTO_OK);
    assert_int_equal(proto_check_msgid(S("a b!\"#{}~")), PROTO_OK);
    assert_int_equal(proto_check_msgid(buf, PROTO_MSGID_MAX), PROTO_OK);
    assert_int_equal(proto_check_msgid(buf, PROTO_MSGID_MAX + 1), PROTO_E_TOO_LONG);
    assert_int_equal(proto_check_msgid(S("")), PROTO_E_EMPTY);
    for (int c = 0; c < 256; c++) {
        char id[1] = { (char)c };
        bool ok = c >= 0x20 && c <= 0x7e;
        assert_int_equal(proto_check_msgid(id, 1), ok ? PROTO_OK : PROTO_E_SYNTAX);
    }
}

static void
test_text(void **state)
{
    (void)state;
    static char buf[PROTO_TEXT_MAX + 1];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(proto_check_text(S("hi")), PROTO_OK);
    assert_int_equal(proto_check_text(S("\0")), PROTO_OK);
    assert_int_equal(proto_check_text(S("\xe2\x82\xac")), PROTO_OK);
    assert_int_equal(proto_check_text(buf, PROTO_TEXT_MAX), PROTO_OK);
    assert_int_equal(proto_check_text(buf, PROTO_TEXT_MAX + 1), PROTO_E_TOO_LONG);
    assert_int_equal(proto_check_text(S("")), PROTO_E_EMPTY);
    assert_int_equal(proto_check_text(S("\xed\xa0\x80")), PROTO_E_UTF8);
    assert_int_equal(proto_check_text(S("ok\xc3")), PROTO_E_UTF8);
    /* a multibyte character ending exactly at the limit */
    memcpy(buf + PROTO_TEXT_MAX - 3, "\xe2\x82\xac", 3);
    assert_int_equal(proto_check_text(buf, PROTO_TEXT_MAX), PROTO_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LEAK_TEST(test_user),
        LEAK_TEST(test_room),
        LEAK_TEST(test_dm_room),
        LEAK_TEST(test_room_allows),
        LEAK_TEST(test_msgid),
        LEAK_TEST(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
