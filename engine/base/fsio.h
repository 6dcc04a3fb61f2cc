/*
 * engine/base/fsio.h - the one small layer through which sluice changes files on
 * disk (private header; not part of the public API).
 *
 * Every disk write, fsync, rename, truncate, unlink, mkdir and open-for-writing
 * of the broker (and, later, of checkpoints) goes through these functions, so
 * that tests can make the n-th such call fail with EIO, ENOSPC or EACCES and
 * check that nothing is lost or half-done (the idea of SQLite's test VFS and
 * of libuv's OOM loop tests).
 *
 * Return convention: 0 (or a file descriptor for sli_fsio_open) on success,
 * -errno on failure. Reads do not go through this layer: they cannot change
 * anything on disk.
 *
 * Fault injection: sli_fsio_fail_after(mask, n, err, persistent) lets the next
 * n calls whose operation is in mask succeed and makes the (n+1)-th fail with
 * -err (and, if persistent, every later one too). The switch is process-wide
 * (the only global mutable state allowed by DESIGN.md) and atomic, so that it
 * may be flipped while other threads run.
 */
#ifndef SLUICE_ENGINE_BASE_FSIO_H
#define SLUICE_ENGINE_BASE_FSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Operation classes, for fault injection masks. */
enum sli_fsio_op {
    SLI_FSIO_OPEN = 1u << 0,     /* open with O_WRONLY/O_RDWR/O_CREAT */
    SLI_FSIO_WRITE = 1u << 1,    /* write/pwrite */
    SLI_FSIO_FSYNC = 1u << 2,    /* fsync/fdatasync, also of directories */
    SLI_FSIO_RENAME = 1u << 3,   /* rename */
    SLI_FSIO_TRUNCATE = 1u << 4, /* ftruncate */
    SLI_FSIO_UNLINK = 1u << 5,   /* unlink, rmdir */
    SLI_FSIO_MKDIR = 1u << 6,    /* mkdir */
    SLI_FSIO_ALL = 0x7fu
};

/* open(2). Opens for writing count as SLI_FSIO_OPEN; read-only opens are never
 * failed by injection. Returns the fd or -errno. O_CLOEXEC is always added. */
int sli_fsio_open(const char *path, int flags, mode_t mode);
/* openat(2) relative to a directory fd, same rules as sli_fsio_open. */
int sli_fsio_openat(int dirfd, const char *path, int flags, mode_t mode);
/* Write all of buf at the current position (loops over short writes). */
int sli_fsio_write(int fd, const void *buf, size_t len);
/* Write all of buf at offset off (loops over short writes). */
int sli_fsio_pwrite(int fd, const void *buf, size_t len, off_t off);
int sli_fsio_fsync(int fd);
int sli_fsio_fdatasync(int fd);
int sli_fsio_ftruncate(int fd, off_t len);
int sli_fsio_rename(const char *from, const char *to);
int sli_fsio_unlink(const char *path);
int sli_fsio_rmdir(const char *path);
int sli_fsio_mkdir(const char *path, mode_t mode);
/* Open the directory read-only and fsync it (counts as SLI_FSIO_FSYNC). */
int sli_fsio_fsync_dir(const char *path);
/* Replace path atomically with buf: write path.tmp, fsync it, rename it over
 * path, fsync the directory. On failure path is unchanged and the temporary
 * file is removed (best effort). */
int sli_fsio_write_file_atomic(const char *path, const void *buf, size_t len);
/* Remove a directory tree (files and subdirectories), as rm -rf. */
int sli_fsio_remove_tree(const char *path);

/* Fault injection (tests only). These switches are internal: prefixed sli_,
 * declared only here, and hidden from the shared library's dynamic symbol
 * table (SLI_FSIO_TEST), so they are not part of the release ABI; tests link
 * the static library, where hidden symbols still resolve.
 *
 * After n more successful calls of an operation in op_mask, the next one
 * fails with -err; with persistent, all later ones too. */
#define SLI_FSIO_TEST __attribute__((visibility("hidden")))
SLI_FSIO_TEST void sli_fsio_fail_after(unsigned op_mask, long n, int err, bool persistent);
/* Crash simulation (tests only): the (n+1)-th call of an operation in op_mask
 * calls _exit(SLI_FSIO_CRASH_STATUS) instead of running, as if the process
 * were killed right before it. Use in a forked child. */
#define SLI_FSIO_CRASH_STATUS 86
SLI_FSIO_TEST void sli_fsio_crash_after(unsigned op_mask, long n);
/* Switch fault injection off. */
SLI_FSIO_TEST void sli_fsio_fail_reset(void);
/* How many calls have been failed by injection since the last fail_after. */
SLI_FSIO_TEST long sli_fsio_failures(void);

#endif
