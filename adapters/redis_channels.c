/*
 * The Redis client's channel set: what the caller wants subscribed, what the
 * server confirmed, and at most one SUBSCRIBE or UNSUBSCRIBE of a channel in
 * flight (hiredis 0.14 keys its per-channel callbacks by name). The contract
 * is redis.h; the state is redis_internal.h.
 */
#include <stdlib.h>
#include <string.h>

#include "adapters/redis_internal.h"

static void
channel_forget(redis_client *r, redis_channel *ch)
{
    rt_map_del(&r->channel_index, ch->name, ch->len);
    rt_list_remove(&r->channels, &ch->link);
    free(ch);
}

/* Brings the server towards what the caller wants, one command in flight at
 * a time; forgets a channel nobody wants any more. */
static void
channel_sync(redis_client *r, redis_channel *ch)
{
    if (ch->inflight)
        return;
    if (ch->want != ch->live) {
        if (r->phase != REDIS_PHASE_UP || r->failing || !r->sub.ac)
            return;     /* done when up again */
        if (redisAsyncCommand(r->sub.ac, redis_on_sub_reply, NULL,
                              ch->want ? "SUBSCRIBE %b" : "UNSUBSCRIBE %b", ch->name,
                              ch->len) == REDIS_OK) {
            ch->inflight = true;
            r->sub.dirty = true;
        }
        return;
    }
    if (!ch->want && !ch->live)
        channel_forget(r, ch);
}

void
redis_channels_sync_all(redis_client *r)
{
    for (rt_link *l = r->channels.head, *next; l; l = next) {
        next = l->next;
        channel_sync(r, RT_CONTAINER(l, redis_channel, link));
    }
}

void
redis_channels_reset(redis_client *r)
{
    for (rt_link *l = r->channels.head, *next; l; l = next) {
        next = l->next;
        redis_channel *ch = RT_CONTAINER(l, redis_channel, link);
        ch->live = ch->inflight = false;
        channel_sync(r, ch);
    }
}
void
redis_channels_confirmed(redis_client *r, bool subscribed, const char *chan, size_t chan_len)
{
    redis_channel *ch = rt_map_get(&r->channel_index, chan, chan_len);
    if (!ch)
        return;
    ch->inflight = false;
    ch->live = subscribed;
    if (subscribed)
        r->cb.on_subscribed(r->data, chan, chan_len);
    if (!r->closing)
        channel_sync(r, ch);
}

void
redis_channels_free(redis_client *r)
{
    for (rt_link *l; (l = rt_list_pop_front(&r->channels));)
        free(RT_CONTAINER(l, redis_channel, link));
    rt_map_free(&r->channel_index);
}

int
redis_subscribe(redis_client *r, const char *chan, size_t chan_len)
{
    redis_channel *ch = rt_map_get(&r->channel_index, chan, chan_len);
    if (!ch) {
        if (!(ch = calloc(1, sizeof(*ch) + chan_len + 1)))
            return REDIS_SUB_NOMEM;
        memcpy(ch->name, chan, chan_len);
        ch->len = chan_len;
        if (!rt_map_put(&r->channel_index, ch->name, chan_len, ch)) {
            free(ch);
            return REDIS_SUB_NOMEM;
        }
        rt_list_push_back(&r->channels, &ch->link);
    }
    ch->want = true;
    if (ch->live && !ch->inflight)
        return REDIS_SUB_LIVE;
    channel_sync(r, ch);
    return REDIS_SUB_PENDING;
}

void
redis_unsubscribe(redis_client *r, const char *chan, size_t chan_len)
{
    redis_channel *ch = rt_map_get(&r->channel_index, chan, chan_len);
    if (ch) {
        ch->want = false;
        channel_sync(r, ch);
    }
}
void
redis_unsubscribe_all(redis_client *r)
{
    for (rt_link *l = r->channels.head, *next; l; l = next) {
        next = l->next;
        redis_channel *ch = RT_CONTAINER(l, redis_channel, link);
        ch->want = false;
        channel_sync(r, ch);
    }
}
