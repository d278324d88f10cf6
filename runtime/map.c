#include "runtime/map.h"

#include <stdlib.h>
#include <string.h>

void
rt_map_init(rt_map *m)
{
    *m = (rt_map){0};
}

void
rt_map_free(rt_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    *m = (rt_map){0};
}

/* 8-byte keys (the u64 helpers: actor ids, connection ids) hash by
 * rt_map_hash_u64 alone, which makes their hashes unique (map.h); other keys
 * by FNV-1a, then the same mix so that the low bits mix well. */
static uint64_t
hash_bytes(const void *key, size_t len)
{
    if (len == sizeof(uint64_t)) {
        uint64_t k;
        memcpy(&k, key, sizeof(k));
        return rt_map_hash_u64(k);
    }
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return rt_map_hash_u64(h);
}

/* An 8-byte key is equal when its hash is (the mix is a bijection): the
 * lookup then never reads the key's separate allocation. */
static bool
same_key(const rt_map_entry *e, const void *key, size_t len, uint64_t h)
{
    if (e->hash != h || e->key_len != len)
        return false;
    return len == sizeof(uint64_t) || memcmp(e->key, key, len) == 0;
}

static size_t
find(const rt_map *m, const void *key, size_t len, uint64_t h, bool *found)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const rt_map_entry *e = &m->slots[i];
        if (!e->key) {
            *found = false;
            return i;
        }
        if (same_key(e, key, len, h)) {
            *found = true;
            return i;
        }
    }
}

void *
rt_map_get(const rt_map *m, const void *key, size_t len)
{
    if (!m->len)
        return NULL;
    bool found;
    size_t i = find(m, key, len, hash_bytes(key, len), &found);
    return found ? m->slots[i].value : NULL;
}

static bool
grow(rt_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 8;
    rt_map_entry *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < m->cap; i++) {
        rt_map_entry *e = &m->slots[i];
        if (!e->key)
            continue;
        size_t j = e->hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

bool
rt_map_put(rt_map *m, const void *key, size_t len, void *value)
{
    if ((m->len + 1) * 4 > m->cap * 3 && !grow(m))
        return false;
    uint64_t h = hash_bytes(key, len);
    bool found;
    size_t i = find(m, key, len, h, &found);
    if (found) {
        m->slots[i].value = value;
        return true;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    if (len)
        memcpy(copy, key, len);
    m->slots[i] = (rt_map_entry){ copy, len, h, value };
    m->len++;
    return true;
}

static void
delete_at(rt_map *m, size_t i)
{
    size_t mask = m->cap - 1;
    free(m->slots[i].key);
    m->slots[i] = (rt_map_entry){0};
    m->len--;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            m->slots[j] = (rt_map_entry){0};
            i = j;
        }
    }
}

void *
rt_map_del(rt_map *m, const void *key, size_t len)
{
    if (!m->len)
        return NULL;
    bool found;
    size_t i = find(m, key, len, hash_bytes(key, len), &found);
    if (!found)
        return NULL;
    void *v = m->slots[i].value;
    delete_at(m, i);
    return v;
}

bool
rt_map_next(const rt_map *m, size_t *pos, rt_map_entry **e)
{
    while (*pos < m->cap) {
        rt_map_entry *s = &m->slots[(*pos)++];
        if (s->key) {
            *e = s;
            return true;
        }
    }
    return false;
}
