/* Tests for proto/record.{h,c}: round trips of every record, and every way
 * outside input can be wrong, field by field. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/record.h"
#include "tests/proto/leakcheck.h"

/* ---- building test input ---- */

enum vt { V_STR, V_UINT, V_INT, V_BOOL, V_NIL, V_FLOAT, V_BIN, V_RAW, V_MAP0 };

/* One key/value of a hand-built map. key NULL packs the integer 1 as key. */
typedef struct kv {
    const char *key;
    enum vt t;
    const char *s;      /* V_STR, V_BIN, V_RAW bytes */
    size_t len;
    uint64_t u;
    int64_t i;
} kv;

#define KS(k, str) ((kv){ k, V_STR, str, sizeof(str) - 1 })
#define KSL(k, p, n) ((kv){ k, V_STR, p, n })
#define KU(k, v) ((kv){ k, V_UINT, NULL, 0, v })
#define KI(k, v) ((kv){ k, V_INT, NULL, 0, 0, v })
#define KB(k, v) ((kv){ k, V_BOOL, NULL, 0, v })
#define KN(k) ((kv){ k, V_NIL })
#define KF(k) ((kv){ k, V_FLOAT })
#define KBIN(k, str) ((kv){ k, V_BIN, str, sizeof(str) - 1 })
#define KRAW(k, p, n) ((kv){ k, V_RAW, (const char *)(p), n })
#define KMAP(k) ((kv){ k, V_MAP0 })

static void
pack_kvs(proto_mp_buf *b, const kv *kvs, size_t n)
{
    msgpack_packer pk;
    proto_mp_packer_init(&pk, b);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        const kv *e = &kvs[i];
        if (e->key)
            proto_mp_pack_str(&pk, e->key, strlen(e->key));
        else
            msgpack_pack_int(&pk, 1);
        switch (e->t) {
        case V_STR:   proto_mp_pack_str(&pk, e->s, e->len); break;
        case V_UINT:  msgpack_pack_uint64(&pk, e->u); break;
        case V_INT:   msgpack_pack_int64(&pk, e->i); break;
        case V_BOOL:  if (e->u) msgpack_pack_true(&pk); else msgpack_pack_false(&pk); break;
        case V_NIL:   msgpack_pack_nil(&pk); break;
        case V_FLOAT: msgpack_pack_double(&pk, 1.5); break;
        case V_BIN:   msgpack_pack_bin(&pk, e->len); msgpack_pack_bin_body(&pk, e->s, e->len); break;
        case V_RAW:   msgpack_pack_bin_body(&pk, e->s, e->len); break;  /* raw append */
        case V_MAP0:  msgpack_pack_map(&pk, 0); break;
        }
    }
    assert_false(b->failed);
}

/* A growing buffer that holds the packed kvs; free with proto_mp_buf_free. */
static proto_mp_buf
packed(const kv *kvs, size_t n)
{
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    pack_kvs(&b, kvs, n);
    return b;
}

static bool
all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

/* Decodes data as record kind T with decoder fn, expects err and, on error, a
 * zeroed record. Starts from a record full of garbage to prove the zeroing. */
#define EXPECT_DECODE(T, fn, data, len, err)                                \
    do {                                                                    \
        T rec_;                                                             \
        memset(&rec_, 0xA5, sizeof(rec_));                                  \
        proto_err got_ = fn((data), (len), &rec_);                          \
        if (got_ != (err))                                                  \
            fail_msg("%s: got %s, want %s", #fn, proto_strerror(got_),      \
                     proto_strerror(err));                                  \
        if (got_ != PROTO_OK)                                               \
            assert_true(all_zero(&rec_, sizeof(rec_)));                     \
        else                                                                \
            fn##_free_(&rec_);                                              \
    } while (0)

#define proto_msg_decode_free_ proto_msg_free
#define proto_batch_decode_free_ proto_batch_free
#define proto_ack_decode_free_ proto_ack_free
#define proto_history_req_decode_free_ proto_history_req_free
#define proto_history_reply_decode_free_ proto_history_reply_free
#define proto_join_req_decode_free_ proto_join_req_free
#define proto_join_reply_decode_free_ proto_join_reply_free

#define EXPECT_KVS(T, fn, kvs, n, err)                                      \
    do {                                                                    \
        proto_mp_buf b_ = packed((kvs), (n));                               \
        EXPECT_DECODE(T, fn, b_.data, b_.len, err);                         \
        proto_mp_buf_free(&b_);                                             \
    } while (0)

/* The six fields of a valid message. */
static void
msg_kvs(kv out[6])
{
    out[0] = KS("room", "lobby");
    out[1] = KS("id", "m-1");
    out[2] = KS("user", "alice");
    out[3] = KS("text", "hello");
    out[4] = KU("ts", 1700000000000ull);
    out[5] = KU("seq", 7);
}

static void
make_msg(proto_msg *m, const char *room, const char *user, uint64_t seq)
{
    char id[32], text[64];
    snprintf(id, sizeof(id), "id-%llu", (unsigned long long)seq);
    snprintf(text, sizeof(text), "text %llu \xe2\x82\xac", (unsigned long long)seq);
    assert_int_equal(proto_msg_set(m, room, strlen(room), id, strlen(id), user,
                                   strlen(user), text, strlen(text), 1000 + seq, seq),
                     PROTO_OK);
}

/* ---- message ---- */

static void
msg_round_trip(const proto_msg *m)
{
    proto_mp_buf b;
    proto_mp_buf_growing(&b);
    assert_int_equal(proto_msg_encode(m, &b), PROTO_OK);
    proto_msg back;
    assert_int_equal(proto_msg_decode(b.data, b.len, &back), PROTO_OK);
    assert_true(proto_msg_equal(m, &back));
    assert_int_equal(back.text[back.text_len], '\0');
    assert_int_equal(back.room[back.room_len], '\0');
    proto_msg_free(&back);
    proto_msg_free(&back);   /* twice is fine */
    proto_mp_buf_free(&b);
}

static void
test_msg_round_trip(void **state)
{
    (void)state;
    proto_msg m;
    make_msg(&m, "lobby", "alice", 1);
    msg_round_trip(&m);
    proto_msg_free(&m);

    /* Longest fields, a dm room, NUL and 4-byte UTF-8 in the text, ts/seq at
     * their extremes. */
    char room[PROTO_ROOM_MAX], id[PROTO_MSGID_MAX], user[PROTO_USER_MAX];
    char *text = malloc(PROTO_TEXT_MAX);
    memset(room, 'r', sizeof(room));
    memset(id, '~', sizeof(id));
    memset(user, 'u', sizeof(user));
    memset(text, 'x', PROTO_TEXT_MAX);
    memcpy(text, "\xf0\x9f\x98\x80\0", 5);
    assert_int_equal(proto_msg_set(&m, room, sizeof(room), id, sizeof(id), user,
                                   sizeof(user), text, PROTO_TEXT_MAX, UINT64_MAX,
                                   UINT64_MAX), PROTO_OK);
    msg_round_trip(&m);
    proto_msg_free(&m);

    const char *dm = "dm:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    assert_int_equal(strlen(dm), PROTO_DM_ROOM_MAX);
    assert_int_equal(proto_msg_set(&m, dm, strlen(dm), "i", 1, "a", 1, "t", 1, 0, 0),
                     PROTO_OK);
    msg_round_trip(&m);
    proto_msg_free(&m);
    free(text);
}

/* The trace stamp: encoded only when set, kept through a message and a
 * batch, and not one of the stored fields proto_msg_equal compares. */
static void
test_msg_trace(void **state)
{
    (void)state;
    proto_msg m;
    make_msg(&m, "lobby", "alice", 1);
    proto_mp_buf plain, traced;
    proto_mp_buf_growing(&plain);
    proto_mp_buf_growing(&traced);
    assert_int_equal(proto_msg_encode(&m, &plain), PROTO_OK);
    assert_null(memmem(plain.data, plain.len, "\xa2rx", 3));
    m.rx_us = 1764770000123456ull;
    assert_int_equal(proto_msg_encode(&m, &traced), PROTO_OK);
    assert_non_null(memmem(traced.data, traced.len, "\xa2rx", 3));

    proto_msg back;
    assert_int_equal(proto_msg_decode(traced.data, traced.len, &back), PROTO_OK);
    assert_true(back.rx_us == m.rx_us);
    proto_msg_free(&back);
    assert_int_equal(proto_msg_decode(plain.data, plain.len, &back), PROTO_OK);
    assert_true(back.rx_us == 0);
    assert_true(proto_msg_equal(&m, &back));
    proto_msg_free(&back);

    proto_msg two[2];
    make_msg(&two[0], "lobby", "alice", 1);
    make_msg(&two[1], "lobby", "bob", 2);
    two[1].rx_us = 42;
    proto_batch b = { .msgs = two, .count = 2 }, bb;
    proto_mp_buf bt;
    proto_mp_buf_growing(&bt);
    assert_int_equal(proto_batch_encode(&b, &bt), PROTO_OK);
    assert_int_equal(proto_batch_decode(bt.data, bt.len, &bb), PROTO_OK);
    assert_int_equal(bb.count, 2);
    assert_true(bb.msgs[0].rx_us == 0 && bb.msgs[1].rx_us == 42);
    proto_batch_free(&bb);
    proto_msg_free(&two[0]);
    proto_msg_free(&two[1]);
    proto_msg_free(&m);
    proto_mp_buf_free(&bt);
    proto_mp_buf_free(&plain);
    proto_mp_buf_free(&traced);
}

static void
test_msg_set_rejects(void **state)
{
    (void)state;
    proto_msg m;
    struct { const char *room, *id, *user, *text; proto_err err; } cases[] = {
        { "", "i", "u", "t", PROTO_E_EMPTY },
        { "a b", "i", "u", "t", PROTO_E_SYNTAX },
        { "dm:b:a", "i", "u", "t", PROTO_E_SYNTAX },
        { "r", "", "u", "t", PROTO_E_EMPTY },
        { "r", "\x7f", "u", "t", PROTO_E_SYNTAX },
        { "r", "i", "", "t", PROTO_E_EMPTY },
        { "r", "i", "a:b", "t", PROTO_E_SYNTAX },
        { "r", "i", "u", "", PROTO_E_EMPTY },
        { "r", "i", "u", "\xc0\xaf", PROTO_E_UTF8 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&m, 0xA5, sizeof(m));
        assert_int_equal(proto_msg_set(&m, cases[i].room, strlen(cases[i].room),
                                       cases[i].id, strlen(cases[i].id), cases[i].user,
                                       strlen(cases[i].user), cases[i].text,
                                       strlen(cases[i].text), 1, 1), cases[i].err);
        assert_true(all_zero(&m, sizeof(m)));
    }
}

static void
test_msg_decode_fields(void **state)
{
    (void)state;
    kv base[6], k[8];
    msg_kvs(base);
    EXPECT_KVS(proto_msg, proto_msg_decode, base, 6, PROTO_OK);

    /* Fields in any order. */
    for (int i = 0; i < 6; i++)
        k[i] = base[5 - i];
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_OK);

    for (int f = 0; f < 6; f++) {
        /* missing */
        int n = 0;
        for (int i = 0; i < 6; i++)
            if (i != f)
                k[n++] = base[i];
        EXPECT_KVS(proto_msg, proto_msg_decode, k, 5, PROTO_E_MISSING);
        /* duplicate (after, and right away) */
        memcpy(k, base, sizeof(base));
        k[6] = base[f];
        EXPECT_KVS(proto_msg, proto_msg_decode, k, 7, PROTO_E_DUPLICATE);
        /* wrong types */
        bool is_str = f < 4;
        kv wrong[] = { KN(base[f].key), KB(base[f].key, 1), KF(base[f].key),
                       KBIN(base[f].key, "x"), KMAP(base[f].key),
                       is_str ? KU(base[f].key, 1) : KS(base[f].key, "1") };
        for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
            memcpy(k, base, sizeof(base));
            k[f] = wrong[w];
            EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_TYPE);
        }
        if (!is_str) {
            memcpy(k, base, sizeof(base));
            k[f] = KI(base[f].key, -1);
            EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_RANGE);
            k[f] = KU(base[f].key, UINT64_MAX);
            EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_OK);
            k[f] = KU(base[f].key, 0);
            EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_OK);
        } else {
            memcpy(k, base, sizeof(base));
            k[f] = KS(base[f].key, "");
            EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_EMPTY);
        }
    }

    /* unknown field, a key that is not a string, a key that differs in case
     * or is a prefix */
    memcpy(k, base, sizeof(base));
    k[6] = KS("extra", "x");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 7, PROTO_E_UNKNOWN);
    k[6] = KS(NULL, "x");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 7, PROTO_E_TYPE);
    k[6] = KS("", "x");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 7, PROTO_E_UNKNOWN);
    k[0] = KS("Room", "lobby");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_UNKNOWN);
    k[0] = KS("roo", "lobby");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_UNKNOWN);
    k[0] = KS("rooms", "lobby");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_E_UNKNOWN);

    /* field contents, per names.h */
    static char big[PROTO_TEXT_MAX + 2];
    memset(big, 'a', sizeof(big));
    struct { int f; const char *s; size_t len; proto_err err; } bad[] = {
        { 0, big, PROTO_ROOM_MAX + 1, PROTO_E_TOO_LONG },
        { 0, "a b", 3, PROTO_E_SYNTAX },
        { 0, "dm:bob:alice", 12, PROTO_E_SYNTAX },
        { 0, "dm:alice", 8, PROTO_E_SYNTAX },
        { 0, "lo\0by", 5, PROTO_E_SYNTAX },
        { 1, big, PROTO_MSGID_MAX + 1, PROTO_E_TOO_LONG },
        { 1, "a\nb", 3, PROTO_E_SYNTAX },
        { 1, "\xc3\xa9", 2, PROTO_E_SYNTAX },
        { 2, big, PROTO_USER_MAX + 1, PROTO_E_TOO_LONG },
        { 2, "al:ce", 5, PROTO_E_SYNTAX },
        { 3, big, PROTO_TEXT_MAX + 1, PROTO_E_TOO_LONG },
        { 3, "\xff", 1, PROTO_E_UTF8 },
        { 3, "\xed\xa0\x80", 3, PROTO_E_UTF8 },
        { 3, "ab\xe2\x82", 4, PROTO_E_UTF8 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(k, base, sizeof(base));
        k[bad[i].f] = KSL(base[bad[i].f].key, bad[i].s, bad[i].len);
        EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, bad[i].err);
    }
    /* text at exactly its limit, room with ':' and every allowed char */
    memcpy(k, base, sizeof(base));
    k[3] = KSL("text", big, PROTO_TEXT_MAX);
    k[0] = KS("room", "A-z_0.9:x");
    EXPECT_KVS(proto_msg, proto_msg_decode, k, 6, PROTO_OK);
}

static void
test_msg_decode_document(void **state)
{
    (void)state;
    kv base[6];
    msg_kvs(base);
    proto_mp_buf b = packed(base, 6);

    /* truncated at every length */
    for (size_t n = 0; n < b.len; n++)
        EXPECT_DECODE(proto_msg, proto_msg_decode, b.data, n, PROTO_E_MALFORMED);
    /* trailing bytes */
    uint8_t *more = malloc(b.len + 1);
    memcpy(more, b.data, b.len);
    more[b.len] = 0xc0;
    EXPECT_DECODE(proto_msg, proto_msg_decode, more, b.len + 1, PROTO_E_TRAILING);
    free(more);
    proto_mp_buf_free(&b);

    /* not a map */
    static const uint8_t arr[] = { 0x91, 0x01 }, str[] = { 0xa1, 'x' }, nil[] = { 0xc0 };
    EXPECT_DECODE(proto_msg, proto_msg_decode, arr, sizeof(arr), PROTO_E_TYPE);
    EXPECT_DECODE(proto_msg, proto_msg_decode, str, sizeof(str), PROTO_E_TYPE);
    EXPECT_DECODE(proto_msg, proto_msg_decode, nil, sizeof(nil), PROTO_E_TYPE);
    /* an empty map, and a map declaring 2^32-1 pairs in 5 bytes */
    static const uint8_t empty[] = { 0x80 }, huge[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    EXPECT_DECODE(proto_msg, proto_msg_decode, empty, sizeof(empty), PROTO_E_MISSING);
    EXPECT_DECODE(proto_msg, proto_msg_decode, huge, sizeof(huge), PROTO_E_MALFORMED);
    /* a str declaring 4 GiB */
    static const uint8_t hstr[] = { 0x81, 0xa4, 't', 'e', 'x', 't', 0xdb, 0xff, 0xff, 0xff, 0xff };
    EXPECT_DECODE(proto_msg, proto_msg_decode, hstr, sizeof(hstr), PROTO_E_MALFORMED);
    EXPECT_DECODE(proto_msg, proto_msg_decode, NULL, 0, PROTO_E_MALFORMED);

    /* input over PROTO_RECORD_MAX is refused before it is read */
    uint8_t *big = calloc(1, PROTO_RECORD_MAX + 1);
    EXPECT_DECODE(proto_msg, proto_msg_decode, big, PROTO_RECORD_MAX + 1, PROTO_E_TOO_LONG);
    free(big);
}

static void
test_msg_encode_errors(void **state)
{
    (void)state;
    proto_msg m;
    make_msg(&m, "lobby", "alice", 3);

    /* every buffer size short of the encoding: NOSPACE, buffer untouched */
    proto_mp_buf g;
    proto_mp_buf_growing(&g);
    assert_int_equal(proto_msg_encode(&m, &g), PROTO_OK);
    uint8_t mem[512];
    for (size_t cap = 0; cap < g.len; cap++) {
        proto_mp_buf f;
        proto_mp_buf_fixed(&f, mem, cap);
        assert_int_equal(proto_msg_encode(&m, &f), PROTO_E_NOSPACE);
        assert_int_equal(f.len, 0);
        assert_false(f.failed);
    }
    proto_mp_buf f;
    proto_mp_buf_fixed(&f, mem, g.len);
    assert_int_equal(proto_msg_encode(&m, &f), PROTO_OK);
    assert_int_equal(f.len, g.len);
    assert_memory_equal(mem, g.data, g.len);

    /* two records appended to one buffer; a failing third leaves them */
    size_t one = g.len;
    assert_int_equal(proto_msg_encode(&m, &g), PROTO_OK);
    assert_int_equal(g.len, 2 * one);
    proto_msg bad = m;
    bad.user[0] = ':';
    assert_int_equal(proto_msg_encode(&bad, &g), PROTO_E_SYNTAX);
    assert_int_equal(g.len, 2 * one);
    bad = m;
    bad.text_len = 0;
    assert_int_equal(proto_msg_encode(&bad, &g), PROTO_E_EMPTY);
    bad.text = NULL;
    bad.text_len = 3;
    assert_int_equal(proto_msg_encode(&bad, &g), PROTO_E_MISSING);
    bad = m;
    bad.room_len = PROTO_DM_ROOM_MAX + 1;
    assert_int_equal(proto_msg_encode(&bad, &g), PROTO_E_TOO_LONG);
    assert_int_equal(g.len, 2 * one);

    /* a zeroed message does not encode */
    proto_msg zero = {0};
    assert_int_equal(proto_msg_encode(&zero, &g), PROTO_E_EMPTY);
    proto_mp_buf_free(&g);
    proto_msg_free(&m);
}

/* ---- lists of messages: batch, history reply, join reply ---- */

static void
test_batch_round_trip(void **state)
{
    (void)state;
    size_t sizes[] = { 0, 1, 2, PROTO_BATCH_MAX };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        proto_batch b = { sizes[s] ? calloc(sizes[s], sizeof(proto_msg)) : NULL, sizes[s] };
        for (size_t i = 0; i < b.count; i++)
            make_msg(&b.msgs[i], i % 2 ? "dm:alice:bob" : "lobby", "alice", i + 1);
        proto_mp_buf out;
        proto_mp_buf_growing(&out);
        assert_int_equal(proto_batch_encode(&b, &out), PROTO_OK);
        proto_batch back;
        assert_int_equal(proto_batch_decode(out.data, out.len, &back), PROTO_OK);
        assert_int_equal(back.count, b.count);
        for (size_t i = 0; i < b.count; i++)
            assert_true(proto_msg_equal(&b.msgs[i], &back.msgs[i]));
        proto_batch_free(&back);
        proto_batch_free(&b);
        assert_null(b.msgs);
        proto_mp_buf_free(&out);
    }
}

/* Packs {key: [n messages]} plus extra kvs, with message bad (when >= 0)
 * replaced by kvs bad_kvs. */
static proto_mp_buf
pack_list(const char *key, size_t n, long bad, const kv *bad_kvs, size_t bad_n,
          const kv *extra, size_t extra_n)
{
    proto_mp_buf arr;
    proto_mp_buf_growing(&arr);
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &arr);
    msgpack_pack_array(&pk, n);
    kv m[6];
    msg_kvs(m);
    for (size_t i = 0; i < n; i++) {
        if ((long)i == bad)
            pack_kvs(&arr, bad_kvs, bad_n);
        else
            pack_kvs(&arr, m, 6);
    }
    kv all[4];
    all[0] = KRAW(key, arr.data, arr.len);
    for (size_t i = 0; i < extra_n; i++)
        all[1 + i] = extra[i];
    proto_mp_buf out = packed(all, 1 + extra_n);
    proto_mp_buf_free(&arr);
    return out;
}

#define EXPECT_LIST(T, fn, key, n, bad, bad_kvs, bad_n, extra, extra_n, err) \
    do {                                                                     \
        proto_mp_buf l_ = pack_list(key, n, bad, bad_kvs, bad_n, extra, extra_n); \
        EXPECT_DECODE(T, fn, l_.data, l_.len, err);                          \
        proto_mp_buf_free(&l_);                                              \
    } while (0)

/* The same list checks for the three records that hold a list. */
static void
test_lists_decode(void **state)
{
    (void)state;
    kv m[6], badm[6];
    msg_kvs(m);
    memcpy(badm, m, sizeof(m));
    badm[3] = KS("text", "\xc0\x80");            /* overlong NUL */
    kv notmap[1] = { KS("x", "y") };
    kv more[1] = { KB("more", 1) };
    kv join_extra[2] = { KB("more", 0), KU("seq", 9) };

    /* batch: {msgs} */
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 3, -1, NULL, 0, NULL, 0, PROTO_OK);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 3, 2, badm, 6, NULL, 0, PROTO_E_UTF8);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 3, 0, badm, 6, NULL, 0, PROTO_E_UTF8);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 3, 1, m, 5, NULL, 0, PROTO_E_MISSING);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 3, 1, notmap, 1, NULL, 0, PROTO_E_UNKNOWN);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", PROTO_BATCH_MAX, -1, NULL, 0, NULL, 0, PROTO_OK);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", PROTO_BATCH_MAX + 1, -1, NULL, 0, NULL, 0,
                PROTO_E_TOO_LONG);
    EXPECT_LIST(proto_batch, proto_batch_decode, "msgs", 1, -1, NULL, 0, more, 1, PROTO_E_UNKNOWN);
    kv k[3];
    k[0] = KS("msgs", "x");
    EXPECT_KVS(proto_batch, proto_batch_decode, k, 1, PROTO_E_TYPE);
    k[0] = KMAP("msgs");
    EXPECT_KVS(proto_batch, proto_batch_decode, k, 1, PROTO_E_TYPE);
    EXPECT_KVS(proto_batch, proto_batch_decode, k, 0, PROTO_E_MISSING);
    static const uint8_t elem_not_map[] = { 0x81, 0xa4, 'm', 's', 'g', 's', 0x92, 0x80, 0x01 };
    EXPECT_DECODE(proto_batch, proto_batch_decode, elem_not_map, sizeof(elem_not_map),
                  PROTO_E_MISSING);
    static const uint8_t elem_int[] = { 0x81, 0xa4, 'm', 's', 'g', 's', 0x91, 0x01 };
    EXPECT_DECODE(proto_batch, proto_batch_decode, elem_int, sizeof(elem_int), PROTO_E_TYPE);
    static const uint8_t dup[] = { 0x82, 0xa4, 'm', 's', 'g', 's', 0x90, 0xa4, 'm', 's', 'g', 's', 0x90 };
    EXPECT_DECODE(proto_batch, proto_batch_decode, dup, sizeof(dup), PROTO_E_DUPLICATE);

    /* history reply: {msgs, more} */
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs", 2, -1, NULL, 0, more, 1,
                PROTO_OK);
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs", 2, -1, NULL, 0, NULL, 0,
                PROTO_E_MISSING);
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs", 4, 3, badm, 6, more, 1,
                PROTO_E_UTF8);
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs", PROTO_HISTORY_LIMIT_MAX,
                -1, NULL, 0, more, 1, PROTO_OK);
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs",
                PROTO_HISTORY_LIMIT_MAX + 1, -1, NULL, 0, more, 1, PROTO_E_TOO_LONG);
    kv wrong_more[1] = { KU("more", 1) };
    EXPECT_LIST(proto_history_reply, proto_history_reply_decode, "msgs", 1, -1, NULL, 0,
                wrong_more, 1, PROTO_E_TYPE);

    /* join reply: {missed, more, seq} */
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", 2, -1, NULL, 0, join_extra, 2,
                PROTO_OK);
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", 2, -1, NULL, 0, join_extra, 1,
                PROTO_E_MISSING);
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", PROTO_JOIN_MISSED_MAX, -1,
                NULL, 0, join_extra, 2, PROTO_OK);
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", PROTO_JOIN_MISSED_MAX + 1, -1,
                NULL, 0, join_extra, 2, PROTO_E_TOO_LONG);
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", 5, 4, badm, 6, join_extra, 2,
                PROTO_E_UTF8);
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "msgs", 1, -1, NULL, 0, join_extra, 2,
                PROTO_E_UNKNOWN);
    kv neg_seq[2] = { KB("more", 0), KI("seq", -5) };
    EXPECT_LIST(proto_join_reply, proto_join_reply_decode, "missed", 1, -1, NULL, 0, neg_seq, 2,
                PROTO_E_RANGE);
}

static void
test_lists_encode(void **state)
{
    (void)state;
    proto_mp_buf out;
    proto_mp_buf_growing(&out);
    proto_msg *msgs = calloc(PROTO_BATCH_MAX + 1, sizeof(*msgs));
    for (size_t i = 0; i <= PROTO_BATCH_MAX; i++)
        make_msg(&msgs[i], "lobby", "bob", i + 1);

    proto_batch b = { msgs, PROTO_BATCH_MAX + 1 };
    assert_int_equal(proto_batch_encode(&b, &out), PROTO_E_TOO_LONG);
    proto_history_reply h = { msgs, PROTO_HISTORY_LIMIT_MAX + 1, true };
    assert_int_equal(proto_history_reply_encode(&h, &out), PROTO_E_TOO_LONG);
    proto_join_reply j = { 5, msgs, PROTO_JOIN_MISSED_MAX + 1, false };
    assert_int_equal(proto_join_reply_encode(&j, &out), PROTO_E_TOO_LONG);
    b.count = 3;
    b.msgs = NULL;
    assert_int_equal(proto_batch_encode(&b, &out), PROTO_E_MISSING);
    assert_int_equal(out.len, 0);

    /* a bad message in the middle fails the whole list */
    msgs[1].id_len = 0;
    b.msgs = msgs;
    assert_int_equal(proto_batch_encode(&b, &out), PROTO_E_EMPTY);
    assert_int_equal(out.len, 0);
    msgs[1].id_len = 4;

    /* round trips */
    h.count = PROTO_HISTORY_LIMIT_MAX;
    assert_int_equal(proto_history_reply_encode(&h, &out), PROTO_OK);
    proto_history_reply hb;
    assert_int_equal(proto_history_reply_decode(out.data, out.len, &hb), PROTO_OK);
    assert_int_equal(hb.count, h.count);
    assert_true(hb.more);
    for (size_t i = 0; i < hb.count; i++)
        assert_true(proto_msg_equal(&hb.msgs[i], &msgs[i]));
    proto_history_reply_free(&hb);
    proto_mp_buf_free(&out);

    proto_mp_buf_growing(&out);
    j.count = 0;
    j.missed = NULL;
    assert_int_equal(proto_join_reply_encode(&j, &out), PROTO_OK);
    proto_join_reply jb;
    assert_int_equal(proto_join_reply_decode(out.data, out.len, &jb), PROTO_OK);
    assert_int_equal(jb.seq, 5);
    assert_int_equal(jb.count, 0);
    assert_null(jb.missed);
    assert_false(jb.more);
    proto_join_reply_free(&jb);
    proto_mp_buf_free(&out);

    proto_mp_buf_growing(&out);
    j.count = 7;
    j.missed = msgs;
    j.more = true;
    j.seq = UINT64_MAX;
    assert_int_equal(proto_join_reply_encode(&j, &out), PROTO_OK);
    assert_int_equal(proto_join_reply_decode(out.data, out.len, &jb), PROTO_OK);
    assert_int_equal(jb.seq, UINT64_MAX);
    assert_int_equal(jb.count, 7);
    assert_true(jb.more);
    assert_true(proto_msg_equal(&jb.missed[6], &msgs[6]));
    proto_join_reply_free(&jb);
    proto_mp_buf_free(&out);

    b.count = PROTO_BATCH_MAX + 1;
    proto_batch_free(&b);
}

/* ---- ack ---- */

static void
test_ack_codes(void **state)
{
    (void)state;
    static const char *names[] = { "bad_request", "too_large", "forbidden", "not_member",
                                   "rate_limited", "unavailable", "internal" };
    assert_null(proto_ack_code_name(PROTO_ACK_NONE));
    assert_null(proto_ack_code_name((proto_ack_code)99));
    assert_null(proto_ack_code_name((proto_ack_code)-1));
    for (int c = PROTO_ACK_BAD_REQUEST; c <= PROTO_ACK_INTERNAL; c++) {
        const char *n = proto_ack_code_name((proto_ack_code)c);
        assert_string_equal(n, names[c - 1]);
        proto_ack_code back = PROTO_ACK_NONE;
        assert_true(proto_ack_code_from_name(n, strlen(n), &back));
        assert_int_equal(back, c);
    }
    proto_ack_code keep = PROTO_ACK_FORBIDDEN;
    assert_false(proto_ack_code_from_name("ok", 2, &keep));
    assert_false(proto_ack_code_from_name("forbid", 6, &keep));
    assert_false(proto_ack_code_from_name("forbiddenx", 10, &keep));
    assert_false(proto_ack_code_from_name("", 0, &keep));
    assert_int_equal(keep, PROTO_ACK_FORBIDDEN);
}

static void
test_ack_round_trip(void **state)
{
    (void)state;
    proto_mp_buf out;
    proto_ack a = { .ok = true }, back;

    proto_mp_buf_growing(&out);
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_OK);
    assert_int_equal(proto_ack_decode(out.data, out.len, &back), PROTO_OK);
    assert_true(back.ok);
    assert_int_equal(back.code, PROTO_ACK_NONE);
    assert_int_equal(back.msg_len, 0);
    proto_ack_free(&back);
    proto_mp_buf_free(&out);

    for (int c = PROTO_ACK_BAD_REQUEST; c <= PROTO_ACK_INTERNAL; c++) {
        proto_ack_set_error(&a, (proto_ack_code)c, c == 1 ? "" : "not a member of r\xc3\xa9");
        proto_mp_buf_growing(&out);
        assert_int_equal(proto_ack_encode(&a, &out), PROTO_OK);
        assert_int_equal(proto_ack_decode(out.data, out.len, &back), PROTO_OK);
        assert_false(back.ok);
        assert_int_equal(back.code, c);
        assert_int_equal(back.msg_len, a.msg_len);
        assert_memory_equal(back.msg, a.msg, a.msg_len + 1);
        proto_ack_free(&back);
        proto_mp_buf_free(&out);
    }

    /* set_error cuts long messages at a character boundary */
    char longmsg[PROTO_ACK_MSG_MAX + 10];
    memset(longmsg, 'a', sizeof(longmsg));
    longmsg[sizeof(longmsg) - 1] = '\0';
    proto_ack_set_error(&a, PROTO_ACK_INTERNAL, longmsg);
    assert_int_equal(a.msg_len, PROTO_ACK_MSG_MAX);
    memcpy(longmsg + PROTO_ACK_MSG_MAX - 1, "\xe2\x82\xac", 3);   /* straddles the cut */
    proto_ack_set_error(&a, PROTO_ACK_INTERNAL, longmsg);
    assert_int_equal(a.msg_len, PROTO_ACK_MSG_MAX - 1);
    proto_mp_buf_growing(&out);
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_OK);

    /* encode errors */
    a.code = PROTO_ACK_NONE;
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_E_RANGE);
    a.code = (proto_ack_code)42;
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_E_RANGE);
    a.code = PROTO_ACK_INTERNAL;
    a.msg_len = PROTO_ACK_MSG_MAX + 1;
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_E_TOO_LONG);
    proto_ack_set_error(&a, PROTO_ACK_INTERNAL, "\xff");
    assert_int_equal(proto_ack_encode(&a, &out), PROTO_E_UTF8);
    proto_mp_buf_free(&out);
}

static void
test_ack_decode_fields(void **state)
{
    (void)state;
    char longmsg[PROTO_ACK_MSG_MAX + 1];
    memset(longmsg, 'm', sizeof(longmsg));
    struct { kv k[4]; size_t n; proto_err err; } cases[] = {
        { { KB("ok", 1) }, 1, PROTO_OK },
        { { KB("ok", 0), KS("code", "forbidden"), KS("msg", "no") }, 3, PROTO_OK },
        { { KS("msg", "no"), KS("code", "forbidden"), KB("ok", 0) }, 3, PROTO_OK },
        { { KB("ok", 0), KS("code", "forbidden"), KSL("msg", longmsg, PROTO_ACK_MSG_MAX) }, 3,
          PROTO_OK },
        { { KB("ok", 0), KS("code", "forbidden"), KSL("msg", longmsg, PROTO_ACK_MSG_MAX + 1) }, 3,
          PROTO_E_TOO_LONG },
        { { KB("ok", 0), KS("code", "forbidden"), KS("msg", "\xe0\x80\x80") }, 3, PROTO_E_UTF8 },
        { { KB("ok", 0), KS("code", "Forbidden"), KS("msg", "") }, 3, PROTO_E_SYNTAX },
        { { KB("ok", 0), KS("code", ""), KS("msg", "") }, 3, PROTO_E_SYNTAX },
        { { KB("ok", 0), KU("code", 3), KS("msg", "") }, 3, PROTO_E_TYPE },
        { { KB("ok", 0), KS("code", "forbidden"), KU("msg", 1) }, 3, PROTO_E_TYPE },
        { { KB("ok", 0), KS("code", "forbidden") }, 2, PROTO_E_MISSING },
        { { KB("ok", 0), KS("msg", "x") }, 2, PROTO_E_MISSING },
        { { KB("ok", 0) }, 1, PROTO_E_MISSING },
        { { KS("code", "forbidden"), KS("msg", "x") }, 2, PROTO_E_MISSING },
        { { KB("ok", 1), KS("code", "forbidden") }, 2, PROTO_E_UNKNOWN },
        { { KB("ok", 1), KS("msg", "") }, 2, PROTO_E_UNKNOWN },
        { { KB("ok", 1), KB("ok", 1) }, 2, PROTO_E_DUPLICATE },
        { { KB("ok", 0), KS("code", "forbidden"), KS("code", "forbidden"), KS("msg", "") }, 4,
          PROTO_E_DUPLICATE },
        { { KU("ok", 1) }, 1, PROTO_E_TYPE },
        { { KS("ok", "true") }, 1, PROTO_E_TYPE },
        { { KN("ok") }, 1, PROTO_E_TYPE },
        { { KB("ok", 1), KS("error", "x") }, 2, PROTO_E_UNKNOWN },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT_KVS(proto_ack, proto_ack_decode, cases[i].k, cases[i].n, cases[i].err);
}

/* ---- requests ---- */

static void
test_history_req(void **state)
{
    (void)state;
    proto_mp_buf out;
    proto_history_req r = { .limit = 50 }, back;
    memcpy(r.room, "lobby", 6);
    r.room_len = 5;

    proto_mp_buf_growing(&out);
    assert_int_equal(proto_history_req_encode(&r, &out), PROTO_OK);
    assert_int_equal(proto_history_req_decode(out.data, out.len, &back), PROTO_OK);
    assert_false(back.has_before);
    assert_int_equal(back.limit, 50);
    assert_string_equal(back.room, "lobby");
    proto_history_req_free(&back);
    proto_mp_buf_free(&out);

    r.has_before = true;
    r.before = 0;
    r.limit = PROTO_HISTORY_LIMIT_MAX;
    proto_mp_buf_growing(&out);
    assert_int_equal(proto_history_req_encode(&r, &out), PROTO_OK);
    assert_int_equal(proto_history_req_decode(out.data, out.len, &back), PROTO_OK);
    assert_true(back.has_before);
    assert_int_equal(back.before, 0);
    assert_int_equal(back.limit, PROTO_HISTORY_LIMIT_MAX);
    r.limit = 0;
    assert_int_equal(proto_history_req_encode(&r, &out), PROTO_E_RANGE);
    r.limit = PROTO_HISTORY_LIMIT_MAX + 1;
    assert_int_equal(proto_history_req_encode(&r, &out), PROTO_E_RANGE);
    r.limit = 1;
    r.room_len = 0;
    assert_int_equal(proto_history_req_encode(&r, &out), PROTO_E_EMPTY);
    proto_mp_buf_free(&out);

    struct { kv k[4]; size_t n; proto_err err; } cases[] = {
        { { KS("room", "r"), KU("limit", 1) }, 2, PROTO_OK },
        { { KS("room", "r"), KU("limit", 200), KU("before", UINT64_MAX) }, 3, PROTO_OK },
        { { KS("room", "r"), KU("limit", 0) }, 2, PROTO_E_RANGE },
        { { KS("room", "r"), KU("limit", 201) }, 2, PROTO_E_RANGE },
        { { KS("room", "r"), KI("limit", -1) }, 2, PROTO_E_RANGE },
        { { KS("room", "r"), KF("limit") }, 2, PROTO_E_TYPE },
        { { KS("room", "r"), KU("limit", 5), KI("before", -1) }, 3, PROTO_E_RANGE },
        { { KS("room", "r"), KU("limit", 5), KN("before") }, 3, PROTO_E_TYPE },
        { { KS("room", "r"), KU("limit", 5), KU("before", 1), KU("before", 1) }, 4,
          PROTO_E_DUPLICATE },
        { { KS("room", "r") }, 1, PROTO_E_MISSING },
        { { KU("limit", 5) }, 1, PROTO_E_MISSING },
        { { KS("room", "dm:a"), KU("limit", 5) }, 2, PROTO_E_SYNTAX },
        { { KS("room", "r"), KU("limit", 5), KU("since", 1) }, 3, PROTO_E_UNKNOWN },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT_KVS(proto_history_req, proto_history_req_decode, cases[i].k, cases[i].n,
                   cases[i].err);
}

static void
test_join_req(void **state)
{
    (void)state;
    proto_mp_buf out;
    proto_join_req r = {0}, back;
    memcpy(r.room, "dm:alice:bob", 13);
    r.room_len = 12;

    proto_mp_buf_growing(&out);
    assert_int_equal(proto_join_req_encode(&r, &out), PROTO_OK);
    assert_int_equal(proto_join_req_decode(out.data, out.len, &back), PROTO_OK);
    assert_false(back.has_since);
    assert_string_equal(back.room, "dm:alice:bob");
    proto_mp_buf_free(&out);

    r.has_since = true;
    r.since = 12345;
    proto_mp_buf_growing(&out);
    assert_int_equal(proto_join_req_encode(&r, &out), PROTO_OK);
    assert_int_equal(proto_join_req_decode(out.data, out.len, &back), PROTO_OK);
    assert_true(back.has_since);
    assert_int_equal(back.since, 12345);
    proto_join_req_free(&back);
    proto_mp_buf_free(&out);

    struct { kv k[3]; size_t n; proto_err err; } cases[] = {
        { { KS("room", "r") }, 1, PROTO_OK },
        { { KS("room", "r"), KU("since", 0) }, 2, PROTO_OK },
        { { KS("room", "r"), KI("since", -1) }, 2, PROTO_E_RANGE },
        { { KS("room", "r"), KS("since", "1") }, 2, PROTO_E_TYPE },
        { { KU("since", 1) }, 1, PROTO_E_MISSING },
        { { KS("room", "r"), KS("room", "r") }, 2, PROTO_E_DUPLICATE },
        { { KS("room", "dm:bob:alice") }, 1, PROTO_E_SYNTAX },
        { { KS("room", "r"), KU("limit", 1) }, 2, PROTO_E_UNKNOWN },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT_KVS(proto_join_req, proto_join_req_decode, cases[i].k, cases[i].n, cases[i].err);
}

static void
test_type_names(void **state)
{
    (void)state;
    assert_string_equal(proto_type_name(PROTO_T_MESSAGE), "message");
    assert_string_equal(proto_type_name(PROTO_T_JOIN_REPLY), "join_reply");
    assert_string_equal(proto_type_name(PROTO_T_USERS), "users");
    for (uint32_t t = PROTO_T_MESSAGE; t <= PROTO_T_USERS; t++)
        assert_non_null(proto_type_name(t));
    assert_null(proto_type_name(0));
    assert_null(proto_type_name(99));
    assert_null(proto_type_name(PROTO_T_USERS + 1));
}

/* Packs a map of str keys and str values (NULL value: the uint 7). */
static size_t
pack_strmap(uint8_t *out, size_t cap, size_t n, const char *const *pairs)
{
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, out, cap);
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        proto_mp_pack_str(&pk, pairs[2 * i], strlen(pairs[2 * i]));
        if (pairs[2 * i + 1])
            proto_mp_pack_str(&pk, pairs[2 * i + 1], strlen(pairs[2 * i + 1]));
        else
            msgpack_pack_uint64(&pk, 7);
    }
    assert_false(b.failed);
    return b.len;
}

static void
test_control_records(void **state)
{
    (void)state;
    uint8_t mem[512];
    proto_mp_buf b;

    /* room */
    proto_room room = { .room = "dm:al:bo", .room_len = 8 }, room2;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_room_encode(&room, &b), PROTO_OK);
    assert_int_equal(proto_room_decode(b.data, b.len, &room2), PROTO_OK);
    assert_string_equal(room2.room, "dm:al:bo");
    proto_room bad_room = { .room = "dm:bo:al", .room_len = 8 };
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_room_encode(&bad_room, &b), PROTO_E_SYNTAX);

    /* member */
    proto_member m = { .room = "r", .room_len = 1, .user = "alice", .user_len = 5 }, m2;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_member_encode(&m, &b), PROTO_OK);
    assert_int_equal(proto_member_decode(b.data, b.len, &m2), PROTO_OK);
    assert_string_equal(m2.user, "alice");
    assert_int_equal(m2.room_len, 1);
    const char *const no_user[] = { "room", "r" };
    size_t n = pack_strmap(mem, sizeof(mem), 1, no_user);
    assert_int_equal(proto_member_decode(mem, n, &m2), PROTO_E_MISSING);
    const char *const bad_user[] = { "room", "r", "user", "a b" };
    n = pack_strmap(mem, sizeof(mem), 2, bad_user);
    assert_int_equal(proto_member_decode(mem, n, &m2), PROTO_E_SYNTAX);
    assert_int_equal(m2.room_len, 0);      /* zeroed on error */

    /* typing */
    proto_typing t = { .room = "r", .room_len = 1, .user = "u", .user_len = 1,
                       .node = UINT64_MAX, .conn = 42 }, t2;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_typing_encode(&t, &b), PROTO_OK);
    assert_int_equal(proto_typing_decode(b.data, b.len, &t2), PROTO_OK);
    assert_true(t2.node == UINT64_MAX && t2.conn == 42);
    const char *const typing_str_node[] = { "room", "r", "user", "u", "node", "x", "conn", NULL };
    n = pack_strmap(mem, sizeof(mem), 4, typing_str_node);
    assert_int_equal(proto_typing_decode(mem, n, &t2), PROTO_E_TYPE);

    /* users */
    proto_user_name names[3] = { "alice", "bob", "c.d-e_f" };
    proto_users u = { .users = names, .count = 3 }, u2;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_users_encode(&u, &b), PROTO_OK);
    assert_int_equal(proto_users_decode(b.data, b.len, &u2), PROTO_OK);
    assert_int_equal(u2.count, 3);
    assert_string_equal(u2.users[2], "c.d-e_f");
    proto_users_free(&u2);
    proto_users_free(&u2);      /* twice is fine */
    proto_users none = { 0 };
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_users_encode(&none, &b), PROTO_OK);
    assert_int_equal(proto_users_decode(b.data, b.len, &u2), PROTO_OK);
    assert_int_equal(u2.count, 0);
    /* a bad name anywhere in the list rejects the whole record, leak-free */
    proto_user_name bad[2] = { "ok", "no way" };
    proto_users ub = { .users = bad, .count = 2 };
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    assert_int_equal(proto_users_encode(&ub, &b), PROTO_E_SYNTAX);
    assert_int_equal(b.len, 0);
    /* hand-made: ["ok", 5] */
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 1);
    proto_mp_pack_str(&pk, "users", 5);
    msgpack_pack_array(&pk, 2);
    proto_mp_pack_str(&pk, "ok", 2);
    msgpack_pack_uint64(&pk, 5);
    assert_int_equal(proto_users_decode(b.data, b.len, &u2), PROTO_E_TYPE);
    assert_null(u2.users);
    assert_int_equal(u2.count, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LEAK_TEST(test_msg_round_trip),
        LEAK_TEST(test_msg_trace),
        LEAK_TEST(test_msg_set_rejects),
        LEAK_TEST(test_msg_decode_fields),
        LEAK_TEST(test_msg_decode_document),
        LEAK_TEST(test_msg_encode_errors),
        LEAK_TEST(test_batch_round_trip),
        LEAK_TEST(test_lists_decode),
        LEAK_TEST(test_lists_encode),
        LEAK_TEST(test_ack_codes),
        LEAK_TEST(test_ack_round_trip),
        LEAK_TEST(test_ack_decode_fields),
        LEAK_TEST(test_history_req),
        LEAK_TEST(test_join_req),
        LEAK_TEST(test_type_names),
        LEAK_TEST(test_control_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
