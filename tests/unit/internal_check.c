/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * The internal assert facility (src/internal/check.h):
 *   TP__CHECK "always on ...: prints 'tripool: ' + the message + newline to
 *     stderr, flushes it and aborts"        test_check_fails, test_check_passes
 *   TP__FAIL "the same without a condition"  test_fail
 *   TP__DEBUG_ASSERT "only without NDEBUG ... With NDEBUG cond is not
 *     evaluated"                              test_debug_assert (both levels: the
 *     test is compiled with the build's flags, NDEBUG in RelWithDebInfo, not
 *     in Debug or the chaos build)
 * Each failure runs in a forked child: SIGABRT and the exact stderr text.
 */
#include "tp_test.h"

#include <signal.h>
#include <sys/wait.h>

#include "internal/check.h"

typedef void (*fn_t)(void);

struct fn_call {
    fn_t fn;
};

static void call_fn(void *a) {
    ((struct fn_call *)a)->fn();
}

/* Run fn in a child; return its stderr in out and its wait status. */
static int run_child(fn_t fn, char *out, size_t cap) {
    struct fn_call c = {fn};
    return tp_test_run_child(call_fn, &c, out, cap);
}

static void expect_abort(fn_t fn, const char *exact) {
    char out[4096];
    int status = run_child(fn, out, sizeof out);
    if (!tp_test_aborted(status))
        fail_msg("child did not abort (status %d), stderr: %s", status, out);
    assert_string_equal(out, exact);
}

static volatile int evaluated;

static int side_effect(int v) {
    evaluated++;
    return v;
}

static void check_false(void) {
    TP__CHECK(side_effect(0) == 1, "tp_demo: value %d, pool '%s'", 42, "p");
}

static void test_check_fails(void **state) {
    (void)state;
    expect_abort(check_false, "tripool: tp_demo: value 42, pool 'p'\n");
}

static void test_check_passes(void **state) {
    (void)state;
    evaluated = 0;
    TP__CHECK(side_effect(1) == 1, "never printed %d", 1);
    assert_int_equal(evaluated, 1); /* evaluated once, in every build */
}

static void fail_now(void) {
    TP__FAIL("%s(%p): %s", "tp_demo_release", (void *)0x10, "released twice");
}

static void test_fail(void **state) {
    (void)state;
    char want[128];
    snprintf(want, sizeof want, "tripool: tp_demo_release(%p): released twice\n", (void *)0x10);
    expect_abort(fail_now, want);
}

static void debug_assert_false(void) {
    TP__DEBUG_ASSERT(side_effect(2) == 3);
}

static void test_debug_assert(void **state) {
    (void)state;
    char out[4096];
    evaluated = 0;
    int status = run_child(debug_assert_false, out, sizeof out);
#ifdef NDEBUG
    /* Off: the child exits normally, prints nothing; cond never runs here. */
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_equal(out, "");
    TP__DEBUG_ASSERT(side_effect(2) == 3);
    assert_int_equal(evaluated, 0);
#else
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("child did not abort (status %d), stderr: %s", status, out);
    assert_non_null(strstr(out, "tripool: "));
    assert_non_null(strstr(out, "internal_check.c:"));
    assert_non_null(strstr(out, "debug_assert_false: assertion 'side_effect(2) == 3' failed\n"));
    TP__DEBUG_ASSERT(side_effect(2) == 2); /* true: no abort, evaluated once */
    assert_int_equal(evaluated, 1);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_fails),
        cmocka_unit_test(test_check_passes),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_debug_assert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
