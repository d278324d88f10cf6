/*
 * Mailboxes: bounded FIFO queues of encoded envelopes.
 *
 * A message (rt_msg) is one allocation holding one msgpack-encoded envelope
 * (proto/envelope.h). Whoever holds an rt_msg owns it: pushing it into a
 * mailbox hands it to the mailbox, popping hands it to the caller, who frees
 * it with rt_msg_free.
 *
 * A mailbox holds at most cap messages. What happens to one more is its
 * policy: RT_OVERFLOW_REJECT refuses the new message (the sender sees
 * RT_EFULL), RT_OVERFLOW_DROP_OLDEST frees the oldest queued message to make
 * room. Either way the overflow is counted. Nothing here blocks and nothing
 * grows past cap, except rt_mailbox_push_force, which is for messages an actor
 * sends itself (timers) and system signals, bounded by what their senders do.
 *
 * Single-threaded: a mailbox is used from its runtime's loop thread only.
 */
#ifndef CHATD_RUNTIME_MAILBOX_H
#define CHATD_RUNTIME_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.h"

typedef struct rt_msg {
    struct rt_msg *next;
    size_t len;
    uint8_t data[];     /* the encoded envelope */
} rt_msg;

/* Encodes env into a new message. Returns NULL when out of memory or when the
 * payload is over PROTO_ENV_PAYLOAD_MAX. */
rt_msg *rt_msg_new(const proto_env *env);

/* Frees m; NULL is a no-op. */
void rt_msg_free(rt_msg *m);

typedef enum rt_overflow {
    RT_OVERFLOW_REJECT = 0,
    RT_OVERFLOW_DROP_OLDEST,
} rt_overflow;

typedef struct rt_mailbox {
    rt_msg *head;
    rt_msg *tail;
    size_t depth;
    size_t cap;
    rt_overflow policy;
    /* counters */
    size_t high_water;          /* largest depth seen */
    uint64_t pushed;            /* messages accepted */
    uint64_t overflows;         /* pushes that found the mailbox full */
    uint64_t shed;              /* messages freed by DROP_OLDEST */
} rt_mailbox;

/* Initialises an empty mailbox; cap of 0 means 1. */
void rt_mailbox_init(rt_mailbox *mb, size_t cap, rt_overflow policy);

typedef enum rt_push_result {
    RT_PUSH_OK = 0,
    RT_PUSH_SHED,       /* accepted; the oldest message was freed */
    RT_PUSH_REFUSED,    /* full under REJECT: m was NOT taken, the caller owns it */
} rt_push_result;

/* Appends m per the mailbox's policy (see rt_push_result for who owns m). */
rt_push_result rt_mailbox_push(rt_mailbox *mb, rt_msg *m);

/* Appends m whatever the depth; always takes m. */
void rt_mailbox_push_force(rt_mailbox *mb, rt_msg *m);

/* Removes and returns the oldest message, or NULL when empty. */
rt_msg *rt_mailbox_pop(rt_mailbox *mb);

/* The oldest message without removing it, or NULL. */
static inline rt_msg *
rt_mailbox_peek(const rt_mailbox *mb)
{
    return mb->head;
}

/* Frees every queued message; returns how many there were. Counters stay. */
size_t rt_mailbox_clear(rt_mailbox *mb);

#endif
