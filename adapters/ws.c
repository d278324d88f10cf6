/*
 * WebSocket and HTTP over libwebsockets on a libev loop (see ws.h).
 *
 * Ownership: the server owns the lws context and every ws_conn; lws owns the
 * wsi. A ws_conn is created on ESTABLISHED and freed on CLOSED (or, for one
 * lws never closed, after lws_context_destroy), always after the owner's
 * `close` callback. Frames are reference-counted: a broadcast frame is shared
 * by the queues of every connection it goes to.
 *
 * Re-entrancy: in_callback counts the lws callbacks we are inside. ws_flush
 * does not write from inside one (it asks for WRITEABLE instead), and
 * ws_server_free from inside one detaches the owner at once but defers
 * lws_context_destroy to a zero-delay timer.
 */
#include "adapters/ws_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "proto/utf8.h"
#include "runtime/grow.h"
#include "runtime/list.h"
#include "runtime/log.h"

/* --- connections ------------------------------------------------------------ */

static ws_conn *
conn_new(ws_server *s, struct lws *wsi)
{
    ws_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = s;
    c->wsi = wsi;
    c->id = ++s->next_id;
    rt_list_push_back(&s->conns, &c->link);
    s->nconns++;
    return c;
}

/* Tells the owner c is gone, once. */
static void
conn_detach(ws_server *s, ws_conn *c)
{
    if (c->detached)
        return;
    c->detached = true;
    if (c->data)
        s->cb.close(s->owner, c->data);
    c->data = NULL;
}

static void
conn_free(ws_server *s, ws_conn *c)
{
    conn_detach(s, c);
    if (c->dirty)
        rt_list_remove(&s->dirty, &c->dirty_link);
    rt_list_remove(&s->conns, &c->link);
    s->nconns--;
    ws_queue_clear(c);
    free(c->rx);
    free(c);
}

uint64_t
ws_conn_id(const ws_conn *c)
{
    return c->id;
}

size_t
ws_server_conns(const ws_server *s)
{
    return s->nconns;
}

static int
on_established(ws_server *s, struct lws *wsi, session *ss)
{
    ws_conn *c = s->detached ? NULL : conn_new(s, wsi);
    if (!c)
        return -1;
    c->data = s->cb.open(s->owner, c);
    if (!c->data) {
        c->detached = true;     /* refused: no `close` for it */
        conn_free(s, c);
        return -1;
    }
    ss->c = c;
    if (c->q_len)
        lws_callback_on_writable(wsi);
    return 0;
}

/* Closes the connection from inside RECEIVE with code and reason: returns
 * the -1 that makes lws close it. */
static int
refuse(struct lws *wsi, enum lws_close_status code, const char *reason)
{
    lws_close_reason(wsi, code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Appends a fragment to c's reassembly buffer. False when out of memory. */
static bool
rx_append(ws_conn *c, const char *in, size_t len)
{
    size_t need = c->rx_len + len;
    if (!rt_grow((void **)&c->rx, &c->rx_cap, need < RX_MIN ? RX_MIN : need, 1))
        return false;
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len = need;
    return true;
}

static int
on_receive(ws_server *s, struct lws *wsi, ws_conn *c, const char *in, size_t len)
{
    if (c->closing || c->detached)
        return 0;
    if (lws_frame_is_binary(wsi)) {
        /* discarded, but held to the same size cap as text (1009) */
        c->bin_len += len;
        if (c->bin_len > s->cfg.max_message) {
            rt_info_limited(s->cfg.who, "connection %" PRIu64 ": binary message over %zu "
                            "bytes: closing", c->id, s->cfg.max_message);
            return refuse(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "packet too large");
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
            c->bin_len = 0;
        return 0;
    }
    if (c->rx_len + len > s->cfg.max_message) {
        rt_info_limited(s->cfg.who, "connection %" PRIu64 ": message over %zu bytes: closing",
                        c->id, s->cfg.max_message);
        return refuse(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "packet too large");
    }
    bool final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    if (final && c->rx_len == 0) {
        /* the common case: one fragment, no copy */
        if (!proto_utf8_valid(in, len))
            return refuse(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        s->cb.message(s->owner, c->data, in, len);
    } else {
        if (!rx_append(c, in, len))
            return -1;
        if (!final)
            return 0;
        size_t n = c->rx_len;
        c->rx_len = 0;
        if (!proto_utf8_valid(c->rx, n))
            return refuse(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        s->cb.message(s->owner, c->data, c->rx, n);
        if (c->rx_cap > RX_KEEP) {
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
    if (c->q_len)
        lws_callback_on_writable(wsi);
    return 0;
}

/* RFC 6455 7.4: the codes a peer may send (1004-1006 and 1015 are reserved
 * or never sent; 1016-2999 are unassigned). */
static bool
close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* The peer's close frame (code and reason in `in`). lws echoes what we leave
 * it (return 0); a code it must not send, a one-byte payload or a reason that
 * is not UTF-8 (RFC 6455 5.5.1, 7.4, 8.1) is answered 1002 or 1007 instead. */
static int
on_peer_close(struct lws *wsi, const uint8_t *in, size_t len)
{
    if (len == 1 || (len >= 2 && !close_code_valid((unsigned)in[0] << 8 | in[1])))
        return refuse(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, "invalid close code");
    if (len > 2 && !proto_utf8_valid((const char *)in + 2, len - 2))
        return refuse(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
    return 0;
}

/* An upgrade that does not ask for version 13 gets 426 with the version we
 * speak (RFC 6455 4.2.2, 4.4); lws itself would upgrade it anyway. Returns
 * true when the upgrade may go on. */
static bool
upgrade_version_ok(struct lws *wsi)
{
    char v[8];
    if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_VERSION) > 0 && strcmp(v, "13") == 0)
        return true;
    uint8_t buf[LWS_PRE + 256];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (!lws_add_http_header_status(wsi, 426, &p, end) &&
        !lws_add_http_header_by_token(wsi, WSI_TOKEN_VERSION, (const unsigned char *)"13", 2,
                                      &p, end) &&
        !lws_add_http_header_content_length(wsi, 0, &p, end) &&
        !lws_finalize_http_header(wsi, &p, end))
        lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
    return false;
}

/* --- HTTP -------------------------------------------------------------------- */

bool
ws_request_path(ws_request *req, char *buf, size_t len)
{
    return len <= INT32_MAX && lws_hdr_copy(req->wsi, buf, (int)len, WSI_TOKEN_GET_URI) > 0;
}

const char *
ws_request_arg(ws_request *req, const char *name, char *buf, size_t len)
{
    /* the buffer receives "name=value"; the result points at the value */
    return len <= INT32_MAX ? lws_get_urlarg_by_name(req->wsi, name, buf, (int)len) : NULL;
}

size_t
ws_conn_authorization(ws_conn *c, char *buf, size_t len)
{
    int n = len <= INT32_MAX ? lws_hdr_copy(c->wsi, buf, (int)len, WSI_TOKEN_HTTP_AUTHORIZATION)
                             : -1;
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

int
ws_http_reply(ws_request *req, unsigned status, const char *type, const char *cache,
              const void *body, size_t len)
{
    struct lws *wsi = req->wsi;
    size_t cap = LWS_PRE + 1024 + len;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + cap - 1;
    int rc = -1;
    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &p, end))
        goto out;
    if (cache && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                              (const unsigned char *)cache,
                                              (int)strlen(cache), &p, end))
        goto out;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        goto out;
    memcpy(p, body, len);
    if (lws_write(wsi, p, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        goto out;
    rc = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    free(buf);
    return rc;
}

/* --- the lws callback ----------------------------------------------------------- */

static int
dispatch(ws_server *s, struct lws *wsi, enum lws_callback_reasons reason, session *ss,
         void *in, size_t len)
{
    ws_request req = { wsi };
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return s->detached ? -1 : s->cb.http(s->owner, &req, in ? (const char *)in : "/");
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!upgrade_version_ok(wsi))
            return -1;
        return !s->detached && s->cb.accept(s->owner, &req) ? 0 : -1;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return on_peer_close(wsi, in, len);
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(s, wsi, ss);
    case LWS_CALLBACK_RECEIVE:
        return ss && ss->c ? on_receive(s, wsi, ss->c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!ss || !ss->c)
            return 0;
        if (ss->c->closing)
            return -1;
        return ws_conn_write(s, ss->c) < 0 ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (ss && ss->c) {
            conn_free(s, ss->c);
            ss->c = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, ss, in, len);
    }
}

static int
lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    ws_server *s = ctx ? lws_context_user(ctx) : NULL;
    if (!s)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    s->in_callback++;
    int rc = dispatch(s, wsi, reason, user, in, len);
    s->in_callback--;
    return rc;
}

/* --- the server ------------------------------------------------------------------- */

/* lws's own lines, in chatd's format: escaped (they may quote client bytes),
 * cut to LWS_LOG_MAX, and rate-limited like any line a client can cause. */
static void
lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    char text[LWS_LOG_MAX];
    rt_log_escape(text, sizeof(text), line, n);
    if (level & LLL_ERR)
        RT_LOG_LIMITED(RT_LOG_ERROR, "lws", "%s", text);
    else
        rt_warn_limited("lws", "%s", text);
}

ws_server *
ws_server_new(const ws_config *cfg, const ws_callbacks *cb, void *owner)
{
    ws_server *s = calloc(1, sizeof(*s));
    if (!s || !(s->wbuf = malloc(LWS_PRE + WS_WRITE_CHUNK)))
        goto err;
    s->cfg = *cfg;
    s->cb = *cb;
    s->owner = owner;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    s->protocols[0] = (struct lws_protocols){
        .name = "ws",
        .callback = lws_cb,
        .per_session_data_size = sizeof(session),
        .rx_buffer_size = 1024,
        .tx_packet_size = LWS_PRE + WS_WRITE_CHUNK + 1024,
    };
    s->foreign_loops[0] = cfg->loop;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = cfg->port;
    info.iface = cfg->host && strcmp(cfg->host, "0.0.0.0") != 0 ? cfg->host : NULL;
    info.protocols = s->protocols;
    info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = s->foreign_loops;
    info.user = s;
    info.max_http_header_data = 1024;
    info.timeout_secs = 10;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        rt_error(cfg->who, "cannot listen on %s:%d (is the port taken? is the "
                 "libwebsockets-evlib-ev package installed?)", cfg->host ? cfg->host : "*",
                 cfg->port);
        goto err;
    }
    return s;
err:
    if (s)
        free(s->wbuf);
    free(s);
    return NULL;
}

static void
server_destroy(ws_server *s)
{
    /* CLOSED callbacks free the connections lws knows of */
    lws_context_destroy(s->ctx);
    rt_link *l;
    while ((l = s->conns.head))
        conn_free(s, RT_CONTAINER(l, ws_conn, link));
    free(s->wbuf);
    free(s);
}

static void
on_destroy_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    ev_timer_stop(loop, w);
    server_destroy(w->data);
}

void
ws_server_free(ws_server *s)
{
    if (!s || s->detached)
        return;
    s->detached = true;
    for (rt_link *l = s->conns.head; l; l = l->next)
        conn_detach(s, RT_CONTAINER(l, ws_conn, link));
    if (s->in_callback) {
        ev_timer_init(&s->destroy_timer, on_destroy_timer, 0., 0.);
        s->destroy_timer.data = s;
        ev_timer_start(s->cfg.loop, &s->destroy_timer);
        return;
    }
    server_destroy(s);
}
