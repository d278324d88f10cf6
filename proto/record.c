/*
 * The records are described by tables (a schema per record: its fields, their
 * kinds and where each lives in the C struct). The engine that walks them is
 * record_codec.c; this file holds the tables and the public functions of
 * record.h, each a call into that engine with its record's schema.
 */
#include "proto/record_internal.h"

#include <string.h>

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

#define STR(key, k, type, m) { key, k, offsetof(type, m), offsetof(type, m##_len), 0, 0 }
#define U64(key, type, m, lo, hi) { key, K_U64, offsetof(type, m), 0, lo, hi }
#define FLAG(key, type, m) { key, K_BOOL, offsetof(type, m), 0, 0, 0 }
#define MSGS(key, type, m, hi) { key, K_MSGS, offsetof(type, m), offsetof(type, count), 0, hi }

static const record_field msg_fields[] = {
    STR("room", K_ROOM, proto_msg, room),
    STR("id", K_MSGID, proto_msg, id),
    STR("user", K_USER, proto_msg, user),
    STR("text", K_TEXT, proto_msg, text),
    U64("ts", proto_msg, ts, 0, UINT64_MAX),
    U64("seq", proto_msg, seq, 0, UINT64_MAX),
    U64("rx", proto_msg, rx_us, 0, UINT64_MAX),    /* optional: sent when not 0 */
};
static const record_schema msg_schema = { msg_fields, 7, ALL(6) };
const record_schema *const record_msg_schema = &msg_schema;

static const record_field batch_fields[] = {
    MSGS("msgs", proto_batch, msgs, PROTO_BATCH_MAX),
};
static const record_schema batch_schema = { batch_fields, 1, ALL(1) };

enum { ACK_OK, ACK_CODE, ACK_MSG };
static const record_field ack_fields[] = {
    [ACK_OK] = FLAG("ok", proto_ack, ok),
    [ACK_CODE] = { "code", K_CODE, offsetof(proto_ack, code), 0, 0, 0 },
    [ACK_MSG] = STR("msg", K_NOTE, proto_ack, msg),
};
static const record_schema ack_schema = { ack_fields, 3, BIT(ACK_OK) };

enum { HREQ_ROOM, HREQ_BEFORE, HREQ_LIMIT };
static const record_field history_req_fields[] = {
    [HREQ_ROOM] = STR("room", K_ROOM, proto_history_req, room),
    [HREQ_BEFORE] = U64("before", proto_history_req, before, 0, UINT64_MAX),
    [HREQ_LIMIT] = U64("limit", proto_history_req, limit, 1, PROTO_HISTORY_LIMIT_MAX),
};
static const record_schema history_req_schema = {
    history_req_fields, 3, BIT(HREQ_ROOM) | BIT(HREQ_LIMIT)
};

static const record_field history_reply_fields[] = {
    MSGS("msgs", proto_history_reply, msgs, PROTO_HISTORY_LIMIT_MAX),
    FLAG("more", proto_history_reply, more),
};
static const record_schema history_reply_schema = { history_reply_fields, 2, ALL(2) };

enum { JREQ_ROOM, JREQ_SINCE };
static const record_field join_req_fields[] = {
    [JREQ_ROOM] = STR("room", K_ROOM, proto_join_req, room),
    [JREQ_SINCE] = U64("since", proto_join_req, since, 0, UINT64_MAX),
};
static const record_schema join_req_schema = { join_req_fields, 2, BIT(JREQ_ROOM) };

static const record_field join_reply_fields[] = {
    U64("seq", proto_join_reply, seq, 0, UINT64_MAX),
    MSGS("missed", proto_join_reply, missed, PROTO_JOIN_MISSED_MAX),
    FLAG("more", proto_join_reply, more),
};
static const record_schema join_reply_schema = { join_reply_fields, 3, ALL(3) };

static const record_field room_fields[] = {
    STR("room", K_ROOM, proto_room, room),
};
static const record_schema room_schema = { room_fields, 1, ALL(1) };

static const record_field member_fields[] = {
    STR("room", K_ROOM, proto_member, room),
    STR("user", K_USER, proto_member, user),
};
static const record_schema member_schema = { member_fields, 2, ALL(2) };

static const record_field typing_fields[] = {
    STR("room", K_ROOM, proto_typing, room),
    STR("user", K_USER, proto_typing, user),
    U64("node", proto_typing, node, 0, UINT64_MAX),
    U64("conn", proto_typing, conn, 0, UINT64_MAX),
};
static const record_schema typing_schema = { typing_fields, 4, ALL(4) };

static const record_field users_fields[] = {
    { "users", K_USERS, offsetof(proto_users, users), offsetof(proto_users, count), 0,
      PROTO_USERS_MAX },
};
static const record_schema users_schema = { users_fields, 1, ALL(1) };

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
        const record_field *f = &msg_fields[i];
        if ((err = record_check_str(f->kind, vals[i], lens[i])) == PROTO_OK)
            err = record_store_str(m, f, vals[i], lens[i]);
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
    return record_encode(out, &ack_schema, ack,
                         ack->ok ? BIT(ACK_OK) : ALL(3));
}

proto_err
proto_ack_decode(const uint8_t *data, size_t len, proto_ack *ack)
{
    uint32_t seen;
    proto_err err = record_decode(data, len, &ack_schema, ack, sizeof(*ack), &seen);
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

uint32_t
record_msg_present(const proto_msg *m)
{
    return msg_schema.required | (m->rx_us ? BIT(6) : 0);
}

proto_err
proto_msg_encode(const proto_msg *m, proto_mp_buf *out)
{
    return record_encode(out, &msg_schema, m, record_msg_present(m));
}

proto_err
proto_msg_decode(const uint8_t *data, size_t len, proto_msg *m)
{
    uint32_t seen;
    return record_decode(data, len, &msg_schema, m, sizeof(*m), &seen);
}

void
proto_msg_free(proto_msg *m)
{
    record_free(&msg_schema, m, sizeof(*m));
}

/* ---- history and join: requests with one optional field ---- */

/* The encode, decode and free of a request record whose one optional field
 * (bit) is sent when r->has is set, and sets r->has to whether it came. */
#define OPTIONAL_FIELD_RECORD(name, type, schema, has, bit)                          \
    proto_err proto_##name##_encode(const type *r, proto_mp_buf *out)               \
    {                                                                               \
        return record_encode(out, &schema, r,                                       \
                             schema.required | (r->has ? BIT(bit) : 0));             \
    }                                                                               \
                                                                                    \
    proto_err proto_##name##_decode(const uint8_t *data, size_t len, type *r)      \
    {                                                                               \
        uint32_t seen;                                                              \
        proto_err err = record_decode(data, len, &schema, r, sizeof(*r), &seen);    \
        r->has = (seen & BIT(bit)) != 0;                                            \
        return err;                                                                 \
    }                                                                               \
                                                                                    \
    void proto_##name##_free(type *r)                                                \
    {                                                                               \
        record_free(&schema, r, sizeof(*r));                                        \
    }

OPTIONAL_FIELD_RECORD(history_req, proto_history_req, history_req_schema, has_before,
                      HREQ_BEFORE)
OPTIONAL_FIELD_RECORD(join_req, proto_join_req, join_req_schema, has_since, JREQ_SINCE)

/* ---- records whose every field is always present ---- */

/* The encode, decode and free of a record whose fields are all required:
 * one walk of its schema each. */
#define PLAIN_RECORD(name, type)                                                \
    proto_err                                                                   \
    proto_##name##_encode(const type *r, proto_mp_buf *out)                     \
    {                                                                           \
        return record_encode(out, &name##_schema, r, name##_schema.required);   \
    }                                                                           \
    proto_err                                                                   \
    proto_##name##_decode(const uint8_t *data, size_t len, type *r)             \
    {                                                                           \
        uint32_t seen;                                                          \
        return record_decode(data, len, &name##_schema, r, sizeof(*r), &seen);  \
    }                                                                           \
    void                                                                        \
    proto_##name##_free(type *r)                                                \
    {                                                                           \
        record_free(&name##_schema, r, sizeof(*r));                             \
    }

PLAIN_RECORD(batch, proto_batch)
PLAIN_RECORD(history_reply, proto_history_reply)
PLAIN_RECORD(join_reply, proto_join_reply)
PLAIN_RECORD(room, proto_room)
PLAIN_RECORD(member, proto_member)
PLAIN_RECORD(typing, proto_typing)
PLAIN_RECORD(users, proto_users)
