/*
 * What the two files of chatd-mockbroker share (mockbroker.c: startup, the
 * control socket, the loop; commands.c: the control commands): the broker's
 * state, the log line and the command dispatcher. Not a contract for anyone
 * else: the program's contract is the comment at the top of mockbroker.c.
 */
#ifndef CHATD_DEPLOY_MOCKBROKER_H
#define CHATD_DEPLOY_MOCKBROKER_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stddef.h>

#define MAX_BROKERS 16
#define MAX_TOPICS 64
#define MAX_CLIENTS 16
#define LINE_MAX_LEN 1024
#define DEFAULT_BROKERS 1
#define DEFAULT_PARTITIONS 4

struct topic {
    char name[250]; /* Kafka allows 249 bytes */
    int partitions;
};

struct client {
    int fd;             /* -1 when the slot is free */
    unsigned id;        /* for log lines */
    size_t len;         /* bytes in buf */
    int overlong;       /* discarding the rest of an overlong line */
    char buf[LINE_MAX_LEN];
};

struct broker {
    int brokers;
    struct topic topics[MAX_TOPICS];
    int ntopics;
    const char *bootstrap_file;
    const char *control_path;

    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[1024];
    int down[MAX_BROKERS + 1]; /* indexed by broker id, 1-based */
    int rtt[MAX_BROKERS + 1];

    int sfd;     /* signalfd */
    int lfd;     /* listening control socket, or -1 */
    struct client clients[MAX_CLIENTS];
    unsigned next_client_id;
};

/* One event line on stderr, with a wall-clock timestamp. */
void mb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a decimal integer in [lo, hi] into *out; 0 on success, -1 if not. */
int mb_parse_int(const char *s, long lo, long hi, long *out);

/* Runs one control command line (modified in place) and writes its one-line
 * reply, starting with "ok" or "error", into reply. */
void mb_execute(struct broker *b, char *line, char *reply, size_t cap);

#endif
