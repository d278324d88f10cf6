/*
 * libFuzzer target for the WebSocket receive path: the bytes a client sends
 * after a valid upgrade (frames, fragments, control frames, close payloads)
 * or, when the input's first byte is 'G', the whole HTTP request itself (the
 * upgrade's headers, Sec-WebSocket-Version among them). They go over a real
 * loopback TCP connection to a real adapters/ws.c server on its own libev
 * loop, so what is fuzzed is libwebsockets' parser together with our
 * callbacks on it: reassembly, the size cap, UTF-8, binary discarding, close
 * code checks, the version check. The owner echoes every message back, so
 * the send path runs too.
 *
 * Invariants (abort on violation): every message handed to the owner is
 * valid UTF-8 and at most max_message bytes; once the client has closed, the
 * server lets go of the connection within a bounded time (nothing is kept
 * open by any input).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "adapters/ws.h"
#include "proto/utf8.h"

#define MAX_MESSAGE 4096
#define LET_GO_ROUNDS 50000     /* loop turns, 0.1 ms apart: 5 s for the server to let go */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char UPGRADE[] =
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static struct ev_loop *loop;
static ws_server *server;
static int port;
static int conn_token;          /* the owner's data for every connection */

static int
on_http(void *owner, ws_request *req, const char *path)
{
    (void)owner;
    (void)path;
    return ws_http_reply(req, 404, "text/plain", NULL, "no\n", 3);
}

static bool
on_accept(void *owner, ws_request *req)
{
    (void)owner;
    (void)req;
    return true;
}

static ws_conn *last_conn;      /* for the echo: the message callback has no ws_conn */

static void *
on_open(void *owner, ws_conn *c)
{
    (void)owner;
    last_conn = c;
    return &conn_token;
}

static void
on_message(void *owner, void *conn_data, const char *msg, size_t len)
{
    (void)owner;
    if (conn_data != &conn_token || len > MAX_MESSAGE || !proto_utf8_valid(msg, len))
        abort();
    if (last_conn)
        ws_send_text(last_conn, msg, len);
}

static void
on_close(void *owner, void *conn_data)
{
    (void)owner;
    if (conn_data != &conn_token)
        abort();
    last_conn = NULL;
}

static const ws_callbacks callbacks = {
    .http = on_http,
    .accept = on_accept,
    .open = on_open,
    .message = on_message,
    .close = on_close,
};

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

static void
start(void)
{
    if (server)
        return;
    loop = ev_loop_new(EVFLAG_AUTO);
    port = free_port();
    ws_config cfg = { .loop = loop, .host = "127.0.0.1", .port = port,
                      .max_message = MAX_MESSAGE, .queue_max = 64, .queue_bytes = 65536,
                      .who = "fuzz" };
    server = ws_server_new(&cfg, &callbacks, NULL);
    if (!server)
        abort();
}

/* Runs the loop a little, reading (and dropping) what the server sent;
 * returns false once the server closed the connection. */
static bool
settle(int fd, int rounds)
{
    char buf[65536];
    for (int i = 0; i < rounds; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return false;
        if (n < 0)
            usleep(100);
    }
    return true;
}

static void
send_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!settle(fd, 1))
                return;
            continue;
        }
        if (n <= 0)
            return;     /* the server closed: fine, it refused the input */
        c += n;
        len -= (size_t)n;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    start();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        abort();
    if (size && data[0] == 'G') {
        send_all(fd, data, size);               /* the request itself */
    } else {
        send_all(fd, UPGRADE, sizeof(UPGRADE) - 1);
        settle(fd, 5);
        send_all(fd, data, size);
    }
    settle(fd, 20);
    close(fd);
    /* the server must let go of it: lws sees the EOF, or its close times out */
    for (int i = 0; ws_server_conns(server) > 0; i++) {
        if (i == LET_GO_ROUNDS)
            abort();
        ev_run(loop, EVRUN_NOWAIT);
        usleep(100);
    }
    return 0;
}
