/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Buffer pool basics: size classes, reuse, the retained cap, the in-use cap
 * (fail and wait), reset on reuse, alignment, pass-through, stats, bad input
 * and destroy with buffers still out. */
#include <pthread.h>

#include "tp_test.h"
#include "tripool/buf.h"

static tp_bufpool *mk(tp_bufpool_opts *o) {
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, o), 0);
    assert_non_null(bp);
    return bp;
}

static void test_classes(void **st) {
    (void)st;
    tp_bufpool *bp = mk(NULL);
    struct {
        size_t ask, cap;
    } cases[] = {{0, 64},
                 {1, 64},
                 {64, 64},
                 {65, 128},
                 {4096, 4096},
                 {4097, 8192},
                 {65536, 65536},
                 {(1u << 20) + 1, 2u << 20},
                 {TP_BUF_MAX_SIZE, TP_BUF_MAX_SIZE}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tp_buf *b = tp_buf_get(bp, cases[i].ask);
        assert_non_null(b);
        assert_int_equal(b->cap, cases[i].cap);
        assert_int_equal(b->len, 0);
        memset(b->data, 0xab, b->cap); /* every byte writable */
        tp_buf_put(bp, b);
    }
    /* Over the largest class: mapped exactly (page-rounded), never retained. */
    size_t huge = TP_BUF_MAX_SIZE + 1;
    tp_buf *h = tp_buf_get(bp, huge);
    assert_non_null(h);
    assert_true(h->cap >= huge && h->cap % (size_t)sysconf(_SC_PAGESIZE) == 0);
    assert_true(h->cap < huge + (size_t)sysconf(_SC_PAGESIZE));
    h->data[0] = 1;
    h->data[h->cap - 1] = 1;
    tp_buf_put(bp, h);

    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    /* Each buffer went back to its own class. */
    assert_int_equal(s.cls[0].retained, 1); /* 0, 1 and 64 all used one 64 B buffer */
    assert_int_equal(s.cls[0].gets, 3);
    assert_int_equal(s.cls[0].hits, 2);
    assert_int_equal(s.cls[1].retained, 1);
    assert_int_equal(s.cls[6].retained, 1); /* 4096 */
    assert_int_equal(s.cls[TP_BUF_NCLASSES - 1].retained, 1);
    assert_int_equal(s.cls[TP_BUF_HUGE].puts, 1);
    assert_int_equal(s.cls[TP_BUF_HUGE].dropped, 1);
    assert_int_equal(s.cls[TP_BUF_HUGE].retained, 0);
    assert_int_equal(s.cls[TP_BUF_HUGE].inuse_bytes, 0);
    assert_int_equal(s.total.outstanding, 0);
    assert_int_equal(s.total.gets, 10);
    assert_int_equal(s.total.puts, 10);
    tp_bufpool_destroy(bp);
}

static void test_reuse_and_stats(void **st) {
    (void)st;
    tp_bufpool *bp = mk(NULL);
    tp_buf *a = tp_buf_get(bp, 1000);
    assert_non_null(a);
    uint8_t *data = a->data;
    a->len = 10;
    tp_buf_put(bp, a);
    tp_buf *b = tp_buf_get(bp, 1024);
    assert_ptr_equal(b, a);
    assert_ptr_equal(b->data, data);
    assert_int_equal(b->len, 0);
    tp_buf *c = tp_buf_get(bp, 1024);
    assert_ptr_not_equal(c, b);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.gets, 3);
    assert_int_equal(s.total.hits, 1);
    assert_int_equal(s.total.misses, 2);
    assert_int_equal(s.total.outstanding, 2);
    assert_int_equal(s.total.inuse_bytes, 2048);
    assert_int_equal(s.cls[4].peak_bytes, 2048);
    assert_true(s.hit_ratio > 0.33 && s.hit_ratio < 0.34);
    tp_buf_put(bp, b);
    tp_buf_put(bp, c);
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.retained_bytes, 2048);
    assert_int_equal(s.total.inuse_bytes, 0);
    assert_int_equal(s.total.puts, 3);
    tp_bufpool_destroy(bp);
}

static void retained_cap_case(bool cache) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = 3 * 4096;
    o.thread_cache = cache;
    tp_bufpool *bp = mk(&o);
    tp_buf *b[8];
    for (int i = 0; i < 8; i++)
        assert_non_null(b[i] = tp_buf_get(bp, 4096));
    for (int i = 0; i < 8; i++) {
        tp_buf_put(bp, b[i]);
        struct tp_bufpool_stats s;
        tp_bufpool_stats(bp, &s);
        assert_true(s.total.retained_bytes <= o.max_retained);
        assert_true(s.reserved_bytes <= o.max_retained);
    }
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.retained, 3);
    assert_int_equal(s.total.dropped, 5);
    assert_int_equal(s.total.puts, 8);
    assert_true(s.peak_retained <= o.max_retained);
    tp_bufpool_destroy(bp);

    /* max_retained 0: nothing is ever kept. */
    o.max_retained = 0;
    bp = mk(&o);
    tp_buf_put(bp, tp_buf_get(bp, 100));
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.retained, 0);
    assert_int_equal(s.total.dropped, 1);
    tp_bufpool_destroy(bp);
}

static void test_retained_cap(void **st) {
    (void)st;
    retained_cap_case(false);
    retained_cap_case(true);
}

static void test_inuse_cap_fail(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 8192;
    tp_bufpool *bp = mk(&o);
    tp_buf *a = tp_buf_get(bp, 4096), *b = tp_buf_get(bp, 4000);
    assert_non_null(a);
    assert_non_null(b);
    errno = 0;
    assert_null(tp_buf_get(bp, 1));
    assert_int_equal(errno, EAGAIN);
    errno = 0;
    assert_null(tp_buf_get(bp, 16384));
    assert_int_equal(errno, E2BIG);
    tp_buf *c = NULL;
    assert_int_equal(tp_buf_get_timeout(bp, 64, 0, &c), -EAGAIN);
    assert_null(c);
    assert_int_equal(tp_buf_get_timeout(bp, 64, 20 * TP_NSEC_PER_MSEC, &c), -ETIMEDOUT);
    tp_buf_put(bp, a);
    c = tp_buf_get(bp, 4096);
    assert_non_null(c);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_true(s.cap_failures >= 4);
    assert_int_equal(s.total.inuse_bytes, 8192);
    tp_buf_put(bp, b);
    tp_buf_put(bp, c);
    tp_bufpool_destroy(bp);
}

struct putter {
    tp_bufpool *bp;
    tp_buf *b;
    uint64_t after;
};

static uint64_t waits(tp_bufpool *bp) {
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    return s.waits;
}

/* Put p->b once the main thread is waiting (stats.waits reached p->after),
 * so the test does not depend on who is scheduled first. */
static void *put_later(void *arg) {
    struct putter *p = arg;
    TP_TEST_WAIT_FOR(waits(p->bp) >= p->after, 30000);
    tp_buf_put(p->bp, p->b);
    return NULL;
}

static void test_inuse_cap_wait(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 65536;
    o.block_on_cap = true;
    tp_bufpool *bp = mk(&o);
    struct putter p = {bp, tp_buf_get(bp, 65536), 1};
    assert_non_null(p.b);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, put_later, &p), 0);
    tp_buf *b = tp_buf_get(bp, 100); /* blocks until the put */
    assert_non_null(b);
    pthread_join(t, NULL);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.waits, 1);
    tp_buf *c = NULL;
    p.b = b;
    p.after = 2;
    assert_int_equal(pthread_create(&t, NULL, put_later, &p), 0);
    assert_int_equal(tp_buf_get_timeout(bp, 65536, 30 * TP_NSEC_PER_SEC, &c), 0);
    assert_non_null(c);
    pthread_join(t, NULL);
    tp_buf_put(bp, c);
    tp_bufpool_destroy(bp);
}

static void reset_hook(tp_buf *b, void *arg) {
    (*(int *)arg)++;
    b->data[0] = 0x5a;
}

static void test_reset_zero_align(void **st) {
    (void)st;
    int calls = 0;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.zero_on_get = true;
    o.page_aligned = true;
    o.reset = reset_hook;
    o.reset_arg = &calls;
    tp_bufpool *bp = mk(&o);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t sizes[] = {64, 1000, 4096, 65536, 1 << 20};
    for (size_t i = 0; i < 5; i++) {
        tp_buf *b = tp_buf_get(bp, sizes[i]);
        assert_non_null(b);
        assert_int_equal((uintptr_t)b->data % page, 0);
        for (size_t k = 0; k < b->cap; k++)
            assert_int_equal(b->data[k], 0);
        memset(b->data, 0xff, b->cap);
        b->len = b->cap;
        tp_buf_put(bp, b);
        int before = calls;
        b = tp_buf_get(bp, sizes[i]);
        assert_int_equal(calls, before + 1); /* hook ran on reuse */
        assert_int_equal(b->len, 0);
        assert_int_equal(b->data[0], 0x5a);
        for (size_t k = 1; k < b->cap; k++)
            assert_int_equal(b->data[k], 0);
        tp_buf_put(bp, b);
    }
    tp_bufpool_destroy(bp);
}

static void test_huge_pages(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.huge_pages = true;
    tp_bufpool *bp = mk(&o);
    size_t sizes[] = {2u << 20, 4u << 20, TP_BUF_MAX_SIZE + 12345};
    for (int i = 0; i < 3; i++) {
        tp_buf *b = tp_buf_get(bp, sizes[i]);
        assert_non_null(b);
        assert_int_equal((uintptr_t)b->data % (2u << 20), 0);
        memset(b->data, 7, b->cap); /* exactly cap bytes are mapped */
        tp_buf_put(bp, b);
    }
    assert_int_equal(tp_bufpool_prewarm(bp, 2u << 20, 1, true), 0);
    tp_buf *s = tp_buf_get(bp, 100); /* small classes are unaffected */
    assert_non_null(s);
    tp_buf_put(bp, s);
    tp_bufpool_destroy(bp);
}

static void test_passthrough(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.passthrough = true;
    tp_bufpool *bp = mk(&o);
    for (int i = 0; i < 10; i++) {
        tp_buf *b = tp_buf_get(bp, 5000);
        assert_non_null(b);
        assert_int_equal(b->cap, 8192);
        b->data[b->cap - 1] = 1;
        tp_buf_put(bp, b);
    }
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.misses, 10);
    assert_int_equal(s.total.hits, 0);
    assert_int_equal(s.total.dropped, 10);
    assert_int_equal(s.total.retained, 0);
    assert_int_equal(tp_bufpool_prewarm(bp, 4096, 1, false), -EINVAL);
    tp_bufpool_destroy(bp);
}

static void test_bad_input(void **st) {
    (void)st;
    assert_int_equal(tp_bufpool_create(NULL, NULL), -EINVAL);
    errno = 0;
    assert_null(tp_buf_get(NULL, 10));
    assert_int_equal(errno, EINVAL);
    tp_buf *b = (tp_buf *)1;
    assert_int_equal(tp_buf_get_timeout(NULL, 1, 0, &b), -EINVAL);
    tp_bufpool *bp = mk(NULL);
    assert_int_equal(tp_buf_get_timeout(bp, 1, 0, NULL), -EINVAL);
    tp_buf_put(bp, NULL);   /* ignored */
    tp_buf_put(NULL, NULL); /* ignored */
    tp_bufpool_stats(NULL, NULL);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(NULL, &s);
    assert_int_equal(s.total.gets, 0);
    assert_int_equal(tp_bufpool_tick(NULL), 0);
    assert_int_equal(tp_bufpool_prewarm(NULL, 1, 1, false), -EINVAL);
    assert_int_equal(tp_bufpool_prewarm(bp, TP_BUF_MAX_SIZE + 1, 1, false), -EINVAL);
    /* Absurd sizes fail with ENOMEM, no crash. */
    errno = 0;
    assert_null(tp_buf_get(bp, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(tp_buf_get(bp, SIZE_MAX / 2));
    assert_int_equal(errno, ENOMEM);
    tp_bufpool_destroy(bp);
    tp_bufpool_destroy(NULL);
    tp_buf_free(NULL);
}

static void test_destroy_outstanding(void **st) {
    (void)st;
    tp_bufpool *bp = mk(NULL);
    tp_buf *a = tp_buf_get(bp, 100), *b = tp_buf_get(bp, 200000),
           *h = tp_buf_get(bp, TP_BUF_MAX_SIZE + 5);
    tp_buf_put(bp, tp_buf_get(bp, 300));
    assert_int_equal(tp_bufpool_outstanding(bp), 3);
    tp_bufpool_destroy(bp);
    /* Still valid after destroy; freed without the pool. */
    memset(a->data, 1, a->cap);
    memset(b->data, 1, b->cap);
    tp_buf_free(a);
    tp_buf_free(b);
    tp_buf_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),        cmocka_unit_test(test_reuse_and_stats),
        cmocka_unit_test(test_retained_cap),   cmocka_unit_test(test_inuse_cap_fail),
        cmocka_unit_test(test_inuse_cap_wait), cmocka_unit_test(test_reset_zero_align),
        cmocka_unit_test(test_huge_pages),     cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_bad_input),      cmocka_unit_test(test_destroy_outstanding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
