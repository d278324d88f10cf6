/*
 * chatd-mockbroker: a stand-in Kafka broker for machines without one.
 *
 * It runs librdkafka's built-in mock cluster (rdkafka_mock.h), which speaks the
 * real Kafka protocol over TCP on 127.0.0.1 (random ports), keeps messages in
 * memory only, and is meant for tests and local runs, never for production.
 *
 * Contract:
 *   - Topics named with --topic are created in this process before the
 *     bootstrap address is published (the mock does not support CreateTopics,
 *     and auto-creation always makes 4 partitions).
 *   - The bootstrap address ("host:port[,host:port...]") is printed on stdout as
 *     one line and, with --bootstrap-file, written to that file atomically (temp
 *     file in the same directory, fsync, rename, fsync of the directory). When
 *     the file exists, the control socket is already accepting.
 *   - With --control, a Unix-domain stream socket accepts line commands at run
 *     time (see usage()); every line gets exactly one reply line starting with
 *     "ok" or "error".
 *   - SIGTERM/SIGINT: stops cleanly, removes the control socket (and not the
 *     bootstrap file: it names an address that no longer answers, so readers
 *     must not trust a stale file; the launcher removes it), exits 0.
 *   - The main thread sleeps in poll(2) on a signalfd, the listening socket and
 *     the connected control clients: no busy loop.
 *   - One line per event on stderr, prefixed "mockbroker: ".
 *
 * Exit status: 0 after a signal, 1 on a startup error, 2 on bad usage.
 */

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

/* logf: one event line on stderr, with a wall-clock timestamp. */
static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof line, "%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ld mockbroker: ",
                          ts.tv_nsec / 1000000);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (n < sizeof line - 1) {
        line[n++] = '\n';
    } else {
        line[sizeof line - 2] = '\n';
        n = sizeof line - 1;
    }
    /* One write per line so lines from several processes do not interleave. */
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

static void usage(FILE *out)
{
    fprintf(out,
"usage: chatd-mockbroker [options]\n"
"\n"
"A stand-in Kafka broker (librdkafka mock cluster) on 127.0.0.1, memory only.\n"
"\n"
"  --brokers N           number of brokers, ids 1..N (default %d, max %d)\n"
"  --topic NAME[:P]      create topic NAME (repeatable); P overrides --partitions\n"
"  --partitions P        partitions of each --topic without :P (default %d)\n"
"  --bootstrap-file PATH write the bootstrap address to PATH atomically once ready\n"
"  --control PATH        accept line commands on a Unix stream socket at PATH\n"
"  --help                this text\n"
"\n"
"The bootstrap address is also printed on stdout. SIGTERM/SIGINT stop it (exit 0).\n"
"\n"
"Control commands (one per line; each answered by one line \"ok ...\" or \"error ...\"):\n"
"  down ID|all                       disconnect broker, refuse new connections\n"
"                                    (leadership and coordinators do NOT move)\n"
"  up ID|all                         accept connections again\n"
"  rtt ID|all MS                     delay every response by MS milliseconds\n"
"  errors APIKEY COUNT ERR           fail the next COUNT requests of APIKEY (name like\n"
"                                    Produce or number) with ERR (name like\n"
"                                    NOT_LEADER_FOR_PARTITION, _TRANSPORT, or number);\n"
"                                    COUNT 0 clears the pending errors of APIKEY\n"
"  leader TOPIC PARTITION ID         move the partition leader (-1: leaderless);\n"
"                                    the mock creates an unknown TOPIC (4 partitions)\n"
"  coordinator group|transaction KEY ID   set the coordinator of a group/txn id\n"
"  status                            brokers, bootstrap, down brokers, rtts, topics\n"
"  help                              list the commands\n",
            DEFAULT_BROKERS, MAX_BROKERS, DEFAULT_PARTITIONS);
}

/* ---- parsing helpers ---------------------------------------------------- */

/* parse_int: whole-string decimal integer in [lo, hi]; returns 0 on success. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Kafka protocol request types by name (ApiKey numbers from the protocol). */
static const char *const api_names[] = {
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica",
    "UpdateMetadata", "ControlledShutdown", "OffsetCommit", "OffsetFetch",
    "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup",
    "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics",
    "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers",
    "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs",
    "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate",
    "CreatePartitions", "CreateDelegationToken", "RenewDelegationToken",
    "ExpireDelegationToken", "DescribeDelegationToken", "DeleteGroups", "ElectLeaders",
    "IncrementalAlterConfigs", "AlterPartitionReassignments",
    "ListPartitionReassignments", "OffsetDelete",
};
#define N_API ((int)(sizeof api_names / sizeof api_names[0]))

/* parse_apikey: a Kafka request name (case-insensitive, optional "Request"
 * suffix) or a number 0..N_API-1; returns 0 and sets *key on success. */
static int parse_apikey(const char *s, int16_t *key)
{
    long v;
    size_t n = strlen(s);

    if (parse_int(s, 0, N_API - 1, &v) == 0) {
        *key = (int16_t)v;
        return 0;
    }
    if (n > 7 && strcasecmp(s + n - 7, "Request") == 0)
        n -= 7;
    for (int i = 0; i < N_API; i++) {
        if (strlen(api_names[i]) == n && strncasecmp(api_names[i], s, n) == 0) {
            *key = (int16_t)i;
            return 0;
        }
    }
    return -1;
}

/* parse_errcode: an rd_kafka_resp_err_t by name (as rd_kafka_err2name prints it,
 * e.g. NOT_LEADER_FOR_PARTITION or _TRANSPORT, case-insensitive, optional
 * RD_KAFKA_RESP_ERR_ prefix) or by number; only codes librdkafka knows. */
static int parse_errcode(const char *s, rd_kafka_resp_err_t *err)
{
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    long v;
    int numeric;

    if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
        s += 18;
    numeric = parse_int(s, INT_MIN, INT_MAX, &v) == 0;
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (!descs[i].name)
            continue;
        if (numeric ? (long)descs[i].code == v : strcasecmp(descs[i].name, s) == 0) {
            *err = descs[i].code;
            return 0;
        }
    }
    return -1;
}

/* parse_broker: a broker id 1..brokers, or "all"/-1 for every broker. */
static int parse_broker(const struct broker *b, const char *s, int32_t *id)
{
    long v;

    if (strcmp(s, "all") == 0) {
        *id = -1;
        return 0;
    }
    if (parse_int(s, -1, b->brokers, &v) || v == 0)
        return -1;
    *id = (int32_t)v;
    return 0;
}

/* ---- control commands --------------------------------------------------- */

/* Append formatted text to reply (bounded). */
static void rappend(char *reply, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rappend(char *reply, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(reply);
    va_list ap;

    if (n >= cap - 1)
        return;
    va_start(ap, fmt);
    vsnprintf(reply + n, cap - n, fmt, ap);
    va_end(ap);
}

static void set_broker_state(struct broker *b, int32_t id, int *arr, int v)
{
    for (int i = 1; i <= b->brokers; i++)
        if (id == -1 || id == i)
            arr[i] = v;
}

/* A control command's handler: argv[0] is the command, argv[1..argc-1] its
 * words. It checks its own arguments and writes the one-line reply (no
 * newline) into reply. */
typedef void command_fn(struct broker *b, int argc, char **argv, char *reply, size_t cap);

/* down ID|all, up ID|all */
static void cmd_down_up(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    const char *cmd = argv[0];
    int down = cmd[0] == 'd';
    rd_kafka_resp_err_t err;
    int32_t id;

    if (argc != 2) {
        snprintf(reply, cap, "error usage: %s ID|all", cmd);
        return;
    }
    if (parse_broker(b, argv[1], &id)) {
        snprintf(reply, cap, "error bad broker id '%s' (1..%d or all)", argv[1],
                 b->brokers);
        return;
    }
    err = down ? rd_kafka_mock_broker_set_down(b->mc, id)
               : rd_kafka_mock_broker_set_up(b->mc, id);
    if (err) {
        snprintf(reply, cap, "error %s: %s", cmd, rd_kafka_err2str(err));
        return;
    }
    set_broker_state(b, id, b->down, down);
    snprintf(reply, cap, "ok broker %s %s", argv[1], down ? "down" : "up");
}

/* rtt ID|all MS */
static void cmd_rtt(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    rd_kafka_resp_err_t err;
    int32_t id;
    long v;

    if (argc != 3) {
        snprintf(reply, cap, "error usage: rtt ID|all MS");
        return;
    }
    if (parse_broker(b, argv[1], &id)) {
        snprintf(reply, cap, "error bad broker id '%s' (1..%d or all)", argv[1],
                 b->brokers);
        return;
    }
    if (parse_int(argv[2], 0, 600000, &v)) {
        snprintf(reply, cap, "error bad rtt '%s' (0..600000 ms)", argv[2]);
        return;
    }
    err = rd_kafka_mock_broker_set_rtt(b->mc, id, (int)v);
    if (err) {
        snprintf(reply, cap, "error rtt: %s", rd_kafka_err2str(err));
        return;
    }
    set_broker_state(b, id, b->rtt, (int)v);
    snprintf(reply, cap, "ok broker %s rtt %ld ms", argv[1], v);
}

/* errors APIKEY COUNT ERR, or errors APIKEY 0 */
static void cmd_errors(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    int16_t key;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    long v;

    if (argc != 4 && !(argc == 3 && strcmp(argv[2], "0") == 0)) {
        snprintf(reply, cap, "error usage: errors APIKEY COUNT ERRCODE");
        return;
    }
    if (parse_apikey(argv[1], &key)) {
        snprintf(reply, cap, "error unknown api key '%s' (e.g. Produce, Fetch, 0..%d)",
                 argv[1], N_API - 1);
        return;
    }
    if (parse_int(argv[2], 0, 100000, &v)) {
        snprintf(reply, cap, "error bad count '%s' (0..100000)", argv[2]);
        return;
    }
    if (v == 0) {
        rd_kafka_mock_clear_request_errors(b->mc, key);
        snprintf(reply, cap, "ok cleared errors for %s", api_names[key]);
        return;
    }
    if (parse_errcode(argv[3], &code)) {
        snprintf(reply, cap,
                 "error unknown error code '%s' (e.g. NOT_LEADER_FOR_PARTITION, "
                 "_TRANSPORT, 6)", argv[3]);
        return;
    }
    rd_kafka_resp_err_t *arr = malloc((size_t)v * sizeof *arr);
    if (!arr) {
        snprintf(reply, cap, "error out of memory");
        return;
    }
    for (long i = 0; i < v; i++)
        arr[i] = code;
    rd_kafka_mock_push_request_errors_array(b->mc, key, (size_t)v, arr);
    free(arr);
    snprintf(reply, cap, "ok next %ld %s requests fail with %s", v, api_names[key],
             rd_kafka_err2name(code));
}

/* leader TOPIC PARTITION ID */
static void cmd_leader(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    rd_kafka_resp_err_t err;
    long part, v;

    if (argc != 4) {
        snprintf(reply, cap, "error usage: leader TOPIC PARTITION ID");
        return;
    }
    if (parse_int(argv[2], 0, INT32_MAX, &part)) {
        snprintf(reply, cap, "error bad partition '%s'", argv[2]);
        return;
    }
    if (parse_int(argv[3], -1, b->brokers, &v) || v == 0) {
        snprintf(reply, cap, "error bad broker id '%s' (1..%d or -1)", argv[3],
                 b->brokers);
        return;
    }
    err = rd_kafka_mock_partition_set_leader(b->mc, argv[1], (int32_t)part,
                                             (int32_t)v);
    if (err) {
        snprintf(reply, cap, "error leader: %s", rd_kafka_err2str(err));
        return;
    }
    snprintf(reply, cap, "ok %s [%ld] leader %ld", argv[1], part, v);
}

/* coordinator group|transaction KEY ID */
static void cmd_coordinator(struct broker *b, int argc, char **argv, char *reply,
                            size_t cap)
{
    rd_kafka_resp_err_t err;
    long v;

    if (argc != 4) {
        snprintf(reply, cap, "error usage: coordinator group|transaction KEY ID");
        return;
    }
    if (strcmp(argv[1], "group") && strcmp(argv[1], "transaction")) {
        snprintf(reply, cap, "error coordinator type must be group or transaction");
        return;
    }
    if (parse_int(argv[3], 1, b->brokers, &v)) {
        snprintf(reply, cap, "error bad broker id '%s' (1..%d)", argv[3], b->brokers);
        return;
    }
    err = rd_kafka_mock_coordinator_set(b->mc, argv[1], argv[2], (int32_t)v);
    if (err) {
        snprintf(reply, cap, "error coordinator: %s", rd_kafka_err2str(err));
        return;
    }
    snprintf(reply, cap, "ok %s %s coordinator %ld", argv[1], argv[2], v);
}

/* status */
static void cmd_status(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    int any;

    (void)argv;
    if (argc != 1) {
        snprintf(reply, cap, "error usage: status");
        return;
    }
    snprintf(reply, cap, "ok brokers=%d bootstrap=%s down=", b->brokers, b->bootstraps);
    any = 0;
    for (int i = 1; i <= b->brokers; i++)
        if (b->down[i]) {
            rappend(reply, cap, "%s%d", any ? "," : "", i);
            any = 1;
        }
    rappend(reply, cap, "%s rtt=", any ? "" : "-");
    any = 0;
    for (int i = 1; i <= b->brokers; i++)
        if (b->rtt[i]) {
            rappend(reply, cap, "%s%d:%d", any ? "," : "", i, b->rtt[i]);
            any = 1;
        }
    rappend(reply, cap, "%s topics=", any ? "" : "-");
    for (int i = 0; i < b->ntopics; i++)
        rappend(reply, cap, "%s%s:%d", i ? "," : "", b->topics[i].name,
                b->topics[i].partitions);
    if (b->ntopics == 0)
        rappend(reply, cap, "-");
}

/* help (extra words are ignored) */
static void cmd_help(struct broker *b, int argc, char **argv, char *reply, size_t cap)
{
    (void)b;
    (void)argc;
    (void)argv;
    snprintf(reply, cap,
             "ok commands: down ID|all; up ID|all; rtt ID|all MS; "
             "errors APIKEY COUNT ERR; leader TOPIC PARTITION ID; "
             "coordinator group|transaction KEY ID; status; help");
}

static const struct command {
    const char *name;
    command_fn *run;
} commands[] = {
    { "down", cmd_down_up },
    { "up", cmd_down_up },
    { "rtt", cmd_rtt },
    { "errors", cmd_errors },
    { "leader", cmd_leader },
    { "coordinator", cmd_coordinator },
    { "status", cmd_status },
    { "help", cmd_help },
};

/* execute: runs one command line (already without its newline) and writes the
 * one-line reply (no newline) into reply. Never fails: bad input gives an
 * "error <reason>" reply. */
static void execute(struct broker *b, char *line, char *reply, size_t cap)
{
    char *argv[8];
    int argc = 0;
    char *save = NULL;

    reply[0] = '\0';
    for (char *tok = strtok_r(line, " \t\r", &save); tok;
         tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == (int)(sizeof argv / sizeof argv[0])) {
            snprintf(reply, cap, "error too many arguments");
            return;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        snprintf(reply, cap, "error empty command (try: help)");
        return;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            commands[i].run(b, argc, argv, reply, cap);
            return;
        }
    }
    snprintf(reply, cap, "error unknown command '%.64s' (try: help)", argv[0]);
}

/* ---- control socket ----------------------------------------------------- */

static void client_close(struct client *c, const char *why)
{
    logf_("control client %u closed (%s)", c->id, why);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->overlong = 0;
}

/* Write a whole reply; the socket is blocking for writes with a send timeout,
 * so a client that never reads cannot stall the broker for long. */
static int client_reply(struct client *c, const char *reply)
{
    char out[LINE_MAX_LEN * 2 + 2];
    size_t n = (size_t)snprintf(out, sizeof out - 1, "%s", reply);
    size_t off = 0;

    if (n > sizeof out - 2)
        n = sizeof out - 2;
    out[n++] = '\n';
    while (off < n) {
        ssize_t w = send(c->fd, out + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Handle one complete line from a client. */
static int client_line(struct broker *b, struct client *c, char *line)
{
    char copy[LINE_MAX_LEN];
    char reply[LINE_MAX_LEN * 2];

    snprintf(copy, sizeof copy, "%s", line);
    execute(b, line, reply, sizeof reply);
    logf_("control %u: '%s' -> %s", c->id, copy, reply);
    return client_reply(c, reply);
}

static void client_readable(struct broker *b, struct client *c)
{
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);

    if (r == 0) {
        client_close(c, "eof");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            client_close(c, strerror(errno));
        return;
    }
    c->len += (size_t)r;

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (!nl) {
            if (c->len == sizeof c->buf) {
                /* Too long for a command: answer once, drop until the newline. */
                if (!c->overlong) {
                    logf_("control %u: line longer than %d bytes", c->id, LINE_MAX_LEN - 1);
                    if (client_reply(c, "error line too long")) {
                        client_close(c, "write failed");
                        return;
                    }
                }
                c->overlong = 1;
                c->len = 0;
            }
            return;
        }
        *nl = '\0';
        size_t used = (size_t)(nl - c->buf) + 1;
        int rc = 0;
        if (c->overlong) {
            c->overlong = 0; /* tail of the overlong line: already answered */
        } else if (memchr(c->buf, '\0', used - 1)) {
            logf_("control %u: line with a NUL byte", c->id);
            rc = client_reply(c, "error NUL byte in line");
        } else {
            rc = client_line(b, c, c->buf);
        }
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (rc) {
            client_close(c, "write failed");
            return;
        }
    }
}

static void accept_client(struct broker *b)
{
    int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);
    struct timeval tv = {.tv_sec = 2};

    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR)
            logf_("control accept: %s", strerror(errno));
        return;
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &b->clients[i];
        if (c->fd < 0) {
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            c->fd = fd;
            c->id = ++b->next_client_id;
            c->len = 0;
            c->overlong = 0;
            logf_("control client %u connected", c->id);
            return;
        }
    }
    static const char busy[] = "error too many control clients\n";
    if (send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the client learns from the close */
    }
    logf_("control: refused a client (%d already connected)", MAX_CLIENTS);
    close(fd);
}

/* open_control: bind and listen on path. A stale socket file (nobody answers)
 * is replaced; a live one is an error, as is any other kind of file. */
static int open_control(struct broker *b)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    if (strlen(b->control_path) >= sizeof sa.sun_path) {
        logf_("control path too long (max %zu bytes): %s", sizeof sa.sun_path - 1,
              b->control_path);
        return -1;
    }
    strcpy(sa.sun_path, b->control_path);

    if (lstat(b->control_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            logf_("control path exists and is not a socket: %s", b->control_path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            logf_("control socket %s is in use by another process", b->control_path);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        logf_("removing stale control socket %s", b->control_path);
        unlink(b->control_path);
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        logf_("control socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 16)) {
        logf_("control socket %s: %s", b->control_path, strerror(errno));
        close(fd);
        return -1;
    }
    b->lfd = fd;
    return 0;
}

/* ---- bootstrap file ----------------------------------------------------- */

/* write_bootstrap_file: "<bootstraps>\n" to path via temp file + fsync + rename,
 * then fsync the directory so the rename itself is durable. */
static int write_bootstrap_file(const char *path, const char *bootstraps)
{
    char tmp[PATH_MAX];
    char dir[PATH_MAX];
    char *slash;
    int fd, dfd;
    size_t len = strlen(bootstraps);

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        logf_("bootstrap file path too long: %s", path);
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        logf_("bootstrap file %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write(fd, bootstraps, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
        fsync(fd) != 0) {
        logf_("bootstrap file %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        logf_("bootstrap file rename to %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* ---- startup, loop, shutdown -------------------------------------------- */

/* add_topic: one --topic NAME[:P] into b->topics (partitions 0 when there is
 * no :P, for --partitions to fill in); returns 0, or 2 after a line on stderr. */
static int add_topic(struct broker *b, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    long v;

    if (b->ntopics == MAX_TOPICS) {
        fprintf(stderr, "chatd-mockbroker: at most %d topics\n", MAX_TOPICS);
        return 2;
    }
    b->topics[b->ntopics].partitions = 0; /* 0: use --partitions */
    if (colon) {
        if (parse_int(colon + 1, 1, 100000, &v)) {
            fprintf(stderr, "chatd-mockbroker: bad partition count in --topic '%s'\n",
                    arg);
            return 2;
        }
        b->topics[b->ntopics].partitions = (int)v;
    }
    /* Kafka topic names: [a-zA-Z0-9._-], 1..249 bytes. argv stays
     * untouched so ps shows the command line as given. */
    size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
    if (n == 0 || n > 249 || strspn(arg, "abcdefghijklmnopqrstuvwxyz"
                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") < n) {
        fprintf(stderr, "chatd-mockbroker: bad topic name in '%s' "
                        "(1..249 of [a-zA-Z0-9._-])\n", arg);
        return 2;
    }
    memcpy(b->topics[b->ntopics].name, arg, n);
    b->topics[b->ntopics++].name[n] = '\0';
    return 0;
}

/* parse_args: fills b from the command line; returns 0, or 2 on bad usage
 * (after a line on stderr); --help prints usage() and exits 0. Its ~60 lines
 * are one flat getopt switch, a case per option: it reads best as one. */
static int parse_args(struct broker *b, int argc, char **argv)
{
    enum { O_BROKERS = 1, O_TOPIC, O_PARTITIONS, O_BOOTSTRAP, O_CONTROL, O_HELP };
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, O_BROKERS},
        {"topic", required_argument, NULL, O_TOPIC},
        {"partitions", required_argument, NULL, O_PARTITIONS},
        {"bootstrap-file", required_argument, NULL, O_BOOTSTRAP},
        {"control", required_argument, NULL, O_CONTROL},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int partitions = DEFAULT_PARTITIONS;
    int opt;
    long v;

    b->brokers = DEFAULT_BROKERS;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_BROKERS:
            if (parse_int(optarg, 1, MAX_BROKERS, &v)) {
                fprintf(stderr, "chatd-mockbroker: --brokers wants 1..%d, got '%s'\n",
                        MAX_BROKERS, optarg);
                return 2;
            }
            b->brokers = (int)v;
            break;
        case O_TOPIC:
            if (add_topic(b, optarg))
                return 2;
            break;
        case O_PARTITIONS:
            if (parse_int(optarg, 1, 100000, &v)) {
                fprintf(stderr, "chatd-mockbroker: --partitions wants 1..100000, got '%s'\n",
                        optarg);
                return 2;
            }
            partitions = (int)v;
            break;
        case O_BOOTSTRAP:
            b->bootstrap_file = optarg;
            break;
        case O_CONTROL:
            b->control_path = optarg;
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatd-mockbroker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < b->ntopics; i++)
        if (b->topics[i].partitions == 0)
            b->topics[i].partitions = partitions;
    return 0;
}

/* start: librdkafka handle, mock cluster, topics. Signals are already blocked,
 * so librdkafka's threads inherit the mask and only the signalfd sees them. */
static int start(struct broker *b)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    /* The handle only carries the mock cluster; it never produces. */
    /* log_level 4: keep warnings, drop the notice that no bootstrap.servers is set. */
    if (rd_kafka_conf_set(conf, "client.id", "chatd-mockbroker", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof errstr)) {
        logf_("conf: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!b->rk) {
        logf_("rd_kafka_new: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    b->mc = rd_kafka_mock_cluster_new(b->rk, b->brokers);
    if (!b->mc) {
        logf_("rd_kafka_mock_cluster_new(%d brokers) failed", b->brokers);
        return -1;
    }
    snprintf(b->bootstraps, sizeof b->bootstraps, "%s",
             rd_kafka_mock_cluster_bootstraps(b->mc));
    for (int i = 0; i < b->ntopics; i++) {
        int rf = b->brokers < 3 ? b->brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            b->mc, b->topics[i].name, b->topics[i].partitions, rf);
        if (err) {
            logf_("topic %s: %s", b->topics[i].name, rd_kafka_err2str(err));
            return -1;
        }
        logf_("topic %s created: %d partitions, replication factor %d",
              b->topics[i].name, b->topics[i].partitions, rf);
    }
    return 0;
}

static void stop(struct broker *b)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (b->clients[i].fd >= 0)
            client_close(&b->clients[i], "shutdown");
    if (b->lfd >= 0) {
        close(b->lfd);
        b->lfd = -1;
        unlink(b->control_path);
    }
    if (b->mc)
        rd_kafka_mock_cluster_destroy(b->mc);
    if (b->rk)
        rd_kafka_destroy(b->rk);
    b->mc = NULL;
    b->rk = NULL;
    rd_kafka_wait_destroyed(5000);
    if (b->sfd >= 0)
        close(b->sfd);
}

static void run(struct broker *b)
{
    struct pollfd pfd[2 + MAX_CLIENTS];
    int map[2 + MAX_CLIENTS];

    for (;;) {
        int n = 0;
        pfd[n].fd = b->sfd;
        pfd[n].events = POLLIN;
        map[n++] = -1;
        if (b->lfd >= 0) {
            pfd[n].fd = b->lfd;
            pfd[n].events = POLLIN;
            map[n++] = -2;
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (b->clients[i].fd >= 0) {
                pfd[n].fd = b->clients[i].fd;
                pfd[n].events = POLLIN;
                map[n++] = i;
            }
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            logf_("poll: %s", strerror(errno));
            return;
        }
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            if (map[k] == -1) {
                struct signalfd_siginfo si;
                if (read(b->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    logf_("signal %s: stopping", strsignal((int)si.ssi_signo));
                    return;
                }
            } else if (map[k] == -2) {
                accept_client(b);
            } else {
                struct client *c = &b->clients[map[k]];
                if (c->fd >= 0)
                    client_readable(b, c);
            }
        }
    }
}

int main(int argc, char **argv)
{
    struct broker b = {.sfd = -1, .lfd = -1};
    sigset_t mask;
    int rc;

    for (int i = 0; i < MAX_CLIENTS; i++)
        b.clients[i].fd = -1;
    rc = parse_args(&b, argc, argv);
    if (rc)
        return rc;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) ||
        (b.sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        logf_("signalfd: %s", strerror(errno));
        return 1;
    }

    if (start(&b) || (b.control_path && open_control(&b))) {
        stop(&b);
        return 1;
    }
    logf_("started: %d broker(s), bootstrap %s, control %s, librdkafka %s", b.brokers,
          b.bootstraps, b.control_path ? b.control_path : "-", rd_kafka_version_str());
    printf("%s\n", b.bootstraps);
    fflush(stdout);
    if (b.bootstrap_file) {
        if (write_bootstrap_file(b.bootstrap_file, b.bootstraps)) {
            stop(&b);
            return 1;
        }
        logf_("bootstrap address written to %s", b.bootstrap_file);
    }

    run(&b);
    stop(&b);
    logf_("stopped");
    return 0;
}
