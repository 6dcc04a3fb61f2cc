/*
 * ops/page.h - the status page, built into the library (internal).
 *
 * ops/status.html is turned into bytes at build time by cmake/embed.cmake
 * (a generated C file in the build tree, compiled into sluice_obj); GET /
 * serves it as text/html. The array holds the file's bytes followed by a NUL
 * (so it is also a C string); the length does not count the NUL. Both are
 * immutable and may be read from any thread.
 */
#ifndef SLUICE_OPS_PAGE_H
#define SLUICE_OPS_PAGE_H

extern const char sli_status_page[];
extern const unsigned long sli_status_page_len;

#endif
