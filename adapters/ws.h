/*
 * WebSocket and HTTP over libwebsockets, on a libev loop: the whole contract
 * of adapters/ws.c. It knows nothing of Socket.IO or chat.
 *
 * Callbacks in: the owner gives a table of callbacks (ws_callbacks) and an
 * opaque owner pointer. HTTP requests on the port go to `http`; a WebSocket
 * upgrade is offered to `accept`; an accepted connection is announced by
 * `open`, each complete text message by `message`, its end by `close`.
 * Every callback runs on the loop thread, from lws's I/O watchers.
 *
 * Calls out: ws_send queues a frame on a connection, ws_flush writes what is
 * queued, ws_close closes with a code and a reason, ws_http_reply answers an
 * HTTP request.
 *
 * Who frees what:
 * - Connections (ws_conn) belong to the adapter: created when the upgrade
 *   completes, freed after the owner's `close` callback returned, never by
 *   the owner. ws_close only asks: the connection stays valid until its
 *   `close` callback. The owner's per-connection data (what `open` returned)
 *   belongs to the owner, who frees it in `close`.
 * - Frames (ws_frame) are reference-counted. ws_frame_text returns one
 *   reference to the caller; ws_send takes a reference of its own, dropped
 *   once the frame is written or the connection is gone. So a broadcast
 *   frame is built once, sent to every member, and unreferenced once.
 * - The server (ws_server) belongs to the owner: ws_server_free.
 *
 * Writes: frames queued on a connection leave together, as many per write as
 * fit in WS_WRITE_CHUNK, each a complete pre-built WebSocket frame (no
 * extension is negotiated, so pre-built frames stay valid; see
 * shared/LIBRARIES.md for the figures). ws_flush writes directly when lws
 * holds nothing of the connection, else from lws's WRITEABLE callback.
 * Called from inside one of the adapter's callbacks, ws_flush only asks lws
 * for WRITEABLE callbacks (lws must not be written to directly from its own
 * receive path); the owner calls it once after each batch of work (the
 * socket actor: after its turn).
 *
 * Reception: fragmented messages are reassembled up to max_message bytes;
 * past that the connection is closed with 1009. A text message that is not
 * valid UTF-8 closes it with 1007. Binary messages are discarded, under the
 * same cap (1009). A peer's close frame with a code it must not send (RFC
 * 6455 7.4: 1004-1006, 1015, 1016-2999, below 1000, from 5000) is answered
 * 1002, not echoed. An upgrade without Sec-WebSocket-Version: 13 gets 426.
 * lws's own log lines go through runtime/log.h, escaped and rate-limited.
 *
 * What lws 4.1.6 does not let us control (roles/ws/ops-ws.c, lws_ws_rx_sm):
 * an unmasked client frame is accepted (the mask bit is kept in a private
 * field with no accessor; RFC 6455 5.1 says close, 1002), and two of the
 * parser's refusals return -1 before any callback, so lws closes the TCP
 * connection without a close frame: a 64-bit length with its top bit set
 * and a control frame with an extended (over 125 bytes) length. Its other
 * refusals (reserved opcodes or bits, fragmented control frames, stray
 * continuations) send 1002.
 *
 * lws notes (4.1.6, Debian 12; shared/LIBRARIES.md):
 * - libev support is a plugin (package libwebsockets-evlib-ev); without it
 *   lws_create_context fails with "unable to load evlib plugin evlib_ev".
 * - The log level is set to errors and warnings before the context exists:
 *   at the default level the plugin logs every watcher start and stop.
 * - Plain HTTP GETs arrive on protocols[0] as LWS_CALLBACK_HTTP with `in` =
 *   the path without the query; upgrades are filtered in
 *   FILTER_PROTOCOL_CONNECTION; query arguments are read with
 *   lws_get_urlarg_by_name, whose name includes the '='.
 * - Messages longer than rx_buffer_size arrive in several RECEIVE callbacks.
 * - lws_write never returns a short count: an unsent tail goes to an internal
 *   list (at most 1024 pieces, else lws closes the connection) drained before
 *   the next WRITEABLE. So nothing is written while lws_partial_buffered.
 * - Each send is cut at tx_packet_size: it is set above WS_WRITE_CHUNK.
 * - Teardown: lws_context_destroy before the loop is destroyed, never from
 *   inside an lws callback; lws installs no signal handlers on a foreign loop.
 */
#ifndef CHATD_ADAPTERS_WS_H
#define CHATD_ADAPTERS_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define WS_WRITE_CHUNK (64 * 1024)  /* bytes gathered into one raw write */

/* Close codes (RFC 6455 7.4.1) the owners use. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_INVALID_PAYLOAD = 1007,
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_TOO_LARGE = 1009,
    WS_CLOSE_UNEXPECTED = 1011,
};

/* ws_send results. */
enum ws_send_result {
    WS_OK = 0,
    WS_ECLOSING = -1,           /* the connection is closing: frame dropped */
    WS_EFULL = -2,              /* queue_max frames queued: frame dropped; the
                                 * connection stays open (the owner decides) */
    WS_ENOMEM = -3,             /* frame dropped */
};

typedef struct ws_server ws_server;
typedef struct ws_conn ws_conn;
typedef struct ws_request ws_request;   /* an HTTP request or an upgrade */

typedef struct ws_frame {
    uint32_t refs;
    uint32_t len;               /* header + payload */
    uint8_t data[];             /* a complete server-to-client frame */
} ws_frame;

typedef struct ws_callbacks {
    /* An HTTP request for path (without the query). Answer it with
     * ws_http_reply and return what that returned. */
    int (*http)(void *owner, ws_request *req, const char *path);
    /* An upgrade to WebSocket: true lets it through. */
    bool (*accept)(void *owner, ws_request *req);
    /* The connection c is open: return the owner's data for it, or NULL to
     * refuse it (it is closed; `close` is not called for it). Frames may be
     * sent from here. */
    void *(*open)(void *owner, ws_conn *c);
    /* One complete text message (valid UTF-8, at most max_message bytes; not
     * NUL-terminated; valid only during the call). */
    void (*message)(void *owner, void *conn_data, const char *data, size_t len);
    /* The connection is gone (closed by either side, or by ws_server_free):
     * free conn_data. The ws_conn is freed when this returns. */
    void (*close)(void *owner, void *conn_data);
} ws_callbacks;

typedef struct ws_config {
    struct ev_loop *loop;
    const char *host;           /* NULL or "0.0.0.0": every interface (IPv4) */
    int port;
    size_t max_message;         /* reassembled messages above this: 1009 */
    size_t queue_max;           /* frames queued per connection (>= 1) */
    size_t queue_bytes;         /* bytes queued per connection (see ws_send) */
    const char *who;            /* name in log lines */
} ws_config;

/*
 * Listens on cfg->host:cfg->port on cfg->loop and serves callbacks cb with
 * owner. cfg and cb are copied; cfg->host and cfg->who must outlive the
 * server. Returns the server, or NULL when lws could not start (the port is
 * taken, the evlib plugin is missing: logged).
 */
ws_server *ws_server_new(const ws_config *cfg, const ws_callbacks *cb, void *owner);

/*
 * Calls `close` for every connection still open, then tears lws down and
 * frees the server; the owner is never called again once this returns.
 * From inside one of its callbacks the teardown itself is deferred to a
 * zero-delay timer on the loop (lws must not be destroyed from its own
 * callback); before the loop is destroyed, run it once more. NULL is a
 * no-op.
 */
void ws_server_free(ws_server *s);

/* A number naming c in log lines, unique per server (from 1). */
uint64_t ws_conn_id(const ws_conn *c);

/* Open connections (closing ones included). */
size_t ws_server_conns(const ws_server *s);

/* A text frame (FIN, opcode 1, unmasked) holding a copy of payload, with one
 * reference for the caller. NULL when out of memory. */
ws_frame *ws_frame_text(const void *payload, size_t len);

/* Drops a reference; frees the frame at the last. NULL is a no-op. */
void ws_frame_unref(ws_frame *f);

/*
 * Queues f on c (taking a reference) to leave at the next ws_flush. Returns
 * WS_OK, or one of the errors above (then nothing was queued).
 *
 * Each connection's queue is capped in frames (queue_max) and in bytes
 * (queue_bytes): every frame counts its whole size plus its bookkeeping
 * against each connection that queued it (an upper bound, frames being
 * shared), and so do the bytes of the last write while lws still buffers its
 * tail. A frame that does not fit is first given a chance: what the socket
 * takes now is written (not from inside an adapter callback), then WS_EFULL
 * if it still does not fit. A single frame larger than queue_bytes is
 * accepted only by a connection that holds nothing. So a connection holds at
 * most max(queue_bytes, its largest frame) of output in the process.
 */
int ws_send(ws_conn *c, ws_frame *f);

/* ws_frame_text + ws_send + ws_frame_unref. */
int ws_send_text(ws_conn *c, const void *payload, size_t len);

/* Writes every connection that got frames since the last flush (see the
 * writes paragraph above). A connection whose write fails is closed. */
void ws_flush(ws_server *s);

/*
 * Closes c with code and reason (at most 123 bytes): frames not yet written
 * are dropped, later ws_send calls return WS_ECLOSING, the close frame goes
 * out from lws's next WRITEABLE callback (lws then waits a few seconds for
 * the peer's answer; a peer that lets nothing be written is dropped after
 * 2 s), and `close` follows once lws has closed it. Idempotent: the first
 * code wins.
 */
void ws_close(ws_conn *c, int code, const char *reason);

bool ws_closing(const ws_conn *c);

/* Frames queued on c and not yet handed to lws. */
size_t ws_queued(const ws_conn *c);

/* What c's output is charged against queue_bytes (see ws_send). */
size_t ws_queued_bytes(const ws_conn *c);

/* The upgrade request's Authorization header into buf, NUL-terminated: its
 * length, or 0 when absent or not shorter than len. Only inside the `open`
 * callback (lws frees the request's headers after ESTABLISHED); the header
 * fits in max_http_header_data (1024 bytes) with the others, or lws refuses
 * the upgrade. */
size_t ws_conn_authorization(ws_conn *c, char *buf, size_t len);

/* The request's path (without the query) into buf; false when it does not
 * fit or is missing. */
bool ws_request_path(ws_request *req, char *buf, size_t len);

/* The value of query argument name ("EIO=": the name includes '='), in buf;
 * NULL when absent or too long for buf. */
const char *ws_request_arg(ws_request *req, const char *name, char *buf, size_t len);

/*
 * Answers an HTTP request: status, Content-Type type, Cache-Control cache
 * (NULL: none), Content-Length len and body, then ends the transaction.
 * Returns 0, or -1 when the reply could not be written (lws closes the
 * connection): return that from the `http` callback.
 */
int ws_http_reply(ws_request *req, unsigned status, const char *type, const char *cache,
                  const void *body, size_t len);

#endif
