/*
 * An intrusive doubly-linked list: the element embeds an rt_link and the list
 * holds only pointers to links, so linking and unlinking never allocate and
 * an element can leave the list in O(1) from anywhere.
 *
 *     typedef struct req { ...; rt_link link; } req;
 *     rt_list reqs = RT_LIST_INIT;
 *     rt_list_push_back(&reqs, &r->link);
 *     for (rt_link *l = reqs.head; l; l = l->next) {
 *         req *r = RT_CONTAINER(l, req, link); ...
 *     }
 *     rt_list_remove(&reqs, &r->link);
 *
 * The list owns nothing: whoever frees an element unlinks it first. Removing
 * the current element while iterating is safe when the next pointer was read
 * before the removal. A link is in at most one list at a time.
 */
#ifndef CHATD_RUNTIME_LIST_H
#define CHATD_RUNTIME_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct rt_link {
    struct rt_link *prev, *next;
} rt_link;

typedef struct rt_list {
    rt_link *head, *tail;
} rt_list;

#define RT_LIST_INIT { NULL, NULL }

/* The element of type `type` whose member `member` is the link `ptr`. */
#define RT_CONTAINER(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline bool
rt_list_empty(const rt_list *l)
{
    return l->head == NULL;
}

static inline void
rt_list_push_back(rt_list *l, rt_link *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static inline void
rt_list_push_front(rt_list *l, rt_link *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Unlinks n, which must be in l; n's pointers are cleared. */
static inline void
rt_list_remove(rt_list *l, rt_link *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* The first link, unlinked; NULL when the list is empty. */
static inline rt_link *
rt_list_pop_front(rt_list *l)
{
    rt_link *n = l->head;
    if (n)
        rt_list_remove(l, n);
    return n;
}

#endif
