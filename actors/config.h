/*
 * chatd's configuration, as the actors read it: every setting has a default
 * that works locally (chatd_config_defaults), and a flag and an environment
 * variable that change it (node/options.h; flags win over the environment).
 */
#ifndef CHATD_ACTORS_CONFIG_H
#define CHATD_ACTORS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHATD_ROLE_SOCKET   (1u << 0)
#define CHATD_ROLE_PRODUCER (1u << 1)
#define CHATD_ROLE_CONSUMER (1u << 2)
#define CHATD_ROLE_STORE    (1u << 3)
#define CHATD_ROLE_FANOUT   (1u << 4)
#define CHATD_ROLE_ALL      0x1fu

#define CHATD_KAFKA_OPTIONS_MAX 32

/* Who a client is (PROTOCOL.md, Identity). */
typedef enum chatd_auth_mode {
    CHATD_AUTH_JWT = 0,             /* a signed token's sub: the default */
    CHATD_AUTH_NONE,                /* the name in auth.user, for local trials */
} chatd_auth_mode;

typedef struct chatd_config {
    const char *host;               /* address to listen on */
    int port;
    const char *kafka_brokers;
    const char *kafka_topic;
    const char *kafka_group;
    /* extra librdkafka properties "key=value" (mock-only tuning goes here,
     * never into the defaults) */
    const char *kafka_options[CHATD_KAFKA_OPTIONS_MAX];
    size_t nkafka_options;
    const char *redis_url;
    const char *pg_dsn;
    const char *node_id;
    uint64_t node_key;              /* a random 64-bit id of this process */
    const char *log_level;
    const char *faults;
    uint64_t fault_seed;
    unsigned roles;
    const char *web_root;           /* directory of the web page; NULL: none */

    /* identity: with CHATD_AUTH_JWT exactly one of the secret file (HS256)
     * and the public key (RS256/ES256); no default key exists */
    chatd_auth_mode auth;
    const char *jwt_secret_file;
    const char *jwt_public_key;
    const char *jwt_issuer;         /* NULL: iss not checked */
    const char *jwt_audience;       /* NULL: aud not checked */
    int jwt_leeway_s;               /* clock skew allowed on exp and nbf */

    /* limits (PROTOCOL.md) */
    int ping_interval_ms;
    int ping_timeout_ms;
    int max_payload;                /* bytes of one Socket.IO packet */
    int max_inflight;               /* events in flight per connection */
    double rate_per_s;              /* events per second per connection ... */
    double rate_burst;              /* ... with bursts of this many */
    int send_queue_max;             /* frames queued per connection */
    int send_queue_bytes;           /* bytes queued per connection (ws_send) */
    int connect_timeout_ms;         /* no Socket.IO CONNECT by then: closed */
    int request_timeout_ms;         /* a backend request not answered: unavailable */
    int produce_timeout_ms;         /* Kafka message.timeout.ms */
    int presence_ttl_ms;            /* presence entry lifetime without refresh */

    char storage[4096];             /* holds strings the parser built */
    size_t storage_used;
} chatd_config;

/* Fills cfg with the defaults. */
void chatd_config_defaults(chatd_config *cfg);

#endif
