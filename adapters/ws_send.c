/*
 * The WebSocket adapter's sending side (see ws.h): reference-counted frames,
 * each connection's send queue under its frame and byte caps, coalesced
 * writes after the owner's turn, and closes with a code and a reason.
 */
#include "adapters/ws_internal.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/grow.h"
#include "runtime/log.h"

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
    c->q_bytes -= FRAME_COST(f);
    return f;
}

void
ws_queue_clear(ws_conn *c)
{
    while (c->q_len)
        ws_frame_unref(queue_pop(c));
    free(c->q);
    c->q = NULL;
    c->q_cap = c->q_head = 0;
}

/* Whether writing to c must wait for lws's WRITEABLE callback: inside an
 * lws callback, or while lws still buffers the tail of the last write. */
static bool
write_must_wait(const ws_server *s, ws_conn *c)
{
    return s->in_callback || lws_partial_buffered(c->wsi);
}

/* Whether f fits in c's queue: under both caps, or alone (a frame larger
 * than the byte cap still goes to a connection that holds nothing). */
static bool
queue_fits(const ws_conn *c, const ws_frame *f)
{
    const ws_config *cfg = &c->srv->cfg;
    if (c->q_len >= cfg->queue_max)
        return false;
    return c->q_bytes + c->lws_held + FRAME_COST(f) <= cfg->queue_bytes ||
           (c->q_len == 0 && c->lws_held == 0);
}

int
ws_send(ws_conn *c, ws_frame *f)
{
    if (c->closing)
        return WS_ECLOSING;
    if (!queue_fits(c, f)) {
        /* before calling it full, hand lws what the socket takes now (not
         * from inside an lws callback, and not past what lws buffers) */
        ws_server *s = c->srv;
        if (c->wsi == NULL || write_must_wait(s, c))
            return WS_EFULL;
        if (ws_conn_write(s, c) < 0) {
            ws_close(c, WS_CLOSE_UNEXPECTED, "write failed");
            return WS_ECLOSING;
        }
        if (!queue_fits(c, f))
            return WS_EFULL;
    }
    if (!queue_grow(c))
        return WS_ENOMEM;
    f->refs++;
    c->q[(c->q_head + c->q_len++) % c->q_cap] = f;
    c->q_bytes += FRAME_COST(f);
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

size_t
ws_queued_bytes(const ws_conn *c)
{
    return c->q_bytes + c->lws_held;
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
int
ws_conn_write(ws_server *s, ws_conn *c)
{
    if (!lws_partial_buffered(c->wsi))
        c->lws_held = 0;
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
            c->lws_held = lws_partial_buffered(c->wsi) ? big->len : 0;
            ws_frame_unref(big);
            if (n < 0)
                return -1;
            continue;
        }
        if (lws_write(c->wsi, dst, total, LWS_WRITE_RAW) < 0)
            return -1;
        c->lws_held = lws_partial_buffered(c->wsi) ? total : 0;
    }
    if (c->q_len == 0 && c->q_cap > QUEUE_KEEP)
        ws_queue_clear(c);     /* an idle connection keeps no large queue */
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
        if (write_must_wait(s, c))
            lws_callback_on_writable(c->wsi);
        else if (ws_conn_write(s, c) < 0)
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
