/*
 * sluice/connectors.h - bundled sources and sinks (public API).
 *
 * Sources: a generator (a user callback per record; unbounded, bounded by
 * count, or rate-limited), lines of a file (bounded; position = byte offset),
 * lines of standard input. Sinks: standard output, a file, and a collecting
 * sink that keeps records in memory (for tests and small jobs).
 *
 * Confs are borrowed (they must outlive the pipeline) unless said otherwise.
 */
#ifndef SLUICE_CONNECTORS_H
#define SLUICE_CONNECTORS_H

#include <pthread.h>
#include <stdint.h>
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- generator ------------------------------------------------------------ */

/* Write record number seq (width bytes at out) and its event time. Return 0,
 * or a negative code to fail the job. Called from several threads at once
 * when the source's parallelism is above 1: instance i of P makes the records
 * seq = i, i + P, i + 2P, ... */
typedef int (*sl_gen_fn)(void *out, uint64_t seq, int64_t *ts, void *ud);

typedef struct sl_generator_conf {
    sl_gen_fn fn;
    void *ud;
    uint64_t count; /* records in all, over all instances; 0 = unbounded */
    double rate;    /* records per second over all instances; 0 = as fast as possible */
} sl_generator_conf;

extern const sl_source sl_source_generator;
/* Convenience: a generator source node of `width`-byte records. */
sl_stream *sl_pipeline_generator(sl_pipeline *p, const char *name, const sl_generator_conf *conf,
                                 uint32_t width);

/* --- lines of text --------------------------------------------------------- */

/* Each line (without its '\n', and without a '\r' before it) is one
 * variable-length record with event time 0. A file source with parallelism P
 * splits the file into P byte ranges at line boundaries. */
typedef struct sl_lines_conf {
    const char *path; /* NULL or "-" for standard input */
} sl_lines_conf;
extern const sl_source sl_source_lines;
sl_stream *sl_pipeline_lines(sl_pipeline *p, const char *name, const sl_lines_conf *conf);

/* --- sinks ------------------------------------------------------------------ */

/* Append the text form of one record to out. NULL format: the payload bytes
 * followed by '\n'. */
typedef int (*sl_format_fn)(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud);

typedef struct sl_write_conf {
    const char *path; /* NULL or "-" for standard output */
    sl_format_fn format;
    void *ud;
} sl_write_conf;
/* Writes records as text; several instances write whole batches at a time
 * under a lock, so lines never interleave. */
extern const sl_operator sl_sink_write;

/* Collects every record in memory. Owned by the caller: sl_collector_new(),
 * read after the run, sl_collector_free(). Thread-safe. */
typedef struct sl_collector sl_collector;
sl_collector *sl_collector_new(void);
void sl_collector_free(sl_collector *c);
size_t sl_collector_count(const sl_collector *c);
/* Record i (in arrival order; across instances the order is arbitrary). */
sl_bytes sl_collector_get(const sl_collector *c, size_t i, int64_t *ts);
extern const sl_operator sl_sink_collect; /* conf: sl_collector* */

#ifdef __cplusplus
}
#endif
#endif
