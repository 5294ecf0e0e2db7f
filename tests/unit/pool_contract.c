/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 90
 * pool.h, sentence by sentence. Each test quotes the promise it checks and
 * is built to fail against a plausible wrong implementation (named in its
 * comment). Index of pool.h promises and where they are checked:
 *
 *   "Workers start lazily up to max_workers"          pool_core test_threads_joined
 *   "idle workers above min_workers exit after idle_timeout_ns"
 *                                                     pool_core test_idle_expiry
 *   "The queue holds at most queue_cap tasks"         test_queue_cap_is_exact (here)
 *   "when it is full a submit blocks" / "Blocks while the queue is full"
 *                                                     test_blocked_submitter_wakes_when_a_slot_frees,
 *                                                     test_freed_slot_goes_to_the_blocked_submitter,
 *                                                     test_blocked_submitters_are_served_first
 * (here) "fails at once (-EAGAIN, nonblocking mode)", "A timeout of 0 does not wait: -EAGAIN at
 * once", "-ETIMEDOUT"              pool_core test_full_modes "At most max_blocked submitters may
 * wait at a time; more get -EAGAIN" pool_core test_max_blocked "No accepted task is lost or run
 * twice, also when other threads submit while close runs" stress_pool_race, unit_pool_threadfail
 *   "After close returns 0 the pool has no thread left" (DESIGN; "joins
 *    every thread the pool started")                  pool_core test_threads_joined,
 *                                                     unit_pool_threadfail
 *   "a task returning < 0 has failed; it is counted and passed to
 *    opts.on_error"                                   pool_core test_on_error
 *   "A task that submits to its own pool while the queue is full runs the
 *    new task inline"                                 pool_core test_nested_full
 *   "if c is done before the task starts, the task is not run (counted in
 *    stats.canceled). A context already done at submit is refused with its
 *    error (counted in stats.rejected)"               test_ctx_done_counts (here)
 *   "Calling close on a closed, drained pool returns 0. Must not be called
 *    from one of the pool's own tasks (-EDEADLK)"     pool_core test_close_semantics,
 *                                                     test_close_from_task; hooks:
 * test_close_from_hooks
 *   "-ETIMEDOUT if work remains after timeout_ns: the pool stays closed and
 *    close may be called again"                       pool_core test_close_semantics
 *   "Wait until the queue is empty and no task runs"  test_wait_idle_not_fooled_by_later_tasks
 * (here) "Growing starts workers for queued work at once"  pool_core test_resize "label ... the
 * pool keeps a copy"                 test_stuck_label_is_a_copy, test_dump_label_is_a_copy (here)
 *   "write is called with no pool lock held"          pool_observe test_dump
 *   tp_future_wait_ctx "giving up when wc is done"    pool_future test_ctx_waits;
 *                                                     without spinning: test_future_wait_ctx_sleeps
 *   "fork(): ... the child has none of the pool's threads"
 *                                                     test_fork_with_live_pool (here)
 */
#include "tp_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static int noop(void *arg) {
    (void)arg;
    return 0;
}

/* A task that blocks until *arg becomes non-zero. */
static int wait_flag(void *arg) {
    atomic_int *f = arg;
    while (!atomic_load(f))
        tp_test_sleep_ms(1);
    return 0;
}

/* "The queue holds at most queue_cap tasks": with the only worker blocked,
 * exactly queue_cap further submits are accepted and the next is refused
 * (wrong: an off-by-one bound, or counting the running task as queued). */
static void test_queue_cap_is_exact(void **state) {
    (void)state;
    for (size_t cap = 1; cap <= 9; cap += 4) {
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 1;
        o.queue_cap = cap;
        o.nonblocking = true;
        tp_pool *p = NULL;
        assert_int_equal(tp_pool_create(&p, &o), 0);
        atomic_int open = 0;
        assert_int_equal(tp_submit(p, wait_flag, &open), 0);
        struct tp_pool_stats s;
        TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.queued == 0 && s.workers_running == 1), 5000);
        tp_test_sleep_ms(5); /* the worker is inside wait_flag */
        for (size_t i = 0; i < cap; i++)
            assert_int_equal(tp_submit(p, noop, NULL), 0);
        assert_int_equal(tp_submit(p, noop, NULL), -EAGAIN);
        tp_pool_stats(p, &s);
        assert_int_equal(s.queued, cap);
        atomic_store(&open, 1);
        assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
        tp_pool_stats(p, &s);
        assert_int_equal(s.completed, cap + 1);
        tp_pool_destroy(p);
    }
}

/* ---- "Blocks while the queue is full" ---------------------------------- */

typedef struct rendezvous {
    atomic_int submitted_next; /* set by the submitter after its blocked submit returned */
    atomic_int waited_ok;
} rendezvous;

/* Waits (up to 3 s) for the submitter to get past its next submit. */
static int wait_for_submitter(void *arg) {
    rendezvous *r = arg;
    uint64_t end = tp_now_ns() + 3 * TP_NSEC_PER_SEC;
    while (!atomic_load(&r->submitted_next) && tp_now_ns() < end)
        tp_test_sleep_ms(1);
    atomic_store(&r->waited_ok, atomic_load(&r->submitted_next));
    return 0;
}

/* queue_cap 4, one worker. The queue is full (4 waiting) and the submitter
 * blocks on a 5th. The worker then takes the next task, which waits for the
 * submitter's blocked submit to return: one slot is free, so it must. A pool
 * that wakes blocked submitters only once the queue is half empty (3 left
 * > 2) leaves both waiting: the task for the submitter, the submitter for
 * the half-empty mark. */
static void test_blocked_submitter_wakes_when_a_slot_frees(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 1, 4);
    atomic_int open = 0;
    rendezvous r = {0};
    assert_int_equal(tp_submit(p, wait_flag, &open), 0); /* running */
    struct tp_pool_stats s;
    TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.queued == 0), 5000);
    assert_int_equal(tp_submit(p, wait_for_submitter, &r), 0); /* next to run */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0); /* queue full: 4 */
    /* Free the worker shortly: it then runs wait_for_submitter, leaving 3. */
    atomic_store(&open, 1);
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_submit_timeout(p, noop, NULL, 5 * TP_NSEC_PER_SEC), 0);
    uint64_t took = tp_now_ns() - t0;
    atomic_store(&r.submitted_next, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&r.waited_ok), 1); /* the task saw the submit return */
    assert_true(took < 2 * TP_NSEC_PER_SEC * tp_test_slowdown());
    tp_pool_destroy(p);
}

typedef struct fair_arg {
    tp_pool *p;
    atomic_int *stop;
    atomic_ulong accepted;
    atomic_ulong refused;
} fair_arg;

static int short_task(void *arg) {
    (void)arg;
    uint64_t end = tp_now_ns() + 20 * TP_NSEC_PER_USEC;
    while (tp_now_ns() < end) {
    }
    return 0;
}

/* Submits without waiting as fast as it can. */
static void *greedy(void *a) {
    fair_arg *f = a;
    while (!atomic_load(f->stop)) {
        int rc = tp_submit_timeout(f->p, short_task, NULL, 0);
        if (rc == 0)
            atomic_fetch_add(&f->accepted, 1);
        else
            atomic_fetch_add(&f->refused, 1);
    }
    return NULL;
}

typedef struct blocked_sub {
    tp_pool *p;
    atomic_int done;
} blocked_sub;

static void *submit_forever(void *a) {
    blocked_sub *b = a;
    if (tp_submit(b->p, noop, NULL) == 0) atomic_store(&b->done, 1);
    return NULL;
}

/* "Blocks while the queue is full", ordering half: a slot that frees while
 * a submitter sleeps on the full queue is its, not a later submitter's.
 * Wrong implementations: waking it only at the half-empty mark (it stays
 * asleep with a slot free and a later non-blocking submit takes the slot),
 * or waking it but letting the later submit overtake. */
static void test_freed_slot_goes_to_the_blocked_submitter(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 1, 4);
    atomic_int open1 = 0, open2 = 0;
    assert_int_equal(tp_submit(p, wait_flag, &open1), 0); /* running */
    struct tp_pool_stats s;
    TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.queued == 0), 5000);
    assert_int_equal(tp_submit(p, wait_flag, &open2), 0); /* runs next, then blocks */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0); /* full: 4 queued */
    blocked_sub b = {.p = p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, submit_forever, &b), 0);
    tp_test_sleep_ms(50); /* b has given up yielding and sleeps */
    assert_int_equal(atomic_load(&b.done), 0);
    atomic_store(&open1, 1); /* the worker takes wait_flag(open2): one slot frees */
    TP_TEST_WAIT_FOR(atomic_load(&b.done), 2000 * tp_test_slowdown());
    assert_int_equal(atomic_load(&b.done), 1);
    /* The queue is full again (b took the slot): a later submit cannot
     * have it. */
    assert_int_equal(tp_submit_timeout(p, noop, NULL, 0), -EAGAIN);
    pthread_join(th, NULL);
    atomic_store(&open2, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_pool_stats(p, &s);
    assert_int_equal(s.completed, 6);
    tp_pool_destroy(p);
}

typedef struct patient_arg {
    tp_pool *p;
    unsigned n;
    uint64_t took;
} patient_arg;

/* Submits n tasks, each allowed to wait up to 10 s for room. */
static void *patient(void *a) {
    patient_arg *pa = a;
    uint64_t t0 = tp_now_ns();
    for (unsigned i = 0; i < pa->n; i++)
        if (tp_submit_timeout(pa->p, short_task, NULL, 10 * TP_NSEC_PER_SEC) != 0) break;
    pa->took = tp_now_ns() - t0;
    return NULL;
}

/* "Blocks while the queue is full", fairness half: room that frees while a
 * submitter is blocked goes to it before a later submitter. A pool where a
 * spinning non-blocking submitter (or a submitter that retries instead of
 * sleeping) can take every freed slot starves a sleeping submitter for as
 * long as that lasts. Two patient submitters (one of them sleeps while the
 * other yields) and a greedy one compete for a queue of 4: each patient
 * one must get its tasks in within 2 s. */
static void test_blocked_submitters_are_served_first(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 1, 4);
    atomic_int stop = 0;
    fair_arg g = {.p = p, .stop = &stop};
    pthread_t th, pt[2];
    assert_int_equal(pthread_create(&th, NULL, greedy, &g), 0);
    /* Let the greedy thread fill the queue first. */
    TP_TEST_WAIT_FOR(atomic_load(&g.refused) > 100, 5000);
    unsigned n = tp_test_scale(200) < 50 ? 50 : tp_test_scale(200);
    patient_arg pa[2] = {{.p = p, .n = n}, {.p = p, .n = n}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&pt[i], NULL, patient, &pa[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(pt[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    print_message("patient submitters: %u tasks each in %.1f / %.1f ms; greedy accepted %lu\n", n,
                  pa[0].took / 1e6, pa[1].took / 1e6, (unsigned long)atomic_load(&g.accepted));
    /* Served first, each task waits behind at most 4 queued + 1 running
     * (20 us each); 2 s means thousands of freed slots went elsewhere. */
    for (int i = 0; i < 2; i++)
        assert_true(pa[i].took < 2 * TP_NSEC_PER_SEC * tp_test_slowdown());
    tp_pool_destroy(p);
}

/* ---- wait_idle ---------------------------------------------------------- */

typedef struct flood_arg {
    tp_pool *p;
    atomic_int stop;
} flood_arg;

static void *flood(void *a) {
    flood_arg *f = a;
    while (!atomic_load(&f->stop))
        if (tp_submit(f->p, noop, NULL) != 0) break;
    return NULL;
}

/* "Wait until the queue is empty and no task runs." One task stays running
 * while another thread keeps submitting tiny tasks: wait_idle must never
 * return 0 before the long task ends. Wrong implementation: reading the
 * submitted count before the completion counters, so tiny tasks submitted
 * and finished in between make the totals match with the long one still
 * running. (The TP_CHAOS build widens that window at "pool.idle_check".) */
static void test_wait_idle_not_fooled_by_later_tasks(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 2, 1024);
    atomic_int open = 0;
    assert_int_equal(tp_submit(p, wait_flag, &open), 0);
    flood_arg f = {.p = p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flood, &f), 0);
    int early = 0;
    uint64_t end = tp_now_ns() + 400 * TP_NSEC_PER_MSEC;
    while (tp_now_ns() < end)
        if (tp_pool_wait_idle(p, 200 * TP_NSEC_PER_USEC) == 0) early++;
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(early, 0);
    atomic_store(&open, 1);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_destroy(p);
}

/* ---- contexts ----------------------------------------------------------- */

/* "if c is done before the task starts, the task is not run (counted in
 * stats.canceled). A context already done at submit is refused with its
 * error (counted in stats.rejected)." */
static void test_ctx_done_counts(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 1, 16);
    atomic_int open = 0, ran = 0;
    assert_int_equal(tp_submit(p, wait_flag, &open), 0);
    tp_ctx *c = NULL;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit_ctx(p, c, wait_flag, &ran), 0); /* would spin forever if run */
    tp_ctx_cancel(c);
    assert_int_equal(tp_submit_ctx(p, c, noop, NULL), -ECANCELED);
    atomic_store(&open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.canceled, 3);
    assert_int_equal(s.rejected, 1);
    assert_int_equal(s.submitted, 4);
    assert_int_equal(s.completed, 1);
    tp_ctx_release(c);
    tp_pool_destroy(p);
}

/* ---- hooks may not close their own pool --------------------------------- */

static tp_pool *hook_pool;
static atomic_int hook_close_rc, hook_idle_rc, hook_calls;

static void close_from_hook(void) {
    atomic_store(&hook_close_rc, tp_pool_close(hook_pool, TP_FOREVER));
    atomic_store(&hook_idle_rc, tp_pool_wait_idle(hook_pool, TP_FOREVER));
    atomic_fetch_add(&hook_calls, 1);
}

static void on_error_closes(int err, tp_task_fn fn, void *a, void *h) {
    (void)err, (void)fn, (void)a, (void)h;
    close_from_hook();
}

static void observer_closes(void *arg, const char *label, uint64_t q, uint64_t r, int res) {
    (void)arg, (void)label, (void)q, (void)r, (void)res;
    close_from_hook();
}

static void on_stuck_closes(const char *label, unsigned worker, uint64_t ns, void *arg) {
    (void)label, (void)worker, (void)ns, (void)arg;
    if (atomic_load(&hook_calls) == 0) close_from_hook();
}

static int fail_task(void *arg) {
    (void)arg;
    return -EIO;
}

/* Runs until the hook has run (at most 20 s): stuck for as long as the
 * watchdog needs to see it, however slowly this build runs. */
static int stuck_until_hooked(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000 && !atomic_load(&hook_calls); i++)
        tp_test_sleep_ms(1);
    return 0;
}

/* "close ... must not be called from one of the pool's own tasks or hooks
 * (on_error, observer, on_stuck): -EDEADLK", and so for wait_idle. Wrong
 * implementation: only checking "am I a worker", so close from the watchdog
 * thread joins itself (or returns 0 and leaves the caller to free the pool
 * under its own feet). */
static void test_close_from_hooks(void **state) {
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 1;
        if (kind == 0) o.on_error = on_error_closes;
        if (kind == 1) o.observer = observer_closes;
        if (kind == 2) {
            o.stuck_threshold_ns = 5 * TP_NSEC_PER_MSEC;
            o.on_stuck = on_stuck_closes;
        }
        atomic_store(&hook_calls, 0);
        atomic_store(&hook_close_rc, 1);
        atomic_store(&hook_idle_rc, 1);
        assert_int_equal(tp_pool_create(&hook_pool, &o), 0);
        assert_int_equal(tp_submit(hook_pool, kind == 2 ? stuck_until_hooked : fail_task, NULL), 0);
        TP_TEST_WAIT_FOR(atomic_load(&hook_calls) > 0, 20000);
        assert_true(atomic_load(&hook_calls) > 0);
        assert_int_equal(atomic_load(&hook_close_rc), -EDEADLK);
        assert_int_equal(atomic_load(&hook_idle_rc), -EDEADLK);
        /* The pool is still open and usable. */
        assert_int_equal(tp_submit(hook_pool, noop, NULL), 0);
        assert_int_equal(tp_pool_close(hook_pool, TP_FOREVER), 0);
        tp_pool_destroy(hook_pool);
    }
}

/* ---- labels are copied ---------------------------------------------------- */

static atomic_int stuck_seen;
static char stuck_labels[2][64];

/* The first report sleeps, so the second is made after both tasks ended
 * and their labels were freed: a pool that hands on_stuck the task's own
 * pointer passes freed memory (ASan / valgrind: use after free; plain: the
 * scribbled bytes below). */
static void on_stuck_slow(const char *label, unsigned worker, uint64_t ns, void *arg) {
    (void)worker, (void)ns, (void)arg;
    int i = atomic_fetch_add(&stuck_seen, 1);
    if (i < 2) snprintf(stuck_labels[i], sizeof stuck_labels[i], "%s", label ? label : "(null)");
    if (i == 0) tp_test_sleep_ms(150);
}

/* "label ... must stay valid until the task starts; the pool keeps a copy
 * (its first 47 bytes) for dumps, the stuck-task report and the observer." */
static atomic_int pair_started;

/* Both tasks start together (so both cross the threshold in one watchdog
 * round, one report made after the other's sleep), then run 30 ms. */
static int paired_30ms(void *arg) {
    (void)arg;
    atomic_fetch_add(&pair_started, 1);
    while (atomic_load(&pair_started) < 2)
        sched_yield();
    tp_test_sleep_ms(30);
    return 0;
}

static void test_stuck_label_is_a_copy(void **state) {
    (void)state;
    /* Retried when the two crossed the threshold in different watchdog
     * rounds (then the second is never reported: it ended during the first
     * report's sleep) or the watchdog did not run in time; one same-round
     * attempt decides. */
    for (int attempt = 0; attempt < 10; attempt++) {
        atomic_store(&stuck_seen, 0);
        atomic_store(&pair_started, 0);
        memset(stuck_labels, 0, sizeof stuck_labels);
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 2;
        o.prealloc = true;
        o.stuck_threshold_ns = 5 * TP_NSEC_PER_MSEC;
        o.on_stuck = on_stuck_slow;
        tp_pool *p = NULL;
        assert_int_equal(tp_pool_create(&p, &o), 0);
        char *labels[2];
        tp_future *fut[2];
        for (int i = 0; i < 2; i++) {
            labels[i] = malloc(32);
            snprintf(labels[i], 32, "label-%d", i);
            tp_task_opts t;
            tp_task_opts_init(&t);
            t.fn = paired_30ms;
            t.label = labels[i];
            t.future = &fut[i];
            assert_int_equal(tp_submit_ex(p, &t), 0);
        }
        for (int i = 0; i < 2; i++) {
            int r = -1;
            assert_int_equal(tp_future_wait(fut[i], 10 * TP_NSEC_PER_SEC, &r), 0);
            tp_future_release(fut[i]);
            /* The task ended: its label may go. */
            memset(labels[i], 'X', 31);
            labels[i][31] = 0;
            free(labels[i]);
        }
        TP_TEST_WAIT_FOR(atomic_load(&stuck_seen) >= 2, 400);
        assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
        tp_pool_destroy(p);
        int seen = atomic_load(&stuck_seen);
        if (seen > 2) fail_msg("%d stuck reports for 2 tasks", seen);
        if (seen < 2) continue; /* a loaded machine: the watchdog ran late */
        for (int i = 0; i < 2; i++)
            assert_true(strcmp(stuck_labels[i], "label-0") == 0 ||
                        strcmp(stuck_labels[i], "label-1") == 0);
        assert_string_not_equal(stuck_labels[0], stuck_labels[1]);
        return;
    }
    fail_msg("the two tasks never crossed the threshold in the same watchdog round");
}

typedef struct dump_state {
    int running_lines;
    int bad;
} dump_state;

static void dump_line(void *arg, const char *line) {
    dump_state *d = arg;
    const char *l = strstr(line, "label=");
    if (!l) return;
    d->running_lines++;
    /* Either the label (possibly truncated) or "-"; never freed bytes. */
    if (strncmp(l + 6, "dyn-", 4) != 0 && strncmp(l + 6, "- ", 2) != 0) d->bad++;
}

/* Says it started, then sleeps 2 ms: long enough for a dump to find it
 * running, short enough for the second dump to race its end. */
static int short_sleep(void *arg) {
    atomic_store((atomic_int *)arg, 1);
    tp_test_sleep_ms(2);
    return 0;
}

/* Same promise for tp_pool_dump: labels of tasks that end (and whose
 * strings are freed) while a dump runs are never read after the end. */
static void test_dump_label_is_a_copy(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 2, 64);
    dump_state d = {0};
    unsigned n = tp_test_scale(400);
    for (unsigned i = 0; i < n; i++) {
        char *label = malloc(64);
        snprintf(label, 64, "dyn-%05u-a-long-label-that-is-truncated", i % 100000);
        tp_future *f = NULL;
        tp_task_opts t;
        tp_task_opts_init(&t);
        atomic_int started = 0;
        t.fn = short_sleep;
        t.arg = &started;
        t.label = label;
        t.future = &f;
        assert_int_equal(tp_submit_ex(p, &t), 0);
        while (!atomic_load(&started))
            sched_yield();
        tp_pool_dump(p, dump_line, &d);
        int r;
        assert_int_equal(tp_future_wait(f, 10 * TP_NSEC_PER_SEC, &r), 0);
        tp_future_release(f);
        memset(label, 'X', 63);
        free(label);
        tp_pool_dump(p, dump_line, &d);
    }
    assert_int_equal(d.bad, 0);
    assert_true(d.running_lines > 0);
    tp_pool_destroy(p);
}

/* ---- futures -------------------------------------------------------------- */

static void block_timer_thread(void *arg) {
    (void)arg;
    tp_test_sleep_ms(250);
}

/* tp_future_wait_ctx "giving up when wc is done" -- by sleeping, not by
 * spinning between wc's deadline and the moment the timer marks it done.
 * The default timer service is kept busy by a 250 ms callback that starts
 * just before wc's deadline, so wc is marked done ~250 ms late; the waiting
 * thread must use (almost) no CPU meanwhile. Wrong implementation: a timed
 * wait until the deadline in a loop, which returns at once once the
 * deadline has passed. */
static void test_future_wait_ctx_sleeps(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 1, 4);
    atomic_int open = 0;
    tp_future *f = NULL;
    assert_int_equal(tp_submit_future(p, NULL, wait_flag, &open, &f), 0);
    tp_ctx *c = NULL;
    uint64_t t0 = tp_now_ns(); /* before the deadline is set: it is 30 ms from here */
    assert_int_equal(tp_ctx_with_timeout(NULL, 30 * TP_NSEC_PER_MSEC, &c), 0);
    assert_int_equal(
        tp_timer_add_after(NULL, 25 * TP_NSEC_PER_MSEC, block_timer_thread, NULL, NULL), 0);
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    int r = 0;
    assert_int_equal(tp_future_wait_ctx(f, c, &r), -ETIMEDOUT);
    uint64_t wall = tp_now_ns() - t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    uint64_t cpu = (uint64_t)(c1.tv_sec - c0.tv_sec) * TP_NSEC_PER_SEC + (uint64_t)c1.tv_nsec -
                   (uint64_t)c0.tv_nsec;
    print_message("wait_ctx: wall %.1f ms, cpu %.1f ms\n", wall / 1e6, cpu / 1e6);
    assert_true(wall >= 30 * TP_NSEC_PER_MSEC);
    assert_true(cpu < 40 * TP_NSEC_PER_MSEC * tp_test_slowdown());
    atomic_store(&open, 1);
    assert_int_equal(tp_future_wait(f, 10 * TP_NSEC_PER_SEC, &r), 0);
    tp_future_release(f);
    tp_ctx_release(c);
    tp_pool_destroy(p);
}

/* ---- fork ------------------------------------------------------------------ */

static int count_up(void *arg) {
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* "fork(): the child has none of the pool's threads; a child that does not
 * exec must not use or destroy a pool created before the fork, but may
 * create new pools." The parent's pool keeps working across the fork and
 * the child's new pool runs tasks. */
/* The child _exit()s holding the parent's pool, which it cannot destroy (its
 * workers do not exist there). Kept reachable from here so memcheck's leak
 * check at the child's exit (scripts/valgrind.sh) does not report it lost;
 * volatile because nothing reads it. */
static tp_pool *volatile g_fork_parent_pool;

static void test_fork_with_live_pool(void **state) {
    (void)state;
    tp_pool *p = tp_test_pool(0, 2, 256);
    g_fork_parent_pool = p;
    atomic_int ran = 0;
    for (int i = 0; i < 100; i++)
        assert_int_equal(tp_submit(p, count_up, &ran), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        /* Under TSan the child only exits: TSan does not support starting
         * threads in the forked child of a multi-threaded process. */
        if (strcmp(tp_test_sanitizer(), "thread") != 0) {
            tp_pool *q = NULL;
            atomic_int n = 0;
            if (tp_pool_create(&q, NULL) != 0) _exit(3);
            for (int i = 0; i < 50; i++)
                if (tp_submit(q, count_up, &n) != 0) code = 4;
            if (tp_pool_close(q, 10 * TP_NSEC_PER_SEC) != 0) code = 5;
            if (atomic_load(&n) != 50) code = 6;
            tp_pool_destroy(q);
        }
        _exit(code);
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(tp_submit(p, count_up, &ran), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&ran), 200);
    tp_pool_destroy(p);
    g_fork_parent_pool = NULL;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_cap_is_exact),
        cmocka_unit_test(test_blocked_submitter_wakes_when_a_slot_frees),
        cmocka_unit_test(test_freed_slot_goes_to_the_blocked_submitter),
        cmocka_unit_test(test_blocked_submitters_are_served_first),
        cmocka_unit_test(test_wait_idle_not_fooled_by_later_tasks),
        cmocka_unit_test(test_ctx_done_counts),
        cmocka_unit_test(test_close_from_hooks),
        cmocka_unit_test(test_stuck_label_is_a_copy),
        cmocka_unit_test(test_dump_label_is_a_copy),
        cmocka_unit_test(test_future_wait_ctx_sleeps),
        cmocka_unit_test(test_fork_with_live_pool),
    };
    const char *only = getenv("TP_TEST_ONLY"); /* run one test: TP_TEST_ONLY=test_name */
    if (only) cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
