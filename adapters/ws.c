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
#include "adapters/ws.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "proto/utf8.h"
#include "runtime/grow.h"
#include "runtime/list.h"
#include "runtime/log.h"

#define FRAME_HEADER_MAX 10
#define RX_MIN 1024                 /* first reassembly buffer */
#define RX_KEEP 4096                /* larger buffers are freed after use */
#define QUEUE_KEEP 16               /* larger empty queues are freed */
#define CLOSE_WAIT_S 2              /* seconds a closing peer has to take the close */

struct ws_server {
    ws_config cfg;
    ws_callbacks cb;
    void *owner;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    void *foreign_loops[1];
    rt_list conns;                  /* every ws_conn */
    rt_list dirty;                  /* conns with frames since the last flush */
    size_t nconns;
    uint64_t next_id;
    uint8_t *wbuf;                  /* LWS_PRE + WS_WRITE_CHUNK, for raw writes */
    unsigned in_callback;
    bool detached;                  /* ws_server_free was called */
    ev_timer destroy_timer;         /* the deferred teardown */
};

struct ws_conn {
    ws_server *srv;
    struct lws *wsi;
    void *data;                     /* the owner's, from `open` */
    uint64_t id;
    rt_link link;                   /* in srv->conns */
    rt_link dirty_link;             /* in srv->dirty when dirty */
    bool dirty;
    bool closing;
    bool detached;                  /* the owner's `close` was called */

    char *rx;                       /* the message being reassembled */
    size_t rx_len, rx_cap;

    ws_frame **q;                   /* send queue: a ring of frames */
    size_t q_head, q_len, q_cap;
};

struct ws_request {
    struct lws *wsi;
};

typedef struct session {
    ws_conn *c;
} session;

/* --- frames ------------------------------------------------------------- */

ws_frame *
ws_frame_text(const void *payload, size_t len)
{
    if (len > UINT32_MAX - FRAME_HEADER_MAX)
        return NULL;
    ws_frame *f = malloc(sizeof(*f) + FRAME_HEADER_MAX + len);
    if (!f)
        return NULL;
    uint8_t *p = f->data;
    *p++ = 0x81;
    if (len < 126) {
        *p++ = (uint8_t)len;
    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    } else {
        *p++ = 127;
        for (int i = 7; i >= 0; i--)
            *p++ = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(p, payload, len);
    f->len = (uint32_t)(p - f->data + len);
    f->refs = 1;
    return f;
}

void
ws_frame_unref(ws_frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* --- the send queue ------------------------------------------------------ */

/* Makes room for one more frame in c's ring. False when out of memory. */
static bool
queue_grow(ws_conn *c)
{
    if (c->q_len < c->q_cap)
        return true;
    size_t old = c->q_cap;
    if (!rt_grow((void **)&c->q, &c->q_cap, c->q_len + 1, sizeof(*c->q)))
        return false;
    /* the frames that wrapped around to the front move past the old end
     * (the new capacity is at least twice the old) */
    size_t wrapped = c->q_head + c->q_len > old ? c->q_head + c->q_len - old : 0;
    for (size_t i = 0; i < wrapped; i++)
        c->q[old + i] = c->q[i];
    return true;
}

static ws_frame *
queue_pop(ws_conn *c)
{
    ws_frame *f = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    return f;
}

static void
queue_clear(ws_conn *c)
{
    while (c->q_len)
        ws_frame_unref(queue_pop(c));
    free(c->q);
    c->q = NULL;
    c->q_cap = c->q_head = 0;
}

int
ws_send(ws_conn *c, ws_frame *f)
{
    if (c->closing)
        return WS_ECLOSING;
    if (c->q_len >= c->srv->cfg.queue_max)
        return WS_EFULL;
    if (!queue_grow(c))
        return WS_ENOMEM;
    f->refs++;
    c->q[(c->q_head + c->q_len++) % c->q_cap] = f;
    if (!c->dirty) {
        c->dirty = true;
        rt_list_push_back(&c->srv->dirty, &c->dirty_link);
    }
    return WS_OK;
}

int
ws_send_text(ws_conn *c, const void *payload, size_t len)
{
    if (c->closing)
        return WS_ECLOSING;
    ws_frame *f = ws_frame_text(payload, len);
    if (!f)
        return WS_ENOMEM;
    int rc = ws_send(c, f);
    ws_frame_unref(f);
    return rc;
}

size_t
ws_queued(const ws_conn *c)
{
    return c->q_len;
}

/* --- writing -------------------------------------------------------------- */

/* Writes one frame larger than the chunk on its own. Returns lws_write's
 * result. */
static int
write_alone(ws_conn *c, ws_frame *f)
{
    uint8_t *tmp = malloc(LWS_PRE + f->len);
    if (!tmp)
        return -1;
    memcpy(tmp + LWS_PRE, f->data, f->len);
    int n = lws_write(c->wsi, tmp + LWS_PRE, f->len, LWS_WRITE_RAW);
    free(tmp);
    return n;
}

/* Writes what is queued on c, as many frames per write as fit in
 * WS_WRITE_CHUNK. Stops when lws had to buffer (the rest goes in the
 * WRITEABLE callback). Returns -1 when a write failed (lws closes the
 * connection). */
static int
conn_write(ws_server *s, ws_conn *c)
{
    while (c->q_len && !lws_partial_buffered(c->wsi)) {
        uint8_t *dst = s->wbuf + LWS_PRE;
        size_t total = 0;
        while (c->q_len && total + c->q[c->q_head]->len <= WS_WRITE_CHUNK) {
            ws_frame *f = queue_pop(c);
            memcpy(dst + total, f->data, f->len);
            total += f->len;
            ws_frame_unref(f);
        }
        if (total == 0) {
            ws_frame *big = queue_pop(c);
            int n = write_alone(c, big);
            ws_frame_unref(big);
            if (n < 0)
                return -1;
            continue;
        }
        if (lws_write(c->wsi, dst, total, LWS_WRITE_RAW) < 0)
            return -1;
    }
    if (c->q_len == 0 && c->q_cap > QUEUE_KEEP)
        queue_clear(c);     /* an idle connection keeps no large queue */
    if (c->q_len)
        lws_callback_on_writable(c->wsi);
    return 0;
}

void
ws_flush(ws_server *s)
{
    rt_link *l;
    while ((l = rt_list_pop_front(&s->dirty))) {
        ws_conn *c = RT_CONTAINER(l, ws_conn, dirty_link);
        c->dirty = false;
        if (c->closing)
            continue;
        if (s->in_callback || lws_partial_buffered(c->wsi))
            lws_callback_on_writable(c->wsi);
        else if (conn_write(s, c) < 0)
            ws_close(c, WS_CLOSE_UNEXPECTED, "write failed");
    }
}

void
ws_close(ws_conn *c, int code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    size_t n = strlen(reason);
    lws_close_reason(c->wsi, (enum lws_close_status)code, (unsigned char *)reason,
                     n > 123 ? 123 : n);
    /* The WRITEABLE callback returns -1, which makes lws send the close frame
     * with this code and reason, then close and call CLOSED. A peer that
     * never lets us write is killed after CLOSE_WAIT_S. (Killing at once with
     * LWS_TO_KILL_ASYNC, as socket.c did, closes the TCP connection without
     * any close frame: the peer saw 1006, never the code.) */
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_WAIT_S);
}

bool
ws_closing(const ws_conn *c)
{
    return c->closing;
}

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
    queue_clear(c);
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
        if (lws_is_final_fragment(wsi))
            c->rx_len = 0;
        return 0;
    }
    if (c->rx_len + len > s->cfg.max_message) {
        rt_info(s->cfg.who, "connection %" PRIu64 ": message over %zu bytes: closing", c->id,
                s->cfg.max_message);
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
        return !s->detached && s->cb.accept(s->owner, &req) ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(s, wsi, ss);
    case LWS_CALLBACK_RECEIVE:
        return ss && ss->c ? on_receive(s, wsi, ss->c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!ss || !ss->c)
            return 0;
        if (ss->c->closing)
            return -1;
        return conn_write(s, ss->c) < 0 ? -1 : 0;
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

ws_server *
ws_server_new(const ws_config *cfg, const ws_callbacks *cb, void *owner)
{
    ws_server *s = calloc(1, sizeof(*s));
    if (!s || !(s->wbuf = malloc(LWS_PRE + WS_WRITE_CHUNK)))
        goto err;
    s->cfg = *cfg;
    s->cb = *cb;
    s->owner = owner;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
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
