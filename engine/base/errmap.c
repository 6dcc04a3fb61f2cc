/*
 * engine/base/errmap.c - errno -> SL_E... (see engine/base/errmap.h).
 *
 * The table, drawn once (POSIX errno on the left, the sluice code on the
 * right); anything not listed is an I/O error:
 *
 *   errno                                   SL code       why
 *   --------------------------------------  ------------  -----------------------------
 *   ENOMEM                                  SL_ENOMEM
 *   ENOENT ENOTDIR                          SL_ENOENT     a path component is missing
 *   EEXIST ENOTEMPTY                        SL_EEXIST     rename/rmdir onto a live name
 *   EACCES EPERM EROFS                      SL_EPERM      not allowed to change it
 *   ENOSPC EDQUOT EMFILE ENFILE             SL_EFULL      no room: disk, quota, fds
 *   EFBIG                                   SL_ETOOBIG    file too large
 *   EBUSY ETXTBSY                           SL_EBUSY      held by someone else
 *   EAGAIN (= EWOULDBLOCK)                  SL_EAGAIN     try again (non-blocking)
 *   EINVAL ENAMETOOLONG EISDIR ELOOP        SL_EINVAL     a bad path or argument
 *   ERANGE EOVERFLOW                        SL_ERANGE
 *   ENOTSUP EOPNOTSUPP ENOSYS               SL_ENOTSUP
 *   ECANCELED                               SL_ECANCELED
 *   anything else (EIO, EPIPE, ...)         SL_EIO
 *
 * Callers that give EWOULDBLOCK a stronger meaning (a non-blocking flock:
 * "another writer holds the lock") return SL_EBUSY themselves.
 */
#include "engine/base/errmap.h"

#include <errno.h>

#include "sluice/error.h"

int sli_errno_code(int e)
{
    if (e < 0) e = -e;
    switch (e) {
    case 0: return 0;
    case ENOMEM: return SL_ENOMEM;
    case ENOENT:
    case ENOTDIR: return SL_ENOENT;
    case EEXIST:
    case ENOTEMPTY: return SL_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS: return SL_EPERM;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE: return SL_EFULL;
    case EFBIG: return SL_ETOOBIG;
    case EBUSY:
    case ETXTBSY: return SL_EBUSY;
    case EAGAIN: return SL_EAGAIN;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
    case ELOOP: return SL_EINVAL;
    case ERANGE:
    case EOVERFLOW: return SL_ERANGE;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
    case ENOSYS: return SL_ENOTSUP;
    case ECANCELED: return SL_ECANCELED;
    default: return SL_EIO;
    }
}
