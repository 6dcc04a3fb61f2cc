/*
 * sluice/error.h - error codes (public API).
 *
 * Every sluice function that can fail returns an int: 0 on success, a negative
 * SL_E... code on failure. The codes, their names and their texts come from the
 * one X-macro below, so the enum, sl_strerror() and sl_err_name() cannot drift
 * apart (the same scheme as libuv's UV_ERRNO_MAP). A detailed message for the
 * last failure is kept on the object that failed (sl_pipeline_errmsg() and
 * friends), never in a global.
 */
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

#include "sluice/export.h"
#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, text) */
#define SL_ERRNO_MAP(X)                                        \
    X(ENOMEM, -1, "out of memory")                             \
    X(EINVAL, -2, "invalid argument")                          \
    X(EIO, -3, "input/output error")                           \
    X(ENOENT, -4, "no such file, topic or object")             \
    X(EEXIST, -5, "already exists")                            \
    X(EBUSY, -6, "resource busy (held by another writer)")     \
    X(ECORRUPT, -7, "data is corrupt")                         \
    X(ETOOBIG, -8, "too large")                                \
    X(EPERM, -9, "permission denied")                          \
    X(ESTATE, -10, "operation not valid in the current state") \
    X(EOPERATOR, -11, "an operator failed")                    \
    X(ECANCELED, -12, "canceled")                              \
    X(ERANGE, -13, "value out of range")                       \
    X(EAGAIN, -14, "try again")                                \
    X(EFULL, -15, "no room")                                   \
    X(ENOTSUP, -16, "not supported")                           \
    X(EPARSE, -17, "malformed input")                          \
    X(ELATE, -18, "record is late")                            \
    X(EPIPE, -19, "output closed (broken pipe)")               \
    X(EFENCED, -20, "fenced: a newer producer epoch took over")

enum sl_errno {
    SL_OK = 0,
#define SL_ERR_ENUM_(name, value, text) SL_##name = value,
    SL_ERRNO_MAP(SL_ERR_ENUM_)
#undef SL_ERR_ENUM_
};

/* Human text for a code ("out of memory"); never NULL. */
SL_API const char *sl_strerror(int code);
/* Symbolic name for a code ("SL_ENOMEM"); never NULL. */
SL_API const char *sl_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
