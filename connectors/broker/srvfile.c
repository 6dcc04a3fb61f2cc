/*
 * connectors/broker/srvfile.c - DIR/.server.PID: the record of each
 * Kafka-protocol server (`sluice broker serve`, or an embedded sl_server)
 * running over a broker directory, so that an embedded writer refused by a
 * partition lock that a server holds can name that server and where to
 * produce instead. The partition lock file holds its writer's pid
 * (log.c), which leads straight to the record.
 *
 * A record is one ASCII line:
 *
 *   field     example          meaning
 *   --------  ---------------  ------------------------------------------
 *   pid       1234             decimal process id of the server (= PID
 *                              in the file name)
 *   ' '
 *   address   127.0.0.1:9092   the address it listens on, HOST:PORT with
 *                              the port it got (an IPv6 host in [])
 *   '\n'
 *
 * Liveness is the lock, not the file: a server holds flock(LOCK_EX) on its
 * record while it runs, and the kernel drops that lock when the process
 * dies (kill -9 included). A reader asks for LOCK_SH without waiting:
 * refused means a live server (in this process too: flock locks belong to
 * open files, not processes), granted means the record is a crash's
 * leftover, which the next server to start removes. A record is written
 * under a temporary name (.server-new.PID) and renamed once locked and
 * whole, so no reader or cleaner ever sees it unlocked or half written. A
 * clean stop unlinks it while still holding the lock. Several servers may
 * serve one directory (on different ports); each writes the partitions it
 * produced to first, and each has its own record.
 */
#include "connectors/broker/srvfile.h"

#include <dirent.h>
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
#define PREFIX           ".server."

static void path_of(char *buf, size_t cap, const char *dir, long pid)
{
    snprintf(buf, cap, "%s/" PREFIX "%ld", dir, pid);
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

/* Remove the records of servers that died (their lock is free). */
static void remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *num = NULL; /* records, and records a crash left half made */
        if (!strncmp(e->d_name, PREFIX, strlen(PREFIX)))
            num = e->d_name + strlen(PREFIX);
        else if (!strncmp(e->d_name, ".server-new.", 12))
            num = e->d_name + 12;
        else
            continue;
        if (!*num || strspn(num, "0123456789") != strlen(num)) continue;
        char path[SRVFILE_PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) unlink(path); /* nobody holds it: stale */
        close(fd);
    }
    closedir(d);
}

int slb_srvfile_claim(const char *dir, const char *host, int port, char *err, size_t errcap)
{
    remove_stale(dir);
    long pid = (long)getpid();
    char tmp[SRVFILE_PATH_CAP], path[SRVFILE_PATH_CAP];
    snprintf(tmp, sizeof tmp, "%s/.server-new.%ld", dir, pid);
    path_of(path, sizeof path, dir, pid);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errcap, "cannot create %s: %s", tmp, strerror(errno));
        return SL_EIO;
    }
    char line[320];
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(line, sizeof line, "%ld %s%s%s:%d\n", pid, v6 ? "[" : "", host, v6 ? "]" : "",
                     port);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || n < 0 || (size_t)n >= sizeof line ||
        pwrite(fd, line, (size_t)n, 0) != n || rename(tmp, path) < 0) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        close(fd);
        return SL_EIO;
    }
    return fd;
}

void slb_srvfile_release(const char *dir, int fd)
{
    if (fd < 0) return;
    char path[SRVFILE_PATH_CAP];
    path_of(path, sizeof path, dir, (long)getpid());
    unlink(path); /* under the lock: it was ours */
    close(fd);
}

bool slb_srvfile_owner(const char *dir, long pid, char *addr, size_t addrcap)
{
    char path[SRVFILE_PATH_CAP];
    path_of(path, sizeof path, dir, pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    long rpid = 0;
    bool live = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    bool ok = live && read_record(fd, &rpid, addr, addrcap) && rpid == pid;
    close(fd); /* drops the shared lock if it was granted */
    return ok;
}
