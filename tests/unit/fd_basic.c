/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * File-handle pool: leases, caching by (path, access mode), the max_open
 * bound counted in /proc/self/fd, LRU eviction, wait-or-fail, O_CLOEXEC,
 * positional I/O, sequential handles, expiry, stats. */
#include "tp_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "tripool/fd.h"

static char g_dir[64];

static void path_of(char *out, size_t n, int i) {
    snprintf(out, n, "%s/f%d", g_dir, i);
}

static void make_file(int i, const char *content) {
    char p[128];
    path_of(p, sizeof p, i);
    FILE *f = fopen(p, "we");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/tp_fd_basic.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    for (int i = 0; i < 32; i++) {
        char c[32];
        snprintf(c, sizeof c, "file %d\n", i);
        make_file(i, c);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tp_test_rm_rf(g_dir);
}

static void test_defaults(void **state) {
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.max_open, rl.rlim_cur / 2);
    assert_int_equal(st.open, 0);
    assert_false(st.inotify);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp_fdpool_destroy(NULL), 0);
}

static void test_hit_miss_and_keys(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    char p[128];
    path_of(p, sizeof p, 1);
    tp_fd *a, *b, *c;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &b), 0);
    /* Same key: one shared descriptor, two leases. */
    assert_int_equal(tp_fd_get(a), tp_fd_get(b));
    assert_ptr_not_equal(a, b);
    /* Another access mode is another key. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR, 0, &c), 0);
    assert_int_not_equal(tp_fd_get(a), tp_fd_get(c));
    /* O_CLOEXEC always. */
    assert_true(fcntl(tp_fd_get(a), F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(tp_fd_get(c), F_GETFD) & FD_CLOEXEC);
    assert_false(tp_fd_is_sequential(a));
    int fd = tp_fd_get(a);
    tp_fd_release(fp, a);
    tp_fd_release(fp, b);
    tp_fd_release(fp, c);
    /* Released descriptors stay cached: the next acquire is a hit. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    assert_int_equal(tp_fd_get(a), fd);
    tp_fd_release(fp, a);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.leased, 0);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_bound_and_lru(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 4;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char p[128];
    int maxseen = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 32; i++) {
            tp_fd *h;
            path_of(p, sizeof p, i);
            assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
            char buf[32] = {0};
            assert_true(tp_fd_pread(h, buf, sizeof buf - 1, 0) > 0);
            char want[32];
            snprintf(want, sizeof want, "file %d\n", i);
            assert_string_equal(buf, want);
            int n = tp__open_fd_count() - base;
            if (n > maxseen) maxseen = n;
            tp_fd_release(fp, h);
        }
    }
    assert_true(maxseen <= 4);
    assert_true(tp__open_fd_count() - base <= 4);
    /* LRU: files 28..31 are the most recent; 31 is a hit, 0 is a miss. */
    struct tp_fdpool_stats st0, st;
    tp_fdpool_stats(fp, &st0);
    tp_fd *h;
    path_of(p, sizeof p, 31);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
    tp_fd_release(fp, h);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.hits, st0.hits + 1);
    path_of(p, sizeof p, 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
    tp_fd_release(fp, h);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.misses, st0.misses + 1);
    assert_int_equal(st.evictions, st.misses - 4);
    assert_int_equal(st.peak_open, 4);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
}

struct waiter {
    tp_fdpool *fp;
    const char *path;
    int rc;
    int fd;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    tp_fd *h = NULL;
    w->rc = tp_fd_acquire_timeout(w->fp, w->path, O_RDONLY, 0, 30 * TP_NSEC_PER_SEC, &h);
    if (w->rc == 0) {
        w->fd = tp_fd_get(h);
        tp_fd_release(w->fp, h);
    }
    return NULL;
}

static void test_all_leased(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 2;
    o.wait_ns = 0; /* fail at once */
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char p0[128], p1[128], p2[128];
    path_of(p0, sizeof p0, 0);
    path_of(p1, sizeof p1, 1);
    path_of(p2, sizeof p2, 2);
    tp_fd *a, *b, *c = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &a), 0);
    assert_int_equal(tp_fd_acquire(fp, p1, O_RDONLY, 0, &b), 0);
    assert_int_equal(tp_fd_acquire(fp, p2, O_RDONLY, 0, &c), -EMFILE);
    assert_null(c);
    /* A hit needs no new descriptor even when all are leased. */
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &c), 0);
    tp_fd_release(fp, c);
    /* Timed wait runs out. */
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_fd_acquire_timeout(fp, p2, O_RDONLY, 0, 20 * TP_NSEC_PER_MSEC, &c),
                     -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 20 * TP_NSEC_PER_MSEC);
    /* A waiter is woken by a release. */
    struct waiter w = {fp, p2, 1, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    struct tp_fdpool_stats st;
    TP_TEST_WAIT_FOR((tp_fdpool_stats(fp, &st), st.waits >= 2), 10000);
    assert_int_equal(st.waits, 2);
    tp_fd_release(fp, b);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(w.fd >= 0);
    tp_fd_release(fp, a);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.failures, 2);
    assert_true(st.open <= 2);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_pread_pwrite(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    char p[128];
    snprintf(p, sizeof p, "%s/rw", g_dir);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_CREAT, 0600, &h), 0);
    assert_int_equal(tp_fd_pwrite(h, "world", 5, 6), 5);
    assert_int_equal(tp_fd_pwrite(h, "hello ", 6, 0), 6);
    char buf[32] = {0};
    assert_int_equal(tp_fd_pread(h, buf, sizeof buf, 0), 11);
    assert_string_equal(buf, "hello world");
    assert_int_equal(tp_fd_pread(h, buf, 4, 100), 0); /* EOF */
    assert_int_equal(tp_fd_pread(NULL, buf, 4, 0), -EINVAL);
    tp_fd_release(fp, h);
    /* O_TRUNC opens afresh and replaces the cached descriptor. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_TRUNC, 0, &h), 0);
    assert_int_equal(tp_fd_pread(h, buf, sizeof buf, 0), 0);
    tp_fd_release(fp, h);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.open, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_close_uncaches(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    char p[128];
    path_of(p, sizeof p, 3);
    tp_fd *a, *b;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &b), 0);
    int fd = tp_fd_get(a);
    tp_fd_close(fp, a); /* b still uses the descriptor */
    assert_true(fcntl(fd, F_GETFD) >= 0);
    char buf[16] = {0};
    assert_true(tp_fd_pread(b, buf, sizeof buf - 1, 0) > 0);
    assert_string_equal(buf, "file 3\n");
    tp_fd_release(fp, b); /* the last lease: closed, not cached */
    assert_int_equal(tp__open_fd_count(), base);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.open, 0);
    /* The next acquire opens afresh. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    tp_fd_close(fp, a);
    tp_fd_close(fp, NULL); /* no-op */
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.open, 0);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_min_uses(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    assert_int_equal(o.min_uses, 1);
    o.min_uses = 3;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char p[128];
    path_of(p, sizeof p, 5);
    struct tp_fdpool_stats st;
    for (int i = 1; i <= 4; i++) {
        tp_fd *h;
        assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
        tp_fd_release(fp, h);
        tp_fdpool_stats(fp, &st);
        /* Opens 1 and 2 are closed at release; the 3rd is cached; the 4th hits. */
        assert_int_equal(st.open, i < 3 ? 0 : 1);
        assert_int_equal(tp__open_fd_count(), base + (i < 3 ? 0 : 1));
    }
    assert_int_equal(st.uncached, 2);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.hits, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
}

static void test_sequential(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    char p[128];
    snprintf(p, sizeof p, "%s/fifo", g_dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    tp_fd *h;
    /* O_RDWR on a FIFO does not block on Linux. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR, 0, &h), 0);
    assert_true(tp_fd_is_sequential(h));
    char buf[8] = {0};
    assert_int_equal(tp_fd_pread(h, buf, 4, 0), -ESPIPE);
    assert_int_equal(tp_fd_pwrite(h, "x", 1, 0), -ESPIPE);
    assert_int_equal(tp_fd_write(h, "abc", 3), 3);
    assert_int_equal(tp_fd_read(h, buf, sizeof buf), 3);
    assert_memory_equal(buf, "abc", 3);
    tp_fd_release(fp, h);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_expiry(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.inactive_ns = 200 * TP_NSEC_PER_MSEC;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char p[128];
    uint64_t t0 = tp_now_ns();
    for (int i = 0; i < 5; i++) {
        tp_fd *h;
        path_of(p, sizeof p, i);
        assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
        tp_fd_release(fp, h);
    }
    /* Immediately after, nothing is old enough (checked only if this thread
     * was not descheduled for longer than inactive_ns meanwhile). */
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    if (tp_now_ns() - t0 < 150 * TP_NSEC_PER_MSEC) assert_int_equal(st.open, 5);
    tp_test_sleep_ms(300);
    tp_fdpool_expire(fp);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.expired, 5);
    assert_int_equal(tp__open_fd_count(), base);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_raise_nofile(void **state) {
    (void)state;
    struct rlimit rl, saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    if (saved.rlim_max < 256 || saved.rlim_max == RLIM_INFINITY) {
        skip(); /* cannot lower the soft limit meaningfully here */
        return;
    }
    rl = saved;
    rl.rlim_cur = 128;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.raise_nofile = true;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rl.rlim_cur, saved.rlim_max);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.max_open, saved.rlim_max / 2);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_hit_miss_and_keys),
        cmocka_unit_test(test_bound_and_lru),  cmocka_unit_test(test_all_leased),
        cmocka_unit_test(test_pread_pwrite),   cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_close_uncaches), cmocka_unit_test(test_min_uses),
        cmocka_unit_test(test_expiry),         cmocka_unit_test(test_raise_nofile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
