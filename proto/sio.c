#include "proto/sio.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"

/* Payloads are decoded strictly: duplicate keys are refused (see sio.h), and
 * only an array or object at the top. U+0000 is a Unicode scalar value like
 * any other: text may hold it (every string is handled with its length, and
 * the store keeps text as bytes); names cannot, by their character sets. */
#define SIO_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

const char *
sio_error_code(sio_error err)
{
    switch (err) {
    case SIO_OK:             return "ok";
    case SIO_E_BAD_REQUEST:  return "bad_request";
    case SIO_E_TOO_LARGE:    return "too_large";
    case SIO_E_FORBIDDEN:    return "forbidden";
    case SIO_E_NOT_MEMBER:   return "not_member";
    case SIO_E_RATE_LIMITED: return "rate_limited";
    case SIO_E_UNAVAILABLE:  return "unavailable";
    }
    return "unavailable";
}

/* ------------------------------------------------------------------------ */
/* Incoming frames                                                          */
/* ------------------------------------------------------------------------ */

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static sio_kind
set_kind(sio_packet *pkt, sio_kind kind)
{
    pkt->kind = kind;
    return kind;
}

static sio_kind
event_fail(sio_packet *pkt, sio_error err, const char *message)
{
    pkt->err = err;
    pkt->message = message;
    return set_kind(pkt, SIO_PKT_EVENT);
}

/* Decodes a JSON payload; NULL on failure with *oom telling why. */
static json_t *
decode_json(const char *s, size_t len, bool *oom)
{
    json_error_t error;
    memset(&error, 0, sizeof(error));
    json_t *root = json_loadb(s, len, SIO_JSON_FLAGS, &error);
    /* jansson 2.14 returns without an error text when its first allocation
     * fails; every other failure sets one. */
    *oom = root == NULL && (json_error_code(&error) == json_error_out_of_memory ||
                            error.text[0] == '\0');
    return root;
}

/* CONNECT on "/": the payload is the auth object, auth.user the identity. */
static sio_kind
parse_connect(sio_packet *pkt, const char *payload, size_t len)
{
    pkt->message = "invalid user";
    if (len == 0)
        return set_kind(pkt, SIO_PKT_CONNECT_ERROR);

    bool oom;
    json_t *auth = decode_json(payload, len, &oom);
    if (auth == NULL) {
        if (oom)
            pkt->message = "unavailable";
        return set_kind(pkt, SIO_PKT_CONNECT_ERROR);
    }
    json_t *user = json_object_get(auth, "user");  /* NULL unless an object */
    if (json_is_string(user)) {
        const char *s = json_string_value(user);
        size_t n = json_string_length(user);
        if (proto_check_user(s, n) == PROTO_OK) {
            memcpy(pkt->user, s, n);
            pkt->user[n] = '\0';
            pkt->user_len = n;
            pkt->message = NULL;
        }
    }
    json_decref(auth);
    return set_kind(pkt, pkt->message ? SIO_PKT_CONNECT_ERROR : SIO_PKT_CONNECT);
}

/* EVENT or BINARY_EVENT on "/"; ack_ok is false when digits were there but
 * did not make a readable id. */
static sio_kind
parse_event(sio_packet *pkt, bool binary, bool ack_ok, const char *payload, size_t len)
{
    if (!ack_ok)
        return event_fail(pkt, SIO_E_BAD_REQUEST, "invalid ack id");
    if (binary)
        return event_fail(pkt, SIO_E_BAD_REQUEST, "binary attachments are not supported");
    if (len == 0)
        return event_fail(pkt, SIO_E_BAD_REQUEST, "missing payload");

    bool oom;
    pkt->root = decode_json(payload, len, &oom);
    if (pkt->root == NULL)
        return oom ? event_fail(pkt, SIO_E_UNAVAILABLE, "out of memory")
                   : event_fail(pkt, SIO_E_BAD_REQUEST, "invalid JSON");

    json_t *name = json_array_get(pkt->root, 0);   /* NULL unless an array */
    if (!json_is_string(name))
        return event_fail(pkt, SIO_E_BAD_REQUEST, "payload must be [event, args]");
    pkt->event = json_string_value(name);
    pkt->event_len = json_string_length(name);
    pkt->args = json_array_get(pkt->root, 1);
    return set_kind(pkt, SIO_PKT_EVENT);
}

/* The Socket.IO packet inside an Engine.IO message (s excludes the '4'):
 *
 *     <type>[<attachments>-][<nsp>,][<ack id>][<json>]
 */
static sio_kind
parse_socketio(sio_packet *pkt, const char *s, size_t n)
{
    if (n == 0)
        return set_kind(pkt, SIO_PKT_INVALID);
    char type = s[0];
    size_t i = 1;

    if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) {
        size_t start = i;
        unsigned long count = 0;
        while (i < n && is_digit(s[i]) && i - start < 9)
            count = count * 10 + (unsigned long)(s[i++] - '0');
        if (i == start || i >= n || s[i] != '-')
            return set_kind(pkt, SIO_PKT_INVALID);
        pkt->attachments = count;
        i++;
    }

    if (i < n && s[i] == '/') {
        size_t start = i;
        while (i < n && s[i] != ',') {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7F || i - start >= SIO_NSP_MAX)
                return set_kind(pkt, SIO_PKT_INVALID);
            i++;
        }
        pkt->nsp = s + start;
        pkt->nsp_len = i - start;
        if (i < n)
            i++;                                /* the ',' */
    }
    bool root_nsp = pkt->nsp_len == 1;

    /* The ack id comes before the JSON so that it can be read even when the
     * JSON cannot. Every digit belongs to it, as in socket.io-parser. */
    bool ack_ok = true;
    if (i < n && is_digit(s[i])) {
        uint64_t id = 0;
        for (; i < n && is_digit(s[i]); i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (id > (SIO_ACK_ID_MAX - d) / 10)
                ack_ok = false;
            else
                id = id * 10 + d;
        }
        if (ack_ok) {
            pkt->has_ack = true;
            pkt->ack_id = id;
        }
    }
    const char *payload = s + i;
    size_t plen = n - i;

    switch (type) {
    case SIO_CONNECT:
        if (!root_nsp) {
            pkt->message = "Invalid namespace";
            return set_kind(pkt, SIO_PKT_CONNECT_ERROR);
        }
        pkt->has_ack = false;
        pkt->ack_id = 0;
        return parse_connect(pkt, payload, plen);
    case SIO_DISCONNECT:
        return set_kind(pkt, root_nsp ? SIO_PKT_DISCONNECT : SIO_PKT_IGNORE);
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        if (!root_nsp)
            return set_kind(pkt, SIO_PKT_IGNORE);
        return parse_event(pkt, type == SIO_BINARY_EVENT, ack_ok, payload, plen);
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return set_kind(pkt, SIO_PKT_IGNORE);
    default:                                    /* CONNECT_ERROR, unknown */
        return set_kind(pkt, SIO_PKT_INVALID);
    }
}

sio_kind
sio_parse(const char *frame, size_t len, sio_packet *pkt)
{
    memset(pkt, 0, sizeof(*pkt));
    pkt->nsp = "/";
    pkt->nsp_len = 1;
    if (len == 0)
        return set_kind(pkt, SIO_PKT_INVALID);

    switch (frame[0]) {
    case SIO_EIO_CLOSE:
        return set_kind(pkt, SIO_PKT_CLOSE);
    case SIO_EIO_PING:
        pkt->data = frame + 1;
        pkt->data_len = len - 1;
        return set_kind(pkt, SIO_PKT_PING);
    case SIO_EIO_PONG:
        return set_kind(pkt, SIO_PKT_PONG);
    case SIO_EIO_MESSAGE:
        return parse_socketio(pkt, frame + 1, len - 1);
    case SIO_EIO_UPGRADE:
    case SIO_EIO_NOOP:
        return set_kind(pkt, SIO_PKT_IGNORE);
    default:                                    /* open, or not Engine.IO */
        return set_kind(pkt, SIO_PKT_INVALID);
    }
}

void
sio_packet_free(sio_packet *pkt)
{
    json_decref(pkt->root);
    memset(pkt, 0, sizeof(*pkt));
}

/* ------------------------------------------------------------------------ */
/* Event validation                                                         */
/* ------------------------------------------------------------------------ */

static const char *const event_names[] = {
    [SIO_EV_NONE] = "",
    [SIO_EV_JOIN] = "join",
    [SIO_EV_LEAVE] = "leave",
    [SIO_EV_MESSAGE] = "message",
    [SIO_EV_HISTORY] = "history",
    [SIO_EV_TYPING] = "typing",
    [SIO_EV_PRESENCE] = "presence",
};

const char *
sio_event_name(sio_event ev)
{
    if ((unsigned)ev >= sizeof(event_names) / sizeof(event_names[0]))
        return "";
    return event_names[ev];
}

static sio_event
event_lookup(const char *name, size_t len)
{
    for (size_t i = SIO_EV_JOIN; i < sizeof(event_names) / sizeof(event_names[0]); i++)
        if (strlen(event_names[i]) == len && memcmp(event_names[i], name, len) == 0)
            return (sio_event)i;
    return SIO_EV_NONE;
}

/* A required string member: false when absent or not a string. */
static bool
get_string(const json_t *args, const char *key, const char **s, size_t *len)
{
    json_t *v = json_object_get(args, key);
    if (!json_is_string(v))
        return false;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

/* An optional integer member in [min, max]: true when absent or null (then
 * *present is false) or a JSON integer in range; false otherwise (reals,
 * booleans, strings, out of range). */
static bool
get_opt_int(const json_t *args, const char *key, json_int_t min, json_int_t max,
            bool *present, json_int_t *value)
{
    json_t *v = json_object_get(args, key);
    *present = false;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return false;
    *present = true;
    *value = x;
    return true;
}

static sio_error
validate(const sio_packet *pkt, const char *user, size_t user_len, sio_request *req,
         const char **message)
{
#define BAD(msg) do { *message = (msg); return SIO_E_BAD_REQUEST; } while (0)
    if (pkt->kind != SIO_PKT_EVENT)
        BAD("not an event");
    if (pkt->err != SIO_OK) {
        *message = pkt->message;
        return pkt->err;
    }
    req->event = event_lookup(pkt->event, pkt->event_len);
    if (req->event == SIO_EV_NONE)
        BAD("unknown event");
    if (json_array_size(pkt->root) != 2 || !json_is_object(pkt->args))
        BAD("payload must be [event, {args}]");

    const json_t *args = pkt->args;
    if (!get_string(args, "room", &req->room, &req->room_len))
        BAD("room must be a string");
    if (proto_check_room(req->room, req->room_len) != PROTO_OK)
        BAD("invalid room");

    bool present;
    json_int_t v = 0;
    bool text_too_large = false;
    switch (req->event) {
    case SIO_EV_JOIN:
        if (!get_opt_int(args, "since", 0, LLONG_MAX, &present, &v))
            BAD("since must be an integer >= 0");
        req->has_since = present;
        req->since = present ? (uint64_t)v : 0;
        break;
    case SIO_EV_MESSAGE:
        if (!get_string(args, "id", &req->id, &req->id_len))
            BAD("id must be a string");
        if (proto_check_msgid(req->id, req->id_len) != PROTO_OK)
            BAD("invalid id");
        if (!get_string(args, "text", &req->text, &req->text_len))
            BAD("text must be a string");
        switch (proto_check_text(req->text, req->text_len)) {
        case PROTO_OK:
            break;
        case PROTO_E_TOO_LONG:
            /* too_large comes after every bad_request check: keep going. */
            if (!proto_utf8_valid(req->text, req->text_len))
                BAD("text is not UTF-8");
            text_too_large = true;
            break;
        case PROTO_E_EMPTY:
            BAD("empty text");
        default:
            BAD("text is not UTF-8");
        }
        break;
    case SIO_EV_HISTORY:
        if (!get_opt_int(args, "before", 0, LLONG_MAX, &present, &v))
            BAD("before must be an integer >= 0");
        req->has_before = present;
        req->before = present ? (uint64_t)v : 0;
        if (!get_opt_int(args, "limit", 1, SIO_HISTORY_LIMIT_MAX, &present, &v))
            BAD("limit must be an integer from 1 to 200");
        req->limit = present ? (unsigned)v : SIO_HISTORY_LIMIT_DEFAULT;
        break;
    default:                                    /* leave, typing, presence */
        break;
    }

    if (text_too_large) {
        *message = "text over 4096 bytes";
        return SIO_E_TOO_LARGE;
    }
    if (!proto_room_allows(req->room, req->room_len, user, user_len)) {
        *message = "not a member of this dm room";
        return SIO_E_FORBIDDEN;
    }
    *message = NULL;
    return SIO_OK;
#undef BAD
}

sio_error
sio_request_parse(const sio_packet *pkt, const char *user, size_t user_len,
                  sio_request *req, const char **message)
{
    memset(req, 0, sizeof(*req));
    sio_error err = validate(pkt, user, user_len, req, message);
    if (err != SIO_OK)
        memset(req, 0, sizeof(*req));
    return err;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

/* A writer appends one packet; the first failure sticks and sio_w_end()
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

proto_err
sio_encode_ping(proto_mp_buf *b)
{
    sio_w w;
    w_begin(&w, b);
    w_lit(&w, "2");
    return w_end(&w);
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
