/*
 * cli/json.c - the CLI's JSON tree (cli/json.h).
 *
 * A recursive-descent parser over one buffer that builds a tree of malloc'd
 * nodes. The library already has a JSON reader (connectors/otlp/otlp_read.c),
 * but it is a file-static pull cursor shaped for OTLP spans in document
 * order; `sluice status` wants random access by key over a small document,
 * which a tree gives in a hundred lines, so the CLI keeps its own.
 *
 * Invariants: p never passes end; recursion is bounded by MAX_DEPTH (a deeper
 * document is an error, never a stack overflow); on any error the partial
 * tree is freed and nothing leaks. Numbers are strtod'ed from a copy that is
 * validated against the JSON grammar first (strtod alone takes hex, inf...).
 */
#include "cli/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *p, *start, *end;
    const char *why;
    int oom;
} parser;

static cli_json *perr(parser *ps, const char *why)
{
    if (!ps->why) ps->why = why;
    return NULL;
}

static void ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static cli_json *node(parser *ps, cli_json_type t)
{
    cli_json *v = calloc(1, sizeof *v);
    if (!v) {
        ps->oom = 1;
        return perr(ps, "out of memory");
    }
    v->type = t;
    return v;
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8(uint32_t cp, char *o)
{
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at ps->p (the opening quote), decoded into a new buffer. */
static char *string(parser *ps)
{
    const char *q = ++ps->p;
    /* The decoded form is never longer than the raw one. */
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) return (char *)perr(ps, "unterminated string");
    char *out = malloc((size_t)(q - ps->p) + 1), *o = out;
    if (!out) {
        ps->oom = 1;
        return (char *)perr(ps, "out of memory");
    }
    while (ps->p < q) {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) goto bad_ctl;
        if (c != '\\') {
            *o++ = (char)c;
            ps->p++;
            continue;
        }
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (q - ps->p < 4 || hex4(ps->p, &cp) < 0) goto bad_esc;
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) { /* a high surrogate needs its low half */
                if (q - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                    hex4(ps->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    goto bad_esc;
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                goto bad_esc;
            }
            o += utf8(cp, o);
            break;
        }
        default: goto bad_esc;
        }
    }
    *o = 0;
    ps->p = q + 1;
    return out;
bad_ctl:
    free(out);
    return (char *)perr(ps, "control character in a string");
bad_esc:
    free(out);
    return (char *)perr(ps, "bad escape in a string");
}

static cli_json *number(parser *ps)
{
    const char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || *q < '0' || *q > '9') return perr(ps, "bad number");
    if (*q == '0')
        q++;
    else
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        if (++q >= ps->end || *q < '0' || *q > '9') return perr(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') return perr(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char buf[64];
    if ((size_t)(q - s) >= sizeof buf) return perr(ps, "number too long");
    memcpy(buf, s, (size_t)(q - s));
    buf[q - s] = 0;
    cli_json *v = node(ps, CJ_NUM);
    if (!v) return NULL;
    v->num = strtod(buf, NULL);
    ps->p = q;
    return v;
}

static int lit(parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return -1;
    ps->p += n;
    return 0;
}

static int push(parser *ps, cli_json *parent, cli_json *kid)
{
    if ((parent->n & (parent->n - 1)) == 0) { /* grow at 0, 1, 2, 4, ... */
        size_t cap = parent->n ? parent->n * 2 : 1;
        cli_json **k = realloc(parent->kids, cap * sizeof *k);
        if (!k) {
            ps->oom = 1;
            perr(ps, "out of memory");
            return -1;
        }
        parent->kids = k;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

static cli_json *value(parser *ps, int depth);

/* An array or an object at ps->p (its opening bracket). */
static cli_json *container(parser *ps, int depth, int obj)
{
    if (depth >= MAX_DEPTH) return perr(ps, "nested too deeply");
    cli_json *v = node(ps, obj ? CJ_OBJ : CJ_ARR);
    if (!v) return NULL;
    char close = obj ? '}' : ']';
    ps->p++;
    ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        ws(ps);
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"') {
                perr(ps, "expected a member name");
                goto bad;
            }
            if (!(key = string(ps))) goto bad;
            ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                perr(ps, "expected ':'");
                goto bad;
            }
            ps->p++;
        }
        cli_json *kid = value(ps, depth + 1);
        if (!kid) {
            free(key);
            goto bad;
        }
        kid->key = key;
        if (push(ps, v, kid) < 0) {
            cli_json_free(kid);
            goto bad;
        }
        ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return v;
        }
        perr(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        goto bad;
    }
bad:
    cli_json_free(v);
    return NULL;
}

static cli_json *value(parser *ps, int depth)
{
    ws(ps);
    if (ps->p >= ps->end) return perr(ps, "unexpected end");
    switch (*ps->p) {
    case '{': return container(ps, depth, 1);
    case '[': return container(ps, depth, 0);
    case '"': {
        char *s = string(ps);
        if (!s) return NULL;
        cli_json *v = node(ps, CJ_STR);
        if (!v)
            free(s);
        else
            v->str = s;
        return v;
    }
    case 't': return lit(ps, "true") == 0 ? node(ps, CJ_TRUE) : perr(ps, "bad literal");
    case 'f': return lit(ps, "false") == 0 ? node(ps, CJ_FALSE) : perr(ps, "bad literal");
    case 'n': return lit(ps, "null") == 0 ? node(ps, CJ_NULL) : perr(ps, "bad literal");
    default: return number(ps);
    }
}

int cli_json_parse(const char *text, size_t len, cli_json **out, const char **why, size_t *at)
{
    parser ps = {text, text, text + len, NULL, 0};
    cli_json *v = value(&ps, 0);
    if (v) {
        ws(&ps);
        if (ps.p != ps.end) {
            cli_json_free(v);
            v = perr(&ps, "text after the value");
        }
    }
    *out = v;
    if (v) return 0;
    if (why) *why = ps.why ? ps.why : "invalid JSON";
    if (at) *at = (size_t)(ps.p - ps.start);
    return ps.oom ? -2 : -1;
}

void cli_json_free(cli_json *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) cli_json_free(v->kids[i]);
    free(v->kids);
    free(v->key);
    free(v->str);
    free(v);
}

const cli_json *cli_json_get(const cli_json *obj, const char *key)
{
    if (!obj || obj->type != CJ_OBJ) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->kids[i]->key, key) == 0) return obj->kids[i];
    return NULL;
}

const cli_json *cli_json_at(const cli_json *arr, size_t i)
{
    return arr && arr->type == CJ_ARR && i < arr->n ? arr->kids[i] : NULL;
}

size_t cli_json_len(const cli_json *arr)
{
    return arr && arr->type == CJ_ARR ? arr->n : 0;
}

int cli_json_is_null(const cli_json *v)
{
    return !v || v->type == CJ_NULL;
}

double cli_json_num(const cli_json *v, double dflt)
{
    return v && v->type == CJ_NUM ? v->num : dflt;
}

const char *cli_json_str(const cli_json *v, const char *dflt)
{
    return v && v->type == CJ_STR ? v->str : dflt;
}

void cli_json_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void cli_json_write_num(FILE *f, double d)
{
    if (!isfinite(d))
        fputs("null", f);
    else if (d == floor(d) && fabs(d) < 9e15)
        fprintf(f, "%.0f", d);
    else
        fprintf(f, "%.15g", d);
}

void cli_json_write(FILE *f, const cli_json *v)
{
    if (!v) {
        fputs("null", f);
        return;
    }
    switch (v->type) {
    case CJ_NULL: fputs("null", f); break;
    case CJ_FALSE: fputs("false", f); break;
    case CJ_TRUE: fputs("true", f); break;
    case CJ_NUM: cli_json_write_num(f, v->num); break;
    case CJ_STR: cli_json_write_str(f, v->str); break;
    case CJ_ARR:
    case CJ_OBJ:
        fputc(v->type == CJ_ARR ? '[' : '{', f);
        for (size_t i = 0; i < v->n; i++) {
            if (i) fputc(',', f);
            if (v->type == CJ_OBJ) {
                cli_json_write_str(f, v->kids[i]->key);
                fputc(':', f);
            }
            cli_json_write(f, v->kids[i]);
        }
        fputc(v->type == CJ_ARR ? ']' : '}', f);
        break;
    }
}
