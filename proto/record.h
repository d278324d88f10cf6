/*
 * The chat records: the payloads that actors exchange inside envelopes (and
 * that travel over Kafka and Redis), msgpack-encoded.
 *
 * Every record is a msgpack map with short string keys:
 *
 *   PROTO_T_MESSAGE        {room, id, user, text, ts, seq}
 *   PROTO_T_MESSAGE_BATCH  {msgs: [message...]}            at most PROTO_BATCH_MAX
 *   PROTO_T_ACK            {ok: true} or {ok: false, code: "not_member", msg: "..."}
 *   PROTO_T_HISTORY_REQ    {room, before?, limit}          limit 1..200
 *   PROTO_T_HISTORY_REPLY  {msgs: [message...], more}      at most 200
 *   PROTO_T_JOIN_REQ       {room, since?}
 *   PROTO_T_JOIN_REPLY     {seq, missed: [message...], more}  at most 500
 *   PROTO_T_ROOM           {room}
 *   PROTO_T_MEMBER         {room, user}
 *   PROTO_T_TYPING         {room, user, node, conn}
 *   PROTO_T_USERS          {users: [user...]}              at most PROTO_USERS_MAX
 *
 * Strings are checked with proto/names.h (room, id, user, text); ts, seq,
 * before, since are unsigned 64-bit integers.
 *
 * Encoding: proto_X_encode(rec, buf) appends one record to a proto_mp_buf
 * (fixed or growing, see mp.h). It checks the record as strictly as the
 * decoder would, so whatever is encoded decodes again. On error the buffer is
 * left as it was before the call and the code says why: a field's check
 * (PROTO_E_EMPTY, PROTO_E_TOO_LONG, PROTO_E_SYNTAX, PROTO_E_UTF8,
 * PROTO_E_RANGE), PROTO_E_NOSPACE (fixed buffer too small) or PROTO_E_NOMEM.
 *
 * Decoding: proto_X_decode(data, len, rec) reads outside input strictly: the
 * bytes must be exactly one map with exactly the record's fields, each once,
 * of the right type and valid, and nothing after it. On success *rec owns
 * copies of everything (it does not point into data); release it with
 * proto_X_free(). On error *rec is left zeroed, nothing needs freeing, and the
 * code is the first problem found: PROTO_E_MALFORMED, PROTO_E_TRAILING,
 * PROTO_E_TYPE (wrong type, or a key that is not a string), PROTO_E_MISSING,
 * PROTO_E_UNKNOWN (a field the record does not have), PROTO_E_DUPLICATE, a
 * field's check as above, or PROTO_E_NOMEM.
 *
 * proto_X_free() releases what a record owns and zeroes it; it is safe on a
 * zeroed record and may be called twice.
 */
#ifndef CHATD_PROTO_RECORD_H
#define CHATD_PROTO_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/mp.h"
#include "proto/names.h"
#include "proto/proto.h"

/* Record type ids, carried in the envelope's type. 1..99 are the runtime's
 * system messages. */
enum proto_type {
    PROTO_T_MESSAGE = 100,
    PROTO_T_MESSAGE_BATCH = 101,
    PROTO_T_ACK = 102,
    PROTO_T_HISTORY_REQ = 103,
    PROTO_T_HISTORY_REPLY = 104,
    PROTO_T_JOIN_REQ = 105,
    PROTO_T_JOIN_REPLY = 106,
    PROTO_T_ROOM = 107,
    PROTO_T_MEMBER = 108,
    PROTO_T_TYPING = 109,
    PROTO_T_USERS = 110,
};

/* A short static name of a record type ("message", "ack", ...) for logs;
 * NULL when type is not a record type. */
const char *proto_type_name(uint32_t type);

#define PROTO_BATCH_MAX             1024  /* messages in one batch */
#define PROTO_HISTORY_LIMIT_MAX     200
#define PROTO_HISTORY_LIMIT_DEFAULT 50    /* for the socket; the record requires limit */
#define PROTO_JOIN_MISSED_MAX       500
#define PROTO_ACK_MSG_MAX           256   /* bytes of an ack's error message */
#define PROTO_USERS_MAX             10000 /* users in one list */

/* A record's encoding is at most this long; longer input is PROTO_E_TOO_LONG. */
#define PROTO_RECORD_MAX (16u * 1024 * 1024)

/* ---- message ---- */

/* A chat message. Names are stored inline, NUL-terminated; text is owned,
 * NUL-terminated (text may itself contain NUL bytes: use text_len). */
typedef struct proto_msg {
    char room[PROTO_DM_ROOM_MAX + 1];
    char id[PROTO_MSGID_MAX + 1];
    char user[PROTO_USER_MAX + 1];
    size_t room_len, id_len, user_len;
    char *text;             /* malloc'd, owned by the record */
    size_t text_len;
    uint64_t ts;            /* ms since the epoch, at acceptance */
    uint64_t seq;           /* the room's sequence number; 0: not yet stored */
    /* Trace, not stored: us since the epoch when the accepting socket read
     * the client's frame; 0 (not encoded) when unknown, e.g. for a message
     * read back from PostgreSQL. Each stage of the path observes its age
     * (chatd_stage_seconds). */
    uint64_t rx_us;
} proto_msg;

/*
 * Fills *m with copies of the given fields after checking them (names.h).
 * Returns PROTO_OK, a check's code, or PROTO_E_NOMEM; on error *m is zeroed.
 * *m is overwritten, not freed: free it first if it held a message.
 */
proto_err proto_msg_set(proto_msg *m, const char *room, size_t room_len,
                        const char *id, size_t id_len,
                        const char *user, size_t user_len,
                        const char *text, size_t text_len,
                        uint64_t ts, uint64_t seq);

/* True when a and b hold the same stored fields (rx_us is not one). */
bool proto_msg_equal(const proto_msg *a, const proto_msg *b);

proto_err proto_msg_encode(const proto_msg *m, proto_mp_buf *out);
proto_err proto_msg_decode(const uint8_t *data, size_t len, proto_msg *m);
void proto_msg_free(proto_msg *m);

/* ---- message batch (store -> fan-out) ---- */

typedef struct proto_batch {
    proto_msg *msgs;        /* count messages, owned (decoded) */
    size_t count;           /* 0..PROTO_BATCH_MAX */
} proto_batch;

proto_err proto_batch_encode(const proto_batch *b, proto_mp_buf *out);
proto_err proto_batch_decode(const uint8_t *data, size_t len, proto_batch *b);
void proto_batch_free(proto_batch *b);

/* ---- ack ---- */

/* The error codes of the client protocol, in the order they are checked
 * (PROTOCOL.md), plus internal. PROTO_ACK_NONE is the code of a success. */
typedef enum proto_ack_code {
    PROTO_ACK_NONE = 0,
    PROTO_ACK_BAD_REQUEST,
    PROTO_ACK_TOO_LARGE,
    PROTO_ACK_FORBIDDEN,
    PROTO_ACK_NOT_MEMBER,
    PROTO_ACK_RATE_LIMITED,
    PROTO_ACK_UNAVAILABLE,
    PROTO_ACK_INTERNAL,
} proto_ack_code;

/* The protocol name of code ("bad_request", ...); NULL for PROTO_ACK_NONE or
 * a value that is not a code. */
const char *proto_ack_code_name(proto_ack_code code);

/* Looks up the code whose protocol name is the len bytes at name. Returns
 * true and sets *code, or returns false and leaves *code alone. */
bool proto_ack_code_from_name(const char *name, size_t len, proto_ack_code *code);

/* A reply to a request: ok, or an error code with a message (0..256 bytes of
 * UTF-8, may be empty). When ok, code is PROTO_ACK_NONE and msg is empty. */
typedef struct proto_ack {
    bool ok;
    proto_ack_code code;
    char msg[PROTO_ACK_MSG_MAX + 1];
    size_t msg_len;
} proto_ack;

/* Fills *ack with an error: code (not PROTO_ACK_NONE) and the first at most
 * PROTO_ACK_MSG_MAX bytes of the NUL-terminated msg (cut at a character
 * boundary when msg is UTF-8). */
void proto_ack_set_error(proto_ack *ack, proto_ack_code code, const char *msg);

/* Encoding an ack that is not ok checks code (PROTO_E_RANGE when it is not a
 * code) and msg; an ok ack encodes as {ok: true}, whatever code and msg hold. */
proto_err proto_ack_encode(const proto_ack *ack, proto_mp_buf *out);
proto_err proto_ack_decode(const uint8_t *data, size_t len, proto_ack *ack);
void proto_ack_free(proto_ack *ack);

/* ---- history ---- */

typedef struct proto_history_req {
    char room[PROTO_DM_ROOM_MAX + 1];
    size_t room_len;
    bool has_before;
    uint64_t before;        /* only messages with seq < before */
    uint64_t limit;         /* 1..PROTO_HISTORY_LIMIT_MAX */
} proto_history_req;

proto_err proto_history_req_encode(const proto_history_req *r, proto_mp_buf *out);
proto_err proto_history_req_decode(const uint8_t *data, size_t len, proto_history_req *r);
void proto_history_req_free(proto_history_req *r);

typedef struct proto_history_reply {
    proto_msg *msgs;        /* ascending seq, owned (decoded) */
    size_t count;           /* 0..PROTO_HISTORY_LIMIT_MAX */
    bool more;              /* older messages exist */
} proto_history_reply;

proto_err proto_history_reply_encode(const proto_history_reply *r, proto_mp_buf *out);
proto_err proto_history_reply_decode(const uint8_t *data, size_t len,
                                     proto_history_reply *r);
void proto_history_reply_free(proto_history_reply *r);

/* ---- join ---- */

typedef struct proto_join_req {
    char room[PROTO_DM_ROOM_MAX + 1];
    size_t room_len;
    bool has_since;
    uint64_t since;         /* replay messages with seq > since */
} proto_join_req;

proto_err proto_join_req_encode(const proto_join_req *r, proto_mp_buf *out);
proto_err proto_join_req_decode(const uint8_t *data, size_t len, proto_join_req *r);
void proto_join_req_free(proto_join_req *r);

typedef struct proto_join_reply {
    uint64_t seq;           /* the room's latest stored seq (0: empty room) */
    proto_msg *missed;      /* ascending seq, owned (decoded) */
    size_t count;           /* 0..PROTO_JOIN_MISSED_MAX */
    bool more;              /* more messages after the last missed one */
} proto_join_reply;

proto_err proto_join_reply_encode(const proto_join_reply *r, proto_mp_buf *out);
proto_err proto_join_reply_decode(const uint8_t *data, size_t len, proto_join_reply *r);
void proto_join_reply_free(proto_join_reply *r);

/* ---- control records: a room, a member of a room, typing, a user list ---- */

typedef struct proto_room {
    char room[PROTO_DM_ROOM_MAX + 1];
    size_t room_len;
} proto_room;

proto_err proto_room_encode(const proto_room *r, proto_mp_buf *out);
proto_err proto_room_decode(const uint8_t *data, size_t len, proto_room *r);
void proto_room_free(proto_room *r);

typedef struct proto_member {
    char room[PROTO_DM_ROOM_MAX + 1];
    char user[PROTO_USER_MAX + 1];
    size_t room_len, user_len;
} proto_member;

proto_err proto_member_encode(const proto_member *m, proto_mp_buf *out);
proto_err proto_member_decode(const uint8_t *data, size_t len, proto_member *m);
void proto_member_free(proto_member *m);

/* Someone is typing in room; node and conn name the connection it came from,
 * so that its own node does not echo it back to that connection. */
typedef struct proto_typing {
    char room[PROTO_DM_ROOM_MAX + 1];
    char user[PROTO_USER_MAX + 1];
    size_t room_len, user_len;
    uint64_t node;
    uint64_t conn;
} proto_typing;

proto_err proto_typing_encode(const proto_typing *t, proto_mp_buf *out);
proto_err proto_typing_decode(const uint8_t *data, size_t len, proto_typing *t);
void proto_typing_free(proto_typing *t);

typedef char proto_user_name[PROTO_USER_MAX + 1];

typedef struct proto_users {
    proto_user_name *users;     /* count NUL-terminated names, owned (decoded) */
    size_t count;               /* 0..PROTO_USERS_MAX */
} proto_users;

proto_err proto_users_encode(const proto_users *u, proto_mp_buf *out);
proto_err proto_users_decode(const uint8_t *data, size_t len, proto_users *u);
void proto_users_free(proto_users *u);

#endif
