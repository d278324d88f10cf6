/*
 * record_internal.h: what the two halves of the record codec share.
 * record.c holds the schemas (one table per record) and the public functions
 * of record.h; record_codec.c holds the one encoder, decoder and free that
 * walk those tables. This header is not a contract for anyone else: only
 * those two files include it, and it changes with them. Callers use
 * proto/record.h.
 */
#ifndef CHATD_PROTO_RECORD_INTERNAL_H
#define CHATD_PROTO_RECORD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/record.h"

/* ---- schemas ---- */

typedef enum record_kind {
    K_ROOM,     /* char[] inline + size_t length; proto_check_room */
    K_USER,     /* char[] inline + length; proto_check_user */
    K_MSGID,    /* char[] inline + length; proto_check_msgid */
    K_NOTE,     /* char[] inline + length; 0..PROTO_ACK_MSG_MAX bytes of UTF-8 */
    K_TEXT,     /* char * (malloc'd) + length; proto_check_text */
    K_U64,      /* uint64_t within [min, max] */
    K_BOOL,     /* bool */
    K_CODE,     /* proto_ack_code, encoded as its protocol name */
    K_MSGS,     /* proto_msg * (malloc'd) + size_t count, at most max */
    K_USERS,    /* proto_user_name * (malloc'd) + size_t count, at most max */
} record_kind;

typedef struct record_field {
    const char *key;
    record_kind kind;
    size_t off;         /* the value in the struct */
    size_t len_off;     /* its length or count (strings, K_MSGS) */
    uint64_t min, max;  /* K_U64 range; K_MSGS: max count */
} record_field;

typedef struct record_schema {
    const record_field *fields;
    unsigned n;         /* at most 32: presence is a bit mask */
    uint32_t required;  /* fields that must be present in every encoding */
} record_schema;

/* Presence masks: field i, and the first n fields. */
#define BIT(i) (UINT32_C(1) << (i))
#define ALL(n) (BIT(n) - 1)

/* The schema of proto_msg, which the codec also uses for every element of a
 * K_MSGS list. Defined in record.c. */
extern const record_schema *const record_msg_schema;

/* ---- the codec (record_codec.c) ---- */

/* Checks a string of kind k (K_ROOM, K_USER, K_MSGID, K_TEXT, K_NOTE) the
 * same way for the encoder and the decoder; PROTO_E_TYPE for other kinds. */
proto_err record_check_str(record_kind k, const char *s, size_t len);

/* Copies a checked string into field f of rec: inline, or into a new
 * allocation for K_TEXT (PROTO_E_NOMEM when that fails). */
proto_err record_store_str(void *rec, const record_field *f, const char *s, size_t len);

/* Releases what the fields of rec (size bytes, schema s) own and zeroes it. */
void record_free(const record_schema *s, void *rec, size_t size);

/* Parses data as one record of schema s into rec (size bytes); *seen gets the
 * mask of the fields present. On error rec is freed and zeroed. */
proto_err record_decode(const uint8_t *data, size_t len, const record_schema *s, void *rec,
                        size_t size, uint32_t *seen);

/* Appends rec (the fields in present) to out; on error out is restored. */
proto_err record_encode(proto_mp_buf *out, const record_schema *s, const void *rec,
                        uint32_t present);

/* The fields of m to encode: the required ones, rx when it is set. */
uint32_t record_msg_present(const proto_msg *m);

#endif
