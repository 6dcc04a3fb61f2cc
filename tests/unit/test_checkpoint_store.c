/*
 * tests/unit/test_checkpoint_store.c - engine/checkpoint.c, checkpoint
 * storage: round trip of state blobs and source positions, keeping the last
 * K, fallback past truncated / bit-flipped / incomplete checkpoints with a
 * warning, refusal of another graph's checkpoint with the difference named,
 * a directory that is a file, and fault injection at every fsio call of a
 * commit (the checkpoint is then either complete and readable or absent, and
 * the previous one intact), a simulated crash (forked child) before every
 * fsio call of a commit, and `sluice checkpoints DIR`.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "engine/base/fsio.h"
#include "engine/checkpoint.h"
#include "sluice/error.h"

static const sli_chk_node graph[] = {{"src", "source"}, {"count", "window"}, {"out", "sink"}};
#define NG (sizeof graph / sizeof graph[0])

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/sluice-chk-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *d)
{
    sli_fsio_fail_reset();
    assert_int_equal(sli_fsio_remove_tree(d), 0);
}

/* Blob contents depend on (id, instance) so a reader can check them. */
static void fill(unsigned char *b, size_t n, uint64_t id, uint32_t inst)
{
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 31 + id * 7 + inst);
}

/* Writes checkpoint id: 2 instances of "count" (1000 and 3 bytes), an empty
 * blob of "out", and two split positions of "src" (8 bytes = id*100 and 3). */
static int write_chk(sli_chk_store *s, uint64_t id)
{
    sli_chk_writer *w;
    int rc = sli_chk_begin(s, id, &w);
    if (rc < 0) return rc;
    unsigned char a[1000], b[3];
    fill(a, sizeof a, id, 0);
    fill(b, sizeof b, id, 1);
    uint64_t off = id * 100;
    if ((rc = sli_chk_add_state(w, "count", 0, 0, 511, a, sizeof a)) < 0) goto fail;
    if ((rc = sli_chk_add_state(w, "count", 1, 512, 1023, b, sizeof b)) < 0) goto fail;
    if ((rc = sli_chk_add_state(w, "out", 0, 0, 1023, NULL, 0)) < 0) goto fail;
    if ((rc = sli_chk_add_position(w, "src", 0, &off, 8)) < 0) goto fail;
    if ((rc = sli_chk_add_position(w, "src", 1, "xyz", 3)) < 0) goto fail;
    return sli_chk_commit(w);
fail:
    sli_chk_abort(w);
    return rc;
}

static void check_chk(const sli_chk_reader *r, uint64_t id)
{
    assert_int_equal(sli_chk_reader_id(r), id);
    assert_int_equal(sli_chk_reader_nstates(r), 3);
    unsigned char a[1000], b[3];
    fill(a, sizeof a, id, 0);
    fill(b, sizeof b, id, 1);
    const sli_chk_state *x = sli_chk_reader_state(r, "count", 0);
    assert_non_null(x);
    assert_int_equal(x->len, sizeof a);
    assert_memory_equal(x->data, a, sizeof a);
    assert_int_equal(x->kg_first, 0);
    assert_int_equal(x->kg_last, 511);
    x = sli_chk_reader_state(r, "count", 1);
    assert_non_null(x);
    assert_int_equal(x->len, 3);
    assert_memory_equal(x->data, b, 3);
    assert_int_equal(x->kg_first, 512);
    x = sli_chk_reader_state(r, "out", 0);
    assert_non_null(x);
    assert_int_equal(x->len, 0);
    assert_null(sli_chk_reader_state(r, "count", 2));
    assert_int_equal(sli_chk_reader_npositions(r), 2);
    const sli_chk_position *p = sli_chk_reader_position_at(r, 0);
    assert_string_equal(p->node, "src");
    assert_int_equal(p->split, 0);
    assert_int_equal(p->len, 8);
    uint64_t off;
    memcpy(&off, p->pos, 8);
    assert_int_equal(off, id * 100);
    p = sli_chk_reader_position_at(r, 1);
    assert_int_equal(p->split, 1);
    assert_int_equal(p->len, 3);
    assert_memory_equal(p->pos, "xyz", 3);
}

static sli_chk_store *open_store(const char *d, unsigned keep)
{
    sli_chk_store *s;
    char err[256];
    assert_int_equal(sli_chk_store_open(&s, d, graph, NG, keep, err, sizeof err), 0);
    return s;
}

static int count_dirs(sli_chk_store *s)
{
    uint64_t *ids;
    size_t n;
    assert_int_equal(sli_chk_list(s, &ids, &n), 0);
    free(ids);
    return (int)n;
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(sli_crc32c(0, "123456789", 9), 0xE3069283u);
    unsigned char buf[100];
    for (int i = 0; i < 100; i++) buf[i] = (unsigned char)(i * 13);
    uint32_t whole = sli_crc32c(0, buf, 100);
    assert_int_equal(sli_crc32c(sli_crc32c(0, buf, 37), buf + 37, 63), whole);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *d = tmpdir();
    char sub[512];
    snprintf(sub, sizeof sub, "%s/chk", d); /* made by the first begin */
    sli_chk_store *s = open_store(sub, 3);
    sli_chk_reader *r;
    char warn[512];
    assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), SL_ENOENT);
    assert_int_equal(write_chk(s, 1), 0);
    assert_int_equal(write_chk(s, 2), 0);
    assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
    assert_string_equal(warn, "");
    check_chk(r, 2);
    assert_int_equal(sli_chk_reader_fingerprint(r), sli_chk_fingerprint(graph, NG));
    sli_chk_reader_free(r);
    assert_int_equal(sli_chk_open(s, 1, &r), 0);
    check_chk(r, 1);
    sli_chk_reader_free(r);
    /* A complete id cannot be written again; bad arguments are refused. */
    sli_chk_writer *w;
    assert_int_equal(sli_chk_begin(s, 2, &w), SL_EEXIST);
    assert_int_equal(sli_chk_begin(s, 3, &w), 0);
    sli_chk_writer *w2;
    assert_int_equal(sli_chk_begin(s, 4, &w2), SL_ESTATE);
    assert_int_equal(sli_chk_add_state(w, "nosuch", 0, 0, 1, "a", 1), SL_EINVAL);
    assert_int_equal(sli_chk_add_state(w, "count", 0, 5, 4, "a", 1), SL_EINVAL);
    assert_int_equal(sli_chk_add_state(w, "count", 0, 0, 4, "a", 1), 0);
    assert_int_equal(sli_chk_add_state(w, "count", 0, 0, 4, "a", 1), SL_EEXIST);
    assert_int_equal(sli_chk_add_position(w, "src", 0, "a", 1), 0);
    assert_int_equal(sli_chk_add_position(w, "src", 0, "a", 1), SL_EEXIST);
    sli_chk_abort(w); /* the staged files go */
    assert_false(sli_chk_has_manifest(s, 3));
    assert_int_equal(count_dirs(s), 2);
    assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
    check_chk(r, 2);
    sli_chk_reader_free(r);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

static void test_keep_k(void **state)
{
    (void)state;
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 2);
    /* An incomplete leftover (a crash before its manifest) older than the
     * newest complete checkpoint goes too. */
    char p[512];
    snprintf(p, sizeof p, "%s/chk-1", d);
    assert_int_equal(mkdir(p, 0777), 0);
    for (uint64_t id = 2; id <= 6; id++) assert_int_equal(write_chk(s, id), 0);
    uint64_t *ids;
    size_t n;
    assert_int_equal(sli_chk_list(s, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 6);
    free(ids);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

/* Damage one file of checkpoint 3 (of 1..3) and check that open_latest falls
 * back to 2 with one warning line naming checkpoint 3. */
enum damage { TRUNC_MANIFEST, FLIP_MANIFEST, TRUNC_STATE, FLIP_STATE, NO_MANIFEST, NO_STATE };

static void damage_file(const char *path, enum damage how)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if (how == TRUNC_MANIFEST || how == TRUNC_STATE) {
        assert_int_equal(truncate(path, st.st_size - 5), 0);
        return;
    }
    if (how == NO_MANIFEST || how == NO_STATE) {
        assert_int_equal(unlink(path), 0);
        return;
    }
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    off_t at = st.st_size / 2;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void test_fallback(void **state)
{
    (void)state;
    static const struct {
        enum damage how;
        const char *file;
        const char *says;
    } cases[] = {
        {TRUNC_MANIFEST, "MANIFEST", "manifest"},
        {FLIP_MANIFEST, "MANIFEST", "manifest CRC"},
        {TRUNC_STATE, "state-000000.bin", "state-000000.bin"},
        {FLIP_STATE, "state-000000.bin", "CRC mismatch"},
        {FLIP_STATE, "state-000001.bin", "state-000001.bin"},
        {NO_MANIFEST, "MANIFEST", "incomplete"},
        {NO_STATE, "state-000002.bin", "state-000002.bin"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *d = tmpdir();
        sli_chk_store *s = open_store(d, 5);
        for (uint64_t id = 1; id <= 3; id++) assert_int_equal(write_chk(s, id), 0);
        char p[512];
        snprintf(p, sizeof p, "%s/chk-3/%s", d, cases[k].file);
        damage_file(p, cases[k].how);
        sli_chk_reader *r;
        char warn[1024];
        assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
        check_chk(r, 2);
        sli_chk_reader_free(r);
        if (!strstr(warn, cases[k].says)) print_error("case %zu: warning: %s\n", k, warn);
        assert_non_null(strstr(warn, "checkpoint 3 skipped: "));
        assert_non_null(strstr(warn, cases[k].says));
        assert_non_null(strchr(warn, '\n'));
        assert_null(strchr(warn, '\n') + 1 == NULL ? NULL : strchr(strchr(warn, '\n') + 1, '\n'));
        assert_int_equal(sli_chk_open(s, 3, &r),
                         cases[k].how == NO_MANIFEST ? SL_ENOENT : SL_ECORRUPT);
        /* Both newest damaged: two warnings, checkpoint 1. */
        snprintf(p, sizeof p, "%s/chk-2/%s", d, cases[k].file);
        damage_file(p, cases[k].how);
        assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
        check_chk(r, 1);
        assert_non_null(strstr(warn, "checkpoint 2 skipped: "));
        sli_chk_reader_free(r);
        sli_chk_store_free(s);
        rm_rf(d);
        free(d);
    }
}

static void test_other_graph(void **state)
{
    (void)state;
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 3);
    assert_int_equal(write_chk(s, 1), 0);
    sli_chk_store_free(s);
    static const sli_chk_node other[] = {
        {"src", "source"}, {"count", "reduce"}, {"alerts", "sink"}};
    char err[256];
    assert_int_equal(sli_chk_store_open(&s, d, other, 3, 3, err, sizeof err), 0);
    sli_chk_reader *r;
    char warn[256];
    assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), SL_EINVAL);
    const char *m = sli_chk_store_errmsg(s);
    assert_non_null(strstr(m, "another graph"));
    assert_non_null(strstr(m, "\"count\" is a window in the checkpoint, a reduce in this job"));
    assert_non_null(strstr(m, "\"out\" (sink) only in the checkpoint"));
    assert_non_null(strstr(m, "\"alerts\" (sink) only in this job"));
    assert_null(strchr(m, '\n'));
    sli_chk_store_free(s);
    /* Inspection (no graph) opens it. */
    assert_int_equal(sli_chk_store_open(&s, d, NULL, 0, 1, err, sizeof err), 0);
    assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
    check_chk(r, 1);
    sli_chk_reader_free(r);
    sli_chk_writer *w;
    assert_int_equal(sli_chk_begin(s, 2, &w), SL_ESTATE);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

static void test_bad_dir(void **state)
{
    (void)state;
    char *d = tmpdir();
    char f[512];
    snprintf(f, sizeof f, "%s/file", d);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    sli_chk_store *s;
    char err[256];
    assert_int_equal(sli_chk_store_open(&s, f, graph, NG, 3, err, sizeof err), SL_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "not a directory"));
    assert_null(strchr(err, '\n'));
    /* Unwritable: mkdir of the parent's child fails with EACCES (injected,
     * since tests may run as root). */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", d);
    s = open_store(sub, 3);
    sli_fsio_fail_after(SLI_FSIO_MKDIR, 0, EACCES, true);
    sli_chk_writer *w;
    assert_int_equal(sli_chk_begin(s, 1, &w), SL_EPERM);
    sli_fsio_fail_reset();
    assert_non_null(strstr(sli_chk_store_errmsg(s), "cannot create"));
    assert_null(strchr(sli_chk_store_errmsg(s), '\n'));
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

/* Fail the k-th fsio call (every kind, then ENOSPC) for k = 0.. until a
 * commit runs with no injected failure. After each attempt the checkpoint is
 * either complete and readable or absent, and checkpoint 1 is intact. */
static void faults(int err, unsigned mask, bool persistent, long min_calls)
{
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 1);
    assert_int_equal(write_chk(s, 1), 0);
    long k;
    int completed = 0;
    for (k = 0; k < 1000; k++) {
        sli_fsio_fail_after(mask, k, err, persistent);
        int rc = write_chk(s, 2);
        long injected = sli_fsio_failures();
        sli_fsio_fail_reset();
        sli_chk_reader *r;
        char warn[1024];
        if (rc == 0) {
            /* Committed: 2 is complete and readable; 1 went (keep 1) unless
             * the injected failure hit the pruning. */
            assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
            check_chk(r, 2);
            sli_chk_reader_free(r);
            completed++;
            if (injected == 0) break;
            /* Remove 2 to start the next round from checkpoint 1 alone. */
            char p[512];
            snprintf(p, sizeof p, "%s/chk-2", d);
            assert_int_equal(sli_fsio_remove_tree(p), 0);
            if (!sli_chk_has_manifest(s, 1)) {
                sli_fsio_remove_tree(d);
                assert_int_equal(write_chk(s, 1), 0);
                snprintf(p, sizeof p, "%s/chk-2", d);
                assert_int_equal(sli_fsio_remove_tree(p), 0);
            }
        } else {
            assert_true(injected > 0);
            assert_null(strchr(sli_chk_store_errmsg(s), '\n'));
            if (sli_chk_has_manifest(s, 2)) {
                /* Only when the manifest was renamed in, its directory's
                 * fsync failed and the persistent failure kept abort from
                 * unlinking it: then checkpoint 2 is complete and valid. */
                assert_true(persistent);
                assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
                check_chk(r, 2);
                sli_chk_reader_free(r);
                char p[512];
                snprintf(p, sizeof p, "%s/chk-2", d);
                assert_int_equal(sli_fsio_remove_tree(p), 0);
                continue;
            }
            /* A persistent failure can keep the cleanup from removing the
             * staged directory: it is then an incomplete checkpoint, skipped
             * with a warning. A single failure leaves nothing behind. */
            assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
            check_chk(r, 1);
            if (persistent) {
                if (warn[0]) assert_non_null(strstr(warn, "checkpoint 2 skipped: "));
                char p[512];
                snprintf(p, sizeof p, "%s/chk-2", d);
                assert_int_equal(sli_fsio_remove_tree(p), 0);
            } else {
                assert_string_equal(warn, "");
            }
            assert_int_equal(count_dirs(s), 1);
            sli_chk_reader_free(r);
            assert_null(strchr(sli_chk_store_errmsg(s), '\n'));
        }
    }
    if (k < min_calls) print_error("only %ld calls of mask %#x\n", k, mask);
    assert_true(k >= min_calls); /* the loop really walked through the calls */
    assert_true(k < 1000);
    assert_true(completed >= 1);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

static void test_faults_every_call(void **state)
{
    (void)state;
    /* Per commit of write_chk: mkdir x2, fsync of DIR, 3 state files (open,
     * 4 writes, fsync each), the manifest (open, write, fsync, rename, fsync
     * of its directory). */
    faults(EIO, SLI_FSIO_ALL, false, 20);
    faults(EIO, SLI_FSIO_ALL, true, 20);
    faults(ENOSPC, SLI_FSIO_WRITE, true, 10);
    faults(EIO, SLI_FSIO_FSYNC, false, 5);
    faults(EIO, SLI_FSIO_RENAME, false, 1);
}

/* Disk full gives SL_EFULL and a message naming the file. */
static void test_disk_full(void **state)
{
    (void)state;
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 3);
    assert_int_equal(write_chk(s, 1), 0);
    sli_fsio_fail_after(SLI_FSIO_WRITE, 0, ENOSPC, true);
    assert_int_equal(write_chk(s, 2), SL_EFULL);
    sli_fsio_fail_reset();
    assert_non_null(strstr(sli_chk_store_errmsg(s), "state-000000.bin"));
    sli_fsio_fail_after(SLI_FSIO_RENAME, 0, EIO, true);
    assert_int_equal(write_chk(s, 2), SL_EIO);
    sli_fsio_fail_reset();
    assert_non_null(strstr(sli_chk_store_errmsg(s), "manifest"));
    assert_false(sli_chk_has_manifest(s, 2));
    assert_int_equal(count_dirs(s), 1);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

/* A crash (the process ends, as by kill -9) before the k-th fsio call of a
 * commit, k = 0.. until a child completes: the next open gives checkpoint 2
 * complete, or checkpoint 1 with at most a warning about an incomplete or
 * corrupt 2; and the next commit of 2 succeeds (the leftover is replaced). */
static void test_crash_every_call(void **state)
{
    (void)state;
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 3);
    assert_int_equal(write_chk(s, 1), 0);
    long k;
    for (k = 0; k < 1000; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            sli_fsio_crash_after(SLI_FSIO_ALL, k);
            _exit(write_chk(s, 2) == 0 ? 0 : 1);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        int code = WEXITSTATUS(st);
        assert_true(code == 0 || code == SLI_FSIO_CRASH_STATUS);
        sli_chk_reader *r;
        char warn[1024];
        assert_int_equal(sli_chk_open_latest(s, &r, warn, sizeof warn), 0);
        uint64_t got = sli_chk_reader_id(r);
        check_chk(r, got);
        sli_chk_reader_free(r);
        if (code == 0) {
            assert_int_equal(got, 2);
            break;
        }
        if (got == 1) assert_false(sli_chk_has_manifest(s, 2));
        if (got == 1 && warn[0]) assert_non_null(strstr(warn, "checkpoint 2 skipped: "));
        /* Recovery writes 2 again over an incomplete leftover (a complete
         * one, crashed only after its manifest was in place, is kept). */
        if (got == 1) assert_int_equal(write_chk(s, 2), 0);
        char p[512];
        snprintf(p, sizeof p, "%s/chk-2", d);
        assert_int_equal(sli_fsio_remove_tree(p), 0);
    }
    assert_true(k >= 20);
    assert_true(k < 1000);
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

/* Runs `sluice checkpoints ARGS`, returns the exit status, output in out. */
static int run_cli(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s checkpoints %s 2>&1", SLUICE_BIN, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli_list(void **state)
{
    (void)state;
    char *d = tmpdir();
    sli_chk_store *s = open_store(d, 5);
    for (uint64_t id = 1; id <= 3; id++) assert_int_equal(write_chk(s, id), 0);
    char p[512], out[8192];
    snprintf(p, sizeof p, "%s/chk-2/state-000001.bin", d);
    damage_file(p, FLIP_STATE);
    snprintf(p, sizeof p, "%s/chk-4", d);
    assert_int_equal(mkdir(p, 0777), 0);
    assert_int_equal(run_cli(d, out, sizeof out), 0);
    print_message("%s", out);
    char *l1 = strstr(out, "\n1 "), *l2 = strstr(out, "\n2 "), *l3 = strstr(out, "\n3 "),
         *l4 = strstr(out, "\n4 ");
    assert_non_null(l1);
    assert_non_null(l2);
    assert_non_null(l3);
    assert_non_null(l4);
    assert_true(l1 < l2 && l2 < l3 && l3 < l4);
    *strchr(l1 + 1, '\n') = 0;
    *strchr(l2 + 1, '\n') = 0;
    *strchr(l3 + 1, '\n') = 0;
    assert_non_null(strstr(l1 + 1, "complete"));
    assert_non_null(strstr(l1 + 1, "src[0]=100 src[1]=0x78797a"));
    assert_non_null(strstr(l2 + 1, "corrupt"));
    assert_non_null(strstr(l2 + 1, "state-000001.bin"));
    assert_non_null(strstr(l3 + 1, "src[0]=300"));
    assert_non_null(strstr(l4 + 1, "incomplete"));
    assert_int_equal(run_cli("", out, sizeof out), 2);
    snprintf(p, sizeof p, "%s/nosuch", d);
    assert_int_equal(run_cli(p, out, sizeof out), 1);
    assert_non_null(strstr(out, "no such directory"));
    snprintf(p, sizeof p, "%s/chk-1/MANIFEST", d);
    assert_int_equal(run_cli(p, out, sizeof out), 1);
    assert_non_null(strstr(out, "not a directory"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
    sli_chk_store_free(s);
    rm_rf(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_keep_k),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_other_graph),
        cmocka_unit_test(test_bad_dir),
        cmocka_unit_test(test_faults_every_call),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_cli_list),
        cmocka_unit_test(test_crash_every_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
