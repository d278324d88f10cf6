#include "runtime/mailbox.h"

#include <stdlib.h>

rt_msg *
rt_msg_new(const proto_env *env)
{
    if (env->payload_len > PROTO_ENV_PAYLOAD_MAX)
        return NULL;
    size_t cap = PROTO_ENV_OVERHEAD + env->payload_len;
    rt_msg *m = malloc(sizeof(*m) + cap);
    if (!m)
        return NULL;
    m->next = NULL;
    if (proto_env_encode(env, m->data, cap, &m->len) != PROTO_OK) {
        free(m);
        return NULL;
    }
    return m;
}

void
rt_msg_free(rt_msg *m)
{
    free(m);
}

void
rt_mailbox_init(rt_mailbox *mb, size_t cap, rt_overflow policy)
{
    *mb = (rt_mailbox){ .cap = cap ? cap : 1, .policy = policy };
}

static void
append(rt_mailbox *mb, rt_msg *m)
{
    m->next = NULL;
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    mb->depth++;
    mb->pushed++;
    if (mb->depth > mb->high_water)
        mb->high_water = mb->depth;
}

rt_push_result
rt_mailbox_push(rt_mailbox *mb, rt_msg *m)
{
    if (mb->depth < mb->cap) {
        append(mb, m);
        return RT_PUSH_OK;
    }
    mb->overflows++;
    if (mb->policy == RT_OVERFLOW_REJECT)
        return RT_PUSH_REFUSED;
    rt_msg_free(rt_mailbox_pop(mb));
    mb->shed++;
    append(mb, m);
    return RT_PUSH_SHED;
}

void
rt_mailbox_push_force(rt_mailbox *mb, rt_msg *m)
{
    append(mb, m);
}

rt_msg *
rt_mailbox_pop(rt_mailbox *mb)
{
    rt_msg *m = mb->head;
    if (!m)
        return NULL;
    mb->head = m->next;
    if (!mb->head)
        mb->tail = NULL;
    mb->depth--;
    m->next = NULL;
    return m;
}

size_t
rt_mailbox_clear(rt_mailbox *mb)
{
    size_t n = 0;
    rt_msg *m;
    while ((m = rt_mailbox_pop(mb)) != NULL) {
        rt_msg_free(m);
        n++;
    }
    return n;
}
