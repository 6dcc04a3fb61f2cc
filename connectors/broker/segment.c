/*
 * connectors/broker/segment.c - segment files: their names (base offset,
 * zero-padded to 20 digits, segment.h), listing a partition's segments, and
 * reading a file exactly. The bottom of the broker's storage: it calls
 * nothing of index.c, log.c or clean.c, which all call it (the direction is
 * clean.c -> log.c -> index.c -> segment.c).
 *
 * It also keeps the partition checkpoint, P/checkpoint (little-endian):
 *
 *   offset  size  field
 *   ------  ----  ------------------------------------------------------
 *        0     8  magic "SLCKPT\0\1" (format version 1)
 *        8     8  log_start_offset: offsets below it were deleted on
 *                 purpose (retention); a reader that finds a segment
 *                 missing at or after it reports a gap
 *       16     8  recovery_point: offsets below it were written, synced
 *                 and checked; recovery scans every segment holding
 *                 offsets at or after it, and a log that ends before it
 *                 lost data (a deleted or truncated active segment)
 *       24     4  CRC-32C of bytes 0..23
 *
 * Written with sli_fsio_write_file_atomic: either the old or the new file.
 */
#include "connectors/broker/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

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

/* ---- the partition checkpoint ------------------------------------------------ */

#define CKPT_SIZE 28
static const uint8_t ckpt_magic[8] = {'S', 'L', 'C', 'K', 'P', 'T', 0, 1};

static void put64(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return (int64_t)v;
}

int slb_ckpt_read(const char *pdir, slb_ckpt *c)
{
    char path[SLB_PATH_CAP];
    snprintf(path, sizeof path, "%s/checkpoint", pdir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_ENOENT : sli_errno_code(-errno);
    uint8_t b[CKPT_SIZE + 1];
    ssize_t n = pread(fd, b, sizeof b, 0);
    close(fd);
    if (n != CKPT_SIZE || memcmp(b, ckpt_magic, 8) != 0) return SL_ECORRUPT;
    uint32_t crc =
        (uint32_t)b[24] | (uint32_t)b[25] << 8 | (uint32_t)b[26] << 16 | (uint32_t)b[27] << 24;
    if (sli_crc32c(0, b, 24) != crc) return SL_ECORRUPT;
    c->log_start = get64(b + 8);
    c->recovery_point = get64(b + 16);
    if (c->log_start < 0 || c->recovery_point < 0) return SL_ECORRUPT;
    return 0;
}

int slb_ckpt_write(const char *pdir, const slb_ckpt *c)
{
    char path[SLB_PATH_CAP];
    snprintf(path, sizeof path, "%s/checkpoint", pdir);
    uint8_t b[CKPT_SIZE];
    memcpy(b, ckpt_magic, 8);
    put64(b + 8, c->log_start);
    put64(b + 16, c->recovery_point);
    uint32_t crc = sli_crc32c(0, b, 24);
    for (int i = 0; i < 4; i++) b[24 + i] = (uint8_t)(crc >> (8 * i));
    int r = sli_fsio_write_file_atomic(path, b, sizeof b);
    return r < 0 ? sli_errno_code(r) : 0;
}
