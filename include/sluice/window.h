/*
 * sluice/window.h - event-time windows (public API; source watermark
 * strategies are in sluice/source.h).
 *
 * Windows follow Apache Flink's conventions so that results can be compared:
 *
 *  - a window is [start, end); it fires when the watermark reaches end - 1;
 *  - tumbling(size, offset): windows start at offset + k * size;
 *  - sliding(size, slide, offset): windows start at offset + k * slide. Each
 *    record is aggregated once, into a slice of gcd(size, slide); a firing
 *    window merges its slices with the aggregate's merge();
 *  - session(gap): a record at t opens [t, t + gap); windows that overlap or
 *    touch merge (so a record bridging two sessions merges them);
 *  - allowed lateness L: a window has expired once the watermark reaches
 *    end - 1 + L, and its state is then purged. A record for a window that has
 *    fired but not expired updates it, and the window fires again at once. A
 *    record is *late* when every window it belongs to (sessions: the merged
 *    window) has expired: it goes to side output port 1 unchanged;
 *  - a sliding window with slide > size leaves gaps between its windows. A
 *    record in a gap belongs to no window: it is not late, whatever the
 *    watermark. Flink drops such records; here they go, unchanged, to side
 *    output port 3 (sl_stream_window_unassigned), so that nothing is lost
 *    silently; they count as dead letters in sl_pipeline_stats;
 *  - event time is any int64 (0 and negative times are ordinary times);
 *  - at the end of the input (watermark +inf) every window not yet fired
 *    fires; no window fires twice without new data.
 *
 * Ports of a window node:
 *
 *   port  stream                        records
 *   0     sl_stream_window()            results (below), event time end - 1
 *   1     sl_stream_window_late()       late input records, unchanged
 *   2     sl_stream_window_early()      early results (early_ms > 0), as port 0
 *   3     sl_stream_window_unassigned() input records in no window, unchanged
 *
 * Result records (ports 0 and 2; variable length), event time end - 1, hash
 * the key's hash. They carry the result size, so a reader needs nothing but
 * the record (sl_window_out() below):
 *
 *   offset        size          field
 *   0             8             window start, int64 (host order)
 *   8             8             window end, int64 (exclusive)
 *   16            4             rs: result size in bytes, uint32
 *   20            4             reserved, 0
 *   24            rs            the aggregate's result
 *   24 + rs       key_len       the key bytes (rest of the record)
 *
 * Trace context (sluice/trace.h). With a tracer on the pipeline, a result
 * into which sampled records went is a span named after the window node:
 * the child of the earliest of them, linked to up to SL_SPAN_LINKS_MAX
 * (four are kept per key and slice, or per gap of a session), with
 * attributes sluice.window.start, sluice.window.end, sluice.key_hash and
 * sluice.contributors (the sampled records counted), from the first one's
 * arrival to the firing; the result record carries the span's context.
 * Kept out of checkpoints (after a restore, the records before it are not
 * linked), at most 4096 (key, slice) pairs per instance, and not for
 * sl_stream_window_combined's results. Late and unassigned records keep
 * their own context.
 *
 * State lives in engine-owned keyed state (tumbling / sliding: one value per
 * key holding a ring of its slices; sessions: keyed by the record key plus a
 * start time) and firing uses engine event-time timers (at most one pending
 * per key and due window), so nothing is allocated per record.
 *
 * Ownership: sl_stream_window() copies the conf (a stack conf is fine), and
 * the sl_agg_value that agg_ud points to when the aggregate has
 * SL_AGG_UD_VALUE (the built-ins); the aggregate table itself, any other
 * agg_ud and the sl_agg_value's own ud are borrowed: they must outlive the
 * pipeline.
 */
#ifndef SLUICE_WINDOW_H
#define SLUICE_WINDOW_H

#include "sluice/export.h"
#include <stdint.h>
#include <string.h>
#include "sluice/operators.h"
#include "sluice/connectors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_window_kind {
    SL_WINDOW_TUMBLING = 0,
    SL_WINDOW_SLIDING = 1,
    SL_WINDOW_SESSION = 2
} sl_window_kind;

typedef struct sl_window_conf {
    sl_window_kind kind;
    int64_t size;     /* tumbling, sliding: window length (ms, > 0) */
    int64_t slide;    /* sliding: distance between window starts (> 0); tumbling: = size */
    int64_t offset;   /* tumbling, sliding: starts are offset + k * slide */
    int64_t gap;      /* session: inactivity gap (> 0) */
    int64_t lateness; /* allowed lateness L (>= 0) */
    const sl_aggregate *agg;
    const void *agg_ud; /* for the aggregate: an sl_agg_value* for the built-ins */
    /* Early firing (tumbling, sliding; 0: none): at most every early_ms of
     * processing time after a key gets new data, each window of the key
     * that the watermark has not fired yet and that got data since the
     * last early firing fires its current partial result. Early results go
     * to side output port 2 (sl_stream_window_early), never to port 0, so
     * the port tells them from final firings; same record layout. The final
     * firing follows as usual when the watermark reaches end - 1. */
    int64_t early_ms;
} sl_window_conf;

/* Conf makers (the aggregate is set afterwards: c.agg = &sl_agg_count). */
static inline sl_window_conf sl_window_tumbling(int64_t size, int64_t offset)
{
    sl_window_conf c;
    memset(&c, 0, sizeof(c));
    c.kind = SL_WINDOW_TUMBLING;
    c.size = c.slide = size;
    c.offset = offset;
    return c;
}
static inline sl_window_conf sl_window_sliding(int64_t size, int64_t slide)
{
    sl_window_conf c;
    memset(&c, 0, sizeof(c));
    c.kind = SL_WINDOW_SLIDING;
    c.size = size;
    c.slide = slide;
    return c;
}
static inline sl_window_conf sl_window_session(int64_t gap)
{
    sl_window_conf c;
    memset(&c, 0, sizeof(c));
    c.kind = SL_WINDOW_SESSION;
    c.gap = gap;
    return c;
}

/* A window node over a keyed stream (sl_stream_key_by). Returns its result
 * stream (port 0, records as drawn above). The conf is copied. */
SL_API sl_stream *sl_stream_window(sl_stream *keyed_in, const char *name,
                                   const sl_window_conf *conf);
/* The late side output of a window node: the late records, unchanged
 * (port 1, the width of the window's input). */
SL_API sl_stream *sl_stream_window_late(sl_stream *window_out);
/* The early firings of a window node whose conf has early_ms > 0 (port 2,
 * records as drawn above, event time end - 1). */
SL_API sl_stream *sl_stream_window_early(sl_stream *window_out);
/* The records that belong to no window (sliding windows with slide > size:
 * the gaps between windows), unchanged (port 3, the width of the window's
 * input). Empty for windows without gaps. */
SL_API sl_stream *sl_stream_window_unassigned(sl_stream *window_out);

/* The same window with a combiner: pre-aggregation before the shuffle.
 *
 *   sl_stream_window_combined(in, name, key, key_ud, conf)
 *
 * gives the records of sl_stream_window(sl_stream_key_by(in, ..., key,
 * key_ud), name, conf): the same results, late records (port 1, unchanged,
 * the width of `in`), records in no window (port 3) and firings under
 * allowed lateness. It plans three nodes:
 *
 *   "<name>.combine"  one instance per instance of `in`, chained to it: per
 *                     (key, slice of gcd(size, slide)) a partial
 *                     accumulator of conf->agg; a slice's partials go on
 *                     before the watermark that fires its first window
 *   "<name>.key"      the shuffle (key_by) of partials and raw records
 *   "<name>"          the window, which merges partials with agg->merge()
 *
 * so that a key's records cross the shuffle once per slice and upstream
 * instance instead of once each. Records whose first window the combiner's
 * watermark has already fired (late or within allowed lateness) and records
 * in no window cross unchanged and are judged by the window exactly as
 * without a combiner. Checkpoints: the partials are engine keyed state of
 * the combiner, snapshotted and restored with it.
 *
 * Tumbling and sliding windows, any aggregate with merge() (count, sum, min,
 * max, avg, sl_agg_distinct). Refused (SL_ENOTSUP, reported by
 * sl_pipeline_run): session windows and early firing (early_ms > 0), whose
 * results would depend on when partials arrive. sl_stream_window_late() and
 * _unassigned() accept the returned stream. The conf is copied (as by
 * sl_stream_window); key and key_ud are borrowed.
 * Idle inputs: a combiner keeps its partials until its own watermark moves
 * (operators hear no "idle"), so do not combine a stream whose sources mark
 * splits idle (idle_ms) while a window downstream could go on without them:
 * the held partials would reach it late. */
SL_API sl_stream *sl_stream_window_combined(sl_stream *in, const char *name, sl_key_fn key,
                                            void *key_ud, const sl_window_conf *conf);

/* What a combined window's combiner sent across the shuffle so far (summed
 * over its instances; any thread): input records seen, partials and raw
 * records sent, and their payload bytes. SL_EINVAL when `out` is not the
 * result stream of sl_stream_window_combined(). */
typedef struct sl_window_combine_stats {
    uint64_t records_in;
    uint64_t partials;
    uint64_t raw;
    uint64_t bytes;
} sl_window_combine_stats;
SL_API int sl_window_combined_stats(sl_stream *out, sl_window_combine_stats *st);

/* Reading a result record (port 0 or 2). A record too short for its header
 * or its result size reads as result NULL, result_size 0 and an empty key. */
#define SL_WINDOW_OUT_HDR 24
typedef struct sl_window_result {
    int64_t start, end;
    const void *result; /* result_size bytes, unaligned */
    uint32_t result_size;
    sl_bytes key;
} sl_window_result;
static inline sl_window_result sl_window_out(sl_bytes rec)
{
    sl_window_result r;
    memset(&r, 0, sizeof(r));
    if (rec.len < SL_WINDOW_OUT_HDR) return r;
    const uint8_t *p = (const uint8_t *)rec.ptr;
    uint32_t rs;
    memcpy(&r.start, p, 8);
    memcpy(&r.end, p + 8, 8);
    memcpy(&rs, p + 16, 4);
    if (rs > rec.len - SL_WINDOW_OUT_HDR) return r;
    r.result = p + SL_WINDOW_OUT_HDR;
    r.result_size = rs;
    r.key.ptr = p + SL_WINDOW_OUT_HDR + rs;
    r.key.len = rec.len - SL_WINDOW_OUT_HDR - rs;
    return r;
}

/* Watermark strategies for sources: sluice/source.h (the engine owns them). */

#ifdef __cplusplus
}
#endif
#endif
