/* libFuzzer target: arbitrary bytes as an envelope. Decoding must never crash;
 * what decodes must re-encode within PROTO_ENV_OVERHEAD + payload and decode
 * to the same envelope, and encoding is deterministic. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_env env;
    if (proto_env_decode(data, size, &env) != PROTO_OK)
        return 0;

    size_t cap = PROTO_ENV_OVERHEAD + env.payload_len, len1, len2;
    uint8_t *buf1 = malloc(cap), *buf2 = malloc(cap);
    if (!buf1 || !buf2)
        abort();
    if (proto_env_encode(&env, buf1, cap, &len1) != PROTO_OK)
        abort();
    proto_env again;
    if (proto_env_decode(buf1, len1, &again) != PROTO_OK)
        abort();
    if (again.type != env.type || again.from != env.from || again.to != env.to ||
        again.corr != env.corr || again.payload_len != env.payload_len ||
        memcmp(again.payload, env.payload, env.payload_len) != 0)
        abort();
    if (proto_env_encode(&again, buf2, cap, &len2) != PROTO_OK || len2 != len1 ||
        memcmp(buf1, buf2, len1) != 0)
        abort();
    /* the encoding is canonical: never longer than the input */
    if (len1 > size)
        abort();
    free(buf1);
    free(buf2);
    return 0;
}
