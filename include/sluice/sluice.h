/*
 * sluice/sluice.h - the whole public API of sluice, a stream processing
 * engine in C11. Only the headers under include/sluice/ are public. A
 * pipeline, or a program using the broker, needs this one include.
 *
 *   error.h       error codes, sl_strerror
 *   batch.h       record batches
 *   operator.h    writing operators and sinks
 *   source.h      writing sources: splits, watermarks, dead letters
 *   state.h       engine-owned keyed state
 *   pipeline.h    building and running pipelines
 *   operators.h   built-in operators and aggregates
 *   connectors.h  bundled sources and sinks
 *   window.h      event-time windows, allowed lateness, late output
 *   broker.h      the built-in broker's log: topics, producers, readers, groups
 *   sqlite.h      the idempotent SQLite sink
 *   saga.h        the saga operator: steps, compensations, timeouts, retries
 *   trace.h       W3C trace context, spans, the tracer and its exporter table
 *   otlp.h        OTLP/JSON encoding; file and OTLP/HTTP span exporters
 *   otlp_read.h   reading spans from OTLP/JSON lines
 *
 * Meant for programs that use sluice; the library's own files include only
 * the headers they use.
 */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include "sluice/error.h"
#include "sluice/tracectx.h"
#include "sluice/batch.h"
#include "sluice/operator.h"
#include "sluice/state.h"
#include "sluice/pipeline.h"
#include "sluice/source.h"
#include "sluice/operators.h"
#include "sluice/connectors.h"
#include "sluice/window.h"
#include "sluice/join.h"
#include "sluice/metrics.h"
#include "sluice/http.h"
#include "sluice/broker.h"
#include "sluice/checkpoint.h"
#include "sluice/sqlite.h"
#include "sluice/server.h"
#include "sluice/kafka.h"
#include "sluice/crdt.h"
#include "sluice/saga.h"
#include "sluice/trace.h"
#include "sluice/otlp.h"
#include "sluice/otlp_read.h"

#endif
