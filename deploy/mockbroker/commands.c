/*
 * chatd-mockbroker's control commands (see usage() in mockbroker.c): each a
 * small handler on the broker's state, found by name in one table.
 */
#include "deploy/mockbroker/mockbroker.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parsing helpers ---------------------------------------------------- */

/* parse_int: whole-string decimal integer in [lo, hi]; returns 0 on success. */
int mb_parse_int(const char *s, long lo, long hi, long *out)
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

    if (mb_parse_int(s, 0, N_API - 1, &v) == 0) {
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
    numeric = mb_parse_int(s, INT_MIN, INT_MAX, &v) == 0;
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
    if (mb_parse_int(s, -1, b->brokers, &v) || v == 0)
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
    if (mb_parse_int(argv[2], 0, 600000, &v)) {
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
    if (mb_parse_int(argv[2], 0, 100000, &v)) {
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
    if (mb_parse_int(argv[2], 0, INT32_MAX, &part)) {
        snprintf(reply, cap, "error bad partition '%s'", argv[2]);
        return;
    }
    if (mb_parse_int(argv[3], -1, b->brokers, &v) || v == 0) {
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
    if (mb_parse_int(argv[3], 1, b->brokers, &v)) {
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
void mb_execute(struct broker *b, char *line, char *reply, size_t cap)
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
