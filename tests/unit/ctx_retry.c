/* SPDX-License-Identifier: MIT */
/* tp_retry: attempts, permanent errors, budgets, jitter bounds, context.
 * TP_TEST_TIMEOUT: 60 */
#include "tp_test.h"

struct script {
    int results[16]; /* what attempt i (1-based) returns; past the end: last */
    unsigned n;
    unsigned calls;
    unsigned last_attempt;
    uint64_t at[16];        /* time of each call */
    tp_ctx *cancel_at_call; /* cancel this context during call cancel_call */
    unsigned cancel_call;
};

static int scripted(void *arg, unsigned attempt) {
    struct script *s = arg;
    if (s->calls < 16) s->at[s->calls] = tp_now_ns();
    s->calls++;
    s->last_attempt = attempt;
    if (s->cancel_at_call && s->calls == s->cancel_call) tp_ctx_cancel(s->cancel_at_call);
    return s->results[attempt - 1 < s->n ? attempt - 1 : s->n - 1];
}

static tp_retry_opts fast_opts(void) {
    tp_retry_opts o;
    tp_retry_opts_init(&o);
    o.base_ns = TP_NSEC_PER_MSEC;
    o.cap_ns = 4 * TP_NSEC_PER_MSEC;
    return o;
}

static void test_defaults_and_bad_input(void **state) {
    (void)state;
    tp_retry_opts o;
    tp_retry_opts_init(&o);
    assert_int_equal(o.max_attempts, 5);
    assert_true(o.base_ns == 10 * TP_NSEC_PER_MSEC);
    assert_true(o.cap_ns == TP_NSEC_PER_SEC);
    assert_true(o.max_elapsed_ns == TP_FOREVER);
    assert_ptr_equal(o.retryable, tp_retry_default_retryable);
    assert_int_equal(tp_retry(NULL, NULL, NULL, NULL), -EINVAL);
    o.cap_ns = o.base_ns - 1;
    struct script s = {.results = {0}, .n = 1};
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), -EINVAL);
    assert_int_equal(s.calls, 0);
    assert_true(tp_retry_default_retryable(-EAGAIN, NULL));
    assert_true(tp_retry_default_retryable(-ETIMEDOUT, NULL));
    assert_true(tp_retry_default_retryable(-EINTR, NULL));
    assert_true(tp_retry_default_retryable(-EBUSY, NULL));
    assert_false(tp_retry_default_retryable(-EINVAL, NULL));
    assert_false(tp_retry_default_retryable(-ENOENT, NULL));
    assert_false(tp_retry_default_retryable(-ECANCELED, NULL));
}

static void test_success_after_transient(void **state) {
    (void)state;
    tp_retry_opts o = fast_opts();
    struct script s = {.results = {-EAGAIN, -EBUSY, 42}, .n = 3};
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), 42);
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.last_attempt, 3);
}

static void test_permanent_error_stops(void **state) {
    (void)state;
    tp_retry_opts o = fast_opts();
    struct script s = {.results = {-EAGAIN, -ENOENT, 0}, .n = 3};
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), -ENOENT);
    assert_int_equal(s.calls, 2);
}

static bool only_eio(int err, void *arg) {
    (*(int *)arg)++;
    return err == -EIO;
}

static void test_custom_predicate(void **state) {
    (void)state;
    tp_retry_opts o = fast_opts();
    int asked = 0;
    o.retryable = only_eio;
    o.pred_arg = &asked;
    struct script s = {.results = {-EIO, -EIO, -EAGAIN}, .n = 3};
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), -EAGAIN);
    assert_int_equal(s.calls, 3);
    assert_int_equal(asked, 3);
}

static void test_max_attempts(void **state) {
    (void)state;
    tp_retry_opts o = fast_opts();
    o.max_attempts = 4;
    struct script s = {.results = {-EAGAIN}, .n = 1};
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), -EAGAIN);
    assert_int_equal(s.calls, 4);
    /* Every sleep is within the full-jitter bound min(cap, base * 2^(k-1)),
     * measured as an upper bound with generous scheduling slack. */
    for (unsigned k = 1; k < 4; k++) {
        uint64_t bound = TP_NSEC_PER_MSEC << (k - 1);
        if (bound > o.cap_ns) bound = o.cap_ns;
        assert_true(s.at[k] - s.at[k - 1] <= bound + 500 * TP_NSEC_PER_MSEC);
    }
}

/* With unlimited attempts, the time budget ends the retry with fn's error. */
static void test_elapsed_budget(void **state) {
    (void)state;
    tp_retry_opts o = fast_opts();
    o.max_attempts = 0; /* unlimited: only the time budget stops it */
    o.base_ns = 5 * TP_NSEC_PER_MSEC;
    o.cap_ns = 20 * TP_NSEC_PER_MSEC;
    o.max_elapsed_ns = 100 * TP_NSEC_PER_MSEC;
    struct script s = {.results = {-ETIMEDOUT}, .n = 1};
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_retry(NULL, &o, scripted, &s), -ETIMEDOUT);
    uint64_t took = tp_now_ns() - t0;
    assert_true(s.calls >= 2);
    /* It never plans a sleep past the budget; allow slack for slow CI. */
    assert_true(took <= o.max_elapsed_ns + 2 * TP_NSEC_PER_SEC);
}

static void test_context_cancel_ends_retry(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    tp_retry_opts o;
    tp_retry_opts_init(&o);
    o.max_attempts = 0;
    struct script s = {.results = {-EAGAIN}, .n = 1, .cancel_at_call = c, .cancel_call = 2};
    /* Cancelled during call 2, the retry returns the context's error before
     * sleeping again; a done context calls fn no more. */
    o.base_ns = o.cap_ns = TP_NSEC_PER_MSEC;
    assert_int_equal(tp_retry(c, &o, scripted, &s), -ECANCELED);
    assert_int_equal(s.calls, 2);
    assert_int_equal(tp_retry(c, &o, scripted, &s), -ECANCELED);
    assert_int_equal(s.calls, 2);
    tp_ctx_release(c);

    /* A deadline ends a long backoff sleep early. */
    assert_int_equal(tp_ctx_with_timeout(NULL, 30 * TP_NSEC_PER_MSEC, &c), 0);
    o.base_ns = o.cap_ns = 3600 * TP_NSEC_PER_SEC;
    o.seed = 1;
    struct script s2 = {.results = {-EAGAIN}, .n = 1};
    uint64_t t0 = tp_now_ns();
    int r = tp_retry(c, &o, scripted, &s2);
    /* fn fails forever and nothing else limits it: only the deadline, which
     * must end the (up to 1 h) sleep early, can stop it. */
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 < 60 * TP_NSEC_PER_SEC);
    tp_ctx_release(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_bad_input),
        cmocka_unit_test(test_success_after_transient),
        cmocka_unit_test(test_permanent_error_stops),
        cmocka_unit_test(test_custom_predicate),
        cmocka_unit_test(test_max_attempts),
        cmocka_unit_test(test_elapsed_budget),
        cmocka_unit_test(test_context_cancel_ends_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
