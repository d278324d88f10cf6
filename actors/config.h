/*
 * chatd's configuration: every setting has a flag, an environment variable
 * and a default that works locally. Flags win over the environment.
 */
#ifndef CHATD_ACTORS_CONFIG_H
#define CHATD_ACTORS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CHATD_ROLE_SOCKET   (1u << 0)
#define CHATD_ROLE_PRODUCER (1u << 1)
#define CHATD_ROLE_CONSUMER (1u << 2)
#define CHATD_ROLE_STORE    (1u << 3)
#define CHATD_ROLE_FANOUT   (1u << 4)
#define CHATD_ROLE_ALL      0x1fu

#define CHATD_KAFKA_OPTIONS_MAX 32

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

    /* limits (PROTOCOL.md) */
    int ping_interval_ms;
    int ping_timeout_ms;
    int max_payload;                /* bytes of one Socket.IO packet */
    int max_inflight;               /* events in flight per connection */
    double rate_per_s;              /* events per second per connection ... */
    double rate_burst;              /* ... with bursts of this many */
    int send_queue_max;             /* frames queued per connection */
    int request_timeout_ms;         /* a backend request not answered: unavailable */
    int produce_timeout_ms;         /* Kafka message.timeout.ms */
    int presence_ttl_ms;            /* presence entry lifetime without refresh */

    char storage[4096];             /* holds strings the parser built */
    size_t storage_used;
} chatd_config;

/* Fills cfg with the defaults. */
void chatd_config_defaults(chatd_config *cfg);

/*
 * Reads the environment, then argv, into cfg (which holds the defaults).
 * Returns 0 on success, 1 when --help was given (usage printed to stdout),
 * -1 on a bad value (a message naming it printed to stderr).
 */
int chatd_config_parse(chatd_config *cfg, int argc, char **argv);

/* Parses "socket,producer,..." or "all" into a role mask; 0 when invalid. */
unsigned chatd_roles_parse(const char *s);

/* Prints the usage with every flag, its variable and its default. */
void chatd_config_usage(FILE *out);

#endif
