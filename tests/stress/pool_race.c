/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 120
 * Stress: usage  stress_pool_race [THREADS [SCALE [ITER]]]
 * 1. Close racing THREADS submitters: every accepted task runs exactly once,
 *    every refused one never; counters agree; no thread is left behind.
 * 2. Wake-or-spawn never strands a task: single tasks and bursts submitted
 *    to a pool whose workers keep parking and expiring (1 ms idle timeout)
 *    must all run.
 * 3. Futures under contexts cancelled mid-stream and groups with a failing
 *    task, from THREADS threads: every future is "ran once, 0" or "never
 *    ran, -ECANCELED"; group waits report the failure; counters add up.
 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static unsigned THREADS = 8, SCALE = 20000, ITER = 20;

typedef struct sub_arg {
    tp_pool *p;
    atomic_uchar *flags; /* this thread's slice */
    unsigned char *accepted;
    unsigned n;
    unsigned seed;
    atomic_int *go;
} sub_arg;

static int mark(void *arg) {
    atomic_uchar *f = arg;
    atomic_fetch_add(f, 1);
    return 0;
}

static void *submitter(void *a) {
    sub_arg *s = a;
    while (!atomic_load(s->go)) {
    }
    for (unsigned i = 0; i < s->n; i++) {
        int rc;
        unsigned r = rand_r(&s->seed);
        if (r % 4 == 0) {
            tp_task_opts o;
            tp_task_opts_init(&o);
            o.fn = mark;
            o.arg = &s->flags[i];
            o.label = "stress";
            rc = tp_submit_ex(s->p, &o);
        } else if (r % 4 == 1) {
            rc = tp_submit_timeout(s->p, mark, &s->flags[i], TP_NSEC_PER_MSEC);
        } else {
            rc = tp_submit(s->p, mark, &s->flags[i]);
        }
        if (rc == 0) {
            s->accepted[i] = 1;
        } else if (rc == -ESHUTDOWN) {
            break;
        } else if (rc != -ETIMEDOUT && rc != -EAGAIN) {
            fprintf(stderr, "unexpected submit error %d\n", rc);
            abort();
        }
    }
    return NULL;
}

static void close_race(unsigned iter) {
    unsigned n = SCALE;
    unsigned total = n * THREADS;
    atomic_uchar *flags = calloc(total, sizeof *flags);
    unsigned char *accepted = calloc(total, 1);
    assert_non_null(flags);
    assert_non_null(accepted);
    int before = tp__thread_count();

    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 1 + iter % 4;
    o.queue_cap = (iter % 3 == 0) ? 1 : (iter % 3 == 1) ? 7 : 1024;
    o.idle_timeout_ns = TP_NSEC_PER_MSEC;
    o.max_blocked = iter % 2 ? 3 : 0;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);

    atomic_int go = 0;
    pthread_t *th = calloc(THREADS, sizeof *th);
    sub_arg *args = calloc(THREADS, sizeof *args);
    for (unsigned t = 0; t < THREADS; t++) {
        args[t] =
            (sub_arg){p, flags + (size_t)t * n, accepted + (size_t)t * n, n, iter * 131 + t, &go};
        assert_int_equal(pthread_create(&th[t], NULL, submitter, &args[t]), 0);
    }
    atomic_store(&go, 1);
    /* Close part-way through (or after everything, in some rounds). */
    tp_test_sleep_ms(iter % 5);
    int rc;
    while ((rc = tp_pool_close(p, 10 * TP_NSEC_PER_MSEC)) == -ETIMEDOUT) {
    }
    assert_int_equal(rc, 0);
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    uint64_t acc = 0;
    for (unsigned i = 0; i < total; i++) {
        unsigned v = atomic_load(&flags[i]);
        if (accepted[i]) {
            acc++;
            if (v != 1) {
                fprintf(stderr, "iter %u task %u accepted, ran %u times\n", iter, i, v);
                fail();
            }
        } else if (v != 0) {
            fprintf(stderr, "iter %u task %u refused but ran %u times\n", iter, i, v);
            fail();
        }
    }
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.submitted, acc);
    assert_int_equal(s.completed, acc);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.workers_running, 0);
    assert_true(s.peak_workers <= o.max_workers);
    assert_true(s.peak_queued <= o.queue_cap);
    tp_pool_destroy(p);
    assert_int_equal(tp__thread_count(), before);
    free(th);
    free(args);
    free(flags);
    free(accepted);
}

static void *nothing(void *a) {
    return a;
}

static void test_close_race(void **state) {
    (void)state;
    /* Sanitizer runtimes start a helper thread with the first pthread:
     * start one now so thread counts below only see the pool's threads. */
    pthread_t warm;
    assert_int_equal(pthread_create(&warm, NULL, nothing, NULL), 0);
    pthread_join(warm, NULL);
    for (unsigned i = 0; i < ITER; i++)
        close_race(i);
}

/* ---- no stranded task ---------------------------------------------------- */
static atomic_uint strand_done;
static int strand_task(void *arg) {
    (void)arg;
    atomic_fetch_add(&strand_done, 1);
    return 0;
}

typedef struct burst_arg {
    tp_pool *p;
    unsigned rounds;
    unsigned seed;
} burst_arg;

static void *burster(void *a) {
    burst_arg *b = a;
    for (unsigned r = 0; r < b->rounds; r++) {
        unsigned k = 1 + rand_r(&b->seed) % 8;
        for (unsigned i = 0; i < k; i++)
            if (tp_submit(b->p, strand_task, NULL) != 0) abort();
        /* Pause about as long as the idle timeout so workers park/expire. */
        if (rand_r(&b->seed) % 2) tp_test_sleep_ms(rand_r(&b->seed) % 3);
    }
    return NULL;
}

static void test_no_strand(void **state) {
    (void)state;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 2;
    o.queue_cap = 16;
    o.idle_timeout_ns = TP_NSEC_PER_MSEC;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    unsigned singles = tp_test_scale(SCALE / 20 + 50);
    /* One task at a time into a pool that keeps going idle: each must run
     * without any further submit to nudge it. */
    atomic_store(&strand_done, 0);
    for (unsigned i = 0; i < singles; i++) {
        assert_int_equal(tp_submit(p, strand_task, NULL), 0);
        TP_TEST_WAIT_FOR(atomic_load(&strand_done) == i + 1, 10000);
        assert_int_equal(atomic_load(&strand_done), i + 1);
        if (i % 3 == 0) tp_test_sleep_ms(i % 4); /* around the idle timeout */
    }
    /* Bursts from THREADS submitters; then every task must finish. */
    atomic_store(&strand_done, 0);
    unsigned rounds = tp_test_scale(SCALE / 40 + 20);
    pthread_t *th = calloc(THREADS, sizeof *th);
    burst_arg *args = calloc(THREADS, sizeof *args);
    for (unsigned t = 0; t < THREADS; t++) {
        args[t] = (burst_arg){p, rounds, 7 + t};
        assert_int_equal(pthread_create(&th[t], NULL, burster, &args[t]), 0);
    }
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    uint64_t want = s.submitted - singles;
    TP_TEST_WAIT_FOR(atomic_load(&strand_done) == want, 10000);
    assert_int_equal(atomic_load(&strand_done), want);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_destroy(p);
    free(th);
    free(args);
}

/* ---- contexts, futures and groups racing cancellation -------------------- */
static tp_pool *ctx_pool;
static unsigned CTX_K;

static int ctx_mark(void *arg) {
    atomic_uchar *f = arg;
    atomic_fetch_add(f, 1);
    return 0;
}

static int ctx_fail(void *arg) {
    atomic_uchar *f = arg;
    atomic_fetch_add(f, 1);
    return -EIO;
}

/* Worker-thread check: cmocka asserts are for the main thread only. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void *ctx_racer(void *a) {
    unsigned seed = (unsigned)(uintptr_t)a;
    unsigned k = CTX_K;
    atomic_uchar *flags = calloc(k, sizeof *flags);
    tp_future **fs = calloc(k, sizeof *fs);
    CHECK(!(!flags || !fs));
    /* Futures under a context cancelled part-way: each either ran once and
     * reports 0, or never ran and reports -ECANCELED. */
    tp_ctx *c = NULL;
    CHECK(!(tp_ctx_with_cancel(NULL, &c) != 0));
    unsigned cancel_at = rand_r(&seed) % k;
    unsigned n = 0;
    for (unsigned i = 0; i < k; i++) {
        if (i == cancel_at) tp_ctx_cancel(c);
        int rc = tp_submit_future(ctx_pool, c, ctx_mark, &flags[i], &fs[i]);
        if (rc == -ECANCELED) {
            CHECK(!(fs[i] != NULL));
            continue;
        }
        CHECK(!(rc != 0));
        n++;
    }
    tp_ctx_release(c);
    for (unsigned i = 0; i < k; i++) {
        if (!fs[i]) {
            CHECK(!(atomic_load(&flags[i]) != 0));
            continue;
        }
        int r = -1;
        int rc = tp_future_wait(fs[i], TP_FOREVER, &r);
        unsigned v = atomic_load(&flags[i]);
        if (!((rc == 0 && r == 0 && v == 1) || (rc == -ECANCELED && v == 0)))
            fprintf(stderr, "future %u: rc %d r %d ran %u\n", i, rc, r, v);
        CHECK((rc == 0 && r == 0 && v == 1) || (rc == -ECANCELED && v == 0));
        tp_future_release(fs[i]);
    }
    (void)n;
    /* A group with one failing task: wait reports that failure; every task
     * ran at most once. */
    memset(flags, 0, k);
    tp_group *g = NULL;
    CHECK(!(tp_group_create(ctx_pool, NULL, 1 + rand_r(&seed) % 4, &g) != 0));
    unsigned bad = rand_r(&seed) % k;
    for (unsigned i = 0; i < k; i++) {
        /* Once the failure cancelled the group's context, submits are
         * refused with its error. */
        int rc = tp_group_submit(g, i == bad ? ctx_fail : ctx_mark, &flags[i]);
        CHECK(rc == 0 || (rc == -ECANCELED && i > bad));
    }
    CHECK(!(tp_group_wait(g, TP_FOREVER) != -EIO));
    for (unsigned i = 0; i < k; i++)
        CHECK(!(atomic_load(&flags[i]) > 1));
    CHECK(!(atomic_load(&flags[bad]) != 1));
    tp_group_destroy(g);
    free(flags);
    free(fs);
    return NULL;
}

static void test_ctx_race(void **state) {
    (void)state;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 2;
    o.queue_cap = 32;
    assert_int_equal(tp_pool_create(&ctx_pool, &o), 0);
    CTX_K = SCALE / 100 + 20;
    pthread_t *th = calloc(THREADS, sizeof *th);
    for (unsigned it = 0; it < ITER; it++) {
        for (unsigned t = 0; t < THREADS; t++)
            assert_int_equal(
                pthread_create(&th[t], NULL, ctx_racer, (void *)(uintptr_t)(it * 97 + t + 1)), 0);
        for (unsigned t = 0; t < THREADS; t++)
            pthread_join(th[t], NULL);
    }
    assert_int_equal(tp_pool_close(ctx_pool, TP_FOREVER), 0);
    struct tp_pool_stats s;
    tp_pool_stats(ctx_pool, &s);
    assert_int_equal(s.completed + s.canceled, s.submitted);
    assert_true(s.failed >= ITER * THREADS);
    tp_pool_destroy(ctx_pool);
    free(th);
}

int main(int argc, char **argv) {
    if (argc > 1) THREADS = (unsigned)atoi(argv[1]);
    if (argc > 2) SCALE = (unsigned)atoi(argv[2]);
    if (argc > 3) ITER = (unsigned)atoi(argv[3]);
    if (THREADS == 0 || THREADS > 1024 || SCALE == 0 || ITER == 0) {
        fprintf(stderr, "usage: %s [THREADS [SCALE [ITER]]]\n", argv[0]);
        return 2;
    }
    SCALE = tp_test_scale(SCALE);
    if (strcmp(tp_test_sanitizer(), "none") != 0 && ITER > 8) ITER = 8;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_race),
        cmocka_unit_test(test_no_strand),
        cmocka_unit_test(test_ctx_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
