/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Contract tests for include/tripool/fd.h: one test per promise that no
 * other test checks, named after the sentence it quotes.
 *
 * Index: header sentence -> the test that checks it ("here" = this file).
 *  "keyed by (path, open flags that stay with the open file ...)"
 *      fd_basic test_hit_miss_and_keys (access mode); here test_key_is_path_and_file_flags
 *  "a release gives the lease back and the descriptor stays open, idle"
 *      fd_basic test_hit_miss_and_keys
 *  "Several leases may share one descriptor (reference counted)"
 *      fd_basic test_hit_miss_and_keys, test_close_uncaches
 *  "never holds more than max_open descriptors, its inotify descriptor included"
 *      fd_basic test_bound_and_lru; fd_rotation test_rotation_inotify (stats);
 *      here test_bound_includes_inotify; stress fd_threads (sampled /proc/self/fd)
 *  "use_inotify falls back silently (stats.inotify false)"   here test_inotify_falls_back_silently
 *  "A miss with max_open open evicts the least recently used idle descriptor"
 *      fd_basic test_bound_and_lru
 *  "when every descriptor is leased the acquire waits ... or fails with -EMFILE"
 *      fd_basic test_all_leased; here test_wait_ns_option
 *  "Every descriptor that becomes idle or is closed wakes every waiting acquire"
 *      here test_every_waiter_served; fd_basic test_all_leased; fd_ctx
 *  "If open() itself fails with EMFILE/ENFILE ... closed one by one and retried"
 *      fd_bad test_emfile_from_process
 *  "an idle descriptor unused for inactive_ns is closed by the next acquire or
 *   release ... or tp_fdpool_expire()"          fd_basic test_expiry; here
 * test_idle_closed_by_calls "re-validated on acquire with stat(path) ... existing leases keep the
 * old descriptor"; "tp_fdpool_invalidate() forces the check"; "use_inotify ..." fd_rotation
 * test_rotation_*, test_deletion, test_inotify_overflow_falls_back "Every descriptor is opened with
 * O_CLOEXEC"   fd_basic test_hit_miss_and_keys "O_TRUNC and O_EXCL make the acquire open afresh
 * (never a cache hit); the new descriptor replaces the cached one"         fd_basic
 * test_pread_pwrite (O_TRUNC); here test_trunc_excl_open_afresh "O_TMPFILE is refused (-EINVAL)"
 * fd_bad test_bad_paths "The key is the string: after a chdir() ..."  here test_relative_path_key
 *  "Releasing a lease twice, or to another pool, aborts with a message"
 *      fd_bad test_double_release_aborts; here test_release_misuse_messages
 *  "max_open 0 = default: soft RLIMIT_NOFILE / 2"; "raise_nofile"
 *      fd_basic test_defaults, test_raise_nofile
 *  "-EINVAL (out NULL, max_open above 1048576)"  here test_max_open_limit
 *  "min_uses"                                    fd_basic test_min_uses
 *  "on_leak"; "destroy ... -EBUSY ... each outstanding lease stays valid"
 *      fd_bad test_destroy_with_leases; stress fd_threads test_destroy_races_releases
 *  "Threads waiting in acquire get -ESHUTDOWN first"   stress fd_threads test_destroy_wakes_waiters
 *  "-ESHUTDOWN ... to acquires while leases keep a destroyed pool alive"
 *      here test_shutdown_after_busy_destroy
 *  "failures: acquires that returned an error, except argument errors"
 *      fd_bad test_bad_paths; here test_failures_counted
 *  "-ENAMETOOLONG (path >= PATH_MAX)"            fd_bad test_bad_paths; here test_path_max_boundary
 *  "tp_fd_acquire_timeout ... 0 = fail at once with -EMFILE; -ETIMEDOUT"
 *      fd_basic test_all_leased; fd_bad test_emfile_from_process
 *  "tp_fd_acquire_ctx ... A context already done fails at once, even for a cached file"
 *      fd_ctx test_cancel_ends_wait
 *  "tp_fd_is_sequential"; "-ESPIPE (sequential handle)"   fd_basic test_sequential
 *  "tp_fd_pread: retrying short reads ... until len bytes or end of file"
 *      here test_pread_retries_short_reads; fd_basic test_pread_pwrite
 *  "tp_fd_close ... closed as soon as its last lease is released"
 *      fd_basic test_close_uncaches
 *  "tp_fdpool_invalidate ... Returns the number of entries marked, or -EINVAL"
 *      here test_invalidate_counts
 *  "tp_fdpool_expire ... Returns how many were closed"   fd_basic test_expiry
 *  follower: order across rotation, truncation, queued files
 *      fd_rotation test_follow_*, fd_logrotate
 *  "tp_follow_read ... waiting up to timeout_ns ... 0 when nothing new arrived"
 *      here test_follow_read_timeout
 */
#include "tp_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tripool/fd.h"

static char g_dir[64];

static void path_of(char *out, size_t n, int i) {
    snprintf(out, n, "%s/f%d", g_dir, i);
}

static void write_file(const char *p, const char *content) {
    FILE *f = fopen(p, "we");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/tp_fd_contract.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    for (int i = 0; i < 16; i++) {
        char p[128], c[32];
        path_of(p, sizeof p, i);
        snprintf(c, sizeof c, "file %d\n", i);
        write_file(p, c);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tp_test_rm_rf(g_dir);
}

static tp_fdpool *mk(const tp_fdpool_opts *o) {
    tp_fdpool *fp = NULL;
    assert_int_equal(tp_fdpool_create(&fp, o), 0);
    return fp;
}

static struct tp_fdpool_stats stats(tp_fdpool *fp) {
    struct tp_fdpool_stats s;
    tp_fdpool_stats(fp, &s);
    return s;
}

/* "keyed by (path, open flags that stay with the open file: access mode,
 * O_APPEND, O_NONBLOCK, ...)": those flags make another key; flags that only
 * matter at open time (O_CREAT, O_NOCTTY) do not. */
static void test_key_is_path_and_file_flags(void **state) {
    (void)state;
    tp_fdpool *fp = mk(NULL);
    char p[128];
    path_of(p, sizeof p, 1);
    tp_fd *plain, *creat, *noctty, *append, *nonblock;
    assert_int_equal(tp_fd_acquire(fp, p, O_WRONLY, 0, &plain), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_WRONLY | O_CREAT, 0644, &creat), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_WRONLY | O_NOCTTY, 0, &noctty), 0);
    assert_int_equal(tp_fd_get(creat), tp_fd_get(plain));
    assert_int_equal(tp_fd_get(noctty), tp_fd_get(plain));
    assert_int_equal(tp_fd_acquire(fp, p, O_WRONLY | O_APPEND, 0, &append), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_WRONLY | O_NONBLOCK, 0, &nonblock), 0);
    assert_int_not_equal(tp_fd_get(append), tp_fd_get(plain));
    assert_int_not_equal(tp_fd_get(nonblock), tp_fd_get(plain));
    assert_int_not_equal(tp_fd_get(nonblock), tp_fd_get(append));
    /* The flags really are on the descriptors handed out. */
    assert_true(fcntl(tp_fd_get(append), F_GETFL) & O_APPEND);
    assert_false(fcntl(tp_fd_get(plain), F_GETFL) & O_APPEND);
    assert_true(fcntl(tp_fd_get(nonblock), F_GETFL) & O_NONBLOCK);
    struct tp_fdpool_stats s = stats(fp);
    assert_int_equal(s.misses, 3);
    assert_int_equal(s.hits, 2);
    tp_fd_release(fp, plain);
    tp_fd_release(fp, creat);
    tp_fd_release(fp, noctty);
    tp_fd_release(fp, append);
    tp_fd_release(fp, nonblock);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "Flags O_TRUNC and O_EXCL make the acquire open afresh (never a cache
 * hit); the new descriptor replaces the cached one for later acquires." A
 * cache-first acquire would return the cached descriptor for O_EXCL
 * instead of open()'s -EEXIST. */
static void test_trunc_excl_open_afresh(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool *fp = mk(NULL);
    char p[128];
    snprintf(p, sizeof p, "%s/excl", g_dir);
    write_file(p, "old content\n");
    tp_fd *old, *h = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR, 0, &old), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_CREAT | O_EXCL, 0644, &h), -EEXIST);
    assert_null(h);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_TRUNC, 0, &h), 0);
    int newfd = tp_fd_get(h);
    assert_int_not_equal(newfd, tp_fd_get(old));
    assert_int_equal(tp_fd_pwrite(h, "new\n", 4, 0), 4);
    tp_fd_release(fp, h);
    /* Later plain acquires get the new descriptor; the old lease still works. */
    tp_fd *again;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR, 0, &again), 0);
    assert_int_equal(tp_fd_get(again), newfd);
    char buf[16] = {0};
    assert_int_equal(tp_fd_pread(old, buf, sizeof buf - 1, 0), 4);
    assert_string_equal(buf, "new\n");
    tp_fd_release(fp, again);
    assert_int_equal(tp__open_fd_count(), base + 2);
    tp_fd_release(fp, old); /* replaced: its last release closes it */
    assert_int_equal(tp__open_fd_count(), base + 1);
    assert_int_equal(stats(fp).open, 1);
    /* O_EXCL on a new name creates it, and is never served from the cache. */
    unlink(p);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_CREAT | O_EXCL, 0644, &h), 0);
    tp_fd_release(fp, h);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR | O_CREAT | O_EXCL, 0644, &h), -EEXIST);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
}

/* "never holds more than max_open descriptors, its inotify descriptor
 * included ... with max_open 1 inotify is not used", counted by the kernel. */
static void test_bound_includes_inotify(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.use_inotify = true;
    o.max_open = 3;
    tp_fdpool *fp = mk(&o);
    struct tp_fdpool_stats s = stats(fp);
    assert_true(s.inotify);
    assert_int_equal(s.max_open, 2);
    int most = tp__open_fd_count() - base;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 8; i++) {
            char p[128];
            path_of(p, sizeof p, i);
            tp_fd *h;
            assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0);
            int n = tp__open_fd_count() - base;
            if (n > most) most = n;
            tp_fd_release(fp, h);
        }
    }
    assert_int_equal(most, 3);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
    o.max_open = 1;
    fp = mk(&o);
    s = stats(fp);
    assert_false(s.inotify);
    assert_int_equal(s.max_open, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "use_inotify falls back silently (stats.inotify false) if inotify is
 * unavailable": here inotify_init1() fails with EMFILE because the process
 * may not open another descriptor; create still succeeds and the bound is
 * all for files. */
static void test_inotify_falls_back_silently(void **state) {
    (void)state;
    struct rlimit saved, rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest_free = 0;
    while (fcntl(lowest_free, F_GETFD) >= 0)
        lowest_free++;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.use_inotify = true;
    o.max_open = 8;
    rl = saved;
    rl.rlim_cur = (rlim_t)lowest_free; /* no descriptor can be opened */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    tp_fdpool *fp = NULL;
    int rc = tp_fdpool_create(&fp, &o);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(rc, 0);
    struct tp_fdpool_stats s = stats(fp);
    assert_false(s.inotify);
    assert_int_equal(s.max_open, 8);
    char p[128];
    path_of(p, sizeof p, 0);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), 0); /* works without */
    tp_fd_release(fp, h);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "an idle descriptor unused for inactive_ns is closed by the next acquire
 * or release": no tp_fdpool_expire() call needed; TP_FOREVER = never. */
static void test_idle_closed_by_calls(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.inactive_ns = 20 * TP_NSEC_PER_MSEC;
    tp_fdpool *fp = mk(&o);
    char p0[128], p1[128];
    path_of(p0, sizeof p0, 0);
    path_of(p1, sizeof p1, 1);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &h), 0);
    tp_fd_release(fp, h);
    tp_test_sleep_ms(60);
    assert_int_equal(tp_fd_acquire(fp, p1, O_RDONLY, 0, &h), 0); /* closes p0's */
    struct tp_fdpool_stats s = stats(fp);
    assert_int_equal(s.expired, 1);
    assert_int_equal(s.open, 1);
    assert_int_equal(tp__open_fd_count(), base + 1);
    tp_test_sleep_ms(60); /* p1 is leased: a lease is never expired */
    assert_int_equal(tp_fdpool_expire(fp), 0);
    tp_fd_release(fp, h);
    tp_test_sleep_ms(60);
    tp_fd *other;
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &other), 0);
    tp_fd_release(fp, other); /* this acquire expired p1's (idle 60 ms) */
    assert_int_equal(stats(fp).expired, 2);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    o.inactive_ns = TP_FOREVER;
    fp = mk(&o);
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &h), 0);
    tp_fd_release(fp, h);
    tp_test_sleep_ms(30);
    assert_int_equal(tp_fdpool_expire(fp), 0);
    assert_int_equal(stats(fp).open, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
}

/* "failures: acquires that returned an error, except argument errors
 * (-EINVAL, -ENAMETOOLONG); a context done before the call and -ESHUTDOWN
 * count". */
static void test_failures_counted(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 1;
    o.wait_ns = 0;
    tp_fdpool *fp = mk(&o);
    char p[PATH_MAX + 16], p1[128];
    tp_fd *h, *held;
    uint64_t n = 0;
    snprintf(p, sizeof p, "%s/missing", g_dir);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), -ENOENT);
    assert_int_equal(stats(fp).failures, ++n);
    path_of(p, sizeof p, 0);
    path_of(p1, sizeof p1, 1);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &held), 0);
    assert_int_equal(tp_fd_acquire(fp, p1, O_RDONLY, 0, &h), -EMFILE);
    assert_int_equal(stats(fp).failures, ++n);
    assert_int_equal(tp_fd_acquire_timeout(fp, p1, O_RDONLY, 0, TP_NSEC_PER_MSEC, &h), -ETIMEDOUT);
    assert_int_equal(stats(fp).failures, ++n);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    tp_ctx_cancel(c);
    h = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire_ctx(fp, c, p, O_RDONLY, 0, &h), -ECANCELED); /* cached file */
    assert_null(h);
    assert_int_equal(stats(fp).failures, ++n);
    assert_int_equal(stats(fp).hits, 0);
    tp_ctx_release(c);
    /* Argument errors are not counted. */
    assert_int_equal(tp_fd_acquire(fp, "", O_RDONLY, 0, &h), -EINVAL);
    assert_int_equal(tp_fd_acquire(fp, g_dir, O_TMPFILE | O_RDWR, 0600, &h), -EINVAL);
    memset(p, 'a', sizeof p - 1);
    p[sizeof p - 1] = '\0';
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), -ENAMETOOLONG);
    assert_int_equal(stats(fp).failures, n);
    tp_fd_release(fp, held);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "-ESHUTDOWN (tp_fdpool_destroy started: ... to acquires while leases keep
 * a destroyed pool alive)", with *out NULL; the last release then frees. */
static void test_shutdown_after_busy_destroy(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    tp_fdpool *fp = mk(NULL);
    char p[128];
    path_of(p, sizeof p, 2);
    tp_fd *held, *h = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &held), 0);
    assert_int_equal(tp_fdpool_destroy(fp), -EBUSY);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), -ESHUTDOWN); /* even a hit */
    assert_null(h);
    h = (tp_fd *)1;
    path_of(p, sizeof p, 3);
    assert_int_equal(tp_fd_acquire_timeout(fp, p, O_RDONLY, 0, 0, &h), -ESHUTDOWN);
    assert_null(h);
    char buf[16] = {0};
    assert_true(tp_fd_pread(held, buf, sizeof buf - 1, 0) > 0);
    tp_fd_release(fp, held);
    assert_int_equal(tp__open_fd_count(), base);
}

/* "when every descriptor is leased the acquire waits (up to wait_ns ...)":
 * the option, not only the _timeout variant, and never less than it. */
static void test_wait_ns_option(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 1;
    o.wait_ns = 30 * TP_NSEC_PER_MSEC;
    tp_fdpool *fp = mk(&o);
    char p0[128], p1[128];
    path_of(p0, sizeof p0, 0);
    path_of(p1, sizeof p1, 1);
    tp_fd *held, *h = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &held), 0);
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_fd_acquire(fp, p1, O_RDONLY, 0, &h), -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 30 * TP_NSEC_PER_MSEC);
    assert_null(h);
    tp_ctx *c; /* _ctx uses wait_ns too, ended by whichever comes first */
    assert_int_equal(tp_ctx_with_timeout(NULL, 10 * TP_NSEC_PER_SEC, &c), 0);
    t0 = tp_now_ns();
    assert_int_equal(tp_fd_acquire_ctx(fp, c, p1, O_RDONLY, 0, &h), -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 30 * TP_NSEC_PER_MSEC);
    assert_true(tp_now_ns() - t0 < 5 * TP_NSEC_PER_SEC);
    tp_ctx_release(c);
    assert_int_equal(stats(fp).waits, 2);
    tp_fd_release(fp, held);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

struct waiter {
    tp_fdpool *fp;
    int file;
    atomic_int done; /* 1 ok, -1 error */
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    char p[128];
    path_of(p, sizeof p, w->file);
    tp_fd *h;
    int rc = tp_fd_acquire(w->fp, p, O_RDONLY, 0, &h); /* waits without a limit */
    if (rc != 0) {
        atomic_store(&w->done, -1);
        return NULL;
    }
    char buf[32] = {0}, want[32];
    snprintf(want, sizeof want, "file %d\n", w->file);
    ssize_t n = tp_fd_pread(h, buf, sizeof buf - 1, 0);
    tp_test_sleep_ms(2);
    tp_fd_release(w->fp, h);
    atomic_store(&w->done, n > 0 && strcmp(buf, want) == 0 ? 1 : -1);
    return NULL;
}

/* "Every descriptor that becomes idle or is closed wakes every waiting
 * acquire (each looks again), so no waiter sleeps while a descriptor is
 * free for it": six waiters for six other files, two descriptors. A lost
 * wake-up leaves one asleep forever (the acquire has no limit). The bound
 * holds meanwhile. */
static void test_every_waiter_served(void **state) {
    (void)state;
    enum { W = 6 };
    int base = tp__open_fd_count();
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 2;
    tp_fdpool *fp = mk(&o);
    char p[128];
    tp_fd *held[2];
    for (int i = 0; i < 2; i++) {
        path_of(p, sizeof p, i);
        assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &held[i]), 0);
    }
    struct waiter w[W];
    pthread_t t[W];
    for (int i = 0; i < W; i++) {
        w[i] = (struct waiter){fp, 2 + i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
    }
    TP_TEST_WAIT_FOR(stats(fp).waits >= W, 10000);
    assert_int_equal(stats(fp).waits, W);
    tp_fd_release(fp, held[0]);
    tp_fd_close(fp, held[1]); /* closed, not idle: wakes too */
    int most = 0, done = 0;
    uint64_t end = tp_now_ns() + 20 * TP_NSEC_PER_SEC;
    while (done < W && tp_now_ns() < end) {
        int n = tp__open_fd_count() - base;
        if (n > most) most = n;
        done = 0;
        for (int i = 0; i < W; i++)
            done += atomic_load(&w[i].done) != 0;
        sched_yield();
    }
    assert_int_equal(done, W);
    for (int i = 0; i < W; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&w[i].done), 1);
    }
    assert_true(most <= 2);
    struct tp_fdpool_stats s = stats(fp);
    assert_true(s.peak_open <= 2);
    assert_int_equal(s.leased, 0);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    assert_int_equal(tp__open_fd_count(), base);
}

/* "tp_fdpool_invalidate: Mark cached entries of path (every flag set) ...
 * Returns the number of entries marked, or -EINVAL." */
static void test_invalidate_counts(void **state) {
    (void)state;
    tp_fdpool *fp = mk(NULL);
    char p[128], q[128];
    path_of(p, sizeof p, 4);
    path_of(q, sizeof q, 5);
    tp_fd *a, *b, *c;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    assert_int_equal(tp_fd_acquire(fp, p, O_RDWR, 0, &b), 0);
    assert_int_equal(tp_fd_acquire(fp, q, O_RDONLY, 0, &c), 0);
    tp_fd_release(fp, b); /* idle entries count too */
    assert_int_equal(tp_fdpool_invalidate(fp, p), 2);
    assert_int_equal(tp_fdpool_invalidate(fp, q), 1);
    snprintf(q, sizeof q, "%s/none", g_dir);
    assert_int_equal(tp_fdpool_invalidate(fp, q), 0);
    assert_int_equal(tp_fdpool_invalidate(fp, NULL), -EINVAL);
    assert_int_equal(tp_fdpool_invalidate(NULL, p), -EINVAL);
    tp_fd_release(fp, a);
    tp_fd_release(fp, c);
    /* Marked, unchanged files: re-validated and still hits. */
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &a), 0);
    tp_fd_release(fp, a);
    struct tp_fdpool_stats s = stats(fp);
    assert_int_equal(s.reopened, 0);
    assert_int_equal(s.hits, 1);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

typedef void (*misuse_fn)(const char *dir);

static void release_twice(const char *dir) {
    (void)dir;
    tp_fdpool *fp;
    tp_fd *h;
    if (tp_fdpool_create(&fp, NULL) != 0 || tp_fd_acquire(fp, "/dev/null", O_RDONLY, 0, &h) != 0)
        _exit(3);
    tp_fd_release(fp, h);
    tp_fd_release(fp, h);
}

static void close_twice(const char *dir) {
    (void)dir;
    tp_fdpool *fp;
    tp_fd *h;
    if (tp_fdpool_create(&fp, NULL) != 0 || tp_fd_acquire(fp, "/dev/null", O_RDONLY, 0, &h) != 0)
        _exit(3);
    tp_fd_close(fp, h);
    tp_fd_close(fp, h);
}

static void release_to_other_pool(const char *dir) {
    (void)dir;
    tp_fdpool *a, *b;
    tp_fd *h;
    if (tp_fdpool_create(&a, NULL) != 0 || tp_fdpool_create(&b, NULL) != 0 ||
        tp_fd_acquire(a, "/dev/null", O_RDONLY, 0, &h) != 0)
        _exit(3);
    tp_fd_release(b, h);
}

struct misuse_call {
    misuse_fn fn;
};

static void call_misuse(void *a) {
    ((struct misuse_call *)a)->fn(g_dir);
}

static void expect_abort(misuse_fn fn, const char *msg) {
    char out[4096];
    struct misuse_call c = {fn};
    int status = tp_test_run_child(call_misuse, &c, out, sizeof out);
    if (!tp_test_aborted(status)) fail_msg("no abort (status %d): %s", status, out);
    if (!strstr(out, msg)) fail_msg("'%s' not in: %s", msg, out);
}

/* "Releasing a lease twice, or to another pool, aborts with a message". */
static void test_release_misuse_messages(void **state) {
    (void)state;
    expect_abort(release_twice, "tp_fd_release: handle released twice");
    expect_abort(close_twice, "tp_fd_close: handle released twice");
    expect_abort(release_to_other_pool, "handle belongs to another pool");
}

/* "The key is the string: after a chdir(), a cached relative path keeps
 * naming the file it opened until its next re-validation". */
static void test_relative_path_key(void **state) {
    (void)state;
    char cwd[PATH_MAX], a[128], b[128];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(a, sizeof a, "%s/a", g_dir);
    snprintf(b, sizeof b, "%s/b", g_dir);
    assert_int_equal(mkdir(a, 0755), 0);
    assert_int_equal(mkdir(b, 0755), 0);
    char pa[160], pb[160];
    snprintf(pa, sizeof pa, "%s/rel", a);
    snprintf(pb, sizeof pb, "%s/rel", b);
    write_file(pa, "in a\n");
    write_file(pb, "in b\n");
    for (int recheck = 0; recheck < 2; recheck++) {
        tp_fdpool_opts o;
        tp_fdpool_opts_init(&o);
        o.valid_ns = recheck ? 0 : TP_FOREVER;
        tp_fdpool *fp = mk(&o);
        assert_int_equal(chdir(a), 0);
        tp_fd *h;
        char buf[16] = {0};
        assert_int_equal(tp_fd_acquire(fp, "rel", O_RDONLY, 0, &h), 0);
        tp_fd_release(fp, h);
        assert_int_equal(chdir(b), 0);
        assert_int_equal(tp_fd_acquire(fp, "rel", O_RDONLY, 0, &h), 0);
        assert_true(tp_fd_pread(h, buf, sizeof buf - 1, 0) > 0);
        tp_fd_release(fp, h);
        assert_int_equal(chdir(cwd), 0);
        assert_string_equal(buf, recheck ? "in b\n" : "in a\n");
        assert_int_equal(tp_fdpool_destroy(fp), 0);
    }
}

/* "-EINVAL (out NULL, max_open above 1048576)": the limit itself is fine. */
static void test_max_open_limit(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    tp_fdpool *fp = (tp_fdpool *)1;
    o.max_open = (1u << 20) + 1;
    assert_int_equal(tp_fdpool_create(&fp, &o), -EINVAL);
    assert_null(fp);
    o.max_open = 1u << 20;
    fp = mk(&o);
    assert_int_equal(stats(fp).max_open, 1u << 20);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "-ENAMETOOLONG (path >= PATH_MAX)": a path of PATH_MAX - 1 bytes reaches
 * open() (here ENOENT), one of PATH_MAX does not. */
static void test_path_max_boundary(void **state) {
    (void)state;
    tp_fdpool *fp = mk(NULL);
    char p[PATH_MAX + 1];
    size_t len = PATH_MAX - 1;
    for (size_t i = 0; i < len; i++) /* "/aaaa.../aaaa...": 200-byte components */
        p[i] = i % 201 == 0 ? '/' : 'a';
    p[len] = '\0';
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), -ENOENT);
    p[len] = 'a';
    p[len + 1] = '\0';
    assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &h), -ENAMETOOLONG);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

/* "tp_fd_pread: Read up to len bytes at offset off, retrying short reads
 * ... until len bytes or end of file." /proc files return at most a page
 * or so per read (a single pread() gives far less than asked). */
static void test_pread_retries_short_reads(void **state) {
    (void)state;
    const char *file = "/proc/self/smaps";
    size_t len = 8192;
    if (access("/proc/kallsyms", R_OK) == 0) {
        file = "/proc/kallsyms"; /* megabytes, stable */
        len = 65536;
    }
    int raw = open(file, O_RDONLY | O_CLOEXEC);
    assert_true(raw >= 0);
    char *one = malloc(len), *all = malloc(len);
    assert_non_null(one);
    assert_non_null(all);
    ssize_t single = pread(raw, one, len, 0);
    close(raw);
    assert_true(single > 0);
    tp_fdpool *fp = mk(NULL);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, file, O_RDONLY, 0, &h), 0);
    ssize_t got = tp_fd_pread(h, all, len, 0);
    print_message("%s: one pread() gave %zd of %zu, tp_fd_pread %zd\n", file, single, len, got);
    if ((size_t)single < len) assert_int_equal(got, (ssize_t)len); /* the point of the test */
    assert_true(got >= single);
    tp_fd_release(fp, h);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    free(one);
    free(all);
}

/* "tp_follow_read: Read new bytes, waiting up to timeout_ns for some.
 * Returns ... 0 when nothing new arrived in time": not before the timeout;
 * bytes written meanwhile end the wait early. */
struct appender {
    char path[160];
};

static void *append_later(void *arg) {
    struct appender *a = arg;
    tp_test_sleep_ms(30);
    FILE *f = fopen(a->path, "ae");
    if (f) {
        fputs("late\n", f);
        fclose(f);
    }
    return NULL;
}

static void test_follow_read_timeout(void **state) {
    (void)state;
    tp_fdpool *fp = mk(NULL);
    struct appender a;
    snprintf(a.path, sizeof a.path, "%s/follow", g_dir);
    write_file(a.path, "existing\n");
    tp_follower *f;
    assert_int_equal(tp_follow_open(&f, fp, a.path, NULL), 0); /* starts at the end */
    char buf[64];
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_follow_read(f, buf, sizeof buf, 40 * TP_NSEC_PER_MSEC), 0);
    assert_true(tp_now_ns() - t0 >= 40 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp_follow_read(f, buf, 0, 0), -EINVAL);
    assert_int_equal(tp_follow_read(NULL, buf, sizeof buf, 0), -EINVAL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_later, &a), 0);
    t0 = tp_now_ns();
    ssize_t n = tp_follow_read(f, buf, sizeof buf, 20 * TP_NSEC_PER_SEC);
    uint64_t took = tp_now_ns() - t0;
    pthread_join(t, NULL);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "late\n", 5);
    assert_true(took < 10 * TP_NSEC_PER_SEC);
    tp_follow_close(f);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_path_and_file_flags),
        cmocka_unit_test(test_trunc_excl_open_afresh),
        cmocka_unit_test(test_bound_includes_inotify),
        cmocka_unit_test(test_inotify_falls_back_silently),
        cmocka_unit_test(test_idle_closed_by_calls),
        cmocka_unit_test(test_failures_counted),
        cmocka_unit_test(test_shutdown_after_busy_destroy),
        cmocka_unit_test(test_wait_ns_option),
        cmocka_unit_test(test_every_waiter_served),
        cmocka_unit_test(test_invalidate_counts),
        cmocka_unit_test(test_release_misuse_messages),
        cmocka_unit_test(test_relative_path_key),
        cmocka_unit_test(test_max_open_limit),
        cmocka_unit_test(test_path_max_boundary),
        cmocka_unit_test(test_pread_retries_short_reads),
        cmocka_unit_test(test_follow_read_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
