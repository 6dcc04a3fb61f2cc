/*
 * operators/aggregate.h - private: what the window and aggregate builders
 * share about sl_aggregate tables (operators/aggregate.c implements it).
 * Not under include/: internals, with the sli_ prefix.
 */
#ifndef SLUICE_OPERATORS_AGGREGATE_H
#define SLUICE_OPERATORS_AGGREGATE_H

#include "sluice/operators.h"
#include "sluice/pipeline.h"

/* NULL when `a` is a table the operators accept (version 1 or 2, init, add
 * and result set, known flags that agree with its sizes), else why not, as a
 * phrase ("needs init(), add() and result()"). */
const char *sli_agg_invalid(const sl_aggregate *a);

/* The ud a node keeps for aggregate `a`: for SL_AGG_UD_VALUE aggregates, a
 * copy of the sl_agg_value `ud` points to, owned by pipeline p; else ud
 * itself (borrowed). Returns 0, or SL_ENOMEM with the pipeline's error set. */
int sli_agg_ud_copy(sl_pipeline *p, const sl_aggregate *a, const void *ud, const void **out);

#endif
