/*
 * A hash map from byte-string keys (copied into the map) to pointers, with
 * open addressing and backward-shift deletion. For actors' private indexes:
 * rooms by name, connections and requests by id (use rt_map_*_u64).
 *
 * Values are not owned: the map never frees them. Iteration order is
 * unspecified; do not insert or delete while iterating (a backward shift
 * would move an entry behind the iteration, which would then skip it):
 * collect what to delete first, or free the values and then the whole map.
 */
#ifndef CHATD_RUNTIME_MAP_H
#define CHATD_RUNTIME_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_map_entry {
    char *key;          /* NULL: empty slot */
    size_t key_len;
    uint64_t hash;
    void *value;
} rt_map_entry;

typedef struct rt_map {
    rt_map_entry *slots;
    size_t cap;         /* 0 or a power of two */
    size_t len;
} rt_map;

/* An empty map needs no allocation: a zeroed rt_map is valid. */
void rt_map_init(rt_map *m);

/* Frees the map's memory (keys and slots), not the values. */
void rt_map_free(rt_map *m);

/* The value stored under the key, or NULL. */
void *rt_map_get(const rt_map *m, const void *key, size_t len);

/* Stores value under the key, replacing what was there. Returns false when
 * out of memory (the map is unchanged). */
bool rt_map_put(rt_map *m, const void *key, size_t len, void *value);

/* Removes the key; returns its value, or NULL when absent. */
void *rt_map_del(rt_map *m, const void *key, size_t len);

/* The hash of an 8-byte key: MurmurHash3's finaliser, a bijection on 64
 * bits (each step is invertible), so two 8-byte keys are equal exactly when
 * their hashes are and a lookup never reads the key's copy. */
static inline uint64_t
rt_map_hash_u64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* rt_map_get for an 8-byte key, inline: the runtime's actor table looks up
 * every send's receiver with it. */
static inline void *
rt_map_get_u64(const rt_map *m, uint64_t k)
{
    if (!m->len)
        return NULL;
    uint64_t h = rt_map_hash_u64(k);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const rt_map_entry *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->key_len == sizeof(k))
            return e->value;
    }
}

static inline bool
rt_map_put_u64(rt_map *m, uint64_t k, void *value)
{
    return rt_map_put(m, &k, sizeof(k), value);
}

static inline void *
rt_map_del_u64(rt_map *m, uint64_t k)
{
    return rt_map_del(m, &k, sizeof(k));
}

/* Iteration: for (size_t i = 0; rt_map_next(m, &i, &e);) ... */
bool rt_map_next(const rt_map *m, size_t *pos, rt_map_entry **e);

#endif
