/*
 * sluice/operators.h - built-in operators (public API).
 *
 * map, filter and flat_map take a per-record callback and run it in a tight
 * loop over each batch; they are ordinary sl_operator tables underneath, so a
 * user operator that wants the whole batch can do the same. Keyed rolling
 * aggregates use the incremental aggregate interface init/add/merge/result,
 * which windows (sluice/window.h) share.
 *
 * The `ud` pointers of map, filter and flat_map are borrowed: they must
 * outlive the pipeline. sl_stream_aggregate() copies its conf (see there).
 */
#ifndef SLUICE_OPERATORS_H
#define SLUICE_OPERATORS_H

#include "sluice/export.h"
#include <stdint.h>
#include <string.h>
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* map: write the output record (out_width bytes at `out`) from the input
 * record; may change *ts. Return 0, or a negative code to fail the job. */
typedef int (*sl_map_fn)(const void *in, uint32_t in_len, void *out, int64_t *ts, void *ud);
SL_API sl_stream *sl_stream_map(sl_stream *in, const char *name, sl_map_fn fn, void *ud,
                                uint32_t out_width);

/* filter: nonzero keeps the record. Keeps the stream's key. */
typedef int (*sl_filter_fn)(const void *rec, uint32_t len, int64_t ts, void *ud);
SL_API sl_stream *sl_stream_filter(sl_stream *in, const char *name, sl_filter_fn fn, void *ud);

/* flat_map: emit zero or more records with sl_emit()/sl_emit_copy(ctx, ...). */
typedef int (*sl_flat_map_fn)(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud);
SL_API sl_stream *sl_stream_flat_map(sl_stream *in, const char *name, sl_flat_map_fn fn, void *ud,
                                     uint32_t out_width);

/* --- aggregates ---------------------------------------------------------- */

/* Version 2 added `flags`, version 3 `prefetch`; version 1 tables (without
 * either) are still accepted and read as flags 0, and version 1 and 2 tables
 * as prefetch NULL (sl_agg_prefetch()). */
#define SL_AGGREGATE_VERSION 3

/* Flags: promises an aggregate makes, which operators may use to do its work
 * inline instead of calling it.
 *
 * SL_AGG_INT64_SUM  acc is one int64 (acc_size 8), init() sets it to 0,
 *                   merge() adds and result() copies it (result_size 8):
 *                   count and sum.
 * SL_AGG_ADD_ONE    add() adds 1 to that int64 whatever the record (count);
 *                   only with SL_AGG_INT64_SUM.
 * SL_AGG_ADD_VALUE  add() adds the record's value, read as sl_agg_value
 *                   says, to that int64 (sum); only with SL_AGG_INT64_SUM
 *                   and SL_AGG_UD_VALUE, not with SL_AGG_ADD_ONE.
 * SL_AGG_UD_VALUE   ud is an sl_agg_value* (or NULL): builders copy the
 *                   sl_agg_value, so it may live on the caller's stack.
 *
 * Overflow of int64 sums: an ERROR, never a wrap. The keyed aggregate and
 * the windows do the additions of SL_AGG_INT64_SUM aggregates inline (merges
 * always; add() with SL_AGG_ADD_ONE or SL_AGG_ADD_VALUE) with an overflow
 * check, and a sum (or count) that leaves int64 - in a record's addition or
 * in any partial sum a window computes on the way to a result - fails the
 * job with SL_ERANGE and a message naming the node, the key and the window
 * (sl_pipeline_errmsg): no result is emitted from a wrong sum. The
 * functions of sl_agg_count and sl_agg_sum, called directly (by a user
 * operator), cannot report an error: they saturate at INT64_MAX / INT64_MIN.
 * avg keeps a 128-bit sum, so it never overflows; min and max are exact over
 * the whole int64 range.
 */
#define SL_AGG_INT64_SUM 0x1u
#define SL_AGG_ADD_ONE   0x2u
#define SL_AGG_UD_VALUE  0x4u
#define SL_AGG_ADD_VALUE 0x8u

/* An incremental aggregate over records. acc is acc_size bytes, result is
 * result_size bytes; ud is the aggregate conf's ud. merge(acc, other) folds
 * other into acc and must agree with adding other's records to acc.
 *
 * prefetch (version >= 3, optional, may be NULL): a hint, for an aggregate
 * whose add() touches memory of a large accumulator that depends on the
 * record (sl_agg_distinct: one register of a 16 KiB sketch). An operator
 * may call prefetch(acc, rec, len, ud) some records before it calls add()
 * for that record, so that the cache lines add() will need are on their way
 * (__builtin_prefetch) while it works on other records. acc is the
 * operator's best guess of the accumulator add() will get: it may be
 * another one, or acc_size bytes not initialized, so prefetch may compute
 * addresses from acc and the record but must not read or write acc's
 * bytes. Calling it or not never changes a result. The windows (tumbling
 * and sliding) call it with many keys in mind; see operators/window. */
typedef struct sl_aggregate {
    int version; /* SL_AGGREGATE_VERSION (1 is accepted: no flags) */
    const char *name;
    uint32_t acc_size;
    uint32_t result_size;
    void (*init)(void *acc, const void *ud);
    void (*add)(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud);
    void (*merge)(void *acc, const void *other, const void *ud);
    void (*result)(const void *acc, void *out, const void *ud);
    uint32_t flags; /* version >= 2: SL_AGG_... */
    /* version >= 3: a hint before add(), or NULL (see above) */
    void (*prefetch)(const void *acc, const void *rec, uint32_t len, const void *ud);
} sl_aggregate;

/* Built-ins over an int64 value of each record (see sl_agg_value): count
 * (result int64), sum, min, max (int64; min/max of no records are INT64_MAX /
 * INT64_MIN), avg (double: the double nearest sum / n, the sum kept in 128
 * bits, acc_size 24). All have SL_AGG_UD_VALUE; count and sum have
 * SL_AGG_INT64_SUM, count also SL_AGG_ADD_ONE, sum also SL_AGG_ADD_VALUE.
 * Overflow: see above (an error). */
SL_API extern const sl_aggregate sl_agg_count;
SL_API extern const sl_aggregate sl_agg_sum;
SL_API extern const sl_aggregate sl_agg_min;
SL_API extern const sl_aggregate sl_agg_max;
SL_API extern const sl_aggregate sl_agg_avg;
/* Look one up by name ("count", "sum", "min", "max", "avg", and "distinct":
 * sl_agg_distinct of sluice/crdt.h); NULL if unknown. */
SL_API const sl_aggregate *sl_agg_by_name(const char *name);
/* The flags of an aggregate table: 0 for a version 1 table (which has no
 * flags field). */
static inline uint32_t sl_agg_flags(const sl_aggregate *a)
{
    return a && a->version >= 2 ? a->flags : 0;
}
/* The prefetch hook of an aggregate table: NULL for a version 1 or 2 table
 * (which has no prefetch field) or when it has none. */
typedef void (*sl_agg_prefetch_fn)(const void *acc, const void *rec, uint32_t len, const void *ud);
static inline sl_agg_prefetch_fn sl_agg_prefetch(const sl_aggregate *a)
{
    return a && a->version >= 3 ? a->prefetch : NULL;
}

/* Where the built-ins find a record's value: fn(rec, len, ud) if fn is set,
 * else the int64 at byte `offset` of the payload. A NULL ud means offset 0. */
typedef int64_t (*sl_value_fn)(const void *rec, uint32_t len, void *ud);
typedef struct sl_agg_value {
    sl_value_fn fn;
    void *ud;
    uint32_t offset;
} sl_agg_value;

/* Output records of the keyed aggregate (variable length). They carry the
 * result size, so a reader needs nothing but the record (sl_agg_out()):
 *
 *   offset  size          field
 *   0       4             rs: result size in bytes, uint32
 *   4       4             reserved, 0
 *   8       rs            the aggregate's result (e.g. int64 count)
 *   8 + rs  key_len       the key bytes (rest of the record)
 *
 * ts is the event time of the last record added (rolling) or the largest
 * one (final); hash is the key hash. */
typedef enum sl_agg_emit {
    SL_AGG_EMIT_UPDATES = 0, /* after every record, like a Flink keyed aggregate */
    SL_AGG_EMIT_FINAL = 1    /* once per key at the end of the input (none on a cancel) */
} sl_agg_emit;

typedef struct sl_agg_conf {
    const sl_aggregate *agg;
    const void *ud; /* for the aggregate: an sl_agg_value* for the built-ins */
    sl_agg_emit emit;
} sl_agg_conf;

/* Keyed rolling aggregate of a keyed stream (sl_stream_key_by). The conf is
 * copied (a stack conf is fine), and so is the sl_agg_value that ud points to
 * when the aggregate has SL_AGG_UD_VALUE (the built-ins); the aggregate table,
 * any other ud and the sl_agg_value's own ud are borrowed: they must outlive
 * the pipeline. */
SL_API sl_stream *sl_stream_aggregate(sl_stream *in, const char *name, const sl_agg_conf *conf);

/* Reading an aggregate output record. A record too short for its header or
 * its result size reads as result NULL, result_size 0 and an empty key. */
#define SL_AGG_OUT_HDR 8
typedef struct sl_agg_result {
    const void *result; /* result_size bytes, unaligned */
    uint32_t result_size;
    sl_bytes key;
} sl_agg_result;
static inline sl_agg_result sl_agg_out(sl_bytes rec)
{
    sl_agg_result r;
    uint32_t rs;
    r.result = NULL;
    r.result_size = 0;
    r.key.ptr = rec.ptr;
    r.key.len = 0;
    if (rec.len < SL_AGG_OUT_HDR) return r;
    memcpy(&rs, rec.ptr, 4);
    if (rs > rec.len - SL_AGG_OUT_HDR) return r;
    r.result = (const uint8_t *)rec.ptr + SL_AGG_OUT_HDR;
    r.result_size = rs;
    r.key.ptr = (const uint8_t *)rec.ptr + SL_AGG_OUT_HDR + rs;
    r.key.len = rec.len - SL_AGG_OUT_HDR - rs;
    return r;
}
/* The result and the key alone. */
static inline const void *sl_agg_out_result(sl_bytes rec)
{
    return sl_agg_out(rec).result;
}
static inline sl_bytes sl_agg_out_key(sl_bytes rec)
{
    return sl_agg_out(rec).key;
}

#ifdef __cplusplus
}
#endif
#endif
