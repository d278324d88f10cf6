/*
 * msgpack glue shared by the proto modules: output buffers for msgpack-c's
 * packer, and a strict whole-document parse.
 *
 * proto_mp_parse() refuses, before msgpack-c sees them, documents that declare
 * containers longer than the bytes left (msgpack-c would allocate the declared
 * size first: a 5-byte input could ask for gigabytes) or nest deeper than
 * PROTO_MP_DEPTH_MAX.
 */
#ifndef CHATD_PROTO_MP_H
#define CHATD_PROTO_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/proto.h"

#define PROTO_MP_DEPTH_MAX 16

/* An output buffer: fixed (the caller's memory) or growing (malloc'd, owned by
 * the buffer until proto_mp_buf_release or proto_mp_buf_free). A write that
 * does not fit sets failed and writes nothing more. */
typedef struct proto_mp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool growing;
    bool failed;
} proto_mp_buf;

void proto_mp_buf_fixed(proto_mp_buf *b, void *mem, size_t cap);
void proto_mp_buf_growing(proto_mp_buf *b);
/* Frees a growing buffer's memory (it is then empty and growing); a fixed
 * buffer keeps its memory and is only emptied. */
void proto_mp_buf_free(proto_mp_buf *b);
/* Forgets the contents and an earlier failure; keeps the memory. */
void proto_mp_buf_reset(proto_mp_buf *b);
/* Appends n bytes (src may be NULL when n is 0). Returns PROTO_OK, or
 * PROTO_E_NOSPACE (fixed and full) / PROTO_E_NOMEM, which also set failed;
 * once failed, every append fails until a reset. */
proto_err proto_mp_buf_append(proto_mp_buf *b, const void *src, size_t n);

/* For a growing buffer only: points *out at its bytes and *len at their
 * length and gives their ownership to the caller (free() them); the buffer is
 * then empty. Returns PROTO_OK, or PROTO_E_NOMEM when an earlier write failed:
 * then nothing is handed over (*out and *len are not touched) and the buffer
 * is freed. */
proto_err proto_mp_buf_release(proto_mp_buf *b, uint8_t **out, size_t *len);

/* A packer that writes into b. */
void proto_mp_packer_init(msgpack_packer *pk, proto_mp_buf *b);

/* Convenience: pack a string (str8/16/32 header plus body). */
void proto_mp_pack_str(msgpack_packer *pk, const char *s, size_t len);

/* A parsed document: root plus the zone that holds its objects. Strings and
 * bins in it point into the parsed input, which must outlive the doc. */
typedef struct proto_mp_doc {
    msgpack_zone zone;
    msgpack_object root;
    bool zone_live;
} proto_mp_doc;

/* Parses exactly one msgpack value from the len bytes at data. On success the
 * caller must proto_mp_doc_free(doc). On error nothing needs freeing and the
 * result is PROTO_E_MALFORMED, PROTO_E_TRAILING or PROTO_E_NOMEM. */
proto_err proto_mp_parse(proto_mp_doc *doc, const uint8_t *data, size_t len);
void proto_mp_doc_free(proto_mp_doc *doc);

/* Looks up a str key in a map object; NULL when absent. */
const msgpack_object *proto_mp_map_get(const msgpack_object *map, const char *key);

#endif
