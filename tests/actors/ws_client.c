/* A raw WebSocket client for the tests (see ws_client.h). */
#include "tests/actors/ws_client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/wsframe.h"
#include "tests/actors/loopback.h"

ws_client *
ws_client_connect(int port)
{
    ws_client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = loopback_connect(port);
    return c;
}

ws_client *
ws_client_open(rt_runtime *rt, int port, const char *path, int *status)
{
    ws_client *c = ws_client_connect(port);
    char req[512];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n", path);
    ws_client_send_raw(c, req, strlen(req));
    *status = ws_client_http_head(rt, c);
    return c;
}

void
ws_client_free(ws_client *c)
{
    close(c->fd);
    free(c);
}

void
ws_client_send_raw(ws_client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(c->fd, p, len);
        if (w < 0 && errno == EAGAIN)
            continue;
        assert_true(w > 0);
        p += w;
        len -= (size_t)w;
    }
}

void
ws_client_send_frame(ws_client *c, bool fin, int opcode, const void *data, size_t len)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    uint8_t hdr[WSFRAME_HEADER_MAX];
    size_t hl = wsframe_client_header(hdr, fin, opcode, len, mask);
    uint8_t *body = malloc(len ? len : 1);
    assert_non_null(body);
    wsframe_mask(body, data, len, mask);
    ws_client_send_raw(c, hdr, hl);
    ws_client_send_raw(c, body, len);
    free(body);
}

void
ws_client_send_text(ws_client *c, const char *text)
{
    ws_client_send_frame(c, true, 1, text, strlen(text));
}

bool
ws_client_pump(void *ud)
{
    ws_client *c = ud;
    while (!c->eof) {
        /* one byte kept for the NUL the readers put after the data */
        assert_true(c->len < sizeof(c->buf) - 1);
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (r > 0)
            c->len += (size_t)r;
        else if (r == 0)
            c->eof = true;
        else
            break;
    }
    return c->eof;
}

static bool
has_head(void *ud)
{
    ws_client *c = ud;
    ws_client_pump(c);
    c->buf[c->len] = '\0';
    return strstr(c->buf, "\r\n\r\n") || c->eof;
}

int
ws_client_http_head(rt_runtime *rt, ws_client *c)
{
    rt_test_run_until(rt, has_head, c, 4000);
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end)
        return 0;
    int status = atoi(c->buf + 9);
    size_t head = (size_t)(end + 4 - c->buf);
    snprintf(c->head, sizeof(c->head), "%.*s", (int)head, c->buf);
    memmove(c->buf, end + 4, c->len - head);
    c->len -= head;
    return status;
}

typedef struct body_ctx {
    ws_client *c;
    size_t want;
} body_ctx;

static bool
has_body(void *ud)
{
    body_ctx *b = ud;
    return ws_client_pump(b->c) || b->c->len >= b->want;
}

const char *
ws_client_http_body(rt_runtime *rt, ws_client *c, size_t want)
{
    body_ctx b = { c, want };
    rt_test_run_until(rt, has_body, &b, 2000);
    c->buf[c->len] = '\0';
    return c->buf;
}

/* Takes one complete frame off c->buf: a data frame's payload (malloc'd,
 * NUL-terminated); NULL with *closed set at a close frame; NULL when c->buf
 * holds no complete frame yet. Skips pings and pongs. */
static char *
take_frame(ws_client *c, bool *closed)
{
    for (;;) {
        *closed = false;
        if (c->len < 2)
            return NULL;
        uint8_t *b = (uint8_t *)c->buf;
        size_t hl = 2, len = b[1] & 0x7f;
        if (len == 126) {
            if (c->len < 4)
                return NULL;
            len = ((size_t)b[2] << 8) | b[3];
            hl = 4;
        } else if (len == 127) {
            if (c->len < 10)
                return NULL;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | b[2 + i];
            hl = 10;
        }
        if (c->len < hl + len)
            return NULL;
        int op = b[0] & 0x0f;
        char *out = malloc(len + 1);
        assert_non_null(out);
        memcpy(out, c->buf + hl, len);
        out[len] = '\0';
        memmove(c->buf, c->buf + hl + len, c->len - hl - len);
        c->len -= hl + len;
        if (op == 8) {
            c->close_code = len >= 2 ? ((uint8_t)out[0] << 8) | (uint8_t)out[1] : 1005;
            snprintf(c->close_reason, sizeof(c->close_reason), "%s", len > 2 ? out + 2 : "");
            free(out);
            *closed = true;
            return NULL;
        }
        if (op == 9 || op == 10) {
            free(out);
            continue;
        }
        return out;
    }
}

typedef struct grow_ctx {
    ws_client *c;
    size_t had;
} grow_ctx;

static bool
grew(void *ud)
{
    grow_ctx *g = ud;
    ws_client_pump(g->c);
    return g->c->len > g->had || g->c->eof;
}

char *
ws_client_next_frame(rt_runtime *rt, ws_client *c, double timeout_ms)
{
    ev_now_update(rt_loop(rt));
    double end = rt_now_ms(rt) + timeout_ms;
    for (;;) {
        bool closed;
        char *f = take_frame(c, &closed);
        if (f || closed || c->eof)
            return f;
        ev_now_update(rt_loop(rt));
        double left = end - rt_now_ms(rt);
        if (left <= 0)
            return NULL;
        grow_ctx g = { c, c->len };
        rt_test_run_until(rt, grew, &g, left);
    }
}

void
ws_client_expect_frame(rt_runtime *rt, ws_client *c, const char *want)
{
    char *got = ws_client_next_frame(rt, c, 2000);
    if (!got || strcmp(got, want) != 0) {
        print_error("want %s\nhave %s\n", want, got ? got : "(nothing)");
        free(got);
        fail();
    }
    free(got);
}
