/*
 * sluice/source.h - sources as an engine layer: splits, split readers,
 * engine-owned watermarks, idleness, positions and dead letters (public API).
 *
 * A source is cut into *splits*: independently readable parts of its input
 * (a byte range of a file, a partition of a topic, a shard of a generator).
 * The source's table says how to list the splits and how to read one; the
 * engine does the rest, as Flink's split readers do:
 *
 *   - it lists the splits once when the job starts (enumerate), and gives
 *     split k to instance k % P of the source node's P instances;
 *   - it opens one reader per split and polls the readers of an instance in
 *     turn, each for at most `max` records, and only while the instance's
 *     output has credit;
 *   - it owns, per split, the watermark (the strategy given once to
 *     sl_pipeline_source: bounded out-of-orderness or punctuated), the
 *     idleness, and the position (an opaque byte string the reader makes,
 *     which checkpoints store and sl_pipeline_source_position() reads).
 *
 * The rules, each in one place (engine/source.c):
 *
 *   - a split's watermark is max_event_time - delay - 1 over the records it
 *     has given (or what the strategy's fn says, or what the reader announced
 *     with sl_ctx_watermark), and never goes back;
 *   - an instance's watermark is the minimum over its splits that have
 *     neither ended nor gone idle; when all of its splits have ended its
 *     watermark is +inf (end of input);
 *   - a split is idle only when it was *polled and had nothing* for idle_ms
 *     without a break. A split that was not polled, because the output had
 *     no credit or another split filled the batch, never becomes idle, so a
 *     backlog held back by backpressure is never dropped as late. Data makes
 *     it active again. An instance whose live splits are all idle says so
 *     downstream (minimums there ignore it) until one has data;
 *   - event time 0 is a valid time; SL_TIME_NONE ("no event time") never
 *     moves a watermark;
 *   - punctuated strategies announce after the very record that moves the
 *     watermark, so where watermarks fall in the stream is fixed by the
 *     input; periodic ones announce once per activation of the source.
 *
 * Unparseable input goes to the source's dead-letter port (port 1 of every
 * source node; sl_stream_dead_letters) with a reason; the engine counts dead
 * letters in sl_pipeline_stats even when nothing reads that port.
 *
 * Confs are borrowed (they must outlive the pipeline) unless said otherwise;
 * the watermark conf is copied.
 */
#ifndef SLUICE_SOURCE_H
#define SLUICE_SOURCE_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "No event time": a record that has none. Never moves a watermark. */
#define SL_TIME_NONE SL_TIME_MIN

/* --- watermark strategies ---------------------------------------------------- */

/* User watermark function: given a record just read from a split (and the
 * split's largest event time so far, this record included), return the
 * split's new watermark candidate, or SL_TIME_MIN for "no change". */
typedef int64_t (*sl_watermark_fn)(const void *rec, uint32_t len, int64_t ts, int64_t max_ts,
                                   void *ud);

typedef struct sl_watermark_conf {
    int64_t delay;      /* bounded out-of-orderness: wm = max_event_time - delay - 1 */
    int punctuated;     /* announce after the record that moves it (else periodically) */
    int64_t idle_ms;    /* a split polled without data this long is idle; 0: never */
    sl_watermark_fn fn; /* optional: replaces the bounded rule */
    void *ud;
    /* Event times never decrease within a split (Flink's monotonous
     * timestamps): periodic strategies take a poll's last event time as its
     * largest instead of reading every record's. A record that breaks the
     * promise is not lost: it is judged against the watermark like any
     * other (and may be late). */
    int monotonous;
} sl_watermark_conf;

/* --- the source table -------------------------------------------------------- */

/* One split as handed to its reader. */
typedef struct sl_split {
    int index;        /* 0 .. count-1 over the whole source node */
    int count;        /* splits of the source node */
    const void *desc; /* what enumerate declared for it (NULL when no enumerate) */
    size_t desc_len;
} sl_split;

/* Declaring splits, inside enumerate. */
typedef struct sl_split_enum sl_split_enum;
/* Add a split described by desc (copied). Returns 0 or SL_ENOMEM. */
SL_API int sl_split_add(sl_split_enum *e, const void *desc, size_t len);
/* The parallelism of the source node (a hint for how finely to split). */
SL_API int sl_split_parallelism(const sl_split_enum *e);
/* Fail enumeration with a message; returns code. */
SL_API int sl_split_fail(sl_split_enum *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Source poll results (>= 0); errors are negative SL_E... codes. */
enum sl_poll_result {
    SL_POLL_END = 0,  /* the split is exhausted (bounded input) */
    SL_POLL_MORE = 1, /* records may have been emitted; poll again */
    SL_POLL_WAIT = 2  /* nothing now; poll again in a moment */
};

/* A split's position in a completed checkpoint (the source's commit hook). */
typedef struct sl_split_pos {
    int split;        /* split index, 0 .. count-1 */
    const void *desc; /* what enumerate declared for it */
    size_t desc_len;
    const void *pos; /* what position() made at the checkpoint's barrier */
    size_t len;
} sl_split_pos;

/* Version 3 added commit. The engine accepts tables of version 2 (which end
 * at close) and 3. */
#define SL_SOURCE_VERSION 3

typedef struct sl_source {
    int version; /* SL_SOURCE_VERSION */
    const char *kind;
    /* List the splits (sl_split_add), once, on the thread that starts the
     * job, before any reader opens. Optional: without it every instance
     * reads one split of its own (split i for instance i). */
    int (*enumerate)(sl_split_enum *e, void *conf);
    /* Open a reader of one split. conf is sl_ctx_conf(ctx). Required. */
    int (*open)(sl_ctx *ctx, const sl_split *split, void **reader);
    /* Emit at most `max` records (sl_emit, or sl_out_batch for columns) and
     * return an sl_poll_result. Never called without output credit. Required. */
    int (*poll)(sl_ctx *ctx, void *reader, uint32_t max);
    /* Append the position after the last record emitted (checkpoints).
     * At a checkpoint's barrier sl_ctx_checkpoint_id(ctx) is its id (0 when
     * the engine asks at other times, e.g. at the end of a run). Optional:
     * without it positions are empty. */
    int (*position)(sl_ctx *ctx, void *reader, sl_buf *out);
    /* Resume from a position that position() made, before the first poll.
     * Optional. */
    int (*seek)(sl_ctx *ctx, void *reader, const void *pos, size_t len);
    /* Free the reader. Called once for every successful open. */
    void (*close)(void *reader);
    /* Version 3: checkpoint `checkpoint_id` is complete (its manifest is on
     * disk); pos[0 .. n) are the positions every split of the node had in
     * it, whichever instance read them. For writing progress back to the
     * input's own system (Kafka's committed offsets), never for deciding
     * where to resume: the checkpoint is that. Called once per source node
     * and completed checkpoint, before the sinks' commit, on the job's
     * coordinator thread, with the context of the node's first open
     * instance, possibly while its polls run on a worker. A failure (a
     * negative code) fails the job; a source that can live with one should
     * say so on stderr and return 0. Optional. */
    int (*commit)(sl_ctx *ctx, uint64_t checkpoint_id, const sl_split_pos *pos, int n);
} sl_source;

/* A source node of `width`-byte records (0: variable length) with the
 * watermark strategy `wm` (copied; NULL: no watermark until the input ends,
 * unless readers announce one). Its port 1 carries dead letters. */
SL_API sl_stream *sl_pipeline_source(sl_pipeline *p, const char *name, const sl_source *src,
                                     void *conf, uint32_t width, const sl_watermark_conf *wm);

/* Inside poll: announce the current split's own watermark (for inputs that
 * know it), merged with the strategy's by the engine's rule; and mark the
 * current split idle (until it gives data again). */
SL_API int sl_ctx_watermark(sl_ctx *ctx, int64_t wm);
SL_API int sl_ctx_idle(sl_ctx *ctx, int idle);

/* Inside poll: how far the current split's reader is behind the end of its
 * input, in records (a topic partition's end offset minus the next offset
 * to read; 0 when caught up), with the input's name and partition for the
 * metrics (sluice/metrics.h; the name is copied, at most 63 bytes, the
 * first time). Optional: a source that does not know says nothing. */
SL_API void sl_ctx_split_lag(sl_ctx *ctx, const char *input, int32_t partition, int64_t lag);

/* --- dead letters -------------------------------------------------------------- */

/* Send input that cannot be read to the source's dead-letter port, with a
 * reason (e.g. "line 12: no event time"). The record (variable length):
 *
 *   offset   size   field
 *   0        4      split index (uint32, host order)
 *   4        4      reason length R (uint32, host order)
 *   8        R      reason text (no NUL)
 *   8 + R    rest   the raw input
 *
 * Returns 0 or a negative code. */
SL_API int sl_ctx_dead_letter(sl_ctx *ctx, int64_t ts, const char *reason, const void *raw,
                              uint32_t len);

typedef struct sl_dead_letter {
    int split;
    sl_bytes reason;
    sl_bytes raw;
} sl_dead_letter;
/* Read a dead-letter record; returns 0, or SL_ECORRUPT for a record that is
 * not one. */
SL_API int sl_dead_letter_read(sl_bytes rec, sl_dead_letter *out);

/* The dead-letter stream of a source node (port 1). */
SL_API sl_stream *sl_stream_dead_letters(sl_stream *source_out);

/* --- after a run ------------------------------------------------------------------ */

/* Splits of source node `name` (after the job started), or a negative code. */
SL_API int sl_pipeline_source_splits(sl_pipeline *p, const char *name);
/* The last position of split `split` of source node `name`, appended to out:
 * after the run, the position where the split stopped. */
SL_API int sl_pipeline_source_position(sl_pipeline *p, const char *name, int split, sl_buf *out);

#ifdef __cplusplus
}
#endif
#endif
