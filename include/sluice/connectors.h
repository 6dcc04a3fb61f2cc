/*
 * sluice/connectors.h - bundled sources and sinks (public API).
 *
 * Sources (on the engine's source layer, sluice/source.h: each takes the
 * watermark strategy `wm`, NULL for none): a generator (a user callback;
 * unbounded, bounded by count, or rate-limited; shards as splits), lines of
 * a file or standard input (plain, CSV with an event-time column, or parsed
 * by a callback; byte ranges as splits), broker topics (partitions as
 * splits). Sinks: standard output, a file, broker topics, and a collecting
 * sink that keeps records in memory (for tests and small jobs).
 *
 * The sl_pipeline_* source builders copy their conf (strings included), so
 * a conf on the stack is fine; the tables' callbacks' `ud` are borrowed.
 */
#ifndef SLUICE_CONNECTORS_H
#define SLUICE_CONNECTORS_H

#include "sluice/export.h"
#include <pthread.h>
#include <stdint.h>
#include "sluice/pipeline.h"
#include "sluice/source.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- generator ------------------------------------------------------------ */

/* Write record number seq (width bytes at out) and its event time. Return 0,
 * or a negative code to fail the job. Called from several threads at once
 * when the source's parallelism is above 1. */
typedef int (*sl_gen_fn)(void *out, uint64_t seq, int64_t *ts, void *ud);
/* Or make n records at once: records seq, seq + step, ... into out (n
 * records of the stream's width, contiguous) and their event times into
 * ts[0 .. n). For generators that keep a cursor instead of a call per record. */
typedef int (*sl_gen_fill_fn)(void *out, int64_t *ts, uint32_t n, uint64_t seq, uint64_t step,
                              void *ud);

typedef struct sl_generator_conf {
    sl_gen_fn fn; /* one of fn and fill */
    sl_gen_fill_fn fill;
    void *ud;
    uint64_t count; /* records in all, over all shards; 0 = unbounded */
    double rate;    /* records per second over all shards; 0 = as fast as possible */
    int shards;     /* splits: shard s of S makes seq = s, s + S, ...; 0 = one per instance */
} sl_generator_conf;

SL_API extern const sl_source sl_source_generator;
/* A generator source node of `width`-byte records. */
SL_API sl_stream *sl_pipeline_generator(sl_pipeline *p, const char *name,
                                        const sl_generator_conf *conf, uint32_t width,
                                        const sl_watermark_conf *wm);

/* --- lines of text ----------------------------------------------------------- */

/* Make a record of at most max_len bytes at `out` from one line (without its
 * newline); return its length (>= 0) and set *ts, or -1 with *reason set (a
 * static string): the line then goes to the dead letters. */
typedef int (*sl_line_parse_fn)(const char *line, size_t len, void *out, uint32_t max_len,
                                int64_t *ts, const char **reason, void *ud);

/* Each line (without its '\n', and without a '\r' before it) is one input:
 *   - with parse: the record parse makes (the node's width, or its length
 *     when the width is 0);
 *   - else with ts_column: the line, with event time the whole number of ms
 *     in that CSV column; a line without one is a dead letter "line N: ...";
 *   - else: the line, with no event time (SL_TIME_NONE).
 * A regular file is read in `splits` byte ranges (0: one per instance);
 * standard input and pipes are one split. Position: the byte offset of the
 * next line. */
typedef struct sl_lines_conf {
    const char *path; /* NULL or "-" for standard input */
    sl_line_parse_fn parse;
    void *ud;
    uint32_t max_len; /* parse: the largest record it may make */
    int ts_column;    /* 1-based CSV column of the event time (ms); 0: none */
    char delimiter;   /* CSV delimiter; 0: ',' */
    int splits;
    /* 1-based CSV column holding a W3C `traceparent` (sluice/tracectx.h)
     * that the line's record carries as its trace context; 0: none. A line
     * whose column is missing or empty has none; a malformed value is
     * ignored and counted (sl_pipeline_trace_malformed). The column stays
     * in the line. */
    int trace_column;
    /* 1-based CSV column holding the W3C `tracestate` that goes with the
     * trace column's traceparent; 0: none. Needs trace_column. Empty or
     * missing: no state; malformed: dropped and counted, the traceparent
     * kept. The column is split at the delimiter like any other, so a
     * state of several list-members (which holds commas) needs another
     * delimiter, e.g. '\t' or '|'. */
    int tracestate_column;
} sl_lines_conf;
SL_API extern const sl_source sl_source_lines;
/* width: 0 (variable length) unless parse makes fixed-width records. */
SL_API sl_stream *sl_pipeline_lines(sl_pipeline *p, const char *name, const sl_lines_conf *conf,
                                    uint32_t width, const sl_watermark_conf *wm);

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
SL_API int sl_broker_rec_key(sl_bytes rec, sl_bytes *key); /* 1 if the record has a key */
SL_API sl_bytes sl_broker_rec_value(sl_bytes rec);

/* Reads a topic: each partition is a split (partition k goes to instance
 * k % P), with the message timestamp as event time; watermarks per
 * partition by the engine's rule (sluice/source.h). Position: the next
 * offset of the partition. With `until_end` the source is bounded: each
 * partition ends at the offset that was its end when the job started (as
 * kcat -e). Otherwise it follows the log. With `parse`, each value is made
 * into a record by it (its *ts starts as the message timestamp), and a value
 * it refuses goes to the dead letters as "partition P offset O: reason". */
typedef struct sl_broker_source_conf {
    const char *dir; /* broker directory */
    const char *topic;
    int64_t start; /* first offset, or SL_OFFSET_BEGINNING / SL_OFFSET_END */
    int until_end;
    sl_line_parse_fn parse; /* optional */
    void *ud;
    uint32_t max_len; /* parse: the largest record it may make */
    /* enum sl_isolation (sluice/broker.h): SL_READ_COMMITTED (0, the
     * default) reads committed transactions only and, with until_end, ends
     * each partition at its last stable offset as of the start (start
     * SL_OFFSET_END is that offset too);
     * SL_READ_UNCOMMITTED reads every record. */
    int isolation;
} sl_broker_source_conf;
SL_API extern const sl_source sl_source_broker;
/* width: 0 (the record layout above) unless parse makes fixed-width records. */
SL_API sl_stream *sl_pipeline_broker(sl_pipeline *p, const char *name,
                                     const sl_broker_source_conf *conf, uint32_t width,
                                     const sl_watermark_conf *wm);

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
    /* Exactly-once: the transactional id of the sink's producer (NULL:
     * "sluice:TOPIC:NODE"). Two jobs writing one topic need two ids. */
    const char *transactional_id;
} sl_broker_sink_conf;
SL_API extern const sl_operator sl_sink_broker;

/* --- sinks ------------------------------------------------------------------ */

typedef struct sl_write_conf {
    const char *path; /* NULL or "-" for standard output */
    sl_format_fn format;
    void *ud;
} sl_write_conf;
/* Writes records as text; several instances write whole batches at a time
 * under a lock, so lines never interleave. */
SL_API extern const sl_operator sl_sink_write;

/* Collects every record in memory. Owned by the caller: sl_collector_new(),
 * read after the run, sl_collector_free(). Thread-safe. */
typedef struct sl_collector sl_collector;
SL_API sl_collector *sl_collector_new(void);
SL_API void sl_collector_free(sl_collector *c);
SL_API size_t sl_collector_count(const sl_collector *c);
/* Record i (in arrival order; across instances the order is arbitrary). */
SL_API sl_bytes sl_collector_get(const sl_collector *c, size_t i, int64_t *ts);
SL_API extern const sl_operator sl_sink_collect; /* conf: sl_collector* */

#ifdef __cplusplus
}
#endif
#endif
