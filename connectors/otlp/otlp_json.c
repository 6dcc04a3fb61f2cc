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

/* Append; a failure sticks in *rc so that the encoder checks once. The
 * common case, room in the buffer, is a copy with no call (the encoder
 * appends a few bytes at a time). */
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

/* v in decimal into the end of t (room for 20 digits); returns the start. */
static char *u64_dec(char *end, uint64_t v)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
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

/* Bytes that need no escape and are plain ASCII: the fast path of put_str. */
static inline int plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

static void put_str(out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    put(o, "\"", 1);
    for (;;) {
        size_t run = 0;
        while (plain(s[run])) run++;
        put(o, (const char *)s, run);
        s += run;
        unsigned char c = *s;
        if (!c) break;
        char u[8];
        const char *esc = u;
        size_t len = 1, n = 0;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default: snprintf(u, sizeof(u), "\\u%04x", c);
            }
        } else {                       /* c >= 0x80 */
            while (n < 4 && s[n]) n++; /* utf8_len reads no further than this */
            len = utf8_len(s, n);
            if (len) {
                put(o, (const char *)s, len);
                s += len;
                continue;
            }
            esc = "\xEF\xBF\xBD"; /* U+FFFD for this byte */
            len = 1;
        }
        puts_(o, esc);
        s += len;
    }
    put(o, "\"", 1);
}

static void put_hex(out *o, const uint8_t *id, size_t n)
{
    static const char d[] = "0123456789abcdef";
    char h[40];
    h[0] = '"';
    for (size_t i = 0; i < n; i++) {
        h[1 + 2 * i] = d[id[i] >> 4];
        h[2 + 2 * i] = d[id[i] & 15];
    }
    h[1 + 2 * n] = '"';
    put(o, h, 2 + 2 * n);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

static void put_fmt_u64(out *o, const char *pre, uint64_t v, const char *post)
{
    char t[24], *end = t + sizeof(t);
    char *p = u64_dec(end, v);
    puts_(o, pre);
    put(o, p, (size_t)(end - p));
    puts_(o, post);
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
    char t[48];
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
        char *end = t + sizeof(t), *p = u64_dec(end, mag);
        if (a->v.i < 0) *--p = '-';
        puts_(o, "\"intValue\":\"");
        put(o, p, (size_t)(end - p));
        put(o, "\"", 1);
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
