/*
 * tests/unit/test_cli.c - the `sluice` command as a user meets it: wordcount
 * results against a reference count computed here, hostile input (NUL bytes,
 * invalid UTF-8, a 10 MB line), and bad invocations, each of which must exit
 * non-zero with exactly one line on stderr naming the problem.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

typedef struct result {
    int status;
    char *out;
    size_t out_len;
    char *err;
} result;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* Run `sluice ARGS` with stdin from `in` (or /dev/null). */
static result run(const char *in, const char *args)
{
    char cmd[4096], o[300], e[300];
    snprintf(o, sizeof(o), "%s/out", tmpdir);
    snprintf(e, sizeof(e), "%s/err", tmpdir);
    snprintf(cmd, sizeof(cmd), "%s %s < %s > %s 2> %s", SLUICE_BIN, args, in ? in : "/dev/null", o,
             e);
    int st = system(cmd);
    result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(o, &r.out_len);
    r.err = slurp(e, NULL);
    return r;
}

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* --- reference word count ------------------------------------------------------- */

typedef struct wc {
    char *w;
    size_t len;
    long n;
} wc;

static int wc_cmp(const void *a, const void *b)
{
    const wc *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->w, y->w, m);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int is_ws(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The expected output for `text`, computed by brute force. */
static char *reference(const char *text, size_t len, size_t *out_len)
{
    wc *v = NULL;
    size_t nv = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_ws((unsigned char)text[i])) i++;
        size_t s = i;
        while (i < len && !is_ws((unsigned char)text[i])) i++;
        if (i == s) break;
        size_t wl = i - s;
        char *w = malloc(wl);
        for (size_t k = 0; k < wl; k++) {
            unsigned char c = (unsigned char)text[s + k];
            w[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        size_t j;
        for (j = 0; j < nv; j++)
            if (v[j].len == wl && memcmp(v[j].w, w, wl) == 0) break;
        if (j < nv) {
            v[j].n++;
            free(w);
        } else {
            v = realloc(v, (nv + 1) * sizeof(*v));
            v[nv++] = (wc){w, wl, 1};
        }
    }
    if (nv) qsort(v, nv, sizeof(*v), wc_cmp);
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    for (size_t j = 0; j < nv; j++) {
        char num[32];
        int k = snprintf(num, sizeof(num), "\t%ld\n", v[j].n);
        while (n + v[j].len + (size_t)k + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + n, v[j].w, v[j].len);
        n += v[j].len;
        memcpy(out + n, num, (size_t)k);
        n += (size_t)k;
        free(v[j].w);
    }
    free(v);
    *out_len = n;
    return out;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void check_wordcount(const char *text, size_t len, const char *opts)
{
    char path[300], args[600];
    snprintf(path, sizeof(path), "%s/input.txt", tmpdir);
    write_file(path, text, len);
    size_t ref_len;
    char *ref = reference(text, len, &ref_len);
    /* from a file, and from standard input */
    for (int via_stdin = 0; via_stdin < 2; via_stdin++) {
        if (via_stdin)
            snprintf(args, sizeof(args), "run wordcount %s", opts);
        else
            snprintf(args, sizeof(args), "run wordcount --input %s %s", path, opts);
        result r = run(via_stdin ? path : NULL, args);
        if (r.status != 0) fprintf(stderr, "stderr: %s\n", r.err);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.out_len, ref_len);
        assert_memory_equal(r.out, ref, ref_len);
        result_free(&r);
    }
    free(ref);
}

static void test_wordcount_generated(void **state)
{
    static const char *const words[] = {"alpha", "Beta",  "GAMMA", "delta", "e",      "zeta",
                                        "Eta",   "théta", "iota",  "kappa", "lambda", "MU"};
    static const char *const spaces[] = {" ", "  ", "\t", "\n", "\r\n", " \v ", "\f"};
    uint64_t x = 12345;
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    while (n < cap - 64) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(x >> 33) % 12];
        /* skew: low words more often, so counts differ */
        if ((x >> 20) % 3 == 0) w = words[(x >> 40) % 3];
        const char *s = spaces[(x >> 50) % 7];
        n += (size_t)sprintf(text + n, "%s%s", w, s);
    }
    static const char *const opts[] = {"", "--threads 1 --parallelism 1",
                                       "--threads 2 --parallelism 3",
                                       "--threads 4 --parallelism 4"};
    for (size_t k = 0; k < 4; k++) check_wordcount(text, n, opts[k]);
    free(text);
}

static void test_wordcount_hostile_bytes(void **state)
{
    /* NUL bytes, invalid UTF-8, a line without a final newline, CR LF */
    static const char text[] = "a\0b a\0b \xff\xfe\xfd \xc3\x28 X\r\n\x80 x\n\n\n  tail";
    check_wordcount(text, sizeof(text) - 1, "--parallelism 2 --threads 2");
}

static void test_wordcount_10mb_line(void **state)
{
    size_t n = 10u << 20;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++) text[i] = "ab cd ef GH "[i % 12];
    text[n] = '\n';
    check_wordcount(text, n + 1, "--parallelism 2 --threads 2");
    /* and one 10 MB word */
    memset(text, 'W', n);
    check_wordcount(text, n + 1, "");
    free(text);
}

static void test_wordcount_empty(void **state)
{
    check_wordcount("", 0, "");
}

/* --- bad invocations ------------------------------------------------------------------ */

static void expect_error(const char *args, int status, const char *needle)
{
    result r = run(NULL, args);
    if (r.status != status || !strstr(r.err, needle) || count_lines(r.err) != 1)
        fprintf(stderr, "args: %s\nstatus %d\nstderr: %s\n", args, r.status, r.err);
    assert_int_equal(r.status, status);
    assert_non_null(strstr(r.err, needle));
    assert_int_equal(count_lines(r.err), 1);
    result_free(&r);
}

static void test_bad_input(void **state)
{
    expect_error("run wordcount --input /nonexistent/file.txt", 1, "/nonexistent/file.txt");
    expect_error("run nosuchjob", 2, "nosuchjob");
    expect_error("run wordcount --frobnicate", 2, "--frobnicate");
    expect_error("run wordcount --threads many", 2, "many");
    expect_error("run wordcount --threads 0", 2, "--threads");
    expect_error("run wordcount --parallelism -3", 2, "-3");
    expect_error("run wordcount --input", 2, "--input");
    expect_error("frobnicate", 2, "frobnicate");
    expect_error("bench nosuchbench", 2, "nosuchbench");
}

static void test_version_and_jobs(void **state)
{
    result r = run(NULL, "--version");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "sluice "));
#ifndef SLUICE_SANITIZED
    assert_non_null(strstr(r.out, "jemalloc 5"));
    assert_null(strstr(r.out, "not jemalloc"));
#endif
    result_free(&r);
    r = run(NULL, "jobs");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "wordcount"));
    result_free(&r);
    static const char *const helps[] = {"--help",       "jobs --help",
                                        "run --help",   "run wordcount --help",
                                        "bench --help", "bench core --help"};
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
        r = run(NULL, helps[i]);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "usage"));
        result_free(&r);
    }
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sluice-test-cli-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordcount_generated), cmocka_unit_test(test_wordcount_hostile_bytes),
        cmocka_unit_test(test_wordcount_10mb_line), cmocka_unit_test(test_wordcount_empty),
        cmocka_unit_test(test_bad_input),           cmocka_unit_test(test_version_and_jobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
