/*
 * operators/window/window_test.h - test hooks of the window operator.
 *
 * For tests only (tests/unit/test_window_*.c): internal functions with the
 * sli_ prefix, not declared under include/ and not part of the release ABI.
 */
#ifndef SLUICE_OPERATORS_WINDOW_TEST_H
#define SLUICE_OPERATORS_WINDOW_TEST_H

#include <stdint.h>
#include "sluice/pipeline.h"

/* Force the number of ring slots per key of a tumbling or sliding window
 * node (rounded up to a power of two; 0: sized from the conf, the default),
 * so that tests drive the far-list paths with tiny rings. window_out is the
 * stream sl_stream_window() returned; call before the pipeline runs.
 * Returns 0, or SL_EINVAL when window_out is not a window node's output. */
int sli_window_test_ring(sl_stream *window_out, uint32_t slots);

#endif
