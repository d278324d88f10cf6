#include "runtime/grow.h"

#include <stdint.h>
#include <stdlib.h>

bool
rt_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (elem == 0)
        return false;
    if (need <= *cap)
        return true;
    size_t max = SIZE_MAX / elem;
    if (need > max)
        return false;
    size_t n = *cap >= 4 ? *cap : 4;
    while (n < need)
        n = n > max / 2 ? max : n * 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = n;
    return true;
}
