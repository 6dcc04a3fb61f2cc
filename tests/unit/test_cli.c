/*
 * tests/unit/test_cli.c - the `sluice` command as a user meets it: wordcount
 * results against a reference count computed here, hostile input (NUL bytes,
 * invalid UTF-8, a 10 MB line), and bad invocations, each of which must exit
 * non-zero with exactly one line on stderr naming the problem.
 *
 * Options as every Unix tool parses them (getopt_long), as a table: --name=value
 * and --name value, bundled short options with an attached value (kcat's
 * -eo beginning), `--` ending options, and every bad option a one-line error
 * naming it with status 2. Also: --explain prints the plan and runs nothing,
 * with as many instances per operator as --threads unless --parallelism;
 * the one-line summary at the end of a job; a reader that closes the pipe ends
 * a job or a consumer quietly (status 0, nothing on stderr), and a group
 * consumer then commits nothing past what it wrote. A real write error
 * (/dev/full: ENOSPC; a file size limit: EFBIG) ends every command with one
 * line naming it and status 1, and a group consumer then commits, per
 * partition, nothing past the last record written. No assertion depends on
 * timing: the pipe tests read one line and close, so the writer, blocked on a
 * full pipe or not, must meet EPIPE.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sluice/sluice.h> /* SL_PIPELINE_STATS_HAS_DIVERTED, when the engine counts them */

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

/* Run `sluice ARGS` with stdin from `in` (or /dev/null) and stdout to
 * `out` (NULL: a file, returned in .out). */
static result run_to(const char *in, const char *args, const char *out)
{
    char cmd[4096], o[300], e[300];
    snprintf(o, sizeof(o), "%s/out", tmpdir);
    snprintf(e, sizeof(e), "%s/err", tmpdir);
    snprintf(cmd, sizeof(cmd), "%s %s < %s > %s 2> %s", SLUICE_BIN, args, in ? in : "/dev/null",
             out ? out : o, e);
    int st = system(cmd);
    result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (out) {
        r.out = calloc(1, 1);
        r.out_len = 0;
    } else {
        r.out = slurp(o, &r.out_len);
    }
    r.err = slurp(e, NULL);
    return r;
}

static result run(const char *in, const char *args)
{
    return run_to(in, args, NULL);
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

/* --- options, as a table ------------------------------------------------------------------ */

typedef struct opt_case {
    const char *args;   /* after SLUICE_BIN; %s is replaced by the broker directory */
    const char *input;  /* stdin text, or NULL for /dev/null */
    int status;         /* expected exit status */
    const char *needle; /* 0: in stdout ("=..." : all of stdout); else in the one stderr line */
} opt_case;

static void check_case(const opt_case *c)
{
    char args[1024], in[300];
    snprintf(args, sizeof(args), c->args, tmpdir);
    if (c->input) {
        snprintf(in, sizeof(in), "%s/opt-input", tmpdir);
        write_file(in, c->input, strlen(c->input));
    }
    result r = run(c->input ? in : NULL, args);
    int ok = r.status == c->status;
    if (ok && c->status == 0 && c->needle)
        ok = c->needle[0] == '=' ? strcmp(r.out, c->needle + 1) == 0
                                 : strstr(r.out, c->needle) != NULL;
    if (ok && c->status != 0)
        ok = count_lines(r.err) == 1 && strncmp(r.err, "sluice", 6) == 0 &&
             (!c->needle || strstr(r.err, c->needle));
    if (!ok)
        fprintf(stderr, "args: %s\nstatus %d (want %d)\nstdout: %.300s\nstderr: %s\n", args,
                r.status, c->status, r.out, r.err);
    assert_true(ok);
    result_free(&r);
}

static void test_option_forms(void **state)
{
    static const opt_case cases[] = {
        /* long options: attached and separate values, `--` */
        {"run generate --events=3 --keys=1", NULL, 0, "=0,k0,137\n1,k0,48\n2,k0,561\n"},
        {"run generate --events 3 --keys 1", NULL, 0, "=0,k0,137\n1,k0,48\n2,k0,561\n"},
        {"run generate --events=3 -- ", NULL, 0, "2,k"},
        {"run generate --events=3 -- extra", NULL, 2, "unexpected argument 'extra'"},
        {"run wordcount --threads=2 --parallelism=3", "b a b\n", 0, "=b\t2\na\t1\n"},
        {"run wordcount --threads 2 --parallelism 3 --input=/dev/null", NULL, 0, NULL},
        {"run window-agg --window=tumbling:1s --agg=sum --delay=0", "5,k,2\n7,k,3\n", 0,
         "0,1000,k,5"},
        {"run ysb --events=3000 --threads=1", NULL, 0, ","},
        /* broker commands: kcat's bundles, attached values, operands anywhere */
        {"topic create t --dir=%s/b --partitions=1", NULL, 0, NULL},
        {"produce --dir %s/b -- t", "one\ntwo\nthree\n", 0, NULL},
        {"consume t --dir=%s/b -eo beginning", NULL, 0, "=one\ntwo\nthree\n"},
        {"consume t --dir=%s/b -eo-1", NULL, 0, "=three\n"},
        {"consume --dir=%s/b -ec2 -o 1 t", NULL, 0, "=two\nthree\n"},
        {"consume t --dir=%s/b -e -f '%%o:%%s\\n'", NULL, 0, "=0:one\n1:two\n2:three\n"},
        {"topic list --dir=%s/b", NULL, 0, "=t\n"},
        {"topic describe --dir %s/b t", NULL, 0, "topic t: 1 partition"},
        /* errors: one line, naming the option, status 2 */
        {"run wordcount --frobnicate", NULL, 2, "unknown option '--frobnicate'"},
        {"run wordcount --frobnicate=3", NULL, 2, "unknown option '--frobnicate'"},
        {"run wordcount --threads", NULL, 2, "--threads needs a value"},
        {"run wordcount --threads=", NULL, 2, "--threads needs a whole number"},
        {"run wordcount --threads=two", NULL, 2, "'two'"},
        {"run wordcount --explain=yes", NULL, 2, "--explain takes no value"},
        {"run wordcount -q", NULL, 2, "unknown option '-q'"},
        {"run wordcount stray", NULL, 2, "unexpected argument 'stray'"},
        {"run generate --parallelism 2", NULL, 2, "--parallelism"},
        {"run window-agg --window=hopping:1s", NULL, 2, "hopping"},
        {"run ysb --events=0", NULL, 2, "--events"},
        {"consume t --dir=%s/b -eq", NULL, 2, "unknown option '-q'"},
        {"consume t --dir=%s/b -xe", NULL, 2, "unknown option '-x'"},
        {"consume t --dir=%s/b -e -o", NULL, 2, "-o needs a value"},
        {"consume t --dir=%s/b -e -c zero", NULL, 2, "-c needs a whole number"},
        {"produce t --dir=%s/b -K", NULL, 2, "-K needs a value"},
        {"topic list --dir=%s/b --partitions 3", NULL, 2, "--partitions applies to topic create"},
        {"topic create u --dir=%s/b --partitions=x", NULL, 2, "--partitions"},
        {"bench core --events=12", NULL, 2, "--events"},
        {"bench core --bogus", NULL, 2, "--bogus"},
        {"--bogus", NULL, 2, "unknown option '--bogus'"},
        {"run", NULL, 2, "missing JOB"},
        {"", NULL, 2, "missing command"},
        {"topic", NULL, 2, "missing subcommand"},
        {"consume --dir=%s/b -e", NULL, 2, "missing TOPIC"},
        {"produce --dir=%s/b", NULL, 2, "missing TOPIC"},
        {"bench", NULL, 2, "missing NAME"},
        {"jobs extra", NULL, 2, "unexpected argument 'extra'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_case(&cases[i]);
}

/* --- --explain, the summary line ------------------------------------------------------------ */

static void test_explain(void **state)
{
    char in[300];
    snprintf(in, sizeof(in), "%s/explain-input", tmpdir);
    write_file(in, "zzz zzz\n", 8);
    static const char *const jobs[] = {"run wordcount --explain", "run window-agg --explain",
                                       "run ysb --explain --parallelism 2",
                                       "run generate --explain"};
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        result r = run(in, jobs[i]);
        if (r.status != 0 || !strstr(r.out, "task 0:") || !strstr(r.out, "edge ") || *r.err)
            fprintf(stderr, "%s: status %d\nstdout: %s\nstderr: %s\n", jobs[i], r.status, r.out,
                    r.err);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "task 0:"));
        assert_string_equal(r.err, ""); /* nothing ran: no summary, no dead letters */
        assert_null(strstr(r.out, "zzz"));
        result_free(&r);
    }
}

/* Without --parallelism, a job runs as many instances as --threads (else one
 * worker would have nothing to do); --parallelism, when given, wins. Nodes
 * that must stay single (wordcount's "sorted", window-agg's reader) stay so. */
static void test_parallelism_follows_threads(void **state)
{
    static const struct {
        const char *args, *has, *lacks;
    } cases[] = {
        {"run ysb --explain --threads 2", "edge campaign(2) -> count(2): hash", "events(1)"},
        {"run ysb --explain --threads 2 --parallelism 1", "edge events(1) -> views(1)", "count(2)"},
        {"run ysb --explain --parallelism 2 --threads 1", "count(2)", "count(1)"},
        {"run ysb --explain", "edge campaign(1) -> count(1): hash", "(2)"},
        {"run wordcount --explain --threads 2", "edge count(2) -> sorted(1)", "sorted(2)"},
        {"run window-agg --explain --threads 2", "edge key(1) -> window(2): hash", "csv(2)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        result r = run(NULL, cases[i].args);
        if (r.status != 0 || !strstr(r.out, cases[i].has) || strstr(r.out, cases[i].lacks))
            fprintf(stderr, "%s: status %d\nstdout: %s\nstderr: %s\n", cases[i].args, r.status,
                    r.out, r.err);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, cases[i].has));
        assert_null(strstr(r.out, cases[i].lacks));
        result_free(&r);
    }
}

static void test_summary_line(void **state)
{
    /* stderr is a file here, not a terminal: the summary is printed anyway. */
    result r = run(NULL, "run generate --events 1000");
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 1000);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "sluice run generate: 1000 in, 1000 out, "));
#ifdef SL_PIPELINE_STATS_HAS_DIVERTED
    assert_non_null(strstr(r.err, " 0 late, 0 dead letters, "));
#endif
    assert_non_null(strstr(r.err, " s, "));
    assert_non_null(strstr(r.err, "/s\n"));
    result_free(&r);
    /* a failed job prints its error instead (one line, checked in test_bad_input) */
}

/* --- a reader that closes the pipe ---------------------------------------------------------- */

/* Run `sh -c "exec SLUICE_BIN args"` with stdout into a pipe; read `lines`
 * lines from it, close it, and wait. Returns the exit status (128 + signal
 * when killed); *err gets stderr, *pipe_bytes (if not NULL) the pipe's
 * capacity. */
static int run_closing_reader(const char *args, int lines, char **err, int *pipe_bytes)
{
    char cmd[2048], efile[300];
    snprintf(cmd, sizeof(cmd), "exec %s %s", SLUICE_BIN, args);
    snprintf(efile, sizeof(efile), "%s/pipe-err", tmpdir);
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    if (pipe_bytes) *pipe_bytes = fcntl(fd[0], F_GETPIPE_SZ);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *e = freopen(efile, "w", stderr);
        if (!e || dup2(fd[1], 1) < 0 || !freopen("/dev/null", "r", stdin)) _exit(99);
        close(fd[0]);
        close(fd[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(98);
    }
    close(fd[1]);
    char c;
    while (lines > 0 && read(fd[0], &c, 1) == 1) lines -= c == '\n';
    close(fd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    *err = slurp(efile, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_broken_pipe(void **state)
{
    char *err;
    /* far more than a pipe holds: the writer must meet the closed pipe */
    static const char *const jobs[] = {"run generate --events 10000000",
                                       "run generate --events 10000000 --threads 2",
                                       "run ysb --events 30000000"};
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        int st = run_closing_reader(jobs[i], 1, &err, NULL);
        if (st != 0 || *err)
            fprintf(stderr, "%s | head -1: status %d, stderr '%s'\n", jobs[i], st, err);
        assert_int_equal(st, 0);
        assert_string_equal(err, "");
        free(err);
    }

    /* consume, alone and in a group, from a topic of 10,000 records of 500
     * bytes (5 MB: far more than a pipe holds) */
    char args[600];
    snprintf(args, sizeof(args), "topic create big --dir=%s/pipe", tmpdir);
    result r = run(NULL, args);
    assert_int_equal(r.status, 0);
    result_free(&r);
    char in[300];
    snprintf(in, sizeof(in), "%s/pipe-input", tmpdir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 10000; i++) fprintf(f, "%05d %0493d\n", i, 0); /* 500 bytes a line */
    fclose(f);
    snprintf(args, sizeof(args), "produce big --dir=%s/pipe", tmpdir);
    r = run(in, args);
    assert_int_equal(r.status, 0);
    result_free(&r);

    snprintf(args, sizeof(args), "consume big --dir=%s/pipe -e", tmpdir);
    int st = run_closing_reader(args, 1, &err, NULL);
    if (st != 0 || *err) fprintf(stderr, "consume | head -1: status %d, stderr '%s'\n", st, err);
    assert_int_equal(st, 0);
    assert_string_equal(err, "");
    free(err);

    /* -G: the group may commit only what was written: at most the line read
     * plus what the pipe held (its capacity over 500-byte lines). Committing
     * what was read from the log instead would be at least a burst of 4096. */
    int pipe_bytes = 0;
    snprintf(args, sizeof(args), "consume big --dir=%s/pipe -G g -e", tmpdir);
    st = run_closing_reader(args, 1, &err, &pipe_bytes);
    if (st != 0 || *err) fprintf(stderr, "consume -G | head -1: status %d, stderr '%s'\n", st, err);
    assert_int_equal(st, 0);
    assert_string_equal(err, "");
    free(err);
    assert_true(pipe_bytes > 0);
    snprintf(args, sizeof(args), "consume big --dir=%s/pipe -G g -e -c 1 -f '%%o\\n'", tmpdir);
    r = run(NULL, args);
    assert_int_equal(r.status, 0);
    long next = strtol(r.out, NULL, 10), most = 1 + pipe_bytes / 500;
    if (next > most) fprintf(stderr, "group resumed at offset %ld, > %ld\n", next, most);
    assert_true(next <= most);
    result_free(&r);
}

/* --- a failing standard output ------------------------------------------------------------ */

/* Every command whose standard output fails (/dev/full: ENOSPC) exits 1 with
 * one line naming the error, never 0 with the output lost. */
static void test_output_full(void **state)
{
    char args[600], in[300];
    snprintf(args, sizeof(args), "topic create full --partitions 2 --dir=%s/full", tmpdir);
    result r = run(NULL, args);
    assert_int_equal(r.status, 0);
    result_free(&r);
    snprintf(in, sizeof(in), "%s/full-input", tmpdir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 100; i++) fprintf(f, "%d,k%d,%d\n", i * 10, i % 7, i);
    fclose(f);
    snprintf(args, sizeof(args), "produce full --dir=%s/full", tmpdir);
    r = run(in, args);
    assert_int_equal(r.status, 0);
    result_free(&r);

    static const char *const cmds[] = {
        "run generate --events 1000",
        "run generate --events 1000 --topic full --dir=%s/none --explain",
        "run wordcount",
        "run window-agg --window tumbling:100 --delay 0",
        "run ysb --events 3000",
        "consume full --dir=%s/full -e",
        "consume full --dir=%s/full -e -c 5",
        "consume full --dir=%s/full -e -G g",
        "topic list --dir=%s/full",
        "topic describe full --dir=%s/full",
        "jobs",
        "--version",
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(args, sizeof(args), cmds[i], tmpdir);
        r = run_to(in, args, "/dev/full");
        int ok = r.status == 1 && count_lines(r.err) == 1 &&
                 strstr(r.err, "No space left on device") && !strncmp(r.err, "sluice", 6);
        if (!ok) fprintf(stderr, "%s > /dev/full: status %d, stderr '%s'\n", args, r.status, r.err);
        assert_true(ok);
        result_free(&r);
    }
    /* a file given to a job's sink */
    r = run(in, "run window-agg --window tumbling:100 --delay 0 --out /dev/full");
    if (r.status != 1 || count_lines(r.err) != 1 || !strstr(r.err, "/dev/full"))
        fprintf(stderr, "--out /dev/full: status %d, stderr '%s'\n", r.status, r.err);
    assert_int_equal(r.status, 1);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "cannot write /dev/full: No space left on device"));
    result_free(&r);

    /* the group wrote nothing: it committed nothing, and reads it all again */
    snprintf(args, sizeof(args), "consume full --dir=%s/full -e -G g -f '%%p %%o\\n'", tmpdir);
    r = run(NULL, args);
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 100);
    result_free(&r);
}

/* Run `sluice ARGS` with stdout to the file `out`, which may grow to `limit`
 * bytes (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails with EFBIG).
 * Returns the exit status; *err gets stderr. */
static int run_limited(const char *args, const char *out, rlim_t limit, char **err)
{
    char cmd[2048], efile[300];
    snprintf(cmd, sizeof(cmd), "exec %s %s > %s", SLUICE_BIN, args, out);
    snprintf(efile, sizeof(efile), "%s/limit-err", tmpdir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        if (!freopen(efile, "w", stderr) || !freopen("/dev/null", "r", stdin)) _exit(99);
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0) _exit(97);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(98);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    *err = slurp(efile, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Last offset of each of 4 partitions in complete "P O ..." lines of text
 * (-1: none); a cut last line does not count. */
static void last_offsets(const char *text, long last[4])
{
    for (int p = 0; p < 4; p++) last[p] = -1;
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        if (!nl) break;
        int p;
        long o;
        if (sscanf(l, "%d %ld", &p, &o) == 2 && p >= 0 && p < 4) {
            assert_true(o == last[p] + 1); /* in order, no gap, within a partition */
            last[p] = o;
        }
        l = nl + 1;
    }
}

/* A group consumer whose output fails half way (a file size limit) exits 1
 * and commits, per partition, what it wrote: not more (the next member reads
 * on from there, nothing lost) and not nothing (the progress before the
 * failure is kept). */
static void test_output_fails_half_way(void **state)
{
    char args[600], in[300], out[300];
    snprintf(args, sizeof(args), "topic create half --partitions 4 --dir=%s/half", tmpdir);
    result r = run(NULL, args);
    assert_int_equal(r.status, 0);
    result_free(&r);
    snprintf(in, sizeof(in), "%s/half-input", tmpdir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 40000; i++) fprintf(f, "%05d %090d\n", i, 0); /* 97 bytes a line */
    fclose(f);
    snprintf(args, sizeof(args), "produce half --dir=%s/half", tmpdir);
    r = run(in, args);
    assert_int_equal(r.status, 0);
    result_free(&r);

    /* 10000 records a partition of about 100 bytes a line: 4 MB in all; the
     * limit lets about half of it through. */
    snprintf(out, sizeof(out), "%s/half-out", tmpdir);
    snprintf(args, sizeof(args), "consume half --dir=%s/half -e -G g -f '%%p %%o %%s\\n'", tmpdir);
    char *err;
    int st = run_limited(args, out, 2u << 20, &err);
    if (st != 1 || count_lines(err) != 1 || !strstr(err, "File too large"))
        fprintf(stderr, "consume -G, output limited: status %d, stderr '%s'\n", st, err);
    assert_int_equal(st, 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "sluice consume: cannot write standard output: File too large"));
    free(err);
    size_t n;
    char *first = slurp(out, &n);
    assert_true(n >= (2u << 20) - 4096 && n <= 2u << 20);
    long written[4];
    last_offsets(first, written);
    free(first);

    /* where the group resumes, partition by partition */
    snprintf(args, sizeof(args), "consume half --dir=%s/half -e -G g -f '%%p %%o\\n'", tmpdir);
    r = run(NULL, args);
    assert_int_equal(r.status, 0);
    long resumed[4] = {-1, -1, -1, -1}, progress = 0;
    for (const char *l = r.out; *l; l = strchr(l, '\n') + 1) {
        int p;
        long o;
        assert_int_equal(sscanf(l, "%d %ld", &p, &o), 2);
        assert_true(p >= 0 && p < 4);
        if (resumed[p] < 0) resumed[p] = o;
    }
    result_free(&r);
    for (int p = 0; p < 4; p++) {
        long from = resumed[p] < 0 ? 10000 : resumed[p];
        if (from > written[p] + 1)
            fprintf(stderr, "partition %d: committed %ld, but only up to %ld was written\n", p,
                    from, written[p]);
        assert_true(from <= written[p] + 1); /* nothing committed that was not written */
        progress += from;
    }
    assert_true(progress > 0); /* what was written before the failure stays committed */
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
        cmocka_unit_test(test_wordcount_generated),
        cmocka_unit_test(test_wordcount_hostile_bytes),
        cmocka_unit_test(test_wordcount_10mb_line),
        cmocka_unit_test(test_wordcount_empty),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_version_and_jobs),
        cmocka_unit_test(test_option_forms),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_parallelism_follows_threads),
        cmocka_unit_test(test_summary_line),
        cmocka_unit_test(test_broken_pipe),
        cmocka_unit_test(test_output_full),
        cmocka_unit_test(test_output_fails_half_way),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
