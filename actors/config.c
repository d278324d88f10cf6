/*
 * The defaults of chatd_config: a setting that works locally for each one.
 * The flags that change them are node/options.c's.
 */
#include "actors/config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void
chatd_config_defaults(chatd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "0.0.0.0";
    cfg->port = 8080;
    cfg->kafka_brokers = "127.0.0.1:9092";
    cfg->kafka_topic = "chatd-messages";
    cfg->kafka_group = "chatd-store";
    cfg->redis_url = "redis://127.0.0.1:6379";
    cfg->pg_dsn = "host=127.0.0.1 port=5432 dbname=chatd user=postgres";
    cfg->log_level = "info";
    cfg->roles = CHATD_ROLE_ALL;
    cfg->auth = CHATD_AUTH_JWT;
    cfg->jwt_leeway_s = 30;
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 20000;
    cfg->max_payload = 65536;
    cfg->max_inflight = 512;
    cfg->rate_per_s = 100;
    cfg->rate_burst = 256;
    cfg->send_queue_max = 1024;
    cfg->send_queue_bytes = 160 * 1024;     /* 100k connections: 15.3 GiB (README) */
    cfg->connect_timeout_ms = 45000;        /* the reference server's connectTimeout */
    cfg->request_timeout_ms = 5000;
    cfg->produce_timeout_ms = 5000;
    cfg->presence_ttl_ms = 30000;

    char host[64] = "chatd";
    gethostname(host, sizeof(host) - 1);
    int n = snprintf(cfg->storage, sizeof(cfg->storage), "%s-%d", host, (int)getpid());
    cfg->node_id = cfg->storage;
    cfg->storage_used = (size_t)n + 1;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 12);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    cfg->node_key = x ? x : 1;
}
