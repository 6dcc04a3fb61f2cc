/*
 * tests/unit/test_broker_floor.c - the floors stay floors (DESIGN.md
 * "Layout"): the broker's storage (connectors/broker/, except connector*.c,
 * the pipeline adapters) includes only its own headers, engine/base/ and the
 * public sluice/broker.h and sluice/error.h; engine/base/ includes nothing of
 * sluice but itself and sluice/error.h. Read from the source files, so a new
 * include of an engine internal or of the umbrella header fails here, with
 * the file and the line. Inside the storage, the layers point one way
 * (clean.c -> log.c -> index.c -> segment.c): the segment layer includes
 * neither log.h nor clean.h, and log.c/log.h do not include clean.h (the
 * writer reaches cleaning only through its after_roll hook).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static int allowed(const char *inc, const char *const *ok)
{
    for (; *ok; ok++) {
        size_t n = strlen(*ok);
        if ((*ok)[n - 1] == '/' ? strncmp(inc, *ok, n) == 0 : strcmp(inc, *ok) == 0) return 1;
    }
    return 0;
}

/* Check every .c and .h of dir (but those whose name starts with skip);
 * returns the number of files read. */
static int check_dir(const char *dir, const char *skip, const char *const *ok)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SLUICE_SOURCE_DIR, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 3 || (*skip && strncmp(e->d_name, skip, strlen(skip)) == 0)) continue;
        if (strcmp(e->d_name + l - 2, ".c") != 0 && strcmp(e->d_name + l - 2, ".h") != 0) continue;
        char file[8192];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        FILE *f = fopen(file, "r");
        assert_non_null(f);
        files++;
        char line[1024];
        for (int no = 1; fgets(line, sizeof line, f); no++) {
            char inc[512];
            if (sscanf(line, " # include \"%511[^\"]\"", inc) != 1) continue;
            if (!allowed(inc, ok)) fail_msg("%s/%s:%d includes \"%s\"", dir, e->d_name, no, inc);
        }
        fclose(f);
    }
    closedir(d);
    return files;
}

static void test_broker_storage_floor(void **state)
{
    (void)state;
    static const char *const ok[] = {"connectors/broker/", "engine/base/", "sluice/broker.h",
                                     "sluice/error.h", NULL};
    assert_true(check_dir("connectors/broker", "connector", ok) >= 10);
}

/* Fail if file (under the source dir) includes any of bad. */
static void check_file_not(const char *file, const char *const *bad)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SLUICE_SOURCE_DIR, file);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    for (int no = 1; fgets(line, sizeof line, f); no++) {
        char inc[512];
        if (sscanf(line, " # include \"%511[^\"]\"", inc) != 1) continue;
        for (const char *const *b = bad; *b; b++)
            if (strcmp(inc, *b) == 0)
                fail_msg("%s:%d includes \"%s\", a layer above it (clean -> log -> index -> "
                         "segment)",
                         file, no, inc);
    }
    fclose(f);
}

static void test_broker_storage_layers(void **state)
{
    (void)state;
    static const char *const above_segment[] = {"connectors/broker/log.h",
                                                "connectors/broker/clean.h",
                                                "connectors/broker/broker_int.h", NULL};
    static const char *const above_log[] = {"connectors/broker/clean.h",
                                            "connectors/broker/broker_int.h", NULL};
    check_file_not("connectors/broker/segment.h", above_segment);
    check_file_not("connectors/broker/segment.c", above_segment);
    check_file_not("connectors/broker/index.c", above_segment);
    check_file_not("connectors/broker/log.h", above_log);
    check_file_not("connectors/broker/log.c", above_log);
}

static void test_base_floor(void **state)
{
    (void)state;
    static const char *const ok[] = {"engine/base/", "sluice/error.h", NULL};
    assert_true(check_dir("engine/base", "", ok) >= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_storage_floor),
        cmocka_unit_test(test_broker_storage_layers),
        cmocka_unit_test(test_base_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
