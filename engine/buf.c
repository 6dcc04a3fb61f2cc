/*
 * engine/buf.c - growable byte buffers (sl_buf): snapshots, text formatting.
 * Invariant: len <= cap; ptr is NULL only while cap == 0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/operator.h"

int sl_buf_reserve(sl_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return SL_ETOOBIG;
        cap *= 2;
    }
    uint8_t *p = realloc(b->ptr, cap);
    if (!p) return SL_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int sl_buf_append(sl_buf *b, const void *data, size_t len)
{
    int rc = sl_buf_reserve(b, len);
    if (rc) return rc;
    if (len) memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return 0;
}

int sl_buf_printf(sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    for (int pass = 0; pass < 2; pass++) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(room ? (char *)b->ptr + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) return SL_EINVAL;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        int rc = sl_buf_reserve(b, (size_t)n + 1);
        if (rc) return rc;
    }
    return SL_EINVAL;
}

void sl_buf_free(sl_buf *b)
{
    if (!b) return;
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}
