/*
 * sluice/crdt.h - conflict-free replicated data types (public API).
 *
 * State-based CRDTs: every type is a join-semilattice. A replica changes its
 * own state with update operations (increment, set, add, remove...), and two
 * states combine with merge (the join: commutative, associative, idempotent),
 * so replicas that have seen the same updates, in any order, any number of
 * times, hold equal states. That is what lets parallel instances
 * pre-aggregate before a shuffle, replays not double count, and independent
 * pipelines converge without coordination.
 *
 * Types (one opaque handle each):
 *
 *   sl_crdt_gcounter  grow-only counter: per-replica counts; value = sum
 *   sl_crdt_pncounter counter with decrements: per-replica (P, N); value = sum P - sum N
 *   sl_crdt_lww       last-writer-wins register: the value with the largest
 *                     (timestamp, replica id, value bytes); see sl_crdt_lww_set
 *   sl_crdt_mvreg     multi-value register: (value, version vector) pairs; a
 *                     write supersedes every value it has seen; concurrent
 *                     writes are all kept until a later write supersedes them
 *   sl_crdt_orset     observed-remove set, add-wins (Almeida et al., "Delta
 *                     State Replicated Data Types", 2018): each add makes a
 *                     dot (replica, n); the set maps elements to their dots;
 *                     a causal context records every dot seen. A remove
 *                     forgets an element's dots but keeps them in the context,
 *                     so a concurrent add (a dot the remover has not seen)
 *                     wins. The context is a version vector plus a "dot
 *                     cloud" of dots beyond a gap, compacted after each
 *                     join: removed elements leave no tombstone, the context
 *                     is one entry per replica once the gaps are filled.
 *   sl_crdt_hll       HyperLogLog distinct-count sketch, precision p 4..18
 *                     (m = 2^p one-byte registers, standard error about
 *                     1.04 / sqrt(m)). Items are hashed with XXH3-64 (the
 *                     xxHash the engine keys with, sl_hash); the estimate is
 *                     Ertl's improved estimator ("New cardinality estimation
 *                     algorithms for HyperLogLog sketches", 2017), unbiased
 *                     from 0 to far beyond 2^32, so neither HLL++'s empirical
 *                     small-range correction nor a large-range correction is
 *                     needed (a 64-bit hash does not saturate).
 *
 * One handle per type, not one tagged sl_crdt handle: the operations differ
 * per type (a counter has no remove, a set no increment), and merging a
 * counter into a set must be a compile-time error rather than a run-time
 * SL_EINVAL. Every type has the same verbs (new, free, copy, merge, equal,
 * encode, decode; delta_pending and delta_take where deltas apply), so a
 * generic layer (an aggregate table per type, a replica exchange) is a thin
 * table of function pointers over them. The encodings carry a type tag:
 * sl_crdt_peek() says which type a byte string holds.
 *
 * Replica ids are uint32_t: fixed size, compared as numbers (the LWW tie
 * break), and version vectors are sorted arrays of (uint32, uint64) with no
 * allocation per entry. A deployment maps its replica names (regions,
 * instances) to ids once; two live replicas must never share an id. The id
 * is not part of the encoded state (a state is replica-agnostic); the
 * decoders take the id of the replica that will own the decoded object.
 *
 * Deltas (delta-state CRDTs, Almeida et al.). A delta is a small state of
 * the same type that holds what the local updates changed; merging the
 * deltas in any order, with duplicates, gives the same state as merging the
 * full states. Each object keeps a pending delta: the join of the deltas of
 * its local updates since the caller last drained it with
 * sl_crdt_<type>_delta_take() (which hands over a new object, or NULL when
 * nothing changed). merge() does not add to the pending delta: what a
 * replica received is the sender's to propagate. Counters keep their own
 * entry as the delta (no allocation); registers are small, their delta is a
 * copy of the state; the OR-Set keeps a delta set only when made with
 * SL_CRDT_DELTAS; HyperLogLog has no delta (its state is its delta: merge
 * whole sketches). Encode a delta like any state. encode() carries the
 * state, not the pending delta: a snapshot that must keep what was not yet
 * sent takes the delta and encodes it too.
 *
 * A replica restarted from an older state than the one it published must
 * first merge what it already sent (its deltas on the exchange topic) before
 * updating, or take a new replica id: otherwise it reuses counter values and
 * dots that others have already seen.
 *
 * Ownership: element and value bytes (sl_bytes) are copied in; sl_bytes
 * handed out point into the object and stay valid until the object is next
 * changed or freed. Objects made by _new, _copy, _decode and _delta_take are
 * the caller's, freed with _free (which accepts NULL). encode() appends to
 * the caller's sl_buf.
 *
 * Threads: an object is used by one thread at a time (no locks inside);
 * const functions may run concurrently on one object while nobody writes it.
 *
 * Errors: SL_EINVAL (bad argument, merging sketches of different precision,
 * decoding another type), SL_ENOMEM, SL_ERANGE (a count would overflow
 * 2^64), SL_ETOOBIG (a value, element or vector above the caps below),
 * SL_ECORRUPT (malformed bytes), SL_ENOTSUP (unknown encoding version). A
 * failed update or merge leaves the object as it was, except that a merge
 * failing with SL_ENOMEM may have joined part of the other state (still a
 * valid state, below the full join); merge again to finish it.
 *
 * Hot paths: counter increments and HyperLogLog adds never allocate (after
 * a replica's first increment); an OR-Set add allocates for a new element.
 *
 * Encoding, version 1. Integers are little-endian and fixed width. The
 * encoding is canonical: equal states encode to equal bytes (sorted, no zero
 * entries), and decoders accept only canonical bytes, so a decoded state
 * re-encodes to the very bytes it came from. Decoders check every length
 * against the bytes present before allocating, so they allocate at most a
 * small multiple of the input (a sparse sketch: its 2^p registers, at
 * most 256 KiB); trailing bytes are SL_ECORRUPT.
 *
 *   header (every type)
 *   offset  size  field
 *   0       1     magic 0xCD
 *   1       1     type: 1 gcounter, 2 pncounter, 3 lww, 4 mvreg, 5 orset, 6 hll
 *   2       1     version: 1
 *   3       1     flags: 0 (reserved)
 *
 *   version vector (VV), in mvreg and orset
 *   0       4     n entries (<= SL_CRDT_MAX_REPLICAS)
 *   4       12*n  n x [replica u32, counter u64]: replica strictly
 *                 ascending, counter > 0
 *
 *   bytes (BYTES)
 *   0       4     len (<= SL_CRDT_MAX_VALUE)
 *   4       len   the bytes
 *
 *   gcounter body
 *   4       ...   VV: each replica's count (a G-Counter is a version vector)
 *
 *   pncounter body
 *   4       ...   VV: each replica's increments (P)
 *   ...     ...   VV: each replica's decrements (N)
 *
 *   lww body
 *   4       1     1 if the register holds a value, else 0 (and nothing follows)
 *   5       8     timestamp i64
 *   13      4     replica u32
 *   17      ...   BYTES value
 *
 *   mvreg body
 *   4       4     n values (<= SL_CRDT_MAX_CONCURRENT)
 *   8       ...   n x [VV clock, BYTES value], sorted by value bytes (memcmp,
 *                 shorter first on a tie) then by clock encoding; no clock
 *                 strictly below another pair's clock (only maximal pairs
 *                 are kept); no clock empty; no pair twice
 *
 *   orset body
 *   4       ...   VV: the context's version vector
 *   ...     4     c dots in the cloud (<= SL_CRDT_MAX_ELEMENTS)
 *   ...     12*c  c x [replica u32, counter u64], ascending, each counter
 *                 > vv[replica] + 1 (a compacted cloud)
 *   ...     4     n elements (<= SL_CRDT_MAX_ELEMENTS)
 *   ...     ...   n x [BYTES element, u32 d, d x [replica u32, counter u64]]:
 *                 elements strictly ascending by bytes; 1 <= d, dots
 *                 strictly ascending, each in the context; no dot held by
 *                 two elements
 *
 *   hll body
 *   4       1     p (4..18)
 *   5       1     form: 0 dense, 1 sparse (the encoder picks the shorter)
 *   dense:  6     2^p registers, one byte each, each <= 65 - p
 *   sparse: 6     4 bytes: n registers that are not 0
 *           10    4*n  n x u32 (index << 8 | value), index strictly
 *                 ascending, index < 2^p, 1 <= value <= 65 - p
 */
#ifndef SLUICE_CRDT_H
#define SLUICE_CRDT_H

#include "sluice/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sluice/batch.h"
#include "sluice/error.h"
#include "sluice/operator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caps (updates fail with SL_ETOOBIG above them, decoders likewise). */
#define SL_CRDT_MAX_REPLICAS   65536u      /* entries of a version vector / counter */
#define SL_CRDT_MAX_VALUE      (16u << 20) /* bytes of one element or value */
#define SL_CRDT_MAX_ELEMENTS   (1u << 26)  /* elements or cloud dots of an OR-Set */
#define SL_CRDT_MAX_CONCURRENT 1024u       /* concurrent values of an MV-Register */

/* Encoding type tags (byte 1 of every encoding). */
enum sl_crdt_type {
    SL_CRDT_GCOUNTER = 1,
    SL_CRDT_PNCOUNTER = 2,
    SL_CRDT_LWW = 3,
    SL_CRDT_MVREG = 4,
    SL_CRDT_ORSET = 5,
    SL_CRDT_HLL = 6,
};
#define SL_CRDT_ENCODING_VERSION 1

/* The type an encoding holds (enum sl_crdt_type), from its header only;
 * SL_ECORRUPT for bytes that are not a CRDT encoding, SL_ENOTSUP for an
 * unknown version. */
SL_API int sl_crdt_peek(const void *data, size_t len);

/* ---- G-Counter ---------------------------------------------------------- */
typedef struct sl_crdt_gcounter sl_crdt_gcounter;

/* A new, zero counter updated as `replica`. NULL on allocation failure. */
SL_API sl_crdt_gcounter *sl_crdt_gcounter_new(uint32_t replica);
SL_API void sl_crdt_gcounter_free(sl_crdt_gcounter *c);
SL_API int sl_crdt_gcounter_copy(const sl_crdt_gcounter *c, sl_crdt_gcounter **out);
/* Add n to this replica's count. SL_ERANGE if it would pass 2^64 - 1. */
SL_API int sl_crdt_gcounter_increment(sl_crdt_gcounter *c, uint64_t n);
/* a := a join b (per replica, the larger count). */
SL_API int sl_crdt_gcounter_merge(sl_crdt_gcounter *a, const sl_crdt_gcounter *b);
/* The sum of the per-replica counts, modulo 2^64. */
SL_API uint64_t sl_crdt_gcounter_value(const sl_crdt_gcounter *c);
/* One replica's count (0 if it has none). */
SL_API uint64_t sl_crdt_gcounter_get(const sl_crdt_gcounter *c, uint32_t replica);
SL_API bool sl_crdt_gcounter_equal(const sl_crdt_gcounter *a, const sl_crdt_gcounter *b);
/* Whether local increments happened since the last delta_take. */
SL_API bool sl_crdt_gcounter_delta_pending(const sl_crdt_gcounter *c);
/* Hand over the pending delta (a counter holding this replica's entry) and
 * clear it; *out = NULL when nothing is pending. */
SL_API int sl_crdt_gcounter_delta_take(sl_crdt_gcounter *c, sl_crdt_gcounter **out);
SL_API int sl_crdt_gcounter_encode(const sl_crdt_gcounter *c, sl_buf *out);
SL_API int sl_crdt_gcounter_decode(const void *data, size_t len, uint32_t replica,
                                   sl_crdt_gcounter **out);

/* ---- PN-Counter --------------------------------------------------------- */
typedef struct sl_crdt_pncounter sl_crdt_pncounter;

SL_API sl_crdt_pncounter *sl_crdt_pncounter_new(uint32_t replica);
SL_API void sl_crdt_pncounter_free(sl_crdt_pncounter *c);
SL_API int sl_crdt_pncounter_copy(const sl_crdt_pncounter *c, sl_crdt_pncounter **out);
SL_API int sl_crdt_pncounter_increment(sl_crdt_pncounter *c, uint64_t n);
SL_API int sl_crdt_pncounter_decrement(sl_crdt_pncounter *c, uint64_t n);
/* increment(d) for d >= 0, decrement(-d) for d < 0. */
SL_API int sl_crdt_pncounter_add(sl_crdt_pncounter *c, int64_t d);
SL_API int sl_crdt_pncounter_merge(sl_crdt_pncounter *a, const sl_crdt_pncounter *b);
/* sum P - sum N, modulo 2^64: exact whenever the true value fits in int64. */
SL_API int64_t sl_crdt_pncounter_value(const sl_crdt_pncounter *c);
SL_API bool sl_crdt_pncounter_equal(const sl_crdt_pncounter *a, const sl_crdt_pncounter *b);
SL_API bool sl_crdt_pncounter_delta_pending(const sl_crdt_pncounter *c);
SL_API int sl_crdt_pncounter_delta_take(sl_crdt_pncounter *c, sl_crdt_pncounter **out);
SL_API int sl_crdt_pncounter_encode(const sl_crdt_pncounter *c, sl_buf *out);
SL_API int sl_crdt_pncounter_decode(const void *data, size_t len, uint32_t replica,
                                    sl_crdt_pncounter **out);

/* ---- LWW-Register ------------------------------------------------------- */
typedef struct sl_crdt_lww sl_crdt_lww;

/* A new, empty register. */
SL_API sl_crdt_lww *sl_crdt_lww_new(uint32_t replica);
SL_API void sl_crdt_lww_free(sl_crdt_lww *r);
SL_API int sl_crdt_lww_copy(const sl_crdt_lww *r, sl_crdt_lww **out);
/* Write `value` at time `ts` (any int64, event time in ms by convention).
 * Writes are ordered by (ts, replica id, value bytes): the larger wins, so a
 * tie in time goes to the larger replica id, and the value bytes order only
 * a replica that wrote twice at one timestamp. Returns 0 when the write
 * took effect, 1 when it lost to the value the register holds (unchanged). */
SL_API int sl_crdt_lww_set(sl_crdt_lww *r, int64_t ts, sl_bytes value);
SL_API int sl_crdt_lww_merge(sl_crdt_lww *a, const sl_crdt_lww *b);
/* false for an empty register; otherwise the value and, where not NULL,
 * its timestamp and writer. */
SL_API bool sl_crdt_lww_get(const sl_crdt_lww *r, sl_bytes *value, int64_t *ts, uint32_t *replica);
SL_API bool sl_crdt_lww_equal(const sl_crdt_lww *a, const sl_crdt_lww *b);
SL_API bool sl_crdt_lww_delta_pending(const sl_crdt_lww *r);
/* The delta of a register is a copy of it (it is small). */
SL_API int sl_crdt_lww_delta_take(sl_crdt_lww *r, sl_crdt_lww **out);
SL_API int sl_crdt_lww_encode(const sl_crdt_lww *r, sl_buf *out);
SL_API int sl_crdt_lww_decode(const void *data, size_t len, uint32_t replica, sl_crdt_lww **out);

/* ---- MV-Register -------------------------------------------------------- */
typedef struct sl_crdt_mvreg sl_crdt_mvreg;

SL_API sl_crdt_mvreg *sl_crdt_mvreg_new(uint32_t replica);
SL_API void sl_crdt_mvreg_free(sl_crdt_mvreg *r);
SL_API int sl_crdt_mvreg_copy(const sl_crdt_mvreg *r, sl_crdt_mvreg **out);
/* Write `value`: it supersedes every value the register holds now (its
 * clock is their clocks' pointwise maximum plus one for this replica). */
SL_API int sl_crdt_mvreg_set(sl_crdt_mvreg *r, sl_bytes value);
/* Keeps the pairs of a and b that no other pair's clock dominates.
 * SL_ETOOBIG (a unchanged) past SL_CRDT_MAX_CONCURRENT values. */
SL_API int sl_crdt_mvreg_merge(sl_crdt_mvreg *a, const sl_crdt_mvreg *b);
/* Number of concurrent values (0 for a register never written). */
SL_API size_t sl_crdt_mvreg_count(const sl_crdt_mvreg *r);
/* Value i, 0 <= i < count, in ascending byte order. */
SL_API sl_bytes sl_crdt_mvreg_value(const sl_crdt_mvreg *r, size_t i);
SL_API bool sl_crdt_mvreg_equal(const sl_crdt_mvreg *a, const sl_crdt_mvreg *b);
SL_API bool sl_crdt_mvreg_delta_pending(const sl_crdt_mvreg *r);
/* The delta of a register is a copy of it. */
SL_API int sl_crdt_mvreg_delta_take(sl_crdt_mvreg *r, sl_crdt_mvreg **out);
SL_API int sl_crdt_mvreg_encode(const sl_crdt_mvreg *r, sl_buf *out);
SL_API int sl_crdt_mvreg_decode(const void *data, size_t len, uint32_t replica,
                                sl_crdt_mvreg **out);

/* ---- OR-Set (add-wins) -------------------------------------------------- */
typedef struct sl_crdt_orset sl_crdt_orset;

/* Flags of sl_crdt_orset_new: keep a pending delta of local adds/removes. */
#define SL_CRDT_DELTAS 1u

SL_API sl_crdt_orset *sl_crdt_orset_new(uint32_t replica, unsigned flags);
SL_API void sl_crdt_orset_free(sl_crdt_orset *s);
/* A copy of the state (the pending delta is not copied; the copy keeps
 * deltas if s does). */
SL_API int sl_crdt_orset_copy(const sl_crdt_orset *s, sl_crdt_orset **out);
/* Add an element (a new dot; it wins over removes that have not seen it). */
SL_API int sl_crdt_orset_add(sl_crdt_orset *s, sl_bytes elem);
/* Remove an element as observed here (its dots). 0 whether or not present. */
SL_API int sl_crdt_orset_remove(sl_crdt_orset *s, sl_bytes elem);
SL_API int sl_crdt_orset_merge(sl_crdt_orset *a, const sl_crdt_orset *b);
SL_API bool sl_crdt_orset_contains(const sl_crdt_orset *s, sl_bytes elem);
SL_API size_t sl_crdt_orset_size(const sl_crdt_orset *s);
/* Iterate: start with *cursor = 0; each call gives the next element and
 * returns true, false at the end. Order unspecified; no changes meanwhile. */
SL_API bool sl_crdt_orset_next(const sl_crdt_orset *s, size_t *cursor, sl_bytes *elem);
/* Entries in the causal context (version vector + cloud): how much the
 * context weighs, for tests and figures. */
SL_API size_t sl_crdt_orset_context_size(const sl_crdt_orset *s);
SL_API bool sl_crdt_orset_equal(const sl_crdt_orset *a, const sl_crdt_orset *b);
/* False unless made with SL_CRDT_DELTAS and changed since the last take. */
SL_API bool sl_crdt_orset_delta_pending(const sl_crdt_orset *s);
/* Hand over the pending delta (an OR-Set state: the elements added, the
 * dots added and removed as context) and start a new one; *out = NULL when
 * nothing is pending. SL_EINVAL without SL_CRDT_DELTAS. */
SL_API int sl_crdt_orset_delta_take(sl_crdt_orset *s, sl_crdt_orset **out);
SL_API int sl_crdt_orset_encode(const sl_crdt_orset *s, sl_buf *out);
/* The decoded set keeps a pending delta if flags has SL_CRDT_DELTAS. */
SL_API int sl_crdt_orset_decode(const void *data, size_t len, uint32_t replica, unsigned flags,
                                sl_crdt_orset **out);

/* ---- HyperLogLog -------------------------------------------------------- */
typedef struct sl_crdt_hll sl_crdt_hll;

#define SL_CRDT_HLL_P_MIN     4
#define SL_CRDT_HLL_P_MAX     18
#define SL_CRDT_HLL_P_DEFAULT 14

/* A new, empty sketch of precision p (0 means SL_CRDT_HLL_P_DEFAULT). NULL
 * if p is out of range or on allocation failure. */
SL_API sl_crdt_hll *sl_crdt_hll_new(int p);
SL_API void sl_crdt_hll_free(sl_crdt_hll *h);
/* A sketch in the caller's memory (a fixed-size aggregate accumulator):
 * sl_crdt_hll_footprint(p) bytes (0 if p is out of range), aligned as a
 * uint64_t. sl_crdt_hll_init() makes an empty sketch there and returns it,
 * or NULL if size is short or p out of range; never sl_crdt_hll_free() it.
 * A sketch holds no pointers: a byte copy of its memory (a snapshot, an
 * accumulator the engine moves) is the same sketch. */
SL_API size_t sl_crdt_hll_footprint(int p);
SL_API sl_crdt_hll *sl_crdt_hll_init(void *mem, size_t size, int p);
SL_API int sl_crdt_hll_copy(const sl_crdt_hll *h, sl_crdt_hll **out);
SL_API int sl_crdt_hll_precision(const sl_crdt_hll *h);
/* Add an item: XXH3-64 of its bytes, then one register max (h not NULL). */
SL_API void sl_crdt_hll_add(sl_crdt_hll *h, const void *data, size_t len);
/* Add an item by its 64-bit hash (XXH3-64 of the bytes, as sl_hash gives,
 * so that a hash computed once serves both). */
SL_API void sl_crdt_hll_add_hash(sl_crdt_hll *h, uint64_t hash);
/* a := a join b (register-wise max). SL_EINVAL if the precisions differ. */
SL_API int sl_crdt_hll_merge(sl_crdt_hll *a, const sl_crdt_hll *b);
/* The estimated number of distinct items added. */
SL_API double sl_crdt_hll_estimate(const sl_crdt_hll *h);
/* The relative standard error of this precision, 1.04 / sqrt(2^p). */
SL_API double sl_crdt_hll_std_error(int p);
SL_API bool sl_crdt_hll_equal(const sl_crdt_hll *a, const sl_crdt_hll *b);
SL_API int sl_crdt_hll_encode(const sl_crdt_hll *h, sl_buf *out);
SL_API int sl_crdt_hll_decode(const void *data, size_t len, sl_crdt_hll **out);

/* ==== Replicas: CRDT state per key, exchanged as deltas ====================
 * (operators/crdt/replica.c; issue 12, deliverables 3 and 4)
 *
 * An sl_crdt_replica holds the CRDT states of one replica (one region, one
 * pipeline), one per (key, type). The caller updates a state through the
 * type's own functions on the object that sl_crdt_replica_<type>(r, key,
 * SL_CRDT_REPLICA_UPDATE) returns; sl_crdt_replica_take_deltas() then hands
 * out one delta record per changed (key, type), which the caller publishes
 * (appends to a shared topic); every replica, the sender included, merges
 * every record it reads with sl_crdt_replica_apply(). Merge is a join, so
 * records may come late, twice and in any order: replicas that have applied
 * the same records hold equal states. A HyperLogLog has no delta of its
 * own: the replica keeps a copy of the registers it last sent and sends a
 * sketch of those that rose since. A state just made for update is sent
 * whole (its first record), so that every replica has every key.
 *
 * Exchange id: replicas that exchange deltas share a 64-bit exchange id;
 * apply() skips (returns 1) a record of another exchange, so that a topic
 * left over from another run cannot leak into this one.
 *
 * Delta record, version 1 (what take_deltas makes and apply reads):
 *
 *   offset  size  field
 *   0       1     magic 0xCE
 *   1       1     version 1
 *   2       1     type (enum sl_crdt_type)
 *   3       1     flags 0 (reserved)
 *   4       4     sender's replica id u32 (LE)
 *   8       8     exchange id u64 (LE)
 *   16      4     key length K (<= SL_CRDT_REPLICA_MAX_KEY)
 *   20      K     key bytes
 *   20+K    rest  the delta: the type's encoding (its type byte equal to
 *                 byte 2)
 *
 * End marker, version 1: a record of the same header with type 0, which a
 * sender appends to every partition of the topic after its last delta
 * record, so that a reader that has read, on every partition, the markers
 * of every sender of its exchange knows it has read everything they
 * published (sl_crdt_replica_end_marker / _end_marker_read; apply() skips
 * it and returns 2):
 *
 *   offset  size  field
 *   0       1     magic 0xCE
 *   1       1     version 1
 *   2       1     type 0: end marker
 *   3       1     flags 0 (reserved)
 *   4       4     sender's replica id u32 (LE)
 *   8       8     exchange id u64 (LE)
 *   16      4     key length K (<= SL_CRDT_REPLICA_MAX_KEY)
 *   20      K     key bytes: a key the topic's partitioner places on
 *                 `partition` (the sender picks it)
 *   20+K    1     marker version 1
 *   21+K    3     reserved 0
 *   24+K    4     partition u32 the marker was written to
 *   28+K    4     partitions u32: the topic's partition count as the sender
 *                 saw it (a reader whose topic has another count must not
 *                 trust the markers); partition < partitions
 *
 * Snapshot, version 1 (sl_crdt_replica_snapshot / _restore, the operator's
 * snapshot / restore hooks):
 *
 *   offset  size  field
 *   0       4     magic "SLCR"
 *   4       1     version 1
 *   5       1     HyperLogLog precision p
 *   6       2     reserved 0
 *   8       4     replica id u32 of the replica snapshotted
 *   12      8     exchange id u64
 *   20      4     n entries
 *   24      ...   n x entry:
 *                 0    1  type (enum sl_crdt_type)
 *                 1    1  flags: 1 = changes not yet taken as deltas
 *                 2    4  key length K (<= SL_CRDT_REPLICA_MAX_KEY)
 *                 6    K  key bytes
 *                 6+K  4  state length L
 *                 10+K L  the state: the type's encoding
 *                 entries strictly ascending by (type, key bytes): equal
 *                 replicas give equal snapshots (but for bytes 8..11)
 *
 * An entry whose changes were not yet taken is restored with its whole
 * state pending (a state is a valid delta, larger than the one lost).
 *
 * Restarting: restore the last snapshot, then apply the exchange's records
 * from the topic's start (or from the position saved with the snapshot)
 * before any local update: the replica must have merged everything it had
 * already published (crdt.h above), and merge makes re-reading harmless.
 * Local input after the snapshot is replayed by the source; for counters
 * not to count it twice, the deltas published after the snapshot must not
 * be visible to the restarted replica, which is what a checkpointed
 * (exactly-once) topic sink gives. A snapshot may be restored under another
 * replica id (states are replica-agnostic).
 *
 * Ownership: the caller owns the replica (sl_crdt_replica_free accepts
 * NULL); objects returned by the accessors are the replica's, valid until
 * it is freed or restored. Threads: one thread at a time. */

typedef struct sl_crdt_replica sl_crdt_replica;

#define SL_CRDT_REPLICA_MAX_KEY 65535u
/* Accessor flags: make the state if missing and queue it for the next
 * take (a sketch: its risen registers). Without it: look up only. Take the
 * state with it for every update: the queue is how take finds changes
 * without scanning every key (a change made through a pointer kept from an
 * earlier call waits until the state is next taken for update). */
#define SL_CRDT_REPLICA_UPDATE 1u

/* A replica with id `id` in exchange `exchange`, HyperLogLogs of precision
 * hll_p (0: SL_CRDT_HLL_P_DEFAULT). NULL on allocation failure or a bad p. */
SL_API sl_crdt_replica *sl_crdt_replica_new(uint32_t id, uint64_t exchange, int hll_p);
SL_API void sl_crdt_replica_free(sl_crdt_replica *r);
SL_API uint32_t sl_crdt_replica_id(const sl_crdt_replica *r);
/* The state of (key, type): with SL_CRDT_REPLICA_UPDATE made if missing
 * (NULL on allocation failure or a key above SL_CRDT_REPLICA_MAX_KEY),
 * without it NULL when missing. OR-Sets keep deltas (SL_CRDT_DELTAS). */
SL_API sl_crdt_gcounter *sl_crdt_replica_gcounter(sl_crdt_replica *r, sl_bytes key, unsigned flags);
SL_API sl_crdt_pncounter *sl_crdt_replica_pncounter(sl_crdt_replica *r, sl_bytes key,
                                                    unsigned flags);
SL_API sl_crdt_lww *sl_crdt_replica_lww(sl_crdt_replica *r, sl_bytes key, unsigned flags);
SL_API sl_crdt_mvreg *sl_crdt_replica_mvreg(sl_crdt_replica *r, sl_bytes key, unsigned flags);
SL_API sl_crdt_orset *sl_crdt_replica_orset(sl_crdt_replica *r, sl_bytes key, unsigned flags);
SL_API sl_crdt_hll *sl_crdt_replica_hll(sl_crdt_replica *r, sl_bytes key, unsigned flags);
/* Number of (key, type) states, and state i (0 <= i < size, in no set
 * order) with its key and type; the object is the type's handle. */
SL_API size_t sl_crdt_replica_size(const sl_crdt_replica *r);
SL_API const void *sl_crdt_replica_at(const sl_crdt_replica *r, size_t i, sl_bytes *key, int *type);
/* Call emit once per (key, type) changed since the last take, with a delta
 * record (valid during the call only) and its key; stops at and returns the
 * first non-zero emit result. A state whose emit failed stays pending. */
typedef int (*sl_crdt_delta_fn)(void *ud, sl_bytes key, const void *rec, size_t len);
SL_API int sl_crdt_replica_take_deltas(sl_crdt_replica *r, sl_crdt_delta_fn emit, void *ud);
/* Merge one delta record: 0 merged, 1 skipped (another exchange), 2 an end
 * marker of this exchange (nothing merged), or SL_ECORRUPT / SL_ENOTSUP (bad
 * record), SL_EINVAL (a sketch of another precision), SL_ENOMEM... with the
 * replica unchanged but for a partial merge (crdt.h, Errors). Merging into
 * a state the replica has allocates nothing once its scratch objects have
 * grown (the record is decoded into a per-type scratch object, a sketch
 * joined straight from its bytes), except for an OR-Set element the state
 * did not hold and an MV-Register (whose merge allocates); a state the
 * replica did not have is decoded into a new object. */
SL_API int sl_crdt_replica_apply(sl_crdt_replica *r, const void *rec, size_t len);
/* End markers (above). end_marker appends to out the marker of replica r
 * for `partition` of `partitions`, keyed by `key` (SL_EINVAL unless
 * partition < partitions). end_marker_read returns 1 and fills *m (m may be
 * NULL) for an end marker, 0 for a delta record, SL_ECORRUPT / SL_ENOTSUP
 * for bytes that are neither. */
typedef struct sl_crdt_end_marker {
    uint32_t sender;
    uint64_t exchange;
    uint32_t partition, partitions;
} sl_crdt_end_marker;
SL_API int sl_crdt_replica_end_marker(const sl_crdt_replica *r, sl_bytes key, uint32_t partition,
                                      uint32_t partitions, sl_buf *out);
SL_API int sl_crdt_replica_end_marker_read(const void *rec, size_t len, sl_crdt_end_marker *m);
/* The key of a delta record (an sl_key_fn for a topic sink: partitions by
 * key); an empty key for bytes that are not one. */
SL_API sl_bytes sl_crdt_replica_delta_key(const void *rec, uint32_t len, void *ud);
/* Same keys, types and equal states. */
SL_API bool sl_crdt_replica_equal(const sl_crdt_replica *a, const sl_crdt_replica *b);
SL_API int sl_crdt_replica_snapshot(const sl_crdt_replica *r, sl_buf *out);
/* Replace r's states by the snapshot's (r unchanged on error: SL_ECORRUPT,
 * SL_ENOTSUP, SL_EINVAL for another exchange or precision, SL_ENOMEM). */
SL_API int sl_crdt_replica_restore(sl_crdt_replica *r, const void *data, size_t len);

/* The replica operator (conf: sl_crdt_replica_conf*, parallelism 1): input
 * `deltas_input` carries topic records (sluice/connectors.h's layout) whose
 * values are delta records, merged into the replica; every other input
 * carries local records, given to update(). After each batch of local
 * records it emits the deltas taken (variable-length records: a delta
 * record each, event time the batch's largest) for a topic sink keyed by
 * sl_crdt_replica_delta_key. snapshot / restore carry the replica's
 * snapshot (above). The replica is the caller's and must outlive the run;
 * after the run it holds the result. */
typedef struct sl_crdt_replica_conf {
    sl_crdt_replica *replica;
    int (*update)(sl_crdt_replica *r, const void *rec, uint32_t len, int64_t ts, void *ud);
    void *ud;
    int deltas_input; /* logical input of the deltas; -1: none */
} sl_crdt_replica_conf;
SL_API extern const sl_operator sl_crdt_replica_op;

#ifdef __cplusplus
}
#endif
#endif

/* ==== CRDT aggregates (operators/crdt/agg.c) ============================== */
/*
 * sl_agg_distinct: a HyperLogLog (p = SL_AGG_DISTINCT_P) distinct count of
 * the records' int64 values, as an sl_aggregate (sluice/operators.h) for
 * keyed rolling aggregates and windows; also sl_agg_by_name("distinct").
 * The accumulator is the sketch itself (sl_crdt_hll_init in the
 * accumulator's first bytes, no pointers; a (const sl_crdt_hll *) cast of it
 * is the sketch) followed by its register histogram, so the engine may copy,
 * snapshot and restore it as bytes. add(): the value is read as for the built-ins
 * (sl_agg_value; SL_AGG_UD_VALUE) and its 8 bytes are hashed with XXH3-64;
 * merge(): the union (register-wise max); result: int64, the estimate
 * rounded to the nearest integer (relative standard error about 0.81 %);
 * prefetch() (an sl_aggregate version 3 hook): the cache line of the
 * register the value will update, so that windows over many keys can
 * overlap those misses (it reads nothing of the accumulator).
 * There is no exact distinct-count aggregate: an exact set cannot live in a
 * fixed-size accumulator (`sluice run window-agg --agg distinct-exact`
 * computes one with two windows).
 *
 * (A section with its own guard: it follows the header's end.)
 */
#ifndef SLUICE_CRDT_AGG_H
#define SLUICE_CRDT_AGG_H
#include "sluice/operators.h"
#ifdef __cplusplus
extern "C" {
#endif

#define SL_AGG_DISTINCT_P 14
/* The sketch (sl_crdt_hll_footprint(14) bytes), then its register
 * histogram (68 x uint16: 66 counts and 2 of padding). */
#define SL_AGG_DISTINCT_ACC_SIZE (8u + (1u << SL_AGG_DISTINCT_P) + 136u)
SL_API extern const sl_aggregate sl_agg_distinct;

#ifdef __cplusplus
}
#endif
#endif
