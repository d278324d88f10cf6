#include "tests/actors/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STUB_MAX 8
#define STUB_QUEUE 4096

typedef struct stub_box {
    char name[32];
    stub_msg q[STUB_QUEUE];
    size_t head, len;
    uint32_t answer_type;       /* stub_answer */
    proto_ack_code answer_code;
} stub_box;

static stub_box boxes[STUB_MAX];
static size_t nboxes;

void
harness_config(chatd_config *cfg, const char *needs)
{
    chatd_config_defaults(cfg);
    char *argv[] = { "test", NULL };
    assert_int_equal(chatd_config_parse(cfg, 1, argv), 0);
    char list[256];
    snprintf(list, sizeof(list), "%s", needs ? needs : "");
    for (char *save = NULL, *v = strtok_r(list, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
        if (!getenv(v)) {
            print_error("%s is not set: run the actor tests through scripts/test, which "
                        "starts the services (scripts/services.sh)\n", v);
            fail();
        }
    }
}

static stub_box *
box_for(const char *name, bool create)
{
    for (size_t i = 0; i < nboxes; i++)
        if (strcmp(boxes[i].name, name) == 0)
            return &boxes[i];
    if (!create)
        return NULL;
    assert_true(nboxes < STUB_MAX);
    stub_box *b = &boxes[nboxes++];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    return b;
}

static int
stub_handle(rt_actor *self, const proto_env *m)
{
    stub_box *b = box_for(rt_actor_name(self), true);
    assert_true(b->len < STUB_QUEUE);
    stub_msg *s = &b->q[(b->head + b->len++) % STUB_QUEUE];
    s->type = m->type;
    s->from = m->from;
    s->corr = m->corr;
    s->len = m->payload_len;
    s->payload = malloc(m->payload_len ? m->payload_len : 1);
    assert_non_null(s->payload);
    if (m->payload_len)
        memcpy(s->payload, m->payload, m->payload_len);
    if (b->answer_type && m->type == b->answer_type)
        chatd_reply_ack(self, m->from, m->corr, b->answer_code, "stub says no");
    return RT_OK;
}

void
stub_answer(const char *name, uint32_t type, proto_ack_code code)
{
    stub_box *b = box_for(name, true);
    b->answer_type = type;
    b->answer_code = code;
}

static const rt_actor_spec stub_spec = {
    .name = "stub",
    .handle = stub_handle,
    .mailbox_cap = 100000,
};

rt_id
stub_spawn(rt_runtime *rt, const char *name)
{
    box_for(name, true);
    rt_id id = rt_spawn(rt, 0, &stub_spec, NULL, name, NULL);
    assert_true(id != 0);
    return id;
}

typedef struct wait_ctx {
    const char *name;
    uint32_t type;
    stub_msg *out;
} wait_ctx;

static bool
take(void *ud)
{
    wait_ctx *w = ud;
    stub_box *b = box_for(w->name, false);
    if (!b)
        return false;
    for (size_t i = 0; i < b->len; i++) {
        stub_msg *s = &b->q[(b->head + i) % STUB_QUEUE];
        if (w->type && s->type != w->type)
            continue;
        *w->out = *s;
        /* close the gap: shift the later ones down by one */
        for (size_t j = i; j + 1 < b->len; j++)
            b->q[(b->head + j) % STUB_QUEUE] = b->q[(b->head + j + 1) % STUB_QUEUE];
        b->len--;
        return true;
    }
    return false;
}

bool
stub_wait(rt_runtime *rt, const char *name, uint32_t type, stub_msg *out, double timeout_ms)
{
    wait_ctx w = { name, type, out };
    memset(out, 0, sizeof(*out));
    return rt_test_run_until(rt, take, &w, timeout_ms);
}

size_t
stub_pending(const char *name)
{
    stub_box *b = box_for(name, false);
    return b ? b->len : 0;
}

void
stub_msg_free(stub_msg *m)
{
    free(m->payload);
    memset(m, 0, sizeof(*m));
}

void
stub_reset(void)
{
    for (size_t i = 0; i < nboxes; i++) {
        stub_box *b = &boxes[i];
        for (size_t k = 0; k < b->len; k++)
            free(b->q[(b->head + k) % STUB_QUEUE].payload);
    }
    nboxes = 0;
}
