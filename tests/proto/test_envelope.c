/* Tests for proto/envelope.{h,c}: round trips and every malformed envelope. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/envelope.h"
#include "proto/mp.h"
#include "tests/proto/leakcheck.h"

static bool
env_zero(const proto_env *e)
{
    return e->type == 0 && e->from == 0 && e->to == 0 && e->corr == 0 &&
           e->payload == NULL && e->payload_len == 0;
}

static void
round_trip(const proto_env *in)
{
    size_t cap = PROTO_ENV_OVERHEAD + in->payload_len, len = 0;
    uint8_t *buf = malloc(cap);
    assert_int_equal(proto_env_encode(in, buf, cap, &len), PROTO_OK);
    assert_true(len <= cap);
    proto_env out;
    assert_int_equal(proto_env_decode(buf, len, &out), PROTO_OK);
    assert_int_equal(out.type, in->type);
    assert_int_equal(out.from, in->from);
    assert_int_equal(out.to, in->to);
    assert_int_equal(out.corr, in->corr);
    assert_int_equal(out.payload_len, in->payload_len);
    if (in->payload_len) {
        assert_memory_equal(out.payload, in->payload, in->payload_len);
        /* the payload points into the buffer, it is not a copy */
        assert_true(out.payload > buf && out.payload + out.payload_len == buf + len);
    }
    free(buf);
}

static void
test_round_trip(void **state)
{
    (void)state;
    static const uint8_t pl[] = { 0x81, 0xa1, 'a', 0x01 };
    proto_env e = { 100, 1, 2, 3, pl, sizeof(pl) };
    round_trip(&e);

    proto_env zero = {0};                               /* empty payload, NULL */
    round_trip(&zero);
    proto_env empty = { 7, 0, 0, 0, pl, 0 };            /* empty payload, non-NULL */
    round_trip(&empty);
    proto_env max = { UINT32_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, pl, sizeof(pl) };
    round_trip(&max);

    /* large payloads: 64 KiB + 1 (bin32) and exactly the limit */
    size_t sizes[] = { 255, 256, 65535, 65536, 65537, PROTO_ENV_PAYLOAD_MAX };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *big = malloc(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            big[k] = (uint8_t)(k * 7);
        proto_env b = { 101, 9, 8, 7, big, sizes[i] };
        round_trip(&b);
        free(big);
    }
}

static void
test_encode_errors(void **state)
{
    (void)state;
    static const uint8_t pl[40] = { 1 };
    proto_env e = { UINT32_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, pl, sizeof(pl) };
    uint8_t buf[PROTO_ENV_OVERHEAD + sizeof(pl)];
    size_t need = 0, len;
    assert_int_equal(proto_env_encode(&e, buf, sizeof(buf), &need), PROTO_OK);
    for (size_t cap = 0; cap < need; cap++) {
        len = 12345;
        assert_int_equal(proto_env_encode(&e, buf, cap, &len), PROTO_E_NOSPACE);
        assert_int_equal(len, 12345);
    }
    assert_int_equal(proto_env_encode(&e, buf, need, &len), PROTO_OK);
    assert_int_equal(len, need);
    assert_int_equal(proto_env_encode(&e, NULL, 0, &len), PROTO_E_NOSPACE);

    e.payload_len = PROTO_ENV_PAYLOAD_MAX + 1;   /* refused before it is read */
    assert_int_equal(proto_env_encode(&e, buf, sizeof(buf), &len), PROTO_E_TOO_LONG);
}

/* ---- hand-built envelopes ---- */

enum { T_UINT, T_INT, T_STR, T_NIL, T_BOOL, T_FLOAT, T_BIN, T_MAP, T_ARR, T_EXT };

typedef struct item {
    int t;
    uint64_t u;
    int64_t i;
} item;

static proto_mp_buf
build(const item *items, size_t n)
{
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_array(&pk, n);
    for (size_t k = 0; k < n; k++) {
        switch (items[k].t) {
        case T_UINT:  msgpack_pack_uint64(&pk, items[k].u); break;
        case T_INT:   msgpack_pack_int64(&pk, items[k].i); break;
        case T_STR:   proto_mp_pack_str(&pk, "x", 1); break;
        case T_NIL:   msgpack_pack_nil(&pk); break;
        case T_BOOL:  msgpack_pack_true(&pk); break;
        case T_FLOAT: msgpack_pack_float(&pk, 1.0f); break;
        case T_BIN:   msgpack_pack_bin(&pk, 2); msgpack_pack_bin_body(&pk, "\x01\x02", 2); break;
        case T_MAP:   msgpack_pack_map(&pk, 0); break;
        case T_ARR:   msgpack_pack_array(&pk, 0); break;
        case T_EXT:   msgpack_pack_ext(&pk, 1, 1); msgpack_pack_ext_body(&pk, "z", 1); break;
        }
    }
    assert_false(b.failed);
    return b;
}

static proto_err
decode_items(const item *items, size_t n)
{
    proto_mp_buf b = build(items, n);
    proto_env e;
    memset(&e, 0xA5, sizeof(e));
    proto_err err = proto_env_decode(b.data, b.len, &e);
    if (err != PROTO_OK)
        assert_true(env_zero(&e));
    proto_mp_buf_free(&b);
    return err;
}

static void
valid_items(item it[7])
{
    it[0] = (item){ T_UINT, PROTO_ENV_VERSION };
    it[1] = (item){ T_UINT, 100 };
    it[2] = (item){ T_UINT, 1 };
    it[3] = (item){ T_UINT, 2 };
    it[4] = (item){ T_UINT, 3 };
    it[5] = (item){ T_BIN };
    it[6] = (item){ T_NIL };
}

static void
test_decode_shape(void **state)
{
    (void)state;
    item it[7];
    valid_items(it);
    assert_int_equal(decode_items(it, 6), PROTO_OK);
    assert_int_equal(decode_items(it, 7), PROTO_E_UNKNOWN);
    for (size_t n = 0; n < 6; n++)
        assert_int_equal(decode_items(it, n), PROTO_E_MISSING);

    /* not an array */
    static const uint8_t map[] = { 0x80 }, num[] = { 0x01 }, str[] = { 0xa1, 'x' };
    const uint8_t *docs[] = { map, num, str };
    size_t lens[] = { 1, 1, 2 };
    for (int k = 0; k < 3; k++) {
        proto_env e;
        memset(&e, 0xA5, sizeof(e));
        assert_int_equal(proto_env_decode(docs[k], lens[k], &e), PROTO_E_TYPE);
        assert_true(env_zero(&e));
    }
}

static void
test_decode_types(void **state)
{
    (void)state;
    item it[7];
    static const int wrong_int[] = { T_STR, T_NIL, T_BOOL, T_FLOAT, T_BIN, T_MAP, T_ARR, T_EXT };
    static const int wrong_bin[] = { T_UINT, T_STR, T_NIL, T_BOOL, T_FLOAT, T_MAP, T_ARR, T_EXT };
    for (int f = 0; f < 6; f++) {
        const int *wrong = f < 5 ? wrong_int : wrong_bin;
        for (int w = 0; w < 8; w++) {
            valid_items(it);
            it[f] = (item){ wrong[w] };
            if (decode_items(it, 6) != PROTO_E_TYPE)
                fail_msg("field %d, wrong type %d", f, wrong[w]);
        }
    }
    /* negative integers are a wrong type for every integer field */
    for (int f = 0; f < 5; f++) {
        valid_items(it);
        it[f] = (item){ T_INT, 0, -1 };
        assert_int_equal(decode_items(it, 6), PROTO_E_TYPE);
        it[f] = (item){ T_INT, 0, INT64_MIN };
        assert_int_equal(decode_items(it, 6), PROTO_E_TYPE);
    }
    /* non-negative values packed as signed ints are accepted */
    valid_items(it);
    it[1] = (item){ T_INT, 0, 100 };
    assert_int_equal(decode_items(it, 6), PROTO_OK);
}

static void
test_decode_ranges(void **state)
{
    (void)state;
    item it[7];
    valid_items(it);
    it[0].u = 0;
    assert_int_equal(decode_items(it, 6), PROTO_E_VERSION);
    it[0].u = PROTO_ENV_VERSION + 1;
    assert_int_equal(decode_items(it, 6), PROTO_E_VERSION);
    it[0].u = UINT64_MAX;
    assert_int_equal(decode_items(it, 6), PROTO_E_RANGE);
    valid_items(it);
    it[1].u = UINT32_MAX;
    assert_int_equal(decode_items(it, 6), PROTO_OK);
    it[1].u = (uint64_t)UINT32_MAX + 1;
    assert_int_equal(decode_items(it, 6), PROTO_E_RANGE);
    valid_items(it);
    it[2].u = it[3].u = it[4].u = UINT64_MAX;
    assert_int_equal(decode_items(it, 6), PROTO_OK);
}

static void
test_decode_truncated_trailing(void **state)
{
    (void)state;
    static const uint8_t pl[] = "payload";
    proto_env e = { 100, 1000, 70000, 5000000000ull, pl, sizeof(pl) };
    uint8_t buf[PROTO_ENV_OVERHEAD + sizeof(pl) + 1];
    size_t len;
    assert_int_equal(proto_env_encode(&e, buf, sizeof(buf), &len), PROTO_OK);
    for (size_t n = 0; n < len; n++) {
        proto_env out;
        memset(&out, 0xA5, sizeof(out));
        assert_int_equal(proto_env_decode(buf, n, &out), PROTO_E_MALFORMED);
        assert_true(env_zero(&out));
    }
    buf[len] = 0x00;
    proto_env out;
    assert_int_equal(proto_env_decode(buf, len + 1, &out), PROTO_E_TRAILING);
    assert_true(env_zero(&out));
    assert_int_equal(proto_env_decode(NULL, 0, &out), PROTO_E_MALFORMED);
}

static void
test_decode_payload_limit(void **state)
{
    (void)state;
    /* [1, 1, 0, 0, 0, bin32 of PROTO_ENV_PAYLOAD_MAX + 1] */
    size_t n = PROTO_ENV_PAYLOAD_MAX + 1;
    uint8_t *buf = calloc(1, n + 16);
    size_t len = 0;
    buf[len++] = 0x96;
    buf[len++] = 1;
    buf[len++] = 1;
    buf[len++] = 0;
    buf[len++] = 0;
    buf[len++] = 0;
    buf[len++] = 0xc6;
    buf[len++] = (uint8_t)(n >> 24);
    buf[len++] = (uint8_t)(n >> 16);
    buf[len++] = (uint8_t)(n >> 8);
    buf[len++] = (uint8_t)n;
    proto_env e;
    assert_int_equal(proto_env_decode(buf, len + n, &e), PROTO_E_TOO_LONG);
    assert_true(env_zero(&e));
    /* a bin32 that declares more than is there */
    assert_int_equal(proto_env_decode(buf, len + 100, &e), PROTO_E_MALFORMED);
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LEAK_TEST(test_round_trip),
        LEAK_TEST(test_encode_errors),
        LEAK_TEST(test_decode_shape),
        LEAK_TEST(test_decode_types),
        LEAK_TEST(test_decode_ranges),
        LEAK_TEST(test_decode_truncated_trailing),
        LEAK_TEST(test_decode_payload_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
