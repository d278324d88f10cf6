/*
 * Token verification on libjwt (see jwt.h).
 */
#include "adapters/jwt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define SECRET_MIN 32

struct jwtv {
    jwt_alg_t alg;
    unsigned char *key;
    size_t key_len;
    char *issuer;
    char *audience;
    int leeway_s;
};

static const char *const reason_names[JWTV_REASONS] = {
    [JWTV_OK] = "ok",
    [JWTV_MISSING] = "missing",
    [JWTV_MALFORMED] = "malformed",
    [JWTV_BAD_SIGNATURE] = "bad_signature",
    [JWTV_EXPIRED] = "expired",
    [JWTV_NOT_YET_VALID] = "not_yet_valid",
    [JWTV_WRONG_ISSUER] = "wrong_issuer",
    [JWTV_WRONG_AUDIENCE] = "wrong_audience",
    [JWTV_BAD_SUBJECT] = "bad_subject",
};

const char *
jwtv_reason_name(jwtv_reason r)
{
    return (unsigned)r < JWTV_REASONS ? reason_names[r] : "malformed";
}

/* The file's bytes (at most JWTV_KEY_MAX), NUL-terminated; NULL on error. */
static unsigned char *
read_file(const char *path, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(JWTV_KEY_MAX + 1);
    size_t n = buf ? fread(buf, 1, JWTV_KEY_MAX + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > JWTV_KEY_MAX;
    fclose(f);
    if (bad) {
        snprintf(err, err_len, "cannot read %s (or longer than %d bytes)", path, JWTV_KEY_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* RS256 for an RSA key, ES256 for an EC key, else JWT_ALG_INVAL. */
static jwt_alg_t
public_key_alg(const unsigned char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    jwt_alg_t alg = JWT_ALG_INVAL;
    if (k && EVP_PKEY_base_id(k) == EVP_PKEY_RSA)
        alg = JWT_ALG_RS256;
    else if (k && EVP_PKEY_base_id(k) == EVP_PKEY_EC)
        alg = JWT_ALG_ES256;
    EVP_PKEY_free(k);
    BIO_free(bio);
    return alg;
}

jwtv *
jwtv_new(const jwtv_config *cfg, char *err, size_t err_len)
{
    bool secret = cfg->secret_file && *cfg->secret_file;
    bool pub = cfg->public_key_file && *cfg->public_key_file;
    if (secret == pub) {
        snprintf(err, err_len, "give exactly one of a secret file and a public key");
        return NULL;
    }
    jwtv *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    v->leeway_s = cfg->leeway_s;
    const char *path = secret ? cfg->secret_file : cfg->public_key_file;
    if (!(v->key = read_file(path, &v->key_len, err, err_len)))
        goto err;
    if (secret) {
        if (v->key_len && v->key[v->key_len - 1] == '\n')
            v->key[--v->key_len] = '\0';
        if (v->key_len < SECRET_MIN) {
            snprintf(err, err_len, "%s: a secret of at least %d bytes is needed", path,
                     SECRET_MIN);
            goto err;
        }
        v->alg = JWT_ALG_HS256;
    } else if ((v->alg = public_key_alg(v->key, v->key_len)) == JWT_ALG_INVAL) {
        snprintf(err, err_len, "%s: not a PEM RSA or EC public key", path);
        goto err;
    }
    if ((cfg->issuer && !(v->issuer = strdup(cfg->issuer))) ||
        (cfg->audience && !(v->audience = strdup(cfg->audience)))) {
        snprintf(err, err_len, "out of memory");
        goto err;
    }
    return v;
err:
    jwtv_free(v);
    return NULL;
}

void
jwtv_free(jwtv *v)
{
    if (!v)
        return;
    if (v->key)
        memset(v->key, 0, v->key_len);
    free(v->key);
    free(v->issuer);
    free(v->audience);
    free(v);
}

const char *
jwtv_alg(const jwtv *v)
{
    return jwt_alg_str(v->alg);
}

static bool
b64url_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

bool
jwtv_shape_ok(const char *token, size_t len)
{
    if (len == 0 || len > JWTV_TOKEN_MAX)
        return false;
    size_t dots = 0, seg = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)token[i];
        if (ch == '.') {
            if (seg == 0 || ++dots > 2)     /* header and payload are not empty */
                return false;
            seg = 0;
        } else if (b64url_char(ch)) {
            seg++;
        } else {
            return false;
        }
    }
    return dots == 2;
}

/* A JSON number as whole seconds; false when absent or not a number. */
static bool
claim_time(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!(d > -9e15 && d < 9e15))
        return false;
    *out = (int64_t)d;
    return true;
}

static bool
audience_ok(json_t *claims, const char *want)
{
    json_t *aud = json_object_get(claims, "aud");
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *one;
    json_array_foreach(aud, i, one) {
        if (json_is_string(one) && strcmp(json_string_value(one), want) == 0)
            return true;
    }
    return false;
}

/* The claims of a token whose signature was verified. */
static jwtv_reason
check_claims(const jwtv *v, json_t *claims, int64_t now, jwtv_claims *out)
{
    int64_t exp, nbf = INT64_MIN;   /* no nbf: valid from the start */
    if (!json_is_object(claims) || !claim_time(claims, "exp", &exp))
        return JWTV_MALFORMED;
    if (json_object_get(claims, "nbf") && !claim_time(claims, "nbf", &nbf))
        return JWTV_MALFORMED;
    if (now > exp + v->leeway_s)
        return JWTV_EXPIRED;
    if (nbf != INT64_MIN && now + v->leeway_s < nbf)
        return JWTV_NOT_YET_VALID;
    if (v->issuer) {
        json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), v->issuer) != 0)
            return JWTV_WRONG_ISSUER;
    }
    if (v->audience && !audience_ok(claims, v->audience))
        return JWTV_WRONG_AUDIENCE;
    json_t *sub = json_object_get(claims, "sub");
    size_t n = json_string_length(sub);
    if (!json_is_string(sub) || n == 0 || n > JWTV_SUB_MAX)
        return JWTV_BAD_SUBJECT;
    memcpy(out->sub, json_string_value(sub), n);
    out->sub[n] = '\0';
    out->sub_len = n;
    out->exp = exp;
    return JWTV_OK;
}

jwtv_reason
jwtv_verify(const jwtv *v, const char *token, size_t len, int64_t now, jwtv_claims *out)
{
    if (len == 0)
        return JWTV_MISSING;
    if (!jwtv_shape_ok(token, len))
        return JWTV_MALFORMED;
    char buf[JWTV_TOKEN_MAX + 1];
    memcpy(buf, token, len);
    buf[len] = '\0';

    jwt_t *j = NULL;
    if (jwt_decode(&j, buf, v->key, (int)v->key_len) != 0) {
        /* unreadable, or readable with a signature that does not verify */
        jwt_t *unchecked = NULL;
        jwtv_reason r = jwt_decode(&unchecked, buf, NULL, 0) == 0 ? JWTV_BAD_SIGNATURE
                                                                 : JWTV_MALFORMED;
        jwt_free(unchecked);
        return r;
    }
    jwtv_reason r = JWTV_BAD_SIGNATURE;
    if (jwt_get_alg(j) == v->alg) {
        char *text = jwt_get_grants_json(j, NULL);
        json_t *claims = text ? json_loads(text, 0, NULL) : NULL;
        r = check_claims(v, claims, now, out);
        json_decref(claims);
        free(text);
    }
    jwt_free(j);
    return r;
}
