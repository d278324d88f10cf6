/* The small containers: rt_grow's doubling, overflow refusal and contents
 * kept; the intrusive list's order through pushes and removals anywhere. */
#include "tests/runtime/rt_test.h"

#include <stdint.h>
#include <stdlib.h>

#include "runtime/grow.h"
#include "runtime/list.h"

static void
test_grow_keeps_contents(void **state)
{
    (void)state;
    int *a = NULL;
    size_t cap = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(rt_grow((void **)&a, &cap, (size_t)i + 1, sizeof(*a)));
        assert_true(cap >= (size_t)i + 1);
        a[i] = i;
    }
    assert_true(cap >= 1000 && cap <= 2048);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(a[i], i);
    size_t before = cap;
    assert_true(rt_grow((void **)&a, &cap, 10, sizeof(*a)));
    assert_int_equal(cap, before);          /* never shrinks */
    free(a);
}

static void
test_grow_refuses_overflow(void **state)
{
    (void)state;
    char *a = NULL;
    size_t cap = 0;
    assert_true(rt_grow((void **)&a, &cap, 3, 1));
    assert_int_equal(cap, 4);
    a[0] = 'x';
    assert_false(rt_grow((void **)&a, &cap, SIZE_MAX / 8 + 1, 8));
    assert_false(rt_grow((void **)&a, &cap, 1, 0));
    assert_int_equal(cap, 4);               /* unchanged and still valid */
    assert_int_equal(a[0], 'x');
    free(a);
}

typedef struct item {
    int v;
    rt_link link;
} item;

static void
expect(const rt_list *l, const int *want, size_t n)
{
    size_t i = 0;
    for (rt_link *k = l->head; k; k = k->next, i++) {
        assert_true(i < n);
        assert_int_equal(RT_CONTAINER(k, item, link)->v, want[i]);
        if (!k->next)
            assert_ptr_equal(l->tail, k);
    }
    assert_int_equal(i, n);
    i = n;
    for (rt_link *k = l->tail; k; k = k->prev)
        assert_int_equal(RT_CONTAINER(k, item, link)->v, want[--i]);
    assert_int_equal(i, 0);
}

static void
test_list_order(void **state)
{
    (void)state;
    item it[5];
    for (int i = 0; i < 5; i++)
        it[i].v = i;
    rt_list l = RT_LIST_INIT;
    assert_true(rt_list_empty(&l));
    assert_null(rt_list_pop_front(&l));
    rt_list_push_back(&l, &it[1].link);
    rt_list_push_back(&l, &it[2].link);
    rt_list_push_front(&l, &it[0].link);
    rt_list_push_back(&l, &it[3].link);
    rt_list_push_back(&l, &it[4].link);
    expect(&l, (int[]){ 0, 1, 2, 3, 4 }, 5);
    rt_list_remove(&l, &it[2].link);        /* middle */
    expect(&l, (int[]){ 0, 1, 3, 4 }, 4);
    rt_list_remove(&l, &it[4].link);        /* tail */
    expect(&l, (int[]){ 0, 1, 3 }, 3);
    assert_ptr_equal(rt_list_pop_front(&l), &it[0].link);   /* head */
    expect(&l, (int[]){ 1, 3 }, 2);
    rt_list_remove(&l, &it[1].link);
    rt_list_remove(&l, &it[3].link);
    assert_true(rt_list_empty(&l));
    assert_null(l.tail);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_keeps_contents),
        cmocka_unit_test(test_grow_refuses_overflow),
        cmocka_unit_test(test_list_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
