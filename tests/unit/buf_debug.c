/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Buffer pool misuse: double put, a buffer of another pool and a foreign
 * pointer abort with a clear message (run in a forked child: SIGABRT plus
 * the message on stderr); a write after put is caught in debug mode (by ASan
 * poisoning under ASan, by the poison pattern check otherwise). */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "tp_test.h"
#include "tripool/buf.h"

typedef void (*misuse_fn)(void);

struct misuse_call {
    misuse_fn fn;
};

static void call_misuse(void *a) {
    ((struct misuse_call *)a)->fn();
}

/* Run fn in a child; expect SIGABRT and one of the messages on stderr. */
static void expect_abort(misuse_fn fn, const char *msg1, const char *msg2) {
    char out[8192];
    struct misuse_call c = {fn};
    int status = tp_test_run_child(call_misuse, &c, out, sizeof out);
    if (!tp_test_aborted(status))
        fail_msg("child did not abort (status %d), stderr: %s", status, out);
    if (!strstr(out, msg1) && !(msg2 && strstr(out, msg2)))
        fail_msg("message '%s' not in stderr: %s", msg1, out);
}

static tp_bufpool *mk(bool debug) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.debug = debug;
    o.name = "dbgpool";
    tp_bufpool *bp = NULL;
    if (tp_bufpool_create(&bp, &o) != 0) abort();
    return bp;
}

static void double_put_debug(void) {
    tp_bufpool *bp = mk(true);
    tp_buf *b = tp_buf_get(bp, 100);
    tp_buf_put(bp, b);
    tp_buf_put(bp, b);
}

static void double_put_release(void) {
    tp_bufpool *bp = mk(false);
    tp_buf *b = tp_buf_get(bp, 100);
    tp_buf_put(bp, b);
    tp_buf_put(bp, b);
}

static void other_pool_debug(void) {
    tp_bufpool *a = mk(true), *b = mk(true);
    tp_buf *x = tp_buf_get(a, 100);
    tp_buf_put(b, x);
}

static void other_pool_release(void) {
    tp_bufpool *a = mk(false), *b = mk(false);
    tp_buf *x = tp_buf_get(a, 100);
    tp_buf_put(b, x);
}

static void foreign_debug(void) {
    tp_bufpool *bp = mk(true);
    static tp_buf fake; /* zeroed, looks nothing like a pool buffer */
    tp_buf_put(bp, &fake);
}

static void write_after_put(void) {
    tp_bufpool *bp = mk(true);
    tp_buf *b = tp_buf_get(bp, 100);
    uint8_t *p = b->data;
    tp_buf_put(bp, b);
    ((volatile uint8_t *)p)[3] = 7; /* use after put */
    tp_buf *c = tp_buf_get(bp, 100);
    (void)c;
}

static void test_double_put(void **st) {
    (void)st;
    expect_abort(double_put_debug, "double put", NULL);
    expect_abort(double_put_release, "double put", NULL);
}

static void test_other_pool(void **st) {
    (void)st;
    expect_abort(other_pool_debug, "not a buffer of this pool", NULL);
    expect_abort(other_pool_release, "another pool", NULL);
}

static void test_foreign(void **st) {
    (void)st;
    expect_abort(foreign_debug, "not a buffer of this pool", NULL);
}

static void test_write_after_put(void **st) {
    (void)st;
    expect_abort(write_after_put, "written after it was put", "use-after-poison");
}

/* Debug mode on correct use: no false alarm, data intact, poison gone. */
static void test_debug_clean_use(void **st) {
    (void)st;
    tp_bufpool *bp = mk(true);
    for (int round = 0; round < 3; round++) {
        tp_buf *b[40];
        for (int i = 0; i < 40; i++) {
            b[i] = tp_buf_get(bp, (size_t)(i % 5 + 1) * 1000);
            assert_non_null(b[i]);
            memset(b[i]->data, i, b[i]->cap);
        }
        for (int i = 0; i < 40; i++) {
            for (size_t k = 0; k < b[i]->cap; k += 97)
                assert_int_equal(b[i]->data[k], (uint8_t)i);
            tp_buf_put(bp, b[i]);
        }
        tp_bufpool_tick(bp);
    }
    assert_int_equal(tp_bufpool_prewarm(bp, 4096, 2, true), 0);
    tp_buf *x = tp_buf_get(bp, 4096);
    x->data[0] = 1;
    tp_buf_put(bp, x);
    tp_bufpool_destroy(bp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_put),      cmocka_unit_test(test_other_pool),
        cmocka_unit_test(test_foreign),         cmocka_unit_test(test_write_after_put),
        cmocka_unit_test(test_debug_clean_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
