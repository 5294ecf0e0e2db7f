/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Stress: THREADS threads acquire/read/release random files (ITER each)
 * from a pool whose max_open is far below the file count, while a rotator
 * renames and recreates files. Invariants: the descriptors held never exceed
 * max_open (sampled from /proc/self/fd, and checked at every acquire: the
 * distinct descriptors the threads hold leases on never exceed it), no lease
 * is handed to two threads at once (a registry of leases out), every read
 * returns the content of the file generation it leased (never another
 * file's), every waiter is woken (acquires wait at most 10 s and none may
 * fail), every acquire is a hit or a miss, nothing leaks, and destroy wakes
 * blocked waiters.
 * Usage: stress_fd_threads [THREADS [SCALE [ITER]]] */
#include "tp_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tripool/fd.h"

#define NFILES 12
#define MAX_OPEN 3

static char g_dir[64];
static unsigned g_iter = 20000;
static unsigned g_threads = 4;
static tp_fdpool *g_fp;
static atomic_bool g_stop;
static atomic_uint g_ok, g_bad, g_fails;
static atomic_int g_max_fds;
static int g_base_fds;

/* Leases held by the threads, per descriptor number, and how many distinct
 * descriptors that is: raised after an acquire, lowered before a release,
 * so it never counts more than the pool really holds. One mutex keeps a
 * descriptor's count and the distinct count consistent with each other. */
#define FD_LIMIT 4096
static pthread_mutex_t g_fd_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_fd_leases[FD_LIMIT]; /* g_fd_mu */
static int g_fds_leased;          /* g_fd_mu */
static atomic_int g_fds_leased_max;
#define LEASE_SLOTS 1024
static _Atomic(tp_fd *) g_leases_out[LEASE_SLOTS]; /* registry of leases out */

static void leased(tp_fd *h) {
    int fd = tp_fd_get(h);
    if (fd < 0 || fd >= FD_LIMIT) {
        atomic_fetch_add(&g_bad, 1);
        return;
    }
    pthread_mutex_lock(&g_fd_mu);
    if (g_fd_leases[fd]++ == 0 && ++g_fds_leased > atomic_load(&g_fds_leased_max))
        atomic_store(&g_fds_leased_max, g_fds_leased);
    pthread_mutex_unlock(&g_fd_mu);
    /* The same lease must not be out twice. */
    unsigned free_slot = LEASE_SLOTS;
    for (unsigned i = 0; i < LEASE_SLOTS; i++) {
        tp_fd *cur = atomic_load(&g_leases_out[i]);
        if (cur == h) {
            fprintf(stderr, "lease %p handed out twice\n", (void *)h);
            atomic_fetch_add(&g_bad, 1);
        }
        if (!cur && free_slot == LEASE_SLOTS) free_slot = i;
    }
    for (unsigned i = free_slot; i < LEASE_SLOTS; i++) {
        tp_fd *z = NULL;
        if (atomic_compare_exchange_strong(&g_leases_out[i], &z, h)) return;
    }
    atomic_fetch_add(&g_bad, 1); /* registry full: more leases than threads */
}

static void releasing(tp_fd *h) {
    int fd = tp_fd_get(h);
    pthread_mutex_lock(&g_fd_mu);
    if (fd >= 0 && fd < FD_LIMIT && --g_fd_leases[fd] == 0) g_fds_leased--;
    pthread_mutex_unlock(&g_fd_mu);
    for (unsigned i = 0; i < LEASE_SLOTS; i++) {
        tp_fd *cur = h;
        if (atomic_compare_exchange_strong(&g_leases_out[i], &cur, NULL)) return;
    }
    fprintf(stderr, "lease %p released but not out\n", (void *)h);
    atomic_fetch_add(&g_bad, 1);
}

static void file_path(char *out, size_t n, unsigned i) {
    snprintf(out, n, "%s/f%u", g_dir, i);
}

/* Content "f<i>:<gen>\n": a read must name the file it leased. */
static void write_gen(unsigned i, unsigned gen) {
    char p[128], tmp[160], c[32];
    file_path(p, sizeof p, i);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    int len = snprintf(c, sizeof c, "f%u:%u\n", i, gen);
    assert_int_equal(write(fd, c, (size_t)len), len);
    close(fd);
    assert_int_equal(rename(tmp, p), 0); /* rotation: a new inode at the path */
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    for (unsigned k = 0; k < g_iter; k++) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 8) % NFILES;
        char p[128];
        file_path(p, sizeof p, i);
        tp_fd *h;
        int rc = tp_fd_acquire_timeout(g_fp, p, O_RDONLY, 0, 10 * TP_NSEC_PER_SEC, &h);
        if (rc != 0) {
            atomic_fetch_add(&g_fails, 1);
            continue;
        }
        leased(h);
        char buf[32] = {0};
        ssize_t n = tp_fd_pread(h, buf, sizeof buf - 1, 0);
        unsigned fi, gen;
        if (n > 0 && sscanf(buf, "f%u:%u", &fi, &gen) == 2 && fi == i)
            atomic_fetch_add(&g_ok, 1);
        else
            atomic_fetch_add(&g_bad, 1);
        if (k % 7 == 0) sched_yield(); /* hold the lease a little longer */
        releasing(h);
        tp_fd_release(g_fp, h);
    }
    return NULL;
}

static void *rotator(void *arg) {
    (void)arg;
    unsigned gen = 1, seed = 7;
    while (!atomic_load(&g_stop)) {
        seed = seed * 1103515245u + 12345u;
        write_gen((seed >> 8) % NFILES, gen++);
        usleep(200);
    }
    return NULL;
}

static void *monitor(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        int n = tp__open_fd_count() - g_base_fds;
        int cur = atomic_load(&g_max_fds);
        if (n > cur) atomic_store(&g_max_fds, n);
        tp_test_sleep_ms(1);
    }
    return NULL;
}

static void run_stress(bool inotify) {
    atomic_store(&g_stop, false);
    atomic_store(&g_ok, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_fails, 0);
    atomic_store(&g_max_fds, 0);
    atomic_store(&g_fds_leased_max, 0);
    for (unsigned i = 0; i < NFILES; i++)
        write_gen(i, 0);
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = MAX_OPEN;
    o.valid_ns = 0; /* re-check every acquire: exercises the rotation path */
    if (inotify) {
        /* Only inotify events trigger re-validation: exercises the watch
         * bookkeeping under concurrency. Its descriptor counts in max_open
         * and is open before the baseline below. */
        o.max_open = MAX_OPEN + 1;
        o.valid_ns = TP_FOREVER;
        o.use_inotify = true;
    }
    o.inactive_ns = 5 * TP_NSEC_PER_MSEC;
    assert_int_equal(tp_fdpool_create(&g_fp, &o), 0);
    /* The rotator may hold 1 temp descriptor; the monitor's directory stream
     * is not counted by tp__open_fd_count(). */
    g_base_fds = tp__open_fd_count() + 1;

    pthread_t mon, rot, *ts = calloc(g_threads, sizeof *ts);
    assert_non_null(ts);
    assert_int_equal(pthread_create(&mon, NULL, monitor, NULL), 0);
    assert_int_equal(pthread_create(&rot, NULL, rotator, NULL), 0);
    for (unsigned t = 0; t < g_threads; t++)
        assert_int_equal(pthread_create(&ts[t], NULL, worker, (void *)(uintptr_t)(t + 1)), 0);
    for (unsigned t = 0; t < g_threads; t++)
        pthread_join(ts[t], NULL);
    atomic_store(&g_stop, true);
    pthread_join(rot, NULL);
    pthread_join(mon, NULL);
    free(ts);

    struct tp_fdpool_stats st;
    tp_fdpool_stats(g_fp, &st);
    print_message("fd stress%s: %u threads x %u: ok %u bad %u fails %u; hits %llu misses %llu "
                  "evictions %llu reopened %llu waits %llu peak_open %u max fds seen %d, "
                  "leased at once %d\n",
                  inotify ? " (inotify)" : "", g_threads, g_iter, atomic_load(&g_ok),
                  atomic_load(&g_bad), atomic_load(&g_fails), (unsigned long long)st.hits,
                  (unsigned long long)st.misses, (unsigned long long)st.evictions,
                  (unsigned long long)st.reopened, (unsigned long long)st.waits, st.peak_open,
                  atomic_load(&g_max_fds), atomic_load(&g_fds_leased_max));
    assert_int_equal(atomic_load(&g_bad), 0);
    assert_int_equal(atomic_load(&g_fails), 0);
    assert_int_equal(atomic_load(&g_ok), g_threads * g_iter);
    assert_int_equal(st.hits + st.misses, (uint64_t)g_threads * g_iter);
    assert_int_equal(st.leased, 0);
    assert_true(st.peak_open <= MAX_OPEN);
    assert_true(st.inotify == inotify);
    assert_true(atomic_load(&g_max_fds) <= MAX_OPEN);
    assert_true(atomic_load(&g_fds_leased_max) <= MAX_OPEN);
    assert_int_equal(g_fds_leased, 0);
    assert_int_equal(tp_fdpool_destroy(g_fp), 0);
    /* Everything closed, the inotify descriptor (in the baseline) too. */
    assert_int_equal(tp__open_fd_count(), g_base_fds - 1 - (inotify ? 1 : 0));
}

static void test_stress(void **state) {
    (void)state;
    run_stress(false);
}

static void test_stress_inotify(void **state) {
    (void)state;
    run_stress(true);
}

struct blocked {
    tp_fdpool *fp;
    const char *path;
    int rc;
};

static void *blocked_main(void *arg) {
    struct blocked *b = arg;
    tp_fd *h;
    b->rc = tp_fd_acquire(b->fp, b->path, O_RDONLY, 0, &h); /* waits forever */
    if (b->rc == 0) tp_fd_release(b->fp, h);
    return NULL;
}

static void test_destroy_wakes_waiters(void **state) {
    (void)state;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 1;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    char p0[128], p1[128];
    file_path(p0, sizeof p0, 0);
    file_path(p1, sizeof p1, 1);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire(fp, p0, O_RDONLY, 0, &h), 0);
    struct blocked b[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        b[i] = (struct blocked){fp, p1, 1};
        assert_int_equal(pthread_create(&t[i], NULL, blocked_main, &b[i]), 0);
    }
    struct tp_fdpool_stats st;
    TP_TEST_WAIT_FOR((tp_fdpool_stats(fp, &st), st.waits == 3), 10000);
    assert_int_equal(st.waits, 3);
    /* Destroy with our lease out: waiters get -ESHUTDOWN, destroy -EBUSY. */
    assert_int_equal(tp_fdpool_destroy(fp), -EBUSY);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(b[i].rc, -ESHUTDOWN);
    }
    tp_fd_release(fp, h); /* frees the pool */
}

struct racer {
    tp_fdpool *fp;
    tp_fd *h;
    unsigned delay_us;
};

static void *racer_main(void *arg) {
    struct racer *r = arg;
    usleep(r->delay_us);
    char buf[16];
    assert_true(tp_fd_pread(r->h, buf, sizeof buf, 0) > 0); /* still valid */
    tp_fd_release(r->fp, r->h);
    return NULL;
}

/* Acquires in a loop (different files, so they open and evict) until the
 * pool is destroyed. Holds its own lease meanwhile, so the pool outlives
 * its calls; the release of that lease may be the one that frees it. */
static void *acquirer_main(void *arg) {
    struct racer *r = arg;
    unsigned i = 0;
    for (;;) {
        char p[128];
        file_path(p, sizeof p, 2 + i++ % (NFILES - 2));
        tp_fd *h;
        int rc = tp_fd_acquire(r->fp, p, O_RDONLY, 0, &h);
        if (rc == -ESHUTDOWN) break;
        assert_int_equal(rc, 0);
        tp_fd_release(r->fp, h);
    }
    tp_fd_release(r->fp, r->h);
    return NULL;
}

/* Releases racing with destroy: whichever finishes last frees the pool,
 * exactly once (ASan would see a use after free or a leak), and every
 * descriptor is closed at the end. */
static void test_destroy_races_releases(void **state) {
    (void)state;
    int base = tp__open_fd_count();
    enum { NR = 5 }; /* the last one is the acquirer */
    unsigned rounds = tp_test_scale(200);
    int busy = 0;
    for (unsigned k = 0; k < rounds; k++) {
        tp_fdpool *fp;
        assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
        struct racer r[NR];
        pthread_t t[NR];
        for (int i = 0; i < NR; i++) {
            char p[128];
            file_path(p, sizeof p, (unsigned)i % 2);
            r[i].fp = fp;
            r[i].delay_us = (k * 7 + (unsigned)i * 13) % 50;
            assert_int_equal(tp_fd_acquire(fp, p, O_RDONLY, 0, &r[i].h), 0);
        }
        for (int i = 0; i < NR; i++)
            assert_int_equal(
                pthread_create(&t[i], NULL, i == NR - 1 ? acquirer_main : racer_main, &r[i]), 0);
        usleep(k % 40);
        int rc = tp_fdpool_destroy(fp);
        /* -EBUSY, or 0 when every lease came back while destroy waited for
         * the acquirer to leave (then destroy, not a release, frees). */
        assert_true(rc == 0 || rc == -EBUSY);
        busy += rc == -EBUSY;
        for (int i = 0; i < NR; i++)
            pthread_join(t[i], NULL);
    }
    print_message("destroy raced releases %u times, %d of them with leases out\n", rounds, busy);
    assert_int_equal(tp__open_fd_count(), base);
}

int main(int argc, char **argv) {
    if (argc > 1) g_threads = (unsigned)atoi(argv[1]);
    unsigned scale = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    if (argc > 3) g_iter = (unsigned)atoi(argv[3]);
    if (g_threads == 0) g_threads = 1;
    g_iter = tp_test_scale(g_iter * (scale ? scale : 1));
    snprintf(g_dir, sizeof g_dir, "/tmp/tp_fd_stress.XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
        cmocka_unit_test(test_stress_inotify),
        cmocka_unit_test(test_destroy_wakes_waiters),
        cmocka_unit_test(test_destroy_races_releases),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (tp_test_rm_rf(g_dir) != 0) rc = 1;
    return rc;
}
