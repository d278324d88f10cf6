/*
 * sio: the Engine.IO v4 / Socket.IO v5 codec of the client protocol
 * (shared/PROTOCOL.md), without any I/O. The socket actor hands in one
 * reassembled WebSocket text frame (already checked to be valid UTF-8 and at
 * most maxPayload bytes) and gets back what it means; it asks this module for
 * the bytes of every packet it sends.
 *
 * Incoming, in three steps:
 *
 *   sio_parse()          frame -> sio_packet: Engine.IO type, Socket.IO type,
 *                        namespace, ack id, decoded JSON payload
 *   sio_request_parse()  an EVENT packet -> typed sio_request, or the protocol
 *                        error (code + message) to ack with
 *   sio_packet_free()    always, whatever sio_parse() returned
 *
 * Outgoing: sio_encode_*() append one packet (the WebSocket payload, without
 * frame header) to a proto_mp_buf.
 *
 * Decisions where PROTOCOL.md is silent:
 *
 * - Namespaces: only "/" is served. A CONNECT to any other namespace is
 *   refused as stock Socket.IO refuses it: 44<nsp>,{"message":"Invalid
 *   namespace"} (the client's connect_error fires on that namespace). Any
 *   other packet addressed to another namespace is ignored, as stock servers
 *   ignore packets for namespaces the client is not connected to.
 * - A packet that is not Engine.IO/Socket.IO at all (empty frame, unknown
 *   type, an Engine.IO "open" or a CONNECT_ERROR sent by a client, a malformed
 *   attachment count or namespace) is SIO_PKT_INVALID: the caller closes the
 *   connection, as stock servers do on a parse error. Everything that reaches
 *   the EVENT stage instead gets bad_request and the connection stays up.
 * - Ack ids are decimal digits read before any JSON, so they survive a payload
 *   jansson refuses (lone surrogate escapes, duplicate keys, bad syntax). An id above 2^53 - 1 (JavaScript's Number.MAX_SAFE_INTEGER; the
 *   official client counts from 0) is not readable: the event is bad_request
 *   and is not answered.
 * - CONNECT: the payload is the auth object; a payload that is not an object
 *   or does not decode, or an auth.user that is not a string or not a valid
 *   user name answer "invalid user". auth.user and auth.token may both be
 *   absent (no payload at all is an empty auth): whether a name or a token
 *   is needed is the caller's to decide.
 * - Binary packets: BINARY_EVENT on "/" is bad_request (answered through its
 *   ack id); BINARY_ACK is ignored (we never ask the client for acks). The
 *   attachment count is reported; the caller may simply drop every binary
 *   WebSocket frame, none is ever meaningful.
 * - Client ACK packets (answers to server acks we never request) are ignored.
 *   Engine.IO upgrade and noop are ignored; a client ping "2<data>" is answered
 *   with pong "3<data>" (sio_encode_pong).
 * - JSON: duplicate keys make the payload undecodable (bad_request): they
 *   are ambiguous. "\u0000" is accepted in text (PROTOCOL.md: any Unicode
 *   scalar value); names reject it by their character sets. Integers are JSON integers only: 5.0, 1e3, true, "5" are
 *   bad_request, as are values outside int64.
 * - Events: the payload must be exactly ["name", {args}]; extra elements or
 *   non-object args are bad_request. Unknown fields inside args are ignored
 *   (lenient, for forward compatibility). An optional field given as null is
 *   treated as absent.
 * - bad_request vs too_large: only a text over 4096 bytes is too_large; every
 *   other violation (empty text, names or ids too long or malformed, integers
 *   out of range) is bad_request. As the protocol orders them, any bad_request
 *   problem in the event wins over too_large, which wins over forbidden.
 * - history.before must be >= 0 (seqs start at 1; a negative bound is a client
 *   bug, not an empty query).
 */
#ifndef CHATD_PROTO_SIO_H
#define CHATD_PROTO_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "proto/mp.h"
#include "proto/names.h"
#include "proto/proto.h"

/* Engine.IO v4 packet types (the first character of a frame). */
#define SIO_EIO_OPEN    '0'
#define SIO_EIO_CLOSE   '1'
#define SIO_EIO_PING    '2'
#define SIO_EIO_PONG    '3'
#define SIO_EIO_MESSAGE '4'
#define SIO_EIO_UPGRADE '5'
#define SIO_EIO_NOOP    '6'

/* Socket.IO v5 packet types (the character after an Engine.IO message's '4'). */
#define SIO_CONNECT       '0'
#define SIO_DISCONNECT    '1'
#define SIO_EVENT         '2'
#define SIO_ACK           '3'
#define SIO_CONNECT_ERROR '4'
#define SIO_BINARY_EVENT  '5'
#define SIO_BINARY_ACK    '6'

/* The largest ack id accepted: 2^53 - 1, JavaScript's MAX_SAFE_INTEGER. */
#define SIO_ACK_ID_MAX UINT64_C(9007199254740991)

/* A namespace longer than this is SIO_PKT_INVALID (it would be echoed). */
#define SIO_NSP_MAX 128

#define SIO_HISTORY_LIMIT_DEFAULT 50
#define SIO_HISTORY_LIMIT_MAX     200

/* The protocol's error codes, in the order the protocol checks them. */
typedef enum sio_error {
    SIO_OK = 0,
    SIO_E_BAD_REQUEST,
    SIO_E_TOO_LARGE,
    SIO_E_FORBIDDEN,
    SIO_E_NOT_MEMBER,
    SIO_E_RATE_LIMITED,
    SIO_E_UNAVAILABLE,
} sio_error;

/* The protocol name of err ("bad_request", ...; "ok" for SIO_OK). Static,
 * never NULL. */
const char *sio_error_code(sio_error err);

/* What one incoming frame asks of the caller. */
typedef enum sio_kind {
    SIO_PKT_INVALID = 0,   /* not Engine.IO/Socket.IO: close the connection */
    SIO_PKT_IGNORE,        /* nothing to do (noop, upgrade, ack, DISCONNECT
                            * from another nsp) */
    SIO_PKT_CLOSE,         /* Engine.IO close: the client is leaving */
    SIO_PKT_PING,          /* client ping: answer sio_encode_pong(data) */
    SIO_PKT_PONG,          /* the client answered our ping */
    SIO_PKT_CONNECT,       /* CONNECT to "/": a valid auth.user or none, a token */
    SIO_PKT_CONNECT_ERROR, /* refuse: sio_encode_connect_error(nsp, message) */
    SIO_PKT_DISCONNECT,    /* Socket.IO DISCONNECT from "/" */
    SIO_PKT_EVENT,         /* EVENT (or BINARY_EVENT) on "/": see err */
    SIO_PKT_FOREIGN_EVENT, /* EVENT on another namespace (never connected: the
                            * reference server closes the connection) */
} sio_kind;

/*
 * One parsed frame. Pointers named "into the frame" are valid while the frame
 * buffer lives; root is owned by the packet and freed by sio_packet_free(),
 * and everything pointing into it (event, args, and the strings of a
 * sio_request made from this packet) dies with it.
 */
typedef struct sio_packet {
    sio_kind kind;
    const char *data;        /* PING: bytes after '2', into the frame */
    size_t data_len;
    const char *nsp;         /* namespace ("/" when none), into the frame */
    size_t nsp_len;          /*   or static */
    unsigned long attachments; /* binary packets: frames that follow */
    bool has_ack;            /* EVENT: a readable ack id was given */
    uint64_t ack_id;
    char user[PROTO_USER_MAX + 1]; /* CONNECT: NUL-terminated copy (len 0: none) */
    size_t user_len;
    bool has_token;          /* CONNECT: auth.token is present ... */
    const char *token;       /*   ... and is this string (into root), or NULL */
    size_t token_len;
    const char *message;     /* CONNECT_ERROR: the message to send; EVENT
                              * with err: the error message. Static. */
    sio_error err;           /* EVENT: SIO_OK, or already failed (undecodable
                              * payload, bad shape, binary, bad ack id...) */
    const char *event;       /* EVENT with err == SIO_OK: NUL-terminated name */
    size_t event_len;
    json_t *args;            /* EVENT: 2nd array element or NULL; borrowed */
    json_t *root;            /* decoded payload or NULL; owned */
} sio_packet;

/*
 * Parses the len bytes at frame, one complete WebSocket text frame, into *pkt
 * (fully overwritten) and returns pkt->kind. Never fails otherwise: every
 * input maps to a kind, and an EVENT whose problem is already known carries
 * err != SIO_OK and a message (answer it with sio_encode_ack_error when
 * has_ack). Out of memory while decoding yields an EVENT with
 * SIO_E_UNAVAILABLE, or a CONNECT_ERROR. The caller must call
 * sio_packet_free(pkt) afterwards, whatever the kind.
 */
sio_kind sio_parse(const char *frame, size_t len, sio_packet *pkt);

/* Frees what pkt owns and zeroes it. Safe on a zeroed or freed packet. */
void sio_packet_free(sio_packet *pkt);

/* The client events. */
typedef enum sio_event {
    SIO_EV_NONE = 0,
    SIO_EV_JOIN,
    SIO_EV_LEAVE,
    SIO_EV_MESSAGE,
    SIO_EV_HISTORY,
    SIO_EV_TYPING,
    SIO_EV_PRESENCE,
} sio_event;

/* The event's protocol name ("join", ...), or "" for SIO_EV_NONE. */
const char *sio_event_name(sio_event ev);

/*
 * A validated client request. Strings point into the sio_packet it was made
 * from (NUL-terminated, lengths given) and are valid until sio_packet_free().
 * Fields an event does not have are zero/NULL.
 */
typedef struct sio_request {
    sio_event event;
    const char *room;       /* every event: a valid room name */
    size_t room_len;
    bool has_since;         /* join */
    uint64_t since;
    const char *id;         /* message: a valid message id */
    size_t id_len;
    const char *text;       /* message: 1..4096 bytes of UTF-8 */
    size_t text_len;
    bool has_before;        /* history */
    uint64_t before;
    unsigned limit;         /* history: 1..200, default 50 */
} sio_request;

/*
 * Validates the EVENT packet pkt for the connection's user (a valid user name
 * of user_len bytes) and fills *req. Checks run in the protocol's order:
 * bad_request (earlier failure in pkt, unknown event, shape, types, syntax),
 * then too_large (text over 4096 bytes), then forbidden (a dm room the user is
 * not in). Returns SIO_OK, or the first failing code with *message set to a
 * static human-readable message (for unknown event names exactly "unknown
 * event"); *req is then zeroed. not_member, rate_limited and unavailable
 * depend on the caller's state and are never returned here (unavailable only
 * when pkt already carries it, after running out of memory).
 */
sio_error sio_request_parse(const sio_packet *pkt, const char *user, size_t user_len,
                            sio_request *req, const char **message);

/*
 * Output goes to a proto_mp_buf (proto/mp.h): fixed (the caller's memory) or
 * growing. Encoders append one whole packet or, when it does not fit (fixed)
 * or memory runs out (growing), append nothing and return PROTO_E_NOSPACE or
 * PROTO_E_NOMEM; earlier contents stay intact either way. The bytes are not
 * NUL-terminated.
 */

/*
 * Every encoder below appends one packet to b and returns PROTO_OK,
 * PROTO_E_NOSPACE, PROTO_E_NOMEM, or PROTO_E_UTF8 when a string argument is
 * not valid UTF-8 (nothing appended). Strings are (pointer, length) pairs and
 * are JSON-escaped: quote, backslash and control characters; other UTF-8
 * passes through.
 */

/* 0{"sid":..,"upgrades":[],"pingInterval":..,"pingTimeout":..,"maxPayload":..}
 * Times in milliseconds. */
proto_err sio_encode_open(proto_mp_buf *b, const char *sid, size_t sid_len,
                          unsigned ping_interval_ms, unsigned ping_timeout_ms,
                          unsigned long max_payload);

/* 2 */
proto_err sio_encode_ping(proto_mp_buf *b);

/* 3<data>: the answer to a client ping "2<data>" (data copied verbatim). */
proto_err sio_encode_pong(proto_mp_buf *b, const char *data, size_t len);

/* 40{"sid":"..."} */
proto_err sio_encode_connect(proto_mp_buf *b, const char *sid, size_t sid_len);

/* 44{"message":"..."} on "/", or 44<nsp>,{"message":"..."} on another
 * namespace (nsp as reported by sio_parse, starting with '/'). */
/* 44{"message":message,"data":{"reason":reason}} on "/": a refused CONNECT
 * that says why in one word. */
proto_err sio_encode_connect_refused(proto_mp_buf *b, const char *message, const char *reason);

/* 42["token_expired",{"reason":reason}]: why the server is about to
 * disconnect the client (sio_encode_disconnect follows). */
proto_err sio_encode_token_expired(proto_mp_buf *b, const char *reason);

/* 41: the server disconnects the client from "/" (its socket.io-client
 * reports "io server disconnect" and does not reconnect by itself). */
proto_err sio_encode_disconnect(proto_mp_buf *b);

proto_err sio_encode_connect_error(proto_mp_buf *b, const char *nsp, size_t nsp_len,
                                   const char *message);

/*
 * 43<id>[{"ok":true,...}]: a success ack. fields, when not NULL, is a JSON
 * object whose members follow "ok" in their insertion order (a member named
 * "ok" is skipped); e.g. {"room":..,"seq":..,"missed":[],"more":false}.
 * fields is only read. PROTO_E_TYPE when fields is not an object.
 */
proto_err sio_encode_ack_ok(proto_mp_buf *b, uint64_t ack_id, const json_t *fields);

/* 43<id>[{"ok":false,"error":{"code":"<code>","message":"..."}}]. err must
 * not be SIO_OK (PROTO_E_RANGE). */
proto_err sio_encode_ack_error(proto_mp_buf *b, uint64_t ack_id, sio_error err,
                               const char *message);

/* A stored message as broadcast to the room. */
typedef struct sio_message {
    const char *room;
    size_t room_len;
    uint64_t seq;
    const char *id;
    size_t id_len;
    const char *user;
    size_t user_len;
    const char *text;
    size_t text_len;
    int64_t ts;             /* ms since the epoch */
} sio_message;

/* 42["message",{"room":..,"seq":..,"id":..,"user":..,"text":..,"ts":..}] */
proto_err sio_encode_message(proto_mp_buf *b, const sio_message *m);

/* 42["typing",{"room":..,"user":..}] */
proto_err sio_encode_typing(proto_mp_buf *b, const char *room, size_t room_len,
                            const char *user, size_t user_len);

#endif
