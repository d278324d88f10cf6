/*
 * What the two files of the WebSocket adapter share (ws.c: connections,
 * receiving, HTTP, the lws callback and the server; ws_send.c: frames, the
 * send queue, writing and closing). Not part of the contract: that is ws.h.
 */
#ifndef CHATD_ADAPTERS_WS_INTERNAL_H
#define CHATD_ADAPTERS_WS_INTERNAL_H

#include <libwebsockets.h>

#include "adapters/ws.h"
#include "runtime/list.h"

#define FRAME_HEADER_MAX 10
#define RX_MIN 1024                 /* first reassembly buffer */
#define RX_KEEP 4096                /* larger buffers are freed after use */
#define QUEUE_KEEP 16               /* larger empty queues are freed */
#define CLOSE_WAIT_S 2              /* seconds a closing peer has to take the close */
#define MALLOC_OVERHEAD 16          /* what one malloc'd block costs beyond its size */
#define LWS_LOG_MAX 240             /* characters of an lws line kept */

/* What one queued frame is charged against a connection's byte cap: the
 * whole frame, as if it were the connection's alone (an upper bound when it
 * is shared), and its ring slot. */
#define FRAME_COST(f) (sizeof(ws_frame) + (f)->len + MALLOC_OVERHEAD + sizeof(ws_frame *))

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

    size_t bin_len;                 /* bytes of the binary message being discarded */

    ws_frame **q;                   /* send queue: a ring of frames */
    size_t q_head, q_len, q_cap;
    size_t q_bytes;                 /* FRAME_COST of the queued frames */
    size_t lws_held;                /* bytes of the last write while lws buffers
                                     * its tail (an upper bound of what it holds) */
};

struct ws_request {
    struct lws *wsi;
};

typedef struct session {
    ws_conn *c;
} session;

/* Frees every frame c still queues, and the queue (ws_send.c). */
void ws_queue_clear(ws_conn *c);

/* Writes c's queue as far as lws takes it without buffering (ws_send.c).
 * Returns -1 when a write failed (lws closes the connection). */
int ws_conn_write(ws_server *s, ws_conn *c);

#endif
