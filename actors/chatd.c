/* Helpers every chat actor uses (see chatd.h). */
#include "actors/chatd.h"

#include <inttypes.h>
#include <time.h>

#include "actors/config.h"
#include "adapters/kafka.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

void
chatd_reply_ack(rt_actor *self, rt_id to, uint64_t corr, proto_ack_code code, const char *why)
{
    if (!to)
        return;
    proto_ack ack = { .ok = code == PROTO_ACK_NONE };
    if (!ack.ok)
        proto_ack_set_error(&ack, code, why);
    uint8_t mem[PROTO_ACK_MSG_MAX + 64];
    proto_mp_buf b;
    proto_mp_buf_fixed(&b, mem, sizeof(mem));
    if (proto_ack_encode(&ack, &b) != PROTO_OK) {
        rt_error(rt_who(self), "cannot encode an ack");
        return;
    }
    int r = rt_send(rt_of(self), rt_self(self), to, PROTO_T_ACK, corr, b.data, b.len);
    if (r != RT_OK && r != RT_ENOACTOR)
        rt_warn(rt_who(self), "ack to #%" PRIu64 " not delivered: %d", to, r);
}

uint64_t
chatd_wall_ms(void)
{
    return chatd_wall_us() / 1000u;
}

uint64_t
chatd_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

rt_histogram *
chatd_stage_histogram(rt_runtime *rt, chatd_stage stage)
{
    static const char *const labels[CHATD_STAGES] = {
        [CHATD_STAGE_ACKED] = "stage=\"acked\"",
        [CHATD_STAGE_CONSUMED] = "stage=\"consumed\"",
        [CHATD_STAGE_STORED] = "stage=\"stored\"",
        [CHATD_STAGE_PUBLISHED] = "stage=\"published\"",
        [CHATD_STAGE_RECEIVED] = "stage=\"received\"",
        [CHATD_STAGE_DELIVERED] = "stage=\"delivered\"",
    };
    return rt_histogram_get(rt, "chatd_stage_seconds", labels[stage],
                            "Age of a message at each stage of its path, since the "
                            "accepting socket read it.");
}

void
chatd_stage_observe(rt_histogram *h, uint64_t rx_us)
{
    if (!rx_us)
        return;
    uint64_t now = chatd_wall_us();
    /* another node's clock may be ahead: that counts as 0, not as 2^64 us */
    rt_histogram_observe(h, now > rx_us ? (double)(now - rx_us) / 1e6 : 0);
}

kafka_client *
chatd_kafka_open(rt_actor *self, const chatd_config *cfg, const kafka_setup *s)
{
    kafka_setup setup = *s;
    setup.brokers = cfg->kafka_brokers;
    setup.options = cfg->kafka_options;
    setup.noptions = cfg->nkafka_options;
    setup.up = rt_metric_get(rt_of(self), RT_GAUGE, "chatd_backend_up",
                             "backend=\"" CHATD_BACKEND_KAFKA "\"",
                             "1 when the backend is reachable.");
    setup.ud = self;
    char err[512];
    kafka_client *k = kafka_open(self, &setup, err, sizeof(err));
    if (!k)
        rt_error(rt_who(self), "%s", err);
    return k;
}
