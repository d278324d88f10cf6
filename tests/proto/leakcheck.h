/*
 * Per-test leak check for the proto tests. Include it in exactly one file of
 * a test program.
 *
 * Outside ASan, this file interposes malloc/calloc/realloc/free and counts the
 * live blocks; a cmocka setup remembers the count and the teardown fails the
 * test when it changed. (glibc's mallinfo cannot do this: blocks parked in
 * its per-thread cache count as in use.) Under ASan, which owns the
 * allocator, the count stays 0 and LeakSanitizer checks the whole program at
 * exit instead.
 *
 *     LEAK_TEST(test_x)  ==  cmocka_unit_test_setup_teardown(test_x, leak_setup, leak_teardown)
 */
#ifndef CHATD_TESTS_LEAKCHECK_H
#define CHATD_TESTS_LEAKCHECK_H

#include <stdio.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define LEAK_COUNTING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEAK_COUNTING 0
#endif
#endif
#ifndef LEAK_COUNTING
#define LEAK_COUNTING 1
#endif

static long leak_live_blocks;

#if LEAK_COUNTING
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

void *
malloc(size_t n)
{
    void *p = __libc_malloc(n);
    if (p)
        leak_live_blocks++;
    return p;
}

void *
calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    if (p)
        leak_live_blocks++;
    return p;
}

void *
realloc(void *old, size_t n)
{
    void *p = __libc_realloc(old, n);
    if (!old && p)
        leak_live_blocks++;
    else if (old && !p && n == 0)
        leak_live_blocks--;
    return p;
}

void
free(void *p)
{
    if (p)
        leak_live_blocks--;
    __libc_free(p);
}
#endif

static inline int
leak_setup(void **state)
{
    *state = (void *)leak_live_blocks;
    return 0;
}

static inline int
leak_teardown(void **state)
{
    long before = (long)*state;
    if (leak_live_blocks != before) {
        fprintf(stderr, "leak: %ld heap blocks live before the test, %ld after\n",
                before, leak_live_blocks);
        return -1;
    }
    return 0;
}

#define LEAK_TEST(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

#endif
