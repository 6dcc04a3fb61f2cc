/*
 * tests/unit/test_cli_json.c - the CLI's JSON tree (cli/json.c, which
 * `sluice status` reads /api/job with; compiled in here, as the CLI is not a
 * library).
 *
 * Covered: a table of documents that must parse, each written back compactly
 * as expected (escapes decoded and re-encoded, surrogate pairs to UTF-8,
 * integers without a fraction); a table of malformed ones with the reason
 * each must give; look-ups of missing members, wrong types and nulls giving
 * the defaults; nesting beyond 64 levels refused; every truncation of a
 * valid document refused without a crash (ASan: each copy is exactly its
 * length).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/json.c"

static char *written(const cli_json *v)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    assert_non_null(f);
    cli_json_write(f, v);
    fclose(f);
    return s;
}

static void test_valid(void **state)
{
    static const struct {
        const char *in, *out;
    } t[] = {
        {" {\"a\" : 1, \"b\":[true,false,null], \"c\":{}} ",
         "{\"a\":1,\"b\":[true,false,null],\"c\":{}}"},
        {"[]", "[]"},
        {"-0.5e2", "-50"},
        {"1.25", "1.25"},
        {"1764770000000", "1764770000000"},
        {"\"a\\\"b\\\\c\\/d\\n\\u0041\\u00e9\\ud83d\\ude00\"",
         "\"a\\\"b\\\\c/d\\nA\xc3\xa9\xf0\x9f\x98\x80\""},
        {"{\"x\":[[1],[2,[3]]]}", "{\"x\":[[1],[2,[3]]]}"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cli_json *v = NULL;
        const char *why = NULL;
        if (cli_json_parse(t[i].in, strlen(t[i].in), &v, &why, NULL) != 0)
            fail_msg("'%s' refused: %s", t[i].in, why);
        char *s = written(v);
        assert_string_equal(s, t[i].out);
        free(s);
        cli_json_free(v);
    }
}

static void test_malformed(void **state)
{
    static const struct {
        const char *in, *why;
    } t[] = {
        {"", "unexpected end"},
        {"{\"a\":1,}", "expected a member name"},
        {"[1 2]", "expected ',' or ']'"},
        {"{\"a\" 1}", "expected ':'"},
        {"01", "text after the value"},
        {"1.", "bad number"},
        {"-", "bad number"},
        {"0x10", "text after the value"},
        {"tru", "bad literal"},
        {"\"abc", "unterminated string"},
        {"\"a\\x\"", "bad escape in a string"},
        {"\"\\ud800\"", "bad escape in a string"},
        {"\"\\udc00\"", "bad escape in a string"},
        {"\"a\tb\"", "control character in a string"},
        {"{} {}", "text after the value"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cli_json *v = NULL;
        const char *why = NULL;
        if (cli_json_parse(t[i].in, strlen(t[i].in), &v, &why, NULL) == 0)
            fail_msg("'%s' accepted", t[i].in);
        assert_null(v);
        if (strcmp(why, t[i].why) != 0) fail_msg("'%s': '%s', not '%s'", t[i].in, why, t[i].why);
    }
}

static void test_lookups(void **state)
{
    const char *doc = "{\"job\":\"w\",\"n\":null,\"t\":{\"in\":5},\"a\":[1,\"x\"]}";
    cli_json *v;
    assert_int_equal(cli_json_parse(doc, strlen(doc), &v, NULL, NULL), 0);
    assert_string_equal(cli_json_str(cli_json_get(v, "job"), "?"), "w");
    assert_string_equal(cli_json_str(cli_json_get(v, "missing"), "?"), "?");
    assert_true(cli_json_is_null(cli_json_get(v, "n")));
    assert_true(cli_json_is_null(cli_json_get(v, "missing")));
    assert_true(cli_json_num(cli_json_get(cli_json_get(v, "t"), "in"), -1) == 5);
    assert_true(cli_json_num(cli_json_get(cli_json_get(v, "nope"), "in"), -1) == -1);
    assert_true(cli_json_num(cli_json_get(v, "job"), -1) == -1);
    assert_int_equal(cli_json_len(cli_json_get(v, "a")), 2);
    assert_int_equal(cli_json_len(cli_json_get(v, "t")), 0);
    assert_null(cli_json_at(cli_json_get(v, "a"), 2));
    assert_string_equal(cli_json_str(cli_json_at(cli_json_get(v, "a"), 1), "?"), "x");
    cli_json_free(v);
    cli_json_free(NULL);
}

static void test_depth_and_truncation(void **state)
{
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    cli_json *v = NULL;
    const char *why = NULL;
    assert_int_equal(cli_json_parse(deep, 130, &v, &why, NULL), -1);
    assert_string_equal(why, "nested too deeply");
    assert_int_equal(cli_json_parse(deep + 1, 128, &v, &why, NULL), 0); /* 64 levels */
    cli_json_free(v);

    const char *doc = "{\"nodes\":[{\"name\":\"a\\u00e9\",\"x\":-1.5e3,\"ok\":true}],\"n\":null}";
    size_t n = strlen(doc);
    for (size_t k = 0; k < n; k++) {
        char *c = malloc(k ? k : 1);
        memcpy(c, doc, k);
        if (cli_json_parse(c, k, &v, &why, NULL) == 0) fail_msg("a %zu-byte prefix accepted", k);
        free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_depth_and_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
