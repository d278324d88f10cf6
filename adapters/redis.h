/*
 * A Redis client for one libev loop: a command connection and a subscriber
 * connection to one server, built on hiredis' async API and its libev
 * adapter. It knows nothing of what it carries: channels, payloads and
 * commands are the caller's bytes.
 *
 * What it does for the caller:
 *
 * - Connects both connections and reports up (on_up) once the server has
 *   answered on each of them: a PING on the command connection, the
 *   confirmation of the anchor channel's SUBSCRIBE on the subscriber. It
 *   reports down (on_down, with a reason) when either fails or is lost, when
 *   both are not up within timeout_ms of the start of a connect, or when the
 *   command connection has had commands without a reply for timeout_ms.
 *   After a down it either stays down for good (reconnect_max_ms == 0) or
 *   connects again after a backoff that doubles from reconnect_min_ms to
 *   reconnect_max_ms and starts over after an up.
 * - Commands (redis_command, redis_publish) issued while up go to hiredis at
 *   once and are pipelined: all that a caller issues before the next
 *   redis_flush (or before the loop next polls) leave in one write. Issued
 *   while not up, they wait in a queue (at most queue_max) and are sent, in
 *   order, when the client is next up. A command already sent when the
 *   connection is lost gets reply NULL; queued ones are kept across the
 *   reconnect. When the client goes down for good, the queued commands get
 *   reply NULL (before on_down) and later commands are refused.
 * - Subscriptions (redis_subscribe / redis_unsubscribe) are a set of
 *   channels the caller wants; the client brings the server towards it and
 *   keeps at most one SUBSCRIBE or UNSUBSCRIBE of a channel in flight, and
 *   subscribes every wanted channel again after a reconnect (on_subscribed
 *   then comes again for each).
 *
 * Callbacks run on the loop, from hiredis' I/O callbacks or the client's own
 * timers (never from inside a call to this API, except on_reply with NULL
 * from redis_flush when a write fails). A callback may call any function
 * here, redis_free included: a free requested inside a callback is finished
 * when the outermost callback returns (the client keeps an in-callback
 * depth). After redis_free no callback runs any more.
 *
 * Ownership: the client copies what it is given (URL, channels, commands);
 * everything a callback receives (reply, channel, payload, reason) lives only
 * until the callback returns. privdata is the caller's: the client never
 * frees it and hands it back only in on_reply; commands still pending at
 * redis_free never get a reply, so their privdata stays the caller's to free.
 *
 * hiredis 0.14.1 notes (see LIBRARIES.md), which this client hides:
 *
 * - No connect timeout, no command timeout, no reconnect: the client's
 *   watchdog timer and reconnect do that.
 * - hiredis frees a context itself after a failed connect and after a
 *   disconnect; the client clears its pointer in those callbacks and frees
 *   only what is still alive. redisAsyncFree runs every pending callback
 *   with reply == NULL and the disconnect callback; the client detaches a
 *   context (ac->data = NULL) before freeing it, so that those calls find
 *   nothing. A context is only torn down from the client's own timer, never
 *   from inside one of its own callbacks (the connect callback in 0.14 is
 *   not protected by REDIS_IN_CALLBACK).
 * - A connection in subscribe mode refuses other commands, and a PUBLISH on
 *   it makes hiredis 0.14 drop the connection: hence two connections.
 * - When the last channel of a connection is unsubscribed, hiredis 0.14
 *   drops its "subscribed" flag, and a SUBSCRIBE reply already on its way
 *   then hits an assert. The subscriber therefore keeps one channel of the
 *   caller's choosing (the anchor, on which nobody may publish) subscribed,
 *   so the count never falls to 0; its confirmation is what tells the client
 *   the subscriber is up.
 * - Its per-channel callback table is keyed by name: SUBSCRIBE x,
 *   UNSUBSCRIBE x, SUBSCRIBE x in flight together lose the callback of the
 *   last one. Hence one command per channel in flight; what the caller asks
 *   for meanwhile is recorded and done when the reply arrives.
 */
#ifndef CHATD_ADAPTERS_REDIS_H
#define CHATD_ADAPTERS_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>
#include <hiredis/hiredis.h>

typedef struct redis_client redis_client;

/* Return codes of redis_command and redis_publish. */
enum {
    REDIS_CLIENT_OK = 0,
    REDIS_CLIENT_FULL = -1,     /* not up and queue_max commands are queued */
    REDIS_CLIENT_DOWN = -2,     /* down for good (no reconnect) */
    REDIS_CLIENT_NOMEM = -3,
};

/* Return codes of redis_subscribe. */
enum {
    REDIS_SUB_PENDING = 0,      /* on_subscribed will come */
    REDIS_SUB_LIVE = 1,         /* already confirmed, nothing in flight */
    REDIS_SUB_NOMEM = -3,
};

typedef struct redis_callbacks {
    /* Both connections answer. */
    void (*on_up)(void *data);
    /* The client is down (reason: why, for a log line). Called once per
     * up or failed connect, whatever failed first. */
    void (*on_down)(void *data, const char *reason);
    /* The reply to a command issued with privdata; reply NULL: the command
     * failed (the connection was lost before its reply). An error reply is a
     * reply (type REDIS_REPLY_ERROR). Every command accepted (REDIS_CLIENT_OK)
     * gets exactly one call, unless the client is freed first. */
    void (*on_reply)(void *data, const redisReply *reply, void *privdata);
    /* The server confirmed a SUBSCRIBE of chan (every confirmation, also one
     * that arrives after the caller stopped wanting the channel). */
    void (*on_subscribed)(void *data, const char *chan, size_t chan_len);
    /* A message published on a subscribed channel. */
    void (*on_message)(void *data, const char *chan, size_t chan_len, const char *payload,
                       size_t len);
} redis_callbacks;

typedef struct redis_options {
    const char *url;            /* "redis://HOST[:PORT][/...]"; port 6379 */
    const char *anchor;         /* channel kept subscribed; nobody publishes on it */
    const char *log_name;       /* for the client's warnings; NULL: "redis" */
    int timeout_ms;             /* connect deadline and reply deadline (> 0) */
    size_t queue_max;           /* commands kept while not up */
    int reconnect_min_ms;       /* backoff after a down ... */
    int reconnect_max_ms;       /* ... up to this; 0: a down is final */
} redis_options;

/*
 * Parses "redis://HOST[:PORT][/...]" (the scheme may be left out) into host
 * (NUL-terminated, at most hostcap - 1 bytes) and *port (6379 when absent).
 * Returns false, touching neither, when it cannot.
 */
bool redis_parse_url(const char *url, char *host, size_t hostcap, int *port);

/*
 * Creates a client on loop and starts connecting; callbacks come later (a
 * connect that fails at once is reported by on_down from the loop, never
 * from here). *cb and *opt are copied (strings too); data is handed to every
 * callback. Returns NULL with the reason in err when the URL cannot be parsed,
 * an option is invalid or memory runs out; nothing is left behind then.
 */
redis_client *redis_new(struct ev_loop *loop, const redis_options *opt,
                        const redis_callbacks *cb, void *data, char *err, size_t errlen);

/* Closes both connections and frees the client (later, when called inside
 * a callback; see above). No callback runs after this. NULL is allowed. */
void redis_free(redis_client *r);

/* Whether both connections are up. */
bool redis_is_up(const redis_client *r);

/*
 * Issues a command on the command connection (hiredis format: %s for a C
 * string, %b for a pointer and a size_t). Its reply comes to on_reply with
 * privdata. Returns REDIS_CLIENT_OK, or another code and then no reply will
 * come (a format hiredis rejects is REDIS_CLIENT_NOMEM too).
 */
int redis_command(redis_client *r, void *privdata, const char *fmt, ...);

/* PUBLISH chan payload, as redis_command. */
int redis_publish(redis_client *r, void *privdata, const char *chan, size_t chan_len,
                  const void *payload, size_t len);

/* Wants chan subscribed. Returns REDIS_SUB_LIVE when it is confirmed and
 * nothing is in flight, REDIS_SUB_PENDING when on_subscribed will come, or
 * REDIS_SUB_NOMEM (nothing changed). */
int redis_subscribe(redis_client *r, const char *chan, size_t chan_len);

/* Wants chan no longer subscribed. A channel the client does not know is
 * ignored. */
void redis_unsubscribe(redis_client *r, const char *chan, size_t chan_len);

/* redis_unsubscribe of every channel (the anchor stays). */
void redis_unsubscribe_all(redis_client *r);

/* Writes now what the connections have buffered, instead of when the loop
 * next polls (call it after a batch of commands). */
void redis_flush(redis_client *r);

#endif
