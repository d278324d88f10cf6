/*
 * A raw WebSocket client for the tests, on loopback: it speaks HTTP/1.1 and
 * RFC 6455 frames to a server in the same loop (adapters/ws.h, the socket
 * actor), so a test sees exactly the bytes the server sends.
 *
 * Every call that waits runs the test's loop (rt_test_run_until) until what
 * it waits for came, the server closed, or its deadline passed; none blocks.
 * A failure of the system (connect, write) fails the running test.
 */
#ifndef CHATD_TESTS_ACTORS_WS_CLIENT_H
#define CHATD_TESTS_ACTORS_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/runtime/rt_test.h"

typedef struct ws_client {
    int fd;
    char buf[1 << 18];          /* read and not yet taken */
    size_t len;
    bool eof;                   /* the server closed the connection */
    int close_code;             /* from the last close frame (1005: none in it), or 0 */
    char close_reason[128];     /* from the last close frame */
    char head[2048];            /* the last HTTP response head */
} ws_client;

/* A TCP connection to port, nothing sent yet. Free with ws_client_free. */
ws_client *ws_client_connect(int port);

/* Connects to port and asks to upgrade path (with its query) to a
 * WebSocket; *status is the HTTP status of the answer (101: open), 0 when
 * the server closed or said nothing in time. Free with ws_client_free. */
ws_client *ws_client_open(rt_runtime *rt, int port, const char *path, int *status);

/* Closes the connection and frees c. */
void ws_client_free(ws_client *c);

/* Sends len bytes as they are: a request, hand-made frames. */
void ws_client_send_raw(ws_client *c, const void *data, size_t len);

/* Sends one masked frame: fin, opcode (0 continuation, 1 text, 2 binary, 8
 * close, ...), payload. */
void ws_client_send_frame(ws_client *c, bool fin, int opcode, const void *data, size_t len);

/* Sends text as one complete text frame. */
void ws_client_send_text(ws_client *c, const char *text);

/* Reads what the socket holds into c->buf without waiting; true at EOF. A
 * predicate for rt_test_run_until (ud: the client). */
bool ws_client_pump(void *c);

/* Waits up to 4 s for a complete HTTP response head; keeps it in c->head
 * (NUL-terminated), leaves what follows in c->buf and returns the status, or
 * 0 when the server closed first or nothing came. */
int ws_client_http_head(rt_runtime *rt, ws_client *c);

/* Waits up to 2 s until c->buf holds want bytes or the server closed (want
 * SIZE_MAX: until it closed); returns c->buf, NUL-terminated. */
const char *ws_client_http_body(rt_runtime *rt, ws_client *c, size_t want);

/* Waits up to timeout_ms for the next complete data frame and takes it off
 * c->buf; returns its payload (malloc'd, NUL-terminated: free it). Returns
 * NULL at a close frame (close_code and close_reason are set), at EOF, or
 * when the time is up. Pings and pongs are skipped. */
char *ws_client_next_frame(rt_runtime *rt, ws_client *c, double timeout_ms);

/* Fails the test unless the next frame, within 2 s, is exactly want. */
void ws_client_expect_frame(rt_runtime *rt, ws_client *c, const char *want);

#endif
