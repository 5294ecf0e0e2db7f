/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Per-thread caches: a thread that exits hands its cache back; a pool
 * destroyed while a thread that used it still runs is safe; one thread
 * using more pools than it has cache slots; buffers moving between threads
 * keep the cap accounting (retained <= reserved <= max_retained). */
#include <pthread.h>

#include "tp_test.h"
#include "tripool/buf.h"

static void *fill_cache(void *arg) {
    tp_bufpool *bp = arg;
    tp_buf *b[10];
    for (int i = 0; i < 10; i++)
        b[i] = tp_buf_get(bp, 4096);
    for (int i = 0; i < 10; i++)
        tp_buf_put(bp, b[i]);
    return NULL;
}

static void test_exit_hands_back(void **st) {
    (void)st;
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fill_cache, bp), 0);
    pthread_join(t, NULL);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.retained, 10);
    assert_int_equal(s.total.misses, 10); /* counters of the dead thread survive */
    assert_int_equal(s.total.puts, 10);
    /* The exited thread's buffers are in the depot: this thread hits. */
    tp_buf *b[10];
    for (int i = 0; i < 10; i++)
        assert_non_null(b[i] = tp_buf_get(bp, 4096));
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.hits, 10);
    for (int i = 0; i < 10; i++)
        tp_buf_put(bp, b[i]);
    tp_bufpool_destroy(bp);
}

struct late {
    tp_bufpool *bp;
    int phase;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void step(struct late *l, int set, int wait) {
    pthread_mutex_lock(&l->mu);
    if (set) l->phase = set;
    pthread_cond_broadcast(&l->cv);
    while (l->phase < wait)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void *outlive(void *arg) {
    struct late *l = arg;
    fill_cache(l->bp); /* this thread's cache for pool A holds buffers */
    step(l, 1, 2);     /* main destroys A meanwhile */
    tp_bufpool *b2 = NULL;
    if (tp_bufpool_create(&b2, NULL) != 0) return (void *)1;
    fill_cache(b2); /* reuses the stale slot */
    tp_bufpool_destroy(b2);
    return NULL;
}

static void test_pool_destroyed_first(void **st) {
    (void)st;
    struct late l = {.phase = 0};
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    assert_int_equal(tp_bufpool_create(&l.bp, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, outlive, &l), 0);
    step(&l, 0, 1);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(l.bp, &s);
    assert_int_equal(s.total.retained, 10);
    tp_bufpool_destroy(l.bp); /* frees the buffers in the other thread's cache */
    step(&l, 2, 2);
    void *rv = (void *)2;
    pthread_join(t, &rv);
    assert_null(rv);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
}

static void test_many_pools(void **st) {
    (void)st;
    enum { N = 12 }; /* more than a thread's cache slots */
    tp_bufpool *p[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(tp_bufpool_create(&p[i], NULL), 0);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++) {
            tp_buf *b = tp_buf_get(p[i], (size_t)64 << i);
            assert_non_null(b);
            tp_buf_put(p[i], b);
        }
    for (int i = 0; i < N; i++) {
        struct tp_bufpool_stats s;
        tp_bufpool_stats(p[i], &s);
        assert_int_equal(s.total.gets, 3);
        assert_int_equal(s.total.hits, 2);
        assert_int_equal(s.cls[i].retained, 1);
        assert_int_equal(s.total.retained, 1);
    }
    for (int i = 0; i < N; i++)
        tp_bufpool_destroy(p[i]);
    /* A pool created after others were destroyed gets a working cache. */
    tp_bufpool *q = NULL;
    assert_int_equal(tp_bufpool_create(&q, NULL), 0);
    fill_cache(q);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(q, &s);
    assert_int_equal(s.total.retained, 10);
    tp_bufpool_destroy(q);
}

/* Producer gets, consumer puts: the consumer's cache fills and flushes to
 * the depot, the producer refills from it. */
struct pc {
    tp_bufpool *bp;
    tp_buf *slot[4];
    int head, tail; /* mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    bool bad;
    size_t max_retained;
};

static void *consumer(void *arg) {
    struct pc *q = arg;
    for (int i = 0; i < q->n; i++) {
        pthread_mutex_lock(&q->mu);
        while (q->head == q->tail)
            pthread_cond_wait(&q->cv, &q->mu);
        tp_buf *b = q->slot[q->tail++ % 4];
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        if (b->len != 8 || memcmp(b->data, &i, sizeof i) != 0) q->bad = true;
        tp_buf_put(q->bp, b);
    }
    return NULL;
}

static void test_pipeline_accounting(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = 256 * 1024;
    struct pc q = {.n = (int)tp_test_scale(20000), .max_retained = o.max_retained};
    assert_int_equal(tp_bufpool_create(&q.bp, &o), 0);
    pthread_mutex_init(&q.mu, NULL);
    pthread_cond_init(&q.cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, consumer, &q), 0);
    for (int i = 0; i < q.n; i++) {
        tp_buf *b = tp_buf_get(q.bp, (size_t)1024 << (i % 6));
        assert_non_null(b);
        memcpy(b->data, &i, sizeof i);
        b->len = 8;
        pthread_mutex_lock(&q.mu);
        while (q.head - q.tail == 4)
            pthread_cond_wait(&q.cv, &q.mu);
        q.slot[q.head++ % 4] = b;
        pthread_cond_broadcast(&q.cv);
        pthread_mutex_unlock(&q.mu);
        if (i % 512 == 0) {
            struct tp_bufpool_stats s;
            tp_bufpool_stats(q.bp, &s);
            assert_true(s.reserved_bytes <= o.max_retained);
            assert_true(s.total.retained_bytes <= o.max_retained);
        }
    }
    pthread_join(t, NULL);
    assert_false(q.bad);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(q.bp, &s);
    assert_int_equal(s.total.outstanding, 0);
    assert_int_equal(s.total.gets, (uint64_t)q.n);
    assert_int_equal(s.total.puts, (uint64_t)q.n);
    assert_true(s.peak_retained <= o.max_retained);
    print_message("pipeline: %d buffers, hit ratio %.3f, dropped %llu\n", q.n, s.hit_ratio,
                  (unsigned long long)s.total.dropped);
    assert_true(s.hit_ratio > 0.9); /* buffers really cycle through the depot */
    tp_bufpool_destroy(q.bp);
    pthread_mutex_destroy(&q.mu);
    pthread_cond_destroy(&q.cv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_hands_back),
        cmocka_unit_test(test_pool_destroyed_first),
        cmocka_unit_test(test_many_pools),
        cmocka_unit_test(test_pipeline_accounting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
