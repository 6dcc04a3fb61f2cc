/*
 * tests/unit/test_sqlite_sink.c - the SQLite sink (connectors/sqlite_sink.c).
 *
 * The exactly-once hooks are not driven by the engine yet, so the core
 * (connectors/sqlite_sink.h) is driven directly, as the engine will: stage,
 * seal (the pre-commit on a barrier), commit, and after a "crash" (a core
 * closed without committing) a new core that recovers the snapshot blob.
 * The database is read back with SQLite itself. Also: the at-least-once
 * path, through a whole pipeline; a table of another shape; paths that
 * cannot be a database; a corrupt blob; rescaling (the blob's instance keys
 * sluice_commits); a commit that fails on a locked database and is retried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sluice/sluice.h>
#include "connectors/sqlite_sink.h"

/* Rows of the test table: key (name TEXT, start INTEGER), value (total
 * INTEGER, avg REAL). A record is struct rec. */
typedef struct rec {
    char name[8];
    int64_t start;
    int64_t total;
} rec;

static const sl_sqlite_column keys[] = {{"name", SL_SQLITE_TEXT}, {"start", SL_SQLITE_INTEGER}};
static const sl_sqlite_column vals[] = {{"total", SL_SQLITE_INTEGER}, {"avg", SL_SQLITE_REAL}};

static int row(const void *r, uint32_t len, int64_t ts, sl_sqlite_value *out, void *ud)
{
    const rec *x = r;
    if (x->total < 0) return 1; /* skipped */
    out[0].text = x->name;
    out[0].text_len = (uint32_t)strlen(x->name);
    out[1].integer = x->start;
    out[2].integer = x->total;
    out[3].real = (double)x->total / 2;
    return 0;
}

static char dir[256], db[300];
static sl_sqlite_conf conf;

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-sqlite-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/out.db", dir);
    conf = (sl_sqlite_conf){.path = db,
                            .table = "results",
                            .keys = keys,
                            .n_keys = 2,
                            .values = vals,
                            .n_values = 2,
                            .row = row};
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static sli_sqlite *open_core(int instance, int guarantee, uint64_t restored)
{
    char err[512];
    sli_sqlite *s = NULL;
    int rc = sli_sqlite_open(&s, &conf, "out", instance, guarantee, restored, err, sizeof(err));
    if (rc) fail_msg("open: %s", err);
    return s;
}

static void stage(sli_sqlite *s, const char *name, int64_t start, int64_t total)
{
    rec r;
    memset(&r, 0, sizeof(r));
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.start = start;
    r.total = total;
    assert_int_equal(sli_sqlite_stage(s, &r, sizeof(r), start), 0);
}

/* The table as "name,start,total,avg;" lines in key order, or the error. */
static void dump(char *out, size_t cap)
{
    sqlite3 *d;
    out[0] = 0;
    assert_int_equal(sqlite3_open_v2(db, &d, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(d,
                                        "SELECT name, start, total, avg FROM results ORDER BY "
                                        "name, start",
                                        -1, &st, NULL),
                     SQLITE_OK);
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        n += (size_t)snprintf(out + n, cap - n, "%s,%lld,%lld,%g;", sqlite3_column_text(st, 0),
                              (long long)sqlite3_column_int64(st, 1),
                              (long long)sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3));
    sqlite3_finalize(st);
    sqlite3_close(d);
}

/* sluice_commits' checkpoint for (out, results, instance), -1 if none. */
static long long committed(int instance)
{
    sqlite3 *d;
    assert_int_equal(sqlite3_open_v2(db, &d, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(d,
                           "SELECT checkpoint FROM sluice_commits WHERE sink = 'out' AND tbl = "
                           "'results' AND instance = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, instance);
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(d);
    return v;
}

static void sql(const char *q)
{
    sqlite3 *d;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    char *e = NULL;
    if (sqlite3_exec(d, q, NULL, NULL, &e) != SQLITE_OK) fail_msg("%s: %s", q, e);
    sqlite3_close(d);
}

/* --- at-least-once / none: a batch at a time ------------------------------------------- */

static void test_flush_upserts(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_AT_LEAST_ONCE, 0);
    stage(s, "a", 0, 4);
    stage(s, "b", 10, 6);
    stage(s, "skip", 0, -1);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, ""); /* staged, not written */
    assert_int_equal(sli_sqlite_flush(s), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,4,2;b,10,6,3;");
    stage(s, "a", 0, 8); /* a replay with another value overwrites it */
    assert_int_equal(sli_sqlite_flush(s), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,8,4;b,10,6,3;");
    assert_int_equal(sli_sqlite_unwritten(s), 0);
    sli_sqlite_close(s);
    assert_int_equal(committed(0), -1); /* no sluice_commits without exactly-once */
}

/* The public sink in a pipeline (no checkpoints: guarantee NONE). */
static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    rec *r = out;
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "k%d", (int)(seq % 3));
    r->start = (int64_t)(seq / 3);
    r->total = (int64_t)seq;
    *ts = (int64_t)seq;
    return 0;
}

static void test_pipeline(void **state)
{
    sl_generator_conf g = {.fn = gen, .count = 3000};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_generator(p, "numbers", &g, sizeof(rec), NULL);
    s = sl_stream_rebalance(s);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_sqlite, &conf), 0);
    assert_int_equal(sl_pipeline_set_node_parallelism(p, "out", 3), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    sqlite3 *d;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(d, "SELECT count(*), sum(total) FROM results", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 3000);
    assert_int_equal(sqlite3_column_int64(st, 1), 2999 * 3000 / 2);
    sqlite3_finalize(st);
    /* WAL journal mode, as the sink set it */
    assert_int_equal(sqlite3_prepare_v2(d, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(d);
}

/* --- exactly-once ------------------------------------------------------------------------- */

static void test_stage_seal_commit(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s, "a", 0, 1);
    stage(s, "b", 0, 2);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    stage(s, "c", 0, 3); /* after the barrier: the next epoch */
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, ""); /* nothing written before the commit */
    assert_int_equal(committed(0), -1);
    assert_int_equal(sli_sqlite_commit(s, 1), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,0,2,1;");
    assert_int_equal(committed(0), 1);
    assert_int_equal(sli_sqlite_unwritten(s), 1); /* "c" waits for its checkpoint */
    /* the commit retried (or a commit with nothing sealed) changes nothing */
    assert_int_equal(sli_sqlite_commit(s, 1), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,0,2,1;");
    sl_buf_free(&blob);
    sli_sqlite_close(s);
}

/* Tags: commit(n) writes the epochs sealed under ids <= n only. */
static void test_commit_by_tag(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    sl_buf blob = {0};
    stage(s, "a", 0, 1);
    assert_int_equal(sli_sqlite_seal(s, 5, &blob), 0);
    stage(s, "b", 0, 2);
    assert_int_equal(sli_sqlite_seal(s, 6, &blob), 0);
    assert_int_equal(sli_sqlite_commit(s, 5), 0);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;");
    assert_int_equal(committed(0), 5);
    assert_int_equal(sli_sqlite_commit(s, 7), 0); /* 6 skipped: a later commit covers it */
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,0,2,1;");
    assert_int_equal(committed(0), 7);
    sl_buf_free(&blob);
    sli_sqlite_close(s);
}

/* A crash after the pre-commit (seal), before commit: the restart rolls the
 * checkpoint's rows forward, once. */
static void test_crash_before_commit(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s, "a", 0, 1);
    stage(s, "b", 10, 2);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    stage(s, "lost", 0, 9); /* after checkpoint 1: replayed by the source, not restored */
    sli_sqlite_close(s);    /* the crash */
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "");

    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 1);
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len, 1), 0);
    assert_int_equal(sli_sqlite_recover_skipped(s), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,10,2,1;");
    assert_int_equal(committed(0), 1);
    sli_sqlite_close(s);

    /* A second crash right after the roll forward: recovering again finds
     * checkpoint 1 committed and writes nothing (an edit made since stays). */
    sql("UPDATE results SET total = 100 WHERE name = 'a'");
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 1);
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len, 1), 0);
    assert_int_equal(sli_sqlite_recover_skipped(s), 1);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,100,0.5;b,10,2,1;");
    sli_sqlite_close(s);
    sl_buf_free(&blob);
}

/* A crash after the commit: the restore of that checkpoint writes nothing. */
static void test_recover_committed(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s, "a", 0, 1);
    sl_buf b1 = {0}, b2 = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &b1), 0);
    stage(s, "b", 0, 2);
    assert_int_equal(sli_sqlite_seal(s, 0, &b2), 0); /* checkpoint 2 before commit(1) */
    assert_int_equal(sli_sqlite_commit(s, 2), 0);
    sli_sqlite_close(s);
    sql("DELETE FROM results WHERE name = 'a'");
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 2);
    assert_int_equal(sli_sqlite_recover(s, b2.ptr, b2.len, 2), 0);
    assert_int_equal(sli_sqlite_recover_skipped(s), 1);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "b,0,2,1;"); /* 'a' not written again: 2 is committed */
    /* an older checkpoint than the committed one is in too */
    assert_int_equal(sli_sqlite_recover(s, b1.ptr, b1.len, 1), 0);
    assert_int_equal(sli_sqlite_recover_skipped(s), 2);
    sli_sqlite_close(s);
    /* a newer checkpoint than the committed one is not: both epochs again */
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 3);
    assert_int_equal(sli_sqlite_recover(s, b2.ptr, b2.len, 3), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,0,2,1;");
    assert_int_equal(committed(0), 3);
    sli_sqlite_close(s);
    sl_buf_free(&b1);
    sl_buf_free(&b2);
}

/* Rescaling: old instance 2's blob restored by new instance 0 is looked up
 * and recorded as instance 2's. */
static void test_rescale(void **state)
{
    sli_sqlite *s2 = open_core(2, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s2, "x", 0, 7);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s2, 0, &blob), 0);
    sli_sqlite_close(s2);
    sql("INSERT INTO sluice_commits VALUES ('out', 'results', 0, 9)"); /* instance 0 is ahead */
    sli_sqlite *s0 = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 4);
    assert_int_equal(sli_sqlite_recover(s0, blob.ptr, blob.len, 4), 0);
    assert_int_equal(sli_sqlite_recover_skipped(s0), 0);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "x,0,7,3.5;");
    assert_int_equal(committed(2), 4);
    assert_int_equal(committed(0), 9);
    sli_sqlite_close(s0);
    sl_buf_free(&blob);
}

/* A fresh start forgets the commit records of an earlier run: else a
 * restore of this run's checkpoint 1 would be skipped as "committed". */
static void test_fresh_start_forgets(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    sli_sqlite_close(s);
    sql("INSERT INTO sluice_commits VALUES ('out', 'results', 0, 50), ('out', 'results', 1, 50), "
        "('other', 'results', 0, 50)");
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    assert_int_equal(committed(0), -1);
    assert_int_equal(committed(1), -1);
    stage(s, "a", 0, 1);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    sli_sqlite_close(s);
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 1);
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len, 1), 0);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;");
    sli_sqlite_close(s);
    sl_buf_free(&blob);
    /* another sink's record is not touched */
    sqlite3 *d;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(d,
                                        "SELECT count(*) FROM sluice_commits WHERE sink = 'other'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(d);
}

/* A commit that cannot take the write lock fails with a message naming the
 * database; retried once the lock is free, it writes the epoch once. */
static void test_commit_retried_after_busy(void **state)
{
    conf.busy_timeout_ms = 50;
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s, "a", 0, 1);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    sqlite3 *d;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    assert_int_equal(sqlite3_exec(d, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    int rc = sli_sqlite_commit(s, 1);
    assert_int_equal(rc, SL_EBUSY);
    const char *m = sli_sqlite_commit_errmsg(s);
    assert_non_null(strstr(m, db));
    assert_non_null(strstr(m, "locked"));
    assert_null(strchr(m, '\n'));
    assert_int_equal(sli_sqlite_unwritten(s), 1); /* still pending */
    assert_int_equal(sqlite3_exec(d, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(d);
    assert_int_equal(sli_sqlite_commit(s, 1), 0);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;");
    assert_int_equal(committed(0), 1);
    assert_int_equal(sli_sqlite_unwritten(s), 0);
    sli_sqlite_close(s);
    sl_buf_free(&blob);
}

/* A commit that fails in the middle of its transaction (a trigger refuses
 * one row of the second epoch) writes nothing at all: neither the rows
 * before it nor the sluice_commits record; the epochs stay pending and the
 * retry writes them all. */
static void test_failed_commit_writes_nothing(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    sl_buf blob = {0};
    stage(s, "a", 0, 1);
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    stage(s, "b", 0, 2);
    stage(s, "boom", 0, 3);
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    sql("CREATE TRIGGER refuse BEFORE INSERT ON results WHEN NEW.name = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
    assert_int_equal(sli_sqlite_commit(s, 2), SL_EINVAL);
    assert_non_null(strstr(sli_sqlite_commit_errmsg(s), "injected failure"));
    assert_non_null(strstr(sli_sqlite_commit_errmsg(s), db));
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "");
    assert_int_equal(committed(0), -1);
    assert_int_equal(sli_sqlite_unwritten(s), 3);
    sql("DROP TRIGGER refuse");
    assert_int_equal(sli_sqlite_commit(s, 2), 0);
    dump(t, sizeof(t));
    assert_string_equal(t, "a,0,1,0.5;b,0,2,1;boom,0,3,1.5;");
    assert_int_equal(committed(0), 2);
    sli_sqlite_close(s);
    sl_buf_free(&blob);
}

/* A blob with a flipped bit, a truncated one, one of other columns. */
static void test_bad_blob(void **state)
{
    sli_sqlite *s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0);
    stage(s, "a", 0, 1);
    sl_buf blob = {0};
    assert_int_equal(sli_sqlite_seal(s, 0, &blob), 0);
    sli_sqlite_close(s);
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 1);
    blob.ptr[40] ^= 1;
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len, 1), SL_ECORRUPT);
    assert_non_null(strstr(sli_sqlite_errmsg(s), "CRC"));
    blob.ptr[40] ^= 1;
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len - 1, 1), SL_ECORRUPT);
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, 3, 1), SL_ECORRUPT);
    sli_sqlite_close(s);
    /* the same table written by a sink whose value column has another name */
    static const sl_sqlite_column v2[] = {{"total", SL_SQLITE_INTEGER}, {"mean", SL_SQLITE_REAL}};
    conf.table = "other";
    conf.values = v2;
    s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 1);
    assert_int_equal(sli_sqlite_recover(s, blob.ptr, blob.len, 1), SL_EINVAL);
    assert_non_null(strstr(sli_sqlite_errmsg(s), "other columns"));
    sli_sqlite_close(s);
    char t[512];
    dump(t, sizeof(t));
    assert_string_equal(t, "");
    sl_buf_free(&blob);
}

/* --- bad tables and paths ------------------------------------------------------------------- */

static void expect_open_error(int code, const char *needle)
{
    char err[512];
    sli_sqlite *s = NULL;
    int rc = sli_sqlite_open(&s, &conf, "out", 0, SL_GUARANTEE_AT_LEAST_ONCE, 0, err, sizeof(err));
    if (rc != code) fail_msg("rc %d, expected %d: %s", rc, code, err);
    assert_null(s);
    if (!strstr(err, needle)) fail_msg("'%s' not in '%s'", needle, err);
    assert_null(strchr(err, '\n'));
}

static void test_other_shape(void **state)
{
    static const struct {
        const char *create, *needle;
    } cases[] = {
        {"CREATE TABLE results (name TEXT, start INTEGER, total REAL, avg REAL, "
         "PRIMARY KEY (name, start))",
         "column 3 is 'total REAL', the sink writes 'total INTEGER'"},
        {"CREATE TABLE results (name TEXT, start INTEGER, total INTEGER, PRIMARY KEY (name, "
         "start))",
         "it has 3 columns, the sink writes 4 (column 4 'avg REAL' is missing)"},
        {"CREATE TABLE results (name TEXT, start INTEGER, total INTEGER, avg REAL, extra TEXT, "
         "PRIMARY KEY (name, start))",
         "column 5 'extra TEXT'"},
        {"CREATE TABLE results (name TEXT PRIMARY KEY, start INTEGER, total INTEGER, avg REAL)",
         "column 2 is 'start INTEGER', the sink writes 'start INTEGER, primary key column 2'"},
        {"CREATE TABLE results (label TEXT, start INTEGER, total INTEGER, avg REAL, PRIMARY KEY "
         "(label, start))",
         "column 1 is 'label TEXT, primary key column 1', the sink writes 'name TEXT, primary "
         "key column 1'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unlink(db);
        sql(cases[i].create);
        expect_open_error(SL_EINVAL, cases[i].needle);
        expect_open_error(SL_EINVAL, db);
    }
    /* the same shape, spelt in other case, is accepted */
    unlink(db);
    sql("CREATE TABLE results (NAME text, start integer, total INTEGER, avg real, PRIMARY KEY "
        "(name, start))");
    sli_sqlite *s = open_core(0, SL_GUARANTEE_AT_LEAST_ONCE, 0);
    sli_sqlite_close(s);
}

static void test_bad_paths(void **state)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/no-such-dir/out.db", dir);
    conf.path = p;
    expect_open_error(SL_EIO, "unable to open database file");
    expect_open_error(SL_EIO, p);
    /* a file that is not a database */
    snprintf(p, sizeof(p), "%s/text.db", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("this is not an SQLite database, just some text that is long enough to have a header "
          "of one hundred bytes or more: padding padding padding\n",
          f);
    fclose(f);
    expect_open_error(SL_ECORRUPT, "file is not a database");
    /* a directory */
    conf.path = dir;
    expect_open_error(SL_EIO, dir);
    /* bad confs */
    conf.path = db;
    conf.n_keys = 0;
    expect_open_error(SL_EINVAL, "needs >= 1 key column");
    conf.n_keys = 2;
    static const sl_sqlite_column dup[] = {{"total", SL_SQLITE_INTEGER}, {"NAME", SL_SQLITE_REAL}};
    conf.values = dup;
    expect_open_error(SL_EINVAL, "column 'NAME' given twice");
    static const sl_sqlite_column badtype[] = {{"total", 7}, {"avg", SL_SQLITE_REAL}};
    conf.values = badtype;
    expect_open_error(SL_EINVAL, "column 'total' has type 7");
}

/* A table name and column names that need quoting. */
static int row2(const void *r, uint32_t len, int64_t ts, sl_sqlite_value *out, void *ud)
{
    out[0].integer = ts;
    out[1].text = "it's";
    out[1].text_len = 4;
    return 0;
}

static void test_quoting(void **state)
{
    static const sl_sqlite_column k[] = {{"the \"key\"", SL_SQLITE_INTEGER}};
    static const sl_sqlite_column v[] = {{"select", SL_SQLITE_TEXT}};
    sl_sqlite_conf c = {.path = db,
                        .table = "my table; drop",
                        .keys = k,
                        .n_keys = 1,
                        .values = v,
                        .n_values = 1,
                        .row = row2};
    char err[512];
    sli_sqlite *s = NULL;
    assert_int_equal(sli_sqlite_open(&s, &c, "out", 0, SL_GUARANTEE_NONE, 0, err, sizeof(err)), 0);
    assert_int_equal(sli_sqlite_stage(s, "", 0, 42), 0);
    assert_int_equal(sli_sqlite_flush(s), 0);
    sli_sqlite_close(s);
    sqlite3 *d;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(d, "SELECT \"the \"\"key\"\"\", \"select\" FROM \"my table; drop\"", -1,
                           &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 42);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "it's");
    sqlite3_finalize(st);
    sqlite3_close(d);
}

/* commit on one thread while another stages and seals (the coordinator and
 * a worker): every row is written exactly once, none is lost. */
typedef struct race {
    sli_sqlite *s;
    _Atomic int sealed;
    int rc; /* the committer's first failure (cmocka asserts only on the main thread) */
} race;

static void *committer(void *arg)
{
    race *r = arg;
    uint64_t id = 1;
    for (;;) {
        int sealed = atomic_load(&r->sealed);
        int rc = sli_sqlite_commit(r->s, id++);
        if (rc && !r->rc) r->rc = rc;
        if (sealed < 0) break;
    }
    return NULL;
}

static void test_commit_concurrent(void **state)
{
    race r = {.s = open_core(0, SL_GUARANTEE_EXACTLY_ONCE, 0)};
    atomic_init(&r.sealed, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, committer, &r), 0);
    sl_buf blob = {0};
    for (int e = 0; e < 50; e++) {
        for (int i = 0; i < 20; i++) {
            char nm[8];
            snprintf(nm, sizeof(nm), "e%d", e);
            stage(r.s, nm, i, e * 100 + i);
        }
        blob.len = 0;
        assert_int_equal(sli_sqlite_seal(r.s, 0, &blob), 0);
        atomic_store(&r.sealed, e + 1);
    }
    atomic_store(&r.sealed, -1);
    pthread_join(th, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(sli_sqlite_unwritten(r.s), 0);
    sli_sqlite_close(r.s);
    sl_buf_free(&blob);
    sqlite3 *d;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(d, "SELECT count(*), sum(total) FROM results", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 1000);
    long long want = 0;
    for (int e = 0; e < 50; e++)
        for (int i = 0; i < 20; i++) want += e * 100 + i;
    assert_int_equal(sqlite3_column_int64(st, 1), want);
    sqlite3_finalize(st);
    sqlite3_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flush_upserts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_seal_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_by_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_before_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rescale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_start_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_retried_after_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quoting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
