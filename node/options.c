/*
 * The node's flags: one table of every setting with its flag, its environment
 * variable and its help line; chatd --help prints it.
 */
#include "node/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum opt_kind { O_STR, O_INT, O_INT0, O_U64, O_DOUBLE, O_ROLES, O_KAFKA, O_AUTH } opt_kind;

typedef struct option_def {
    const char *flag;
    const char *env;
    opt_kind kind;
    size_t off;
    const char *help;
} option_def;

#define OFF(m) offsetof(chatd_config, m)

static const option_def defs[] = {
    { "host", "CHATD_HOST", O_STR, OFF(host), "address to listen on" },
    { "port", "CHATD_PORT", O_INT, OFF(port), "port for WebSocket and HTTP" },
    { "kafka-brokers", "CHATD_KAFKA_BROKERS", O_STR, OFF(kafka_brokers),
      "Kafka bootstrap servers" },
    { "kafka-topic", "CHATD_KAFKA_TOPIC", O_STR, OFF(kafka_topic), "topic of chat messages" },
    { "kafka-group", "CHATD_KAFKA_GROUP", O_STR, OFF(kafka_group), "consumer group of the store" },
    { "kafka-option", "CHATD_KAFKA_OPTIONS", O_KAFKA, OFF(kafka_options),
      "extra librdkafka property KEY=VALUE (repeatable; the variable takes a "
      "comma-separated list)" },
    { "redis-url", "CHATD_REDIS_URL", O_STR, OFF(redis_url), "Redis, redis://HOST:PORT" },
    { "pg-dsn", "CHATD_PG_DSN", O_STR, OFF(pg_dsn), "PostgreSQL connection string" },
    { "node-id", "CHATD_NODE_ID", O_STR, OFF(node_id), "this node's name in logs and metrics" },
    { "log-level", "CHATD_LOG_LEVEL", O_STR, OFF(log_level), "debug, info, warn or error" },
    { "faults", "CHATD_FAULTS", O_STR, OFF(faults), "fault injection (see README)" },
    { "fault-seed", "CHATD_FAULT_SEED", O_U64, OFF(fault_seed), "overrides the faults' seed" },
    { "roles", "CHATD_ROLES", O_ROLES, OFF(roles),
      "actors to run: all, or a list of socket,producer,consumer,store,fanout" },
    { "web-root", "CHATD_WEB_ROOT", O_STR, OFF(web_root), "directory served at /" },
    { "auth", "CHATD_AUTH", O_AUTH, OFF(auth),
      "jwt (identity from a signed token) or none (the name the client gives)" },
    { "jwt-secret-file", "CHATD_JWT_SECRET_FILE", O_STR, OFF(jwt_secret_file),
      "HS256: file holding the shared secret (32 bytes or more)" },
    { "jwt-public-key", "CHATD_JWT_PUBLIC_KEY", O_STR, OFF(jwt_public_key),
      "RS256/ES256: PEM file of the RSA or EC public key" },
    { "jwt-issuer", "CHATD_JWT_ISSUER", O_STR, OFF(jwt_issuer), "required iss of tokens" },
    { "jwt-audience", "CHATD_JWT_AUDIENCE", O_STR, OFF(jwt_audience), "required aud of tokens" },
    { "jwt-leeway-s", "CHATD_JWT_LEEWAY_S", O_INT0, OFF(jwt_leeway_s),
      "seconds of clock skew allowed on exp and nbf" },
    { "ping-interval-ms", "CHATD_PING_INTERVAL_MS", O_INT, OFF(ping_interval_ms),
      "Engine.IO ping interval" },
    { "ping-timeout-ms", "CHATD_PING_TIMEOUT_MS", O_INT, OFF(ping_timeout_ms),
      "Engine.IO ping timeout" },
    { "max-payload", "CHATD_MAX_PAYLOAD", O_INT, OFF(max_payload), "largest packet, bytes" },
    { "max-inflight", "CHATD_MAX_INFLIGHT", O_INT, OFF(max_inflight),
      "events in flight per connection" },
    { "rate", "CHATD_RATE", O_DOUBLE, OFF(rate_per_s), "events per second per connection" },
    { "rate-burst", "CHATD_RATE_BURST", O_DOUBLE, OFF(rate_burst), "burst of events" },
    { "send-queue", "CHATD_SEND_QUEUE", O_INT, OFF(send_queue_max),
      "frames queued per connection before it is closed as too slow" },
    { "send-queue-bytes", "CHATD_SEND_QUEUE_BYTES", O_INT, OFF(send_queue_bytes),
      "bytes queued per connection before it is closed as too slow" },
    { "connect-timeout-ms", "CHATD_CONNECT_TIMEOUT_MS", O_INT, OFF(connect_timeout_ms),
      "a connection without a Socket.IO CONNECT by then is closed" },
    { "request-timeout-ms", "CHATD_REQUEST_TIMEOUT_MS", O_INT, OFF(request_timeout_ms),
      "backend request deadline" },
    { "produce-timeout-ms", "CHATD_PRODUCE_TIMEOUT_MS", O_INT, OFF(produce_timeout_ms),
      "Kafka delivery deadline" },
    { "presence-ttl-ms", "CHATD_PRESENCE_TTL_MS", O_INT, OFF(presence_ttl_ms),
      "presence of a node that stopped refreshing expires after this" },
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

unsigned
chatd_roles_parse(const char *s)
{
    static const struct { const char *name; unsigned bit; } roles[] = {
        { "socket", CHATD_ROLE_SOCKET }, { "producer", CHATD_ROLE_PRODUCER },
        { "consumer", CHATD_ROLE_CONSUMER }, { "store", CHATD_ROLE_STORE },
        { "fanout", CHATD_ROLE_FANOUT },
    };
    if (strcasecmp(s, "all") == 0)
        return CHATD_ROLE_ALL;
    unsigned mask = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
            if (strlen(roles[i].name) == n && strncasecmp(p, roles[i].name, n) == 0) {
                mask |= roles[i].bit;
                found = true;
            }
        }
        if (!found)
            return 0;
        p += n;
        if (*p == ',')
            p++;
    }
    return mask;
}

static int
add_kafka_option(chatd_config *cfg, const char *kv, size_t len)
{
    if (!memchr(kv, '=', len) || kv[0] == '=' ||
        cfg->nkafka_options == CHATD_KAFKA_OPTIONS_MAX ||
        cfg->storage_used + len + 1 > sizeof(cfg->storage))
        return -1;
    char *dst = cfg->storage + cfg->storage_used;
    memcpy(dst, kv, len);
    dst[len] = '\0';
    cfg->storage_used += len + 1;
    cfg->kafka_options[cfg->nkafka_options++] = dst;
    return 0;
}

static int
set_option(chatd_config *cfg, const option_def *d, const char *val, const char *origin)
{
    void *dst = (char *)cfg + d->off;
    char *end = NULL;
    errno = 0;
    switch (d->kind) {
    case O_STR:
        *(const char **)dst = val;
        return 0;
    case O_INT:
    case O_INT0: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < (d->kind == O_INT0 ? 0 : 1) || v > 1000000000)
            break;
        *(int *)dst = (int)v;
        return 0;
    }
    case O_U64: {
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end)
            break;
        *(uint64_t *)dst = v;
        return 0;
    }
    case O_DOUBLE: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v > 0))
            break;
        *(double *)dst = v;
        return 0;
    }
    case O_ROLES: {
        unsigned r = chatd_roles_parse(val);
        if (!r)
            break;
        *(unsigned *)dst = r;
        return 0;
    }
    case O_AUTH:
        if (strcmp(val, "jwt") != 0 && strcmp(val, "none") != 0)
            break;
        *(chatd_auth_mode *)dst = strcmp(val, "jwt") == 0 ? CHATD_AUTH_JWT : CHATD_AUTH_NONE;
        return 0;
    case O_KAFKA: {
        const char *p = val;
        while (*p) {
            size_t n = strcspn(p, ",");
            if (n && add_kafka_option(cfg, p, n) < 0)
                goto bad;
            p += n;
            if (*p == ',')
                p++;
        }
        return 0;
    }
    }
bad:
    fprintf(stderr, "chatd: bad value \"%s\" for %s\n", val, origin);
    return -1;
}

void
chatd_config_usage(FILE *out)
{
    chatd_config d;
    chatd_config_defaults(&d);
    fprintf(out, "usage: chatd [options]\n\nEach option can also be set through the "
                 "environment variable named after it.\n\n");
    for (size_t i = 0; i < NDEFS; i++) {
        const option_def *o = &defs[i];
        char def[128] = "";
        const void *v = (const char *)&d + o->off;
        switch (o->kind) {
        case O_STR:
            snprintf(def, sizeof(def), "%s", *(const char *const *)v ? *(const char *const *)v
                                                                        : "(none)");
            break;
        case O_INT:
        case O_INT0: snprintf(def, sizeof(def), "%d", *(const int *)v); break;
        case O_AUTH: snprintf(def, sizeof(def), "jwt"); break;
        case O_U64: snprintf(def, sizeof(def), "%llu", (unsigned long long)*(const uint64_t *)v);
            break;
        case O_DOUBLE: snprintf(def, sizeof(def), "%g", *(const double *)v); break;
        case O_ROLES: snprintf(def, sizeof(def), "all"); break;
        case O_KAFKA: snprintf(def, sizeof(def), "(none)"); break;
        }
        fprintf(out, "  --%-20s %-26s %s [%s]\n", o->flag, o->env, o->help, def);
    }
    fprintf(out, "  --%-20s %-26s %s\n", "help", "", "this text");
}

int
chatd_config_parse(chatd_config *cfg, int argc, char **argv)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const char *v = getenv(defs[i].env);
        if (v && *v && set_option(cfg, &defs[i], v, defs[i].env) < 0)
            return -1;
    }

    struct option longopts[NDEFS + 2];
    for (size_t i = 0; i < NDEFS; i++)
        longopts[i] = (struct option){ defs[i].flag, required_argument, NULL, (int)i };
    longopts[NDEFS] = (struct option){ "help", no_argument, NULL, 'h' + 1000 };
    longopts[NDEFS + 1] = (struct option){ 0 };

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'h' + 1000) {
            chatd_config_usage(stdout);
            return 1;
        }
        if (c < 0 || (size_t)c >= NDEFS) {
            fprintf(stderr, "chatd: unknown option (see --help)\n");
            return -1;
        }
        char origin[64];
        snprintf(origin, sizeof(origin), "--%s", defs[c].flag);
        if (set_option(cfg, &defs[c], optarg, origin) < 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "chatd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}
