/*
 * adapters/pg, the data formats (see pg.h): binary int8 columns of results,
 * and array parameters in PostgreSQL's text format.
 */
#include "adapters/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/grow.h"

bool
pg_col_i64(const PGresult *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return false;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    *out = (int64_t)v;
    return true;
}

/* --- array literals ----------------------------------------------------------- */

static void
put(pg_array *a, const char *s, size_t n)
{
    if (a->failed)
        return;
    if (a->len + n + 1 < a->len ||
        !rt_grow((void **)&a->text, &a->cap, a->len + n + 1, 1)) {
        a->failed = true;
        return;
    }
    memcpy(a->text + a->len, s, n);
    a->len += n;
    a->text[a->len] = '\0';
}

static void
put_char(pg_array *a, char ch)
{
    put(a, &ch, 1);
}

static void
next_elem(pg_array *a)
{
    if (a->count++)
        put_char(a, ',');
}

void
pg_array_begin(pg_array *a)
{
    a->len = 0;
    a->count = 0;
    a->failed = false;
    put_char(a, '{');
}

/* A double-quoted element: '"' and '\' get a backslash. */
void
pg_array_add_text(pg_array *a, const char *s, size_t n)
{
    next_elem(a);
    put_char(a, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            put(a, s + start, i - start);
            put_char(a, '\\');
            start = i;
        }
    }
    put(a, s + start, n - start);
    put_char(a, '"');
}

/* bytea in hex, quoted: "\\x4142" (the element's backslash escaped). */
void
pg_array_add_bytea(pg_array *a, const void *bytes, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = bytes;
    next_elem(a);
    put(a, "\"\\\\x", 4);
    char chunk[256];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        chunk[k++] = hex[s[i] >> 4];
        chunk[k++] = hex[s[i] & 15];
        if (k == sizeof(chunk)) {
            put(a, chunk, k);
            k = 0;
        }
    }
    put(a, chunk, k);
    put_char(a, '"');
}

void
pg_array_add_int64(pg_array *a, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", (long long)v);
    next_elem(a);
    put(a, num, (size_t)n);
}

const char *
pg_array_end(pg_array *a)
{
    put_char(a, '}');
    return a->failed ? NULL : a->text;
}

void
pg_array_free(pg_array *a)
{
    free(a->text);
    a->text = NULL;
    a->len = a->cap = a->count = 0;
    a->failed = false;
}
