/*
 * The Redis client (adapters/redis.h) against a real Redis (CHATD_REDIS_URL,
 * started by scripts/test), on a loop of its own, without the actor runtime.
 * The reconnect test runs its own redis-server on a free port, since it kills
 * it. Channels and keys carry the test's pid so that runs sharing a Redis do
 * not meet. Every test ends by proving the loop has no active watcher left.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/redis.h"
#include "tests/actors/loopback.h"
#include "tests/actors/redis_util.h"
#include "tests/runtime/rt_test.h"

#define WAIT_MS 3000
#define MAX_EVENTS 64

/* What a client's callbacks saw, in order. */
typedef struct journal {
    int ups, downs, subscribed;
    char last_down[256];
    char chan[MAX_EVENTS][64];          /* on_message */
    char payload[MAX_EVENTS][64];
    size_t payload_len[MAX_EVENTS];
    int nmessages;
    void *privdata[MAX_EVENTS];         /* on_reply */
    int reply_type[MAX_EVENTS];         /* 0: NULL reply */
    long long reply_int[MAX_EVENTS];
    int nreplies;
    redis_client *client;
    bool free_in_message, free_in_reply;    /* redis_free from that callback */
} journal;

static void
on_up(void *data)
{
    ((journal *)data)->ups++;
}

static void
on_down(void *data, const char *reason)
{
    journal *j = data;
    j->downs++;
    snprintf(j->last_down, sizeof(j->last_down), "%s", reason);
}

static void
on_reply(void *data, const redisReply *reply, void *privdata)
{
    journal *j = data;
    assert_true(j->nreplies < MAX_EVENTS);
    j->privdata[j->nreplies] = privdata;
    j->reply_type[j->nreplies] = reply ? reply->type : 0;
    j->reply_int[j->nreplies] = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    j->nreplies++;
    if (j->free_in_reply) {
        redis_free(j->client);
        j->client = NULL;
    }
}

static void
on_subscribed(void *data, const char *chan, size_t chan_len)
{
    (void)chan;
    (void)chan_len;
    ((journal *)data)->subscribed++;
}

static void
on_message(void *data, const char *chan, size_t chan_len, const char *payload, size_t len)
{
    journal *j = data;
    assert_true(j->nmessages < MAX_EVENTS);
    assert_true(chan_len < sizeof(j->chan[0]) && len <= sizeof(j->payload[0]));
    memcpy(j->chan[j->nmessages], chan, chan_len);
    memcpy(j->payload[j->nmessages], payload, len);
    j->payload_len[j->nmessages] = len;
    j->nmessages++;
    if (j->free_in_message) {
        redis_free(j->client);
        j->client = NULL;
    }
}

static const redis_callbacks callbacks = {
    on_up, on_down, on_reply, on_subscribed, on_message,
};

static char namebuf[8][64];

/* A channel or key name of this run: "tr<pid>-<tag>". */
static const char *
name(int i, const char *tag)
{
    snprintf(namebuf[i], sizeof(namebuf[i]), "tr%d-%s", (int)getpid(), tag);
    return namebuf[i];
}

static const char *
redis_url(void)
{
    const char *url = getenv("CHATD_REDIS_URL");
    if (!url || !*url)
        fail_msg("CHATD_REDIS_URL is not set: run the tests through scripts/test");
    return url;
}

static redis_client *
client_new(struct ev_loop *loop, const char *url, journal *j, int reconnect_max_ms)
{
    static int n;
    char anchor[64];
    snprintf(anchor, sizeof(anchor), "tr%d-anchor-%d", (int)getpid(), ++n);
    redis_options opt = {
        .url = url, .anchor = anchor, .log_name = "test", .timeout_ms = 1000,
        .queue_max = 8, .reconnect_min_ms = 20, .reconnect_max_ms = reconnect_max_ms,
    };
    char err[128];
    redis_client *r = redis_new(loop, &opt, &callbacks, j, err, sizeof(err));
    assert_non_null(r);
    j->client = r;
    return r;
}

/* Runs the loop until *count reaches want or WAIT_MS pass. */
static bool
run_until(struct ev_loop *loop, const int *count, int want)
{
    ev_now_update(loop);
    ev_tstamp end = ev_now(loop) + WAIT_MS / 1000.;
    while (*count < want && ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
        ev_now_update(loop);
    }
    return *count >= want;
}

static void
run_for(struct ev_loop *loop, int ms)
{
    ev_now_update(loop);
    ev_tstamp end = ev_now(loop) + ms / 1000.;
    while (ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
        ev_now_update(loop);
    }
}

static void
close_loop(struct ev_loop *loop)
{
    assert_false(ev_run(loop, EVRUN_NOWAIT));   /* no watcher left */
    ev_loop_destroy(loop);
}

/* ---- tests ---- */

static void
test_parse_url(void **state)
{
    (void)state;
    char host[16];
    int port = 0;
    assert_true(redis_parse_url("redis://h:1234/0", host, sizeof(host), &port));
    assert_string_equal(host, "h");
    assert_int_equal(port, 1234);
    assert_true(redis_parse_url("localhost", host, sizeof(host), &port));
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 6379);
    port = 7;
    assert_false(redis_parse_url("redis://:80", host, sizeof(host), &port));
    assert_false(redis_parse_url("redis://h:0", host, sizeof(host), &port));
    assert_false(redis_parse_url("redis://h:70000", host, sizeof(host), &port));
    assert_false(redis_parse_url("redis://h:12x", host, sizeof(host), &port));
    assert_false(redis_parse_url("redis://a-very-long-host-name:1", host, sizeof(host), &port));
    assert_int_equal(port, 7);      /* untouched on failure */

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal j = { 0 };
    redis_options opt = { .url = "redis://h:x", .anchor = "a", .timeout_ms = 100 };
    char err[128];
    assert_null(redis_new(loop, &opt, &callbacks, &j, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot parse"));
    opt.url = "redis://h";
    opt.anchor = NULL;
    assert_null(redis_new(loop, &opt, &callbacks, &j, err, sizeof(err)));
    close_loop(loop);
}

/* Bytes in, the same bytes out, between two clients; replies in order. */
static void
test_publish_reaches_subscriber(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal ja = { 0 }, jb = { 0 };
    redis_client *a = client_new(loop, redis_url(), &ja, 0);
    redis_client *b = client_new(loop, redis_url(), &jb, 0);
    const char *chan = name(0, "pub");
    /* wanted before up: subscribed once up */
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_PENDING);
    assert_true(run_until(loop, &ja.subscribed, 1));
    assert_int_equal(ja.ups, 1);
    assert_true(redis_is_up(a));
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_LIVE);
    assert_true(run_until(loop, &jb.ups, 1));
    static const char bin[] = { 'x', 0, (char)0xff, 'y' };
    int tag1, tag2;
    assert_int_equal(redis_publish(b, &tag1, chan, strlen(chan), bin, sizeof(bin)),
                     REDIS_CLIENT_OK);
    assert_int_equal(redis_publish(b, &tag2, chan, strlen(chan), "two", 3), REDIS_CLIENT_OK);
    redis_flush(b);
    assert_true(run_until(loop, &ja.nmessages, 2));
    assert_string_equal(ja.chan[0], chan);
    assert_int_equal(ja.payload_len[0], sizeof(bin));
    assert_memory_equal(ja.payload[0], bin, sizeof(bin));
    assert_int_equal(ja.payload_len[1], 3);
    assert_true(run_until(loop, &jb.nreplies, 2));
    assert_ptr_equal(jb.privdata[0], &tag1);
    assert_ptr_equal(jb.privdata[1], &tag2);
    assert_int_equal(jb.reply_type[0], REDIS_REPLY_INTEGER);
    assert_int_equal(jb.reply_int[0], 1);      /* one subscriber */
    /* an error reply is a reply */
    assert_int_equal(redis_command(b, &tag1, "NOSUCHCOMMAND"), REDIS_CLIENT_OK);
    assert_true(run_until(loop, &jb.nreplies, 3));
    assert_int_equal(jb.reply_type[2], REDIS_REPLY_ERROR);
    redis_free(a);
    redis_free(b);
    assert_int_equal(ja.downs + jb.downs, 0);
    close_loop(loop);
}

/* SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one channel in flight together: the
 * last wish wins, every confirmation is reported; unsubscribe_all keeps the
 * anchor (the client stays up and subscribed to nothing else). */
static void
test_subscription_wishes(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal ja = { 0 }, jb = { 0 };
    redis_client *a = client_new(loop, redis_url(), &ja, 0);
    redis_client *b = client_new(loop, redis_url(), &jb, 0);
    assert_true(run_until(loop, &ja.ups, 1));
    assert_true(run_until(loop, &jb.ups, 1));
    const char *chan = name(0, "wish"), *other = name(1, "wish2");
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_PENDING);
    redis_unsubscribe(a, chan, strlen(chan));
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_PENDING);
    assert_int_equal(redis_subscribe(a, other, strlen(other)), REDIS_SUB_PENDING);
    redis_flush(a);
    assert_true(run_until(loop, &ja.subscribed, 2));
    run_for(loop, 50);
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_LIVE);
    assert_int_equal(redis_publish(b, NULL, chan, strlen(chan), "m", 1), REDIS_CLIENT_OK);
    redis_flush(b);
    assert_true(run_until(loop, &jb.nreplies, 1));
    assert_int_equal(jb.reply_int[0], 1);
    assert_true(run_until(loop, &ja.nmessages, 1));
    /* unsubscribed from everything but the anchor: nobody hears, still up */
    redis_unsubscribe_all(a);
    redis_flush(a);
    run_for(loop, 100);
    assert_int_equal(redis_publish(b, NULL, chan, strlen(chan), "m", 1), REDIS_CLIENT_OK);
    assert_int_equal(redis_publish(b, NULL, other, strlen(other), "m", 1), REDIS_CLIENT_OK);
    redis_flush(b);
    assert_true(run_until(loop, &jb.nreplies, 3));
    assert_int_equal(jb.reply_int[1], 0);
    assert_int_equal(jb.reply_int[2], 0);
    assert_true(redis_is_up(a));
    /* and back */
    assert_int_equal(redis_subscribe(a, chan, strlen(chan)), REDIS_SUB_PENDING);
    assert_true(run_until(loop, &ja.subscribed, 3));
    redis_free(a);
    redis_free(b);
    assert_int_equal(ja.downs + jb.downs, 0);
    close_loop(loop);
}

/* redis_free inside on_message and inside on_reply: no callback after it,
 * nothing left on the loop (and nothing for ASan to find). */
static void
test_free_inside_callbacks(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal ja = { 0 }, jb = { 0 };
    client_new(loop, redis_url(), &ja, 0);
    client_new(loop, redis_url(), &jb, 0);
    const char *chan = name(0, "free");
    redis_subscribe(ja.client, chan, strlen(chan));
    assert_true(run_until(loop, &ja.subscribed, 1));
    assert_true(run_until(loop, &jb.ups, 1));
    ja.free_in_message = true;
    jb.free_in_reply = true;
    for (int i = 0; i < 3; i++)
        assert_int_equal(redis_publish(jb.client, NULL, chan, strlen(chan), "x", 1),
                         REDIS_CLIENT_OK);
    redis_flush(jb.client);
    assert_true(run_until(loop, &ja.nmessages, 1));
    assert_true(run_until(loop, &jb.nreplies, 1));
    run_for(loop, 100);
    assert_int_equal(ja.nmessages, 1);
    assert_int_equal(jb.nreplies, 1);      /* the two other replies never came */
    assert_null(ja.client);
    assert_null(jb.client);
    assert_int_equal(ja.downs + jb.downs, 0);
    close_loop(loop);
}

/* Nothing listens: queued commands get reply NULL, then on_down; a down
 * without reconnect is final. */
static void
test_connect_refused_is_final(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", loopback_free_port());
    journal j = { 0 };
    redis_client *r = client_new(loop, url, &j, 0);
    int tag;
    assert_int_equal(redis_command(r, &tag, "PING"), REDIS_CLIENT_OK);
    assert_int_equal(j.downs, 0);      /* never from inside a call */
    assert_true(run_until(loop, &j.downs, 1));
    assert_non_null(strstr(j.last_down, "connect failed"));
    assert_int_equal(j.nreplies, 1);
    assert_ptr_equal(j.privdata[0], &tag);
    assert_int_equal(j.reply_type[0], 0);
    assert_int_equal(redis_command(r, &tag, "PING"), REDIS_CLIENT_DOWN);
    run_for(loop, 100);
    assert_int_equal(j.downs, 1);
    assert_int_equal(j.ups, 0);
    redis_free(r);
    close_loop(loop);
}

/* A server that accepts and never answers: the watchdog reports down; the
 * queue is bounded meanwhile. */
static void
test_connect_watchdog(void **state)
{
    (void)state;
    char url[64];
    int fd = redis_util_silent_server(url, sizeof(url));
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal j = { 0 };
    redis_client *r = client_new(loop, url, &j, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(redis_command(r, NULL, "PING"), REDIS_CLIENT_OK);
    assert_int_equal(redis_command(r, NULL, "PING"), REDIS_CLIENT_FULL);
    assert_true(run_until(loop, &j.downs, 1));
    assert_non_null(strstr(j.last_down, "no connection within 1000 ms"));
    assert_int_equal(j.nreplies, 8);
    redis_free(r);
    close(fd);
    close_loop(loop);
}

/* A command without a reply for timeout_ms (a BLPOP that waits longer):
 * its reply is NULL, then the client is down. */
static void
test_reply_deadline(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal j = { 0 };
    redis_client *r = client_new(loop, redis_url(), &j, 0);
    assert_true(run_until(loop, &j.ups, 1));
    int tag;
    assert_int_equal(redis_command(r, &tag, "BLPOP %s 3", name(0, "blpop")), REDIS_CLIENT_OK);
    redis_flush(r);
    ev_now_update(loop);
    ev_tstamp start = ev_now(loop);
    assert_true(run_until(loop, &j.downs, 1));
    double waited = ev_now(loop) - start;
    assert_true(waited >= 0.9 && waited < 2.0);
    assert_non_null(strstr(j.last_down, "no reply for 1000 ms"));
    assert_int_equal(j.nreplies, 1);
    assert_ptr_equal(j.privdata[0], &tag);
    assert_int_equal(j.reply_type[0], 0);
    redis_free(r);
    close_loop(loop);
}

/* The same, with reconnect, and redis_free inside that NULL reply: the
 * teardown that delivered it must not re-arm anything on a freed client. */
static void
test_free_inside_null_reply(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal j = { 0 };
    redis_client *r = client_new(loop, redis_url(), &j, 200);
    assert_true(run_until(loop, &j.ups, 1));
    j.free_in_reply = true;
    assert_int_equal(redis_command(r, NULL, "BLPOP %s 3", name(0, "blpop2")), REDIS_CLIENT_OK);
    redis_flush(r);
    assert_true(run_until(loop, &j.nreplies, 1));
    assert_int_equal(j.reply_type[0], 0);
    assert_null(j.client);
    run_for(loop, 300);
    assert_int_equal(j.downs, 0);      /* freed before its on_down */
    assert_int_equal(j.ups, 1);
    close_loop(loop);
}

/* With reconnect: the server dies and comes back; the client reports down,
 * keeps what was queued meanwhile, reports up again and subscribes its
 * channels again. */
static void
test_reconnect(void **state)
{
    (void)state;
    int port = loopback_free_port();
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    pid_t pid = redis_util_start(port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    journal j = { 0 };
    redis_client *r = client_new(loop, url, &j, 200);
    const char *chan = name(0, "again");
    redis_subscribe(r, chan, strlen(chan));
    assert_true(run_until(loop, &j.subscribed, 1));

    redis_util_kill(pid);
    assert_true(run_until(loop, &j.downs, 1));
    assert_false(redis_is_up(r));
    int tag;
    assert_int_equal(redis_command(r, &tag, "PING"), REDIS_CLIENT_OK);
    run_for(loop, 300);                 /* attempts that fail, with backoff */
    assert_true(j.downs >= 2);
    assert_int_equal(j.nreplies, 0);    /* kept, not failed */

    pid = redis_util_start(port);
    assert_true(run_until(loop, &j.ups, 2));
    assert_true(run_until(loop, &j.subscribed, 2));
    assert_true(run_until(loop, &j.nreplies, 1));
    assert_ptr_equal(j.privdata[0], &tag);
    assert_int_equal(j.reply_type[0], REDIS_REPLY_STATUS);
    /* its channel is live again: a message published now arrives */
    assert_int_equal(redis_publish(r, NULL, chan, strlen(chan), "after", 5), REDIS_CLIENT_OK);
    redis_flush(r);
    assert_true(run_until(loop, &j.nmessages, 1));
    assert_memory_equal(j.payload[0], "after", 5);
    redis_free(r);
    close_loop(loop);
    redis_util_kill(pid);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_publish_reaches_subscriber),
        cmocka_unit_test(test_subscription_wishes),
        cmocka_unit_test(test_free_inside_callbacks),
        cmocka_unit_test(test_connect_refused_is_final),
        cmocka_unit_test(test_connect_watchdog),
        cmocka_unit_test(test_reply_deadline),
        cmocka_unit_test(test_free_inside_null_reply),
        cmocka_unit_test(test_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
