/*
 * engine/base/pages.h - zeroed memory whose pages are all made at once
 * (private header; not part of the public API).
 *
 * A fresh page costs a fault the first time it is touched, and a fault is
 * expensive where sluice often runs: ~13 us in a virtual machine here, so
 * that the 320 pages of a table touched one by one cost ~4 ms, while one
 * mmap with MAP_POPULATE makes them in ~0.4 ms. For tables of a fixed size
 * (hundreds of KB to a few MB) that will be filled anyway, made once per
 * pipeline or tracer: trace points' open spans, the tracer's queue of their
 * spans. Not for anything made per record or per batch.
 *
 * Thread-safe; the memory is the caller's until sli_pages_free.
 */
#ifndef SLUICE_ENGINE_BASE_PAGES_H
#define SLUICE_ENGINE_BASE_PAGES_H

#include <stddef.h>

/* n zeroed bytes, page-aligned, every page present. NULL: out of memory. */
void *sli_pages_alloc(size_t n);

/* Give back what sli_pages_alloc(n) returned (NULL accepted). */
void sli_pages_free(void *p, size_t n);

#endif
