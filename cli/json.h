/*
 * cli/json.h - a small JSON document reader and writer for the CLI
 * (`sluice status` reads a job's /api/job with it).
 *
 * cli_json_parse builds a tree of the whole document (RFC 8259: strings with
 * every escape, \u surrogate pairs included; numbers; nesting up to 64
 * levels; nothing but spaces after the value). Look-ups by key and index
 * return NULL for a missing member, so a chain of them needs one test at the
 * end; the typed getters take a default for NULL, a JSON null or another
 * type. The caller owns the tree and frees it with cli_json_free (NULL ok).
 */
#ifndef SLUICE_CLI_JSON_H
#define SLUICE_CLI_JSON_H

#include <stddef.h>
#include <stdio.h>

typedef enum { CJ_NULL, CJ_FALSE, CJ_TRUE, CJ_NUM, CJ_STR, CJ_ARR, CJ_OBJ } cli_json_type;

typedef struct cli_json cli_json;
struct cli_json {
    cli_json_type type;
    char *key;       /* member name when this is an object's member, else NULL */
    double num;      /* CJ_NUM */
    char *str;       /* CJ_STR: decoded, NUL-terminated (an embedded \u0000 ends it) */
    cli_json **kids; /* CJ_ARR elements, CJ_OBJ members, in document order */
    size_t n;
};

/* Parses text[0..len). Returns 0 and *out, or -1 with *why a static reason
 * and *at the byte offset of the problem (either may be NULL). -2: out of
 * memory. */
int cli_json_parse(const char *text, size_t len, cli_json **out, const char **why, size_t *at);
void cli_json_free(cli_json *v);

/* The member `key` of an object (the first of that name), or NULL. */
const cli_json *cli_json_get(const cli_json *obj, const char *key);
/* Element i of an array, or NULL. */
const cli_json *cli_json_at(const cli_json *arr, size_t i);
/* Number of elements of an array (0 for anything else). */
size_t cli_json_len(const cli_json *arr);
int cli_json_is_null(const cli_json *v); /* NULL or a JSON null */
double cli_json_num(const cli_json *v, double dflt);
const char *cli_json_str(const cli_json *v, const char *dflt);

/* Writes v as compact JSON; numbers that are integers print without a
 * fraction, others with 15 significant digits. */
void cli_json_write(FILE *f, const cli_json *v);
/* A JSON string literal of s (quotes and escapes). */
void cli_json_write_str(FILE *f, const char *s);
/* A number as cli_json_write prints one; NAN or infinity print as null. */
void cli_json_write_num(FILE *f, double d);

#endif
