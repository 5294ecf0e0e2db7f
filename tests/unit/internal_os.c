/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * The OS contract's calls for the buffer and fd pools (src/internal/os.h):
 *   tp__os_map "size bytes of private anonymous read/write memory ... 0 or a
 *     negative errno (*out untouched)"          test_map
 *   tp__os_map_huge "aligned to TP__OS_HUGE_PAGE ... an ordinary mapping of
 *     exactly size bytes"                        test_map_huge
 *   tp__os_nofile_limit / tp__os_nofile_raise "the soft limit ... raise the
 *     soft limit to the hard limit"              test_nofile
 *   tp__os_coarse_now_ns "a coarse monotonic clock" test_coarse_clock
 *   tp__os_notify_* "FILE: moved, deleted or its attributes changed. DIR: an
 *     entry created, moved in or out, or deleted (-ENOTDIR on anything but a
 *     directory) ... GONE: the watch no longer exists" test_notify
 */
#include "tp_test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static void test_map(void **state) {
    (void)state;
    size_t pg = tp__page_size(), n = 3 * pg;
    void *p = NULL;
    assert_int_equal(tp__os_map(n, false, &p), 0);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % pg, 0);
    uint8_t *b = p;
    for (size_t i = 0; i < n; i += 512)
        assert_int_equal(b[i], 0); /* anonymous memory starts zeroed */
    memset(b, 0xAB, n);            /* and is writable */
    assert_int_equal(tp__os_unmap(p, n), 0);
    assert_int_equal(tp__os_map(pg, true, &p), 0);
    assert_int_equal(tp__os_unmap(p, pg), 0);
    void *untouched = (void *)0x1;
    assert_int_equal(tp__os_map(0, false, &untouched), -EINVAL); /* mmap of 0 bytes */
    assert_ptr_equal(untouched, (void *)0x1);
    assert_int_equal(tp__os_map_huge(SIZE_MAX - 10, false, &untouched), -ENOMEM);
    assert_ptr_equal(untouched, (void *)0x1);
}

static void test_map_huge(void **state) {
    (void)state;
    size_t pg = tp__page_size(), n = TP__OS_HUGE_PAGE + 4 * pg;
    void *p = NULL;
    assert_int_equal(tp__os_map_huge(n, true, &p), 0);
    assert_int_equal((uintptr_t)p % TP__OS_HUGE_PAGE, 0);
    uint8_t *b = p;
    assert_int_equal(b[0], 0);
    assert_int_equal(b[n - 1], 0);
    b[n - 1] = 1;
    /* The slack after the mapping was given back: the page after it is not
     * mapped (mincore fails with ENOMEM on unmapped ranges). */
    unsigned char vec[1];
    assert_int_equal(mincore(b + n, pg, vec), -1);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(mincore(b + n - pg, pg, vec), 0);
    assert_int_equal(tp__os_unmap(p, n), 0);
    assert_int_equal(mincore(b, pg, vec), -1);
}

static void test_nofile(void **state) {
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    uint64_t soft = 0;
    assert_int_equal(tp__os_nofile_limit(&soft), 0);
    assert_true(soft == (rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur));
    if (rl.rlim_cur > 64 && rl.rlim_cur == rl.rlim_max) { /* make room to raise into */
        rl.rlim_cur = 64;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
        assert_int_equal(tp__os_nofile_limit(&soft), 0);
        assert_true(soft == 64);
    }
    assert_int_equal(tp__os_nofile_raise(), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(rl.rlim_cur == rl.rlim_max);
    assert_int_equal(tp__os_nofile_raise(), 0); /* already there */
}

static void test_coarse_clock(void **state) {
    (void)state;
    uint64_t a = tp__os_coarse_now_ns(), fine = tp__now_ns();
    uint64_t d = a > fine ? a - fine : fine - a;
    assert_true(d < 100 * TP_NSEC_PER_MSEC); /* the same clock, a tick's resolution */
    uint64_t prev = a;
    for (int i = 0; i < 10000; i++) {
        uint64_t t = tp__os_coarse_now_ns();
        assert_true(t >= prev);
        prev = t;
    }
}

struct seen {
    int n, overflow, gone_wd, change_wd[8];
    char name[8][64];
};

static void on_ev(void *arg, enum tp__os_notify_ev ev, int wd, const char *name) {
    struct seen *s = arg;
    if (ev == TP__OS_NOTIFY_OVERFLOW) s->overflow++;
    if (ev == TP__OS_NOTIFY_GONE) s->gone_wd = wd;
    if (ev == TP__OS_NOTIFY_CHANGE && s->n < 8) {
        s->change_wd[s->n] = wd;
        snprintf(s->name[s->n], sizeof s->name[0], "%s", name ? name : "(null)");
        s->n++;
    }
}

static void test_notify(void **state) {
    (void)state;
    char dir[] = "/tmp/tp_os_notify_XXXXXX", file[128], other[128];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/f", dir);
    snprintf(other, sizeof other, "%s/new", dir);
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);

    int nfd = tp__os_notify_open();
    assert_true(nfd >= 0);
    assert_true(fcntl(nfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(nfd, F_GETFD) & FD_CLOEXEC);
    int wf = tp__os_notify_add(nfd, file, TP__OS_WATCH_FILE);
    int wdir = tp__os_notify_add(nfd, dir, TP__OS_WATCH_DIR);
    assert_true(wf >= 0 && wdir >= 0 && wf != wdir);
    assert_int_equal(tp__os_notify_add(nfd, file, TP__OS_WATCH_DIR), -ENOTDIR);
    assert_int_equal(tp__os_notify_add(nfd, other, TP__OS_WATCH_FILE), -ENOENT);
    assert_int_equal(tp__os_notify_add(nfd, file, TP__OS_WATCH_FILE), wf); /* same inode */

    struct seen s = {.gone_wd = -2};
    tp__os_notify_drain(nfd, on_ev, &s); /* nothing yet: returns at once */
    assert_int_equal(s.n, 0);

    /* A directory entry created: DIR watch, with its name. */
    fd = open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    tp__os_notify_drain(nfd, on_ev, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.change_wd[0], wdir);
    assert_string_equal(s.name[0], "new");

    /* Attributes of the file changed: FILE watch, no name. A write is not
     * watched (the pool re-validates identity, not contents). */
    fd = open(file, O_WRONLY | O_CLOEXEC);
    assert_true(write(fd, "x", 1) == 1);
    close(fd);
    assert_int_equal(chmod(file, 0644), 0);
    memset(&s, 0, sizeof s);
    s.gone_wd = -2;
    tp__os_notify_drain(nfd, on_ev, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.change_wd[0], wf);
    assert_string_equal(s.name[0], "(null)");

    /* A removed watch reports GONE; removing it again fails. */
    assert_int_equal(tp__os_notify_rm(nfd, wf), 0);
    tp__os_notify_drain(nfd, on_ev, &s);
    assert_int_equal(s.gone_wd, wf);
    assert_int_equal(s.overflow, 0);
    assert_int_equal(tp__os_notify_rm(nfd, wf), -EINVAL);

    close(nfd);
    unlink(file);
    unlink(other);
    rmdir(dir);
}

/* tp__os_copy_range copies in the kernel and advances both offsets; 0 at
 * the end of the input; an error comes back as -errno, not -1. */
static void test_copy_range(void **state) {
    (void)state;
    char dir[] = "/tmp/tp_os_copy_XXXXXX", a[96], b[96];
    assert_non_null(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    int in = open(a, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int out = open(b, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(in >= 0 && out >= 0);
    char data[10000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7);
    assert_int_equal(write(in, data, sizeof data), (ssize_t)sizeof data);
    off_t ip = 1000, op = 0;
    ssize_t n = tp__os_copy_range(in, &ip, out, &op, 5000);
    if (n == -EXDEV || n == -ENOSYS || n == -EOPNOTSUPP || n == -EINVAL)
        print_message("copy_file_range unsupported here (%zd): fallback paths only\n", n);
    else {
        assert_int_equal(n, 5000);
        assert_int_equal(ip, 6000);
        assert_int_equal(op, 5000);
        char got[5000];
        assert_int_equal(pread(out, got, sizeof got, 0), 5000);
        assert_memory_equal(got, data + 1000, 5000);
        ip = (off_t)sizeof data;
        assert_int_equal(tp__os_copy_range(in, &ip, out, &op, 100), 0); /* end of input */
    }
    assert_int_equal(tp__os_copy_range(-1, &ip, out, &op, 100), -EBADF);
    /* tp__os_sync: fsync and syncfs both 0 on a good descriptor, -EBADF on a bad one. */
    assert_int_equal(tp__os_sync(out, false), 0);
    assert_int_equal(tp__os_sync(out, true), 0);
    assert_int_equal(tp__os_sync(-1, false), -EBADF);
    tp__os_writeback_start(out, 0, 5000); /* a hint: must not fail or block */
    close(in);
    close(out);
    /* tp__os_rename_noreplace never replaces: -EEXIST with b present. */
    int rc = tp__os_rename_noreplace(a, b);
    if (rc != -EINVAL && rc != -ENOSYS) {
        assert_int_equal(rc, -EEXIST);
        assert_int_equal(access(a, F_OK), 0);
        assert_int_equal(unlink(b), 0);
        assert_int_equal(tp__os_rename_noreplace(a, b), 0);
        assert_int_equal(access(a, F_OK), -1);
        assert_int_equal(access(b, F_OK), 0);
    }
    unlink(a);
    unlink(b);
    rmdir(dir);
}

/* tp__os_thread_schedstat: a thread that ran has run time; a thread that
 * does not exist is -ENOENT. */
static void test_thread_schedstat(void **state) {
    (void)state;
    uint64_t end = tp_now_ns() + 20 * TP_NSEC_PER_MSEC, run = 0, wait = 0;
    while (tp_now_ns() < end) {
    }
    pid_t tid = (pid_t)syscall(SYS_gettid);
    assert_int_equal(tp__os_thread_schedstat(tid, &run, &wait), 0);
    assert_true(run >= 10 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp__os_thread_schedstat(0x3ffffff0, &run, &wait), -ENOENT);
}

/* tp__os_sched_timer_thread(0): not real-time, 1 us timer slack. */
static void test_sched_timer_thread(void **state) {
    (void)state;
    assert_false(tp__os_sched_timer_thread(0));
    assert_int_equal(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_map_huge),
        cmocka_unit_test(test_nofile),
        cmocka_unit_test(test_coarse_clock),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_copy_range),
        cmocka_unit_test(test_thread_schedstat),
        cmocka_unit_test(test_sched_timer_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
