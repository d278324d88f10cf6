/* The hash map: put, get, replace, delete (with backward shifts), growth,
 * iteration, u64 keys. */
#include "tests/runtime/rt_test.h"

#include <stdio.h>
#include <string.h>

#include "runtime/map.h"

static void
test_put_get_del(void **state)
{
    (void)state;
    rt_map m;
    rt_map_init(&m);
    assert_null(rt_map_get(&m, "a", 1));
    assert_null(rt_map_del(&m, "a", 1));
    int v[2000];
    char key[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "room-%d", i);
        assert_true(rt_map_put(&m, key, strlen(key), &v[i]));
    }
    assert_int_equal(m.len, 2000);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "room-%d", i);
        assert_ptr_equal(rt_map_get(&m, key, strlen(key)), &v[i]);
    }
    /* replace keeps one entry */
    assert_true(rt_map_put(&m, "room-7", 6, &v[0]));
    assert_ptr_equal(rt_map_get(&m, "room-7", 6), &v[0]);
    assert_int_equal(m.len, 2000);
    /* delete every other one: the rest stay reachable despite the shifts */
    for (int i = 0; i < 2000; i += 2) {
        snprintf(key, sizeof(key), "room-%d", i);
        assert_non_null(rt_map_del(&m, key, strlen(key)));
    }
    assert_int_equal(m.len, 1000);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "room-%d", i);
        void *got = rt_map_get(&m, key, strlen(key));
        if (i % 2 == 0)
            assert_null(got);
        else
            assert_non_null(got);
    }
    /* iteration sees each live entry once */
    size_t n = 0;
    rt_map_entry *e;
    for (size_t pos = 0; rt_map_next(&m, &pos, &e);)
        n++;
    assert_int_equal(n, 1000);
    rt_map_free(&m);
    rt_map_free(&m);
}

static void
test_u64_keys(void **state)
{
    (void)state;
    rt_map m = {0};
    int x, y;
    assert_true(rt_map_put_u64(&m, 1, &x));
    assert_true(rt_map_put_u64(&m, UINT64_MAX, &y));
    assert_ptr_equal(rt_map_get_u64(&m, 1), &x);
    assert_ptr_equal(rt_map_get_u64(&m, UINT64_MAX), &y);
    assert_null(rt_map_get_u64(&m, 2));
    assert_ptr_equal(rt_map_del_u64(&m, 1), &x);
    assert_null(rt_map_get_u64(&m, 1));
    /* an empty key is a key too */
    assert_true(rt_map_put(&m, "", 0, &x));
    assert_ptr_equal(rt_map_get(&m, "", 0), &x);
    rt_map_free(&m);
}

/* As the runtime's actor table uses it: sequential ids, removals, lookups
 * through the inline rt_map_get_u64 and the generic rt_map_get agreeing. */
static void
test_u64_many(void **state)
{
    (void)state;
    enum { N = 5000 };
    static int v[N + 1];
    rt_map m = {0};
    for (uint64_t id = 1; id <= N; id++)
        assert_true(rt_map_put_u64(&m, id, &v[id]));
    assert_int_equal(m.len, N);
    for (uint64_t id = 1; id <= N; id += 3)
        assert_ptr_equal(rt_map_del_u64(&m, id), &v[id]);
    for (uint64_t id = 1; id <= N; id++) {
        void *want = (id - 1) % 3 == 0 ? NULL : &v[id];
        assert_ptr_equal(rt_map_get_u64(&m, id), want);
        assert_ptr_equal(rt_map_get(&m, &id, sizeof(id)), want);
    }
    assert_null(rt_map_get_u64(&m, 0));
    assert_null(rt_map_get_u64(&m, N + 1));
    /* 8 bytes are 8 bytes: a string key of that size is the same key, and
     * a shorter key with the same leading bytes is not */
    uint64_t id = 2;
    char bytes[sizeof(id)];
    memcpy(bytes, &id, sizeof(id));
    assert_ptr_equal(rt_map_get(&m, bytes, sizeof(bytes)), &v[2]);
    assert_null(rt_map_get(&m, bytes, sizeof(bytes) - 1));
    int w;
    assert_true(rt_map_put(&m, "12345678", 8, &w));
    uint64_t k;
    memcpy(&k, "12345678", 8);
    assert_ptr_equal(rt_map_get_u64(&m, k), &w);
    rt_map_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_u64_keys),
        cmocka_unit_test(test_u64_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
