/*
 * The outgoing half of the sio codec (sio.h): sio_encode_*() write one
 * Engine.IO / Socket.IO packet each. Parsing and event validation are in
 * sio.c.
 */
#include "proto/sio.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proto/utf8.h"

/* A writer appends one packet; the first failure sticks and w_end()
 * then rolls the buffer back to where the packet started. */
typedef struct sio_w {
    proto_mp_buf *b;
    size_t start;
    proto_err err;
} sio_w;

static void
w_begin(sio_w *w, proto_mp_buf *b)
{
    w->b = b;
    w->start = b->len;
    w->err = PROTO_OK;
}

static proto_err
w_end(sio_w *w)
{
    if (w->err != PROTO_OK) {
        w->b->len = w->start;
        w->b->failed = false;
    }
    return w->err;
}

static void
w_fail(sio_w *w, proto_err err)
{
    if (w->err == PROTO_OK)
        w->err = err;
}

static void
w_bytes(sio_w *w, const char *s, size_t n)
{
    if (w->err == PROTO_OK)
        w_fail(w, proto_mp_buf_append(w->b, s, n));
}

static void
w_lit(sio_w *w, const char *s)
{
    w_bytes(w, s, strlen(s));
}

static void
w_u64(sio_w *w, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    w_bytes(w, tmp, (size_t)n);
}

static void
w_i64(sio_w *w, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    w_bytes(w, tmp, (size_t)n);
}

/* A JSON string literal, quotes included. The input must be UTF-8; quote,
 * backslash and C0 controls are escaped, everything else passes through. */
static void
w_json_str(sio_w *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!proto_utf8_valid(s, n)) {
        w_fail(w, PROTO_E_UTF8);
        return;
    }
    w_bytes(w, "\"", 1);
    size_t run = 0;                             /* start of unescaped bytes */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        w_bytes(w, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':  w_bytes(w, "\\\"", 2); break;
        case '\\': w_bytes(w, "\\\\", 2); break;
        case '\b': w_bytes(w, "\\b", 2); break;
        case '\f': w_bytes(w, "\\f", 2); break;
        case '\n': w_bytes(w, "\\n", 2); break;
        case '\r': w_bytes(w, "\\r", 2); break;
        case '\t': w_bytes(w, "\\t", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            w_bytes(w, esc, sizeof(esc));
        }
        }
    }
    w_bytes(w, s + run, n - run);
    w_bytes(w, "\"", 1);
}

static int
w_dump_cb(const char *buffer, size_t size, void *data)
{
    sio_w *w = data;
    w_bytes(w, buffer, size);
    return w->err == PROTO_OK ? 0 : -1;
}

proto_err
sio_encode_open(proto_mp_buf *b, const char *sid, size_t sid_len, unsigned ping_interval_ms,
                unsigned ping_timeout_ms, unsigned long max_payload)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "0{\"sid\":");
    w_json_str(&w, sid, sid_len);
    w_lit(&w, ",\"upgrades\":[],\"pingInterval\":");
    w_u64(&w, ping_interval_ms);
    w_lit(&w, ",\"pingTimeout\":");
    w_u64(&w, ping_timeout_ms);
    w_lit(&w, ",\"maxPayload\":");
    w_u64(&w, max_payload);
    w_lit(&w, "}");
    return w_end(&w);
}

/* A packet that is always the same bytes. */
static proto_err
encode_lit(proto_mp_buf *b, const char *packet)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, packet);
    return w_end(&w);
}

proto_err
sio_encode_ping(proto_mp_buf *b)
{
    return encode_lit(b, "2");
}

proto_err
sio_encode_pong(proto_mp_buf *b, const char *data, size_t len)
{
    sio_w w;
    w_begin(&w, b);
    if (!proto_utf8_valid(data, len))
        w_fail(&w, PROTO_E_UTF8);
    w_lit(&w, "3");
    w_bytes(&w, data, len);
    return w_end(&w);
}

proto_err
sio_encode_connect(proto_mp_buf *b, const char *sid, size_t sid_len)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "40{\"sid\":");
    w_json_str(&w, sid, sid_len);
    w_lit(&w, "}");
    return w_end(&w);
}

proto_err
sio_encode_connect_error(proto_mp_buf *b, const char *nsp, size_t nsp_len, const char *message)
{
    sio_w w;
    w_begin(&w, b);
    if (nsp_len == 0 || nsp[0] != '/' || memchr(nsp, ',', nsp_len) != NULL)
        w_fail(&w, PROTO_E_SYNTAX);
    else if (!proto_utf8_valid(nsp, nsp_len))
        w_fail(&w, PROTO_E_UTF8);
    w_lit(&w, "44");
    if (nsp_len > 1) {
        w_bytes(&w, nsp, nsp_len);
        w_lit(&w, ",");
    }
    w_lit(&w, "{\"message\":");
    w_json_str(&w, message, strlen(message));
    w_lit(&w, "}");
    return w_end(&w);
}

/* {"reason":reason} */
static void
w_reason(sio_w *w, const char *reason)
{
    w_lit(w, "{\"reason\":");
    w_json_str(w, reason, strlen(reason));
    w_lit(w, "}");
}

proto_err
sio_encode_connect_refused(proto_mp_buf *b, const char *message, const char *reason)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "44{\"message\":");
    w_json_str(&w, message, strlen(message));
    w_lit(&w, ",\"data\":");
    w_reason(&w, reason);
    w_lit(&w, "}");
    return w_end(&w);
}

proto_err
sio_encode_token_expired(proto_mp_buf *b, const char *reason)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "42[\"token_expired\",");
    w_reason(&w, reason);
    w_lit(&w, "]");
    return w_end(&w);
}

proto_err
sio_encode_disconnect(proto_mp_buf *b)
{
    return encode_lit(b, "41");
}

proto_err
sio_encode_ack_ok(proto_mp_buf *b, uint64_t ack_id, const json_t *fields)
{
    sio_w w;
    w_begin(&w, b);
    if (fields != NULL && !json_is_object(fields))
        w_fail(&w, PROTO_E_TYPE);
    w_lit(&w, "43");
    w_u64(&w, ack_id);
    w_lit(&w, "[{\"ok\":true");
    if (fields != NULL) {
        /* jansson's iterator API takes a non-const object; it only reads. */
        json_t *obj = (json_t *)fields;
        for (void *it = json_object_iter(obj); it && w.err == PROTO_OK;
             it = json_object_iter_next(obj, it)) {
            const char *key = json_object_iter_key(it);
            size_t key_len = json_object_iter_key_len(it);
            if (key_len == 2 && memcmp(key, "ok", 2) == 0)
                continue;
            w_lit(&w, ",");
            w_json_str(&w, key, key_len);
            w_lit(&w, ":");
            if (w.err == PROTO_OK &&
                json_dump_callback(json_object_iter_value(it), w_dump_cb, &w,
                                   JSON_COMPACT | JSON_ENCODE_ANY) != 0)
                w_fail(&w, PROTO_E_UTF8);   /* jansson refused a value */
        }
    }
    w_lit(&w, "}]");
    return w_end(&w);
}

proto_err
sio_encode_ack_error(proto_mp_buf *b, uint64_t ack_id, sio_error err, const char *message)
{
    sio_w w;
    w_begin(&w, b);
    if (err == SIO_OK || (unsigned)err > SIO_E_UNAVAILABLE)
        w_fail(&w, PROTO_E_RANGE);
    w_lit(&w, "43");
    w_u64(&w, ack_id);
    w_lit(&w, "[{\"ok\":false,\"error\":{\"code\":\"");
    w_lit(&w, sio_error_code(err));
    w_lit(&w, "\",\"message\":");
    w_json_str(&w, message, strlen(message));
    w_lit(&w, "}}]");
    return w_end(&w);
}

proto_err
sio_encode_message(proto_mp_buf *b, const sio_message *m)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "42[\"message\",{\"room\":");
    w_json_str(&w, m->room, m->room_len);
    w_lit(&w, ",\"seq\":");
    w_u64(&w, m->seq);
    w_lit(&w, ",\"id\":");
    w_json_str(&w, m->id, m->id_len);
    w_lit(&w, ",\"user\":");
    w_json_str(&w, m->user, m->user_len);
    w_lit(&w, ",\"text\":");
    w_json_str(&w, m->text, m->text_len);
    w_lit(&w, ",\"ts\":");
    w_i64(&w, m->ts);
    w_lit(&w, "}]");
    return w_end(&w);
}

proto_err
sio_encode_typing(proto_mp_buf *b, const char *room, size_t room_len, const char *user,
                  size_t user_len)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "42[\"typing\",{\"room\":");
    w_json_str(&w, room, room_len);
    w_lit(&w, ",\"user\":");
    w_json_str(&w, user, user_len);
    w_lit(&w, "}]");
    return w_end(&w);
}
