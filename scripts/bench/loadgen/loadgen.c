/*
 * loadgen: the benchmark's load generator in C (scripts/bench/compare.sh).
 *
 *   loadgen --urls http://H:P0,http://H:P1 [--pids P0,P1] [--rooms 10]
 *           [--members 100] [--rate 200] [--seconds 15] [--warmup 2]
 *           [--sat-rates 400,800] [--sat-seconds 8] [--poll-us 1000]
 *           [--deadline-s 300]
 *
 * The fanout and saturation phases of scripts/bench/load.mjs, on one epoll
 * loop in one process: rooms x members connections (member m on URL m % 2),
 * each joined to room bench<r>; members 0 and 1 of every room send, in turn,
 * --rate messages/s in total. The message id carries the sender's node and
 * its send time on this process's monotonic clock ("<seq>.<node>.<us>"), so a
 * delivery's latency is read from the delivery alone; only deliveries at
 * members on the node other than the sender's are measured. Every delivery
 * is counted. --pids names the server processes whose utime+stime over each
 * window give the server CPU per delivery (deliveries = what the clients
 * received, the same definition for any server).
 *
 * The client side of the protocol written for it: HTTP upgrade, RFC 6455
 * client frames (masked with a fresh key each), server frames (unmasked,
 * fragments reassembled, pings answered), Engine.IO open/ping/message and
 * Socket.IO CONNECT/EVENT/ACK packets (the packet types of proto/sio.h; the
 * pong from sio_encode_pong). Outgoing JSON is only built from names and ids
 * this program makes, so nothing needs escaping.
 *
 * Prints one JSON object on stdout: counts, errors, latency percentiles
 * (p50/p90/p99/p99.9/max, ms) from a log-linear histogram of microseconds
 * (128 sub-buckets per power of two: under 0.8% error), and its own CPU
 * (getrusage) per delivery. Exit 0, or 1 with a message on stderr when the
 * connections could not all join or the deadline passed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/mp.h"
#include "proto/sio.h"
#include "proto/wsframe.h"

/* ---- histogram: log-linear, microseconds ------------------------------------ */

#define H_SUB_BITS 7
#define H_SUB      (1u << H_SUB_BITS)     /* 128 sub-buckets per power of two */
#define H_EXPS     40                      /* values up to 2^47 us */
#define H_BUCKETS  (H_SUB * (H_EXPS + 1))

typedef struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t n;
    uint64_t max;
} hist;

static unsigned
h_index(uint64_t v)
{
    if (v < 2 * H_SUB)
        return (unsigned)v;             /* exact below 256 us */
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_SUB_BITS;  /* mantissa in [128, 256) */
    if (shift >= H_EXPS)
        return H_BUCKETS - 1;
    return (shift + 1) * H_SUB + (unsigned)(v >> shift) - H_SUB;
}

/* The middle of bucket i, in microseconds. */
static double
h_value(unsigned i)
{
    if (i < 2 * H_SUB)
        return i;
    unsigned shift = i / H_SUB - 1;
    uint64_t low = ((uint64_t)(i % H_SUB + H_SUB)) << shift;
    return (double)low + (double)((uint64_t)1 << shift) / 2.0;
}

static void
h_add(hist *h, uint64_t v)
{
    h->count[h_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* The value (ms) below which a fraction p of the samples lie; NaN if empty. */
static double
h_pct_ms(const hist *h, double p)
{
    if (!h->n)
        return 0.0 / 0.0;
    uint64_t rank = (uint64_t)(p * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > rank) {
            double v = h_value(i);
            return (v > (double)h->max ? (double)h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- clocks and /proc --------------------------------------------------------- */

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The clock of latencies: CLOCK_REALTIME, the clock of the kernel's receive
 * timestamps (SO_TIMESTAMPNS). A clock step during a run would show. */
static uint64_t
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* This process's CPU time in microseconds: user time alone, or user+system. */
static uint64_t
self_cpu_us(bool user_only)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t u = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
    if (user_only)
        return u;
    return u + (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
}

#define MAX_PIDS 8
static int g_pids[MAX_PIDS];
static int g_npids;

/* utime+stime of the --pids processes, in microseconds (0 for a gone one). */
static uint64_t
servers_cpu_us(void)
{
    long tck = sysconf(_SC_CLK_TCK);
    uint64_t ticks = 0;
    for (int i = 0; i < g_npids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", g_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        unsigned long ut = 0, st = 0;
        /* after ") ": state, then fields 4..13, then utime (14), stime (15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            ticks += ut + st;
    }
    return ticks * 1000000u / (uint64_t)(tck > 0 ? tck : 100);
}

/* ---- connections -------------------------------------------------------------- */

enum { C_CONNECTING, C_HTTP, C_EIO, C_SIO, C_JOINING, C_JOINED, C_DEAD };

typedef struct conn {
    int fd;
    int state;
    int node;                /* index of its URL */
    int room;
    int member;
    char *in;                /* bytes read, not yet consumed */
    size_t in_len, in_cap;
    char *msg;               /* a fragmented message being reassembled */
    size_t msg_len, msg_cap;
    char *out;               /* bytes not yet written */
    size_t out_len, out_cap;
    bool want_out;
} conn;

typedef struct target {
    struct sockaddr_in addr;
    char host[64];
} target;

static target g_targets[2];
static conn *g_conns;
static int g_nconns, g_rooms, g_members;
static int g_ep;
static uint64_t g_rng = 0x9e3779b97f4a7c15u;

/* Counters of the current window. */
static struct {
    bool measure;
    uint64_t received, sent, acked, ack_errors, joined, dead;
    uint64_t err_codes_n;
    char err_codes[8][32];
    uint64_t err_code_count[8];
    hist lat;                /* send -> delivery on the other node */
    hist ack;                /* send -> ack */
} W;

static uint64_t *g_sent_at;  /* send time (us) by message seq = ack id */
static size_t g_sent_cap;
static uint64_t g_seq;       /* next message seq (ack ids of joins are 0) */
static uint64_t g_pending;   /* messages not yet acked */
static uint64_t g_rx_us;     /* when the kernel received the bytes being parsed */
static uint64_t g_poll_us;   /* --poll-us: the loop wakes at most this often */

static uint32_t
rng32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)g_rng;
}

static void
die(const char *what)
{
    fprintf(stderr, "loadgen: %s\n", what);
    exit(1);
}

static void
grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    char *p = realloc(*buf, c);
    if (!p)
        die("out of memory");
    *buf = p;
    *cap = c;
}

static void
set_events(conn *c, bool out)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET | (out ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void
conn_dead(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (W.dead < 5)
        fprintf(stderr, "loadgen: connection r%dm%d: %s\n", c->room, c->member, why);
    c->state = C_DEAD;
    W.dead++;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

/* Writes what is queued; keeps the rest and asks for EPOLLOUT. */
static void
conn_flush(conn *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            conn_dead(c, "write failed");
            return;
        }
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if ((c->out_len > 0) != c->want_out)
        set_events(c, c->out_len > 0);
}

/* Queues one client frame (RFC 6455 5.2: FIN, opcode, masked) and writes. */
static void
ws_send(conn *c, int opcode, const char *data, size_t len)
{
    if (c->state == C_DEAD)
        return;
    grow(&c->out, &c->out_cap, c->out_len + len + WSFRAME_HEADER_MAX);
    uint8_t *h = (uint8_t *)c->out + c->out_len;
    uint32_t key = rng32();
    uint8_t mask[4];
    memcpy(mask, &key, 4);
    size_t hl = wsframe_client_header(h, true, opcode, len, mask);
    wsframe_mask(h + hl, (const uint8_t *)data, len, mask);
    c->out_len += hl + len;
    conn_flush(c);
}

static void
ws_text(conn *c, const char *s, size_t len)
{
    ws_send(c, 1, s, len);
}

/* ---- Engine.IO / Socket.IO ---------------------------------------------------- */

static void
send_message(conn *c)
{
    uint64_t seq = g_seq++;
    uint64_t t = wall_us();
    if (seq >= g_sent_cap) {
        size_t cap = g_sent_cap ? g_sent_cap * 2 : 65536;
        uint64_t *p = realloc(g_sent_at, cap * sizeof(*p));
        if (!p)
            die("out of memory");
        g_sent_at = p;
        g_sent_cap = cap;
    }
    g_sent_at[seq] = t;
    char id[64], text[80], pkt[256];
    snprintf(id, sizeof(id), "%" PRIu64 ".%d.%" PRIu64, seq, c->node, t);
    /* load.mjs's text: "bench message <id> " padded with dots to 64 bytes */
    int tl = snprintf(text, sizeof(text), "bench message %s ", id);
    while (tl < 64)
        text[tl++] = '.';
    text[tl] = '\0';
    int n = snprintf(pkt, sizeof(pkt),
                     "%c%c%" PRIu64 "[\"message\",{\"room\":\"bench%d\",\"id\":\"%s\",\"text\":\"%s\"}]",
                     SIO_EIO_MESSAGE, SIO_EVENT, seq + 1, c->room, id, text);
    g_pending++;
    W.sent++;
    ws_text(c, pkt, (size_t)n);
}

static void
count_error(const char *p, const char *end)
{
    W.ack_errors++;
    const char *k = memmem(p, (size_t)(end - p), "\"code\":\"", 8);
    char code[32] = "?";
    if (k) {
        k += 8;
        size_t n = 0;
        while (k + n < end && k[n] != '"' && n < sizeof(code) - 1)
            n++;
        memcpy(code, k, n);
        code[n] = '\0';
    }
    for (uint64_t i = 0; i < W.err_codes_n; i++)
        if (!strcmp(W.err_codes[i], code)) {
            W.err_code_count[i]++;
            return;
        }
    if (W.err_codes_n < 8) {
        snprintf(W.err_codes[W.err_codes_n], sizeof(W.err_codes[0]), "%s", code);
        W.err_code_count[W.err_codes_n++] = 1;
    }
}

/* A delivery: 42["message",{...,"id":"<seq>.<node>.<us>",...}] */
static void
on_delivery(conn *c, const char *p, const char *end)
{
    uint64_t t = g_rx_us;
    W.received++;
    if (!W.measure)
        return;
    const char *k = memmem(p, (size_t)(end - p), "\"id\":\"", 6);
    if (!k)
        return;
    char *q;
    strtoull(k + 6, &q, 10);
    if (*q != '.')
        return;
    long node = strtol(q + 1, &q, 10);
    if (*q != '.')
        return;
    uint64_t sent = strtoull(q + 1, &q, 10);
    if (node != c->node && sent <= t)
        h_add(&W.lat, t - sent);
}

/* One Engine.IO packet (a whole text message) from the server. */
static void
on_packet(conn *c, const char *p, size_t len)
{
    const char *end = p + len;
    if (!len)
        return;
    switch (p[0]) {
    case SIO_EIO_OPEN: {
        char pkt[96];
        int n = snprintf(pkt, sizeof(pkt), "%c%c{\"user\":\"r%dm%d\"}", SIO_EIO_MESSAGE,
                         SIO_CONNECT, c->room, c->member);
        c->state = C_SIO;
        ws_text(c, pkt, (size_t)n);
        return;
    }
    case SIO_EIO_PING: {
        uint8_t mem[64];
        proto_mp_buf b;
        proto_mp_buf_fixed(&b, mem, sizeof(mem));
        if (sio_encode_pong(&b, p + 1, len - 1) == PROTO_OK)
            ws_text(c, (const char *)b.data, b.len);
        return;
    }
    case SIO_EIO_CLOSE:
        conn_dead(c, "Engine.IO close");
        return;
    case SIO_EIO_MESSAGE:
        break;
    default:
        return;
    }
    if (len < 2)
        return;
    if (p[1] == SIO_CONNECT && c->state == C_SIO) {
        char pkt[96];
        int n = snprintf(pkt, sizeof(pkt), "%c%c0[\"join\",{\"room\":\"bench%d\"}]",
                         SIO_EIO_MESSAGE, SIO_EVENT, c->room);
        c->state = C_JOINING;
        ws_text(c, pkt, (size_t)n);
    } else if (p[1] == SIO_CONNECT_ERROR) {
        conn_dead(c, "CONNECT_ERROR");
    } else if (p[1] == SIO_EVENT) {
        if (len > 12 && !memcmp(p + 2, "[\"message\",", 11))
            on_delivery(c, p, end);
    } else if (p[1] == SIO_ACK) {
        char *q;
        uint64_t id = strtoull(p + 2, &q, 10);
        bool ok = memmem(q, (size_t)(end - q), "\"ok\":true", 9) != NULL;
        if (id == 0) {          /* the join */
            if (!ok)
                conn_dead(c, "join refused");
            else if (c->state == C_JOINING) {
                c->state = C_JOINED;
                W.joined++;
            }
            return;
        }
        g_pending--;
        if (!ok)
            count_error(q, end);
        else
            W.acked++;
        if (W.measure && id - 1 < g_seq)
            h_add(&W.ack, g_rx_us - g_sent_at[id - 1]);
    }
}

/* Reads server frames (RFC 6455 5.2; never masked) out of c->in. */
static void
on_frames(conn *c)
{
    size_t off = 0;
    while (c->state != C_DEAD) {
        const uint8_t *h = (const uint8_t *)c->in + off;
        size_t avail = c->in_len - off;
        if (avail < 2)
            break;
        bool fin = h[0] & 0x80;
        int op = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (h[1] & 0x80) {
            conn_dead(c, "masked server frame");
            return;
        }
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (len > (64u << 20)) {
            conn_dead(c, "frame too large");
            return;
        }
        if (avail < hl + len)
            break;
        const char *payload = (const char *)h + hl;
        off += hl + (size_t)len;
        if (op == 8) {                               /* close */
            conn_dead(c, "WebSocket close");
            return;
        } else if (op == 9) {                        /* ping -> pong */
            ws_send(c, 10, payload, (size_t)len);
        } else if (op == 1 || op == 2 || op == 0) {  /* text, binary, continuation */
            if (fin && op != 0 && c->msg_len == 0) {
                if (op == 1)
                    on_packet(c, payload, (size_t)len);
            } else {
                grow(&c->msg, &c->msg_cap, c->msg_len + (size_t)len);
                memcpy(c->msg + c->msg_len, payload, (size_t)len);
                c->msg_len += (size_t)len;
                if (fin) {
                    on_packet(c, c->msg, c->msg_len);
                    c->msg_len = 0;
                }
            }
        }
    }
    if (c->state == C_DEAD)
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void
on_http(conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return;
    if (c->in_len < 12 || memcmp(c->in + 9, "101", 3)) {
        char line[64];
        snprintf(line, sizeof(line), "upgrade refused: %.*s", (int)strcspn(c->in, "\r\n") % 48, c->in);
        conn_dead(c, line);
        return;
    }
    size_t head = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
    c->state = C_EIO;
    on_frames(c);
}

static void
on_readable(conn *c)
{
    for (;;) {
        grow(&c->in, &c->in_cap, c->in_len + 65536);
        size_t room = c->in_cap - c->in_len;
        struct iovec iov = { c->in + c->in_len, room };
        union {
            char buf[CMSG_SPACE(sizeof(struct timespec))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        ssize_t r = recvmsg(c->fd, &mh, 0);
        if (r > 0) {
            g_rx_us = 0;
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
                    g_rx_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
                }
            if (!g_rx_us)
                g_rx_us = wall_us();
            c->in_len += (size_t)r;
            if (c->state == C_HTTP)
                on_http(c);
            else
                on_frames(c);
            if (c->state == C_DEAD)
                return;
            if ((size_t)r < room)
                return;                             /* drained the socket */
        } else if (r == 0) {
            conn_dead(c, "server closed the connection");
            return;
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_dead(c, "read failed");
            return;
        }
    }
}

static void
conn_start(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket() failed (raise the fd limit)");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* the time each read's bytes arrived, so waking up late (--poll-us)
     * does not add to the latency measured */
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    const target *t = &g_targets[c->node];
    if (connect(c->fd, (const struct sockaddr *)&t->addr, sizeof(t->addr)) < 0 &&
        errno != EINPROGRESS)
        die("connect() failed");
    /* edge-triggered: a socket read dry is not polled again by every
     * epoll_wait (level-triggered, that re-poll was a tenth of the CPU) */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c };
    epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = true;
    c->state = C_CONNECTING;
    /* RFC 6455 4.1: the key is 16 random bytes, base64 (24 characters) */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int i = 0; i < 21; i++)
        key[i] = b64[rng32() % 64];
    key[21] = b64[(rng32() % 4) * 16];  /* the 128th bit ends the 22nd character */
    key[22] = key[23] = '=';
    key[24] = '\0';
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", t->host, key);
    grow(&c->out, &c->out_cap, (size_t)n);
    memcpy(c->out, req, (size_t)n);
    c->out_len = (size_t)n;
}

static void
on_event(conn *c, uint32_t events)
{
    if (c->state == C_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            conn_dead(c, strerror(err));
            return;
        }
        c->state = C_HTTP;
    }
    if (events & EPOLLIN)
        on_readable(c);
    if (c->state != C_DEAD && (events & EPOLLOUT))
        conn_flush(c);
    if (c->state != C_DEAD && (events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN))
        conn_dead(c, "socket error");
}

/* Handles what is ready, waiting at most timeout_us for something; returns
 * the number of events handled. */
static int
poll_once(uint64_t timeout_us)
{
    struct epoll_event evs[256];
    struct timespec ts = { (time_t)(timeout_us / 1000000u), (long)(timeout_us % 1000000u) * 1000 };
    int n = epoll_pwait2(g_ep, evs, 256, &ts, NULL);
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events);
    return n;
}

/* The loop of the measured phases: with --poll-us P it sleeps min(P,
 * max_wait_us) and then handles everything ready, so one wake-up serves many
 * deliveries (a wake-up, i.e. a context switch, cost this program more than
 * its reads); latencies come from the kernel's receive timestamps and do not
 * grow. With P = 0 it wakes on every event. */
static void
poll_paced(uint64_t max_wait_us)
{
    if (!g_poll_us) {
        poll_once(max_wait_us);
        return;
    }
    uint64_t w = max_wait_us < g_poll_us ? max_wait_us : g_poll_us;
    if (w) {
        struct timespec ts = { (time_t)(w / 1000000u), (long)(w % 1000000u) * 1000 };
        nanosleep(&ts, NULL);
    }
    while (poll_once(0) == 256)
        ;
}

/* ---- phases ------------------------------------------------------------------- */

static uint64_t g_deadline;

static void
check_deadline(void)
{
    if (now_us() > g_deadline)
        die("deadline reached");
}

/* Connects every member (at most 100 handshakes at once) and waits for all
 * joins; returns the seconds it took. */
static double
open_all(void)
{
    uint64_t t0 = now_us();
    int started = 0;
    while (W.joined + W.dead < (uint64_t)g_nconns) {
        check_deadline();
        while (started < g_nconns && (uint64_t)started - W.joined - W.dead < 100)
            conn_start(&g_conns[started++]);
        poll_once(10000);
    }
    if (W.dead)
        die("not every connection joined");
    return (double)(now_us() - t0) / 1e6;
}

/* Members 0 and 1 of every room send, in turn. */
static conn *
next_sender(void)
{
    uint64_t k = g_seq % (uint64_t)(2 * g_rooms);
    return &g_conns[(k / 2) * (uint64_t)g_members + k % 2];
}

/* Sends at rate msg/s for seconds; returns the number sent. The loop sleeps
 * until the next send is due (no periodic wake-ups: each costs a context
 * switch, which was most of this program's CPU per delivery). */
static uint64_t
drive(double rate, double seconds)
{
    uint64_t t0 = now_us(), n = 0, span = (uint64_t)(seconds * 1e6);
    for (;;) {
        uint64_t el = now_us() - t0;
        if (el >= span)
            break;
        uint64_t due = (uint64_t)((double)el / 1e6 * rate);
        while (n < due) {
            send_message(next_sender());
            n++;
        }
        uint64_t next = (uint64_t)((double)(n + 1) * 1e6 / rate);
        if (next > span)
            next = span;
        el = now_us() - t0;
        poll_paced(next > el ? next - el : 0);
        check_deadline();
    }
    return n;
}

/* Waits until expect deliveries arrived and every message was answered, at
 * most ms. */
static void
drain(uint64_t expect, unsigned ms)
{
    uint64_t end = now_us() + (uint64_t)ms * 1000;
    while (now_us() < end && (W.received < expect || g_pending > 0))
        poll_paced(5000);
}

static void
reset_window(bool measure)
{
    memset(&W.lat, 0, sizeof(W.lat));
    memset(&W.ack, 0, sizeof(W.ack));
    W.received = W.sent = W.acked = W.ack_errors = W.err_codes_n = 0;
    W.measure = measure;
}

static void
print_hist(const char *name, const hist *h)
{
    printf("\"%s\":{\"n\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}",
           name, h->n, h_pct_ms(h, 0.5), h_pct_ms(h, 0.9), h_pct_ms(h, 0.99),
           h_pct_ms(h, 0.999), (double)h->max / 1000.0);
}

/* One window's JSON object: counts, latency, CPU (its own and --pids'). */
static void
print_window(double rate, uint64_t sent, uint64_t expected, uint64_t received_at_end,
             double secs, uint64_t self_us, uint64_t user_us, uint64_t srv_us, uint64_t received)
{
    printf("{\"rate\":%g,\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"ack_errors\":%" PRIu64
           ",\"ack_error_codes\":{", rate, sent, W.acked, W.ack_errors);
    for (uint64_t i = 0; i < W.err_codes_n; i++)
        printf("%s\"%s\":%" PRIu64, i ? "," : "", W.err_codes[i], W.err_code_count[i]);
    printf("},\"pending_acks\":%" PRIu64 ",\"received\":%" PRIu64 ",\"received_at_end\":%" PRIu64
           ",\"expected\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"seconds\":%.3f,"
           "\"deliveries_per_s\":%.1f,\"loadgen_cpu_us\":%" PRIu64 ",\"loadgen_user_us\":%" PRIu64
           ",\"loadgen_cpu_us_per_delivery\":%.3f,"
           "\"server_cpu_us\":%" PRIu64 ",\"server_cpu_us_per_delivery\":%.3f,",
           g_pending, received, received_at_end, expected, W.dead, secs,
           (double)received_at_end / secs, self_us, user_us,
           received ? (double)self_us / (double)received : 0.0 / 0.0, srv_us,
           received ? (double)srv_us / (double)received : 0.0 / 0.0);
    print_hist("latency_ms", &W.lat);
    putchar(',');
    print_hist("ack_ms", &W.ack);
    putchar('}');
}

/* A measured window at rate for seconds. The fanout window includes the
 * drain (all deliveries counted against the CPU they cost); a saturation
 * step's rate is over the drive alone, then it drains. */
static bool
window(double rate, double seconds, bool fanout)
{
    reset_window(true);
    uint64_t c0 = self_cpu_us(false), u0 = self_cpu_us(true), s0 = servers_cpu_us(), t0 = now_us();
    uint64_t sent = drive(rate, seconds);
    uint64_t at_end = W.received;
    double drive_s = (double)(now_us() - t0) / 1e6;
    uint64_t expect = sent * (uint64_t)g_members;
    drain(expect, fanout ? 10000 : 15000);
    uint64_t self_us = self_cpu_us(false) - c0, user_us = self_cpu_us(true) - u0, srv_us = servers_cpu_us() - s0;
    print_window(rate, sent, expect, fanout ? W.received : at_end, drive_s,
                 self_us, user_us, srv_us, W.received);
    /* load.mjs's stop rule: acks lag, deliveries fall behind or errors */
    return !(h_pct_ms(&W.ack, 0.5) > 500 || (double)at_end < 0.8 * (double)expect ||
             W.ack_errors || W.dead);
}

/* ---- options ------------------------------------------------------------------ */

static void
parse_target(target *t, const char *url, size_t len)
{
    char buf[128];
    if (len >= sizeof(buf))
        die("URL too long");
    memcpy(buf, url, len);
    buf[len] = '\0';
    const char *h = strstr(buf, "://");
    h = h ? h + 3 : buf;
    const char *colon = strchr(h, ':');
    if (!colon)
        die("URL without a port");
    snprintf(t->host, sizeof(t->host), "%.*s", (int)(colon - h), h);
    memset(&t->addr, 0, sizeof(t->addr));
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, t->host, &t->addr.sin_addr) != 1)
        die("the URLs' hosts must be IPv4 addresses (e.g. 127.0.0.1)");
}

static const char *
arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return dflt;
}

int
main(int argc, char **argv)
{
    const char *urls = arg(argc, argv, "--urls", NULL);
    if (!urls || argc % 2 != 1) {
        fprintf(stderr, "usage: loadgen --urls U0,U1 [--pids P0,P1] [--rooms 10] [--members 100]\n"
                        "       [--rate 200] [--seconds 15] [--warmup 2] [--sat-rates R1,R2,...]\n"
                        "       [--sat-seconds 8] [--poll-us 1000] [--deadline-s 300]\n");
        return 2;
    }
    const char *comma = strchr(urls, ',');
    if (!comma)
        die("--urls needs two URLs");
    parse_target(&g_targets[0], urls, (size_t)(comma - urls));
    parse_target(&g_targets[1], comma + 1, strlen(comma + 1));
    for (const char *p = arg(argc, argv, "--pids", ""); *p && g_npids < MAX_PIDS;) {
        g_pids[g_npids++] = atoi(p);
        p = strchr(p, ',');
        p = p ? p + 1 : "";
    }
    g_rooms = atoi(arg(argc, argv, "--rooms", "10"));
    g_members = atoi(arg(argc, argv, "--members", "100"));
    double rate = atof(arg(argc, argv, "--rate", "200"));
    double seconds = atof(arg(argc, argv, "--seconds", "15"));
    double warmup = atof(arg(argc, argv, "--warmup", "2"));
    const char *sat = arg(argc, argv, "--sat-rates", "");
    double sat_seconds = atof(arg(argc, argv, "--sat-seconds", "8"));
    g_poll_us = (uint64_t)atoll(arg(argc, argv, "--poll-us", "1000"));
    g_deadline = now_us() + (uint64_t)(atof(arg(argc, argv, "--deadline-s", "300")) * 1e6);
    if (g_rooms < 1 || g_members < 2 || rate <= 0 || seconds <= 0)
        die("--rooms >= 1, --members >= 2, --rate and --seconds > 0");

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_nconns = g_rooms * g_members;
    g_conns = calloc((size_t)g_nconns, sizeof(*g_conns));
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g_conns || g_ep < 0)
        die("setup failed");
    for (int i = 0; i < g_nconns; i++) {
        g_conns[i].room = i / g_members;
        g_conns[i].member = i % g_members;
        g_conns[i].node = g_conns[i].member % 2;
    }

    double open_s = open_all();
    /* warm-up, not measured: every room's path once */
    reset_window(false);
    drain(drive(rate, warmup) * (uint64_t)g_members, 10000);

    printf("{\"loadgen\":\"c\",\"rooms\":%d,\"members\":%d,\"connections\":%d,\"open_s\":%.3f,"
           "\"fanout\":", g_rooms, g_members, g_nconns, open_s);
    window(rate, seconds, true);
    printf(",\"saturation\":[");
    bool first = true;
    for (const char *p = sat; *p;) {
        double r = atof(p);
        if (W.dead)
            break;
        if (!first)
            putchar(',');
        first = false;
        bool go_on = window(r, sat_seconds, false);
        fflush(stdout);
        fprintf(stderr, "loadgen: saturation %g msg/s: %.0f deliveries/s\n", r,
                (double)W.received / sat_seconds);
        if (!go_on)
            break;
        p = strchr(p, ',');
        p = p ? p + 1 : "";
    }
    printf("]}\n");
    return 0;
}
