/*
 * connectors/otlp/otlp_json.c - spans as OTLP/JSON: one ExportTraceServiceRequest
 * per batch, on one line (API: sluice/otlp.h).
 *
 * The protobuf JSON mapping of opentelemetry/proto/collector/trace/v1
 * ExportTraceServiceRequest, with OTLP's exceptions (OTLP/HTTP spec, "JSON
 * Protobuf Encoding"): field names lowerCamelCase; traceId, spanId,
 * parentSpanId as lowercase hex (not base64); enums as integers; 64-bit
 * integers (fixed64 times, int64 intValue) as decimal strings; doubles as
 * JSON numbers, or "NaN", "Infinity", "-Infinity". Fields at their default
 * (0, "", empty) are left out, as the mapping does by default, except that
 * status is always written (an empty object when unset). One line:
 *
 *   {"resourceSpans":[{
 *     "resource":{"attributes":[{"key":"service.name","value":{"stringValue":S}}]},
 *     "scopeSpans":[{
 *       "scope":{"name":"sluice","version":V},
 *       "spans":[{
 *         "traceId":HEX32, "spanId":HEX16, ["traceState":S,] ["parentSpanId":HEX16,]
 *         "name":S, ["kind":1..5,]
 *         "startTimeUnixNano":"NS", "endTimeUnixNano":"NS",
 *         ["attributes":[{"key":S,"value":ANY}, ...],]
 *         ["droppedAttributesCount":N,]
 *         ["links":[{"traceId":HEX32,"spanId":HEX16}, ...],]
 *         ["droppedLinksCount":N,]
 *         "status":{["code":1|2,]["message":S]}
 *       }, ...]}]}]}\n
 *
 *   ANY = {"stringValue":S} | {"intValue":"N"} | {"doubleValue":D} | {"boolValue":true|false}
 *
 * Strings: '"' and '\' escaped, control characters below 0x20 as \n \r \t
 * \b \f or \u00XX, everything else as UTF-8; a byte sequence that is not
 * valid UTF-8 (bad lead or continuation, overlong, surrogate, above
 * U+10FFFF, cut short) becomes U+FFFD, one per offending byte, so the output
 * is always valid UTF-8 and valid JSON whatever the span holds.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "sluice/otlp.h"

/* The output. A failure sticks in rc so that the encoder checks once.
 * Fixed text goes through put (a literal's length is a constant, so the
 * copy is a few moves); the variable parts (strings, hex ids, numbers)
 * ask room() for their worst case and write in place, with no temporary
 * and no call to memcpy per piece. */
typedef struct out {
    sl_buf *b;
    int rc;
} out;

static void put_slow(out *o, const char *s, size_t n)
{
    if (!o->rc) o->rc = sl_buf_append(o->b, s, n);
}

static inline void put(out *o, const char *s, size_t n)
{
    sl_buf *b = o->b;
    if (b->cap - b->len >= n) {
        memcpy(b->ptr + b->len, s, n);
        b->len += n;
    } else {
        put_slow(o, s, n);
    }
}

/* A literal or other NUL-terminated text (inline: strlen of a literal is a
 * constant). */
static inline void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Where to write up to n more bytes, or NULL (out of memory: o->rc). The
 * writer ends with done(o, end). */
static inline char *room(out *o, size_t n)
{
    sl_buf *b = o->b;
    if (b->cap - b->len < n && (o->rc || (o->rc = sl_buf_reserve(b, n)))) return NULL;
    return (char *)b->ptr + b->len;
}

static inline void done(out *o, char *end)
{
    o->b->len = (size_t)((uint8_t *)end - o->b->ptr);
}

static const char two_digits[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

/* Digits of v (> 0): log10 from the bit length, one compare to settle it. */
static inline int dec_digits(uint64_t v)
{
    static const uint64_t p10[20] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};
    int t = ((64 - __builtin_clzll(v)) * 1233) >> 12; /* 1233 / 4096 ~ log10(2) */
    return t - (v < p10[t]) + 1;
}

/* The 8 digits of x (< 10^8) at q: two halves of 4, each two pairs, so the
 * four divisions are two short chains rather than one long one. */
static inline void dec8(char *q, uint32_t x)
{
    uint32_t hi = x / 10000, lo = x % 10000;
    memcpy(q, two_digits + 2 * (hi / 100), 2);
    memcpy(q + 2, two_digits + 2 * (hi % 100), 2);
    memcpy(q + 4, two_digits + 2 * (lo / 100), 2);
    memcpy(q + 6, two_digits + 2 * (lo % 100), 2);
}

/* v in decimal at w; returns the end. The digits are counted first and
 * written from the last: 8 at a time while more than 8 are left (a span's
 * two times are 19 digits each), then two at a time. */
static char *dec(char *w, uint64_t v)
{
    if (v < 10) {
        *w = (char)('0' + v);
        return w + 1;
    }
    char *end = w + dec_digits(v), *q = end;
    while (v >= 100000000) {
        q -= 8;
        dec8(q, (uint32_t)(v % 100000000));
        v /= 100000000;
    }
    uint32_t r = (uint32_t)v;
    while (r >= 100) {
        q -= 2;
        memcpy(q, two_digits + 2 * (r % 100), 2);
        r /= 100;
    }
    if (r >= 10)
        memcpy(q - 2, two_digits + 2 * r, 2);
    else
        q[-1] = (char)('0' + r);
    return end;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Bytes that need no escape and are plain ASCII (0x20-0x7F but '"' and
 * '\\'): the fast path of put_str, one load a byte. */
static const uint8_t plain_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xa0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xb0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xc0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xd0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xe0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xf0 */
};

#define ONES 0x0101010101010101ull
#define HIGH 0x8080808080808080ull

/* Nonzero when one of the 8 bytes in x is not plain: below 0x20, 0x80 or
 * above, '"' or '\\' (the classic has-less / has-zero bit tricks; a borrow
 * can flag a plain byte above a special one, never miss a special one,
 * and put_str then goes byte by byte). */
static inline uint64_t special8(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"'), bs = x ^ (ONES * '\\');
    return (((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((bs - ONES) & ~bs) | x) & HIGH;
}

static const char hexd[] = "0123456789abcdef";

/* str as a JSON string. Plain runs are copied 8 bytes at a time; a string
 * of 8 bytes or more that is plain throughout (the common case: names,
 * keys) ends with one overlapping step over its last 8 bytes. The worst
 * case is 6 bytes a byte (\u00XX), so room for that is asked once. */
static void put_str(out *o, const char *str)
{
    size_t n = strlen(str);
    char *w = room(o, 6 * n + 2);
    if (!w) return;
    const unsigned char *s = (const unsigned char *)str, *e = s + n;
    *w++ = '"';
    if (n >= 8) {
        uint64_t x;
        size_t i = 0;
        for (; i + 8 <= n && (memcpy(&x, s + i, 8), !special8(x)); i += 8) memcpy(w + i, &x, 8);
        if (i < n && i + 8 > n && (memcpy(&x, e - 8, 8), !special8(x))) {
            memcpy(w + n - 8, &x, 8); /* bytes before i were plain: written as they are */
            i = n;
        }
        s += i; /* the first step that holds a special byte, or the end */
        w += i;
    }
    for (;;) {
        for (uint64_t x; e - s >= 8 && (memcpy(&x, s, 8), !special8(x)); s += 8, w += 8)
            memcpy(w, &x, 8);
        while (s < e && plain_tab[*s]) *w++ = (char)*s++;
        if (s == e) break;
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
            s++;
        } else if (c < 0x20) {
            static const char short_esc[32] = {
                ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['\b'] = 'b', ['\f'] = 'f'};
            *w++ = '\\';
            if (short_esc[c]) {
                *w++ = short_esc[c];
            } else {
                memcpy(w, "u00", 3);
                w[3] = hexd[c >> 4];
                w[4] = hexd[c & 15];
                w += 5;
            }
            s++;
        } else { /* c >= 0x80 */
            size_t len = utf8_len(s, (size_t)(e - s) < 4 ? (size_t)(e - s) : 4);
            if (len) {
                memcpy(w, s, len); /* at most 4: inlined */
                w += len;
                s += len;
            } else {
                memcpy(w, "\xEF\xBF\xBD", 3); /* U+FFFD for this byte */
                w += 3;
                s++;
            }
        }
    }
    *w++ = '"';
    done(o, w);
}

static void put_hex(out *o, const uint8_t *id, size_t n)
{
    char *w = room(o, 2 + 2 * n);
    if (!w) return;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        w[2 * i] = hexd[id[i] >> 4];
        w[2 * i + 1] = hexd[id[i] & 15];
    }
    w += 2 * n;
    *w++ = '"';
    done(o, w);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* pre, v in decimal, post (pre and post literals: inlined, their lengths
 * constants). */
static inline void put_fmt_u64(out *o, const char *pre, uint64_t v, const char *post)
{
    size_t a = strlen(pre), z = strlen(post);
    char *w = room(o, a + 20 + z);
    if (!w) return;
    memcpy(w, pre, a);
    w = dec(w + a, v);
    memcpy(w, post, z);
    done(o, w + z);
}

static void put_double(out *o, double d)
{
    char t[40];
    if (isnan(d))
        puts_(o, "\"NaN\"");
    else if (isinf(d))
        puts_(o, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else {
        int n = snprintf(t, sizeof(t), "%.17g", d);
        put(o, t, (size_t)n);
    }
}

static void put_attr(out *o, const sl_span_attr *a)
{
    puts_(o, "{\"key\":");
    put_str(o, a->key);
    puts_(o, ",\"value\":{");
    switch (a->type) {
    case SL_ATTR_STRING:
        puts_(o, "\"stringValue\":");
        put_str(o, a->v.s);
        break;
    case SL_ATTR_INT: {
        uint64_t mag = a->v.i < 0 ? 0 - (uint64_t)a->v.i : (uint64_t)a->v.i;
        put_fmt_u64(o, a->v.i < 0 ? "\"intValue\":\"-" : "\"intValue\":\"", mag, "\"");
        break;
    }
    case SL_ATTR_DOUBLE:
        puts_(o, "\"doubleValue\":");
        put_double(o, a->v.d);
        break;
    case SL_ATTR_BOOL: puts_(o, a->v.b ? "\"boolValue\":true" : "\"boolValue\":false"); break;
    default: break; /* an empty AnyValue */
    }
    puts_(o, "}}");
}

static void put_span(out *o, const sl_span *s)
{
    puts_(o, "{\"traceId\":");
    put_hex(o, s->trace_id, 16);
    puts_(o, ",\"spanId\":");
    put_hex(o, s->span_id, 8);
    if (s->state_len && s->state_len <= SL_TRACESTATE_MAX) {
        char st[SL_TRACESTATE_MAX + 1]; /* a W3C list has no NUL: put_str's string */
        memcpy(st, s->state, s->state_len);
        st[s->state_len] = 0;
        puts_(o, ",\"traceState\":");
        put_str(o, st);
    }
    if (!all_zero(s->parent_span_id, 8)) {
        puts_(o, ",\"parentSpanId\":");
        put_hex(o, s->parent_span_id, 8);
    }
    puts_(o, ",\"name\":");
    put_str(o, s->name);
    if (s->kind) put_fmt_u64(o, ",\"kind\":", s->kind, "");
    put_fmt_u64(o, ",\"startTimeUnixNano\":\"", (uint64_t)(s->start_ns > 0 ? s->start_ns : 0),
                "\"");
    put_fmt_u64(o, ",\"endTimeUnixNano\":\"", (uint64_t)(s->end_ns > 0 ? s->end_ns : 0), "\"");
    int na = s->n_attrs <= SL_SPAN_ATTRS_MAX ? s->n_attrs : SL_SPAN_ATTRS_MAX;
    if (na) {
        puts_(o, ",\"attributes\":[");
        for (int i = 0; i < na; i++) {
            if (i) put(o, ",", 1);
            put_attr(o, &s->attrs[i]);
        }
        put(o, "]", 1);
    }
    if (s->dropped_attrs) put_fmt_u64(o, ",\"droppedAttributesCount\":", s->dropped_attrs, "");
    int nl = s->n_links <= SL_SPAN_LINKS_MAX ? s->n_links : SL_SPAN_LINKS_MAX;
    if (nl) {
        puts_(o, ",\"links\":[");
        for (int i = 0; i < nl; i++) {
            puts_(o, i ? ",{\"traceId\":" : "{\"traceId\":");
            put_hex(o, s->links[i].trace_id, 16);
            puts_(o, ",\"spanId\":");
            put_hex(o, s->links[i].span_id, 8);
            put(o, "}", 1);
        }
        put(o, "]", 1);
    }
    if (s->dropped_links) put_fmt_u64(o, ",\"droppedLinksCount\":", s->dropped_links, "");
    puts_(o, ",\"status\":{");
    if (s->status) put_fmt_u64(o, "\"code\":", s->status, "");
    if (s->status_msg[0]) {
        puts_(o, s->status ? ",\"message\":" : "\"message\":");
        put_str(o, s->status_msg);
    }
    puts_(o, "}}");
}

int sl_otlp_json_encode(const sl_trace_batch *b, sl_buf *buf)
{
    out o = {.b = buf, .rc = 0};
    puts_(&o, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
              "\"value\":{\"stringValue\":");
    put_str(&o, b->service_name ? b->service_name : "");
    puts_(&o, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":");
    put_str(&o, b->scope_name ? b->scope_name : "sluice");
    if (b->scope_version && *b->scope_version) {
        puts_(&o, ",\"version\":");
        put_str(&o, b->scope_version);
    }
    puts_(&o, "},\"spans\":[");
    for (size_t i = 0; i < b->n; i++) {
        if (i) put(&o, ",", 1);
        put_span(&o, &b->spans[i]);
    }
    puts_(&o, "]}]}]}\n");
    return o.rc;
}
