/*
 * Helpers shared by the runtime tests.
 *
 * A test makes its own loop and runtime with rt_test_open(), drives the loop
 * with rt_test_run_until() (bounded in time), and ends with rt_test_close(),
 * which destroys the runtime and proves the loop has no active watcher left.
 * Leaks are found by ASan in `scons mode=asan test`.
 *
 * The probe actor records what happens to it in a journal of short lines
 * ("init a", "term b crash", ...) that tests compare against the order they
 * expect.
 */
#ifndef CHATD_TESTS_RT_TEST_H
#define CHATD_TESTS_RT_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "runtime/log.h"
#include "runtime/rt.h"
#include "runtime/sup.h"

/* Message types the probe understands: in the range the runtime reserves for
 * tests (rt.h), so they never collide with the types of the program whose
 * actor tests link the probe too. */
enum {
    PROBE_PING = RT_T_TEST_BASE,    /* counted in handled */
    PROBE_CRASH,            /* handler returns RT_ERR */
    PROBE_STOP,             /* handler returns RT_STOP */
    PROBE_ECHO,             /* sends PROBE_PING back to the sender */
    PROBE_LOG,              /* journals "msg NAME PAYLOAD" (payload as text) */
    PROBE_SHUTDOWN_DONE,    /* the probe's own timer: a delayed shutdown is over */
};
_Static_assert(PROBE_PING >= RT_T_TEST_BASE, "the probe's types must stay in the test range");

typedef struct probe_cfg {
    int fail_init;          /* fail this many inits, then succeed (-1: always) */
    int shutdown_ms;        /* 0: stop at once; > 0: after that long; -1: never */
    int fails_done;         /* counted by the probe */
} probe_cfg;

extern const rt_actor_spec probe_spec;

typedef struct probe_state {
    probe_cfg *cfg;
    int handled;
} probe_state;

/* --- journal --- */
void journal_reset(void);
void journal_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
size_t journal_len(void);
const char *journal_at(size_t i);
/* Index of the first line equal to line at or after from, or -1. */
int journal_find(const char *line, size_t from);
/* Asserts the journal holds exactly these lines (NULL-terminated list). */
void journal_expect(const char *first, ...);
void journal_print(void);

/* --- loop --- */
rt_runtime *rt_test_open(const char *faults);
void rt_test_close(rt_runtime *rt);

/* Runs the loop until pred(ud) is true or timeout_ms passes; returns pred's
 * last value. pred may be NULL to just run for timeout_ms. */
bool rt_test_run_until(rt_runtime *rt, bool (*pred)(void *ud), void *ud, double timeout_ms);

/* Runs the loop for ms milliseconds. */
void rt_test_run_for(rt_runtime *rt, double ms);

/* Runs until the actor registered under name is alive with an id other than
 * old (0: any). Returns its id, or 0 on timeout. */
rt_id rt_test_wait_restart(rt_runtime *rt, const char *name, rt_id old, double timeout_ms);

/* Runs until id is not alive. */
bool rt_test_wait_dead(rt_runtime *rt, rt_id id, double timeout_ms);

/* Sends a payload-less message from outside (from 0). */
int rt_test_send(rt_runtime *rt, const char *to, uint32_t type);

#endif
