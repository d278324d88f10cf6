/*
 * Growing an array in place: the one helper behind every growable buffer and
 * table of the program, so the doubling and the overflow checks are written
 * once.
 *
 *     if (!rt_grow((void **)&st->rooms, &st->rooms_cap, st->nrooms + 1,
 *                  sizeof(*st->rooms)))
 *         return out_of_memory;
 *     st->rooms[st->nrooms++] = r;
 */
#ifndef CHATD_RUNTIME_GROW_H
#define CHATD_RUNTIME_GROW_H

#include <stdbool.h>
#include <stddef.h>

/* Makes *arr hold at least `need` elements of `elem` bytes, doubling *cap
 * (from at least 4) and reallocating when it is smaller. Returns false when
 * out of memory or when the size would overflow; then *arr and *cap are
 * unchanged and still valid. Elements past the old capacity are
 * uninitialised. */
bool rt_grow(void **arr, size_t *cap, size_t need, size_t elem);

#endif
