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

#include "deploy/mockbroker/mockbroker.h"

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

/* logf: one event line on stderr, with a wall-clock timestamp. */
void mb_log(const char *fmt, ...)
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
/* ---- control socket ----------------------------------------------------- */

static void client_close(struct client *c, const char *why)
{
    mb_log("control client %u closed (%s)", c->id, why);
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
    mb_execute(b, line, reply, sizeof reply);
    mb_log("control %u: '%s' -> %s", c->id, copy, reply);
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
                    mb_log("control %u: line longer than %d bytes", c->id, LINE_MAX_LEN - 1);
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
            mb_log("control %u: line with a NUL byte", c->id);
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
            mb_log("control accept: %s", strerror(errno));
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
            mb_log("control client %u connected", c->id);
            return;
        }
    }
    static const char busy[] = "error too many control clients\n";
    if (send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the client learns from the close */
    }
    mb_log("control: refused a client (%d already connected)", MAX_CLIENTS);
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
        mb_log("control path too long (max %zu bytes): %s", sizeof sa.sun_path - 1,
              b->control_path);
        return -1;
    }
    strcpy(sa.sun_path, b->control_path);

    if (lstat(b->control_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            mb_log("control path exists and is not a socket: %s", b->control_path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            mb_log("control socket %s is in use by another process", b->control_path);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        mb_log("removing stale control socket %s", b->control_path);
        unlink(b->control_path);
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        mb_log("control socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 16)) {
        mb_log("control socket %s: %s", b->control_path, strerror(errno));
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
        mb_log("bootstrap file path too long: %s", path);
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        mb_log("bootstrap file %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write(fd, bootstraps, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
        fsync(fd) != 0) {
        mb_log("bootstrap file %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        mb_log("bootstrap file rename to %s: %s", path, strerror(errno));
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
        if (mb_parse_int(colon + 1, 1, 100000, &v)) {
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
            if (mb_parse_int(optarg, 1, MAX_BROKERS, &v)) {
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
            if (mb_parse_int(optarg, 1, 100000, &v)) {
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
        mb_log("conf: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!b->rk) {
        mb_log("rd_kafka_new: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    b->mc = rd_kafka_mock_cluster_new(b->rk, b->brokers);
    if (!b->mc) {
        mb_log("rd_kafka_mock_cluster_new(%d brokers) failed", b->brokers);
        return -1;
    }
    snprintf(b->bootstraps, sizeof b->bootstraps, "%s",
             rd_kafka_mock_cluster_bootstraps(b->mc));
    for (int i = 0; i < b->ntopics; i++) {
        int rf = b->brokers < 3 ? b->brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            b->mc, b->topics[i].name, b->topics[i].partitions, rf);
        if (err) {
            mb_log("topic %s: %s", b->topics[i].name, rd_kafka_err2str(err));
            return -1;
        }
        mb_log("topic %s created: %d partitions, replication factor %d",
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
            mb_log("poll: %s", strerror(errno));
            return;
        }
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            if (map[k] == -1) {
                struct signalfd_siginfo si;
                if (read(b->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    mb_log("signal %s: stopping", strsignal((int)si.ssi_signo));
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
        mb_log("signalfd: %s", strerror(errno));
        return 1;
    }

    if (start(&b) || (b.control_path && open_control(&b))) {
        stop(&b);
        return 1;
    }
    mb_log("started: %d broker(s), bootstrap %s, control %s, librdkafka %s", b.brokers,
          b.bootstraps, b.control_path ? b.control_path : "-", rd_kafka_version_str());
    printf("%s\n", b.bootstraps);
    fflush(stdout);
    if (b.bootstrap_file) {
        if (write_bootstrap_file(b.bootstrap_file, b.bootstraps)) {
            stop(&b);
            return 1;
        }
        mb_log("bootstrap address written to %s", b.bootstrap_file);
    }

    run(&b);
    stop(&b);
    mb_log("stopped");
    return 0;
}
