#include "proto/proto.h"

const char *
proto_strerror(proto_err err)
{
    switch (err) {
    case PROTO_OK:          return "ok";
    case PROTO_E_MALFORMED: return "malformed msgpack";
    case PROTO_E_TRAILING:  return "trailing bytes";
    case PROTO_E_TYPE:      return "wrong type";
    case PROTO_E_MISSING:   return "missing field";
    case PROTO_E_UNKNOWN:   return "unknown field";
    case PROTO_E_DUPLICATE: return "duplicate field";
    case PROTO_E_TOO_LONG:  return "too long";
    case PROTO_E_EMPTY:     return "empty";
    case PROTO_E_UTF8:      return "invalid UTF-8";
    case PROTO_E_SYNTAX:    return "invalid syntax";
    case PROTO_E_RANGE:     return "out of range";
    case PROTO_E_VERSION:   return "unknown version";
    case PROTO_E_NOSPACE:   return "buffer too small";
    case PROTO_E_NOMEM:     return "out of memory";
    }
    return "unknown error";
}
