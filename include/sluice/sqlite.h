/*
 * sluice/sqlite.h - the idempotent SQLite sink (public API).
 *
 * sl_sink_sqlite writes each record as one row of a table, by a
 * deterministic primary key: an UPSERT (INSERT ... ON CONFLICT DO UPDATE),
 * so that writing a result again overwrites it with the same values and a
 * replay after a crash changes nothing. Use it with sl_stream_sink(s, name,
 * &sl_sink_sqlite, &conf).
 *
 * The table has the key columns, then the value columns, each INTEGER, REAL
 * or TEXT, with PRIMARY KEY (key columns). It is created if missing; an
 * existing table of another shape (column names, types, order or primary
 * key) fails the job with a message naming the first difference.
 *
 * What the sink does depends on the job's guarantee (sl_ctx_guarantee):
 *   - SL_GUARANTEE_NONE, SL_GUARANTEE_AT_LEAST_ONCE: every batch is upserted
 *     in one SQLite transaction as it comes (synchronous=NORMAL: a kill -9
 *     loses nothing that was committed; a power loss may lose the last
 *     transactions);
 *   - SL_GUARANTEE_EXACTLY_ONCE: rows are held in memory until the
 *     checkpoint after them completes, then written in one transaction per
 *     commit that also records the checkpoint id in the table
 *     `sluice_commits (sink, tbl, instance, checkpoint)` of the same
 *     database (synchronous=FULL: a committed checkpoint survives a power
 *     loss). A restart rolls the rows of the checkpoint it resumes from
 *     forward unless sluice_commits says they are in already.
 * The database is in WAL journal mode (readers never block the sink, nor the
 * sink them) with a busy timeout, so several instances, jobs and readers can
 * share it.
 *
 * Ownership: the sink reads conf, its column arrays and their strings while
 * the pipeline runs; they must outlive the run (the caller owns them).
 */
#ifndef SLUICE_SQLITE_H
#define SLUICE_SQLITE_H

#include "sluice/export.h"
#include <stdint.h>
#include "sluice/operator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Column types: SQLite's storage classes, without NULL and BLOB. */
enum sl_sqlite_type { SL_SQLITE_INTEGER = 1, SL_SQLITE_REAL = 2, SL_SQLITE_TEXT = 3 };

typedef struct sl_sqlite_column {
    const char *name; /* any SQL identifier (it is quoted) */
    int type;         /* enum sl_sqlite_type */
} sl_sqlite_column;

/* One column's value of a row, read by the column's type: integer, real, or
 * text of text_len bytes (no NUL needed; copied by the sink before the row
 * function is called again). */
typedef struct sl_sqlite_value {
    int64_t integer;
    double real;
    const char *text;
    uint32_t text_len;
} sl_sqlite_value;

/* Fill out[0 .. n_keys + n_values - 1] (keys first, in conf order) for the
 * record rec (len bytes, event time ts). Return 0 to write the row, 1 to
 * skip the record, or a negative SL_E... code to fail the job. */
typedef int (*sl_sqlite_row_fn)(const void *rec, uint32_t len, int64_t ts, sl_sqlite_value *out,
                                void *ud);

#define SL_SQLITE_MAX_COLUMNS 64

typedef struct sl_sqlite_conf {
    const char *path;             /* the database file; made if missing */
    const char *table;            /* made if missing */
    const sl_sqlite_column *keys; /* the primary key, >= 1 column */
    unsigned n_keys;
    const sl_sqlite_column *values; /* may be empty */
    unsigned n_values;              /* n_keys + n_values <= SL_SQLITE_MAX_COLUMNS */
    sl_sqlite_row_fn row;           /* required */
    void *ud;                       /* passed to row */
    int busy_timeout_ms;            /* waiting for another writer's lock; 0: 5000 */
} sl_sqlite_conf;

/* The sink (conf: sl_sqlite_conf*). Operator version 3: with exactly-once
 * it stages per checkpoint (snapshot), commits (commit) and rolls forward
 * on a restart (restore). */
SL_API extern const sl_operator sl_sink_sqlite;

#ifdef __cplusplus
}
#endif
#endif
