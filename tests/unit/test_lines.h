/*
 * tests/unit/test_lines.h - text lines for tests that compare outputs as
 * sorted lines (the window and join oracles): a growable array of strings,
 * and the check that two of them hold the same lines in any order.
 * Header-only; include it after <cmocka.h>.
 */
#ifndef SLUICE_TEST_LINES_H
#define SLUICE_TEST_LINES_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

static void lines_add(lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lines_add(lines *l, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof(char *));
        assert_non_null(l->v);
    }
    l->v[l->n++] = strdup(buf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Sorted a and b must be equal; on a difference, fail naming the first. */
static inline void lines_expect_equal(lines *a, lines *b, const char *what)
{
    if (a->n > 1) qsort(a->v, a->n, sizeof(char *), cmp_str); /* v is NULL while empty */
    if (b->n > 1) qsort(b->v, b->n, sizeof(char *), cmp_str);
    size_t i = 0;
    while (i < a->n && i < b->n && strcmp(a->v[i], b->v[i]) == 0) i++;
    if (i < a->n || i < b->n)
        fail_msg("%s: %zu against %zu lines; first difference at %zu: '%s' against '%s'", what,
                 a->n, b->n, i, i < a->n ? a->v[i] : "(none)", i < b->n ? b->v[i] : "(none)");
}

#endif
