/*
 * connectors/sqlite_sink.h - the core of the SQLite sink (private header; not
 * part of the public API): open the database, stage rows, seal an epoch,
 * commit epochs, recover from a snapshot. connectors/sqlite_sink.c wraps it into
 * the operator sl_sink_sqlite; tests drive it directly (a "crash" is a core
 * closed between staging and commit, then a new core recovering the
 * snapshot).
 *
 * Threads: stage, flush, seal and recover run on the instance's worker;
 * commit may run on another thread at the same time as stage and seal (never
 * with another commit, flush or recover of the same core). Errors: a
 * negative SL_E... code, with the one-line message in sli_sqlite_errmsg()
 * (commit keeps its own, so that a failing commit and a failing stage on two
 * threads do not write one buffer).
 */
#ifndef SLUICE_CONNECTORS_SQLITE_SINK_H
#define SLUICE_CONNECTORS_SQLITE_SINK_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"
#include "sluice/sqlite.h"

typedef struct sli_sqlite sli_sqlite;

/* Open conf->path for the sink `sink` (node name), instance `instance`,
 * with `guarantee` (enum sl_guarantee). Creates the table if missing and
 * checks its shape; with exactly-once makes `sluice_commits` and, on a fresh
 * start (restored_from 0), forgets this sink's commit records of earlier
 * runs (instance 0 forgets every instance's: they belong to another
 * checkpoint history). On error *out is NULL and err holds the message. The
 * core keeps conf (the caller's) and copies sink. */
int sli_sqlite_open(sli_sqlite **out, const sl_sqlite_conf *conf, const char *sink, int instance,
                    int guarantee, uint64_t restored_from, char *err, size_t errlen);
/* Stage one record into the current epoch (no SQLite call). */
int sli_sqlite_stage(sli_sqlite *s, const void *rec, uint32_t len, int64_t ts);
/* Write the current epoch in one transaction and empty it (the path of
 * guarantees NONE and AT_LEAST_ONCE, once per batch). */
int sli_sqlite_flush(sli_sqlite *s);
/* Close the current epoch under `tag` (a checkpoint id; 0: committed by the
 * next commit, whatever its id), keep it pending, and append the snapshot
 * blob (every pending epoch's rows) to out. */
int sli_sqlite_seal(sli_sqlite *s, uint64_t tag, sl_buf *out);
/* Write every pending epoch whose tag is <= id, and record (sink, instance,
 * id) in sluice_commits, in one transaction; then drop them. With nothing
 * pending it writes nothing. */
int sli_sqlite_commit(sli_sqlite *s, uint64_t id);
/* Roll the blob of checkpoint `id` forward: nothing if sluice_commits says
 * the blob's instance committed >= id, else its rows and the record (sink,
 * blob's instance, id) in one transaction. */
int sli_sqlite_recover(sli_sqlite *s, const void *blob, size_t len, uint64_t id);
const char *sli_sqlite_errmsg(const sli_sqlite *s);
const char *sli_sqlite_commit_errmsg(const sli_sqlite *s);
/* Rows staged or pending (not yet written), and recover() calls that found
 * their id committed already. For tests. */
uint64_t sli_sqlite_unwritten(sli_sqlite *s);
uint64_t sli_sqlite_recover_skipped(const sli_sqlite *s);
/* Close without writing anything still staged (a crash, as far as the
 * database can tell). Accepts NULL. */
void sli_sqlite_close(sli_sqlite *s);

#endif
