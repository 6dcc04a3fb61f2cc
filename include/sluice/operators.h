/*
 * sluice/operators.h - built-in operators (public API).
 *
 * map, filter and flat_map take a per-record callback and run it in a tight
 * loop over each batch; they are ordinary sl_operator tables underneath, so a
 * user operator that wants the whole batch can do the same. Keyed rolling
 * aggregates use the incremental aggregate interface init/add/merge/result,
 * which windows (sluice/window.h) share.
 *
 * The `ud` pointers are borrowed, like every conf: they must outlive the
 * pipeline.
 */
#ifndef SLUICE_OPERATORS_H
#define SLUICE_OPERATORS_H

#include <stdint.h>
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* map: write the output record (out_width bytes at `out`) from the input
 * record; may change *ts. Return 0, or a negative code to fail the job. */
typedef int (*sl_map_fn)(const void *in, uint32_t in_len, void *out, int64_t *ts, void *ud);
sl_stream *sl_stream_map(sl_stream *in, const char *name, sl_map_fn fn, void *ud,
                         uint32_t out_width);

/* filter: nonzero keeps the record. Keeps the stream's key. */
typedef int (*sl_filter_fn)(const void *rec, uint32_t len, int64_t ts, void *ud);
sl_stream *sl_stream_filter(sl_stream *in, const char *name, sl_filter_fn fn, void *ud);

/* flat_map: emit zero or more records with sl_emit()/sl_emit_copy(ctx, ...). */
typedef int (*sl_flat_map_fn)(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud);
sl_stream *sl_stream_flat_map(sl_stream *in, const char *name, sl_flat_map_fn fn, void *ud,
                              uint32_t out_width);

/* --- aggregates ---------------------------------------------------------- */

#define SL_AGGREGATE_VERSION 1

/* An incremental aggregate over records. acc is acc_size bytes, result is
 * result_size bytes; ud is the aggregate conf's ud. merge(acc, other) folds
 * other into acc and must agree with adding other's records to acc. */
typedef struct sl_aggregate {
    int version; /* SL_AGGREGATE_VERSION */
    const char *name;
    uint32_t acc_size;
    uint32_t result_size;
    void (*init)(void *acc, const void *ud);
    void (*add)(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud);
    void (*merge)(void *acc, const void *other, const void *ud);
    void (*result)(const void *acc, void *out, const void *ud);
} sl_aggregate;

/* Built-ins over an int64 value of each record (see sl_agg_value): count
 * (result int64), sum, min, max (int64; min/max of no records are INT64_MAX /
 * INT64_MIN), avg (double). */
extern const sl_aggregate sl_agg_count;
extern const sl_aggregate sl_agg_sum;
extern const sl_aggregate sl_agg_min;
extern const sl_aggregate sl_agg_max;
extern const sl_aggregate sl_agg_avg;
/* Look one up by name ("count", "sum", "min", "max", "avg"); NULL if unknown. */
const sl_aggregate *sl_agg_by_name(const char *name);

/* Where the built-ins find a record's value: fn(rec, len, ud) if fn is set,
 * else the int64 at byte `offset` of the payload. A NULL ud means offset 0. */
typedef int64_t (*sl_value_fn)(const void *rec, uint32_t len, void *ud);
typedef struct sl_agg_value {
    sl_value_fn fn;
    void *ud;
    uint32_t offset;
} sl_agg_value;

/* Output records of aggregates (variable length):
 *
 *   offset  size          field
 *   0       result_size   the aggregate's result (e.g. int64 count)
 *   rs      key_len       the key bytes (rest of the record)
 *
 * ts is the event time of the last record added (rolling) or the largest
 * one (final); hash is the key hash. */
typedef enum sl_agg_emit {
    SL_AGG_EMIT_UPDATES = 0, /* after every record, like a Flink keyed aggregate */
    SL_AGG_EMIT_FINAL = 1    /* once per key at the end of the input */
} sl_agg_emit;

typedef struct sl_agg_conf {
    const sl_aggregate *agg;
    const void *ud; /* for the aggregate: an sl_agg_value* for the built-ins */
    sl_agg_emit emit;
} sl_agg_conf;

/* Keyed rolling aggregate of a keyed stream (sl_stream_key_by). */
sl_stream *sl_stream_aggregate(sl_stream *in, const char *name, const sl_agg_conf *conf);

/* Split an aggregate output record into result and key. */
static inline const void *sl_agg_out_result(sl_bytes rec)
{
    return rec.ptr;
}
static inline sl_bytes sl_agg_out_key(sl_bytes rec, uint32_t result_size)
{
    sl_bytes k;
    k.ptr = (const uint8_t *)rec.ptr + result_size;
    k.len = rec.len - result_size;
    return k;
}

#ifdef __cplusplus
}
#endif
#endif
