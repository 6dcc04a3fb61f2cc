/*
 * connectors/broker/segment.c - segment files: their names (base offset,
 * zero-padded to 20 digits, segment.h), listing a partition's segments, and
 * reading a file exactly. The bottom of the broker's storage: it calls
 * nothing of index.c, log.c or clean.c, which all call it (the direction is
 * clean.c -> log.c -> index.c -> segment.c).
 */
#include "connectors/broker/segment.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/base/errmap.h"

void slb_seg_path(char *buf, size_t cap, const char *pdir, int64_t base, const char *ext)
{
    snprintf(buf, cap, "%s/%020" PRId64 ".%s", pdir, base, ext);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int64_t slb_seg_parse_name(const char *name, const char *ext)
{
    size_t el = strlen(ext);
    if (strlen(name) != 21 + el || name[20] != '.' || strcmp(name + 21, ext) != 0) return -1;
    int64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

int slb_list_segments(const char *pdir, int64_t **bases, size_t *n)
{
    *bases = NULL;
    *n = 0;
    DIR *d = opendir(pdir);
    if (!d) return sli_errno_code(-errno);
    size_t cap = 0, cnt = 0;
    int64_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t b = slb_seg_parse_name(e->d_name, "log");
        if (b < 0) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return SL_ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = b;
    }
    closedir(d);
    qsort(v, cnt, sizeof *v, cmp_i64);
    *bases = v;
    *n = cnt;
    return 0;
}

int slb_read_full(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -EIO; /* shorter than expected */
        p += r;
        off += r;
        len -= (size_t)r;
    }
    return 0;
}
