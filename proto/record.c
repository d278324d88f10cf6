/*
 * The records are described by tables (a schema per record: its fields, their
 * kinds and where each lives in the C struct). One encoder, one decoder and
 * one free walk those tables, so every record, and every message inside a
 * batch, history or join reply, is checked by the same code.
 */
#include "proto/record.h"

#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"

/* ---- record types and ack codes ---- */

const char *
proto_type_name(uint32_t type)
{
    switch (type) {
    case PROTO_T_MESSAGE:       return "message";
    case PROTO_T_MESSAGE_BATCH: return "message_batch";
    case PROTO_T_ACK:           return "ack";
    case PROTO_T_HISTORY_REQ:   return "history_req";
    case PROTO_T_HISTORY_REPLY: return "history_reply";
    case PROTO_T_JOIN_REQ:      return "join_req";
    case PROTO_T_JOIN_REPLY:    return "join_reply";
    case PROTO_T_ROOM:          return "room";
    case PROTO_T_MEMBER:        return "member";
    case PROTO_T_TYPING:        return "typing";
    case PROTO_T_USERS:         return "users";
    }
    return NULL;
}

static const char *const ack_names[] = {
    [PROTO_ACK_BAD_REQUEST]  = "bad_request",
    [PROTO_ACK_TOO_LARGE]    = "too_large",
    [PROTO_ACK_FORBIDDEN]    = "forbidden",
    [PROTO_ACK_NOT_MEMBER]   = "not_member",
    [PROTO_ACK_RATE_LIMITED] = "rate_limited",
    [PROTO_ACK_UNAVAILABLE]  = "unavailable",
    [PROTO_ACK_INTERNAL]     = "internal",
};
#define ACK_NAMES (sizeof(ack_names) / sizeof(ack_names[0]))

const char *
proto_ack_code_name(proto_ack_code code)
{
    if ((unsigned)code >= ACK_NAMES)
        return NULL;
    return ack_names[code];   /* NULL for PROTO_ACK_NONE */
}

bool
proto_ack_code_from_name(const char *name, size_t len, proto_ack_code *code)
{
    for (unsigned i = 1; i < ACK_NAMES; i++) {
        if (strlen(ack_names[i]) == len && memcmp(ack_names[i], name, len) == 0) {
            *code = (proto_ack_code)i;
            return true;
        }
    }
    return false;
}

/* ---- schemas ---- */

typedef enum kind {
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
} kind;

typedef struct field {
    const char *key;
    kind kind;
    size_t off;         /* the value in the struct */
    size_t len_off;     /* its length or count (strings, K_MSGS) */
    uint64_t min, max;  /* K_U64 range; K_MSGS: max count */
} field;

typedef struct schema {
    const field *fields;
    unsigned n;         /* at most 32: presence is a bit mask */
    uint32_t required;  /* fields that must be present in every encoding */
} schema;

#define BIT(i) (UINT32_C(1) << (i))
#define ALL(n) (BIT(n) - 1)

#define STR(key, k, type, m) { key, k, offsetof(type, m), offsetof(type, m##_len), 0, 0 }
#define U64(key, type, m, lo, hi) { key, K_U64, offsetof(type, m), 0, lo, hi }
#define FLAG(key, type, m) { key, K_BOOL, offsetof(type, m), 0, 0, 0 }
#define MSGS(key, type, m, hi) { key, K_MSGS, offsetof(type, m), offsetof(type, count), 0, hi }

static const field msg_fields[] = {
    STR("room", K_ROOM, proto_msg, room),
    STR("id", K_MSGID, proto_msg, id),
    STR("user", K_USER, proto_msg, user),
    STR("text", K_TEXT, proto_msg, text),
    U64("ts", proto_msg, ts, 0, UINT64_MAX),
    U64("seq", proto_msg, seq, 0, UINT64_MAX),
};
static const schema msg_schema = { msg_fields, 6, ALL(6) };

static const field batch_fields[] = {
    MSGS("msgs", proto_batch, msgs, PROTO_BATCH_MAX),
};
static const schema batch_schema = { batch_fields, 1, ALL(1) };

enum { ACK_OK, ACK_CODE, ACK_MSG };
static const field ack_fields[] = {
    [ACK_OK] = FLAG("ok", proto_ack, ok),
    [ACK_CODE] = { "code", K_CODE, offsetof(proto_ack, code), 0, 0, 0 },
    [ACK_MSG] = STR("msg", K_NOTE, proto_ack, msg),
};
static const schema ack_schema = { ack_fields, 3, BIT(ACK_OK) };

enum { HREQ_ROOM, HREQ_BEFORE, HREQ_LIMIT };
static const field history_req_fields[] = {
    [HREQ_ROOM] = STR("room", K_ROOM, proto_history_req, room),
    [HREQ_BEFORE] = U64("before", proto_history_req, before, 0, UINT64_MAX),
    [HREQ_LIMIT] = U64("limit", proto_history_req, limit, 1, PROTO_HISTORY_LIMIT_MAX),
};
static const schema history_req_schema = {
    history_req_fields, 3, BIT(HREQ_ROOM) | BIT(HREQ_LIMIT)
};

static const field history_reply_fields[] = {
    MSGS("msgs", proto_history_reply, msgs, PROTO_HISTORY_LIMIT_MAX),
    FLAG("more", proto_history_reply, more),
};
static const schema history_reply_schema = { history_reply_fields, 2, ALL(2) };

enum { JREQ_ROOM, JREQ_SINCE };
static const field join_req_fields[] = {
    [JREQ_ROOM] = STR("room", K_ROOM, proto_join_req, room),
    [JREQ_SINCE] = U64("since", proto_join_req, since, 0, UINT64_MAX),
};
static const schema join_req_schema = { join_req_fields, 2, BIT(JREQ_ROOM) };

static const field join_reply_fields[] = {
    U64("seq", proto_join_reply, seq, 0, UINT64_MAX),
    MSGS("missed", proto_join_reply, missed, PROTO_JOIN_MISSED_MAX),
    FLAG("more", proto_join_reply, more),
};
static const schema join_reply_schema = { join_reply_fields, 3, ALL(3) };

static const field room_fields[] = {
    STR("room", K_ROOM, proto_room, room),
};
static const schema room_schema = { room_fields, 1, ALL(1) };

static const field member_fields[] = {
    STR("room", K_ROOM, proto_member, room),
    STR("user", K_USER, proto_member, user),
};
static const schema member_schema = { member_fields, 2, ALL(2) };

static const field typing_fields[] = {
    STR("room", K_ROOM, proto_typing, room),
    STR("user", K_USER, proto_typing, user),
    U64("node", proto_typing, node, 0, UINT64_MAX),
    U64("conn", proto_typing, conn, 0, UINT64_MAX),
};
static const schema typing_schema = { typing_fields, 4, ALL(4) };

static const field users_fields[] = {
    { "users", K_USERS, offsetof(proto_users, users), offsetof(proto_users, count), 0,
      PROTO_USERS_MAX },
};
static const schema users_schema = { users_fields, 1, ALL(1) };

/* Typed access to a field of a record. */
#define AT(rec, off, type) ((type *)((char *)(rec) + (off)))
#define CAT(rec, off, type) ((const type *)((const char *)(rec) + (off)))

/* ---- free ---- */

static void record_free(const schema *s, void *rec, size_t size);

static void
msgs_free(proto_msg *msgs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        proto_msg_free(&msgs[i]);
    free(msgs);
}

static void
record_free(const schema *s, void *rec, size_t size)
{
    for (unsigned i = 0; i < s->n; i++) {
        const field *f = &s->fields[i];
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

static proto_err
check_str(kind k, const char *s, size_t len)
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

static proto_err decode_map(const msgpack_object *o, const schema *s, void *rec,
                            uint32_t *seen);

/* Copies a checked string into the record: inline, or into a new allocation
 * for K_TEXT. The check bounds len by the inline array's size. */
static proto_err
store_str(void *rec, const field *f, const char *s, size_t len)
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

static proto_err
decode_msgs(const msgpack_object *v, const field *f, void *rec)
{
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return PROTO_E_TYPE;
    size_t n = v->via.array.size;
    if (n > f->max)
        return PROTO_E_TOO_LONG;
    if (n == 0)
        return PROTO_OK;
    proto_msg *msgs = calloc(n, sizeof(*msgs));
    if (!msgs)
        return PROTO_E_NOMEM;
    /* Owned by the record from here on, so that its free releases a list
     * that fails half way. */
    *AT(rec, f->off, proto_msg *) = msgs;
    *AT(rec, f->len_off, size_t) = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t seen;
        proto_err err = decode_map(&v->via.array.ptr[i], &msg_schema, &msgs[i], &seen);
        if (err != PROTO_OK)
            return err;
    }
    return PROTO_OK;
}

static proto_err
decode_users(const msgpack_object *v, const field *f, void *rec)
{
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return PROTO_E_TYPE;
    size_t n = v->via.array.size;
    if (n > f->max)
        return PROTO_E_TOO_LONG;
    if (n == 0)
        return PROTO_OK;
    proto_user_name *users = calloc(n, sizeof(*users));
    if (!users)
        return PROTO_E_NOMEM;
    *AT(rec, f->off, proto_user_name *) = users;
    *AT(rec, f->len_off, size_t) = n;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *u = &v->via.array.ptr[i];
        if (u->type != MSGPACK_OBJECT_STR)
            return PROTO_E_TYPE;
        proto_err err = proto_check_user(u->via.str.ptr, u->via.str.size);
        if (err != PROTO_OK)
            return err;
        memcpy(users[i], u->via.str.ptr, u->via.str.size);
    }
    return PROTO_OK;
}

static proto_err
decode_value(const msgpack_object *v, const field *f, void *rec)
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
        if ((err = check_str(f->kind, v->via.str.ptr, v->via.str.size)) != PROTO_OK)
            return err;
        return store_str(rec, f, v->via.str.ptr, v->via.str.size);
    }
}

/* Decodes map o into rec (zeroed by the caller) following s; *seen gets the
 * mask of the fields present. On error rec may hold part of the fields: the
 * caller frees it. */
static proto_err
decode_map(const msgpack_object *o, const schema *s, void *rec, uint32_t *seen)
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
static proto_err
decode_record(const uint8_t *data, size_t len, const schema *s, void *rec, size_t size,
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

static proto_err encode_map(msgpack_packer *pk, const schema *s, const void *rec,
                            uint32_t present);

static proto_err
encode_value(msgpack_packer *pk, const field *f, const void *rec)
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
    case K_MSGS: {
        const proto_msg *msgs = *CAT(rec, f->off, proto_msg *);
        size_t n = *CAT(rec, f->len_off, size_t);
        if (n > f->max)
            return PROTO_E_TOO_LONG;
        if (n && !msgs)
            return PROTO_E_MISSING;
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            if ((err = encode_map(pk, &msg_schema, &msgs[i], msg_schema.required)) != PROTO_OK)
                return err;
        return PROTO_OK;
    }
    case K_USERS: {
        const proto_user_name *users = *CAT(rec, f->off, proto_user_name *);
        size_t n = *CAT(rec, f->len_off, size_t);
        if (n > f->max)
            return PROTO_E_TOO_LONG;
        if (n && !users)
            return PROTO_E_MISSING;
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++) {
            size_t len = strnlen(users[i], PROTO_USER_MAX + 1);
            if ((err = proto_check_user(users[i], len)) != PROTO_OK)
                return err;
            proto_mp_pack_str(pk, users[i], len);
        }
        return PROTO_OK;
    }
    default: {
        const char *s = f->kind == K_TEXT ? *CAT(rec, f->off, char *) : CAT(rec, f->off, char);
        size_t len = *CAT(rec, f->len_off, size_t);
        if (!s && len)
            return PROTO_E_MISSING;
        if ((err = check_str(f->kind, s, len)) != PROTO_OK)
            return err;
        proto_mp_pack_str(pk, s, len);
        return PROTO_OK;
    }
    }
}

static proto_err
encode_map(msgpack_packer *pk, const schema *s, const void *rec, uint32_t present)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->n; i++)
        n += (present & BIT(i)) != 0;
    msgpack_pack_map(pk, n);
    for (unsigned i = 0; i < s->n; i++) {
        if (!(present & BIT(i)))
            continue;
        const field *f = &s->fields[i];
        proto_mp_pack_str(pk, f->key, strlen(f->key));
        proto_err err = encode_value(pk, f, rec);
        if (err != PROTO_OK)
            return err;
    }
    return PROTO_OK;
}

/* Appends rec (fields in present) to out; on error out is restored. */
static proto_err
encode_record(proto_mp_buf *out, const schema *s, const void *rec, uint32_t present)
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

/* ---- message ---- */

proto_err
proto_msg_set(proto_msg *m, const char *room, size_t room_len, const char *id,
              size_t id_len, const char *user, size_t user_len, const char *text,
              size_t text_len, uint64_t ts, uint64_t seq)
{
    const char *vals[] = { room, id, user, text };
    const size_t lens[] = { room_len, id_len, user_len, text_len };
    proto_err err = PROTO_OK;

    memset(m, 0, sizeof(*m));
    for (unsigned i = 0; i < 4 && err == PROTO_OK; i++) {
        const field *f = &msg_fields[i];
        if ((err = check_str(f->kind, vals[i], lens[i])) == PROTO_OK)
            err = store_str(m, f, vals[i], lens[i]);
    }
    if (err != PROTO_OK) {
        proto_msg_free(m);
        return err;
    }
    m->ts = ts;
    m->seq = seq;
    return PROTO_OK;
}

bool
proto_msg_equal(const proto_msg *a, const proto_msg *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0 &&
           a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0 &&
           a->user_len == b->user_len && memcmp(a->user, b->user, a->user_len) == 0 &&
           a->text_len == b->text_len &&
           (a->text_len == 0 || memcmp(a->text, b->text, a->text_len) == 0) &&
           a->ts == b->ts && a->seq == b->seq;
}

/* ---- ack ---- */

void
proto_ack_set_error(proto_ack *ack, proto_ack_code code, const char *msg)
{
    size_t len = strlen(msg);
    if (len > PROTO_ACK_MSG_MAX) {
        len = PROTO_ACK_MSG_MAX;
        while (len > 0 && ((unsigned char)msg[len] & 0xC0) == 0x80)
            len--;
    }
    memset(ack, 0, sizeof(*ack));
    ack->code = code;
    memcpy(ack->msg, msg, len);
    ack->msg_len = len;
}

proto_err
proto_ack_encode(const proto_ack *ack, proto_mp_buf *out)
{
    return encode_record(out, &ack_schema, ack,
                         ack->ok ? BIT(ACK_OK) : ALL(3));
}

proto_err
proto_ack_decode(const uint8_t *data, size_t len, proto_ack *ack)
{
    uint32_t seen;
    proto_err err = decode_record(data, len, &ack_schema, ack, sizeof(*ack), &seen);
    if (err != PROTO_OK)
        return err;
    /* An ok ack carries nothing else; an error carries both code and msg. */
    if (ack->ok && seen != BIT(ACK_OK))
        err = PROTO_E_UNKNOWN;
    else if (!ack->ok && seen != ALL(3))
        err = PROTO_E_MISSING;
    if (err != PROTO_OK)
        proto_ack_free(ack);
    return err;
}

void
proto_ack_free(proto_ack *ack)
{
    record_free(&ack_schema, ack, sizeof(*ack));
}

/* ---- history ---- */

proto_err
proto_history_req_encode(const proto_history_req *r, proto_mp_buf *out)
{
    return encode_record(out, &history_req_schema, r,
                         history_req_schema.required | (r->has_before ? BIT(HREQ_BEFORE) : 0));
}

proto_err
proto_history_req_decode(const uint8_t *data, size_t len, proto_history_req *r)
{
    uint32_t seen;
    proto_err err = decode_record(data, len, &history_req_schema, r, sizeof(*r), &seen);
    r->has_before = (seen & BIT(HREQ_BEFORE)) != 0;
    return err;
}

void
proto_history_req_free(proto_history_req *r)
{
    record_free(&history_req_schema, r, sizeof(*r));
}

/* ---- join ---- */

proto_err
proto_join_req_encode(const proto_join_req *r, proto_mp_buf *out)
{
    return encode_record(out, &join_req_schema, r,
                         join_req_schema.required | (r->has_since ? BIT(JREQ_SINCE) : 0));
}

proto_err
proto_join_req_decode(const uint8_t *data, size_t len, proto_join_req *r)
{
    uint32_t seen;
    proto_err err = decode_record(data, len, &join_req_schema, r, sizeof(*r), &seen);
    r->has_since = (seen & BIT(JREQ_SINCE)) != 0;
    return err;
}

void
proto_join_req_free(proto_join_req *r)
{
    record_free(&join_req_schema, r, sizeof(*r));
}

/* ---- records whose every field is always present ---- */

/* The encode, decode and free of a record whose fields are all required:
 * one walk of its schema each. */
#define PLAIN_RECORD(name, type)                                                \
    proto_err                                                                   \
    proto_##name##_encode(const type *r, proto_mp_buf *out)                     \
    {                                                                           \
        return encode_record(out, &name##_schema, r, name##_schema.required);   \
    }                                                                           \
    proto_err                                                                   \
    proto_##name##_decode(const uint8_t *data, size_t len, type *r)             \
    {                                                                           \
        uint32_t seen;                                                          \
        return decode_record(data, len, &name##_schema, r, sizeof(*r), &seen);  \
    }                                                                           \
    void                                                                        \
    proto_##name##_free(type *r)                                                \
    {                                                                           \
        record_free(&name##_schema, r, sizeof(*r));                             \
    }

PLAIN_RECORD(msg, proto_msg)
PLAIN_RECORD(batch, proto_batch)
PLAIN_RECORD(history_reply, proto_history_reply)
PLAIN_RECORD(join_reply, proto_join_reply)
PLAIN_RECORD(room, proto_room)
PLAIN_RECORD(member, proto_member)
PLAIN_RECORD(typing, proto_typing)
PLAIN_RECORD(users, proto_users)
