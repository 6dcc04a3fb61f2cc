/*
 * engine/base/errmap.h - the one mapping from errno values to SL_E... codes
 * (private header; not part of the public API).
 *
 * Every floor that calls the operating system turns its errno into one of the
 * codes of sluice/error.h through this function, so that "no such file" is
 * SL_ENOENT and "disk full" is SL_EFULL wherever they happen. The detailed
 * text (strerror(e), the path) still goes into the object's message; the code
 * only classifies.
 */
#ifndef SLUICE_ENGINE_BASE_ERRMAP_H
#define SLUICE_ENGINE_BASE_ERRMAP_H

/* The SL_E... code (negative) for errno value e. e may be given as is (errno,
 * ENOENT) or negated (-errno, as engine/base/fsio.h returns it): the sign is
 * ignored. 0 maps to 0; an errno with no closer code maps to SL_EIO. */
int sli_errno_code(int e);

#endif
