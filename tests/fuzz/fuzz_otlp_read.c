/*
 * tests/fuzz/fuzz_otlp_read.c - libFuzzer target for the OTLP/JSON line
 * reader (sl_otlp_read, connectors/otlp/otlp_read.c).
 *
 * Any input must get 0 or SL_EPARSE with a reason, and never a read outside
 * it (ASan/UBSan catch it). What the reader accepts must be consistent: every
 * span it hands back has a non-zero trace id and span id, its raw texts lie
 * inside the input, and reading the input again gives the same spans; the
 * target aborts otherwise, so the fuzzer reports it.
 *
 * Build: tests/fuzz/build.sh. Its corpus, tests/fuzz/corpus/otlp_read/, is
 * replayed by tests/unit/test_otlp_read.c in every ctest run.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sluice/otlp_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ctx {
    const uint8_t *base;
    size_t size;
    uint64_t sum; /* a digest of what was handed back */
    int n;
} ctx;

static int inside(const ctx *c, sl_bytes b)
{
    const uint8_t *p = b.ptr;
    return p >= c->base && p + b.len <= c->base + c->size;
}

static int check(const sl_otlp_span *s, void *ud)
{
    ctx *c = ud;
    uint8_t z[16] = {0};
    if (!memcmp(s->trace_id, z, 16) || !memcmp(s->span_id, z, 8)) abort();
    if (!inside(c, s->json)) abort();
    if (s->resource.len != 2 && !inside(c, s->resource)) abort();
    if (s->scope.len != 2 && !inside(c, s->scope)) abort();
    if (s->name.len > SL_OTLP_MAX_NAME || s->service.len > SL_OTLP_MAX_NAME) abort();
    c->sum = c->sum * 31 + s->start_ns + s->end_ns * 7 + (uint64_t)s->status + s->json.len;
    c->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctx a = {.base = data, .size = size}, b = a;
    const char *why = NULL;
    int rc = sl_otlp_read((const char *)data, size, check, &a, &why);
    if (rc != 0 && (rc != SL_EPARSE || !why)) abort();
    if (rc == 0) {
        if (sl_otlp_read((const char *)data, size, check, &b, &why) != 0) abort();
        if (a.n != b.n || a.sum != b.sum) abort();
    }
    return 0;
}
