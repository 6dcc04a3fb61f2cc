/*
 * tests/unit/test_page.c - the status page built into the library
 * (ops/page.h, generated from ops/status.html by cmake/embed.cmake).
 *
 * Covered: the embedded bytes are exactly the source file's, followed by a
 * NUL; the page stays self-contained (no http(s):// or protocol-relative
 * reference in a src, href, @import or url(), so it works offline) and small
 * (under 32 KiB); it polls /api/job. How it renders is
 * tests/integration/status_page.sh's (headless Chromium).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ops/page.h"

static void test_same_bytes(void **state)
{
    FILE *f = fopen(SLUICE_SOURCE_DIR "/ops/status.html", "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(n, sli_status_page_len);
    assert_memory_equal(buf, sli_status_page, n);
    assert_int_equal(sli_status_page[sli_status_page_len], 0);
    assert_int_equal(strlen(sli_status_page), sli_status_page_len);
}

static void test_self_contained(void **state)
{
    static const char *const banned[] = {
        "src=\"http", "src='http",  "href=\"http", "href='http", "src=\"//", "href=\"//",
        "url(http",   "url(\"http", "url('http",   "url(//",     "@import",  "<link ",
    };
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++) {
        if (strstr(sli_status_page, banned[i])) fail_msg("the page references '%s'", banned[i]);
    }
    assert_true(sli_status_page_len < 32 * 1024);
    assert_non_null(strstr(sli_status_page, "\"/api/job\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes),
        cmocka_unit_test(test_self_contained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
