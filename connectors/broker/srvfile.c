/*
 * connectors/broker/srvfile.c - DIR/.server: which `sluice broker serve`
 * (or embedded sl_server) owns a broker directory, so that an embedded
 * writer refused by a partition lock that the server holds can say so and
 * where to produce instead, and so that a second server on the same
 * directory is refused at start rather than fighting the first over
 * partition locks.
 *
 * The file is one ASCII line:
 *
 *   field     example          meaning
 *   --------  ---------------  ------------------------------------------
 *   pid       1234             decimal process id of the server
 *   ' '
 *   address   127.0.0.1:9092   the address it listens on, HOST:PORT with
 *                              the port it got (an IPv6 host in [])
 *   '\n'
 *
 * Liveness is the lock, not the file: the server holds flock(LOCK_EX) on it
 * while it runs, and the kernel drops that lock when the process dies (kill
 * -9 included). A reader asks for LOCK_SH without waiting: refused means a
 * live server (in this process too: flock locks belong to open files, not
 * processes), granted means the file is a crash's leftover, ignored and
 * overwritten by the next server. A clean stop unlinks it while still
 * holding the lock. Invariant: at most one live server per directory.
 */
#include "connectors/broker/srvfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/error.h"

#define SRVFILE_PATH_CAP 4200

static int claim_once(const char *path, const char *dir, char *err, size_t errcap);
static int write_record(int fd, const char *path, const char *host, int port, char *err,
                        size_t errcap);

static void path_of(char *buf, size_t cap, const char *dir)
{
    snprintf(buf, cap, "%s/.server", dir);
}

/* Parse the record in fd into *pid and addr; false if it is not one. */
static bool read_record(int fd, long *pid, char *addr, size_t addrcap)
{
    char line[320];
    ssize_t n = pread(fd, line, sizeof line - 1, 0);
    if (n <= 0) return false;
    line[n] = 0;
    char *end = NULL;
    long p = strtol(line, &end, 10);
    if (end == line || *end != ' ' || p <= 0) return false;
    const char *a = end + 1;
    size_t al = strcspn(a, "\n");
    if (al == 0 || al >= addrcap) return false;
    memcpy(addr, a, al);
    addr[al] = 0;
    *pid = p;
    return true;
}

int slb_srvfile_claim(const char *dir, const char *host, int port, char *err, size_t errcap)
{
    char path[SRVFILE_PATH_CAP];
    path_of(path, sizeof path, dir);
    for (int tries = 0;; tries++) {
        int fd = claim_once(path, dir, err, errcap);
        if (fd != SL_EAGAIN) {
            if (fd < 0) return fd;
            return write_record(fd, path, host, port, err, errcap);
        }
        if (tries == 10) {
            snprintf(err, errcap, "cannot claim %s: it keeps being replaced", path);
            return SL_EIO;
        }
    }
}

/* Open and lock path; SL_EAGAIN if the file locked is no longer the one at
 * path (a stopping server unlinked it meanwhile: lock the new one). */
static int claim_once(const char *path, const char *dir, char *err, size_t errcap)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errcap, "cannot open %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    int r;
    do r = flock(fd, LOCK_EX | LOCK_NB);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        long pid = 0;
        char addr[300];
        bool known = read_record(fd, &pid, addr, sizeof addr);
        close(fd);
        if (e == EWOULDBLOCK) {
            if (known)
                snprintf(err, errcap,
                         "directory %s is already served by sluice broker serve (pid %ld, %s); "
                         "one server per directory",
                         dir, pid, addr);
            else
                snprintf(err, errcap,
                         "directory %s is already served by another server (it holds %s); one "
                         "server per directory",
                         dir, path);
            return SL_EBUSY;
        }
        snprintf(err, errcap, "cannot lock %s: %s", path, strerror(e));
        return SL_EIO;
    }
    struct stat held, now;
    if (fstat(fd, &held) < 0 || stat(path, &now) < 0 || held.st_ino != now.st_ino ||
        held.st_dev != now.st_dev) {
        close(fd);
        return SL_EAGAIN;
    }
    return fd;
}

/* Write the record into the claimed fd; returns fd or SL_EIO. */
static int write_record(int fd, const char *path, const char *host, int port, char *err,
                        size_t errcap)
{
    char line[320];
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(line, sizeof line, "%ld %s%s%s:%d\n", (long)getpid(), v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
    if (n < 0 || (size_t)n >= sizeof line || ftruncate(fd, 0) < 0 ||
        pwrite(fd, line, (size_t)n, 0) != n) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        unlink(path);
        close(fd);
        return SL_EIO;
    }
    return fd;
}

void slb_srvfile_release(const char *dir, int fd)
{
    if (fd < 0) return;
    char path[SRVFILE_PATH_CAP];
    path_of(path, sizeof path, dir);
    unlink(path); /* under the lock: no other server can have claimed it */
    close(fd);
}

bool slb_srvfile_owner(const char *dir, long *pid, char *addr, size_t addrcap)
{
    char path[SRVFILE_PATH_CAP];
    path_of(path, sizeof path, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool live = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    bool ok = live && read_record(fd, pid, addr, addrcap);
    close(fd); /* drops the shared lock if it was granted */
    return ok;
}
