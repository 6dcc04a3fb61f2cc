/*
 * sluice/export.h - SL_API marks the declarations that libsluice exports
 * (public API).
 *
 * The library is built with -fvisibility=hidden, so that only what
 * include/sluice/ declares with SL_API is in its dynamic symbol table:
 * engine internals (prefix sli_) and test switches are not part of the ABI,
 * whatever their linkage inside the library.
 */
#ifndef SLUICE_EXPORT_H
#define SLUICE_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

#endif
