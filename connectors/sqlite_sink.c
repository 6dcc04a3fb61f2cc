/*
 * connectors/sqlite_sink.c - the idempotent SQLite sink (sluice/sqlite.h).
 *
 * Every record becomes one row, written with an UPSERT on the table's
 * primary key (INSERT ... ON CONFLICT (keys) DO UPDATE SET values), so that a
 * result written twice is a result written once: that is what makes the
 * sink idempotent, and what lets recovery replay rows without asking which
 * of them are in already.
 *
 * A small core (sli_sqlite_*, connectors/sqlite_sink.h) does the work; the
 * operator hooks at the bottom only pick the path by sl_ctx_guarantee():
 *
 *   NONE / AT_LEAST_ONCE   process() stages the batch's rows and flushes
 *                          them in one transaction (BEGIN IMMEDIATE ...
 *                          COMMIT) before it returns.
 *   EXACTLY_ONCE           process() stages rows into the current epoch, in
 *                          memory, and nothing else. snapshot() (the
 *                          pre-commit on a checkpoint's barrier) seals the
 *                          epoch: it joins the pending list, and the blob
 *                          holds the rows of every pending epoch. commit(n)
 *                          writes the pending epochs in ONE transaction that
 *                          also upserts (sink, table, instance) -> n into
 *                          `sluice_commits`, then drops them. restore()
 *                          after a crash: if sluice_commits says the blob's
 *                          instance committed >= the checkpoint's id, the
 *                          rows are in (nothing to do); else they are written
 *                          with that record in one transaction (the roll
 *                          forward). Rows staged after the checkpoint were
 *                          never written, so there is nothing to roll back.
 *
 * The checkpoint id of a snapshot: snapshot() seals the epoch with the id of
 * the barrier it runs on (sl_ctx_checkpoint_id), and commit(n) writes the
 * epochs sealed with ids <= n; an aborted checkpoint's epoch stays pending
 * and the next commit writes it.
 *
 * Rescaling: the engine hands old instance j's blob to new instance j % Q,
 * so the blob carries the number of the instance that wrote it, and
 * sluice_commits is looked up and recorded by that number. A fresh start
 * (no checkpoint restored) forgets the sink's records of earlier runs: their
 * ids belong to another checkpoint history, and a stale record >= a new id
 * would make a restore skip rows that were never written.
 *
 * Durability (WAL journal mode): synchronous=NORMAL for NONE and
 * AT_LEAST_ONCE: a transaction is in the WAL (the OS's page cache) when
 * COMMIT returns, so a kill -9 loses nothing committed, but a power loss may
 * lose the last transactions (the WAL is synced only at WAL checkpoints).
 * For EXACTLY_ONCE that is not enough: a power loss could lose commit(n-1)
 * and commit(n) while the checkpoint kept on disk, n, only holds the rows
 * still pending at snapshot n (epoch n), not those of epoch n-1; so
 * exactly-once runs synchronous=FULL (the WAL is synced at every COMMIT:
 * one fsync per commit, per checkpoint and instance). Then a commit that
 * returned is durable, and a commit cut by a crash or power loss is rolled
 * forward from the checkpoint, which the engine made durable before calling
 * commit. Several instances and processes share the file through SQLite's
 * locks, waiting up to busy_timeout_ms for each other.
 *
 * Staged rows (the current epoch, each pending epoch, and the blob's row
 * area) are one byte encoding, columns in table order (keys, then values):
 *
 *   column type  bytes  encoding
 *   INTEGER      8      int64, little-endian
 *   REAL         8      IEEE-754 binary64, little-endian
 *   TEXT         4 + n  n as uint32 little-endian, then n bytes
 *
 * The snapshot blob (what snapshot() writes and restore() reads; integers
 * little-endian):
 *
 *   offset  size  field
 *   0       4     magic "SLQ1"
 *   4       4     format version, 1
 *   8       4     instance that wrote it (the key in sluice_commits)
 *   12      4     shape: CRC-32C of the column list "name\0type\0..." (keys
 *                 then values, type 1/2/3 as one byte) and of n_keys
 *   16      8     row count
 *   24      8     length L of the row area
 *   32      L     rows, oldest epoch first, in staging order
 *   32+L    4     CRC-32C of bytes 0 .. 32+L-1
 *
 * Invariants: `cur` (the current epoch) is touched only by the worker
 * (stage, flush, seal); the pending list only under `lock`, and an epoch's
 * bytes never change once sealed, so commit reads them without the lock
 * while seal may append to the list and serialise it; only commit removes
 * epochs, and commits, flushes and recovers are serialised by `dblock`,
 * which also guards the connection and its statements. No SQLite call and
 * no allocation per record: rows are appended to a growing buffer, written
 * through one prepared statement.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "connectors/sqlite_sink.h"
#include "engine/base/crc32c.h"
#include "sluice/error.h"
#include "sluice/operator.h"
#include "sluice/sqlite.h"

#define BLOB_MAGIC   "SLQ1"
#define BLOB_VERSION 1u
#define BLOB_HDR     32
#define ERR_MAX      512

typedef struct epoch {
    uint64_t tag;
    uint64_t rows;
    sl_buf bytes;
} epoch;

struct sli_sqlite {
    const sl_sqlite_conf *conf;
    char *sink; /* node name, copied */
    int instance, guarantee;
    unsigned ncols;
    int types[SL_SQLITE_MAX_COLUMNS];
    uint32_t shape;
    sqlite3 *db;
    sqlite3_stmt *upsert;
    sqlite3_stmt *mark;   /* upsert into sluice_commits; NULL until needed */
    sqlite3_stmt *lookup; /* select from sluice_commits */
    sl_sqlite_value vals[SL_SQLITE_MAX_COLUMNS];
    /* worker only */
    sl_buf cur;
    uint64_t cur_rows;
    uint64_t skipped;
    /* under lock */
    pthread_mutex_t lock;
    epoch *pend;
    size_t npend, cappend;
    /* serialises commit / flush / recover and the connection */
    pthread_mutex_t dblock;
    char err[ERR_MAX];
    char cerr[ERR_MAX]; /* commit's message */
};

/* --- little helpers ------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static const char *type_name(int t)
{
    return t == SL_SQLITE_INTEGER ? "INTEGER" : t == SL_SQLITE_REAL ? "REAL" : "TEXT";
}

static const sl_sqlite_column *col(const sl_sqlite_conf *c, unsigned i)
{
    return i < c->n_keys ? &c->keys[i] : &c->values[i - c->n_keys];
}

/* SQLite result code -> SL_E code. */
static int sq_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return SL_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return SL_EBUSY;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: return SL_EPERM;
    case SQLITE_FULL: return SL_EFULL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return SL_ECORRUPT;
    case SQLITE_CONSTRAINT: return SL_EINVAL; /* a row the table refuses */
    default: return SL_EIO;
    }
}

static int fail(char *buf, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *buf, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, ERR_MAX, fmt, ap);
    va_end(ap);
    return code;
}

/* A failed SQLite call: "sqlite 'PATH': WHAT: errmsg". */
static int sq_fail(sli_sqlite *s, char *buf, int rc, const char *what)
{
    return fail(buf, sq_code(rc), "sqlite '%s': %s: %s", s->conf->path, what,
                s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

/* Append a double-quoted identifier (quotes inside doubled). */
static int quote(sl_buf *b, const char *id)
{
    int rc = sl_buf_append(b, "\"", 1);
    for (const char *p = id; !rc && *p; p++)
        rc = *p == '"' ? sl_buf_append(b, "\"\"", 2) : sl_buf_append(b, p, 1);
    return rc ? rc : sl_buf_append(b, "\"", 1);
}

static int exec(sli_sqlite *s, char *buf, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_fail(s, buf, rc, what);
}

static int prepare(sli_sqlite *s, char *buf, const char *sql, sqlite3_stmt **st, const char *what)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : sq_fail(s, buf, rc, what);
}

/* --- opening: the table and its shape --------------------------------------------------- */

static int check_conf(const sl_sqlite_conf *c, char *err, size_t errlen)
{
#define BAD(...) return (snprintf(err, errlen, __VA_ARGS__), SL_EINVAL)
    if (!c) BAD("sqlite sink: no conf (an sl_sqlite_conf is required)");
    if (!c->path || !*c->path) BAD("sqlite sink: no database path");
    if (!c->table || !*c->table) BAD("sqlite sink: no table name for '%s'", c->path);
    if (!c->row) BAD("sqlite sink: no row function for table '%s'", c->table);
    if (c->n_keys < 1 || !c->keys) BAD("sqlite sink: table '%s' needs >= 1 key column", c->table);
    if (c->n_values && !c->values)
        BAD("sqlite sink: table '%s': n_values %u but no value columns", c->table, c->n_values);
    if (c->n_keys + c->n_values > SL_SQLITE_MAX_COLUMNS)
        BAD("sqlite sink: table '%s' has %u columns, at most %d are allowed", c->table,
            c->n_keys + c->n_values, SL_SQLITE_MAX_COLUMNS);
    if (c->busy_timeout_ms < 0)
        BAD("sqlite sink: busy_timeout_ms must be >= 0, not %d", c->busy_timeout_ms);
    for (unsigned i = 0; i < c->n_keys + c->n_values; i++) {
        const sl_sqlite_column *k = col(c, i);
        if (!k->name || !*k->name)
            BAD("sqlite sink: table '%s': column %u has no name", c->table, i + 1);
        if (k->type < SL_SQLITE_INTEGER || k->type > SL_SQLITE_TEXT)
            BAD("sqlite sink: table '%s': column '%s' has type %d, not INTEGER, REAL or TEXT",
                c->table, k->name, k->type);
        for (unsigned j = 0; j < i; j++)
            if (sqlite3_stricmp(col(c, j)->name, k->name) == 0)
                BAD("sqlite sink: table '%s': column '%s' given twice", c->table, k->name);
    }
    return 0;
#undef BAD
}

/* "name TYPE" of the sink's column i, or of table_info's row. */
static void describe(char *out, size_t n, const char *name, const char *type, int pk)
{
    if (pk)
        snprintf(out, n, "%s %s, primary key column %d", name, type, pk);
    else
        snprintf(out, n, "%s %s", name, type && *type ? type : "(no type)");
}

/* Compare the table's columns (PRAGMA table_info) with the conf. */
static int check_shape(sli_sqlite *s)
{
    const sl_sqlite_conf *c = s->conf;
    sl_buf q = {0};
    sqlite3_stmt *st = NULL;
    int rc = sl_buf_append(&q, "PRAGMA table_info(", 18);
    if (!rc) rc = quote(&q, c->table);
    if (!rc) rc = sl_buf_append(&q, ")", 2);
    if (rc) {
        rc = fail(s->err, SL_ENOMEM, "sqlite '%s': out of memory", c->path);
        goto done;
    }
    if ((rc = prepare(s, s->err, (const char *)q.ptr, &st, "cannot read the table's columns")))
        goto done;
    unsigned i = 0;
    int step;
    char have[200], want[200];
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *type = (const char *)sqlite3_column_text(st, 2);
        int pk = sqlite3_column_int(st, 5);
        describe(have, sizeof(have), name ? name : "", type ? type : "", pk);
        if (i >= s->ncols) {
            rc = fail(s->err, SL_EINVAL,
                      "sqlite '%s': table '%s' has a column the sink does not write: "
                      "column %u '%s' (the sink writes %u columns)",
                      c->path, c->table, i + 1, have, s->ncols);
            goto done;
        }
        const sl_sqlite_column *k = col(c, i);
        int wpk = i < c->n_keys ? (int)i + 1 : 0;
        if (!name || sqlite3_stricmp(name, k->name) != 0 || !type ||
            sqlite3_stricmp(type, type_name(k->type)) != 0 || pk != wpk) {
            describe(want, sizeof(want), k->name, type_name(k->type), wpk);
            rc = fail(s->err, SL_EINVAL,
                      "sqlite '%s': table '%s' has another shape: column %u is '%s', the sink "
                      "writes '%s'",
                      c->path, c->table, i + 1, have, want);
            goto done;
        }
        i++;
    }
    if (step != SQLITE_DONE) {
        rc = sq_fail(s, s->err, step, "cannot read the table's columns");
        goto done;
    }
    if (i < s->ncols) {
        const sl_sqlite_column *k = col(c, i);
        describe(want, sizeof(want), k->name, type_name(k->type), i < c->n_keys ? (int)i + 1 : 0);
        rc = fail(s->err, SL_EINVAL,
                  "sqlite '%s': table '%s' has another shape: it has %u columns, the sink "
                  "writes %u (column %u '%s' is missing)",
                  c->path, c->table, i, s->ncols, i + 1, want);
        goto done;
    }
    rc = 0;
done:
    sqlite3_finalize(st);
    sl_buf_free(&q);
    return rc;
}

static int build_sql(sli_sqlite *s, sl_buf *create, sl_buf *upsert)
{
    const sl_sqlite_conf *c = s->conf;
    int rc = sl_buf_printf(create, "CREATE TABLE IF NOT EXISTS ");
    if (!rc) rc = quote(create, c->table);
    if (!rc) rc = sl_buf_append(create, " (", 2);
    for (unsigned i = 0; !rc && i < s->ncols; i++) {
        if (i) rc = sl_buf_append(create, ", ", 2);
        if (!rc) rc = quote(create, col(c, i)->name);
        if (!rc)
            rc = sl_buf_printf(create, " %s%s", type_name(col(c, i)->type),
                               i < c->n_keys ? " NOT NULL" : "");
    }
    if (!rc) rc = sl_buf_printf(create, ", PRIMARY KEY (");
    for (unsigned i = 0; !rc && i < c->n_keys; i++) {
        if (i) rc = sl_buf_append(create, ", ", 2);
        if (!rc) rc = quote(create, c->keys[i].name);
    }
    if (!rc) rc = sl_buf_append(create, "))", 3);

    if (!rc) rc = sl_buf_printf(upsert, "INSERT INTO ");
    if (!rc) rc = quote(upsert, c->table);
    if (!rc) rc = sl_buf_append(upsert, " (", 2);
    for (unsigned i = 0; !rc && i < s->ncols; i++) {
        if (i) rc = sl_buf_append(upsert, ", ", 2);
        if (!rc) rc = quote(upsert, col(c, i)->name);
    }
    if (!rc) rc = sl_buf_printf(upsert, ") VALUES (");
    for (unsigned i = 0; !rc && i < s->ncols; i++) rc = sl_buf_printf(upsert, i ? ", ?" : "?");
    if (!rc) rc = sl_buf_printf(upsert, ") ON CONFLICT (");
    for (unsigned i = 0; !rc && i < c->n_keys; i++) {
        if (i) rc = sl_buf_append(upsert, ", ", 2);
        if (!rc) rc = quote(upsert, c->keys[i].name);
    }
    if (!rc) rc = sl_buf_printf(upsert, c->n_values ? ") DO UPDATE SET " : ") DO NOTHING");
    for (unsigned i = 0; !rc && i < c->n_values; i++) {
        if (i) rc = sl_buf_append(upsert, ", ", 2);
        if (!rc) rc = quote(upsert, c->values[i].name);
        if (!rc) rc = sl_buf_append(upsert, " = excluded.", 12);
        if (!rc) rc = quote(upsert, c->values[i].name);
    }
    if (!rc) rc = sl_buf_append(upsert, "", 1);
    return rc;
}

/* sluice_commits and its statements (exactly-once, or a recover). */
static int commits_table(sli_sqlite *s, char *buf)
{
    if (s->mark) return 0;
    int rc = exec(s, buf,
                  "CREATE TABLE IF NOT EXISTS sluice_commits (sink TEXT NOT NULL, tbl TEXT NOT "
                  "NULL, instance INTEGER NOT NULL, checkpoint INTEGER NOT NULL, PRIMARY KEY "
                  "(sink, tbl, instance))",
                  "cannot create table sluice_commits");
    if (!rc)
        rc = prepare(s, buf,
                     "SELECT checkpoint FROM sluice_commits WHERE sink = ?1 AND tbl = ?2 AND "
                     "instance = ?3",
                     &s->lookup, "cannot read sluice_commits");
    if (!rc)
        rc = prepare(s, buf,
                     "INSERT INTO sluice_commits (sink, tbl, instance, checkpoint) VALUES (?1, "
                     "?2, ?3, ?4) ON CONFLICT (sink, tbl, instance) DO UPDATE SET checkpoint = "
                     "excluded.checkpoint",
                     &s->mark, "cannot write sluice_commits");
    return rc;
}

static uint32_t shape_crc(const sl_sqlite_conf *c, unsigned ncols)
{
    uint8_t nk[4];
    put32(nk, c->n_keys);
    uint32_t crc = sli_crc32c(0, nk, 4);
    for (unsigned i = 0; i < ncols; i++) {
        const sl_sqlite_column *k = col(c, i);
        uint8_t t = (uint8_t)k->type;
        crc = sli_crc32c(crc, k->name, strlen(k->name) + 1);
        crc = sli_crc32c(crc, &t, 1);
    }
    return crc;
}

int sli_sqlite_open(sli_sqlite **out, const sl_sqlite_conf *conf, const char *sink, int instance,
                    int guarantee, uint64_t restored_from, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_conf(conf, err, errlen);
    if (rc) return rc;
    sl_buf create = {0}, upsert = {0};
    sli_sqlite *s = calloc(1, sizeof(*s));
    if (!s || !(s->sink = strdup(sink ? sink : ""))) {
        free(s);
        snprintf(err, errlen, "sqlite '%s': out of memory", conf->path);
        return SL_ENOMEM;
    }
    s->conf = conf;
    s->instance = instance;
    s->guarantee = guarantee;
    s->ncols = conf->n_keys + conf->n_values;
    for (unsigned i = 0; i < s->ncols; i++) s->types[i] = col(conf, i)->type;
    s->shape = shape_crc(conf, s->ncols);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->dblock, NULL);

    int sq = sqlite3_open_v2(conf->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (sq != SQLITE_OK) {
        rc = sq_fail(s, s->err, sq, "cannot open the database");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, conf->busy_timeout_ms ? conf->busy_timeout_ms : 5000);
    /* The first statement that reads the file: an unreadable or foreign
     * file fails here. */
    if ((rc = exec(s, s->err, "PRAGMA journal_mode = WAL", "cannot switch to WAL journal mode")))
        goto fail;
    if ((rc = exec(s, s->err,
                   guarantee == SL_GUARANTEE_EXACTLY_ONCE ? "PRAGMA synchronous = FULL"
                                                          : "PRAGMA synchronous = NORMAL",
                   "cannot set synchronous")))
        goto fail;
    if (build_sql(s, &create, &upsert)) {
        rc = fail(s->err, SL_ENOMEM, "sqlite '%s': out of memory", conf->path);
        goto fail;
    }
    if ((rc = exec(s, s->err, (const char *)create.ptr, "cannot create the table"))) goto fail;
    if ((rc = check_shape(s))) goto fail;
    if ((rc =
             prepare(s, s->err, (const char *)upsert.ptr, &s->upsert, "cannot prepare the upsert")))
        goto fail;
    if (guarantee == SL_GUARANTEE_EXACTLY_ONCE) {
        if ((rc = commits_table(s, s->err))) goto fail;
        if (restored_from == 0) {
            sqlite3_stmt *st = NULL;
            if ((rc = prepare(s, s->err,
                              "DELETE FROM sluice_commits WHERE sink = ?1 AND tbl = ?2 AND "
                              "(instance = ?3 OR ?3 = 0)",
                              &st, "cannot clear sluice_commits")))
                goto fail;
            sqlite3_bind_text(st, 1, s->sink, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, conf->table, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 3, instance);
            sq = sqlite3_step(st);
            sqlite3_finalize(st);
            if (sq != SQLITE_DONE) {
                rc = sq_fail(s, s->err, sq, "cannot clear sluice_commits");
                goto fail;
            }
        }
    }
    sl_buf_free(&create);
    sl_buf_free(&upsert);
    *out = s;
    return 0;
fail:
    snprintf(err, errlen, "%s", s->err);
    sl_buf_free(&create);
    sl_buf_free(&upsert);
    sli_sqlite_close(s);
    return rc;
}

void sli_sqlite_close(sli_sqlite *s)
{
    if (!s) return;
    sqlite3_finalize(s->upsert);
    sqlite3_finalize(s->mark);
    sqlite3_finalize(s->lookup);
    sqlite3_close(s->db); /* every statement is finalized: never SQLITE_BUSY */
    for (size_t i = 0; i < s->npend; i++) sl_buf_free(&s->pend[i].bytes);
    free(s->pend);
    sl_buf_free(&s->cur);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->dblock);
    free(s->sink);
    free(s);
}

const char *sli_sqlite_errmsg(const sli_sqlite *s)
{
    return s->err;
}

const char *sli_sqlite_commit_errmsg(const sli_sqlite *s)
{
    return s->cerr;
}

uint64_t sli_sqlite_recover_skipped(const sli_sqlite *s)
{
    return s->skipped;
}

uint64_t sli_sqlite_unwritten(sli_sqlite *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->cur_rows;
    for (size_t i = 0; i < s->npend; i++) n += s->pend[i].rows;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* --- staging ---------------------------------------------------------------------------- */

int sli_sqlite_stage(sli_sqlite *s, const void *rec, uint32_t len, int64_t ts)
{
    sl_sqlite_value *v = s->vals;
    memset(v, 0, s->ncols * sizeof(*v));
    int rc = s->conf->row(rec, len, ts, v, s->conf->ud);
    if (rc == 1) return 0;
    if (rc < 0)
        return fail(s->err, rc, "sqlite '%s': the row function failed for table '%s': %s",
                    s->conf->path, s->conf->table, sl_strerror(rc));
    if (rc != 0)
        return fail(s->err, SL_EINVAL,
                    "sqlite '%s': the row function for table '%s' returned %d, expected 0, 1 "
                    "or a negative SL_E code",
                    s->conf->path, s->conf->table, rc);
    size_t need = 0;
    for (unsigned i = 0; i < s->ncols; i++) {
        if (s->types[i] != SL_SQLITE_TEXT) {
            need += 8;
            continue;
        }
        if (v[i].text_len > (uint32_t)INT_MAX || (v[i].text_len && !v[i].text))
            return fail(s->err, SL_EINVAL,
                        "sqlite '%s': table '%s': column '%s' got no text or %" PRIu32
                        " bytes (at most %d)",
                        s->conf->path, s->conf->table, col(s->conf, i)->name, v[i].text_len,
                        INT_MAX);
        need += 4 + (size_t)v[i].text_len;
    }
    if (sl_buf_reserve(&s->cur, need))
        return fail(s->err, SL_ENOMEM, "sqlite '%s': out of memory staging a row", s->conf->path);
    uint8_t *p = s->cur.ptr + s->cur.len;
    for (unsigned i = 0; i < s->ncols; i++) {
        switch (s->types[i]) {
        case SL_SQLITE_INTEGER:
            put64(p, (uint64_t)v[i].integer);
            p += 8;
            break;
        case SL_SQLITE_REAL: {
            uint64_t b;
            memcpy(&b, &v[i].real, 8);
            put64(p, b);
            p += 8;
            break;
        }
        default:
            put32(p, v[i].text_len);
            if (v[i].text_len) memcpy(p + 4, v[i].text, v[i].text_len);
            p += 4 + v[i].text_len;
            break;
        }
    }
    s->cur.len += need;
    s->cur_rows++;
    return 0;
}

/* --- writing ----------------------------------------------------------------------------- */

/* Upsert `rows` encoded rows from p[0 .. len) (inside a transaction). buf
 * gets the message. SL_ECORRUPT if the bytes do not decode. */
static int apply_rows(sli_sqlite *s, char *buf, const uint8_t *p, size_t len, uint64_t rows)
{
    const uint8_t *end = p + len;
    sqlite3_stmt *st = s->upsert;
    for (uint64_t r = 0; r < rows; r++) {
        for (unsigned i = 0; i < s->ncols; i++) {
            if ((size_t)(end - p) < (s->types[i] == SL_SQLITE_TEXT ? 4u : 8u)) goto corrupt;
            switch (s->types[i]) {
            case SL_SQLITE_INTEGER: sqlite3_bind_int64(st, (int)i + 1, (int64_t)get64(p)); break;
            case SL_SQLITE_REAL: {
                uint64_t b = get64(p);
                double d;
                memcpy(&d, &b, 8);
                sqlite3_bind_double(st, (int)i + 1, d);
                break;
            }
            default: {
                uint32_t n = get32(p);
                if (n > (uint32_t)INT_MAX || (size_t)(end - p - 4) < n) goto corrupt;
                sqlite3_bind_text(st, (int)i + 1, (const char *)p + 4, (int)n, SQLITE_STATIC);
                p += 4 + n;
                continue;
            }
            }
            p += 8;
        }
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return sq_fail(s, buf, rc, "cannot upsert a row");
    }
    sqlite3_clear_bindings(st);
    if (p != end) goto corrupt;
    return 0;
corrupt:
    sqlite3_clear_bindings(st);
    return fail(buf, SL_ECORRUPT, "sqlite '%s': staged rows for table '%s' do not decode",
                s->conf->path, s->conf->table);
}

static int mark(sli_sqlite *s, char *buf, int instance, uint64_t id)
{
    int rc = commits_table(s, buf);
    if (rc) return rc;
    sqlite3_bind_text(s->mark, 1, s->sink, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->mark, 2, s->conf->table, -1, SQLITE_STATIC);
    sqlite3_bind_int(s->mark, 3, instance);
    sqlite3_bind_int64(s->mark, 4, (int64_t)id);
    int sq = sqlite3_step(s->mark);
    sqlite3_reset(s->mark);
    return sq == SQLITE_DONE ? 0 : sq_fail(s, buf, sq, "cannot write sluice_commits");
}

static int begin(sli_sqlite *s, char *buf)
{
    /* IMMEDIATE: take the write lock now, waiting (busy timeout) for another
     * writer, instead of failing when a read transaction cannot upgrade. */
    return exec(s, buf, "BEGIN IMMEDIATE", "cannot begin a transaction");
}

static int finish(sli_sqlite *s, char *buf, int rc)
{
    if (rc) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* the first error is the one told */
        return rc;
    }
    return exec(s, buf, "COMMIT", "cannot commit");
}

int sli_sqlite_flush(sli_sqlite *s)
{
    if (!s->cur_rows) return 0;
    pthread_mutex_lock(&s->dblock);
    int rc = begin(s, s->err);
    if (!rc) rc = finish(s, s->err, apply_rows(s, s->err, s->cur.ptr, s->cur.len, s->cur_rows));
    pthread_mutex_unlock(&s->dblock);
    if (!rc) {
        s->cur.len = 0;
        s->cur_rows = 0;
    }
    return rc;
}

/* --- exactly-once: seal, commit, recover ------------------------------------------------ */

int sli_sqlite_seal(sli_sqlite *s, uint64_t tag, sl_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->cur_rows) {
        if (s->npend == s->cappend) {
            size_t nc = s->cappend ? 2 * s->cappend : 4;
            epoch *e = realloc(s->pend, nc * sizeof(*e));
            if (!e) {
                rc = fail(s->err, SL_ENOMEM, "sqlite '%s': out of memory sealing an epoch",
                          s->conf->path);
                goto done;
            }
            s->pend = e;
            s->cappend = nc;
        }
        s->pend[s->npend++] = (epoch){.tag = tag, .rows = s->cur_rows, .bytes = s->cur};
        memset(&s->cur, 0, sizeof(s->cur));
        s->cur_rows = 0;
    }
    uint64_t rows = 0, bytes = 0;
    for (size_t i = 0; i < s->npend; i++) {
        rows += s->pend[i].rows;
        bytes += s->pend[i].bytes.len;
    }
    size_t start = out->len;
    if (sl_buf_reserve(out, BLOB_HDR + (size_t)bytes + 4)) {
        rc =
            fail(s->err, SL_ENOMEM, "sqlite '%s': out of memory writing a snapshot", s->conf->path);
        goto done;
    }
    uint8_t *h = out->ptr + start;
    memcpy(h, BLOB_MAGIC, 4);
    put32(h + 4, BLOB_VERSION);
    put32(h + 8, (uint32_t)s->instance);
    put32(h + 12, s->shape);
    put64(h + 16, rows);
    put64(h + 24, bytes);
    uint8_t *p = h + BLOB_HDR;
    for (size_t i = 0; i < s->npend; i++) {
        if (s->pend[i].bytes.len) memcpy(p, s->pend[i].bytes.ptr, s->pend[i].bytes.len);
        p += s->pend[i].bytes.len;
    }
    put32(p, sli_crc32c(0, h, BLOB_HDR + (size_t)bytes));
    out->len = start + BLOB_HDR + (size_t)bytes + 4;
done:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sli_sqlite_commit(sli_sqlite *s, uint64_t id)
{
    pthread_mutex_lock(&s->dblock);
    /* The epochs to write: a prefix of the list (tags grow; 0 means "the
     * next commit"). Their bytes do not move, so they are read unlocked. */
    pthread_mutex_lock(&s->lock);
    size_t k = 0;
    while (k < s->npend && s->pend[k].tag <= id) k++;
    epoch *todo = NULL;
    if (k) todo = malloc(k * sizeof(*todo));
    if (k && todo) memcpy(todo, s->pend, k * sizeof(*todo));
    pthread_mutex_unlock(&s->lock);
    int rc = 0;
    if (k && !todo) {
        rc = fail(s->cerr, SL_ENOMEM, "sqlite '%s': out of memory committing", s->conf->path);
        goto done;
    }
    if (!k) goto done;
    rc = begin(s, s->cerr);
    if (rc) goto done;
    for (size_t i = 0; !rc && i < k; i++)
        rc = apply_rows(s, s->cerr, todo[i].bytes.ptr, todo[i].bytes.len, todo[i].rows);
    if (!rc) rc = mark(s, s->cerr, s->instance, id);
    rc = finish(s, s->cerr, rc);
    if (rc) goto done;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < k; i++) sl_buf_free(&s->pend[i].bytes);
    memmove(s->pend, s->pend + k, (s->npend - k) * sizeof(*s->pend));
    s->npend -= k;
    pthread_mutex_unlock(&s->lock);
done:
    free(todo);
    pthread_mutex_unlock(&s->dblock);
    return rc;
}

int sli_sqlite_recover(sli_sqlite *s, const void *blob, size_t len, uint64_t id)
{
    const uint8_t *b = blob;
    const char *path = s->conf->path;
    if (len < BLOB_HDR + 4 || memcmp(b, BLOB_MAGIC, 4) != 0)
        return fail(s->err, SL_ECORRUPT,
                    "sqlite '%s': snapshot of sink '%s' is not an SQLite sink's (%zu bytes, bad "
                    "magic)",
                    path, s->sink, len);
    if (get32(b + 4) != BLOB_VERSION)
        return fail(s->err, SL_ECORRUPT,
                    "sqlite '%s': snapshot of sink '%s' has version %" PRIu32 ", expected %u", path,
                    s->sink, get32(b + 4), BLOB_VERSION);
    uint64_t rows = get64(b + 16), bytes = get64(b + 24);
    if (bytes != len - BLOB_HDR - 4)
        return fail(s->err, SL_ECORRUPT,
                    "sqlite '%s': snapshot of sink '%s' says %" PRIu64 " bytes of rows, has %zu",
                    path, s->sink, bytes, len - BLOB_HDR - 4);
    if (sli_crc32c(0, b, len - 4) != get32(b + len - 4))
        return fail(s->err, SL_ECORRUPT, "sqlite '%s': snapshot of sink '%s' fails its CRC", path,
                    s->sink);
    if (get32(b + 12) != s->shape)
        return fail(s->err, SL_EINVAL,
                    "sqlite '%s': snapshot of sink '%s' was written for other columns than "
                    "table '%s' has now",
                    path, s->sink, s->conf->table);
    int old = (int)get32(b + 8);
    if (rows == 0) return 0;
    pthread_mutex_lock(&s->dblock);
    int rc = commits_table(s, s->err);
    if (rc) goto done;
    rc = begin(s, s->err);
    if (rc) goto done;
    /* Inside the write transaction: no other process can commit between the
     * look-up and the writes. */
    sqlite3_bind_text(s->lookup, 1, s->sink, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->lookup, 2, s->conf->table, -1, SQLITE_STATIC);
    sqlite3_bind_int(s->lookup, 3, old);
    int sq = sqlite3_step(s->lookup);
    int done_already = sq == SQLITE_ROW && (uint64_t)sqlite3_column_int64(s->lookup, 0) >= id;
    sqlite3_reset(s->lookup);
    if (sq != SQLITE_ROW && sq != SQLITE_DONE) {
        rc = finish(s, s->err, sq_fail(s, s->err, sq, "cannot read sluice_commits"));
        goto done;
    }
    if (done_already) {
        s->skipped++;
        rc = finish(s, s->err, 0);
        goto done;
    }
    rc = apply_rows(s, s->err, b + BLOB_HDR, (size_t)bytes, rows);
    if (!rc) rc = mark(s, s->err, old, id);
    rc = finish(s, s->err, rc);
done:
    pthread_mutex_unlock(&s->dblock);
    return rc;
}

/* --- the operator ------------------------------------------------------------------------- */

static int op_open(sl_ctx *ctx, void **self)
{
    char err[ERR_MAX];
    sli_sqlite *s;
    int rc = sli_sqlite_open(&s, sl_ctx_conf(ctx), sl_ctx_name(ctx), sl_ctx_instance(ctx),
                             sl_ctx_guarantee(ctx), sl_ctx_restored_from(ctx), err, sizeof(err));
    if (rc) return sl_ctx_fail(ctx, rc, "%s", err);
    *self = s;
    return 0;
}

static int op_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sli_sqlite *s = self;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int rc = sli_sqlite_stage(s, r.ptr, r.len, in->ts[i]);
        if (rc) return sl_ctx_fail(ctx, rc, "%s", s->err);
    }
    if (s->guarantee == SL_GUARANTEE_EXACTLY_ONCE) return 0;
    int rc = sli_sqlite_flush(s);
    return rc ? sl_ctx_fail(ctx, rc, "%s", s->err) : 0;
}

static int op_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    sli_sqlite *s = self;
    int rc = sli_sqlite_seal(s, sl_ctx_checkpoint_id(ctx), out);
    return rc ? sl_ctx_fail(ctx, rc, "%s", s->err) : 0;
}

static int op_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    sli_sqlite *s = self;
    int rc = sli_sqlite_recover(s, data, len, sl_ctx_restored_from(ctx));
    return rc ? sl_ctx_fail(ctx, rc, "%s", s->err) : 0;
}

static int op_commit(sl_ctx *ctx, void *self, uint64_t id)
{
    sli_sqlite *s = self;
    int rc = sli_sqlite_commit(s, id);
    return rc ? sl_ctx_fail(ctx, rc, "checkpoint %" PRIu64 ": %s", id, s->cerr) : 0;
}

static void op_close(void *self)
{
    sli_sqlite_close(self);
}

const sl_operator sl_sink_sqlite = {.version = SL_OPERATOR_VERSION,
                                    .kind = "sqlite",
                                    .open = op_open,
                                    .process = op_process,
                                    .snapshot = op_snapshot,
                                    .restore = op_restore,
                                    .close = op_close,
                                    .commit = op_commit};
