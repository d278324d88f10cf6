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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
