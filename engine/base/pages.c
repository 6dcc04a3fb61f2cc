/*
 * engine/base/pages.c - see pages.h. One anonymous private mapping per
 * allocation, populated at once (MAP_POPULATE, Linux); where that flag does
 * not exist the pages are made as they are touched, which is only slower.
 */
#include "engine/base/pages.h"
#include <sys/mman.h>

#ifndef MAP_POPULATE
#define MAP_POPULATE 0
#endif

void *sli_pages_alloc(size_t n)
{
    if (!n) n = 1;
    void *p =
        mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void sli_pages_free(void *p, size_t n)
{
    if (p) munmap(p, n ? n : 1);
}
