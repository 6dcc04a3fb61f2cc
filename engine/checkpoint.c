/*
 * engine/checkpoint.c - checkpoint storage (issue 9, item 2): state files and
 * a manifest per checkpoint, written through the fault-injecting layer
 * engine/base/fsio.h, verified by CRC-32C on restore, last K kept.
 * It also implements the public, read-only listing of sluice/checkpoint.h
 * (`sluice checkpoints DIR`) on top of the same verification.
 *
 * Layout:
 *
 *     DIR/chk-<id>/state-000000.bin   one file per (node, instance) blob
 *     DIR/chk-<id>/state-000001.bin
 *     DIR/chk-<id>/MANIFEST           written last, atomically
 *
 * One file per blob rather than one file with sections: every operator
 * instance's snapshot can then be written by itself, in parallel and off the
 * processing path, as soon as that instance acknowledges the barrier, with
 * no shared file offset to agree on; a checkpoint with sections would have to
 * be assembled in one place. Files are named by their index in the manifest,
 * not by node name, so any node name is safe on disk.
 *
 * Invariants:
 * - A checkpoint is complete iff chk-<id>/MANIFEST exists; the manifest is
 *   renamed into place only after every state file was written and fsynced,
 *   and it carries each state file's size and CRC, so a complete checkpoint
 *   whose files verify is exactly what was committed.
 * - chk-<id>/ is made (and DIR fsynced) at begin; a failure at any step of a
 *   commit removes the whole directory (manifest first), so a failed commit
 *   leaves no complete checkpoint and never touches the previous ones.
 * - Retention removes only after a successful commit: complete checkpoints
 *   beyond the newest `keep`, and incomplete ones older than the newest
 *   complete one (crash leftovers). The newest complete one is never removed.
 * - All integers are little-endian.
 *
 * State file (state-NNNNNN.bin):
 *
 *   | offset | size | field                                        |
 *   |--------|------|----------------------------------------------|
 *   | 0      | 8    | magic "SLCKSTAT"                             |
 *   | 8      | 4    | version (1)                                  |
 *   | 12     | 4    | flags (0)                                    |
 *   | 16     | 8    | graph fingerprint                            |
 *   | 24     | 8    | checkpoint id                                |
 *   | 32     | 8    | creation time, ms since the epoch            |
 *   | 40     | 4    | instance                                     |
 *   | 44     | 4    | first key group                              |
 *   | 48     | 4    | last key group (inclusive)                   |
 *   | 52     | 2    | node name length N                           |
 *   | 54     | 2    | reserved (0)                                 |
 *   | 56     | 8    | payload length P                             |
 *   | 64     | N    | node name                                    |
 *   | 64+N   | P    | payload (the operator's snapshot bytes)      |
 *   | 64+N+P | 4    | CRC-32C of bytes [0, 64+N+P)                 |
 *
 * Manifest (MANIFEST):
 *
 *   | offset | size | field                                        |
 *   |--------|------|----------------------------------------------|
 *   | 0      | 8    | magic "SLCKMANI"                             |
 *   | 8      | 4    | version (1)                                  |
 *   | 12     | 4    | flags (0)                                    |
 *   | 16     | 8    | graph fingerprint                            |
 *   | 24     | 8    | checkpoint id                                |
 *   | 32     | 8    | creation time, ms since the epoch            |
 *   | 40     | 4    | number of graph nodes G                      |
 *   | 44     | 4    | number of state files S                      |
 *   | 48     | 4    | number of split positions Q                  |
 *   | 52     | 4    | reserved (0)                                 |
 *   | 56     | ...  | G nodes: u16 name len, u16 kind len, name, kind |
 *   |        | ...  | S states: u32 instance, u32 first kg, u32 last kg, |
 *   |        |      |   u64 file size, u32 file CRC (its trailer), u16 |
 *   |        |      |   node name len, node name; entry i is file      |
 *   |        |      |   state-<i, 6 digits>.bin                        |
 *   |        | ...  | Q positions: u32 split, u16 node name len, u16  |
 *   |        |      |   position len, node name, position bytes       |
 *   | end-4  | 4    | CRC-32C of all bytes before it               |
 *
 * The graph's node list is in the manifest so that a refusal can name the
 * difference, not only two fingerprints.
 */
#include "engine/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/clock.h"
#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "sluice/checkpoint.h"
#include "sluice/error.h"

#define CHK_VERSION    1u
#define STATE_HDR      64u
#define MANI_HDR       56u
#define MAX_NAME       0xffffu
#define MAX_FILE_BYTES ((uint64_t)1 << 40)

struct sli_chk_store {
    char *dir;
    sli_chk_node *nodes; /* copied; NULL when inspecting any graph */
    char *node_mem;
    size_t n_nodes;
    uint64_t fp;
    unsigned keep;
    bool writing;
    char errmsg[512];
};

struct wstate {
    char *node;
    uint32_t instance, kg_first, kg_last;
    uint64_t size;
    uint32_t crc;
};

struct wpos {
    char *node;
    uint32_t split;
    void *pos;
    uint32_t len;
};

struct sli_chk_writer {
    sli_chk_store *s;
    uint64_t id;
    int64_t created;
    char *path; /* DIR/chk-<id> */
    struct wstate *st;
    size_t n_st, cap_st;
    struct wpos *pos;
    size_t n_pos, cap_pos;
    bool failed;
};

struct sli_chk_reader {
    uint64_t id, fp;
    int64_t created;
    sli_chk_state *st;
    size_t n_st;
    sli_chk_position *pos;
    size_t n_pos;
    unsigned char *mani; /* the manifest bytes; names and positions point into copies */
    void **blobs;        /* one malloc'd file per state */
    char **names;        /* NUL-terminated copies of names */
    size_t n_names;
};

/* ---- little helpers ---------------------------------------------------- */

static void seterr(sli_chk_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(sli_chk_store *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = malloc((size_t)n + 1);
    if (!p) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A growable byte buffer for the manifest. */
struct obuf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
};

static unsigned char *ob_take(struct obuf *b, size_t n)
{
    if (b->oom) return NULL;
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n) c *= 2;
        unsigned char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return NULL;
        }
        b->p = q;
        b->cap = c;
    }
    unsigned char *r = b->p + b->len;
    b->len += n;
    return r;
}
static void ob_16(struct obuf *b, uint16_t v)
{
    unsigned char *p = ob_take(b, 2);
    if (p) put16(p, v);
}
static void ob_32(struct obuf *b, uint32_t v)
{
    unsigned char *p = ob_take(b, 4);
    if (p) put32(p, v);
}
static void ob_64(struct obuf *b, uint64_t v)
{
    unsigned char *p = ob_take(b, 8);
    if (p) put64(p, v);
}
static void ob_bytes(struct obuf *b, const void *d, size_t n)
{
    unsigned char *p = ob_take(b, n);
    if (p && n) memcpy(p, d, n);
}

/* Read a whole file (reads do not go through fsio). -errno on failure. */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = 0;
    unsigned char *buf = NULL;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        rc = -EFBIG;
        goto fail;
    }
    size_t n = (size_t)st.st_size, got = 0;
    buf = malloc(n ? n : 1);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
fail:
    free(buf);
    close(fd);
    return rc;
}

uint64_t sli_chk_fingerprint(const sli_chk_node *nodes, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        const char *parts[2] = {nodes[i].name, nodes[i].kind ? nodes[i].kind : ""};
        for (int k = 0; k < 2; k++) {
            for (const unsigned char *p = (const unsigned char *)parts[k];; p++) {
                h ^= *p;
                h *= 0x100000001b3ull;
                if (!*p) break;
            }
        }
    }
    return h;
}

/* ---- store ------------------------------------------------------------- */

int sli_chk_store_open(sli_chk_store **out, const char *dir, const sli_chk_node *nodes, size_t n,
                       unsigned keep, char *err, size_t errlen)
{
    *out = NULL;
    int rc = SL_ENOMEM;
    sli_chk_store *s = calloc(1, sizeof *s);
    if (!s) goto fail;
    if (!dir || !*dir || keep == 0 || (n && !nodes)) {
        rc = SL_EINVAL;
        if (err) snprintf(err, errlen, "checkpoint store: no directory given, or keep is 0");
        goto fail_msg;
    }
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        rc = SL_EINVAL;
        if (err)
            snprintf(err, errlen, "checkpoint directory %s: exists and is not a directory", dir);
        goto fail_msg;
    }
    s->dir = strdup(dir);
    if (!s->dir) goto fail;
    s->keep = keep;
    if (n) {
        size_t mem = 0;
        for (size_t i = 0; i < n; i++) {
            if (!nodes[i].name || strlen(nodes[i].name) > MAX_NAME ||
                (nodes[i].kind && strlen(nodes[i].kind) > MAX_NAME)) {
                rc = SL_EINVAL;
                if (err)
                    snprintf(err, errlen,
                             "checkpoint store: node %zu has no name or a too long one", i);
                goto fail_msg;
            }
            mem += strlen(nodes[i].name) + 1 + (nodes[i].kind ? strlen(nodes[i].kind) : 0) + 1;
        }
        s->nodes = calloc(n, sizeof *s->nodes);
        s->node_mem = malloc(mem);
        if (!s->nodes || !s->node_mem) goto fail;
        char *p = s->node_mem;
        for (size_t i = 0; i < n; i++) {
            size_t a = strlen(nodes[i].name) + 1;
            memcpy(p, nodes[i].name, a);
            s->nodes[i].name = p;
            p += a;
            const char *k = nodes[i].kind ? nodes[i].kind : "";
            size_t b = strlen(k) + 1;
            memcpy(p, k, b);
            s->nodes[i].kind = p;
            p += b;
        }
        s->n_nodes = n;
    }
    s->fp = sli_chk_fingerprint(s->nodes, s->n_nodes);
    *out = s;
    return 0;
fail:
    if (err) snprintf(err, errlen, "checkpoint store: out of memory");
fail_msg:
    sli_chk_store_free(s);
    return rc;
}

void sli_chk_store_free(sli_chk_store *s)
{
    if (!s) return;
    free(s->dir);
    free(s->nodes);
    free(s->node_mem);
    free(s);
}

const char *sli_chk_store_errmsg(const sli_chk_store *s)
{
    return s->errmsg;
}

uint64_t sli_chk_store_fingerprint(const sli_chk_store *s)
{
    return s->fp;
}

static char *chk_path(const sli_chk_store *s, uint64_t id, const char *leaf)
{
    if (leaf) return xprintf("%s/chk-%" PRIu64 "/%s", s->dir, id, leaf);
    return xprintf("%s/chk-%" PRIu64, s->dir, id);
}

bool sli_chk_has_manifest(sli_chk_store *s, uint64_t id)
{
    char *p = chk_path(s, id, "MANIFEST");
    struct stat st;
    bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

uint64_t sli_chk_bytes(sli_chk_store *s, uint64_t id)
{
    char *p = chk_path(s, id, NULL);
    uint64_t total = 0;
    DIR *d = p ? opendir(p) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
                total += (uint64_t)st.st_size;
        }
        closedir(d);
    }
    free(p);
    return total;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int sli_chk_list(sli_chk_store *s, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    DIR *d = opendir(s->dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        int rc = sli_errno_code(errno);
        seterr(s, "checkpoint directory %s: %s", s->dir, strerror(errno));
        return rc;
    }
    uint64_t *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strncmp(nm, "chk-", 4) != 0 || nm[4] < '0' || nm[4] > '9') continue;
        char *end;
        errno = 0;
        unsigned long long id = strtoull(nm + 4, &end, 10);
        if (*end || errno || id == 0) continue;
        if (len == cap) {
            size_t c = cap ? cap * 2 : 16;
            uint64_t *q = realloc(v, c * sizeof *q);
            if (!q) {
                free(v);
                closedir(d);
                seterr(s, "checkpoint directory %s: out of memory", s->dir);
                return SL_ENOMEM;
            }
            v = q;
            cap = c;
        }
        v[len++] = id;
    }
    closedir(d);
    if (len) qsort(v, len, sizeof *v, cmp_u64);
    *ids = v;
    *n = len;
    return 0;
}

/* ---- writer ------------------------------------------------------------ */

static int node_index(const sli_chk_store *s, const char *name)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0) return (int)i;
    return -1;
}

static void writer_free(sli_chk_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_st; i++) free(w->st[i].node);
    for (size_t i = 0; i < w->n_pos; i++) {
        free(w->pos[i].node);
        free(w->pos[i].pos);
    }
    free(w->st);
    free(w->pos);
    free(w->path);
    w->s->writing = false;
    free(w);
}

int sli_chk_begin(sli_chk_store *s, uint64_t id, sli_chk_writer **out)
{
    *out = NULL;
    if (!s->nodes) {
        seterr(s, "checkpoint store opened for inspection only: no graph to write");
        return SL_ESTATE;
    }
    if (s->writing) {
        seterr(s, "checkpoint %" PRIu64 ": another checkpoint is being written", id);
        return SL_ESTATE;
    }
    if (id == 0) {
        seterr(s, "checkpoint id 0 is not valid (ids start at 1)");
        return SL_EINVAL;
    }
    int rc;
    bool made = false;
    sli_chk_writer *w = calloc(1, sizeof *w);
    if (!w) {
        seterr(s, "checkpoint %" PRIu64 ": out of memory", id);
        return SL_ENOMEM;
    }
    w->s = s;
    s->writing = true;
    w->id = id;
    w->created = sli_clock_wall_ms();
    w->path = chk_path(s, id, NULL);
    if (!w->path) {
        rc = SL_ENOMEM;
        seterr(s, "checkpoint %" PRIu64 ": out of memory", id);
        goto fail;
    }
    int e = sli_fsio_mkdir(s->dir, 0777);
    if (e < 0 && e != -EEXIST) {
        rc = sli_errno_code(-e);
        seterr(s, "checkpoint directory %s: cannot create: %s", s->dir, strerror(-e));
        goto fail;
    }
    struct stat st;
    if (stat(s->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        rc = SL_EINVAL;
        seterr(s, "checkpoint directory %s: is not a directory", s->dir);
        goto fail;
    }
    if (sli_chk_has_manifest(s, id)) {
        rc = SL_EEXIST;
        seterr(s, "checkpoint %" PRIu64 " already exists and is complete", id);
        goto fail;
    }
    e = sli_fsio_remove_tree(w->path); /* an incomplete leftover of a crash */
    made = true;
    if (e == 0) e = sli_fsio_mkdir(w->path, 0777);
    if (e == 0) e = sli_fsio_fsync_dir(s->dir);
    if (e < 0) {
        rc = sli_errno_code(-e);
        seterr(s, "checkpoint %" PRIu64 ": cannot create %s: %s", id, w->path, strerror(-e));
        goto fail;
    }
    *out = w;
    return 0;
fail:
    if (made) sli_fsio_remove_tree(w->path);
    writer_free(w);
    return rc;
}

int sli_chk_add_state(sli_chk_writer *w, const char *node, uint32_t instance, uint32_t kg_first,
                      uint32_t kg_last, const void *data, uint64_t len)
{
    sli_chk_store *s = w->s;
    int rc, fd = -1;
    char *file = NULL;
    if (w->failed) {
        seterr(s, "checkpoint %" PRIu64 ": an earlier write failed; abort it", w->id);
        return SL_ESTATE;
    }
    if (!node || node_index(s, node) < 0 || kg_first > kg_last || (len && !data) ||
        len > MAX_FILE_BYTES) {
        seterr(s, "checkpoint %" PRIu64 ": state of unknown node \"%s\" or bad key-group range",
               w->id, node ? node : "(null)");
        return SL_EINVAL;
    }
    for (size_t i = 0; i < w->n_st; i++)
        if (w->st[i].instance == instance && strcmp(w->st[i].node, node) == 0) {
            seterr(s, "checkpoint %" PRIu64 ": state of %s instance %" PRIu32 " given twice", w->id,
                   node, instance);
            return SL_EEXIST;
        }
    if (w->n_st == w->cap_st) {
        size_t c = w->cap_st ? w->cap_st * 2 : 8;
        struct wstate *q = realloc(w->st, c * sizeof *q);
        if (!q) goto oom;
        w->st = q;
        w->cap_st = c;
    }
    struct wstate *ws = &w->st[w->n_st];
    memset(ws, 0, sizeof *ws);
    ws->node = strdup(node);
    if (!ws->node) goto oom;
    size_t nlen = strlen(node);
    unsigned char hdr[STATE_HDR];
    memcpy(hdr, "SLCKSTAT", 8);
    put32(hdr + 8, CHK_VERSION);
    put32(hdr + 12, 0);
    put64(hdr + 16, s->fp);
    put64(hdr + 24, w->id);
    put64(hdr + 32, (uint64_t)w->created);
    put32(hdr + 40, instance);
    put32(hdr + 44, kg_first);
    put32(hdr + 48, kg_last);
    put16(hdr + 52, (uint16_t)nlen);
    put16(hdr + 54, 0);
    put64(hdr + 56, len);
    uint32_t crc = sli_crc32c(0, hdr, sizeof hdr);
    crc = sli_crc32c(crc, node, nlen);
    if (len) crc = sli_crc32c(crc, data, (size_t)len);
    unsigned char trailer[4];
    put32(trailer, crc);

    file = xprintf("%s/state-%06zu.bin", w->path, w->n_st);
    if (!file) {
        free(ws->node);
        goto oom;
    }
    int e = fd = sli_fsio_open(file, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (e >= 0) e = sli_fsio_write(fd, hdr, sizeof hdr);
    if (e >= 0) e = sli_fsio_write(fd, node, nlen);
    if (e >= 0 && len) e = sli_fsio_write(fd, data, (size_t)len);
    if (e >= 0) e = sli_fsio_write(fd, trailer, 4);
    if (e >= 0) e = sli_fsio_fsync(fd);
    if (fd >= 0) close(fd);
    if (e < 0) {
        rc = sli_errno_code(-e);
        seterr(s, "checkpoint %" PRIu64 ": writing %s: %s", w->id, file, strerror(-e));
        free(ws->node);
        goto fail;
    }
    ws->instance = instance;
    ws->kg_first = kg_first;
    ws->kg_last = kg_last;
    ws->size = STATE_HDR + nlen + len + 4;
    ws->crc = crc;
    w->n_st++;
    free(file);
    return 0;
oom:
    rc = SL_ENOMEM;
    seterr(s, "checkpoint %" PRIu64 ": out of memory", w->id);
fail:
    free(file);
    w->failed = true;
    return rc;
}

int sli_chk_add_position(sli_chk_writer *w, const char *node, uint32_t split, const void *pos,
                         uint32_t len)
{
    sli_chk_store *s = w->s;
    if (w->failed) {
        seterr(s, "checkpoint %" PRIu64 ": an earlier write failed; abort it", w->id);
        return SL_ESTATE;
    }
    if (!node || node_index(s, node) < 0 || len > MAX_NAME || (len && !pos)) {
        seterr(s,
               "checkpoint %" PRIu64 ": position of unknown node \"%s\" or longer than 65535 bytes",
               w->id, node ? node : "(null)");
        return SL_EINVAL;
    }
    for (size_t i = 0; i < w->n_pos; i++)
        if (w->pos[i].split == split && strcmp(w->pos[i].node, node) == 0) {
            seterr(s, "checkpoint %" PRIu64 ": position of %s split %" PRIu32 " given twice", w->id,
                   node, split);
            return SL_EEXIST;
        }
    if (w->n_pos == w->cap_pos) {
        size_t c = w->cap_pos ? w->cap_pos * 2 : 8;
        struct wpos *q = realloc(w->pos, c * sizeof *q);
        if (!q) goto oom;
        w->pos = q;
        w->cap_pos = c;
    }
    struct wpos *p = &w->pos[w->n_pos];
    p->node = strdup(node);
    p->pos = malloc(len ? len : 1);
    if (!p->node || !p->pos) {
        free(p->node);
        free(p->pos);
        goto oom;
    }
    if (len) memcpy(p->pos, pos, len);
    p->split = split;
    p->len = len;
    w->n_pos++;
    return 0;
oom:
    seterr(s, "checkpoint %" PRIu64 ": out of memory", w->id);
    w->failed = true;
    return SL_ENOMEM;
}

/* Retention after a commit; failures are left for the next one. */
static void prune(sli_chk_store *s)
{
    uint64_t *ids;
    size_t n;
    if (sli_chk_list(s, &ids, &n) < 0) return;
    size_t complete = 0;
    uint64_t newest = 0;
    for (size_t i = n; i-- > 0;) {
        bool c = sli_chk_has_manifest(s, ids[i]);
        if (c && !newest) newest = ids[i];
        bool drop = c ? ++complete > s->keep : (newest && ids[i] < newest);
        if (!drop) continue;
        char *p = chk_path(s, ids[i], NULL);
        char *m = chk_path(s, ids[i], "MANIFEST");
        /* The manifest goes first: a half-removed checkpoint is incomplete. */
        if (p && m && (!c || sli_fsio_unlink(m) == 0)) sli_fsio_remove_tree(p);
        free(p);
        free(m);
    }
    free(ids);
}

int sli_chk_commit(sli_chk_writer *w)
{
    sli_chk_store *s = w->s;
    int rc;
    char *mpath = NULL;
    struct obuf b = {0};
    if (w->failed) {
        seterr(s, "checkpoint %" PRIu64 ": an earlier write failed; not committed", w->id);
        rc = SL_ESTATE;
        goto fail;
    }
    ob_bytes(&b, "SLCKMANI", 8);
    ob_32(&b, CHK_VERSION);
    ob_32(&b, 0);
    ob_64(&b, s->fp);
    ob_64(&b, w->id);
    ob_64(&b, (uint64_t)w->created);
    ob_32(&b, (uint32_t)s->n_nodes);
    ob_32(&b, (uint32_t)w->n_st);
    ob_32(&b, (uint32_t)w->n_pos);
    ob_32(&b, 0);
    for (size_t i = 0; i < s->n_nodes; i++) {
        size_t a = strlen(s->nodes[i].name), k = strlen(s->nodes[i].kind);
        ob_16(&b, (uint16_t)a);
        ob_16(&b, (uint16_t)k);
        ob_bytes(&b, s->nodes[i].name, a);
        ob_bytes(&b, s->nodes[i].kind, k);
    }
    for (size_t i = 0; i < w->n_st; i++) {
        const struct wstate *x = &w->st[i];
        size_t a = strlen(x->node);
        ob_32(&b, x->instance);
        ob_32(&b, x->kg_first);
        ob_32(&b, x->kg_last);
        ob_64(&b, x->size);
        ob_32(&b, x->crc);
        ob_16(&b, (uint16_t)a);
        ob_bytes(&b, x->node, a);
    }
    for (size_t i = 0; i < w->n_pos; i++) {
        const struct wpos *x = &w->pos[i];
        size_t a = strlen(x->node);
        ob_32(&b, x->split);
        ob_16(&b, (uint16_t)a);
        ob_16(&b, (uint16_t)x->len);
        ob_bytes(&b, x->node, a);
        ob_bytes(&b, x->pos, x->len);
    }
    if (!b.oom) ob_32(&b, sli_crc32c(0, b.p, b.len));
    mpath = chk_path(s, w->id, "MANIFEST");
    if (b.oom || !mpath) {
        rc = SL_ENOMEM;
        seterr(s, "checkpoint %" PRIu64 ": out of memory", w->id);
        goto fail;
    }
    int e = sli_fsio_write_file_atomic(mpath, b.p, b.len);
    if (e < 0) {
        rc = sli_errno_code(-e);
        seterr(s, "checkpoint %" PRIu64 ": writing the manifest %s: %s", w->id, mpath,
               strerror(-e));
        goto fail;
    }
    free(b.p);
    free(mpath);
    writer_free(w);
    prune(s);
    return 0;
fail:
    free(b.p);
    free(mpath);
    sli_chk_abort(w);
    return rc;
}

void sli_chk_abort(sli_chk_writer *w)
{
    if (!w) return;
    /* The manifest first (a failed directory fsync may leave it renamed in):
     * once it is gone, whatever else remains is an incomplete checkpoint. */
    char *m = chk_path(w->s, w->id, "MANIFEST");
    if (m) sli_fsio_unlink(m);
    free(m);
    sli_fsio_remove_tree(w->path);
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------ */

void sli_chk_reader_free(sli_chk_reader *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_st; i++) free(r->blobs ? r->blobs[i] : NULL);
    for (size_t i = 0; i < r->n_names; i++) free(r->names[i]);
    free(r->blobs);
    free(r->names);
    free(r->st);
    free(r->pos);
    free(r->mani);
    free(r);
}

/* A bounds-checked cursor over the manifest. */
struct cur {
    const unsigned char *p, *end;
    bool bad;
};
static const unsigned char *cur_take(struct cur *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return NULL;
    }
    const unsigned char *r = c->p;
    c->p += n;
    return r;
}
static uint16_t cur_16(struct cur *c)
{
    const unsigned char *p = cur_take(c, 2);
    return p ? get16(p) : 0;
}
static uint32_t cur_32(struct cur *c)
{
    const unsigned char *p = cur_take(c, 4);
    return p ? get32(p) : 0;
}
static uint64_t cur_64(struct cur *c)
{
    const unsigned char *p = cur_take(c, 8);
    return p ? get64(p) : 0;
}

static char *name_copy(sli_chk_reader *r, const unsigned char *p, size_t n)
{
    char *q = malloc(n + 1);
    if (!q) return NULL;
    memcpy(q, p, n);
    q[n] = 0;
    r->names[r->n_names++] = q;
    return q;
}

/* Append to buf "what differs" between the store's graph and the manifest's
 * node list. */
static void graph_diff(const sli_chk_store *s, const char **gn, const char **gk, size_t g,
                       char *buf, size_t cap)
{
    size_t off = strlen(buf);
#define ADD(...)                                                                    \
    do {                                                                            \
        if (off < cap) {                                                            \
            int k_ = snprintf(buf + off, cap - off, __VA_ARGS__);                   \
            if (k_ > 0) off += (size_t)k_ < cap - off ? (size_t)k_ : cap - off - 1; \
        }                                                                           \
    } while (0)
    int shown = 0;
    for (size_t i = 0; i < g; i++) {
        int j = node_index(s, gn[i]);
        if (j < 0)
            ADD("%s node \"%s\" (%s) only in the checkpoint", shown++ ? ";" : ":", gn[i], gk[i]);
        else if (strcmp(s->nodes[j].kind, gk[i]) != 0)
            ADD("%s node \"%s\" is a %s in the checkpoint, a %s in this job", shown++ ? ";" : ":",
                gn[i], gk[i], s->nodes[j].kind);
    }
    for (size_t j = 0; j < s->n_nodes; j++) {
        bool found = false;
        for (size_t i = 0; i < g && !found; i++) found = strcmp(gn[i], s->nodes[j].name) == 0;
        if (!found)
            ADD("%s node \"%s\" (%s) only in this job", shown++ ? ";" : ":", s->nodes[j].name,
                s->nodes[j].kind);
    }
    if (!shown) ADD(": same nodes in another order");
#undef ADD
}

int sli_chk_open(sli_chk_store *s, uint64_t id, sli_chk_reader **out)
{
    *out = NULL;
    int rc;
    size_t mlen = 0;
    char *mpath = chk_path(s, id, "MANIFEST");
    char *spath = NULL;
    const char **gn = NULL, **gk = NULL;
    uint64_t *fsize = NULL;
    uint32_t *fcrc = NULL;
    sli_chk_reader *r = calloc(1, sizeof *r);
    if (!r || !mpath) goto oom;
    int e = read_file(mpath, &r->mani, &mlen);
    if (e == -ENOENT) {
        rc = SL_ENOENT;
        seterr(s, "checkpoint %" PRIu64 " is incomplete (no manifest)", id);
        goto fail;
    }
    if (e < 0) {
        rc = sli_errno_code(-e);
        seterr(s, "checkpoint %" PRIu64 ": reading the manifest: %s", id, strerror(-e));
        goto fail;
    }
    rc = SL_ECORRUPT;
    if (mlen < MANI_HDR + 4 || memcmp(r->mani, "SLCKMANI", 8) != 0) {
        seterr(s, "checkpoint %" PRIu64 ": manifest is truncated or not a manifest (%zu bytes)", id,
               mlen);
        goto fail;
    }
    if (sli_crc32c(0, r->mani, mlen - 4) != get32(r->mani + mlen - 4)) {
        seterr(s, "checkpoint %" PRIu64 ": manifest CRC mismatch (truncated or corrupt)", id);
        goto fail;
    }
    if (get32(r->mani + 8) != CHK_VERSION) {
        rc = SL_ENOTSUP;
        seterr(s, "checkpoint %" PRIu64 ": manifest version %" PRIu32 " is not supported", id,
               get32(r->mani + 8));
        goto fail;
    }
    struct cur c = {r->mani + 16, r->mani + mlen - 4, false};
    r->fp = cur_64(&c);
    r->id = cur_64(&c);
    r->created = (int64_t)cur_64(&c);
    uint32_t g = cur_32(&c), ns = cur_32(&c), np = cur_32(&c);
    cur_32(&c);
    if (r->id != id) {
        seterr(s, "checkpoint %" PRIu64 ": manifest says checkpoint %" PRIu64, id, r->id);
        goto fail;
    }
    size_t left = (size_t)(c.end - c.p);
    if (g > left / 4 || ns > left / 26 || np > left / 8) {
        seterr(s, "checkpoint %" PRIu64 ": manifest counts exceed its size", id);
        goto fail;
    }
    r->names = calloc((size_t)g * 2 + ns + np + 1, sizeof *r->names);
    gn = calloc((size_t)g + 1, sizeof *gn);
    gk = calloc((size_t)g + 1, sizeof *gk);
    r->st = calloc((size_t)ns + 1, sizeof *r->st);
    r->blobs = calloc((size_t)ns + 1, sizeof *r->blobs);
    r->pos = calloc((size_t)np + 1, sizeof *r->pos);
    if (!r->names || !gn || !gk || !r->st || !r->blobs || !r->pos) goto oom;
    for (uint32_t i = 0; i < g; i++) {
        uint16_t a = cur_16(&c), k = cur_16(&c);
        const unsigned char *pa = cur_take(&c, a), *pk = cur_take(&c, k);
        if (c.bad) break;
        if (!(gn[i] = name_copy(r, pa, a)) || !(gk[i] = name_copy(r, pk, k))) goto oom;
    }
    fsize = calloc((size_t)ns + 1, sizeof *fsize);
    fcrc = calloc((size_t)ns + 1, sizeof *fcrc);
    if (!fsize || !fcrc) goto oom;
    for (uint32_t i = 0; i < ns && !c.bad; i++) {
        sli_chk_state *x = &r->st[i];
        x->instance = cur_32(&c);
        x->kg_first = cur_32(&c);
        x->kg_last = cur_32(&c);
        fsize[i] = cur_64(&c);
        fcrc[i] = cur_32(&c);
        uint16_t a = cur_16(&c);
        const unsigned char *pa = cur_take(&c, a);
        if (c.bad) break;
        if (!(x->node = name_copy(r, pa, a))) goto oom;
    }
    for (uint32_t i = 0; i < np && !c.bad; i++) {
        sli_chk_position *x = &r->pos[i];
        x->split = cur_32(&c);
        uint16_t a = cur_16(&c), l = cur_16(&c);
        const unsigned char *pa = cur_take(&c, a);
        x->pos = cur_take(&c, l);
        x->len = l;
        if (c.bad) break;
        if (!(x->node = name_copy(r, pa, a))) goto oom;
    }
    if (c.bad || c.p != c.end) {
        seterr(s, "checkpoint %" PRIu64 ": manifest entries do not match its size", id);
        goto fail;
    }
    r->n_st = ns;
    r->n_pos = np;
    /* Every state file: size, trailer CRC equal to the manifest's, header. */
    for (uint32_t i = 0; i < ns; i++) {
        sli_chk_state *x = &r->st[i];
        uint64_t want_size = fsize[i];
        uint32_t want_crc = fcrc[i];
        free(spath);
        spath = xprintf("%s/chk-%" PRIu64 "/state-%06" PRIu32 ".bin", s->dir, id, i);
        if (!spath) goto oom;
        unsigned char *f;
        size_t flen;
        e = read_file(spath, &f, &flen);
        if (e < 0) {
            rc = e == -ENOMEM ? SL_ENOMEM : SL_ECORRUPT;
            seterr(s, "checkpoint %" PRIu64 ": state file %s: %s", id, spath, strerror(-e));
            goto fail;
        }
        r->blobs[i] = f;
        size_t nl = strlen(x->node);
        if (flen != want_size || flen < STATE_HDR + 4) {
            seterr(s,
                   "checkpoint %" PRIu64 ": state file %s is %zu bytes, the manifest says %" PRIu64,
                   id, spath, flen, want_size);
            goto fail;
        }
        uint32_t crc = sli_crc32c(0, f, flen - 4);
        if (crc != get32(f + flen - 4) || crc != want_crc) {
            seterr(s, "checkpoint %" PRIu64 ": state file %s: CRC mismatch (corrupt)", id, spath);
            goto fail;
        }
        if (memcmp(f, "SLCKSTAT", 8) != 0 || get32(f + 8) != CHK_VERSION ||
            get64(f + 16) != r->fp || get64(f + 24) != id || get32(f + 40) != x->instance ||
            get32(f + 44) != x->kg_first || get32(f + 48) != x->kg_last || get16(f + 52) != nl ||
            get64(f + 56) != flen - STATE_HDR - nl - 4 || memcmp(f + STATE_HDR, x->node, nl) != 0) {
            seterr(s, "checkpoint %" PRIu64 ": state file %s: header does not match the manifest",
                   id, spath);
            goto fail;
        }
        x->data = f + STATE_HDR + nl;
        x->len = get64(f + 56);
    }
    if (s->nodes && r->fp != s->fp) {
        rc = SL_EINVAL;
        seterr(s,
               "checkpoint %" PRIu64 " is of another graph (fingerprint %016" PRIx64
               ", this job's %016" PRIx64 ")",
               id, r->fp, s->fp);
        graph_diff(s, gn, gk, g, s->errmsg, sizeof s->errmsg);
        goto fail;
    }
    free(spath);
    free(mpath);
    free(gn);
    free(gk);
    free(fsize);
    free(fcrc);
    *out = r;
    return 0;
oom:
    rc = SL_ENOMEM;
    seterr(s, "checkpoint %" PRIu64 ": out of memory", id);
fail:
    free(spath);
    free(mpath);
    free(gn);
    free(gk);
    free(fsize);
    free(fcrc);
    sli_chk_reader_free(r);
    return rc;
}

int sli_chk_open_latest(sli_chk_store *s, sli_chk_reader **out, char *warn, size_t warnlen)
{
    *out = NULL;
    if (warn && warnlen) warn[0] = 0;
    uint64_t *ids;
    size_t n;
    int rc = sli_chk_list(s, &ids, &n);
    if (rc < 0) return rc;
    rc = SL_ENOENT;
    size_t i = n;
    while (i-- > 0) {
        rc = sli_chk_open(s, ids[i], out);
        if (rc == 0 || rc == SL_EINVAL || rc == SL_ENOMEM) break;
        if (warn && warnlen) {
            size_t off = strlen(warn);
            if (off + 1 < warnlen)
                snprintf(warn + off, warnlen - off, "checkpoint %" PRIu64 " skipped: %s\n", ids[i],
                         s->errmsg);
        }
        rc = SL_ENOENT;
    }
    if (rc == SL_ENOENT) seterr(s, "no complete checkpoint in %s", s->dir);
    free(ids);
    return rc;
}

uint64_t sli_chk_reader_id(const sli_chk_reader *r)
{
    return r->id;
}
int64_t sli_chk_reader_created_ms(const sli_chk_reader *r)
{
    return r->created;
}
uint64_t sli_chk_reader_fingerprint(const sli_chk_reader *r)
{
    return r->fp;
}
size_t sli_chk_reader_nstates(const sli_chk_reader *r)
{
    return r->n_st;
}
const sli_chk_state *sli_chk_reader_state_at(const sli_chk_reader *r, size_t i)
{
    return i < r->n_st ? &r->st[i] : NULL;
}
const sli_chk_state *sli_chk_reader_state(const sli_chk_reader *r, const char *node,
                                          uint32_t instance)
{
    for (size_t i = 0; i < r->n_st; i++)
        if (r->st[i].instance == instance && strcmp(r->st[i].node, node) == 0) return &r->st[i];
    return NULL;
}
size_t sli_chk_reader_npositions(const sli_chk_reader *r)
{
    return r->n_pos;
}
const sli_chk_position *sli_chk_reader_position_at(const sli_chk_reader *r, size_t i)
{
    return i < r->n_pos ? &r->pos[i] : NULL;
}

/* ---- public listing (sluice/checkpoint.h) ------------------------------ */

struct list_entry {
    sl_checkpoint_info info;
    sli_chk_reader *r; /* NULL when not complete */
    char *problem;
};

struct sl_checkpoint_list {
    struct list_entry *e;
    size_t n;
};

void sl_checkpoint_list_free(sl_checkpoint_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        sli_chk_reader_free(l->e[i].r);
        free(l->e[i].problem);
    }
    free(l->e);
    free(l);
}

int sl_checkpoint_list_open(sl_checkpoint_list **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    uint64_t *ids = NULL;
    size_t n = 0;
    sli_chk_store *s = NULL;
    int rc = sli_chk_store_open(&s, dir, NULL, 0, 1, err, errlen);
    if (rc < 0) return rc;
    sl_checkpoint_list *l = calloc(1, sizeof *l);
    struct stat st;
    if (!l) goto oom;
    if (stat(dir, &st) < 0) {
        rc = sli_errno_code(errno);
        if (err)
            snprintf(err, errlen, "checkpoint directory %s: %s", dir,
                     errno == ENOENT ? "no such directory" : strerror(errno));
        goto fail;
    }
    rc = sli_chk_list(s, &ids, &n);
    if (rc < 0) {
        if (err) snprintf(err, errlen, "%s", s->errmsg);
        goto fail;
    }
    l->e = calloc(n + 1, sizeof *l->e);
    if (!l->e) goto oom;
    for (size_t i = 0; i < n; i++, l->n++) {
        struct list_entry *x = &l->e[i];
        int r = sli_chk_open(s, ids[i], &x->r);
        if (r == SL_ENOMEM) goto oom;
        x->info.id = ids[i];
        x->info.bytes = sli_chk_bytes(s, ids[i]);
        x->info.status = r;
        x->info.created_ms = r == 0 ? sli_chk_reader_created_ms(x->r) : -1;
        x->info.n_positions = r == 0 ? sli_chk_reader_npositions(x->r) : 0;
        /* Messages read "checkpoint N: why" or "checkpoint N is why". */
        const char *why = "";
        if (r < 0) {
            char head[48];
            snprintf(head, sizeof head, "checkpoint %" PRIu64, ids[i]);
            why = s->errmsg;
            if (strncmp(why, head, strlen(head)) == 0) why += strlen(head);
            if (*why == ':') why++;
            if (strncmp(why, " is ", 4) == 0) why += 4;
            while (*why == ' ') why++;
        }
        x->problem = strdup(why);
        if (!x->problem) {
            l->n++;
            goto oom;
        }
        x->info.problem = x->problem;
    }
    free(ids);
    sli_chk_store_free(s);
    *out = l;
    return 0;
oom:
    rc = SL_ENOMEM;
    if (err) snprintf(err, errlen, "checkpoint directory %s: out of memory", dir);
fail:
    free(ids);
    sl_checkpoint_list_free(l);
    sli_chk_store_free(s);
    return rc;
}

size_t sl_checkpoint_list_count(const sl_checkpoint_list *l)
{
    return l->n;
}

int sl_checkpoint_list_get(const sl_checkpoint_list *l, size_t i, sl_checkpoint_info *info)
{
    if (i >= l->n) return SL_ERANGE;
    *info = l->e[i].info;
    return 0;
}

int sl_checkpoint_list_position(const sl_checkpoint_list *l, size_t i, size_t k,
                                sl_checkpoint_position *pos)
{
    if (i >= l->n || !l->e[i].r || k >= l->e[i].r->n_pos) return SL_ERANGE;
    const sli_chk_position *p = &l->e[i].r->pos[k];
    pos->node = p->node;
    pos->split = p->split;
    pos->pos = p->pos;
    pos->len = p->len;
    return 0;
}
