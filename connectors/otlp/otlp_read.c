/*
 * connectors/otlp/otlp_read.c - a validating JSON pull reader, and the walk
 * over an OTLP/JSON ExportTraceServiceRequest line that it serves
 * (sluice/otlp_read.h).
 *
 * The reader is a cursor over one buffer (struct jr): it never allocates and
 * never copies, except a string's decoded form into a caller's fixed buffer.
 * Values are consumed in document order: obj_next()/arr_next() step through
 * members and elements, skip() validates and passes over any value, so that
 * unknown fields are checked as strictly as known ones. Recursion is bounded
 * by JR_MAX_DEPTH (a deeper document is an error, never a stack overflow).
 * Every error sets r->err to a static reason and makes every later call fail,
 * so the walk can test once per step.
 *
 * Field order in JSON objects is free, but a span's service comes from its
 * resource, which may follow "scopeSpans" in the text. So in an element of
 * resourceSpans (and of scopeSpans) the spans are read as they come when the
 * "resource" ("scope") came first, as exporters write it; when it did not,
 * the "scopeSpans" ("spans") value is validated and its range kept, and a
 * sub-reader reads it once the element has ended. A span object is read in
 * one pass (its fields need nothing from elsewhere).
 *
 * Invariants: r->p never passes r->end; a range handed to a sub-reader was
 * validated by skip(), so the sub-reader meets only type errors.
 */
#include <stdint.h>
#include <string.h>
#include "sluice/error.h"
#include "sluice/otlp_read.h"

#define JR_MAX_DEPTH 64

typedef struct jr {
    const char *p, *end;
    const char *err; /* first error, or NULL */
    int depth;
} jr;

static int fail(jr *r, const char *why)
{
    if (!r->err) r->err = why;
    r->p = r->end;
    return -1;
}

static void ws(jr *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* Next non-space byte, or 0 at the end. */
static char peek(jr *r)
{
    ws(r);
    return r->p < r->end ? *r->p : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string at r->p (after spaces): its raw content between the quotes.
 * Validates escapes (\uXXXX included) and refuses raw control bytes. */
static int str_raw(jr *r, const char **s, size_t *n)
{
    if (peek(r) != '"') return fail(r, "expected a string");
    const char *q = ++r->p;
    while (q < r->end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) return fail(r, "control character in a string");
        if (c == '\\') {
            if (++q >= r->end) break;
            switch (*q) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't': break;
            case 'u':
                if (r->end - q < 5) return fail(r, "bad \\u escape in a string");
                for (int i = 1; i <= 4; i++)
                    if (hexval(q[i]) < 0) return fail(r, "bad \\u escape in a string");
                q += 4;
                break;
            default: return fail(r, "bad escape in a string");
            }
        }
        q++;
    }
    if (q >= r->end) return fail(r, "unterminated string");
    *s = r->p;
    *n = (size_t)(q - r->p);
    r->p = q + 1;
    return 0;
}

static uint32_t u4(const char *s)
{
    return (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

/* Decode a raw string (validated by str_raw) into out[0 .. cap) as UTF-8;
 * a lone surrogate becomes U+FFFD. Returns its length, or -1 if longer. */
static long str_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] != '\\') {
            if (o >= cap) return -1;
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            cp = u4(s + i);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
                uint32_t lo = u4(s + i + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
            break;
        default: cp = (unsigned char)e; break; /* " \ / */
        }
        uint8_t u[4];
        int k;
        if (cp < 0x80) {
            u[0] = (uint8_t)cp;
            k = 1;
        } else if (cp < 0x800) {
            u[0] = (uint8_t)(0xC0 | cp >> 6);
            u[1] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (uint8_t)(0xE0 | cp >> 12);
            u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
            u[2] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            u[0] = (uint8_t)(0xF0 | cp >> 18);
            u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
            u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
            u[3] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 4;
        }
        if (o + (size_t)k > cap) return -1;
        memcpy(out + o, u, (size_t)k);
        o += (size_t)k;
    }
    return (long)o;
}

/* A JSON number at r->p (RFC 8259 grammar); *integral: no fraction or
 * exponent. */
static int num_raw(jr *r, const char **s, size_t *n, int *integral)
{
    const char *q = r->p, *b = q;
    *integral = 1;
    if (q < r->end && *q == '-') q++;
    if (q >= r->end || *q < '0' || *q > '9') return fail(r, "bad number");
    if (*q == '0')
        q++;
    else
        while (q < r->end && *q >= '0' && *q <= '9') q++;
    if (q < r->end && *q == '.') {
        *integral = 0;
        if (++q >= r->end || *q < '0' || *q > '9') return fail(r, "bad number");
        while (q < r->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        *integral = 0;
        q++;
        if (q < r->end && (*q == '+' || *q == '-')) q++;
        if (q >= r->end || *q < '0' || *q > '9') return fail(r, "bad number");
        while (q < r->end && *q >= '0' && *q <= '9') q++;
    }
    *s = b;
    *n = (size_t)(q - b);
    r->p = q;
    return 0;
}

static int lit(jr *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0) return fail(r, "bad literal");
    r->p += n;
    return 0;
}

static int skip(jr *r);

/* Step through an object: *first starts at 1 (the cursor before '{').
 * Returns 1 with the member's raw key and the cursor at its value, 0 after
 * the closing '}', -1 on error. */
static int obj_next(jr *r, int *first, const char **k, size_t *kn)
{
    if (*first) {
        if (peek(r) != '{') return fail(r, "expected an object");
        if (++r->depth > JR_MAX_DEPTH) return fail(r, "nested too deep");
        r->p++;
        *first = 0;
        if (peek(r) == '}') {
            r->p++;
            r->depth--;
            return 0;
        }
    } else {
        char c = peek(r);
        if (c == '}') {
            r->p++;
            r->depth--;
            return 0;
        }
        if (c != ',') return fail(r, "expected ',' or '}' in an object");
        r->p++;
    }
    if (str_raw(r, k, kn)) return -1;
    if (peek(r) != ':') return fail(r, "expected ':' after a key");
    r->p++;
    ws(r);
    return 1;
}

/* The same for an array: 1 with the cursor at an element, 0 after ']'. */
static int arr_next(jr *r, int *first)
{
    if (*first) {
        if (peek(r) != '[') return fail(r, "expected an array");
        if (++r->depth > JR_MAX_DEPTH) return fail(r, "nested too deep");
        r->p++;
        *first = 0;
        if (peek(r) == ']') {
            r->p++;
            r->depth--;
            return 0;
        }
        return 1;
    }
    char c = peek(r);
    if (c == ']') {
        r->p++;
        r->depth--;
        return 0;
    }
    if (c != ',') return fail(r, "expected ',' or ']' in an array");
    r->p++;
    ws(r);
    return 1;
}

static int skip(jr *r)
{
    const char *s;
    size_t n;
    int first = 1, rc, integral;
    switch (peek(r)) {
    case '{':
        while ((rc = obj_next(r, &first, &s, &n)) == 1)
            if (skip(r)) return -1;
        return rc;
    case '[':
        while ((rc = arr_next(r, &first)) == 1)
            if (skip(r)) return -1;
        return rc;
    case '"': return str_raw(r, &s, &n);
    case 't': return lit(r, "true", 4);
    case 'f': return lit(r, "false", 5);
    case 'n': return lit(r, "null", 4);
    case 0: return fail(r, "unexpected end of line");
    default: return num_raw(r, &s, &n, &integral);
    }
}

/* A null value (consumed): the field's default. */
static int is_null(jr *r)
{
    if (peek(r) == 'n') return lit(r, "null", 4) == 0;
    return 0;
}

/* The raw text of the value at the cursor, validated. */
static int skip_range(jr *r, const char **b, const char **e)
{
    ws(r);
    *b = r->p;
    if (skip(r)) return -1;
    *e = r->p;
    return 0;
}

static int key_is(const char *k, size_t n, const char *camel, const char *snake)
{
    return (strlen(camel) == n && memcmp(k, camel, n) == 0) ||
           (snake && strlen(snake) == n && memcmp(k, snake, n) == 0);
}

/* An unsigned 64-bit integer: a JSON number or a decimal string. */
static int u64_value(jr *r, uint64_t *out, const char *why)
{
    const char *s;
    size_t n;
    int integral = 1;
    if (is_null(r)) {
        *out = 0;
        return 0;
    }
    char c = peek(r);
    if (c == '"') {
        if (str_raw(r, &s, &n)) return -1;
    } else {
        jr t = *r; /* so that the reason names the field */
        if (c != '-' && (c < '0' || c > '9')) return fail(r, why);
        if (num_raw(&t, &s, &n, &integral)) return fail(r, why);
        *r = t;
    }
    if (!integral || n == 0 || n > 20) return fail(r, why);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return fail(r, why);
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return fail(r, why);
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A hex id of `bytes` bytes; empty (or null) gives *present = 0. */
static int hex_id(jr *r, uint8_t *out, size_t bytes, int *present, const char *why)
{
    const char *s;
    size_t n;
    memset(out, 0, bytes);
    *present = 0;
    if (is_null(r)) return 0;
    if (peek(r) != '"') return fail(r, why);
    if (str_raw(r, &s, &n)) return -1;
    if (n == 0) return 0;
    if (n != bytes * 2) return fail(r, why);
    int nonzero = 0;
    for (size_t i = 0; i < bytes; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0) return fail(r, why);
        out[i] = (uint8_t)(h << 4 | l);
        nonzero |= out[i];
    }
    if (!nonzero) return fail(r, why);
    *present = 1;
    return 0;
}

static int status_value(jr *r, int *code)
{
    const char *k, *s;
    size_t kn, n;
    int first = 1, rc;
    *code = 0;
    if (is_null(r)) return 0;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        if (!key_is(k, kn, "code", NULL)) {
            if (skip(r)) return -1;
            continue;
        }
        char c = peek(r);
        if (c == '"') {
            if (str_raw(r, &s, &n)) return -1;
            static const char *const names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                                "STATUS_CODE_ERROR"};
            int found = -1;
            for (int i = 0; i < 3; i++)
                if (strlen(names[i]) == n && memcmp(s, names[i], n) == 0) found = i;
            if (found < 0) return fail(r, "bad status code");
            *code = found;
        } else if (c == 'n') {
            if (lit(r, "null", 4)) return -1;
            *code = 0;
        } else {
            int integral;
            if (c == 0 || num_raw(r, &s, &n, &integral)) return fail(r, "bad status code");
            if (!integral || n > 11) return fail(r, "bad status code");
            long long v = 0;
            int neg = s[0] == '-';
            for (size_t i = (size_t)neg; i < n; i++) v = v * 10 + (s[i] - '0');
            if (neg) v = -v;
            if (v < INT32_MIN || v > INT32_MAX) return fail(r, "bad status code");
            *code = (int)v;
        }
    }
    return rc;
}

/* State of a walk: the callback and the current resource / scope. */
typedef struct walk {
    sl_otlp_span_fn fn;
    void *ud;
    int stop; /* what fn returned, when not 0 */
    sl_otlp_span sp;
} walk;

static int read_span(jr *r, walk *w)
{
    char name[SL_OTLP_MAX_NAME];
    const char *k, *s;
    size_t kn, n;
    int first = 1, rc, have_trace = 0, have_span = 0;
    sl_otlp_span *sp = &w->sp;
    ws(r);
    const char *b = r->p;
    memset(sp->trace_id, 0, 16);
    memset(sp->span_id, 0, 8);
    memset(sp->parent_id, 0, 8);
    sp->has_parent = 0;
    sp->start_ns = sp->end_ns = 0;
    sp->status = 0;
    sp->name.ptr = "";
    sp->name.len = 0;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        if (key_is(k, kn, "traceId", "trace_id")) {
            if (hex_id(r, sp->trace_id, 16, &have_trace, "bad traceId (32 hex digits, not zero)"))
                return -1;
        } else if (key_is(k, kn, "spanId", "span_id")) {
            if (hex_id(r, sp->span_id, 8, &have_span, "bad spanId (16 hex digits, not zero)"))
                return -1;
        } else if (key_is(k, kn, "parentSpanId", "parent_span_id")) {
            if (hex_id(r, sp->parent_id, 8, &sp->has_parent,
                       "bad parentSpanId (16 hex digits, or empty)"))
                return -1;
        } else if (key_is(k, kn, "startTimeUnixNano", "start_time_unix_nano")) {
            if (u64_value(r, &sp->start_ns, "bad startTimeUnixNano")) return -1;
        } else if (key_is(k, kn, "endTimeUnixNano", "end_time_unix_nano")) {
            if (u64_value(r, &sp->end_ns, "bad endTimeUnixNano")) return -1;
        } else if (key_is(k, kn, "name", NULL)) {
            if (is_null(r)) {
                sp->name.len = 0;
                continue;
            }
            if (str_raw(r, &s, &n)) return -1;
            long d = str_decode(s, n, name, sizeof(name));
            if (d < 0) return fail(r, "span name too long");
            sp->name.ptr = name;
            sp->name.len = (uint32_t)d;
        } else if (key_is(k, kn, "status", NULL)) {
            if (status_value(r, &sp->status)) return -1;
        } else if (skip(r)) {
            return -1;
        }
    }
    if (rc) return -1;
    if (!have_trace) return fail(r, "span without traceId");
    if (!have_span) return fail(r, "span without spanId");
    sp->json.ptr = b;
    sp->json.len = (uint32_t)(r->p - b);
    int x = w->fn(sp, w->ud);
    if (x) {
        w->stop = x;
        return fail(r, "stopped");
    }
    return 0;
}

/* Read a range the walk validated before (a sub-reader at its depth). */
static jr sub(const jr *r, const char *b, const char *e)
{
    jr s = {.p = b, .end = e, .depth = r->depth};
    return s;
}

static int sub_done(jr *r, jr *s)
{
    if (s->err) return fail(r, s->err);
    return 0;
}

static int walk_spans(jr *x, walk *w)
{
    int f = 1, rc;
    while ((rc = arr_next(x, &f)) == 1) {
        if (peek(x) != '{') return fail(x, "a span is not an object");
        if (read_span(x, w)) return -1;
    }
    return rc;
}

/* An element of scopeSpans. Its spans are read as they come once its scope
 * is known (the usual order); spans before the scope (or without one) are
 * validated, then read again when the element has ended. */
static int read_scope_spans(jr *r, walk *w)
{
    const char *k, *sb = NULL, *se = NULL, *xb, *xe;
    size_t kn;
    int first = 1, rc, have_scope = 0;
    w->sp.scope.ptr = "{}";
    w->sp.scope.len = 2;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        if (key_is(k, kn, "scope", NULL) && peek(r) != 'n') {
            if (peek(r) != '{') return fail(r, "scope is not an object");
            if (skip_range(r, &xb, &xe)) return -1;
            w->sp.scope.ptr = xb;
            w->sp.scope.len = (uint32_t)(xe - xb);
            have_scope = 1;
        } else if (key_is(k, kn, "spans", NULL) && peek(r) != 'n') {
            if (peek(r) != '[') return fail(r, "spans is not an array");
            if (have_scope) {
                if (walk_spans(r, w)) return -1;
            } else if (skip_range(r, &sb, &se)) {
                return -1;
            }
        } else if (skip(r)) {
            return -1;
        }
    }
    if (rc || !sb) return rc;
    jr s = sub(r, sb, se);
    walk_spans(&s, w);
    return sub_done(r, &s);
}

/* The resource's service.name: attributes [{key, value: {stringValue}}]. */
static int read_resource(jr *r, char *svc, size_t cap, sl_bytes *out)
{
    const char *k, *s;
    size_t kn, n;
    int first = 1, rc;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        if (!key_is(k, kn, "attributes", NULL) || peek(r) == 'n') {
            if (skip(r)) return -1;
            continue;
        }
        int fa = 1;
        while ((rc = arr_next(r, &fa)) == 1) {
            int fk = 1, is_svc = 0;
            const char *vb = NULL, *ve = NULL;
            while ((rc = obj_next(r, &fk, &k, &kn)) == 1) {
                if (key_is(k, kn, "key", NULL) && peek(r) == '"') {
                    if (str_raw(r, &s, &n)) return -1;
                    is_svc = n == 12 && memcmp(s, "service.name", 12) == 0;
                } else if (key_is(k, kn, "value", NULL) && peek(r) == '{') {
                    if (skip_range(r, &vb, &ve)) return -1;
                } else if (skip(r)) {
                    return -1;
                }
            }
            if (rc) return -1;
            if (!is_svc || !vb) continue;
            jr v = sub(r, vb, ve);
            int fv = 1;
            while (obj_next(&v, &fv, &k, &kn) == 1) {
                if (key_is(k, kn, "stringValue", "string_value") && peek(&v) == '"') {
                    if (str_raw(&v, &s, &n)) break;
                    long d = str_decode(s, n, svc, cap);
                    if (d < 0) return fail(r, "service.name too long");
                    out->ptr = svc;
                    out->len = (uint32_t)d;
                } else if (skip(&v)) {
                    break;
                }
            }
            if (sub_done(r, &v)) return -1;
        }
        if (rc) return -1;
    }
    return rc;
}

static int walk_scopes(jr *x, walk *w)
{
    int f = 1, rc;
    while ((rc = arr_next(x, &f)) == 1) {
        if (peek(x) != '{') return fail(x, "an element of scopeSpans is not an object");
        if (read_scope_spans(x, w)) return -1;
    }
    return rc;
}

/* An element of resourceSpans: as read_scope_spans, its scopeSpans are read
 * as they come once the resource is known, else when the element has ended. */
static int read_resource_spans(jr *r, walk *w)
{
    char svc[SL_OTLP_MAX_NAME];
    const char *k, *rb, *re, *sb = NULL, *se = NULL;
    size_t kn;
    int first = 1, rc, have_res = 0;
    w->sp.resource.ptr = "{}";
    w->sp.resource.len = 2;
    w->sp.service.ptr = "unknown_service";
    w->sp.service.len = 15;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        if (key_is(k, kn, "resource", NULL) && peek(r) != 'n') {
            if (peek(r) != '{') return fail(r, "resource is not an object");
            if (skip_range(r, &rb, &re)) return -1;
            w->sp.resource.ptr = rb;
            w->sp.resource.len = (uint32_t)(re - rb);
            w->sp.service.ptr = "unknown_service";
            w->sp.service.len = 15;
            jr x = sub(r, rb, re);
            if (read_resource(&x, svc, sizeof(svc), &w->sp.service) || sub_done(r, &x)) return -1;
            have_res = 1;
        } else if (key_is(k, kn, "scopeSpans", "scope_spans") && peek(r) != 'n') {
            if (peek(r) != '[') return fail(r, "scopeSpans is not an array");
            if (have_res) {
                if (walk_scopes(r, w)) return -1;
            } else if (skip_range(r, &sb, &se)) {
                return -1;
            }
        } else if (skip(r)) {
            return -1;
        }
    }
    if (rc || !sb) return rc;
    jr s = sub(r, sb, se);
    walk_scopes(&s, w);
    return sub_done(r, &s);
}

int sl_otlp_read(const char *line, size_t len, sl_otlp_span_fn fn, void *ud, const char **reason)
{
    jr r = {.p = line, .end = line + len};
    walk w = {.fn = fn, .ud = ud};
    const char *k;
    size_t kn;
    int first = 1, rc;
    if (peek(&r) != '{') {
        fail(&r, r.p < r.end ? "not a JSON object" : "empty line");
        goto out;
    }
    while ((rc = obj_next(&r, &first, &k, &kn)) == 1) {
        if (!key_is(k, kn, "resourceSpans", "resource_spans") || peek(&r) == 'n') {
            if (skip(&r)) break;
            continue;
        }
        int fa = 1;
        while ((rc = arr_next(&r, &fa)) == 1) {
            if (peek(&r) != '{') {
                fail(&r, "an element of resourceSpans is not an object");
                break;
            }
            if (read_resource_spans(&r, &w)) break;
        }
        if (r.err) break;
    }
    if (!r.err && peek(&r) != 0) fail(&r, "bytes after the JSON object");
out:
    if (w.stop) return w.stop;
    if (r.err) {
        if (reason) *reason = r.err;
        return SL_EPARSE;
    }
    return 0;
}
