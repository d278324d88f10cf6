/*
 * adapters/jwt: loading keys (what a node refuses to start with) and every
 * reason for a token, with tokens minted here through libjwt's encoder
 * (test-side minting) or edited by hand to be wrong. Needs no service.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>

#include "adapters/jwt.h"

#define SECRET "0123456789abcdef0123456789abcdef-test"
#define NOW 1700000000L

static char dir[] = "/tmp/chatd-test-jwt.XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* An HS256 token with the given claims (a JSON object) and key. */
static char *
mint(const char *claims, const char *key, jwt_alg_t alg)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    assert_int_equal(jwt_set_alg(j, alg, key ? (const unsigned char *)key : NULL,
                                 key ? (int)strlen(key) : 0), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

static jwtv_reason
verify(jwtv *v, const char *token, jwtv_claims *cl)
{
    return jwtv_verify(v, token, strlen(token), NOW, cl);
}

static void
test_keys(void **state)
{
    (void)state;
    char err[256];
    jwtv_config none = { 0 };
    assert_null(jwtv_new(&none, err, sizeof(err)));
    assert_non_null(strstr(err, "exactly one"));

    jwtv_config both = { .secret_file = write_file("s", SECRET), .public_key_file = "/x" };
    assert_null(jwtv_new(&both, err, sizeof(err)));

    jwtv_config missing = { .secret_file = "/nonexistent/secret" };
    assert_null(jwtv_new(&missing, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));

    jwtv_config shortk = { .secret_file = write_file("short", "too short\n") };
    assert_null(jwtv_new(&shortk, err, sizeof(err)));
    assert_non_null(strstr(err, "at least 32"));
    assert_null(strstr(err, "too short"));     /* never the key's bytes */

    jwtv_config notpem = { .public_key_file = write_file("pub", SECRET) };
    assert_null(jwtv_new(&notpem, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM"));

    /* a trailing newline is not part of the secret */
    jwtv_config ok = { .secret_file = write_file("nl", SECRET "\n") };
    jwtv *v = jwtv_new(&ok, err, sizeof(err));
    assert_non_null(v);
    assert_string_equal(jwtv_alg(v), "HS256");
    char *t = mint("{\"sub\":\"alice\",\"exp\":1700000100}", SECRET, JWT_ALG_HS256);
    jwtv_claims cl;
    assert_int_equal(verify(v, t, &cl), JWTV_OK);
    free(t);
    jwtv_free(v);
}

static void
test_reasons(void **state)
{
    (void)state;
    char err[256];
    jwtv_config cfg = { .secret_file = write_file("secret", SECRET), .issuer = "iss1",
                        .audience = "chatd", .leeway_s = 10 };
    jwtv *v = jwtv_new(&cfg, err, sizeof(err));
    assert_non_null(v);
    static const struct { const char *claims; const char *key; jwt_alg_t alg; jwtv_reason want; }
    cases[] = {
        { "{\"sub\":\"alice\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS256, JWTV_OK },
        { "{\"sub\":\"alice\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":[\"x\",\"chatd\"]}",
          SECRET, JWT_ALG_HS256, JWTV_OK },
        /* within the leeway on both sides */
        { "{\"sub\":\"a\",\"exp\":1699999995,\"nbf\":1700000005,\"iss\":\"iss1\",\"aud\":\"chatd\"}",
          SECRET, JWT_ALG_HS256, JWTV_OK },
        { "{\"sub\":\"a\",\"exp\":1699999989,\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS256, JWTV_EXPIRED },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000011,\"iss\":\"iss1\",\"aud\":\"chatd\"}",
          SECRET, JWT_ALG_HS256, JWTV_NOT_YET_VALID },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"other\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS256, JWTV_WRONG_ISSUER },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"chatd\"}", SECRET, JWT_ALG_HS256,
          JWTV_WRONG_ISSUER },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":[\"x\"]}", SECRET,
          JWT_ALG_HS256, JWTV_WRONG_AUDIENCE },
        { "{\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET, JWT_ALG_HS256,
          JWTV_BAD_SUBJECT },
        { "{\"sub\":7,\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS256, JWTV_BAD_SUBJECT },
        { "{\"sub\":\"a\",\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET, JWT_ALG_HS256,
          JWTV_MALFORMED },
        { "{\"sub\":\"a\",\"exp\":\"soon\",\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS256, JWTV_MALFORMED },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}",
          "another secret of the same size......", JWT_ALG_HS256, JWTV_BAD_SIGNATURE },
        /* the right secret, but not the pinned algorithm */
        { "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}", SECRET,
          JWT_ALG_HS512, JWTV_BAD_SIGNATURE },
        { "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"iss1\",\"aud\":\"chatd\"}", NULL,
          JWT_ALG_NONE, JWTV_BAD_SIGNATURE },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = mint(cases[i].claims, cases[i].key, cases[i].alg);
        jwtv_claims cl;
        jwtv_reason r = verify(v, t, &cl);
        if (r != cases[i].want)
            fail_msg("case %zu: %s, want %s", i, jwtv_reason_name(r),
                     jwtv_reason_name(cases[i].want));
        free(t);
    }
    jwtv_claims cl;
    char *t = mint(cases[0].claims, SECRET, JWT_ALG_HS256);
    assert_int_equal(verify(v, t, &cl), JWTV_OK);
    assert_string_equal(cl.sub, "alice");
    assert_int_equal(cl.exp, 1700000100);
    /* one byte of the signature changed */
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(v, t, &cl), JWTV_BAD_SIGNATURE);
    free(t);

    assert_int_equal(jwtv_verify(v, "", 0, NOW, &cl), JWTV_MISSING);
    const char *malformed[] = { "abc", "a.b", "a.b.c.d", ".b.c", "a..c", "a b.c.d", "a.b.c",
                                "e30.e30.", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln" };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        if (verify(v, malformed[i], &cl) != JWTV_MALFORMED)
            fail_msg("<%s> not malformed: %s", malformed[i],
                     jwtv_reason_name(verify(v, malformed[i], &cl)));
    char big[JWTV_TOKEN_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[10] = big[20] = '.';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(verify(v, big, &cl), JWTV_MALFORMED);
    jwtv_free(v);
}

int
main(void)
{
    assert_non_null(mkdtemp(dir));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_reasons),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        r = 1;
    return r;
}
