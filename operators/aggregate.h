/*
 * operators/aggregate.h - private: what the window and aggregate builders
 * share about sl_aggregate tables (operators/aggregate.c implements it).
 * Not under include/: internals, with the sli_ prefix.
 */
#ifndef SLUICE_OPERATORS_AGGREGATE_H
#define SLUICE_OPERATORS_AGGREGATE_H

#include <stdint.h>
#include <string.h>
#include "sluice/operators.h"
#include "sluice/pipeline.h"

/* The int64 value of a record as the built-ins read it (sl_agg_value): fn if
 * set, else the int64 at `offset` (0 for a NULL ud); 0 when the record is
 * too short. Inline: the operators' sum fast path (SL_AGG_ADD_VALUE) calls
 * it per record. */
static inline int64_t sli_agg_value(const void *rec, uint32_t len, const void *ud)
{
    const sl_agg_value *v = ud;
    int64_t x;
    if (!v) {
        if (len < 8) return 0;
        memcpy(&x, rec, 8);
        return x;
    }
    if (v->fn) return v->fn(rec, len, v->ud);
    if ((uint64_t)v->offset + 8 > len) return 0;
    memcpy(&x, (const uint8_t *)rec + v->offset, 8);
    return x;
}

/* Key bytes for an error message: printable ASCII as is, other bytes as
 * \xNN, an 8-byte key that is not printable also as its int64 value; cut
 * at cap - 1 bytes (with "..."). Returns buf. */
const char *sli_key_str(char *buf, size_t cap, const void *key, uint32_t len);

/* NULL when `a` is a table the operators accept (version 1 to 3, init, add
 * and result set, known flags that agree with its sizes), else why not, as a
 * phrase ("needs init(), add() and result()"). */
const char *sli_agg_invalid(const sl_aggregate *a);

/* The ud a node keeps for aggregate `a`: for SL_AGG_UD_VALUE aggregates, a
 * copy of the sl_agg_value `ud` points to, owned by pipeline p; else ud
 * itself (borrowed). Returns 0, or SL_ENOMEM with the pipeline's error set. */
int sli_agg_ud_copy(sl_pipeline *p, const sl_aggregate *a, const void *ud, const void **out);

#endif
