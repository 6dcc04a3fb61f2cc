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

/* Append the text form of one record to out. NULL format: the payload bytes
 * followed by '\n'. */
typedef int (*sl_format_fn)(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud);

/* --- the built-in broker (sluice/broker.h) --------------------------------- */

/* Records of a broker topic as pipeline records (variable length), with
 * the message timestamp as event time:
 *
 *   offset   size      field
 *   0        4         key length K (little-endian), 0xFFFFFFFF: no key
 *   4        K         key bytes
 *   4 + K    rest      value bytes (a tombstone reads as an empty value)
 *
 * sl_broker_rec_key() / sl_broker_rec_value() split a record. */
#define SL_BROKER_NO_KEY 0xFFFFFFFFu
int sl_broker_rec_key(sl_bytes rec, sl_bytes *key); /* 1 if the record has a key */
sl_bytes sl_broker_rec_value(sl_bytes rec);

/* Reads a topic. Instance i of P reads the partitions p with p % P == i.
 * Position (for checkpoints): the next offset of each partition. With
 * `until_end` the source is bounded: each partition ends at the offset that
 * was its end when the source opened (as kcat -e). Otherwise it follows the
 * log. The source instance's watermark is the minimum over its partitions
 * of max_timestamp - watermark_delay - 1; a partition that has reached its
 * end (bounded) or has no data for idle_ms (following) is left out. */
typedef struct sl_broker_source_conf {
    const char *dir; /* broker directory */
    const char *topic;
    int64_t start; /* first offset, or SL_OFFSET_BEGINNING / SL_OFFSET_END */
    int until_end;
    int64_t watermark_delay; /* < 0: no watermarks */
    int64_t idle_ms;         /* 0: never idle */
} sl_broker_source_conf;
extern const sl_source sl_source_broker;
sl_stream *sl_pipeline_broker(sl_pipeline *p, const char *name, const sl_broker_source_conf *conf);

/* Appends records to a topic: the value is the record's payload (or what
 * `format` makes of it), the key what `key` returns (NULL: no key; then
 * partitions take batches round-robin), the timestamp its event time. The
 * partition of a key is murmur2 as in Kafka. Each batch of the stream is
 * written (and made durable per the topic's policy) before the next. */
typedef struct sl_broker_sink_conf {
    const char *dir;
    const char *topic;
    sl_key_fn key;
    void *key_ud;
    sl_format_fn format;
    void *format_ud;
} sl_broker_sink_conf;
extern const sl_operator sl_sink_broker;

/* --- sinks ------------------------------------------------------------------ */

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
