/*
 * wsframe: the header of a client-to-server WebSocket frame (RFC 6455 5.2),
 * for the programs that speak to chatd as a client: the benchmark's load
 * generator (scripts/bench/loadgen) and the tests' raw client
 * (tests/actors/ws_client.c). The server side is libwebsockets' (adapters/ws).
 */
#ifndef CHATD_PROTO_WSFRAME_H
#define CHATD_PROTO_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest header: 2 bytes, an 8-byte length, a 4-byte masking key. */
#define WSFRAME_HEADER_MAX 14

/*
 * Writes the header of one masked client frame to out (at least
 * WSFRAME_HEADER_MAX bytes): FIN when fin, the opcode (0-15), the MASK bit,
 * len in the shortest of the three length forms, then the masking key mask.
 * Returns the header's length. The payload that follows must be masked with
 * the same key (wsframe_mask). Never fails.
 */
size_t wsframe_client_header(uint8_t *out, bool fin, int opcode, uint64_t len,
                             const uint8_t mask[4]);

/* out[i] = in[i] ^ mask[i % 4] for i < len; out may equal in. */
void wsframe_mask(uint8_t *out, const uint8_t *in, size_t len, const uint8_t mask[4]);

#endif
