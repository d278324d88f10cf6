#include "proto/mp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void
proto_mp_buf_fixed(proto_mp_buf *b, void *mem, size_t cap)
{
    *b = (proto_mp_buf){ .data = mem, .cap = cap };
}

void
proto_mp_buf_growing(proto_mp_buf *b)
{
    *b = (proto_mp_buf){ .growing = true };
}

void
proto_mp_buf_free(proto_mp_buf *b)
{
    if (b->growing) {
        free(b->data);
        proto_mp_buf_growing(b);
    } else {
        proto_mp_buf_reset(b);
    }
}

void
proto_mp_buf_reset(proto_mp_buf *b)
{
    b->len = 0;
    b->failed = false;
}

proto_err
proto_mp_buf_release(proto_mp_buf *b, uint8_t **out, size_t *len)
{
    if (b->failed) {
        proto_mp_buf_free(b);
        return PROTO_E_NOMEM;
    }
    *out = b->data;
    *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return PROTO_OK;
}

proto_err
proto_mp_buf_append(proto_mp_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return b->growing ? PROTO_E_NOMEM : PROTO_E_NOSPACE;
    if (n == 0)
        return PROTO_OK;    /* src may be NULL then */
    if (n > b->cap - b->len) {
        if (!b->growing || n > SIZE_MAX / 2 - b->len) {
            b->failed = true;
            return b->growing ? PROTO_E_NOMEM : PROTO_E_NOSPACE;
        }
        size_t want = b->cap ? b->cap * 2 : 256;
        while (want - b->len < n)
            want *= 2;
        uint8_t *p = realloc(b->data, want);
        if (!p) {
            b->failed = true;
            return PROTO_E_NOMEM;
        }
        b->data = p;
        b->cap = want;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return PROTO_OK;
}

static int
buf_write(void *data, const char *src, size_t n)
{
    return proto_mp_buf_append(data, src, n) == PROTO_OK ? 0 : -1;
}

void
proto_mp_packer_init(msgpack_packer *pk, proto_mp_buf *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

void
proto_mp_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Reads a big-endian integer of n bytes. */
static uint64_t
be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Reads the header of the value at p[*i] and moves *i past it: *skip gets the
 * number of bytes of payload that follow (string, binary, ext or number
 * bytes) and *items the number of values nested in it (twice the entries of
 * a map). False when the header is cut short or the type byte is 0xc1.
 */
static bool
read_header(const uint8_t *p, size_t len, size_t *i, uint64_t *skip, uint64_t *items)
{
    if (*i >= len)
        return false;
    uint8_t c = p[(*i)++];
    size_t hdr = 0;
    *skip = 0;
    *items = 0;

    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return true;                                          /* fixint, nil, bool */
    if (c >= 0x80 && c <= 0x8f) {
        *items = (uint64_t)(c & 0x0f) * 2;
        return true;
    }
    if (c >= 0x90 && c <= 0x9f) {
        *items = c & 0x0f;
        return true;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        *skip = c & 0x1f;
        return true;
    }
    switch (c) {
    case 0xc4: case 0xd9: hdr = 1; break;             /* bin8, str8 */
    case 0xc5: case 0xda: hdr = 2; break;             /* bin16, str16 */
    case 0xc6: case 0xdb: hdr = 4; break;             /* bin32, str32 */
    case 0xc7: hdr = 1; *skip = 1; break;             /* ext8 (+type) */
    case 0xc8: hdr = 2; *skip = 1; break;
    case 0xc9: hdr = 4; *skip = 1; break;
    case 0xcc: case 0xd0: *skip = 1; break;
    case 0xcd: case 0xd1: *skip = 2; break;
    case 0xca: case 0xce: case 0xd2: *skip = 4; break;
    case 0xcb: case 0xcf: case 0xd3: *skip = 8; break;
    case 0xd4: *skip = 2; break;                      /* fixext */
    case 0xd5: *skip = 3; break;
    case 0xd6: *skip = 5; break;
    case 0xd7: *skip = 9; break;
    case 0xd8: *skip = 17; break;
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
        size_t n = (c == 0xdc || c == 0xde) ? 2 : 4;
        if (len - *i < n)
            return false;
        *items = be(p + *i, n) * ((c == 0xde || c == 0xdf) ? 2 : 1);
        *i += n;
        return true;
    }
    default:
        return false;                                 /* 0xc1: never used */
    }
    if (hdr) {
        if (len - *i < hdr)
            return false;
        *skip += be(p + *i, hdr);
        *i += hdr;
    }
    return true;
}

/*
 * Walks the encoding without building anything and checks that every
 * container's declared element count fits in the bytes left (each element
 * takes at least one byte) and that nesting stays within PROTO_MP_DEPTH_MAX.
 * Whatever else is wrong is left for msgpack-c to find.
 */
static bool
precheck(const uint8_t *p, size_t len)
{
    uint64_t pending[PROTO_MP_DEPTH_MAX + 1];   /* values still to read per level */
    int depth = 0;
    size_t i = 0;
    pending[0] = 1;

    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        uint64_t skip, items;
        if (!read_header(p, len, &i, &skip, &items))
            return false;
        if (skip > len - i)
            return false;
        i += (size_t)skip;
        if (items) {
            if (items > len - i || depth == PROTO_MP_DEPTH_MAX)
                return false;
            pending[++depth] = items;
        }
    }
    return true;   /* trailing bytes are reported by the parse itself */
}

proto_err
proto_mp_parse(proto_mp_doc *doc, const uint8_t *data, size_t len)
{
    doc->zone_live = false;
    if (!precheck(data, len))
        return PROTO_E_MALFORMED;
    if (!msgpack_zone_init(&doc->zone, 1024))
        return PROTO_E_NOMEM;
    doc->zone_live = true;

    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack((const char *)data, len, &off,
                                             &doc->zone, &doc->root);
    proto_err err;
    switch (r) {
    case MSGPACK_UNPACK_SUCCESS:
        err = off == len ? PROTO_OK : PROTO_E_TRAILING;
        break;
    case MSGPACK_UNPACK_EXTRA_BYTES:
        err = PROTO_E_TRAILING;
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        err = PROTO_E_NOMEM;
        break;
    default:
        err = PROTO_E_MALFORMED;
        break;
    }
    if (err != PROTO_OK)
        proto_mp_doc_free(doc);
    return err;
}

void
proto_mp_doc_free(proto_mp_doc *doc)
{
    if (doc->zone_live)
        msgpack_zone_destroy(&doc->zone);
    doc->zone_live = false;
}

const msgpack_object *
proto_mp_map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}
