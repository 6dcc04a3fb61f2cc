/*
 * engine/base/fsio.c - file-changing system calls behind one seam, with fault
 * injection (see engine/base/fsio.h).
 *
 * What: thin wrappers over open/write/pwrite/fsync/ftruncate/rename/unlink/
 * mkdir that return -errno, loop over short writes and EINTR, and consult the
 * fault-injection switch first.
 *
 * Why: durability code is only as good as its handling of failed writes and
 * syncs, and those failures cannot be produced on demand by a real disk. With
 * every change to the disk going through here, a test can fail "the 7th write"
 * and check the caller's reaction, as SQLite's test VFS does.
 *
 * Invariants: the fault switch is the only global mutable state; it is made of
 * atomics, so any thread may call these functions. An injected failure happens
 * before the system call, so the disk is untouched by a failed call (a real
 * failure may of course leave a short write, which callers must handle too).
 */
#include "engine/base/fsio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint fault_mask;      /* operations subject to injection; 0 = off */
static atomic_long fault_countdown; /* successful calls left before failing */
static atomic_int fault_err;
static atomic_bool fault_persistent;
static atomic_long fault_failures;
static atomic_bool fault_crash; /* _exit instead of failing */

void sli_fsio_fail_after(unsigned op_mask, long n, int err, bool persistent)
{
    atomic_store(&fault_mask, 0u);
    atomic_store(&fault_countdown, n);
    atomic_store(&fault_err, err > 0 ? err : EIO);
    atomic_store(&fault_persistent, persistent);
    atomic_store(&fault_failures, 0);
    atomic_store(&fault_crash, false);
    atomic_store(&fault_mask, op_mask);
}

void sli_fsio_crash_after(unsigned op_mask, long n)
{
    sli_fsio_fail_after(op_mask, n, EIO, false);
    atomic_store(&fault_crash, true);
}

void sli_fsio_fail_reset(void)
{
    atomic_store(&fault_mask, 0u);
}

long sli_fsio_failures(void)
{
    return atomic_load(&fault_failures);
}

/* Returns 0 to go ahead, or -err if this call must fail. */
static int fault(unsigned op)
{
    if ((atomic_load_explicit(&fault_mask, memory_order_relaxed) & op) == 0) return 0;
    long left = atomic_fetch_sub(&fault_countdown, 1);
    if (left > 0) return 0;
    if (left < 0 && !atomic_load(&fault_persistent)) return 0;
    if (atomic_load(&fault_crash)) _exit(SLI_FSIO_CRASH_STATUS);
    atomic_fetch_add(&fault_failures, 1);
    return -atomic_load(&fault_err);
}

static int writes_file(int flags)
{
    return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
}

int sli_fsio_open(const char *path, int flags, mode_t mode)
{
    return sli_fsio_openat(AT_FDCWD, path, flags, mode);
}

int sli_fsio_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    if (writes_file(flags)) {
        int rc = fault(SLI_FSIO_OPEN);
        if (rc) return rc;
    }
    int fd;
    do fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int sli_fsio_write(int fd, const void *buf, size_t len)
{
    int rc = fault(SLI_FSIO_WRITE);
    if (rc) return rc;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int sli_fsio_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    int rc = fault(SLI_FSIO_WRITE);
    if (rc) return rc;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int sli_fsio_fsync(int fd)
{
    int rc = fault(SLI_FSIO_FSYNC);
    if (rc) return rc;
    return fsync(fd) < 0 ? -errno : 0;
}

int sli_fsio_fdatasync(int fd)
{
    int rc = fault(SLI_FSIO_FSYNC);
    if (rc) return rc;
    return fdatasync(fd) < 0 ? -errno : 0;
}

int sli_fsio_ftruncate(int fd, off_t len)
{
    int rc = fault(SLI_FSIO_TRUNCATE);
    if (rc) return rc;
    int r;
    do r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int sli_fsio_rename(const char *from, const char *to)
{
    int rc = fault(SLI_FSIO_RENAME);
    if (rc) return rc;
    return rename(from, to) < 0 ? -errno : 0;
}

int sli_fsio_unlink(const char *path)
{
    int rc = fault(SLI_FSIO_UNLINK);
    if (rc) return rc;
    return unlink(path) < 0 ? -errno : 0;
}

int sli_fsio_rmdir(const char *path)
{
    int rc = fault(SLI_FSIO_UNLINK);
    if (rc) return rc;
    return rmdir(path) < 0 ? -errno : 0;
}

int sli_fsio_mkdir(const char *path, mode_t mode)
{
    int rc = fault(SLI_FSIO_MKDIR);
    if (rc) return rc;
    return mkdir(path, mode) < 0 ? -errno : 0;
}

int sli_fsio_fsync_dir(const char *path)
{
    int rc = fault(SLI_FSIO_FSYNC);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int sli_fsio_write_file_atomic(const char *path, const void *buf, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    char *dir = malloc(plen + 2);
    int fd = -1, rc = -ENOMEM;
    if (!tmp || !dir) goto fail;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    memcpy(dir, path, plen + 1);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    fd = sli_fsio_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    if ((rc = sli_fsio_write(fd, buf, len)) < 0) goto fail_unlink;
    if ((rc = sli_fsio_fsync(fd)) < 0) goto fail_unlink;
    close(fd);
    fd = -1;
    if ((rc = sli_fsio_rename(tmp, path)) < 0) goto fail_unlink;
    rc = sli_fsio_fsync_dir(dir);
    free(tmp);
    free(dir);
    return rc;

fail_unlink:
    unlink(tmp);
fail:
    if (fd >= 0) close(fd);
    free(tmp);
    free(dir);
    return rc;
}

int sli_fsio_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode)) return sli_fsio_unlink(path);
    DIR *d = opendir(path);
    if (!d) return -errno;
    int rc = 0;
    struct dirent *e;
    size_t plen = strlen(path);
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t n = plen + strlen(e->d_name) + 2;
        char *child = malloc(n);
        if (!child) {
            rc = -ENOMEM;
            break;
        }
        snprintf(child, n, "%s/%s", path, e->d_name);
        int r = sli_fsio_remove_tree(child);
        free(child);
        if (r < 0 && rc == 0) rc = r;
    }
    closedir(d);
    if (rc < 0) return rc;
    return sli_fsio_rmdir(path);
}
