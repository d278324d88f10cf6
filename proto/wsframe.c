/* The client WebSocket frame header (see wsframe.h). */
#include "proto/wsframe.h"

#include <string.h>

size_t
wsframe_client_header(uint8_t *out, bool fin, int opcode, uint64_t len, const uint8_t mask[4])
{
    size_t hl = 0;
    out[hl++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        out[hl++] = 0x80 | 126;
        out[hl++] = (uint8_t)(len >> 8);
        out[hl++] = (uint8_t)len;
    } else {
        out[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[hl++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + hl, mask, 4);
    return hl + 4;
}

void
wsframe_mask(uint8_t *out, const uint8_t *in, size_t len, const uint8_t mask[4])
{
    for (size_t i = 0; i < len; i++)
        out[i] = in[i] ^ mask[i & 3];
}
