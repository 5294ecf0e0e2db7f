/* SPDX-License-Identifier: MIT */
/* Error convention, clock and OS contract: common.h's promises.
 *   tp_strerror "Never NULL; thread-safe; the string is static. Unknown
 *     codes give 'unknown error'"           test_strerror, test_strerror_threads
 *   tp_now_ns "the CLOCK_MONOTONIC time"     test_clock_monotonic
 *   tp_usable_cpus "the smaller of its sched affinity mask and the cgroup
 *     v2 cpu.max quota ..., at least 1"      test_usable_cpus, test_usable_cpus_affinity
 */
#include "tp_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>

static void test_strerror(void **state) {
    (void)state;
    assert_string_equal(tp_strerror(0), "success");
    assert_string_equal(tp_strerror(-ESHUTDOWN), "pool is closed");
    assert_string_equal(tp_strerror(-ETIMEDOUT), "timed out");
    assert_string_equal(tp_strerror(-ENOTDIR), "Not a directory");
    assert_string_equal(tp_strerror(12345), "unknown error");
    assert_string_equal(tp_strerror(-99999), "unknown error");
}

static void *strerror_loop(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        int e = -(i % 140);
        const char *a = tp_strerror(e);
        if (!a || strlen(a) == 0) return (void *)1;
        if (a != tp_strerror(e)) /* static: the same string every time */
            return (void *)1;
    }
    return NULL;
}

/* "thread-safe; the string is static": 4 threads over every errno; a
 * strerror()-based implementation (one shared buffer) would hand out the
 * same pointer with changing text, or a new buffer per call. */
static void test_strerror_threads(void **state) {
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, strerror_loop, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *r = (void *)1;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    assert_string_equal(tp_strerror(-ENOTDIR), "Not a directory");
}

static void test_clock_monotonic(void **state) {
    (void)state;
    uint64_t a = tp_now_ns();
    tp_test_sleep_ms(5);
    uint64_t b = tp_now_ns();
    assert_true(b - a >= 5 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp__deadline_after(TP_FOREVER), TP_FOREVER);
    assert_int_equal(tp__deadline_after(TP_FOREVER - 1), TP_FOREVER);
}

static void test_usable_cpus(void **state) {
    (void)state;
    unsigned n = tp_usable_cpus();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(n >= 1);
    assert_true((long)n <= online);
}

/* "the smaller of its sched affinity mask and the cgroup v2 cpu.max quota":
 * pinned to one CPU, the process may use one (wrong: counting online CPUs). */
static void test_usable_cpus_affinity(void **state) {
    (void)state;
    cpu_set_t old, one;
    assert_int_equal(sched_getaffinity(0, sizeof old, &old), 0);
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &old)) first = c;
    assert_true(first >= 0);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    unsigned n = tp_usable_cpus();
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
    assert_int_equal(n, 1);
    assert_true(tp_usable_cpus() <= (unsigned)CPU_COUNT(&old));
}

static void test_counts(void **state) {
    (void)state;
    int t = tp__thread_count();
    assert_true(t >= 1);
    int before = tp__open_fd_count();
    assert_true(before >= 0);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(tp__open_fd_count(), before + 1);
    close(fd);
    assert_int_equal(tp__open_fd_count(), before);
}

static void test_cond_timeout(void **state) {
    (void)state;
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    assert_int_equal(tp__cond_init_monotonic(&c), 0);
    pthread_mutex_lock(&m);
    uint64_t t0 = tp_now_ns();
    int rc;
    do {
        rc = tp__cond_wait_until(&c, &m, t0 + 10 * TP_NSEC_PER_MSEC);
    } while (rc == 0);
    pthread_mutex_unlock(&m);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 10 * TP_NSEC_PER_MSEC);
    pthread_cond_destroy(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_strerror_threads),
        cmocka_unit_test(test_usable_cpus_affinity),
        cmocka_unit_test(test_clock_monotonic),
        cmocka_unit_test(test_usable_cpus),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_cond_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
