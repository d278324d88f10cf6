/* Tests for proto/utf8.{h,c}: RFC 3629 validation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proto/utf8.h"
#include "tests/proto/leakcheck.h"

#define VALID(lit) assert_true(proto_utf8_valid(lit, sizeof(lit) - 1))
#define INVALID(lit) assert_false(proto_utf8_valid(lit, sizeof(lit) - 1))

static void
test_valid(void **state)
{
    (void)state;
    assert_true(proto_utf8_valid("", 0));
    assert_true(proto_utf8_valid(NULL, 0));
    VALID("hello");
    VALID("\0");                    /* U+0000 is a scalar value */
    VALID("\x7f");
    VALID("\xc2\x80");              /* U+0080, first 2-byte */
    VALID("\xdf\xbf");              /* U+07FF */
    VALID("\xe0\xa0\x80");          /* U+0800, first 3-byte */
    VALID("\xed\x9f\xbf");          /* U+D7FF, last before the surrogates */
    VALID("\xee\x80\x80");          /* U+E000, first after */
    VALID("\xef\xbf\xbf");          /* U+FFFF */
    VALID("\xef\xbb\xbf");          /* BOM */
    VALID("\xf0\x90\x80\x80");      /* U+10000, first 4-byte */
    VALID("\xf4\x8f\xbf\xbf");      /* U+10FFFF, the last */
    VALID("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z");
}

static void
test_overlong(void **state)
{
    (void)state;
    INVALID("\xc0\x80");            /* NUL in 2 bytes */
    INVALID("\xc0\xaf");            /* '/' */
    INVALID("\xc1\xbf");
    INVALID("\xe0\x80\x80");
    INVALID("\xe0\x9f\xbf");        /* U+07FF in 3 bytes */
    INVALID("\xf0\x80\x80\x80");
    INVALID("\xf0\x8f\xbf\xbf");    /* U+FFFF in 4 bytes */
    INVALID("\xf8\x88\x80\x80\x80"); /* 5-byte forms */
    INVALID("\xfc\x84\x80\x80\x80\x80");
}

static void
test_surrogates(void **state)
{
    (void)state;
    INVALID("\xed\xa0\x80");        /* U+D800 */
    INVALID("\xed\xad\xbf");        /* U+DB7F */
    INVALID("\xed\xb0\x80");        /* U+DC00 */
    INVALID("\xed\xbf\xbf");        /* U+DFFF */
    INVALID("\xed\xa0\xbd\xed\xb8\x80"); /* a CESU-8 pair */
}

static void
test_above_max(void **state)
{
    (void)state;
    INVALID("\xf4\x90\x80\x80");    /* U+110000 */
    INVALID("\xf4\xbf\xbf\xbf");
    INVALID("\xf5\x80\x80\x80");
    INVALID("\xf7\xbf\xbf\xbf");
    INVALID("\xfe");
    INVALID("\xff");
}

static void
test_truncated(void **state)
{
    (void)state;
    const char *seqs[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
    for (size_t s = 0; s < 3; s++) {
        size_t n = strlen(seqs[s]);
        for (size_t k = 1; k < n; k++) {
            assert_false(proto_utf8_valid(seqs[s], k));
            char buf[8] = "x";
            memcpy(buf + 1, seqs[s], k);   /* truncated, then more text */
            buf[1 + k] = 'y';
            assert_false(proto_utf8_valid(buf, k + 2));
        }
        assert_true(proto_utf8_valid(seqs[s], n));
    }
    INVALID("\xe2\x82" "a");        /* second continuation is ASCII */
    INVALID("\xf0\x9f\x98" "\xc3\xa9");
}

static void
test_lone_continuation(void **state)
{
    (void)state;
    INVALID("\x80");
    INVALID("\xbf");
    INVALID("a\x80" "b");
    INVALID("\xc3\xa9\xa9");        /* one continuation too many */
    /* every byte 0x80..0xBF alone */
    for (int c = 0x80; c <= 0xbf; c++) {
        char b = (char)c;
        assert_false(proto_utf8_valid(&b, 1));
    }
}

static void
test_every_lead_byte(void **state)
{
    (void)state;
    /* each lead byte followed by enough 0x80 continuations: valid exactly for
     * the leads that are not overlong/surrogate/out of range with 0x80 next */
    for (int c = 0; c <= 0xff; c++) {
        char buf[4] = { (char)c, (char)0x80, (char)0x80, (char)0x80 };
        size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        bool want = c < 0x80 || (c >= 0xc2 && c <= 0xdf) ||
                    (c >= 0xe1 && c <= 0xef) || (c >= 0xf1 && c <= 0xf4);
        if (proto_utf8_valid(buf, n) != want)
            fail_msg("lead byte 0x%02x", c);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LEAK_TEST(test_valid),
        LEAK_TEST(test_overlong),
        LEAK_TEST(test_surrogates),
        LEAK_TEST(test_above_max),
        LEAK_TEST(test_truncated),
        LEAK_TEST(test_lone_continuation),
        LEAK_TEST(test_every_lead_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
