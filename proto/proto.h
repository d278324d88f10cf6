/*
 * proto: the wire schemas of chatd.
 *
 * Everything that crosses an actor boundary, Kafka or Redis is msgpack. This
 * header holds what every proto module shares: the result codes of encoders and
 * decoders. Decoders of outside input are strict: a value of the wrong type, a
 * missing field, trailing bytes, an oversize string or invalid UTF-8 yields an
 * error code and no record (never a crash, never a half-filled record).
 */
#ifndef CHATD_PROTO_H
#define CHATD_PROTO_H

typedef enum proto_err {
    PROTO_OK = 0,
    PROTO_E_MALFORMED,  /* not msgpack, or truncated */
    PROTO_E_TRAILING,   /* bytes left after the value */
    PROTO_E_TYPE,       /* a value of the wrong type */
    PROTO_E_MISSING,    /* a required field is absent */
    PROTO_E_UNKNOWN,    /* an unknown field or record kind */
    PROTO_E_DUPLICATE,  /* a field given twice */
    PROTO_E_TOO_LONG,   /* a string or array over its limit */
    PROTO_E_EMPTY,      /* a string under its minimum length */
    PROTO_E_UTF8,       /* a string that is not valid UTF-8 */
    PROTO_E_SYNTAX,     /* a name outside its character set or form */
    PROTO_E_RANGE,      /* an integer out of range */
    PROTO_E_VERSION,    /* an envelope of an unknown version */
    PROTO_E_NOSPACE,    /* the output buffer is too small */
    PROTO_E_NOMEM,      /* out of memory */
} proto_err;

/* A short, static, human-readable description of err. Never NULL. */
const char *proto_strerror(proto_err err);

#endif
