/*
 * The Redis client: hiredis' async contexts on a libev loop, with the
 * connect, watchdog, reconnect, queueing and teardown that hiredis 0.14
 * leaves to its user. The contract is redis.h.
 *
 * Re-entrancy: every way in from the loop (hiredis' reply callbacks, the two
 * timers, redis_flush) brackets its work with enter/leave; redis_free inside
 * that bracket only marks the client closing, and leave frees it when the
 * outermost bracket ends. Contexts are torn down (redisAsyncFree with
 * ac->data still set) only from the `soon` timer, so their NULL replies
 * reach the caller inside a bracket, never from inside hiredis' own connect
 * or disconnect handling.
 */
#include "adapters/redis_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libev.h>

#include "runtime/log.h"

/* privdata of our own PING on the command connection */
static const char PING_TAG[] = "PING";

static void redis_destroy(redis_client *r);

/* ---- helpers ---------------------------------------------------------- */

static void
enter(redis_client *r)
{
    r->depth++;
}

/* Ends a bracket; the client may be gone afterwards. */
static void
leave(redis_client *r)
{
    if (--r->depth == 0 && r->closing)
        redis_destroy(r);
}

static redis_conn *
conn_of(redis_client *r, const redisAsyncContext *ac)
{
    if (ac == r->cmd.ac)
        return &r->cmd;
    if (ac == r->sub.ac)
        return &r->sub;
    return NULL;        /* a context being torn down */
}

/* Records why the client is failing and handles it from the soon timer. The
 * first failure wins. */
static void fail(redis_client *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(redis_client *r, const char *fmt, ...)
{
    if (r->failing || r->closing || (r->phase != REDIS_PHASE_CONNECTING && r->phase != REDIS_PHASE_UP))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    r->failing = true;
    ev_timer_set(&r->soon, 0., 0.);
    ev_timer_start(r->loop, &r->soon);
}

static void
arm_deadline(redis_client *r, double ms)
{
    ev_timer_stop(r->loop, &r->deadline);
    ev_timer_set(&r->deadline, ms / 1000., 0.);
    ev_timer_start(r->loop, &r->deadline);
}

/* ---- commands --------------------------------------------------------- */

static void on_cmd_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Accounts for a command handed to hiredis on the command connection: the
 * reply deadline runs while any is outstanding. */
static void
cmd_sent(redis_client *r)
{
    r->cmd.dirty = true;
    if (r->outstanding++ == 0) {
        r->progress = ev_now(r->loop);
        if (!ev_is_active(&r->deadline))
            arm_deadline(r, r->timeout_ms);
    }
}

static bool
can_send(const redis_client *r)
{
    return r->phase == REDIS_PHASE_UP && !r->failing && r->cmd.ac;
}

/* Sends the queued commands, oldest first. A command hiredis refuses now
 * gets its NULL reply. */
static void
queue_send(redis_client *r)
{
    for (rt_link *l; (l = rt_list_pop_front(&r->queue));) {
        redis_queued *q = RT_CONTAINER(l, redis_queued, link);
        r->nqueued--;
        bool ok = can_send(r) && redisAsyncFormattedCommand(r->cmd.ac, on_cmd_reply, q->privdata,
                                                            q->cmd, q->len) == REDIS_OK;
        if (ok)
            cmd_sent(r);
        else if (!r->closing)
            r->cb.on_reply(r->data, NULL, q->privdata);
        redisFreeCommand(q->cmd);
        free(q);
    }
}

/* Drops the queued commands: each gets its NULL reply (none once closing). */
static void
queue_fail(redis_client *r)
{
    for (rt_link *l; (l = rt_list_pop_front(&r->queue));) {
        redis_queued *q = RT_CONTAINER(l, redis_queued, link);
        r->nqueued--;
        if (!r->closing)
            r->cb.on_reply(r->data, NULL, q->privdata);
        redisFreeCommand(q->cmd);
        free(q);
    }
}

static int
queue_push(redis_client *r, void *privdata, const char *fmt, va_list ap)
{
    if (r->nqueued >= r->queue_max)
        return REDIS_CLIENT_FULL;
    redis_queued *q = malloc(sizeof(*q));
    if (!q)
        return REDIS_CLIENT_NOMEM;
    int len = redisvFormatCommand(&q->cmd, fmt, ap);
    if (len < 0) {
        free(q);
        return REDIS_CLIENT_NOMEM;
    }
    q->len = (size_t)len;
    q->privdata = privdata;
    rt_list_push_back(&r->queue, &q->link);
    r->nqueued++;
    return REDIS_CLIENT_OK;
}

/* ---- replies ---------------------------------------------------------- */

static void
check_up(redis_client *r)
{
    if (r->phase != REDIS_PHASE_CONNECTING || !r->cmd.ready || !r->sub.ready || r->failing)
        return;
    r->phase = REDIS_PHASE_UP;
    r->backoff_ms = r->backoff_min_ms;
    ev_timer_stop(r->loop, &r->deadline);
    redis_channels_sync_all(r);
    queue_send(r);
    if (!r->closing)
        r->cb.on_up(r->data);
}

/* Every reply on the command connection, ours (the PING) and the caller's. */
static void
on_cmd_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_client *r = ac->data;
    if (!r)
        return;         /* detached by redis_free */
    const redisReply *rep = reply;
    enter(r);
    if (ac == r->cmd.ac) {
        if (privdata != PING_TAG && r->outstanding)
            r->outstanding--;
        r->progress = ev_now(r->loop);
    }
    if (privdata == PING_TAG) {
        if (ac == r->cmd.ac && rep && rep->type != REDIS_REPLY_ERROR) {
            r->cmd.ready = true;
            check_up(r);
        } else if (ac == r->cmd.ac && rep) {
            fail(r, "command connection: PING: %s", rep->str);
        }
    } else if (!r->closing) {
        r->cb.on_reply(r->data, rep, privdata);
    }
    leave(r);
}

static void
on_sub_kind(redis_client *r, const char *kind, const char *chan, size_t chan_len,
            const redisReply *payload)
{
    if (chan_len == r->anchor_len && memcmp(chan, r->anchor, chan_len) == 0) {
        if (strcmp(kind, "subscribe") == 0 && !r->sub.ready) {
            r->sub.ready = true;
            check_up(r);
        }
        return;
    }
    if (strcmp(kind, "message") == 0) {
        if (payload->type != REDIS_REPLY_STRING) {
            rt_warn(r->log_name, "redis subscriber: a message that is not a string");
            return;
        }
        r->cb.on_message(r->data, chan, chan_len, payload->str, payload->len);
        return;
    }
    bool sub = strcmp(kind, "subscribe") == 0;
    if (sub || strcmp(kind, "unsubscribe") == 0)
        redis_channels_confirmed(r, sub, chan, chan_len);
}

/* Every reply on the subscriber: confirmations and channel messages, all
 * through this one callback. */
void
redis_on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_client *r = ac->data;
    const redisReply *rep = reply;
    if (!r || ac != r->sub.ac || !rep || r->closing)
        return;         /* detached, torn down, or the connection is lost */
    enter(r);
    if (rep->type == REDIS_REPLY_ERROR) {
        rt_warn(r->log_name, "redis subscriber: %s", rep->str);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
               rep->element[0]->type != REDIS_REPLY_STRING ||
               rep->element[1]->type != REDIS_REPLY_STRING) {
        rt_warn(r->log_name, "redis subscriber: unexpected reply");
    } else {
        on_sub_kind(r, rep->element[0]->str, rep->element[1]->str, rep->element[1]->len,
                    rep->element[2]);
    }
    leave(r);
}

/* ---- connections ------------------------------------------------------ */

/* Runs inside hiredis' connect handling: no caller callback from here. */
static void
on_connect(const redisAsyncContext *ac, int status)
{
    redis_client *r = ac->data;
    redis_conn *c = r ? conn_of(r, ac) : NULL;
    if (!c)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL;       /* hiredis frees it after this callback */
        fail(r, "%s: connect failed: %s", c->what, ac->errstr);
        return;
    }
    int rc = c == &r->cmd
        ? redisAsyncCommand(c->ac, on_cmd_reply, (void *)PING_TAG, "PING")
        : redisAsyncCommand(c->ac, redis_on_sub_reply, NULL, "SUBSCRIBE %b", r->anchor,
                            r->anchor_len);
    if (rc != REDIS_OK)
        fail(r, "%s: cannot send its first command", c->what);
}

/* Runs inside hiredis' teardown: no caller callback from here. */
static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_client *r = ac->data;
    redis_conn *c = r ? conn_of(r, ac) : NULL;
    if (!c)
        return;
    c->ac = NULL;           /* hiredis frees it after this callback */
    c->ready = false;
    fail(r, "%s: connection lost: %s", c->what, status == REDIS_OK ? "closed" : ac->errstr);
}

static bool
conn_open(redis_client *r, redis_conn *c)
{
    c->ready = c->dirty = false;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac) {
        fail(r, "%s: out of memory", c->what);
        return false;
    }
    if (ac->err) {
        fail(r, "%s: %s", c->what, ac->errstr);
        redisAsyncFree(ac);
        return false;
    }
    ac->data = r;
    if (redisLibevAttach(r->loop, ac) != REDIS_OK) {
        fail(r, "%s: cannot attach to the loop", c->what);
        redisAsyncFree(ac);
        return false;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    return true;
}

static void
connect_both(redis_client *r)
{
    r->phase = REDIS_PHASE_CONNECTING;
    r->outstanding = 0;
    arm_deadline(r, r->timeout_ms);
    if (conn_open(r, &r->cmd))
        conn_open(r, &r->sub);
}

/* Frees a context still alive. With detach, its pending callbacks find
 * nothing; without, they are called (NULL replies reach the caller). */
static void
conn_close(redis_conn *c, bool detach)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->ready = c->dirty = false;
    if (!ac)
        return;
    if (detach)
        ac->data = NULL;
    redisAsyncFree(ac);
}

/* The failure recorded by fail(), handled from the soon timer: tear both
 * connections down, reset the channels, report, and reconnect later or
 * stay down. */
static void
go_down(redis_client *r)
{
    r->failing = false;
    ev_timer_stop(r->loop, &r->deadline);
    conn_close(&r->cmd, false);
    conn_close(&r->sub, false);
    r->outstanding = 0;
    redis_channels_reset(r);
    if (r->backoff_max_ms > 0) {
        r->phase = REDIS_PHASE_WAITING;
        arm_deadline(r, r->backoff_ms);
        r->backoff_ms = r->backoff_ms * 2 < r->backoff_max_ms ? r->backoff_ms * 2
                                                               : r->backoff_max_ms;
    } else {
        r->phase = REDIS_PHASE_DOWN;
        queue_fail(r);
    }
    if (!r->closing)
        r->cb.on_down(r->data, r->reason);
}

static void
on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    redis_client *r = w->data;
    enter(r);
    if (r->failing)
        go_down(r);
    leave(r);
}

/* The one deadline: the connect watchdog while connecting, the reply
 * deadline while up, the backoff while waiting. */
static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    redis_client *r = w->data;
    enter(r);
    switch (r->phase) {
    case REDIS_PHASE_CONNECTING:
        fail(r, "no connection within %d ms (command connection %s, subscriber %s)",
             r->timeout_ms, r->cmd.ready ? "up" : "down", r->sub.ready ? "up" : "down");
        break;
    case REDIS_PHASE_UP: {
        if (r->outstanding == 0)
            break;
        double waited_ms = (ev_now(loop) - r->progress) * 1000.;
        if (waited_ms >= r->timeout_ms)
            fail(r, "command connection: no reply for %d ms", r->timeout_ms);
        else
            arm_deadline(r, r->timeout_ms - waited_ms);
        break;
    }
    case REDIS_PHASE_WAITING:
        connect_both(r);
        break;
    case REDIS_PHASE_DOWN:
        break;
    }
    leave(r);
}

/* ---- the client ------------------------------------------------------- */

bool
redis_parse_url(const char *url, char *host, size_t hostcap, int *port)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) == 0)
        p += 8;
    const char *end = p + strcspn(p, ":/");
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= hostcap)
        return false;
    int v = 6379;
    if (*end == ':') {
        char *e;
        long l = strtol(end + 1, &e, 10);
        if (e == end + 1 || l <= 0 || l > 65535 || (*e && *e != '/'))
            return false;
        v = (int)l;
    }
    memcpy(host, p, n);
    host[n] = '\0';
    *port = v;
    return true;
}

redis_client *
redis_new(struct ev_loop *loop, const redis_options *opt, const redis_callbacks *cb,
          void *data, char *err, size_t errlen)
{
    redis_client *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!redis_parse_url(opt->url, r->host, sizeof(r->host), &r->port)) {
        snprintf(err, errlen, "cannot parse redis url \"%s\"", opt->url);
        goto err;
    }
    if (!opt->anchor || !*opt->anchor || opt->timeout_ms <= 0 || opt->reconnect_min_ms < 0 ||
        opt->reconnect_max_ms < 0 ||
        (opt->reconnect_max_ms > 0 && opt->reconnect_max_ms < opt->reconnect_min_ms)) {
        snprintf(err, errlen, "invalid redis client options");
        goto err;
    }
    r->anchor = strdup(opt->anchor);
    r->log_name = strdup(opt->log_name ? opt->log_name : "redis");
    if (!r->anchor || !r->log_name) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    r->anchor_len = strlen(r->anchor);
    r->loop = loop;
    r->cb = *cb;
    r->data = data;
    r->timeout_ms = opt->timeout_ms;
    r->queue_max = opt->queue_max;
    r->backoff_min_ms = opt->reconnect_min_ms > 0 ? opt->reconnect_min_ms : 1;
    r->backoff_max_ms = opt->reconnect_max_ms;
    r->backoff_ms = r->backoff_min_ms;
    r->cmd.what = "command connection";
    r->sub.what = "subscriber";
    ev_timer_init(&r->deadline, on_deadline, 0., 0.);
    ev_timer_init(&r->soon, on_soon, 0., 0.);
    r->deadline.data = r->soon.data = r;
    connect_both(r);
    return r;
err:
    free(r->anchor);
    free(r->log_name);
    free(r);
    return NULL;
}

static void
redis_destroy(redis_client *r)
{
    /* again: a go_down that ran around a redis_free may have re-armed one */
    ev_timer_stop(r->loop, &r->deadline);
    ev_timer_stop(r->loop, &r->soon);
    redis_channels_free(r);
    queue_fail(r);      /* closing: no replies */
    free(r->anchor);
    free(r->log_name);
    free(r);
}

void
redis_free(redis_client *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    ev_timer_stop(r->loop, &r->deadline);
    ev_timer_stop(r->loop, &r->soon);
    conn_close(&r->cmd, true);
    conn_close(&r->sub, true);
    if (r->depth == 0)
        redis_destroy(r);
}

bool
redis_is_up(const redis_client *r)
{
    return r->phase == REDIS_PHASE_UP && !r->failing;
}

static int
command_v(redis_client *r, void *privdata, const char *fmt, va_list ap)
{
    if (r->closing || r->phase == REDIS_PHASE_DOWN)
        return REDIS_CLIENT_DOWN;
    if (!can_send(r))
        return queue_push(r, privdata, fmt, ap);
    if (redisvAsyncCommand(r->cmd.ac, on_cmd_reply, privdata, fmt, ap) != REDIS_OK)
        return REDIS_CLIENT_NOMEM;
    cmd_sent(r);
    return REDIS_CLIENT_OK;
}

int
redis_command(redis_client *r, void *privdata, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = command_v(r, privdata, fmt, ap);
    va_end(ap);
    return rc;
}

int
redis_publish(redis_client *r, void *privdata, const char *chan, size_t chan_len,
              const void *payload, size_t len)
{
    return redis_command(r, privdata, "PUBLISH %b %b", chan, chan_len, payload, len);
}

void
redis_flush(redis_client *r)
{
    if (r->closing)
        return;
    enter(r);
    redis_conn *conns[] = { &r->cmd, &r->sub };
    for (size_t i = 0; i < 2 && !r->closing; i++) {
        redis_conn *c = conns[i];
        if (c->dirty && c->ac && c->ready) {
            c->dirty = false;
            redisAsyncHandleWrite(c->ac);
        }
    }
    leave(r);
}
