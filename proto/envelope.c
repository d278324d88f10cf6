#include "proto/envelope.h"

#include <string.h>

#include <msgpack.h>

#include "proto/mp.h"

proto_err
proto_env_encode(const proto_env *env, uint8_t *out, size_t cap, size_t *len)
{
    if (env->payload_len > PROTO_ENV_PAYLOAD_MAX)
        return PROTO_E_TOO_LONG;

    proto_mp_buf buf;
    proto_mp_buf_fixed(&buf, out, cap);
    msgpack_packer pk;
    proto_mp_packer_init(&pk, &buf);

    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint32(&pk, PROTO_ENV_VERSION);
    msgpack_pack_uint32(&pk, env->type);
    msgpack_pack_uint64(&pk, env->from);
    msgpack_pack_uint64(&pk, env->to);
    msgpack_pack_uint64(&pk, env->corr);
    msgpack_pack_bin(&pk, env->payload_len);
    msgpack_pack_bin_body(&pk, env->payload, env->payload_len);

    if (buf.failed)
        return PROTO_E_NOSPACE;
    *len = buf.len;
    return PROTO_OK;
}

static proto_err
get_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return PROTO_E_TYPE;
    if (o->via.u64 > max)
        return PROTO_E_RANGE;
    *v = o->via.u64;
    return PROTO_OK;
}

proto_err
proto_env_decode(const uint8_t *data, size_t len, proto_env *env)
{
    memset(env, 0, sizeof(*env));

    proto_mp_doc doc;
    proto_err err = proto_mp_parse(&doc, data, len);
    if (err != PROTO_OK)
        return err;

    const msgpack_object *root = &doc.root;
    proto_env out = {0};
    uint64_t version = 0, type = 0;
    if (root->type != MSGPACK_OBJECT_ARRAY) {
        err = PROTO_E_TYPE;
        goto done;
    }
    if (root->via.array.size != 6) {
        err = root->via.array.size < 6 ? PROTO_E_MISSING : PROTO_E_UNKNOWN;
        goto done;
    }
    const msgpack_object *f = root->via.array.ptr;
    if ((err = get_uint(&f[0], UINT32_MAX, &version)) != PROTO_OK)
        goto done;
    if (version != PROTO_ENV_VERSION) {
        err = PROTO_E_VERSION;
        goto done;
    }
    if ((err = get_uint(&f[1], UINT32_MAX, &type)) != PROTO_OK ||
        (err = get_uint(&f[2], UINT64_MAX, &out.from)) != PROTO_OK ||
        (err = get_uint(&f[3], UINT64_MAX, &out.to)) != PROTO_OK ||
        (err = get_uint(&f[4], UINT64_MAX, &out.corr)) != PROTO_OK)
        goto done;
    if (f[5].type != MSGPACK_OBJECT_BIN) {
        err = PROTO_E_TYPE;
        goto done;
    }
    if (f[5].via.bin.size > PROTO_ENV_PAYLOAD_MAX) {
        err = PROTO_E_TOO_LONG;
        goto done;
    }
    out.type = (uint32_t)type;
    out.payload = (const uint8_t *)f[5].via.bin.ptr;
    out.payload_len = f[5].via.bin.size;
    *env = out;

done:
    proto_mp_doc_free(&doc);
    return err;
}
