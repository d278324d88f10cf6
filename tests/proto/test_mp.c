/* Tests for proto/mp.{h,c}: output buffers, the strict parse and its precheck
 * against inputs that declare more than they hold. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/mp.h"
#include "tests/proto/leakcheck.h"

static proto_err
parse(const uint8_t *p, size_t n)
{
    proto_mp_doc doc;
    proto_err err = proto_mp_parse(&doc, p, n);
    if (err == PROTO_OK)
        proto_mp_doc_free(&doc);
    return err;
}

#define PARSE(...) ({ static const uint8_t b_[] = { __VA_ARGS__ }; parse(b_, sizeof(b_)); })

static void
test_buffers(void **state)
{
    (void)state;
    uint8_t mem[4];
    proto_mp_buf b;
    msgpack_packer pk;

    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    proto_mp_packer_init(&pk, &b);
    proto_mp_pack_str(&pk, "abc", 3);
    assert_false(b.failed);
    assert_int_equal(b.len, 4);
    assert_memory_equal(mem, "\xa3" "abc", 4);
    msgpack_pack_nil(&pk);
    assert_true(b.failed);
    assert_int_equal(b.len, 4);
    msgpack_pack_nil(&pk);          /* stays failed, writes nothing */
    assert_int_equal(b.len, 4);
    proto_mp_buf_free(&b);          /* does not free the caller's memory */

    proto_mp_buf_growing(&b);
    proto_mp_packer_init(&pk, &b);
    for (int i = 0; i < 10000; i++)
        msgpack_pack_int(&pk, i);
    static char big[100000];
    proto_mp_pack_str(&pk, big, sizeof(big));   /* a write larger than twice the cap */
    assert_false(b.failed);
    uint8_t *out;
    size_t len;
    assert_int_equal(proto_mp_buf_release(&b, &out, &len), PROTO_OK);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_true(len > sizeof(big));
    free(out);

    /* releasing a failed buffer hands nothing over and frees it */
    proto_mp_buf_growing(&b);
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_nil(&pk);
    b.failed = true;
    out = NULL;
    assert_int_equal(proto_mp_buf_release(&b, &out, &len), PROTO_E_NOMEM);
    assert_null(out);
    assert_null(b.data);
}

static void
test_parse_scalars(void **state)
{
    (void)state;
    assert_int_equal(PARSE(0x00), PROTO_OK);
    assert_int_equal(PARSE(0xc0), PROTO_OK);
    assert_int_equal(PARSE(0xff), PROTO_OK);
    assert_int_equal(PARSE(0xcf, 1, 2, 3, 4, 5, 6, 7, 8), PROTO_OK);
    assert_int_equal(PARSE(0xa2, 'h', 'i'), PROTO_OK);
    assert_int_equal(PARSE(0xc4, 0x00), PROTO_OK);
    assert_int_equal(PARSE(0xd4, 0x01, 0x02), PROTO_OK);   /* fixext1 */
    assert_int_equal(PARSE(0xd8, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
                     PROTO_OK);
    assert_int_equal(PARSE(0xc7, 0x02, 0x05, 'a', 'b'), PROTO_OK);
    assert_int_equal(PARSE(0xcb, 0, 0, 0, 0, 0, 0, 0, 0), PROTO_OK);
    assert_int_equal(parse(NULL, 0), PROTO_E_MALFORMED);
    assert_int_equal(PARSE(0xc1), PROTO_E_MALFORMED);       /* never used */
}

static void
test_trailing(void **state)
{
    (void)state;
    assert_int_equal(PARSE(0x01, 0x02), PROTO_E_TRAILING);
    assert_int_equal(PARSE(0x91, 0x01, 0xc0), PROTO_E_TRAILING);
    assert_int_equal(PARSE(0x80, 0x80), PROTO_E_TRAILING);
    assert_int_equal(PARSE(0xa1, 'x', 0xc1), PROTO_E_TRAILING);   /* trailing garbage too */
}

static void
test_truncated(void **state)
{
    (void)state;
    static const uint8_t doc[] = { 0x82, 0xa1, 'a', 0x93, 0x01, 0xcd, 0x01, 0x00, 0xc4, 0x02,
                                   'x', 'y', 0xa1, 'b', 0xd9, 0x03, 'a', 'b', 'c' };
    assert_int_equal(parse(doc, sizeof(doc)), PROTO_OK);
    for (size_t n = 0; n < sizeof(doc); n++)
        assert_int_equal(parse(doc, n), PROTO_E_MALFORMED);
}

/* Each of these declares far more than it holds; msgpack-c alone would try
 * to allocate the declared size first. */
static void
test_huge_declared(void **state)
{
    (void)state;
    clock_t start = clock();
    for (int rep = 0; rep < 1000; rep++) {
        assert_int_equal(PARSE(0xdd, 0xff, 0xff, 0xff, 0xff), PROTO_E_MALFORMED);  /* array32 */
        assert_int_equal(PARSE(0xdf, 0xff, 0xff, 0xff, 0xff), PROTO_E_MALFORMED);  /* map32 */
        assert_int_equal(PARSE(0xdc, 0xff, 0xff, 0x01), PROTO_E_MALFORMED);       /* array16 */
        assert_int_equal(PARSE(0xde, 0x00, 0x02, 0x01, 0x01, 0x01), PROTO_E_MALFORMED);
        assert_int_equal(PARSE(0xdb, 0xff, 0xff, 0xff, 0xff), PROTO_E_MALFORMED);  /* str32 */
        assert_int_equal(PARSE(0xc6, 0xff, 0xff, 0xff, 0xff), PROTO_E_MALFORMED);  /* bin32 */
        assert_int_equal(PARSE(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01), PROTO_E_MALFORMED);
        assert_int_equal(PARSE(0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff), PROTO_E_MALFORMED);
        assert_int_equal(PARSE(0x81, 0xa1, 'k', 0xdf, 0x10, 0x00, 0x00, 0x00), PROTO_E_MALFORMED);
        /* a fixarray of 15 with 14 elements, a fixmap of 2 with 3 values */
        assert_int_equal(PARSE(0x9f, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), PROTO_E_MALFORMED);
        assert_int_equal(PARSE(0x82, 1, 1, 1), PROTO_E_MALFORMED);
    }
    /* 11000 rejections in well under a second: nothing was allocated */
    assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 1.0);

    /* exactly enough bytes is fine */
    assert_int_equal(PARSE(0x93, 1, 2, 3), PROTO_OK);
    assert_int_equal(PARSE(0xdc, 0x00, 0x02, 0x01, 0x02), PROTO_OK);
    assert_int_equal(PARSE(0xdb, 0x00, 0x00, 0x00, 0x01, 'x'), PROTO_OK);
}

/* n nested single-element arrays around a 0. */
static proto_err
nested(size_t n, uint8_t head)
{
    uint8_t *p = malloc(2 * n + 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        p[len++] = head;
        if (head == 0x81)
            p[len++] = 0x00;    /* a map's key */
    }
    p[len++] = 0x00;
    proto_err err = parse(p, len);
    free(p);
    return err;
}

static void
test_depth(void **state)
{
    (void)state;
    assert_int_equal(nested(1, 0x91), PROTO_OK);
    assert_int_equal(nested(PROTO_MP_DEPTH_MAX, 0x91), PROTO_OK);
    assert_int_equal(nested(PROTO_MP_DEPTH_MAX + 1, 0x91), PROTO_E_MALFORMED);
    assert_int_equal(nested(PROTO_MP_DEPTH_MAX, 0x81), PROTO_OK);
    assert_int_equal(nested(PROTO_MP_DEPTH_MAX + 1, 0x81), PROTO_E_MALFORMED);
    assert_int_equal(nested(100000, 0x91), PROTO_E_MALFORMED);
    /* depth is per path, not total: many siblings at depth 2 are fine */
    uint8_t wide[1 + 2 * 15];
    wide[0] = 0x9f;
    for (int i = 0; i < 15; i++) {
        wide[1 + 2 * i] = 0x91;
        wide[2 + 2 * i] = 0x00;
    }
    assert_int_equal(parse(wide, sizeof(wide)), PROTO_OK);
}

static void
test_map_get(void **state)
{
    (void)state;
    /* {"a": 1, 2: 3, "bb": 4, "b": 5} */
    static const uint8_t doc[] = { 0x84, 0xa1, 'a', 0x01, 0x02, 0x03, 0xa2, 'b', 'b', 0x04,
                                   0xa1, 'b', 0x05 };
    proto_mp_doc d;
    assert_int_equal(proto_mp_parse(&d, doc, sizeof(doc)), PROTO_OK);
    const msgpack_object *v = proto_mp_map_get(&d.root, "b");
    assert_non_null(v);
    assert_int_equal(v->via.u64, 5);
    v = proto_mp_map_get(&d.root, "bb");
    assert_non_null(v);
    assert_int_equal(v->via.u64, 4);
    assert_null(proto_mp_map_get(&d.root, "c"));
    assert_null(proto_mp_map_get(&d.root, ""));
    assert_null(proto_mp_map_get(&d.root.via.map.ptr[0].val, "a"));   /* not a map */
    proto_mp_doc_free(&d);
    proto_mp_doc_free(&d);   /* twice is harmless */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LEAK_TEST(test_buffers),
        LEAK_TEST(test_parse_scalars),
        LEAK_TEST(test_trailing),
        LEAK_TEST(test_truncated),
        LEAK_TEST(test_huge_declared),
        LEAK_TEST(test_depth),
        LEAK_TEST(test_map_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
