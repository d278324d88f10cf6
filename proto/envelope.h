/*
 * The envelope: the one message format between actors, over Kafka and over
 * Redis.
 *
 * On the wire an envelope is a msgpack array of six values:
 *
 *     [version, type, from, to, corr, payload]
 *
 *     version  unsigned int, PROTO_ENV_VERSION
 *     type     unsigned int below 2^32: what the payload is (see record.h and
 *              the runtime's reserved types)
 *     from     unsigned int: the sending actor's id (0: from outside)
 *     to       unsigned int: the receiving actor's id (0: unaddressed)
 *     corr     unsigned int: correlation id chosen by the requester, echoed
 *              in the reply (0: none)
 *     payload  bin: msgpack bytes whose schema the type names
 *
 * A negative integer in any integer field is PROTO_E_TYPE (msgpack-c reports
 * non-negative values as unsigned however they were packed).
 *
 * Ownership: proto_env_encode() writes into the caller's buffer. A decoded
 * proto_env does not own anything: its payload points into the buffer it was
 * decoded from and is valid only while that buffer lives.
 */
#ifndef CHATD_PROTO_ENVELOPE_H
#define CHATD_PROTO_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define PROTO_ENV_VERSION 1

/* Bytes an envelope adds around its payload, at most. */
#define PROTO_ENV_OVERHEAD 48

/* An envelope's payload is at most this many bytes. */
#define PROTO_ENV_PAYLOAD_MAX (16u * 1024 * 1024)

typedef struct proto_env {
    uint32_t type;
    uint64_t from;
    uint64_t to;
    uint64_t corr;
    const uint8_t *payload;     /* msgpack bytes; not owned */
    size_t payload_len;
} proto_env;

/*
 * Encodes env into out (cap bytes) and stores the encoded length in *len.
 * Returns PROTO_OK, PROTO_E_NOSPACE when cap is too small (cap of
 * PROTO_ENV_OVERHEAD + payload_len always suffices; nothing useful is written)
 * or PROTO_E_TOO_LONG when the payload is over PROTO_ENV_PAYLOAD_MAX.
 */
proto_err proto_env_encode(const proto_env *env, uint8_t *out, size_t cap, size_t *len);

/*
 * Decodes the len bytes at buf into *env, strictly: exactly one array of six
 * values of the types above, no trailing bytes. On success env->payload points
 * into buf. On error *env is left zeroed and the code says what was wrong.
 */
proto_err proto_env_decode(const uint8_t *buf, size_t len, proto_env *env);

#endif
