/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Observability hooks: task labels through tp_submit_ex, the per-task
 * observer, tp_pool_dump, the stuck-task watchdog, and idle CPU use. */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>

#include "tp_gate.h"

static int noop(void *arg) {
    (void)arg;
    return 0;
}

static int sleep_5ms(void *arg) {
    (void)arg;
    tp_test_sleep_ms(5);
    return -EPIPE;
}

/* ---- observer ------------------------------------------------------------ */
static pthread_mutex_t obs_mu = PTHREAD_MUTEX_INITIALIZER;
static int obs_calls, obs_labeled, obs_failed, obs_canceled;
static uint64_t obs_max_run;

static void observer(void *arg, const char *label, uint64_t wait_ns, uint64_t run_ns, int result) {
    assert_ptr_equal(arg, (void *)0x55);
    (void)wait_ns;
    pthread_mutex_lock(&obs_mu);
    obs_calls++;
    if (label && strcmp(label, "sleepy") == 0) obs_labeled++;
    if (result == -EPIPE) obs_failed++;
    if (result == -ECANCELED) obs_canceled++;
    if (run_ns > obs_max_run) obs_max_run = run_ns;
    pthread_mutex_unlock(&obs_mu);
}

static void test_observer_and_labels(void **state) {
    (void)state;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 2;
    o.observer = observer;
    o.observer_arg = (void *)0x55;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    tp_task_opts t;
    tp_task_opts_init(&t);
    assert_int_equal(t.timeout_ns, TP_FOREVER);
    t.fn = sleep_5ms;
    t.label = "sleepy";
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit_ex(p, &t), 0);
    /* A labelled task with a cancelled context is observed as skipped. */
    tp_ctx *c = NULL;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    t.ctx = c;
    t.fn = noop;
    t.label = "skipped";
    reset();
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_task_opts gt;
    tp_task_opts_init(&gt);
    gt.fn = gate_task;
    assert_int_equal(tp_pool_resize(p, 1), 0);
    /* The surplus parked worker leaves (resize wakes it to do so). */
    struct tp_pool_stats s;
    TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.workers_running == 1), 10000);
    assert_int_equal(s.workers_running, 1);
    assert_int_equal(tp_submit_ex(p, &gt), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(tp_submit_ex(p, &t), 0);
    tp_ctx_cancel(c);
    tp_ctx_release(c);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    pthread_mutex_lock(&obs_mu);
    assert_int_equal(obs_calls, 15);
    assert_int_equal(obs_labeled, 3);
    assert_int_equal(obs_failed, 3);
    assert_int_equal(obs_canceled, 1);
    assert_true(obs_max_run >= 4 * TP_NSEC_PER_MSEC);
    pthread_mutex_unlock(&obs_mu);
    tp_pool_stats(p, &s);
    assert_int_equal(s.failed, 3);
    assert_int_equal(s.canceled, 1);
    tp_pool_destroy(p);
}

/* ---- dump ---------------------------------------------------------------- */
typedef struct dump_buf {
    int lines;
    int running;
    int idle;
    int labelled;
    int queue_lines;
    char last[256];
} dump_buf;

static void dump_write(void *arg, const char *line) {
    dump_buf *d = arg;
    d->lines++;
    if (strstr(line, " running ")) d->running++;
    if (strstr(line, " idle ")) d->idle++;
    if (strstr(line, "label=busy")) d->labelled++;
    if (strstr(line, "queue depth=")) d->queue_lines++;
    snprintf(d->last, sizeof d->last, "%s", line);
}

static void test_dump(void **state) {
    (void)state;
    reset();
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 3;
    o.prealloc = true;
    o.name = "dumpy";
    o.stuck_threshold_ns = 10 * TP_NSEC_PER_SEC; /* tracks time, never fires here */
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    tp_task_opts t;
    tp_task_opts_init(&t);
    t.fn = gate_task;
    t.label = "busy";
    for (int i = 0; i < 2; i++)
        assert_int_equal(tp_submit_ex(p, &t), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 2, 10000);
    dump_buf d = {0};
    tp_pool_dump(p, dump_write, &d);
    assert_int_equal(d.lines, 4); /* one per worker + the queue line */
    assert_int_equal(d.running, 2);
    assert_int_equal(d.labelled, 2);
    assert_int_equal(d.idle, 1);
    assert_int_equal(d.queue_lines, 1);
    assert_non_null(strstr(d.last, "dumpy queue depth=0 oldest=none"));

    /* With the queue backed up, the oldest age is reported. */
    assert_int_equal(tp_pool_resize(p, 2), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 2, 10000);
    t.label = NULL;
    /* fill while 2 run; the third worker may take one task, so submit 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit_ex(p, &t), 0);
    tp_test_sleep_ms(20);
    memset(&d, 0, sizeof d);
    tp_pool_dump(p, dump_write, &d);
    assert_int_equal(d.queue_lines, 1);
    assert_null(strstr(d.last, "depth=0 "));
    assert_null(strstr(d.last, "oldest=unknown"));
    assert_null(strstr(d.last, "oldest=none"));
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_pool_destroy(p);

    /* Without time tracking, ages say unknown. */
    reset();
    tp_pool_opts_init(&o);
    o.max_workers = 1;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    memset(&d, 0, sizeof d);
    tp_pool_dump(p, dump_write, &d);
    assert_int_equal(d.lines, 2);
    assert_int_equal(d.running, 1);
    assert_non_null(strstr(d.last, "depth=1 oldest=unknown"));
    atomic_store(&gate_open, 1);
    tp_pool_destroy(p);
    tp_pool_dump(NULL, dump_write, &d); /* no crash */
}

/* ---- stuck watchdog ------------------------------------------------------ */
static atomic_int stuck_calls;
static atomic_int stuck_label_ok;
static void on_stuck(const char *label, unsigned worker, uint64_t running_ns, void *arg) {
    (void)worker;
    assert_ptr_equal(arg, (void *)0x77);
    if (label && strcmp(label, "wedged") == 0 && running_ns >= 20 * TP_NSEC_PER_MSEC)
        atomic_fetch_add(&stuck_label_ok, 1);
    atomic_fetch_add(&stuck_calls, 1);
}

static void test_stuck(void **state) {
    (void)state;
    reset();
    atomic_store(&stuck_calls, 0);
    atomic_store(&stuck_label_ok, 0);
    int before = tp__thread_count();
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 2;
    o.stuck_threshold_ns = 20 * TP_NSEC_PER_MSEC;
    o.on_stuck = on_stuck;
    o.on_stuck_arg = (void *)0x77;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    tp_task_opts t;
    tp_task_opts_init(&t);
    t.fn = gate_task;
    t.label = "wedged";
    assert_int_equal(tp_submit_ex(p, &t), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&stuck_calls) >= 1, 10000);
    tp_test_sleep_ms(100); /* many watchdog rounds: still reported once */
    assert_int_equal(atomic_load(&stuck_calls), 1);
    assert_int_equal(atomic_load(&stuck_label_ok), 1);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.stuck, 1);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(tp__thread_count(), before); /* watchdog joined too */
    tp_pool_destroy(p);
}

/* ---- idle CPU ------------------------------------------------------------ */
static double cpu_ms(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
           ru.ru_stime.tv_usec / 1e3;
}

static void test_idle_cpu(void **state) {
    (void)state;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.min_workers = 4;
    o.max_workers = 4;
    o.prealloc = true;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_test_sleep_ms(20); /* let spinners park */
    double c0 = cpu_ms();
    tp_test_sleep_ms(200);
    double used = cpu_ms() - c0;
    /* Parked workers burn nothing; allow a little for the sanitizers' own
     * background threads and scheduler noise. */
    assert_true(used < 20.0);

    /* One tiny task per millisecond stays far below a core. */
    c0 = cpu_ms();
    uint64_t t0 = tp_now_ns();
    for (int i = 0; i < 200; i++) {
        assert_int_equal(tp_submit(p, noop, NULL), 0);
        tp_test_sleep_ms(1);
    }
    double wall_ms = (double)(tp_now_ns() - t0) / 1e6;
    used = cpu_ms() - c0;
    print_message("1 task/ms: %.1f ms CPU over %.1f ms (%.1f%%)\n", used, wall_ms,
                  100.0 * used / wall_ms);
    assert_true(used < 0.5 * wall_ms); /* loose: the 5% goal is benchmarked */
    tp_pool_destroy(p);
}

/* observer_sample: 1 task in N (power of two) is timed and observed, with
 * sane times; the stuck watchdog turns sampling off. */
static _Atomic unsigned smp_calls, smp_timed, smp_bad;
static void sample_observer(void *arg, const char *label, uint64_t wait, uint64_t run, int r) {
    (void)arg, (void)label, (void)r;
    atomic_fetch_add(&smp_calls, 1);
    if (wait > 60 * TP_NSEC_PER_SEC || run > 60 * TP_NSEC_PER_SEC)
        atomic_fetch_add(&smp_bad, 1);
    else
        atomic_fetch_add(&smp_timed, 1);
}
static void test_observer_sample(void **state) {
    (void)state;
    for (int watchdog = 0; watchdog < 2; watchdog++) {
        atomic_store(&smp_calls, 0);
        atomic_store(&smp_timed, 0);
        atomic_store(&smp_bad, 0);
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 2;
        o.observer = sample_observer;
        o.observer_sample = 6; /* rounded up to 8 */
        if (watchdog) o.stuck_threshold_ns = 10 * TP_NSEC_PER_SEC;
        tp_pool *p = NULL;
        assert_int_equal(tp_pool_create(&p, &o), 0);
        /* One submitting thread: its push counter makes exactly 1 in 8 timed. */
        for (int i = 0; i < 800; i++)
            assert_int_equal(tp_submit(p, noop, NULL), 0);
        assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
        assert_int_equal(atomic_load(&smp_calls), watchdog ? 800 : 100);
        assert_int_equal(atomic_load(&smp_bad), 0);
        assert_int_equal(atomic_load(&smp_timed), watchdog ? 800 : 100);
        tp_pool_destroy(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observer_sample),
        cmocka_unit_test(test_observer_and_labels),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_stuck),
        cmocka_unit_test(test_idle_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
