/*
 * Helpers for the actor tests, which run one chat actor at a time against
 * real services (PostgreSQL, Redis, the stand-in Kafka broker) started by
 * scripts/test through scripts/services.sh, which exports their addresses as
 * CHATD_PG_DSN, CHATD_REDIS_URL and CHATD_KAFKA_BROKERS. A test that finds
 * them unset fails and says so: these tests are never skipped.
 *
 * Stub actors stand in for an actor's peers: register one under a peer's
 * name ("fanout", "socket", ...) and it keeps every message it receives, for
 * the test to wait for and inspect.
 */
#ifndef CHATD_TESTS_ACTORS_HARNESS_H
#define CHATD_TESTS_ACTORS_HARNESS_H

#include "actors/chatd.h"
#include "node/options.h"
#include "tests/runtime/rt_test.h"

typedef struct stub_msg {
    uint32_t type;
    uint64_t from;
    uint64_t corr;
    uint8_t *payload;           /* owned copy */
    size_t len;
} stub_msg;

/* Fills cfg from the defaults and the environment; fails the test when a
 * service the test needs (CHATD_PG_DSN, CHATD_REDIS_URL, CHATD_KAFKA_BROKERS,
 * any that is listed in needs, comma-separated) is not set. */
void harness_config(chatd_config *cfg, const char *needs);

/* Spawns a stub registered under name. */
rt_id stub_spawn(rt_runtime *rt, const char *name);

/* From now on the stub registered under name answers every message of type
 * with PROTO_T_ACK (same corr): ok when code is PROTO_ACK_NONE, else not ok
 * with that code; it still keeps the message. type 0 stops answering. (A
 * fanout confirms each stored batch it published: the store waits for it.) */
void stub_answer(const char *name, uint32_t type, proto_ack_code code);

/* Runs the loop until the stub registered under name (alive or not) has
 * received a message of type (0: any) not yet taken, or timeout_ms passes.
 * Returns true and fills *out (free with stub_msg_free) when one came. */
bool stub_wait(rt_runtime *rt, const char *name, uint32_t type, stub_msg *out,
               double timeout_ms);

/* Messages the stub registered under name has received and not yet taken. */
size_t stub_pending(const char *name);

void stub_msg_free(stub_msg *m);

/* Drops every kept message of every stub (rt_test_close does not). */
void stub_reset(void);

#endif
