/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * File-handle pool across rotation and deletion: the staleness re-check
 * (valid_ns), invalidate, inotify acceleration; new acquires get the new
 * file while old leases keep the old one until released. Also the
 * follower on truncation and rename rotation (without logrotate). */
#include "tp_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tripool/fd.h"

static char g_dir[64];
static char g_log[128];
static char g_rot[128];

static void write_file(const char *p, const char *content) {
    FILE *f = fopen(p, "we");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void append_file(const char *p, const char *content) {
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void read_lease(tp_fd *h, char *buf, size_t n) {
    memset(buf, 0, n);
    assert_true(tp_fd_pread(h, buf, n - 1, 0) >= 0);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/tp_fd_rot.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_log, sizeof g_log, "%s/app.log", g_dir);
    snprintf(g_rot, sizeof g_rot, "%s/app.log.1", g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tp_test_rm_rf(g_dir);
}

/* Rotate by rename + create, then check what leases see. */
static void rotate_and_check(tp_fdpool *fp, bool expect_new_now) {
    int base = tp__open_fd_count();
    char buf[64];
    write_file(g_log, "old\n");
    tp_fd *a, *b;
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "old\n");
    assert_int_equal(rename(g_log, g_rot), 0);
    write_file(g_log, "new\n");
    tp_test_sleep_ms(20); /* inotify is drained at most every 2 ms */
    if (!expect_new_now) {
        /* valid_ns has not run out and nothing told the pool: old file. */
        assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &b), 0);
        assert_int_equal(tp_fd_get(a), tp_fd_get(b));
        tp_fd_release(fp, b);
        assert_int_equal(tp_fdpool_invalidate(fp, g_log), 1);
    }
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &b), 0);
    read_lease(b, buf, sizeof buf);
    assert_string_equal(buf, "new\n");
    /* The old lease keeps the old file. */
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "old\n");
    assert_int_equal(tp__open_fd_count(), base + 2);
    tp_fd_release(fp, a); /* its entry was replaced: closed now */
    assert_int_equal(tp__open_fd_count(), base + 1);
    tp_fd_release(fp, b);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.reopened, 1);
    assert_int_equal(st.open, 1);
    unlink(g_rot);
}

static void test_rotation_recheck_every_acquire(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = 0;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    rotate_and_check(fp, true);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_rotation_invalidate(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = TP_FOREVER;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    rotate_and_check(fp, false);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_rotation_after_valid(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = 20 * TP_NSEC_PER_MSEC;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char buf[64];
    write_file(g_log, "old\n");
    tp_fd *a;
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    tp_fd_release(fp, a);
    assert_int_equal(rename(g_log, g_rot), 0);
    write_file(g_log, "new\n");
    tp_test_sleep_ms(40);
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "new\n");
    tp_fd_release(fp, a);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    unlink(g_rot);
}

static void test_rotation_inotify(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = TP_FOREVER; /* only inotify can notice */
    o.use_inotify = true;
    o.max_open = 8;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_true(st.inotify);
    assert_int_equal(st.max_open, 7); /* the inotify descriptor counts */
    rotate_and_check(fp, true);
    /* Deletion is noticed too. */
    tp_fd *a;
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    tp_fd_release(fp, a);
    assert_int_equal(unlink(g_log), 0);
    tp_test_sleep_ms(20);
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), -ENOENT);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* inotify's queue overflows (IN_Q_OVERFLOW drops events, including the
 * rotation's): the pool must re-validate everything instead. */
static void test_inotify_overflow_falls_back(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = TP_FOREVER;
    o.use_inotify = true;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    assert_true(st.inotify);
    char buf[64];
    write_file(g_log, "old\n");
    tp_fd *a;
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    tp_fd_release(fp, a);
    /* Flood the watched directory past max_queued_events (16384 by default):
     * two events per file. */
    int maxq = 16384;
    FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "re");
    if (q) {
        if (fscanf(q, "%d", &maxq) != 1) maxq = 16384;
        fclose(q);
    }
    char p[160];
    snprintf(p, sizeof p, "%s/flood", g_dir);
    for (int i = 0; i <= maxq / 2 + 16; i++) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(unlink(p), 0);
    }
    /* This rotation's events are lost in the overflow. */
    assert_int_equal(rename(g_log, g_rot), 0);
    write_file(g_log, "new\n");
    tp_test_sleep_ms(20);
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "new\n");
    tp_fd_release(fp, a);
    tp_fdpool_stats(fp, &st);
    assert_int_equal(st.reopened, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    unlink(g_rot);
}

static void test_deletion(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.valid_ns = 0;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    write_file(g_log, "gone\n");
    tp_fd *a, *b;
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &a), 0);
    assert_int_equal(unlink(g_log), 0);
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDONLY, 0, &b), -ENOENT);
    char buf[64];
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "gone\n");
    /* O_CREAT makes a new file; the old lease is unaffected. */
    assert_int_equal(tp_fd_acquire(fp, g_log, O_RDWR | O_CREAT, 0644, &b), 0);
    assert_int_equal(tp_fd_pwrite(b, "fresh\n", 6, 0), 6);
    read_lease(a, buf, sizeof buf);
    assert_string_equal(buf, "gone\n");
    tp_fd_release(fp, a);
    tp_fd_release(fp, b);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
    unlink(g_log);
}

/* Read from f until want bytes arrived (or 10 s), appending to out. */
static size_t follow_collect(tp_follower *f, char *out, size_t cap, size_t want) {
    size_t got = 0;
    uint64_t end = tp_now_ns() + 10 * TP_NSEC_PER_SEC;
    while (got < want && tp_now_ns() < end) {
        ssize_t n = tp_follow_read(f, out + got, cap - got - 1, 50 * TP_NSEC_PER_MSEC);
        assert_true(n >= 0);
        got += (size_t)n;
    }
    out[got] = '\0';
    return got;
}

static void test_follow_truncate_and_rename(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    write_file(g_log, "before\n");
    tp_follow_opts fo;
    tp_follow_opts_init(&fo);
    fo.poll_ns = TP_NSEC_PER_MSEC;
    fo.grace_ns = 20 * TP_NSEC_PER_MSEC;
    tp_follower *f;
    assert_int_equal(tp_follow_open(&f, fp, g_log, &fo), 0); /* starts at the end */
    char buf[256];
    assert_int_equal(tp_follow_read(f, buf, sizeof buf, 0), 0);
    append_file(g_log, "one\ntwo\n");
    assert_int_equal(follow_collect(f, buf, sizeof buf, 8), 8);
    assert_string_equal(buf, "one\ntwo\n");
    /* Truncate to 0 then write less than was read: detected. */
    assert_int_equal(truncate(g_log, 0), 0);
    append_file(g_log, "3\n");
    assert_int_equal(follow_collect(f, buf, sizeof buf, 2), 2);
    assert_string_equal(buf, "3\n");
    /* Rename rotation: the tail of the old file comes first, then the new. */
    append_file(g_log, "old-tail\n");
    assert_int_equal(rename(g_log, g_rot), 0);
    append_file(g_rot, "late\n"); /* a writer that has not reopened yet */
    append_file(g_log, "new\n");
    assert_int_equal(follow_collect(f, buf, sizeof buf, 18), 18);
    assert_string_equal(buf, "old-tail\nlate\nnew\n");
    struct tp_follow_stats st;
    tp_follow_stats(f, &st);
    assert_int_equal(st.truncations, 1);
    assert_int_equal(st.rotations, 1);
    assert_int_equal(st.bytes, 28);
    tp_follow_close(f);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    unlink(g_log);
    unlink(g_rot);
}

/* Rotations faster than the grace period: every intermediate file is
 * queued (with its lease) and read in order, none skipped. */
static void test_follow_rotations_during_grace(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    write_file(g_log, "a\n");
    tp_follow_opts fo;
    tp_follow_opts_init(&fo);
    fo.from_start = true;
    fo.grace_ns = TP_NSEC_PER_SEC; /* outlasts the polls below even on a slow machine */
    tp_follower *f;
    assert_int_equal(tp_follow_open(&f, fp, g_log, &fo), 0);
    char buf[64];
    assert_int_equal(follow_collect(f, buf, sizeof buf, 2), 2);
    assert_string_equal(buf, "a\n");
    const char *next[] = {"b\n", "c\n", "d\n"};
    for (int i = 0; i < 3; i++) {
        char rot[160];
        snprintf(rot, sizeof rot, "%s.r%d", g_log, i);
        assert_int_equal(rename(g_log, rot), 0);
        write_file(g_log, next[i]);
        /* One poll: notices the new file, returns nothing (the first file
         * is still in its grace period). */
        assert_int_equal(tp_follow_read(f, buf, sizeof buf, 0), 0);
    }
    assert_int_equal(follow_collect(f, buf, sizeof buf, 6), 6);
    assert_string_equal(buf, "b\nc\nd\n");
    struct tp_follow_stats st;
    tp_follow_stats(f, &st);
    assert_int_equal(st.rotations, 3);
    tp_follow_close(f);
    struct tp_fdpool_stats ps;
    tp_fdpool_stats(fp, &ps);
    assert_int_equal(ps.leased, 0);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -f %s.r0 %s.r1 %s.r2 %s", g_log, g_log, g_log, g_log);
    assert_int_equal(system(cmd), 0);
}

static void test_follow_missing_then_created(void **state) {
    (void)state;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    unlink(g_log);
    tp_follower *f;
    assert_int_equal(tp_follow_open(&f, fp, g_log, NULL), 0);
    char buf[64];
    assert_int_equal(tp_follow_read(f, buf, sizeof buf, 0), 0);
    write_file(g_log, "hello\n"); /* a file created later is read from its start */
    assert_int_equal(follow_collect(f, buf, sizeof buf, 6), 6);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(tp_follow_read(NULL, buf, sizeof buf, 0), -EINVAL);
    tp_follow_close(f);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    unlink(g_log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_recheck_every_acquire),
        cmocka_unit_test(test_rotation_invalidate),
        cmocka_unit_test(test_rotation_after_valid),
        cmocka_unit_test(test_rotation_inotify),
        cmocka_unit_test(test_inotify_overflow_falls_back),
        cmocka_unit_test(test_deletion),
        cmocka_unit_test(test_follow_truncate_and_rename),
        cmocka_unit_test(test_follow_rotations_during_grace),
        cmocka_unit_test(test_follow_missing_then_created),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
