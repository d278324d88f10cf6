/*
 * Verifying JSON Web Tokens with libjwt (Debian's libjwt 1.10.2) and, to
 * learn the type of a public key, OpenSSL's libcrypto. It knows nothing of
 * chat: it checks a token's signature and time claims against one key and
 * hands back its `sub` and `exp`, or says in one word why it refuses.
 *
 * One key at a time: a shared secret (HS256) or a PEM public key (RS256 for
 * an RSA key, ES256 for an EC key). The algorithm is pinned to the key: a
 * token whose header names another one (HS256 signed with the public key's
 * bytes, "none", ...) is a bad signature, whatever libjwt made of it.
 *
 * Claims: `exp` is required and enforced (now > exp + leeway: expired),
 * `nbf` when present (now + leeway < nbf: not yet valid), `iss` and `aud`
 * when configured (`aud` a string or an array of strings holding it); `sub`
 * must be a string of 1..JWTV_SUB_MAX bytes. A token that is not three
 * base64url segments (jwtv_shape_ok, the only parsing done here before
 * libjwt), is longer than JWTV_TOKEN_MAX, or that libjwt cannot decode even
 * without checking its signature, is malformed.
 *
 * libjwt 1.10.2 notes, which this hides:
 * - jwt_decode with a key returns EINVAL both for a token it cannot parse
 *   and for a wrong signature; the two are told apart by decoding again
 *   without a key (which parses without verifying) and throwing that away.
 * - jwt_decode verifies with the algorithm the token names: the pin is
 *   checked here (jwt_get_alg) after it succeeds.
 * - jwt_get_grant_int reads JSON integers only; the claims are read here
 *   from jwt_get_grants_json with jansson, so that 1.7e9 is a time too.
 *
 * Ownership: jwtv_new copies everything it needs (the key is read from its
 * file at once); jwtv_verify keeps nothing of the token.
 */
#ifndef CHATD_ADAPTERS_JWT_H
#define CHATD_ADAPTERS_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWTV_TOKEN_MAX 8192
#define JWTV_SUB_MAX 255
#define JWTV_KEY_MAX 65536

typedef enum jwtv_reason {
    JWTV_OK = 0,
    JWTV_MISSING,
    JWTV_MALFORMED,
    JWTV_BAD_SIGNATURE,
    JWTV_EXPIRED,
    JWTV_NOT_YET_VALID,
    JWTV_WRONG_ISSUER,
    JWTV_WRONG_AUDIENCE,
    JWTV_BAD_SUBJECT,
} jwtv_reason;
#define JWTV_REASONS (JWTV_BAD_SUBJECT + 1)

typedef struct jwtv_config {
    const char *secret_file;        /* HS256: the secret is the file's bytes ... */
    const char *public_key_file;    /* ... or RS256/ES256: a PEM public key */
    const char *issuer;             /* NULL: `iss` not checked */
    const char *audience;           /* NULL: `aud` not checked */
    int leeway_s;                   /* clock skew allowed on exp and nbf */
} jwtv_config;

typedef struct jwtv_claims {
    char sub[JWTV_SUB_MAX + 1];     /* NUL-terminated */
    size_t sub_len;
    int64_t exp;                    /* seconds since the epoch */
} jwtv_claims;

typedef struct jwtv jwtv;

/*
 * A verifier for exactly one of cfg->secret_file and cfg->public_key_file.
 * The secret file's bytes are the secret, one trailing newline dropped; it
 * must hold at least 32 bytes. NULL on error, with a sentence in err (never
 * the key's bytes).
 */
jwtv *jwtv_new(const jwtv_config *cfg, char *err, size_t err_len);

void jwtv_free(jwtv *v);

/* "HS256", "RS256" or "ES256": the pinned algorithm. */
const char *jwtv_alg(const jwtv *v);

/*
 * Verifies the len bytes of token at now (seconds since the epoch) and fills
 * *out on JWTV_OK. len 0 is JWTV_MISSING.
 */
jwtv_reason jwtv_verify(const jwtv *v, const char *token, size_t len, int64_t now,
                        jwtv_claims *out);

/* True when token is three base64url segments separated by dots, the first
 * two non-empty, at most JWTV_TOKEN_MAX bytes in all. */
bool jwtv_shape_ok(const char *token, size_t len);

/* "missing", "malformed", "bad_signature", ... ("ok" for JWTV_OK). */
const char *jwtv_reason_name(jwtv_reason r);

#endif
