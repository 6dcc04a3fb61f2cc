/*
 * engine/version.c - sluice's version and the allocator it runs on.
 *
 * sl_allocator() asks jemalloc itself through mallctl("version"), which also
 * keeps a reference to a jemalloc symbol in every binary (Debian's linker
 * drops libraries nobody references under --as-needed). It reports jemalloc
 * as the allocator only when memory handed out by malloc() is owned by it:
 * stats.allocated must grow across a malloc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/pipeline.h"
#ifdef SLUICE_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

const char *sl_version(void)
{
    return SLUICE_VERSION;
}

#ifdef SLUICE_HAVE_JEMALLOC
static size_t jemalloc_allocated(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch), allocated = 0, asz = sizeof(allocated);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    if (mallctl("stats.allocated", &allocated, &asz, NULL, 0) != 0) return 0;
    return allocated;
}
#endif

const char *sl_allocator(void)
{
#ifdef SLUICE_HAVE_JEMALLOC
    static char text[128];
    const char *v = NULL;
    size_t sz = sizeof(v);
    if (mallctl("version", &v, &sz, NULL, 0) != 0 || !v) return "libc (jemalloc not linked)";
    size_t before = jemalloc_allocated();
    void *volatile probe = malloc(1 << 20);
    size_t after = jemalloc_allocated();
    free(probe);
    snprintf(text, sizeof(text), "jemalloc %s%s", v,
             after > before ? "" : " (linked, but malloc is not jemalloc's)");
    return text;
#else
    return "libc (sanitizer build)";
#endif
}
