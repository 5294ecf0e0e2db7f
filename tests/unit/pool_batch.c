/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Batched dequeue: a worker that takes several tasks at once must never
 * leave them stranded behind a blocked task while another worker is free
 * (they are stolen), stats count them as queued, and opts.fifo keeps the
 * strict start order that rendezvous-style tasks rely on. */
#include "tp_gate.h"

#include <pthread.h>
#include <stdatomic.h>

#define WAIT_MS 10000 /* generous: a deadlock shows up as a timeout */

static atomic_int done;
static atomic_int blocker_saw;

static int counter(void *arg) {
    (void)arg;
    atomic_fetch_add(&done, 1);
    return 0;
}

/* Waits until *(int *)arg counters have run, or WAIT_MS. */
static int blocker(void *arg) {
    int want = *(int *)arg;
    for (int i = 0; i < WAIT_MS && atomic_load(&done) < want; i++)
        tp_test_sleep_ms(1);
    atomic_store(&blocker_saw, atomic_load(&done));
    return 0;
}

static tp_pool *make(unsigned workers, size_t cap, bool fifo) {
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = workers;
    o.queue_cap = cap;
    o.fifo = fifo;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    return p;
}

/* A blocker waits for every counter, including those queued behind it.
 * With a deep queue the worker that takes it also takes a batch of the
 * counters behind it; the other worker must steal them (without stealing
 * this test times out: checked by disabling held_steal). */
static void test_held_tasks_are_stolen(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        reset();
        atomic_store(&done, 0);
        atomic_store(&blocker_saw, -1);
        tp_pool *p = make(2, 256, false);
        assert_int_equal(tp_submit(p, gate_task, NULL), 0);
        assert_int_equal(tp_submit(p, gate_task, NULL), 0);
        TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 2, WAIT_MS);
        /* The blocker at ring position 8: workers re-read the queue depth
         * (and size batches) at positions that are multiples of 8. */
        int n = 120;
        for (int i = 0; i < 6; i++)
            assert_int_equal(tp_submit(p, counter, NULL), 0);
        assert_int_equal(tp_submit(p, blocker, &n), 0);
        for (int i = 6; i < n; i++)
            assert_int_equal(tp_submit(p, counter, NULL), 0);
        struct tp_pool_stats s;
        tp_pool_stats(p, &s);
        assert_int_equal(s.queued, (size_t)n + 1);
        atomic_store(&gate_open, 1);
        assert_int_equal(tp_pool_wait_idle(p, 4 * WAIT_MS * TP_NSEC_PER_MSEC), 0);
        assert_int_equal(atomic_load(&blocker_saw), n); /* not a timeout */
        tp_pool_stats(p, &s);
        assert_int_equal(s.completed, (uint64_t)n + 3);
        assert_int_equal(s.queued, 0);
        assert_true(s.peak_queued >= 1 && s.peak_queued <= (size_t)n + 3);
        tp_pool_destroy(p);
    }
}

/* Pairs of tasks that each wait for their partner to start: with two
 * workers and strict FIFO every pair runs side by side. */
struct pair {
    atomic_int started;
    atomic_int timed_out;
};

static int partner(void *arg) {
    struct pair *pr = arg;
    atomic_fetch_add(&pr->started, 1);
    int i = 0;
    while (atomic_load(&pr->started) < 2 && i++ < WAIT_MS)
        tp_test_sleep_ms(1);
    if (atomic_load(&pr->started) < 2) atomic_store(&pr->timed_out, 1);
    return 0;
}

static void test_fifo_rendezvous(void **state) {
    (void)state;
    enum { PAIRS = 32 };
    reset();
    static struct pair pairs[PAIRS];
    tp_pool *p = make(2, 256, true);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 2, WAIT_MS);
    for (int i = 0; i < PAIRS; i++) {
        atomic_store(&pairs[i].started, 0);
        atomic_store(&pairs[i].timed_out, 0);
        assert_int_equal(tp_submit(p, partner, &pairs[i]), 0);
        assert_int_equal(tp_submit(p, partner, &pairs[i]), 0);
    }
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    for (int i = 0; i < PAIRS; i++) {
        assert_int_equal(atomic_load(&pairs[i].started), 2);
        assert_int_equal(atomic_load(&pairs[i].timed_out), 0);
    }
    tp_pool_destroy(p);
}

/* Many workers, deep queue, close racing the drain: every task runs once
 * whether it was taken from the ring, from its own batch or stolen. */
static atomic_int hits[20000];

static int mark(void *arg) {
    atomic_fetch_add(&hits[(intptr_t)arg], 1);
    return 0;
}

static void test_batches_exactly_once(void **state) {
    (void)state;
    int n = (int)(sizeof hits / sizeof hits[0]);
    for (unsigned workers = 1; workers <= 8; workers *= 2) {
        for (int i = 0; i < n; i++)
            atomic_store(&hits[i], 0);
        tp_pool *p = make(workers, 4096, false);
        for (intptr_t i = 0; i < n; i++)
            assert_int_equal(tp_submit(p, mark, (void *)i), 0);
        assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
        struct tp_pool_stats s;
        tp_pool_stats(p, &s);
        assert_int_equal(s.completed, (uint64_t)n);
        assert_int_equal(s.queued, 0);
        for (int i = 0; i < n; i++)
            assert_int_equal(atomic_load(&hits[i]), 1);
        tp_pool_destroy(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_tasks_are_stolen),
        cmocka_unit_test(test_fifo_rendezvous),
        cmocka_unit_test(test_batches_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
