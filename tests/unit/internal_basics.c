/* SPDX-License-Identifier: MIT */
/* Error convention, clock and OS contract. */
#include "tp_test.h"

#include <fcntl.h>

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(tp_strerror(0), "success");
    assert_string_equal(tp_strerror(-ESHUTDOWN), "pool is closed");
    assert_string_equal(tp_strerror(-ETIMEDOUT), "timed out");
    assert_string_equal(tp_strerror(-ENOTDIR), "Not a directory");
    assert_string_equal(tp_strerror(12345), "unknown error");
    assert_string_equal(tp_strerror(-99999), "unknown error");
}

static void test_clock_monotonic(void **state)
{
    (void)state;
    uint64_t a = tp_now_ns();
    tp_test_sleep_ms(5);
    uint64_t b = tp_now_ns();
    assert_true(b - a >= 5 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp__deadline_after(TP_FOREVER), TP_FOREVER);
    assert_int_equal(tp__deadline_after(TP_FOREVER - 1), TP_FOREVER);
}

static void test_usable_cpus(void **state)
{
    (void)state;
    unsigned n = tp_usable_cpus();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(n >= 1);
    assert_true((long)n <= online);
}

static void test_counts(void **state)
{
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

static void test_cond_timeout(void **state)
{
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),   cmocka_unit_test(test_clock_monotonic),
        cmocka_unit_test(test_usable_cpus), cmocka_unit_test(test_counts),
        cmocka_unit_test(test_cond_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
