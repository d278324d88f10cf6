/*
 * What the Redis client's two files share: adapters/redis.c (connections,
 * watchdog, reconnect, commands, teardown) and adapters/redis_channels.c
 * (the set of channels the caller wants subscribed). Not a contract for
 * anyone else: that is adapters/redis.h.
 */
#ifndef CHATD_ADAPTERS_REDIS_INTERNAL_H
#define CHATD_ADAPTERS_REDIS_INTERNAL_H

#include <hiredis/async.h>

#include "adapters/redis.h"
#include "runtime/list.h"
#include "runtime/map.h"

typedef enum redis_phase {
    REDIS_PHASE_CONNECTING,       /* contexts made, waiting for both to answer */
    REDIS_PHASE_UP,
    REDIS_PHASE_WAITING,          /* down, reconnecting after the backoff */
    REDIS_PHASE_DOWN,             /* down for good */
} redis_phase;

typedef struct redis_conn {
    redisAsyncContext *ac;  /* NULL: none (or hiredis freed it) */
    const char *what;       /* for reasons: "command connection", "subscriber" */
    bool ready;             /* the server answered on it */
    bool dirty;             /* commands buffered since the last flush */
} redis_conn;

typedef struct redis_channel {
    rt_link link;           /* in redis_client.channels */
    bool want;              /* the caller wants it subscribed */
    bool live;              /* the server confirmed the subscription */
    bool inflight;          /* a SUBSCRIBE or UNSUBSCRIBE awaits its reply */
    size_t len;
    char name[];
} redis_channel;

/* A command issued while not up, formatted, waiting to be sent. */
typedef struct redis_queued {
    rt_link link;
    void *privdata;
    char *cmd;              /* redisvFormatCommand's; redisFreeCommand */
    size_t len;
} redis_queued;

struct redis_client {
    struct ev_loop *loop;
    redis_callbacks cb;
    void *data;
    char host[256];
    int port;
    char *anchor;
    size_t anchor_len;
    char *log_name;
    int timeout_ms;
    size_t queue_max;
    int backoff_min_ms, backoff_max_ms, backoff_ms;

    redis_phase phase;
    redis_conn cmd, sub;
    uint64_t outstanding;       /* commands sent on cmd without a reply */
    ev_tstamp progress;         /* last reply, or first outstanding command */
    ev_timer deadline;          /* connect watchdog, reply deadline, backoff */
    ev_timer soon;              /* a failure to handle outside hiredis */
    bool failing;               /* soon is armed with reason */
    char reason[256];

    rt_map channel_index;       /* name -> redis_channel */
    rt_list channels;
    rt_list queue;              /* redis_queued, oldest first */
    size_t nqueued;

    unsigned depth;             /* enter/leave brackets on the stack */
    bool closing;               /* redis_free was called */
};

/* ---- redis.c ---- */

/* hiredis' callback for every reply on the subscriber. */
void redis_on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- redis_channels.c ---- */

/* Sends what the wanted channels need, now that the client is up. */
void redis_channels_sync_all(redis_client *r);

/* The subscriber is gone: nothing is live or in flight any more; channels
 * nobody wants are forgotten. */
void redis_channels_reset(redis_client *r);

/* The server confirmed a SUBSCRIBE (subscribed) or an UNSUBSCRIBE of chan:
 * tells the caller of a SUBSCRIBE and sends what the caller wants next. */
void redis_channels_confirmed(redis_client *r, bool subscribed, const char *chan,
                              size_t chan_len);

/* Frees every channel (the client is being destroyed). */
void redis_channels_free(redis_client *r);

#endif
