#include "tests/runtime/rt_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

/* --- journal ----------------------------------------------------------- */

#define JOURNAL_MAX 4096
static char *journal[JOURNAL_MAX];
static size_t journal_n;

void
journal_reset(void)
{
    for (size_t i = 0; i < journal_n; i++)
        free(journal[i]);
    journal_n = 0;
}

void
journal_add(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    assert_true(journal_n < JOURNAL_MAX);
    journal[journal_n] = strdup(line);
    assert_non_null(journal[journal_n]);
    journal_n++;
}

size_t
journal_len(void)
{
    return journal_n;
}

const char *
journal_at(size_t i)
{
    return i < journal_n ? journal[i] : NULL;
}

int
journal_find(const char *line, size_t from)
{
    for (size_t i = from; i < journal_n; i++)
        if (strcmp(journal[i], line) == 0)
            return (int)i;
    return -1;
}

void
journal_print(void)
{
    for (size_t i = 0; i < journal_n; i++)
        print_message("  journal[%zu] %s\n", i, journal[i]);
}

void
journal_expect(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    size_t i = 0;
    bool ok = true;
    for (const char *want = first; want; want = va_arg(ap, const char *), i++) {
        if (i >= journal_n || strcmp(journal[i], want) != 0) {
            print_error("journal[%zu]: want \"%s\", have \"%s\"\n", i, want,
                        i < journal_n ? journal[i] : "(end)");
            ok = false;
            break;
        }
    }
    va_end(ap);
    if (ok && i != journal_n) {
        print_error("journal has %zu lines, want %zu\n", journal_n, i);
        ok = false;
    }
    if (!ok) {
        journal_print();
        fail();
    }
}

/* --- probe actor --------------------------------------------------------- */

static int
probe_init(rt_actor *self, const void *arg)
{
    probe_state *st = rt_state(self);
    st->cfg = (probe_cfg *)arg;
    journal_add("init %s", rt_actor_name(self));
    if (st->cfg && st->cfg->fail_init) {
        if (st->cfg->fail_init > 0)
            st->cfg->fail_init--;
        st->cfg->fails_done++;
        return RT_ERR;
    }
    return RT_OK;
}

static int
probe_handle(rt_actor *self, const proto_env *msg)
{
    probe_state *st = rt_state(self);
    st->handled++;
    switch (msg->type) {
    case PROBE_PING:
        return RT_OK;
    case PROBE_CRASH:
        return RT_ERR;
    case PROBE_STOP:
        return RT_STOP;
    case PROBE_ECHO:
        rt_send(rt_of(self), rt_self(self), msg->from, PROBE_PING, msg->corr, NULL, 0);
        return RT_OK;
    case PROBE_LOG:
        journal_add("msg %s %.*s", rt_actor_name(self), (int)msg->payload_len,
                    (const char *)msg->payload);
        return RT_OK;
    case PROBE_SHUTDOWN_DONE:
        rt_exit(self, RT_EXIT_SHUTDOWN, "drained");
        return RT_OK;
    default:
        return RT_OK;
    }
}

static int
probe_shutdown(rt_actor *self)
{
    probe_state *st = rt_state(self);
    journal_add("shutdown %s", rt_actor_name(self));
    int ms = st->cfg ? st->cfg->shutdown_ms : 0;
    if (ms == 0)
        return RT_OK;
    if (ms > 0)
        rt_send_after(self, ms, PROBE_SHUTDOWN_DONE, 0, NULL, 0);
    return RT_PENDING;
}

static void
probe_terminate(rt_actor *self, rt_exit_kind kind)
{
    journal_add("term %s %s", rt_actor_name(self), rt_exit_kind_name(kind));
}

const rt_actor_spec probe_spec = {
    .name = "probe",
    .state_size = sizeof(probe_state),
    .init = probe_init,
    .handle = probe_handle,
    .terminate = probe_terminate,
    .shutdown = probe_shutdown,
};

/* --- loop ------------------------------------------------------------------ */

static struct ev_loop *test_loop;

rt_runtime *
rt_test_open(const char *faults)
{
    rt_log_set_level(getenv("CHATD_TEST_LOG") ? RT_LOG_DEBUG : RT_LOG_OFF);
    journal_reset();
    test_loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(test_loop);
    char err[256] = "";
    rt_config cfg = { .loop = test_loop, .faults = faults };
    rt_runtime *rt = rt_create(&cfg, err, sizeof(err));
    if (!rt)
        print_error("rt_create: %s\n", err);
    assert_non_null(rt);
    return rt;
}

void
rt_test_close(rt_runtime *rt)
{
    rt_destroy(rt);
    /* Nothing of the runtime may be left on the loop: a non-blocking run
     * reports whether any watcher is still active. */
    assert_int_equal(ev_run(test_loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(test_loop);
    test_loop = NULL;
    journal_reset();
}

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

bool
rt_test_run_until(rt_runtime *rt, bool (*pred)(void *ud), void *ud, double timeout_ms)
{
    struct ev_loop *loop = rt_loop(rt);
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.001, 0.001);
    ev_timer_start(loop, &tick);
    ev_now_update(loop);
    double end = ev_now(loop) + timeout_ms / 1e3;
    bool ok = false;
    for (;;) {
        if (pred && pred(ud)) {
            ok = true;
            break;
        }
        ev_now_update(loop);
        if (ev_now(loop) >= end)
            break;
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &tick);
    return ok;
}

void
rt_test_run_for(rt_runtime *rt, double ms)
{
    rt_test_run_until(rt, NULL, NULL, ms);
}

typedef struct wait_ctx {
    rt_runtime *rt;
    const char *name;
    rt_id old;
} wait_ctx;

static bool
restarted(void *ud)
{
    wait_ctx *w = ud;
    rt_id id = rt_whereis(w->rt, w->name);
    return id && id != w->old && rt_alive(w->rt, id);
}

rt_id
rt_test_wait_restart(rt_runtime *rt, const char *name, rt_id old, double timeout_ms)
{
    wait_ctx w = { rt, name, old };
    return rt_test_run_until(rt, restarted, &w, timeout_ms) ? rt_whereis(rt, name) : 0;
}

static bool
dead(void *ud)
{
    wait_ctx *w = ud;
    return !rt_alive(w->rt, w->old);
}

bool
rt_test_wait_dead(rt_runtime *rt, rt_id id, double timeout_ms)
{
    wait_ctx w = { rt, NULL, id };
    return rt_test_run_until(rt, dead, &w, timeout_ms);
}

int
rt_test_send(rt_runtime *rt, const char *to, uint32_t type)
{
    return rt_send_named(rt, 0, to, type, 0, NULL, 0);
}
