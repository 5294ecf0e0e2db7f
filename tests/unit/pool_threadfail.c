/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 120
 * TP_TEST_WRAP: pthread_create
 * pool.h: "Close stops intake, runs every accepted task and joins every
 * thread the pool started. No accepted task is lost or run twice, also when
 * other threads submit while close runs" -- when no thread can be started.
 * pthread_create is wrapped (ld --wrap) to fail with EAGAIN on demand.
 * Wrong implementations this catches: close draining the queue inline until
 * it *looks* empty and returning while a submitter sits between claiming a
 * slot and publishing it (that task then runs after close returned, or
 * never); close returning while a submitter still runs a task inline; and
 * that late submitter starting a worker after close returned. The TP_CHAOS
 * build widens the claim-to-publish window ("pool.publish").
 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>

int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

static atomic_int fail_creates; /* 1: the pool's pthread_create fails */
static atomic_int after_close;  /* 1: close has returned */
static atomic_int created_late; /* threads started once after_close was set */

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg) {
    if (atomic_load(&fail_creates)) return EAGAIN;
    int rc = __real_pthread_create(t, a, fn, arg);
    if (rc == 0 && atomic_load(&after_close)) atomic_fetch_add(&created_late, 1);
    return rc;
}

static atomic_int ran;

static int count_task(void *arg) {
    atomic_int *once = arg;
    atomic_fetch_add(once, 1);
    atomic_fetch_add(&ran, 1);
    return 0;
}

typedef struct sub {
    tp_pool *p;
    atomic_int *once; /* per task: how often it ran */
    unsigned n;
    unsigned accepted;
    unsigned char *ok; /* per task: submit returned 0 */
} sub;

static void *submitter(void *a) {
    sub *s = a;
    for (unsigned i = 0; i < s->n; i++) {
        int rc = tp_submit(s->p, count_task, &s->once[i]);
        if (rc == 0) {
            s->ok[i] = 1;
            s->accepted++;
        } else {
            assert_int_equal(rc, -ESHUTDOWN);
        }
    }
    return NULL;
}

static void test_close_without_threads(void **state) {
    (void)state;
    unsigned rounds = tp_test_scale(200);
    enum { NSUB = 2, N = 400 };
    for (unsigned r = 0; r < rounds; r++) {
        atomic_store(&fail_creates, 1);
        atomic_store(&after_close, 0);
        atomic_store(&ran, 0);
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 2;
        o.queue_cap = 64;
        tp_pool *p = NULL;
        assert_int_equal(tp_pool_create(&p, &o), 0);
        sub s[NSUB];
        pthread_t th[NSUB];
        for (int i = 0; i < NSUB; i++) {
            s[i] = (sub){.p = p, .n = N};
            s[i].once = calloc(N, sizeof *s[i].once);
            s[i].ok = calloc(N, 1);
            assert_int_equal(__real_pthread_create(&th[i], NULL, submitter, &s[i]), 0);
        }
        /* Close at a varying moment of the submitting. */
        struct timespec ts = {0, (long)(r % 20) * 10000L};
        nanosleep(&ts, NULL);
        assert_int_equal(tp_pool_close(p, 30 * TP_NSEC_PER_SEC), 0);
        int ran_at_close = atomic_load(&ran);
        /* From here on threads can be created again: none may be. */
        atomic_store(&after_close, 1);
        atomic_store(&fail_creates, 0);
        unsigned accepted = 0;
        for (int i = 0; i < NSUB; i++) {
            pthread_join(th[i], NULL);
            accepted += s[i].accepted;
            for (unsigned k = 0; k < N; k++)
                assert_int_equal(atomic_load(&s[i].once[k]), s[i].ok[k]);
        }
        /* Every accepted task ran exactly once, and before close returned. */
        assert_int_equal((unsigned)atomic_load(&ran), accepted);
        assert_int_equal((unsigned)ran_at_close, accepted);
        assert_int_equal(atomic_load(&created_late), 0);
        struct tp_pool_stats st;
        tp_pool_stats(p, &st);
        assert_int_equal(st.submitted, accepted);
        assert_int_equal(st.completed, accepted);
        assert_int_equal(st.workers_running, 0);
        tp_pool_destroy(p);
        for (int i = 0; i < NSUB; i++) {
            free(s[i].once);
            free(s[i].ok);
        }
    }
}

/* "Returns ... -EAGAIN (could not start threads)" for tp_pool_create with
 * prealloc, and nothing leaks or stays running. */
static void test_create_fails_cleanly(void **state) {
    (void)state;
    atomic_store(&after_close, 0);
    atomic_store(&fail_creates, 1);
    int before = tp__thread_count();
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 4;
    o.prealloc = true;
    tp_pool *p = (tp_pool *)0x1;
    assert_int_equal(tp_pool_create(&p, &o), -EAGAIN);
    assert_null(p);
    assert_int_equal(tp__thread_count(), before);
    atomic_store(&fail_creates, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_without_threads),
        cmocka_unit_test(test_create_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
