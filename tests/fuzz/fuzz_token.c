/*
 * libFuzzer target for the token path: what chatd reads itself before
 * libjwt (the CONNECT auth object through sio_parse, then the token's shape
 * in jwtv_shape_ok) and what it reads after (the claims, adapters/jwt.c).
 * The input is tried as a token and as a CONNECT payload; the verifier has a
 * fixed HS256 secret, and the seeds are tokens signed with it (exp in 2100),
 * so that the claim checks are reached. Invariants (abort on violation): a
 * reason is one of the list; a token of the wrong shape is malformed (or
 * missing when empty); an accepted token has a sub of 1..JWTV_SUB_MAX bytes
 * and a well-formed shape.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/jwt.h"
#include "proto/sio.h"

#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret-0123"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jwtv *verifier;

static jwtv *
get_verifier(void)
{
    if (verifier)
        return verifier;
    char path[] = "/tmp/chatd-fuzz-token.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, SECRET, strlen(SECRET)) != (ssize_t)strlen(SECRET))
        abort();
    close(fd);
    char err[256];
    jwtv_config cfg = { .secret_file = path, .issuer = NULL, .audience = NULL, .leeway_s = 30 };
    verifier = jwtv_new(&cfg, err, sizeof(err));
    unlink(path);
    if (!verifier) {
        fprintf(stderr, "fuzz_token: %s\n", err);
        abort();
    }
    return verifier;
}

static void
check(const char *token, size_t len)
{
    jwtv_claims cl;
    jwtv_reason r = jwtv_verify(get_verifier(), token, len, 1700000000, &cl);
    if ((unsigned)r >= JWTV_REASONS)
        abort();
    if (!jwtv_shape_ok(token, len) && r != (len ? JWTV_MALFORMED : JWTV_MISSING))
        abort();
    if (r == JWTV_OK && (cl.sub_len == 0 || cl.sub_len > JWTV_SUB_MAX ||
                         strlen(cl.sub) != cl.sub_len || !jwtv_shape_ok(token, len)))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size);

    char *frame = malloc(size + 2);
    if (!frame)
        return 0;
    memcpy(frame, "40", 2);
    memcpy(frame + 2, data, size);
    sio_packet p;
    if (sio_parse(frame, size + 2, &p) == SIO_PKT_CONNECT && p.token)
        check(p.token, p.token_len);
    sio_packet_free(&p);
    free(frame);
    return 0;
}
