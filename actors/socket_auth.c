/*
 * The socket actor: who a connection is (see socket_private.h and
 * PROTOCOL.md's Identity section).
 *
 * With --auth none the user is the name auth.user gives. With --auth jwt it
 * is the `sub` of a token adapters/jwt.c verified, from auth.token or else
 * the upgrade's Authorization: Bearer header; a refusal answers
 * CONNECT_ERROR {"message":"invalid token","data":{"reason":...}} and is
 * counted in chatd_auth_refused_total by reason. Nothing else about the
 * server goes to the client. A connection is disconnected from "/" when its
 * token expires, unless an `auth` event brought a fresh token for the same
 * sub meanwhile.
 */
#include "actors/socket.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "actors/socket_private.h"
#include "proto/names.h"
#include "runtime/log.h"

#define BEARER "Bearer "

static int64_t
wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* The verifier of cfg's tokens, or NULL with a sentence in err. */
static jwtv *
verifier_new(const chatd_config *cfg, char *err, size_t err_len)
{
    jwtv_config jc = {
        .secret_file = cfg->jwt_secret_file, .public_key_file = cfg->jwt_public_key,
        .issuer = cfg->jwt_issuer, .audience = cfg->jwt_audience, .leeway_s = cfg->jwt_leeway_s,
    };
    return jwtv_new(&jc, err, err_len);
}

bool
chatd_socket_auth_ok(const chatd_config *cfg, char *err, size_t err_len)
{
    if (cfg->auth != CHATD_AUTH_JWT)
        return true;
    jwtv *v = verifier_new(cfg, err, err_len);
    jwtv_free(v);
    return v != NULL;
}

int
sk_auth_init(socket_state *st)
{
    rt_runtime *rt = rt_of(st->self);
    for (int r = JWTV_MISSING; r < JWTV_REASONS; r++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", jwtv_reason_name((jwtv_reason)r));
        st->m.auth_refused[r] = rt_metric_get(rt, RT_COUNTER, "chatd_auth_refused_total", labels,
                                              "Tokens refused at CONNECT, by reason.");
    }
    st->m.auth_expired = rt_metric_get(rt, RT_COUNTER, "chatd_auth_expired_total", NULL,
                                       "Connections disconnected when their token expired.");
    st->m.auth_refreshed = rt_metric_get(rt, RT_COUNTER, "chatd_auth_refreshed_total", NULL,
                                         "Fresh tokens accepted through the auth event.");
    if (st->cfg->auth != CHATD_AUTH_JWT)
        return RT_OK;
    char err[256];
    if (!(st->jwt = verifier_new(st->cfg, err, sizeof(err)))) {
        rt_error(rt_who(st->self), "tokens: %s", err);
        return RT_ERR;
    }
    rt_info(rt_who(st->self), "tokens on: %s", jwtv_alg(st->jwt));
    return RT_OK;
}

void
sk_auth_free(socket_state *st)
{
    jwtv_free(st->jwt);
    st->jwt = NULL;
}

void
sk_auth_on_open(socket_state *st, sk_conn *c)
{
    char buf[JWTV_TOKEN_MAX + sizeof(BEARER)];
    size_t n = st->cfg->auth == CHATD_AUTH_JWT ? ws_conn_authorization(c->ws, buf, sizeof(buf))
                                                : 0;
    if (n > strlen(BEARER) && strncasecmp(buf, BEARER, strlen(BEARER)) == 0)
        c->bearer = strdup(buf + strlen(BEARER));
}

/* Verifies the len bytes of token as c's (when user_len > 0 it must be
 * user): fills *cl on JWTV_OK. */
static jwtv_reason
verify(socket_state *st, const char *token, size_t len, const char *user, size_t user_len,
       jwtv_claims *cl)
{
    jwtv_reason r = jwtv_verify(st->jwt, token, len, wall_s(), cl);
    if (r == JWTV_OK && (proto_check_user(cl->sub, cl->sub_len) != PROTO_OK ||
                         (user_len && (user_len != cl->sub_len ||
                                       memcmp(user, cl->sub, user_len) != 0))))
        r = JWTV_BAD_SUBJECT;
    return r;
}

static double
expiry_ms(const socket_state *st, const jwtv_claims *cl)
{
    return ((double)cl->exp + st->cfg->jwt_leeway_s) * 1000.0;
}

bool
sk_auth_connect(socket_state *st, sk_conn *c, const sio_packet *p)
{
    if (st->cfg->auth == CHATD_AUTH_NONE) {
        if (!p->user_len) {
            sio_encode_connect_error(&st->out, "/", 1, "invalid user");
            return false;
        }
        memcpy(c->user, p->user, p->user_len + 1);
        c->user_len = p->user_len;
        return true;
    }
    jwtv_claims cl;
    jwtv_reason r;
    if (p->has_token && !p->token)
        r = JWTV_MALFORMED;
    else if (p->has_token)
        r = verify(st, p->token, p->token_len, p->user, p->user_len, &cl);
    else
        r = verify(st, c->bearer, c->bearer ? strlen(c->bearer) : 0, p->user, p->user_len, &cl);
    if (r != JWTV_OK) {
        rt_metric_add(st->m.auth_refused[r], 1);
        rt_info(rt_who(st->self), "connection %" PRIu64 ": token refused: %s", c->id,
                jwtv_reason_name(r));
        sio_encode_connect_refused(&st->out, "invalid token", jwtv_reason_name(r));
        return false;
    }
    memcpy(c->user, cl.sub, cl.sub_len + 1);
    c->user_len = cl.sub_len;
    c->expires_ms = expiry_ms(st, &cl);
    return true;
}

bool
sk_auth_event(socket_state *st, sk_conn *c, const sio_packet *p)
{
    if (st->cfg->auth != CHATD_AUTH_JWT || p->event_len != 4 || memcmp(p->event, "auth", 4))
        return false;
    json_t *token = json_object_get(p->args, "token");
    if (!json_is_string(token)) {
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_BAD_REQUEST, "token must be a string");
        return true;
    }
    jwtv_claims cl;
    jwtv_reason r = verify(st, json_string_value(token), json_string_length(token), c->user,
                           c->user_len, &cl);
    if (r != JWTV_OK) {
        /* the connection keeps its old token until that one expires */
        sk_ack_err(st, c, p->has_ack, p->ack_id, SIO_E_FORBIDDEN, jwtv_reason_name(r));
        return true;
    }
    c->expires_ms = expiry_ms(st, &cl);
    rt_metric_add(st->m.auth_refreshed, 1);
    sk_ack_ok(st, c, p->has_ack, p->ack_id, NULL);
    return true;
}

void
sk_auth_sweep(socket_state *st, sk_conn *c)
{
    if (c->phase != SK_CONNECTED || !c->expires_ms || (double)chatd_wall_ms() < c->expires_ms)
        return;
    rt_metric_add(st->m.auth_expired, 1);
    rt_info(rt_who(st->self), "connection %" PRIu64 " (%s): token expired: disconnected", c->id,
            c->user);
    if (sio_encode_token_expired(&st->out, "expired") == PROTO_OK)
        sk_send(st, c);
    if (sio_encode_disconnect(&st->out) == PROTO_OK)
        sk_send(st, c);
    proto_mp_buf_reset(&st->out);
    while (c->nrooms)
        sk_member_remove(st, c, c->rooms[c->nrooms - 1]);
    c->phase = SK_OPEN;
    c->expires_ms = 0;
}
