/* SPDX-License-Identifier: MIT */
/*
 * USDT probes (src/internal/probes.h): TP_PROBE with 0..6 arguments builds;
 * with <sys/sdt.h> the probes land as stapsdt ELF notes of provider
 * "tripool" (what perf/bpftrace list), including the endpoint's scrape probe.
 * Without it (not installed, or TP_MINIMAL_DEPS=ON) there is no such note at
 * all and the arguments are not evaluated. The build's verdict comes both from
 * the macro and from cmake (TP_TEST_PROBES: 1 or the reason): they must agree.
 * TP_TEST_TIMEOUT: 30
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal/probes.h"
#include "tripool/metrics.h"

static int count_notes(const char *name) {
    /* This program's file, read in-process: another process opening
     * /proc/PID/exe would see Valgrind's loader when run under memcheck. */
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(len > 0);
    exe[len] = '\0';
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "readelf -n '%s' 2>/dev/null | grep -A2 'Provider: tripool' | grep -c "
             "'Name: %s$'",
             exe, name);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = 0;
    if (fscanf(p, "%d", &n) != 1) n = 0;
    pclose(p);
    return n;
}

static int g_evaluated;
static int side_effect(void) {
    return ++g_evaluated;
}

static void test_probes(void **state) {
    int a = 1;
    long b = 2;
    void *c = &a;
    TP_PROBE(test_p0);
    TP_PROBE(test_p1, a);
    TP_PROBE(test_p3, a, b, c);
    TP_PROBE(test_p6, a, b, c, a, b, c);
    TP_PROBE(test_p2, side_effect(), side_effect());
    /* cmake's verdict (cmake/tests.cmake); absent when run by hand or by
     * scripts/valgrind.sh, then only the macro's is checked. */
    const char *env = getenv("TP_TEST_PROBES");
    assert_int_equal(system("command -v readelf >/dev/null 2>&1"), 0); /* binutils */
#ifdef TP_HAVE_PROBES
    if (env) assert_string_equal(env, "1");
    assert_int_equal(g_evaluated, 2); /* a real probe evaluates its arguments once */
    assert_int_equal(count_notes("test_p0"), 1);
    assert_int_equal(count_notes("test_p3"), 1);
    assert_int_equal(count_notes("test_p6"), 1);
    /* the metrics module's own probe, linked in with the server */
    assert_true(count_notes("metrics_scrape") >= 1);
#else
    print_message("probes compiled out (%s): checking that nothing is left of them\n",
                  env ? env : "TP_HAVE_SDT not defined");
    if (env) assert_string_not_equal(env, "1");
    assert_int_equal(g_evaluated, 0);
    assert_int_equal(count_notes("test_p0"), 0);
    assert_int_equal(count_notes("test_p6"), 0);
    assert_int_equal(count_notes("metrics_scrape"), 0);
#endif
    /* keep the server (and its probe) linked */
    tp_metrics_server_stop(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_probes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
