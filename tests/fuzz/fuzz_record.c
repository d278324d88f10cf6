/* libFuzzer target: arbitrary bytes decoded as every record kind. Decoding
 * must never crash or leak; a record that decodes must encode, decode again to
 * an equal record, and encode again to the same bytes (a round trip). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
msgs_equal(const proto_msg *a, size_t an, const proto_msg *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (!proto_msg_equal(&a[i], &b[i]))
            return false;
    return true;
}

static bool
eq_msg(const proto_msg *a, const proto_msg *b)
{
    return proto_msg_equal(a, b);
}

static bool
eq_batch(const proto_batch *a, const proto_batch *b)
{
    return msgs_equal(a->msgs, a->count, b->msgs, b->count);
}

static bool
eq_ack(const proto_ack *a, const proto_ack *b)
{
    return a->ok == b->ok && a->code == b->code && a->msg_len == b->msg_len &&
           memcmp(a->msg, b->msg, a->msg_len) == 0;
}

static bool
eq_history_req(const proto_history_req *a, const proto_history_req *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0 &&
           a->has_before == b->has_before && a->before == b->before && a->limit == b->limit;
}

static bool
eq_history_reply(const proto_history_reply *a, const proto_history_reply *b)
{
    return a->more == b->more && msgs_equal(a->msgs, a->count, b->msgs, b->count);
}

static bool
eq_join_req(const proto_join_req *a, const proto_join_req *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0 &&
           a->has_since == b->has_since && a->since == b->since;
}

static bool
eq_join_reply(const proto_join_reply *a, const proto_join_reply *b)
{
    return a->seq == b->seq && a->more == b->more &&
           msgs_equal(a->missed, a->count, b->missed, b->count);
}

static bool
eq_room(const proto_room *a, const proto_room *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0;
}

static bool
eq_member(const proto_member *a, const proto_member *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0 &&
           a->user_len == b->user_len && memcmp(a->user, b->user, a->user_len) == 0;
}

static bool
eq_typing(const proto_typing *a, const proto_typing *b)
{
    return a->room_len == b->room_len && memcmp(a->room, b->room, a->room_len) == 0 &&
           a->user_len == b->user_len && memcmp(a->user, b->user, a->user_len) == 0 &&
           a->node == b->node && a->conn == b->conn;
}

static bool
eq_users(const proto_users *a, const proto_users *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->users[i], b->users[i]) != 0)
            return false;
    return true;
}

/* decode -> encode -> decode -> compare -> encode -> same bytes */
#define ROUND_TRIP(T, name, eq)                                                 \
    do {                                                                        \
        T r1, r2;                                                               \
        if (proto_##name##_decode(data, size, &r1) != PROTO_OK)                 \
            break;                                                              \
        proto_mp_buf b1, b2;                                                    \
        proto_mp_buf_growing(&b1);                                              \
        proto_mp_buf_growing(&b2);                                              \
        if (proto_##name##_encode(&r1, &b1) != PROTO_OK)                        \
            abort();                                                            \
        if (proto_##name##_decode(b1.data, b1.len, &r2) != PROTO_OK)            \
            abort();                                                            \
        if (!eq(&r1, &r2))                                                      \
            abort();                                                            \
        if (proto_##name##_encode(&r2, &b2) != PROTO_OK || b1.len != b2.len ||  \
            memcmp(b1.data, b2.data, b1.len) != 0)                              \
            abort();                                                            \
        proto_##name##_free(&r1);                                               \
        proto_##name##_free(&r2);                                               \
        proto_mp_buf_free(&b1);                                                 \
        proto_mp_buf_free(&b2);                                                 \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ROUND_TRIP(proto_msg, msg, eq_msg);
    ROUND_TRIP(proto_batch, batch, eq_batch);
    ROUND_TRIP(proto_ack, ack, eq_ack);
    ROUND_TRIP(proto_history_req, history_req, eq_history_req);
    ROUND_TRIP(proto_history_reply, history_reply, eq_history_reply);
    ROUND_TRIP(proto_join_req, join_req, eq_join_req);
    ROUND_TRIP(proto_join_reply, join_reply, eq_join_reply);
    ROUND_TRIP(proto_room, room, eq_room);
    ROUND_TRIP(proto_member, member, eq_member);
    ROUND_TRIP(proto_typing, typing, eq_typing);
    ROUND_TRIP(proto_users, users, eq_users);
    return 0;
}
