/*
 * The incoming half of the sio codec (sio.h): sio_parse() reads a frame,
 * sio_request_parse() validates an event. The sio_encode_*() writers are in
 * sio_encode.c.
 */
#include "proto/sio.h"

#include <limits.h>
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

/* CONNECT on "/": the payload is the auth object, auth.user the name it
 * gives, auth.token the token it shows (kept in root); either may be absent. */
static sio_kind
parse_connect(sio_packet *pkt, const char *payload, size_t len)
{
    pkt->message = "invalid user";
    if (len == 0) {
        pkt->message = NULL;
        return set_kind(pkt, SIO_PKT_CONNECT);
    }
    bool oom;
    json_t *auth = decode_json(payload, len, &oom);
    if (!json_is_object(auth)) {
        if (auth == NULL && oom)
            pkt->message = "unavailable";
        json_decref(auth);
        return set_kind(pkt, SIO_PKT_CONNECT_ERROR);
    }
    json_t *user = json_object_get(auth, "user");
    if (!user) {
        pkt->message = NULL;
    } else if (json_is_string(user)) {
        const char *s = json_string_value(user);
        size_t n = json_string_length(user);
        if (proto_check_user(s, n) == PROTO_OK) {
            memcpy(pkt->user, s, n);
            pkt->user[n] = '\0';
            pkt->user_len = n;
            pkt->message = NULL;
        }
    }
    json_t *token = json_object_get(auth, "token");
    pkt->has_token = token != NULL;
    if (!pkt->message && json_is_string(token)) {
        pkt->token = json_string_value(token);
        pkt->token_len = json_string_length(token);
        pkt->root = auth;
        auth = NULL;
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

/* The attachment count of a binary packet: up to 9 digits and a '-', read
 * from s[*i]. False when they are not there. */
static bool
parse_attachments(sio_packet *pkt, const char *s, size_t n, size_t *i)
{
    size_t start = *i;
    unsigned long count = 0;
    while (*i < n && is_digit(s[*i]) && *i - start < 9)
        count = count * 10 + (unsigned long)(s[(*i)++] - '0');
    if (*i == start || *i >= n || s[*i] != '-')
        return false;
    pkt->attachments = count;
    (*i)++;
    return true;
}

/* A namespace, when s[*i] starts one: up to the ',' (consumed) or the end.
 * False when it holds a control character or is too long. */
static bool
parse_nsp(sio_packet *pkt, const char *s, size_t n, size_t *i)
{
    if (*i >= n || s[*i] != '/')
        return true;
    size_t start = *i;
    while (*i < n && s[*i] != ',') {
        unsigned char c = (unsigned char)s[*i];
        if (c < 0x20 || c == 0x7F || *i - start >= SIO_NSP_MAX)
            return false;
        (*i)++;
    }
    pkt->nsp = s + start;
    pkt->nsp_len = *i - start;
    if (*i < n)
        (*i)++;                                 /* the ',' */
    return true;
}

/* The ack id, when digits follow at s[*i]. It comes before the JSON so that
 * it can be read even when the JSON cannot. Every digit belongs to it, as in
 * socket.io-parser. False when the digits do not make a readable id (above
 * SIO_ACK_ID_MAX); they are consumed all the same. */
static bool
parse_ack_id(sio_packet *pkt, const char *s, size_t n, size_t *i)
{
    if (*i >= n || !is_digit(s[*i]))
        return true;
    bool ok = true;
    uint64_t id = 0;
    for (; *i < n && is_digit(s[*i]); (*i)++) {
        unsigned d = (unsigned)(s[*i] - '0');
        if (id > (SIO_ACK_ID_MAX - d) / 10)
            ok = false;
        else
            id = id * 10 + d;
    }
    if (ok) {
        pkt->has_ack = true;
        pkt->ack_id = id;
    }
    return ok;
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

    if ((type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) &&
        !parse_attachments(pkt, s, n, &i))
        return set_kind(pkt, SIO_PKT_INVALID);
    if (!parse_nsp(pkt, s, n, &i))
        return set_kind(pkt, SIO_PKT_INVALID);
    bool root_nsp = pkt->nsp_len == 1;
    bool ack_ok = parse_ack_id(pkt, s, n, &i);
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
            return set_kind(pkt, SIO_PKT_FOREIGN_EVENT);
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

/* Every check below answers bad_request with a message and returns. */
#define BAD(msg) do { *message = (msg); return SIO_E_BAD_REQUEST; } while (0)

static sio_error
validate_join(const json_t *args, sio_request *req, const char **message)
{
    bool present;
    json_int_t v = 0;
    if (!get_opt_int(args, "since", 0, LLONG_MAX, &present, &v))
        BAD("since must be an integer >= 0");
    req->has_since = present;
    req->since = present ? (uint64_t)v : 0;
    return SIO_OK;
}

/* too_large comes after every bad_request check of the message. */
static sio_error
validate_message(const json_t *args, sio_request *req, const char **message)
{
    if (!get_string(args, "id", &req->id, &req->id_len))
        BAD("id must be a string");
    if (proto_check_msgid(req->id, req->id_len) != PROTO_OK)
        BAD("invalid id");
    if (!get_string(args, "text", &req->text, &req->text_len))
        BAD("text must be a string");
    switch (proto_check_text(req->text, req->text_len)) {
    case PROTO_OK:
        return SIO_OK;
    case PROTO_E_TOO_LONG:
        if (!proto_utf8_valid(req->text, req->text_len))
            BAD("text is not UTF-8");
        *message = "text over 4096 bytes";
        return SIO_E_TOO_LARGE;
    case PROTO_E_EMPTY:
        BAD("empty text");
    default:
        BAD("text is not UTF-8");
    }
}

static sio_error
validate_history(const json_t *args, sio_request *req, const char **message)
{
    bool present;
    json_int_t v = 0;
    if (!get_opt_int(args, "before", 0, LLONG_MAX, &present, &v))
        BAD("before must be an integer >= 0");
    req->has_before = present;
    req->before = present ? (uint64_t)v : 0;
    if (!get_opt_int(args, "limit", 1, SIO_HISTORY_LIMIT_MAX, &present, &v))
        BAD("limit must be an integer from 1 to 200");
    req->limit = present ? (unsigned)v : SIO_HISTORY_LIMIT_DEFAULT;
    return SIO_OK;
}

static sio_error
validate(const sio_packet *pkt, const char *user, size_t user_len, sio_request *req,
         const char **message)
{
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

    sio_error err = SIO_OK;
    switch (req->event) {
    case SIO_EV_JOIN:
        err = validate_join(args, req, message);
        break;
    case SIO_EV_MESSAGE:
        err = validate_message(args, req, message);
        break;
    case SIO_EV_HISTORY:
        err = validate_history(args, req, message);
        break;
    default:                                    /* leave, typing, presence */
        break;
    }
    if (err != SIO_OK)
        return err;

    if (!proto_room_allows(req->room, req->room_len, user, user_len)) {
        *message = "not a member of this dm room";
        return SIO_E_FORBIDDEN;
    }
    *message = NULL;
    return SIO_OK;
}

#undef BAD

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
