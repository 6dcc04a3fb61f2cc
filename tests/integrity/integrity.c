/*
 * tests/integrity/integrity.c - seeded mutation harness for the built-in
 * broker's on-disk log (issue 8, "make the campaign permanent").
 *
 *   integrity SLUICE_BIN WORKDIR [--seed N] [--count N] [--timeout S]
 *             [--no-xfail] [--keep] [-v]
 *   integrity --self-test      (the classifier on made-up results)
 *
 * What it does. It drives the `sluice` binary only, as a user would:
 *   1. builds a pristine topic `t` with --segment-bytes 1024 in
 *      WORKDIR/pristine: a few dozen `produce` calls of 1..12 records each (one
 *      batch per call), values "o<offset>-<filler>", so that the partition has
 *      several sealed segments of several batches each and an active segment;
 *   2. parses the segment files itself (the batch header drawn in
 *      connectors/broker/batch.h: base offset, length, CRC, magic, ...) to know
 *      every batch boundary and the byte range of every header field;
 *   3. draws a seeded list of mutations (see make_mutations): a bit flip in
 *      each region of a batch (each header field, the CRC, the records) in the
 *      active and in a sealed segment; truncation at every batch boundary (and
 *      a few inside batches); deletion, emptying, renaming to a higher base and
 *      copying under another base, of a segment (.log) and of its .index and
 *      .timeindex files;
 *   4. for each mutation: copies the pristine directory to WORKDIR/m, applies
 *      the mutation, runs `sluice consume t -e -f '%o %s\n'` in its own
 *      process group, kills the group with SIGKILL after --timeout seconds
 *      (a HANG; SIGTERM is not enough for a spinning reader), and classifies;
 *   5. when that passed, appends one record with `produce` (which may be
 *      refused) and reads again: no record read before may be gone (issue 8
 *      item 2: a produce truncated valid data after a bad batch) and the new
 *      record may not reuse an offset of the log (item 3: a deleted active
 *      segment).
 *
 * Classification. The expected log E is the list of (offset, value) produced.
 * The output G of consume, its exit status and stderr give:
 *   FULL      G == E, exit 0                                      (pass)
 *   PREFIX    G is a prefix of E (possibly all of it), exit != 0,
 *             and stderr reports corruption (REPORT_WORDS)        (pass)
 *   failures:
 *   SILENT_PREFIX  G a strict prefix of E, exit 0: records lost without a word
 *   GAP            G's lines all belong to E but G is not a prefix of E
 *                  (records missing, duplicated or reordered), exit 0
 *   NOT_PREFIX     the same with exit != 0: records skipped before a report
 *   NO_REPORT      a prefix and exit != 0, but stderr names no corruption
 *   WRONG_DATA     a line that is not in E (bad offset or value) or garbage
 *   HANG           killed after the timeout
 *   CRASH          ended by a signal (or exit status >= 128)
 *   APPEND_LOST    after the append (step 5), records read before are gone
 *   APPEND_REUSE   the appended record took an offset the log had used
 *
 * Invariants: the harness is deterministic for a given seed (the pristine log
 * and the mutation list depend only on it); it never asserts on time except
 * the hang bound, which is a failure verdict, not a measurement. It exits 0
 * only when every failure is listed in the expected-failures table below,
 * and prints the counts: mutations tried, full, exact prefix with report,
 * failures by kind (expected / unexpected).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- expected failures ----
 *
 * What the broker still cannot tell apart, counted as "expected": printed,
 * and not failing the run. Every entry is a known weakness, not a bug to
 * hide: a new kind of failure, or one of these with another verdict, fails.
 * A kind ending in '*' matches any kind with that prefix.
 *
 * The end of the active segment: a damaged or missing last batch, or a
 * segment cut at a batch boundary or emptied, reads exactly like a torn
 * write that a crash left (the writer's recovery cuts those, by design).
 * Telling them apart needs the durable end of the log recorded per append,
 * which the partition checkpoint (log start, recovery point at each roll)
 * does not have yet. Everything before the damage is read, in order; only
 * the silence about the tail is the weakness.
 */
typedef struct xfail {
    const char *kind;    /* mutation kind, see make_mutations */
    const char *verdict; /* failure verdict name */
    const char *why;
} xfail;

static const xfail XFAIL[] = {
    {"flip/*/active-tail", "SILENT_PREFIX", "last batch of the active segment: like a torn write"},
    {"trunc/mid/active*", "SILENT_PREFIX", "active segment cut inside a batch: like a torn write"},
    {"trunc/boundary/active*", "SILENT_PREFIX",
     "active segment cut at a batch boundary: no durable end recorded"},
    {"empty/log/active", "SILENT_PREFIX", "active segment emptied: no durable end recorded"},
};

/* stderr must contain one of these (case-insensitive) for a PREFIX verdict. */
static const char *const REPORT_WORDS[] = {"corrupt", "gap", "missing"};

/* ---- verdicts ---- */

enum verdict {
    V_FULL,
    V_PREFIX,
    V_SILENT_PREFIX,
    V_GAP,
    V_NOT_PREFIX,
    V_NO_REPORT,
    V_WRONG_DATA,
    V_HANG,
    V_CRASH,
    V_APPEND_LOST,
    V_APPEND_REUSE,
    V_NVERDICT
};
static const char *const VNAME[V_NVERDICT] = {"FULL",       "PREFIX",      "SILENT_PREFIX", "GAP",
                                              "NOT_PREFIX", "NO_REPORT",   "WRONG_DATA",    "HANG",
                                              "CRASH",      "APPEND_LOST", "APPEND_REUSE"};

/* ---- small helpers ---- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("integrity: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t rng_state;
static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) die("out of memory");
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

static bool icontains(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

/* ---- running the CLI ---- */

typedef struct run_result {
    int status; /* waitpid status */
    bool timed_out;
    buf out, err;
} run_result;

static const char *g_bin;
static const char *g_dir; /* SLUICE_DIR for the child */
static double g_timeout = 10.0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs g_bin with argv (argv[0] is ignored), feeding in (may be NULL) on its
 * stdin, collecting stdout and stderr; kills its process group with SIGKILL
 * after g_timeout seconds. */
static void run(char *const argv[], const char *in, size_t in_len, run_result *r)
{
    int pin[2], pout[2], perr[2];
    memset(r, 0, sizeof *r);
    if (pipe(pin) || pipe(pout) || pipe(perr)) die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        dup2(pin[0], 0), dup2(pout[1], 1), dup2(perr[1], 2);
        close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]);
        close(perr[0]), close(perr[1]);
        setenv("SLUICE_DIR", g_dir, 1);
        execv(g_bin, argv);
        _exit(127);
    }
    setpgid(pid, pid);
    close(pin[0]), close(pout[1]), close(perr[1]);
    size_t in_off = 0;
    if (!in || !in_len)
        close(pin[1]), pin[1] = -1;
    else
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
    double deadline = now_s() + g_timeout;
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        struct pollfd fds[3];
        int nf = 0, iout = -1, ierr = -1, iin = -1;
        if (out_open) iout = nf, fds[nf++] = (struct pollfd){pout[0], POLLIN, 0};
        if (err_open) ierr = nf, fds[nf++] = (struct pollfd){perr[0], POLLIN, 0};
        if (pin[1] >= 0) iin = nf, fds[nf++] = (struct pollfd){pin[1], POLLOUT, 0};
        double left = deadline - now_s();
        if (left <= 0) {
            r->timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        int pr = poll(fds, (nfds_t)nf, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (pr <= 0) continue;
        char tmp[65536];
        if (iout >= 0 && fds[iout].revents) {
            ssize_t k = read(pout[0], tmp, sizeof tmp);
            if (k > 0)
                buf_add(&r->out, tmp, (size_t)k);
            else
                out_open = false;
        }
        if (ierr >= 0 && fds[ierr].revents) {
            ssize_t k = read(perr[0], tmp, sizeof tmp);
            if (k > 0)
                buf_add(&r->err, tmp, (size_t)k);
            else
                err_open = false;
        }
        if (iin >= 0 && fds[iin].revents) {
            ssize_t k = write(pin[1], in + in_off, in_len - in_off);
            if (k > 0) in_off += (size_t)k;
            if (k < 0 || in_off == in_len) close(pin[1]), pin[1] = -1;
        }
    }
    if (pin[1] >= 0) close(pin[1]);
    close(pout[0]), close(perr[0]);
    /* Pipes closed; the child may still run (it closed them or hangs). */
    for (;;) {
        pid_t w = waitpid(pid, &r->status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) die("waitpid: %s", strerror(errno));
        if (now_s() > deadline) {
            r->timed_out = true;
            kill(-pid, SIGKILL);
            waitpid(pid, &r->status, 0);
            break;
        }
        usleep(1000);
    }
    /* Anything left in the group (none expected) goes too. */
    kill(-pid, SIGKILL);
    if (!r->out.p) buf_add(&r->out, "", 0);
    if (!r->err.p) buf_add(&r->err, "", 0);
}

static void run_free(run_result *r)
{
    free(r->out.p);
    free(r->err.p);
}

/* ---- files ---- */

static void path_join(char *dst, size_t cap, const char *a, const char *b)
{
    if ((size_t)snprintf(dst, cap, "%s/%s", a, b) >= cap) die("path too long: %s/%s", a, b);
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) die("opendir %s: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            path_join(p, sizeof p, path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        if (rmdir(path) != 0) die("rmdir %s: %s", path, strerror(errno));
    } else if (unlink(path) != 0) {
        die("unlink %s: %s", path, strerror(errno));
    }
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("open %s: %s", path, strerror(errno));
    buf b = {0};
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, k);
    fclose(f);
    *len = b.n;
    return b.p ? (uint8_t *)b.p : calloc(1, 1);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die("write %s: %s", path, strerror(errno));
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    uint8_t *p = read_file(from, &n);
    write_file(to, p, n);
    free(p);
}

static void cp_r(const char *from, const char *to)
{
    struct stat st;
    if (lstat(from, &st) != 0) die("stat %s: %s", from, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        copy_file(from, to);
        return;
    }
    if (mkdir(to, 0755) != 0) die("mkdir %s: %s", to, strerror(errno));
    DIR *d = opendir(from);
    if (!d) die("opendir %s: %s", from, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char a[4096], b[4096];
        path_join(a, sizeof a, from, e->d_name);
        path_join(b, sizeof b, to, e->d_name);
        cp_r(a, b);
    }
    closedir(d);
}

/* ---- the pristine log ---- */

typedef struct rec {
    int64_t offset;
    char value[64];
} rec;

typedef struct batch_info {
    int64_t base;
    uint32_t pos, len;
} batch_info;

typedef struct seg_info {
    int64_t base;
    size_t size;
    batch_info *b;
    size_t nb;
} seg_info;

static rec *g_recs;
static size_t g_nrecs;
static seg_info *g_segs;
static size_t g_nsegs;

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static int64_t get64(const uint8_t *p)
{
    return (int64_t)((uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32);
}

static void seg_name(char *dst, size_t cap, const char *pdir, int64_t base, const char *ext)
{
    if ((size_t)snprintf(dst, cap, "%s/%020" PRId64 ".%s", pdir, base, ext) >= cap)
        die("path too long");
}

static int cmp_seg(const void *a, const void *b)
{
    const seg_info *x = a, *y = b;
    return (x->base > y->base) - (x->base < y->base);
}

static void scan_segments(const char *pdir)
{
    DIR *d = opendir(pdir);
    if (!d) die("opendir %s: %s", pdir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != 24 || strcmp(e->d_name + 20, ".log") != 0) continue;
        g_segs = realloc(g_segs, (g_nsegs + 1) * sizeof *g_segs);
        seg_info *s = &g_segs[g_nsegs++];
        memset(s, 0, sizeof *s);
        s->base = strtoll(e->d_name, NULL, 10);
    }
    closedir(d);
    qsort(g_segs, g_nsegs, sizeof *g_segs, cmp_seg);
    for (size_t i = 0; i < g_nsegs; i++) {
        seg_info *s = &g_segs[i];
        char p[4096];
        seg_name(p, sizeof p, pdir, s->base, "log");
        uint8_t *data = read_file(p, &s->size);
        size_t pos = 0;
        while (pos + 44 <= s->size) {
            uint32_t len = get32(data + pos + 8);
            if (len < 44 || pos + len > s->size) die("%s: bad batch at byte %zu", p, pos);
            s->b = realloc(s->b, (s->nb + 1) * sizeof *s->b);
            s->b[s->nb++] = (batch_info){get64(data + pos), (uint32_t)pos, len};
            pos += len;
        }
        if (pos != s->size) die("%s: %zu trailing bytes", p, s->size - pos);
        free(data);
    }
}

static void free_segs(void)
{
    for (size_t i = 0; i < g_nsegs; i++) free(g_segs[i].b);
    free(g_segs);
    g_segs = NULL, g_nsegs = 0;
}

/* Produces batches of 1..12 records until the partition has at least six
 * segments and its active segment at least three batches. */
static void build_pristine(const char *dir)
{
    g_dir = dir;
    run_result r;
    char *create[] = {"sluice", "topic",   "create", "t", "--segment-bytes",
                      "1024",   "--fsync", "always", NULL};
    run(create, NULL, 0, &r);
    if (r.timed_out || !WIFEXITED(r.status) || WEXITSTATUS(r.status))
        die("topic create failed: %s", r.err.p);
    run_free(&r);
    char pdir[4096];
    path_join(pdir, sizeof pdir, dir, "t/0");
    int64_t off = 0;
    for (int c = 0;; c++) {
        if (c >= 24) {
            free_segs();
            scan_segments(pdir);
            if (g_nsegs >= 6 && g_segs[g_nsegs - 1].nb >= 3) break;
            if (c > 400) die("the log did not grow as expected (%zu segments)", g_nsegs);
        }
        int n = 1 + (int)rnd_below(12);
        buf in = {0};
        for (int i = 0; i < n; i++) {
            g_recs = realloc(g_recs, (g_nrecs + 1) * sizeof *g_recs);
            if (!g_recs) die("out of memory");
            rec *x = &g_recs[g_nrecs++];
            x->offset = off++;
            int fill = (int)rnd_below(30);
            int k = snprintf(x->value, sizeof x->value, "o%" PRId64 "-", x->offset);
            for (int j = 0; j < fill; j++) x->value[k + j] = (char)('a' + rnd_below(26));
            x->value[k + fill] = 0;
            buf_add(&in, x->value, strlen(x->value));
            buf_add(&in, "\n", 1);
        }
        char *produce[] = {"sluice", "produce", "t", NULL};
        run(produce, in.p, in.n, &r);
        free(in.p);
        if (r.timed_out || !WIFEXITED(r.status) || WEXITSTATUS(r.status))
            die("produce failed: %s", r.err.p);
        run_free(&r);
    }
}

/* ---- mutations ---- */

typedef enum { M_FLIP, M_TRUNC, M_DELETE, M_EMPTY, M_RENAME, M_COPY } mop;

typedef struct mutation {
    mop op;
    char kind[48];  /* e.g. flip/crc/active: how the expected table names it */
    char what[160]; /* exact description for the report */
    size_t seg;     /* index in g_segs */
    const char *ext;
    size_t byte; /* flip: byte; trunc: new size */
    int bit;
    int64_t to; /* rename/copy: new base */
} mutation;

static mutation *g_muts;
static size_t g_nmuts, g_capmuts;

static mutation *add_mut(void)
{
    if (g_nmuts == g_capmuts) {
        g_capmuts = g_capmuts ? 2 * g_capmuts : 256;
        g_muts = realloc(g_muts, g_capmuts * sizeof *g_muts);
        if (!g_muts) die("out of memory");
    }
    mutation *m = &g_muts[g_nmuts++];
    memset(m, 0, sizeof *m);
    return m;
}

/* The regions of a batch, as drawn in connectors/broker/batch.h. */
static const struct {
    const char *name;
    uint32_t off, len; /* len 0: to the end of the batch */
} REGIONS[] = {
    {"base_offset", 0, 8},
    {"length", 8, 4},
    {"crc", 12, 4},
    {"magic", 16, 1},
    {"attributes", 17, 1},
    {"reserved", 18, 2},
    {"last_offset_delta", 20, 4},
    {"record_count", 24, 4},
    {"first_ts", 28, 8},
    {"max_ts", 36, 8},
    {"records", 44, 0},
};
#define NREGIONS (sizeof REGIONS / sizeof REGIONS[0])

static const char *seg_role(size_t i)
{
    if (i + 1 == g_nsegs) return "active";
    if (i == 0) return "first";
    return "sealed";
}

/* Roles for kinds: the first segment is a sealed one too, but deleting it
 * also moves the log start, so file operations name it apart. In a segment,
 * the last batch of the active segment is apart ("active-tail"): damage there
 * looks like a write torn by a crash, anywhere else it cannot. */
static const char *batch_role(size_t s, size_t b)
{
    if (s + 1 < g_nsegs) return "sealed";
    return b + 1 == g_segs[s].nb ? "active-tail" : "active";
}

static void make_mutations(int per_region)
{
    size_t active = g_nsegs - 1;
    /* Bit flips: every region, in the active and in sealed segments. */
    for (size_t r = 0; r < NREGIONS; r++) {
        for (int k = 0; k < 2 * per_region; k++) {
            size_t s = (k & 1) ? active : (size_t)rnd_below(active ? active : 1);
            if (!g_segs[s].nb) continue;
            size_t bi = (size_t)rnd_below(g_segs[s].nb);
            const batch_info *b = &g_segs[s].b[bi];
            uint32_t len = REGIONS[r].len ? REGIONS[r].len : b->len - REGIONS[r].off;
            mutation *m = add_mut();
            m->op = M_FLIP, m->seg = s, m->ext = "log";
            m->byte = b->pos + REGIONS[r].off + (size_t)rnd_below(len);
            m->bit = (int)rnd_below(8);
            snprintf(m->kind, sizeof m->kind, "flip/%s/%s", REGIONS[r].name, batch_role(s, bi));
            snprintf(m->what, sizeof m->what,
                     "flip bit %d of byte %zu (%s of batch %" PRId64 ") in %020" PRId64 ".log",
                     m->bit, m->byte, REGIONS[r].name, b->base, g_segs[s].base);
        }
    }
    /* Truncation at every batch boundary (0 .. size exclusive), and one cut
     * inside a random batch of every segment. */
    for (size_t s = 0; s < g_nsegs; s++) {
        for (size_t i = 0; i < g_segs[s].nb; i++) {
            mutation *m = add_mut();
            m->op = M_TRUNC, m->seg = s, m->ext = "log", m->byte = g_segs[s].b[i].pos;
            snprintf(m->kind, sizeof m->kind, "trunc/boundary/%s", batch_role(s, i));
            snprintf(m->what, sizeof m->what,
                     "truncate %020" PRId64 ".log to %zu bytes (before batch %" PRId64 ")",
                     g_segs[s].base, m->byte, g_segs[s].b[i].base);
        }
        if (g_segs[s].nb) {
            size_t bi = (size_t)rnd_below(g_segs[s].nb);
            const batch_info *b = &g_segs[s].b[bi];
            mutation *m = add_mut();
            m->op = M_TRUNC, m->seg = s, m->ext = "log";
            m->byte = b->pos + 1 + (size_t)rnd_below(b->len - 1);
            snprintf(m->kind, sizeof m->kind, "trunc/mid/%s", batch_role(s, bi));
            snprintf(m->what, sizeof m->what,
                     "truncate %020" PRId64 ".log to %zu bytes (inside batch %" PRId64 ")",
                     g_segs[s].base, m->byte, b->base);
        }
    }
    /* File operations on every segment and its two index files. */
    static const char *const exts[] = {"log", "index", "timeindex"};
    for (size_t s = 0; s < g_nsegs; s++) {
        for (size_t x = 0; x < 3; x++) {
            for (mop op = M_DELETE; op <= M_COPY; op++) {
                mutation *m = add_mut();
                m->op = op, m->seg = s, m->ext = exts[x];
                int64_t next =
                    s + 1 < g_nsegs ? g_segs[s + 1].base : g_recs[g_nrecs - 1].offset + 1;
                int64_t span = next - g_segs[s].base;
                static const char *const opn[] = {"", "", "delete", "empty", "rename-up", "copy"};
                bool over = false;
                if (op == M_RENAME) /* a higher base inside its own range */
                    m->to = g_segs[s].base + 1 +
                            (span > 1 ? (int64_t)rnd_below((uint64_t)span - 1) : 0);
                if (op == M_COPY) { /* another segment's base, or past the end */
                    size_t o = (size_t)rnd_below(g_nsegs + 1);
                    m->to = (o == s || o == g_nsegs) ? next + 1000 : g_segs[o].base;
                    if (o != s && o != g_nsegs) {
                        over = rnd_below(2) == 0; /* onto that segment, or one past its base */
                        m->to += over ? 0 : 1;
                    }
                }
                snprintf(m->kind, sizeof m->kind, "%s%s/%s/%s", opn[op], over ? "-over" : "",
                         exts[x], seg_role(s));
                if (op == M_RENAME || op == M_COPY)
                    snprintf(m->what, sizeof m->what, "%s %020" PRId64 ".%s to %020" PRId64 ".%s",
                             opn[op], g_segs[s].base, exts[x], m->to, exts[x]);
                else
                    snprintf(m->what, sizeof m->what, "%s %020" PRId64 ".%s", opn[op],
                             g_segs[s].base, exts[x]);
            }
        }
    }
}

/* Applies m to the partition directory pdir; returns false when the file it
 * needs does not exist (an index the broker did not write), so it is skipped. */
static bool apply(const mutation *m, const char *pdir)
{
    char p[4096], q[4096];
    seg_name(p, sizeof p, pdir, g_segs[m->seg].base, m->ext);
    if (access(p, F_OK) != 0) return false;
    switch (m->op) {
    case M_FLIP: {
        size_t n;
        uint8_t *d = read_file(p, &n);
        if (m->byte >= n) die("flip past the end of %s", p);
        d[m->byte] ^= (uint8_t)(1u << m->bit);
        write_file(p, d, n);
        free(d);
        break;
    }
    case M_TRUNC:
        if (truncate(p, (off_t)m->byte) != 0) die("truncate %s: %s", p, strerror(errno));
        break;
    case M_DELETE:
        if (unlink(p) != 0) die("unlink %s: %s", p, strerror(errno));
        break;
    case M_EMPTY:
        if (truncate(p, 0) != 0) die("truncate %s: %s", p, strerror(errno));
        break;
    case M_RENAME:
        seg_name(q, sizeof q, pdir, m->to, m->ext);
        if (rename(p, q) != 0) die("rename %s: %s", p, strerror(errno));
        break;
    case M_COPY:
        seg_name(q, sizeof q, pdir, m->to, m->ext);
        copy_file(p, q);
        break;
    }
    return true;
}

/* ---- classification ---- */

static int64_t find_rec(int64_t off)
{
    size_t lo = 0, hi = g_nrecs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g_recs[mid].offset < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g_nrecs && g_recs[lo].offset == off ? (int64_t)lo : -1;
}

typedef struct outcome {
    enum verdict v;
    size_t lines; /* lines of output */
    char detail[160];
} outcome;

static outcome classify(const run_result *r)
{
    outcome o = {V_FULL, 0, ""};
    if (r->timed_out) {
        o.v = V_HANG;
        snprintf(o.detail, sizeof o.detail, "killed after %.0f s", g_timeout);
        return o;
    }
    if (WIFSIGNALED(r->status) || (WIFEXITED(r->status) && WEXITSTATUS(r->status) >= 128)) {
        o.v = V_CRASH;
        snprintf(o.detail, sizeof o.detail, "signal %d / status %d",
                 WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0,
                 WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1);
        return o;
    }
    int code = WEXITSTATUS(r->status);
    bool prefix = true, wrong = false;
    const char *s = r->out.p;
    size_t i = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char line[256];
        if (!nl || len >= sizeof line) {
            wrong = true;
            snprintf(o.detail, sizeof o.detail, "line %zu unterminated or too long", i + 1);
            break;
        }
        memcpy(line, s, len);
        line[len] = 0;
        char *sp = strchr(line, ' ');
        char *end = NULL;
        int64_t off = sp ? strtoll(line, &end, 10) : -1;
        int64_t at = sp && end == sp ? find_rec(off) : -1;
        if (at < 0 || strcmp(sp + 1, g_recs[at].value) != 0) {
            wrong = true;
            snprintf(o.detail, sizeof o.detail, "line %zu '%.80s' is not in the log", i + 1, line);
            break;
        }
        if (prefix && (i >= g_nrecs || (size_t)at != i)) {
            prefix = false;
            snprintf(o.detail, sizeof o.detail,
                     "line %zu: offset %" PRId64 " where %s%" PRId64 " was expected", i + 1, off,
                     i < g_nrecs ? "" : "nothing after ",
                     i < g_nrecs ? g_recs[i].offset : g_recs[g_nrecs - 1].offset);
        }
        i++;
        s = nl + 1;
    }
    o.lines = i;
    if (wrong) {
        o.v = V_WRONG_DATA;
        return o;
    }
    bool reported = false;
    for (size_t w = 0; w < sizeof REPORT_WORDS / sizeof REPORT_WORDS[0]; w++)
        reported |= icontains(r->err.p, REPORT_WORDS[w]);
    if (!prefix) {
        o.v = code == 0 ? V_GAP : V_NOT_PREFIX;
        return o;
    }
    if (code == 0) {
        o.v = i == g_nrecs ? V_FULL : V_SILENT_PREFIX;
        if (i != g_nrecs)
            snprintf(o.detail, sizeof o.detail,
                     "%zu of %zu records, exit 0, next offset %" PRId64 " missing", i, g_nrecs,
                     g_recs[i].offset);
        return o;
    }
    o.v = reported ? V_PREFIX : V_NO_REPORT;
    snprintf(o.detail, sizeof o.detail, "%zu of %zu records, exit %d", i, g_nrecs, code);
    return o;
}

/* Lines of out that are E[0], E[1], ... in order. */
static size_t prefix_len(const char *out)
{
    size_t i = 0;
    char want[96];
    while (i < g_nrecs) {
        int n = snprintf(want, sizeof want, "%" PRId64 " %s\n", g_recs[i].offset, g_recs[i].value);
        if (strncmp(out, want, (size_t)n) != 0) break;
        out += n, i++;
    }
    return i;
}

/* The second phase: after the mutated log was read (k1 records of E came
 * first), `produce` one record and read again. Whether the produce is
 * refused or not, no record read before may be lost, and an appended record
 * may never take an offset that E already used. */
static outcome append_check(size_t k1, size_t id, char *const consume[])
{
    outcome o = {V_FULL, 0, ""};
    char line[64];
    int n = snprintf(line, sizeof line, "appended-%zu\n", id);
    char *produce[] = {"sluice", "produce", "t", NULL};
    run_result r;
    run(produce, line, (size_t)n, &r);
    bool produced = !r.timed_out && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    if (r.timed_out) {
        o.v = V_HANG;
        snprintf(o.detail, sizeof o.detail, "produce after the mutation killed after %.0f s",
                 g_timeout);
    }
    run_free(&r);
    if (o.v != V_FULL) return o;
    run(consume, NULL, 0, &r);
    if (r.timed_out) {
        o.v = V_HANG;
        snprintf(o.detail, sizeof o.detail, "consume after %s append killed after %.0f s",
                 produced ? "an" : "a refused", g_timeout);
        run_free(&r);
        return o;
    }
    size_t k2 = prefix_len(r.out.p);
    line[n - 1] = 0;
    const char *a = strstr(r.out.p, line);
    if (k2 < k1) {
        o.v = V_APPEND_LOST;
        snprintf(o.detail, sizeof o.detail,
                 "produce %s; then only %zu of the %zu records read before",
                 produced ? "succeeded" : "failed", k2, k1);
    } else if (a) {
        const char *bol = a;
        while (bol > r.out.p && bol[-1] != '\n') bol--;
        int64_t off = strtoll(bol, NULL, 10);
        if (off <= g_recs[g_nrecs - 1].offset) {
            o.v = V_APPEND_REUSE;
            snprintf(o.detail, sizeof o.detail,
                     "the appended record took offset %" PRId64 ", already used by '%s'", off,
                     g_recs[find_rec(off)].value);
        }
    }
    run_free(&r);
    return o;
}

static bool kind_match(const char *pat, const char *kind)
{
    size_t l = strlen(pat);
    if (l && pat[l - 1] == '*') return strncmp(pat, kind, l - 1) == 0;
    /* "flip/ * /active" style: a '*' segment in the middle matches one part. */
    const char *star = strstr(pat, "/*/");
    if (star) {
        size_t pre = (size_t)(star - pat) + 1;
        if (strncmp(pat, kind, pre) != 0) return false;
        const char *rest = strchr(kind + pre, '/');
        return rest && strcmp(rest, star + 2) == 0;
    }
    return strcmp(pat, kind) == 0;
}

#define NXFAIL (sizeof XFAIL / sizeof XFAIL[0])
static size_t xfail_used[NXFAIL];

static const xfail *expected(const char *kind, enum verdict v)
{
    for (size_t i = 0; i < NXFAIL; i++)
        if (!strcmp(XFAIL[i].verdict, VNAME[v]) && kind_match(XFAIL[i].kind, kind)) {
            xfail_used[i]++;
            return &XFAIL[i];
        }
    return NULL;
}

/* ---- main ---- */

/* --self-test: the classifier against made-up consume results, so that the
 * verdicts the broker does not produce today (wrong data, crash, no report,
 * not a prefix...) are known to be told apart too. Returns failures. */
static int self_test(void)
{
    static rec recs[3] = {{0, "o0-a"}, {1, "o1-b"}, {5, "o5-c"}}; /* offsets may jump */
    g_recs = recs, g_nrecs = 3;
    static const struct {
        const char *out, *err;
        int status; /* waitpid-style */
        bool timed_out;
        enum verdict want;
    } cases[] = {
        {"0 o0-a\n1 o1-b\n5 o5-c\n", "", 0, false, V_FULL},
        {"0 o0-a\n1 o1-b\n5 o5-c\n", "stray warning\n", 0, false, V_FULL},
        {"0 o0-a\n", "t: corrupt data at offset 1\n", 1 << 8, false, V_PREFIX},
        {"", "offset gap 0..7\n", 1 << 8, false, V_PREFIX},
        {"0 o0-a\n1 o1-b\n5 o5-c\n", "missing segment after 5\n", 1 << 8, false, V_PREFIX},
        {"0 o0-a\n1 o1-b\n", "", 0, false, V_SILENT_PREFIX},
        {"", "", 0, false, V_SILENT_PREFIX},
        {"0 o0-a\n5 o5-c\n", "", 0, false, V_GAP},
        {"0 o0-a\n1 o1-b\n1 o1-b\n5 o5-c\n", "", 0, false, V_GAP},
        {"1 o1-b\n0 o0-a\n", "", 0, false, V_GAP},
        {"0 o0-a\n5 o5-c\n", "corrupt batch\n", 1 << 8, false, V_NOT_PREFIX},
        {"0 o0-a\n", "cannot open\n", 1 << 8, false, V_NO_REPORT},
        {"0 o0-a\n1 o1-X\n", "", 0, false, V_WRONG_DATA},
        {"0 o0-a\n2 o1-b\n", "", 0, false, V_WRONG_DATA},
        {"0 o0-a\n1 o1", "", 0, false, V_WRONG_DATA},
        {"0 o0-a\n", "", 0, true, V_HANG},
        {"0 o0-a\n", "", SIGSEGV, false, V_CRASH},
        {"0 o0-a\n", "", 134 << 8, false, V_CRASH},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_result r;
        memset(&r, 0, sizeof r);
        buf_add(&r.out, cases[i].out, strlen(cases[i].out));
        buf_add(&r.err, cases[i].err, strlen(cases[i].err));
        r.status = cases[i].status, r.timed_out = cases[i].timed_out;
        outcome o = classify(&r);
        if (o.v != cases[i].want) {
            printf("self-test case %zu: %s where %s was expected (%s)\n", i, VNAME[o.v],
                   VNAME[cases[i].want], o.detail);
            bad++;
        }
        run_free(&r);
    }
    /* The expected-failures patterns. */
    static const struct {
        const char *pat, *kind;
        bool match;
    } pats[] = {{"flip/*/active", "flip/crc/active", true},
                {"flip/*/active", "flip/crc/active-tail", false},
                {"flip/*/active", "flip/crc/sealed", false},
                {"copy*", "copy-over/log/first", true},
                {"trunc/mid/active*", "trunc/mid/active-tail", true},
                {"delete/log/*", "delete/index/sealed", false},
                {"empty/log/first", "empty/log/first", true}};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        if (kind_match(pats[i].pat, pats[i].kind) != pats[i].match) {
            printf("self-test: pattern %s %s %s\n", pats[i].pat,
                   pats[i].match ? "does not match" : "matches", pats[i].kind);
            bad++;
        }
    g_recs = NULL, g_nrecs = 0;
    printf("integrity --self-test: %d failure(s)\n", bad);
    return bad ? 1 : 0;
}

/* One mutation on a fresh copy of the pristine log: consume, then (when
 * that passed) the append check. *r keeps the first consume's output for
 * the report (its stderr), or nothing. Returns false when the mutation does
 * not apply (no such file). */
static bool try_mutation(const mutation *m, size_t id, const char *pristine, const char *mdir,
                         const char *mpdir, char *const consume[], run_result *r, outcome *o)
{
    rm_rf(mdir);
    cp_r(pristine, mdir);
    memset(r, 0, sizeof *r);
    if (!apply(m, mpdir)) return false;
    run(consume, NULL, 0, r);
    *o = classify(r);
    size_t k1 = prefix_len(r->out.p);
    if (o->v <= V_PREFIX) {
        run_free(r);
        memset(r, 0, sizeof *r);
        outcome o2 = append_check(k1, id, consume);
        if (o2.v != V_FULL) *o = o2;
    }
    return true;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: integrity SLUICE_BIN WORKDIR [--seed N] [--count N] [--timeout SECONDS] "
            "[--no-xfail] [--keep] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--self-test")) return self_test();
    if (argc < 3) usage();
    g_bin = argv[1];
    const char *work = argv[2];
    uint64_t seed = 1;
    long count = 0; /* 0: all the mutations drawn */
    bool verbose = false, use_xfail = true, keep = false;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = strtol(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            g_timeout = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--no-xfail"))
            use_xfail = false;
        else if (!strcmp(argv[i], "-v"))
            verbose = true;
        else if (!strcmp(argv[i], "--keep"))
            keep = true;
        else
            usage();
    }
    if (access(g_bin, X_OK) != 0) die("%s: not executable", g_bin);
    rng_state = seed;
    signal(SIGPIPE, SIG_IGN);

    char pristine[4096], mdir[4096], mpdir[4096];
    rm_rf(work);
    if (mkdir(work, 0755) != 0) die("mkdir %s: %s", work, strerror(errno));
    path_join(pristine, sizeof pristine, work, "pristine");
    path_join(mdir, sizeof mdir, work, "m");
    if (mkdir(pristine, 0755) != 0) die("mkdir %s: %s", pristine, strerror(errno));
    build_pristine(pristine); /* and scans its segments */
    path_join(mpdir, sizeof mpdir, mdir, "t/0");
    if (g_nsegs < 4) die("the pristine log has %zu segments; expected several", g_nsegs);
    size_t nbatches = 0;
    for (size_t i = 0; i < g_nsegs; i++) nbatches += g_segs[i].nb;
    printf("integrity: seed %" PRIu64
           ": %zu records in %zu batches, %zu segments (%zu sealed + active)\n",
           seed, g_nrecs, nbatches, g_nsegs, g_nsegs - 1);

    /* The pristine log itself must read back whole. */
    g_dir = pristine;
    char *consume[] = {"sluice", "consume", "t", "-e", "-f", "%o %s\\n", NULL};
    run_result r;
    run(consume, NULL, 0, &r);
    outcome o = classify(&r);
    if (o.v != V_FULL)
        die("the unmutated log reads back as %s: %s; stderr: %s", VNAME[o.v], o.detail, r.err.p);
    run_free(&r);

    make_mutations(8);
    /* A seeded shuffle, so that --count N takes a sample of every kind. */
    for (size_t i = g_nmuts; i > 1; i--) {
        size_t j = (size_t)rnd_below(i);
        mutation t = g_muts[i - 1];
        g_muts[i - 1] = g_muts[j], g_muts[j] = t;
    }
    size_t n = count > 0 && (size_t)count < g_nmuts ? (size_t)count : g_nmuts;

    size_t tried = 0, skipped = 0, per[V_NVERDICT] = {0}, xf[V_NVERDICT] = {0}, unexpected = 0;
    g_dir = mdir;
    for (size_t i = 0; i < n; i++) {
        const mutation *m = &g_muts[i];
        if (!try_mutation(m, i, pristine, mdir, mpdir, consume, &r, &o)) {
            skipped++;
            continue;
        }
        tried++;
        const xfail *x = o.v > V_PREFIX && use_xfail ? expected(m->kind, o.v) : NULL;
        if (o.v == V_HANG && !x) {
            /* An unexpected hang is tried once more with three times the
             * bound, so that a stall of a loaded machine is not taken for
             * one; a hang that does not come back is printed all the same. */
            double t = g_timeout;
            run_free(&r);
            g_timeout = 3 * t;
            outcome o2;
            try_mutation(m, i, pristine, mdir, mpdir, consume, &r, &o2);
            g_timeout = t;
            if (o2.v != V_HANG) {
                printf("  note: HANG [%s] %s (%s) did not come back with a %.0f s bound: %s %s\n",
                       m->kind, m->what, o.detail, 3 * t, VNAME[o2.v], o2.detail);
                o = o2;
                x = o.v > V_PREFIX && use_xfail ? expected(m->kind, o.v) : NULL;
            }
        }
        per[o.v]++;
        if (o.v > V_PREFIX) {
            char err1[200] = "";
            if (r.err.p) sscanf(r.err.p, "%199[^\n]", err1);
            if (x) {
                xf[o.v]++;
                if (verbose)
                    printf("  expected %s [%s] %s: %s (%s)\n", VNAME[o.v], m->kind, m->what,
                           o.detail, x->why);
            } else {
                unexpected++;
                printf("  FAIL %s [%s] %s: %s; stderr: %s\n", VNAME[o.v], m->kind, m->what,
                       o.detail, err1);
            }
        } else if (verbose) {
            printf("  ok %s [%s] %s %s\n", VNAME[o.v], m->kind, m->what, o.detail);
        }
        run_free(&r);
    }
    if (!keep) rm_rf(work);

    printf("integrity: seed %" PRIu64
           ": %zu mutations tried (%zu skipped: no such file), %zu full log, "
           "%zu exact prefix with report, %zu failures (%zu expected, %zu unexpected)\n",
           seed, tried, skipped, per[V_FULL], per[V_PREFIX], tried - per[V_FULL] - per[V_PREFIX],
           tried - per[V_FULL] - per[V_PREFIX] - unexpected, unexpected);
    for (int v = V_SILENT_PREFIX; v < V_NVERDICT; v++)
        if (per[v])
            printf("  %-13s %4zu  (%zu expected: the end of the active segment)\n", VNAME[v],
                   per[v], xf[v]);
    /* Entries that matched nothing: fixed (for this seed), or stale. */
    for (size_t i = 0; use_xfail && i < NXFAIL; i++)
        if (!xfail_used[i])
            printf("  expected-failure entry {%s, %s} matched nothing in this run\n", XFAIL[i].kind,
                   XFAIL[i].verdict);
    return unexpected ? 1 : 0;
}
