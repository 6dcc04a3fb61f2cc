/*
 * engine/tracectx_int.h - the W3C `traceparent` header and new span ids
 * (private: engine/ and connectors/). Static helpers, small on purpose: the
 * tracer (include/sluice/trace.h, engine/trace.c) is written elsewhere and
 * will take this over at merge; until then sources and sinks that carry
 * trace contexts use these.
 *
 * traceparent, version 00 (W3C Trace Context, section 3.2), 55 characters:
 *
 *   offset  size  field
 *   0       2     version: lowercase hex, "ff" is invalid
 *   2       1     '-'
 *   3       32    trace-id: lowercase hex, not all zero
 *   35      1     '-'
 *   36      16    parent-id (span id): lowercase hex, not all zero
 *   52      1     '-'
 *   53      2     trace-flags: lowercase hex (bit 0: sampled)
 *
 * A version 00 header is exactly 55 characters; a later version may go on
 * after a '-' at offset 55 (what follows is ignored, as the specification
 * says). Anything else is malformed: the caller ignores the header and
 * counts it.
 *
 * New span ids come from a per-thread xorshift64* generator seeded from the
 * clock and the thread's address (no lock, no system call per id); a zero
 * id, invalid in W3C, is never returned.
 */
#ifndef SLUICE_ENGINE_TRACECTX_INT_H
#define SLUICE_ENGINE_TRACECTX_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "engine/base/clock.h"
#include "sluice/tracectx.h"

#define TRACEPARENT_LEN 55

/* One lowercase hex digit, or -1. */
static inline int sli_tp_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* n bytes from 2n lowercase hex digits; 0, or -1 on a bad digit. */
static inline int sli_tp_unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int hi = sli_tp_hex(s[2 * k]), lo = sli_tp_hex(s[2 * k + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[k] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static inline int sli_tp_zero(const uint8_t *b, size_t n)
{
    uint8_t any = 0;
    for (size_t k = 0; k < n; k++) any |= b[k];
    return any == 0;
}

/* Parse a traceparent value of len bytes (not NUL-terminated). Returns 0 and
 * fills *out, or -1 when it is malformed (then *out is untouched). */
static inline int sli_traceparent_parse(const void *value, size_t len, sl_trace_ctx *out)
{
    const char *s = value;
    uint8_t ver;
    sl_trace_ctx tc;
    if (!s || len < TRACEPARENT_LEN) return -1;
    if (sli_tp_unhex(s, &ver, 1) || ver == 0xff) return -1;
    if (len != TRACEPARENT_LEN && (ver == 0 || s[TRACEPARENT_LEN] != '-')) return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
    if (sli_tp_unhex(s + 3, tc.trace_id, 16) || sli_tp_unhex(s + 36, tc.span_id, 8) ||
        sli_tp_unhex(s + 53, &tc.flags, 1))
        return -1;
    if (sli_tp_zero(tc.trace_id, 16) || sli_tp_zero(tc.span_id, 8)) return -1;
    *out = tc;
    return 0;
}

/* Write the version 00 traceparent of tc into out (TRACEPARENT_LEN
 * characters and a NUL). */
static inline void sli_traceparent_format(const sl_trace_ctx *tc, char out[TRACEPARENT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    *p++ = '0';
    *p++ = '0';
    *p++ = '-';
    for (int k = 0; k < 16; k++) {
        *p++ = hex[tc->trace_id[k] >> 4];
        *p++ = hex[tc->trace_id[k] & 15];
    }
    *p++ = '-';
    for (int k = 0; k < 8; k++) {
        *p++ = hex[tc->span_id[k] >> 4];
        *p++ = hex[tc->span_id[k] & 15];
    }
    *p++ = '-';
    *p++ = hex[tc->flags >> 4];
    *p++ = hex[tc->flags & 15];
    *p = 0;
}

/* A new, non-zero span id (this thread's generator). */
static inline void sli_span_id_new(uint8_t id[8])
{
    static _Thread_local uint64_t state;
    uint64_t x = state;
    if (!x) { /* first use on this thread: seed, never 0 */
        x = (uint64_t)sli_clock_mono_ns() ^ ((uint64_t)(uintptr_t)&state * 0x9E3779B97F4A7C15ull);
        if (!x) x = 0x2545F4914F6CDD1Dull;
    }
    uint64_t r;
    do {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r = x * 0x2545F4914F6CDD1Dull;
    } while (r == 0);
    state = x;
    memcpy(id, &r, 8);
}

#endif
