/*
 * The record codec engine: one encoder, one decoder and one free that walk
 * the schemas of record.c (see record_internal.h), so every record, and every
 * message inside a batch, history or join reply, is checked by the same code.
 */
#include "proto/record_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"

/* Typed access to a field of a record. */
#define AT(rec, off, type) ((type *)((char *)(rec) + (off)))
#define CAT(rec, off, type) ((const type *)((const char *)(rec) + (off)))

/* ---- free ---- */

static void
msgs_free(proto_msg *msgs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        proto_msg_free(&msgs[i]);
    free(msgs);
}

void
record_free(const record_schema *s, void *rec, size_t size)
{
    for (unsigned i = 0; i < s->n; i++) {
        const record_field *f = &s->fields[i];
        if (f->kind == K_TEXT)
            free(*AT(rec, f->off, char *));
        else if (f->kind == K_MSGS)
            msgs_free(*AT(rec, f->off, proto_msg *), *AT(rec, f->len_off, size_t));
        else if (f->kind == K_USERS)
            free(*AT(rec, f->off, proto_user_name *));
    }
    memset(rec, 0, size);
}

/* ---- checks shared by encoder and decoder ---- */

proto_err
record_check_str(record_kind k, const char *s, size_t len)
{
    switch (k) {
    case K_ROOM:  return proto_check_room(s, len);
    case K_USER:  return proto_check_user(s, len);
    case K_MSGID: return proto_check_msgid(s, len);
    case K_TEXT:  return proto_check_text(s, len);
    case K_NOTE:
        if (len > PROTO_ACK_MSG_MAX)
            return PROTO_E_TOO_LONG;
        return proto_utf8_valid(s, len) ? PROTO_OK : PROTO_E_UTF8;
    default:
        return PROTO_E_TYPE;
    }
}

/* ---- decoding ---- */

static proto_err decode_map(const msgpack_object *o, const record_schema *s, void *rec,
                            uint32_t *seen);

/* Copies a checked string into the record: inline, or into a new allocation
 * for K_TEXT. The check bounds len by the inline array's size. */
proto_err
record_store_str(void *rec, const record_field *f, const char *s, size_t len)
{
    char *dst;
    if (f->kind == K_TEXT) {
        if (!(dst = malloc(len + 1)))
            return PROTO_E_NOMEM;
        *AT(rec, f->off, char *) = dst;
    } else {
        dst = AT(rec, f->off, char);
    }
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *AT(rec, f->len_off, size_t) = len;
    return PROTO_OK;
}

/* The start of a list field: v must be an array of at most f->max; its n
 * elements of size bytes are allocated zeroed into *out (NULL when n is 0)
 * and owned by the record from here on, so that its free releases a list
 * that fails half way. */
static proto_err
list_start(const msgpack_object *v, const record_field *f, void *rec, size_t size, void **out)
{
    *out = NULL;
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return PROTO_E_TYPE;
    size_t n = v->via.array.size;
    if (n > f->max)
        return PROTO_E_TOO_LONG;
    if (n == 0)
        return PROTO_OK;
    if (!(*out = calloc(n, size)))
        return PROTO_E_NOMEM;
    *AT(rec, f->off, void *) = *out;
    *AT(rec, f->len_off, size_t) = n;
    return PROTO_OK;
}

static proto_err
decode_msgs(const msgpack_object *v, const record_field *f, void *rec)
{
    proto_msg *msgs;
    proto_err err = list_start(v, f, rec, sizeof(*msgs), (void **)&msgs);
    if (err != PROTO_OK || !msgs)
        return err;
    for (size_t i = 0, n = v->via.array.size; i < n; i++) {
        uint32_t seen;
        err = decode_map(&v->via.array.ptr[i], record_msg_schema, &msgs[i], &seen);
        if (err != PROTO_OK)
            return err;
    }
    return PROTO_OK;
}

static proto_err
decode_users(const msgpack_object *v, const record_field *f, void *rec)
{
    proto_user_name *users;
    proto_err err = list_start(v, f, rec, sizeof(*users), (void **)&users);
    if (err != PROTO_OK || !users)
        return err;
    for (size_t i = 0, n = v->via.array.size; i < n; i++) {
        const msgpack_object *u = &v->via.array.ptr[i];
        if (u->type != MSGPACK_OBJECT_STR)
            return PROTO_E_TYPE;
        err = proto_check_user(u->via.str.ptr, u->via.str.size);
        if (err != PROTO_OK)
            return err;
        memcpy(users[i], u->via.str.ptr, u->via.str.size);
    }
    return PROTO_OK;
}

static proto_err
decode_value(const msgpack_object *v, const record_field *f, void *rec)
{
    proto_err err;
    switch (f->kind) {
    case K_U64:
        if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return PROTO_E_RANGE;
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return PROTO_E_TYPE;
        if (v->via.u64 < f->min || v->via.u64 > f->max)
            return PROTO_E_RANGE;
        *AT(rec, f->off, uint64_t) = v->via.u64;
        return PROTO_OK;
    case K_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return PROTO_E_TYPE;
        *AT(rec, f->off, bool) = v->via.boolean;
        return PROTO_OK;
    case K_CODE:
        if (v->type != MSGPACK_OBJECT_STR)
            return PROTO_E_TYPE;
        if (!proto_ack_code_from_name(v->via.str.ptr, v->via.str.size,
                                      AT(rec, f->off, proto_ack_code)))
            return PROTO_E_SYNTAX;
        return PROTO_OK;
    case K_MSGS:
        return decode_msgs(v, f, rec);
    case K_USERS:
        return decode_users(v, f, rec);
    default:
        if (v->type != MSGPACK_OBJECT_STR)
            return PROTO_E_TYPE;
        if ((err = record_check_str(f->kind, v->via.str.ptr, v->via.str.size)) != PROTO_OK)
            return err;
        return record_store_str(rec, f, v->via.str.ptr, v->via.str.size);
    }
}

/* Decodes map o into rec (zeroed by the caller) following s; *seen gets the
 * mask of the fields present. On error rec may hold part of the fields: the
 * caller frees it. */
static proto_err
decode_map(const msgpack_object *o, const record_schema *s, void *rec, uint32_t *seen)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return PROTO_E_TYPE;
    uint32_t mask = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return PROTO_E_TYPE;
        unsigned j;
        for (j = 0; j < s->n; j++)
            if (strlen(s->fields[j].key) == k->via.str.size &&
                memcmp(s->fields[j].key, k->via.str.ptr, k->via.str.size) == 0)
                break;
        if (j == s->n)
            return PROTO_E_UNKNOWN;
        if (mask & BIT(j))
            return PROTO_E_DUPLICATE;
        mask |= BIT(j);
        proto_err err = decode_value(&o->via.map.ptr[i].val, &s->fields[j], rec);
        if (err != PROTO_OK)
            return err;
    }
    if ((mask & s->required) != s->required)
        return PROTO_E_MISSING;
    *seen = mask;
    return PROTO_OK;
}

/* Parses data as one record of schema s into rec (size bytes). On error rec is
 * freed and zeroed. */
proto_err
record_decode(const uint8_t *data, size_t len, const record_schema *s, void *rec, size_t size,
              uint32_t *seen)
{
    memset(rec, 0, size);
    *seen = 0;
    if (len > PROTO_RECORD_MAX)
        return PROTO_E_TOO_LONG;
    proto_mp_doc doc;
    proto_err err = proto_mp_parse(&doc, data, len);
    if (err != PROTO_OK)
        return err;
    err = decode_map(&doc.root, s, rec, seen);
    proto_mp_doc_free(&doc);
    if (err != PROTO_OK)
        record_free(s, rec, size);
    return err;
}

/* ---- encoding ---- */

static proto_err encode_map(msgpack_packer *pk, const record_schema *s, const void *rec,
                            uint32_t present);

static proto_err
encode_msgs(msgpack_packer *pk, const record_field *f, const void *rec)
{
    const proto_msg *msgs = *CAT(rec, f->off, proto_msg *);
    size_t n = *CAT(rec, f->len_off, size_t);
    if (n > f->max)
        return PROTO_E_TOO_LONG;
    if (n && !msgs)
        return PROTO_E_MISSING;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        proto_err err = encode_map(pk, record_msg_schema, &msgs[i],
                                   record_msg_present(&msgs[i]));
        if (err != PROTO_OK)
            return err;
    }
    return PROTO_OK;
}

static proto_err
encode_users(msgpack_packer *pk, const record_field *f, const void *rec)
{
    const proto_user_name *users = *CAT(rec, f->off, proto_user_name *);
    size_t n = *CAT(rec, f->len_off, size_t);
    if (n > f->max)
        return PROTO_E_TOO_LONG;
    if (n && !users)
        return PROTO_E_MISSING;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(users[i], PROTO_USER_MAX + 1);
        proto_err err = proto_check_user(users[i], len);
        if (err != PROTO_OK)
            return err;
        proto_mp_pack_str(pk, users[i], len);
    }
    return PROTO_OK;
}

static proto_err
encode_value(msgpack_packer *pk, const record_field *f, const void *rec)
{
    proto_err err;
    switch (f->kind) {
    case K_U64: {
        uint64_t v = *CAT(rec, f->off, uint64_t);
        if (v < f->min || v > f->max)
            return PROTO_E_RANGE;
        msgpack_pack_uint64(pk, v);
        return PROTO_OK;
    }
    case K_BOOL:
        if (*CAT(rec, f->off, bool))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        return PROTO_OK;
    case K_CODE: {
        const char *name = proto_ack_code_name(*CAT(rec, f->off, proto_ack_code));
        if (!name)
            return PROTO_E_RANGE;
        proto_mp_pack_str(pk, name, strlen(name));
        return PROTO_OK;
    }
    case K_MSGS:
        return encode_msgs(pk, f, rec);
    case K_USERS:
        return encode_users(pk, f, rec);
    default: {
        const char *s = f->kind == K_TEXT ? *CAT(rec, f->off, char *) : CAT(rec, f->off, char);
        size_t len = *CAT(rec, f->len_off, size_t);
        if (!s && len)
            return PROTO_E_MISSING;
        if ((err = record_check_str(f->kind, s, len)) != PROTO_OK)
            return err;
        proto_mp_pack_str(pk, s, len);
        return PROTO_OK;
    }
    }
}

static proto_err
encode_map(msgpack_packer *pk, const record_schema *s, const void *rec, uint32_t present)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->n; i++)
        n += (present & BIT(i)) != 0;
    msgpack_pack_map(pk, n);
    for (unsigned i = 0; i < s->n; i++) {
        if (!(present & BIT(i)))
            continue;
        const record_field *f = &s->fields[i];
        proto_mp_pack_str(pk, f->key, strlen(f->key));
        proto_err err = encode_value(pk, f, rec);
        if (err != PROTO_OK)
            return err;
    }
    return PROTO_OK;
}

/* Appends rec (fields in present) to out; on error out is restored. */
proto_err
record_encode(proto_mp_buf *out, const record_schema *s, const void *rec, uint32_t present)
{
    if (out->failed)
        return out->growing ? PROTO_E_NOMEM : PROTO_E_NOSPACE;
    size_t start = out->len;
    msgpack_packer pk;
    proto_mp_packer_init(&pk, out);
    proto_err err = encode_map(&pk, s, rec, present);
    if (err == PROTO_OK && out->failed)
        err = out->growing ? PROTO_E_NOMEM : PROTO_E_NOSPACE;
    if (err != PROTO_OK) {
        out->len = start;
        out->failed = false;
    }
    return err;
}
