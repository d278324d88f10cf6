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

/* FNV-1a, then a finaliser so that the low bits mix well. */
static uint64_t
hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
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
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) {
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
