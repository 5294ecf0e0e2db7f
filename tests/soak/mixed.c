/* SPDX-License-Identifier: MIT */
/*
 * Soak: SECONDS of mixed work in one process, looking for slow leaks.
 *
 * Four driver threads loop, each creating and destroying its objects every
 * iteration:
 *   pool    a task pool (random workers, queue_cap, nonblocking, watchdog)
 *           fed plain tasks, futures, a group (one failing in some rounds),
 *           tasks under contexts with short deadlines and a cancelled
 *           parent, a resize mid-way; then wait_idle, close, destroy
 *   buf     a timer service and a buffer pool ticking on it (aging), with
 *           three threads trading stamped buffers through a shared stack
 *           (got on one thread, put on another) under an in-use cap
 *   fd      an fd pool with max_open 8 over 40 files, three threads leasing
 *           random files and checking their content while the driver
 *           rotates files (rename of a new version over the old one)
 *   engine  two engines: compress (a deadline cancels it in some rounds),
 *           tp_file_chunks (CRC-32C of every chunk combined = reference),
 *           decompress of every published .zst, compared with its source
 * Invariants checked every iteration: no task lost or run twice, stats add
 * up, stamps intact, no buffer outstanding at the end, fd content matches its
 * path, peak open <= max_open, round trips byte-exact, no temp file left.
 *
 * Leaks: every `interval` seconds the monitor pauses the drivers between
 * iterations (so no pool exists) and samples RSS (/proc/self/statm; one
 * malloc arena, trimmed before each sample, so it follows live memory
 * rather than glibc's arena layout), open
 * descriptors (/proc/self/fd) and threads (/proc/self/task). After the
 * warm-up it fits a least-squares line per metric over time and fails when a
 * slope exceeds its bound (per minute): RSS 256 KiB, fds 0.5, threads 0.5.
 * Sampling at quiescent points makes fds and threads exact (slope 0 unless
 * something leaks). Under TSan/ASan the RSS bound is reported, not enforced
 * (their shadow memory and quarantine grow by design; ASan's leak check at
 * exit covers memory there).
 *
 * --leak mem|fd|thread injects one leak per iteration (a 64 B buffer never
 * put, a lease never released, a timer service never destroyed) to show the
 * bounds catch it: the run must then fail.
 *
 * Usage: soak_mixed [SECONDS] [-v] [--leak KIND]   (default 120 s; -v prints samples)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tripool.h"
#include "tripool/buf.h"
#include "tripool/engine.h"
#include "tripool/fd.h"
#include "tripool/pool.h"
#include "tripool/timer.h"

#if defined(TP_SANITIZER_THREAD) || defined(TP_SANITIZER_ADDRESS)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "soak: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "soak: %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__,  \
                    #a, a_, #b, b_);                                                               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum leak_kind { LEAK_NONE, LEAK_MEM, LEAK_FD, LEAK_THREAD };
static enum leak_kind g_leak = LEAK_NONE;
static bool g_verbose; /* -v: print every sample */
static char g_dir[64];

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void sleep_us(unsigned us) {
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- pause protocol: the monitor samples while every driver is parked ---- */

enum { D_POOL, D_BUF, D_FD, D_ENGINE, NDRIVERS };
static const char *g_driver_name[NDRIVERS] = {"pool", "buf", "fd", "engine"};
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_pause, g_stop;
static unsigned g_parked;
static _Atomic uint64_t g_iters[NDRIVERS];

/* Called between iterations; returns false when the run is over. */
static bool driver_checkpoint(void) {
    pthread_mutex_lock(&g_mu);
    if (g_pause && !g_stop) {
        g_parked++;
        pthread_cond_broadcast(&g_cv);
        while (g_pause && !g_stop)
            pthread_cond_wait(&g_cv, &g_mu);
        g_parked--;
    }
    bool go = !g_stop;
    pthread_mutex_unlock(&g_mu);
    return go;
}

/* ---- pool driver ---------------------------------------------------------- */

#define NTASKS 600
static _Atomic uint8_t g_ran[NTASKS];
static _Atomic uint64_t g_runs;

static int task_fn(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    CHECK_EQ(atomic_fetch_add(&g_ran[i], 1), 0); /* never run twice */
    atomic_fetch_add(&g_runs, 1);
    if (i % 37 == 0) sleep_us(200 + (unsigned)(i % 5) * 100);
    if (i % 101 == 0 && tp_ctx_done(tp_task_ctx())) return tp_ctx_err(tp_task_ctx());
    return (int)(i & 0xffff);
}

static int fail_fn(void *arg) {
    task_fn(arg);
    return -EIO;
}

static void on_stuck(const char *label, unsigned worker, uint64_t ns, void *arg) {
    (void)label, (void)worker, (void)ns;
    atomic_fetch_add((_Atomic uint64_t *)arg, 1);
}

static void pool_iteration(uint64_t *r) {
    for (unsigned i = 0; i < NTASKS; i++)
        atomic_store(&g_ran[i], 0);
    atomic_store(&g_runs, 0);
    _Atomic uint64_t stuck = 0;

    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 1 + (unsigned)(rnd(r) % 4);
    o.min_workers = (unsigned)(rnd(r) % 2);
    o.queue_cap = 4 + (size_t)(rnd(r) % 128);
    o.idle_timeout_ns = (1 + rnd(r) % 20) * TP_NSEC_PER_MSEC;
    o.nonblocking = rnd(r) % 4 == 0;
    o.fifo = rnd(r) % 3 == 0;
    o.prealloc = rnd(r) % 5 == 0;
    if (rnd(r) % 4 == 0) {
        o.stuck_threshold_ns = 100 * TP_NSEC_PER_USEC;
        o.on_stuck = on_stuck;
        o.on_stuck_arg = &stuck;
    }
    o.name = "soak";
    tp_pool *p;
    CHECK_EQ(tp_pool_create(&p, &o), 0);

    tp_ctx *parent;
    CHECK_EQ(tp_ctx_with_cancel(NULL, &parent), 0);
    tp_group *g;
    bool group_fails = rnd(r) % 3 == 0;
    CHECK_EQ(tp_group_create(p, parent, 1 + (unsigned)(rnd(r) % 3), &g), 0);

    int8_t kind[NTASKS]; /* -1 refused; 0 plain; 1 ctx; 2 future; 3 group */
    tp_future *fut[NTASKS] = {0};
    tp_ctx *dl[8] = {0};
    unsigned ndl = 0;
    uint64_t accepted = 0;
    bool group_failed = false, parent_cancelled = false;
    for (unsigned i = 0; i < NTASKS; i++) {
        void *arg = (void *)(uintptr_t)i;
        int rc;
        if (i == NTASKS / 2) CHECK_EQ(tp_pool_resize(p, 1 + (unsigned)(rnd(r) % 6)), 0);
        if (i == NTASKS * 3 / 4 && rnd(r) % 2) {
            tp_ctx_cancel(parent);
            parent_cancelled = true;
        }
        switch (rnd(r) % 8) {
        case 0:
        case 1:
        case 2:
            kind[i] = 0;
            rc = rnd(r) % 2 ? tp_submit(p, task_fn, arg)
                            : tp_submit_timeout(p, task_fn, arg, 50 * TP_NSEC_PER_USEC);
            break;
        case 3: { /* under a short deadline, child of the maybe-cancelled parent */
            kind[i] = 1;
            if (ndl < 8 && rnd(r) % 8 == 0)
                CHECK_EQ(tp_ctx_with_timeout(parent, (rnd(r) % 500) * TP_NSEC_PER_USEC, &dl[ndl++]),
                         0);
            tp_ctx *c = ndl ? dl[ndl - 1] : parent;
            rc = tp_submit_ctx(p, c, task_fn, arg);
            break;
        }
        case 4:
        case 5: {
            kind[i] = 2;
            tp_ctx *c = ndl && rnd(r) % 2 ? dl[ndl - 1] : NULL;
            tp_task_opts to;
            tp_task_opts_init(&to);
            to.fn = task_fn;
            to.arg = arg;
            to.ctx = c;
            to.label = "soak-future";
            to.future = &fut[i];
            rc = tp_submit_ex(p, &to);
            CHECK(rc == 0 ? fut[i] != NULL : fut[i] == NULL);
            break;
        }
        default:
            kind[i] = 3;
            bool f = group_fails && i % 50 == 7;
            rc = tp_group_submit(g, f ? fail_fn : task_fn, arg);
            if (rc == 0 && f) group_failed = true;
            break;
        }
        if (rc != 0) {
            CHECK(rc == -EAGAIN || rc == -ETIMEDOUT || rc == -ECANCELED);
            kind[i] = -1;
        } else {
            accepted++;
        }
    }
    /* Futures: a result is the task's value; an error means it never ran. */
    for (unsigned i = 0; i < NTASKS; i++) {
        if (kind[i] != 2) continue;
        int res = -1;
        int rc = tp_future_wait(fut[i], TP_FOREVER, &res);
        if (rc == 0) {
            CHECK(tp_future_done(fut[i]));
            CHECK(res == (int)i || (i % 101 == 0 && res < 0));
        } else {
            CHECK(rc == -ETIMEDOUT || rc == -ECANCELED);
            CHECK_EQ(atomic_load(&g_ran[i]), 0);
        }
        tp_future_release(fut[i]);
    }
    int grc = tp_group_wait(g, TP_FOREVER);
    if (group_failed && !parent_cancelled)
        CHECK_EQ(grc, -EIO); /* the first error: the failed task's */
    else if (group_failed)
        CHECK(grc == -EIO || grc == -ECANCELED);
    else
        CHECK(grc == 0 || grc == -ECANCELED);
    tp_group_destroy(g);
    CHECK_EQ(tp_pool_wait_idle(p, TP_FOREVER), 0);
    CHECK_EQ(tp_pool_close(p, TP_FOREVER), 0);
    struct tp_pool_stats st;
    tp_pool_stats(p, &st);
    CHECK_EQ(st.workers_running, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.submitted, accepted);
    CHECK_EQ(st.completed + st.canceled, st.submitted);
    CHECK_EQ(st.completed, atomic_load(&g_runs));
    for (unsigned i = 0; i < NTASKS; i++) {
        if (kind[i] == -1) CHECK_EQ(atomic_load(&g_ran[i]), 0);
        if (kind[i] == 0) CHECK_EQ(atomic_load(&g_ran[i]), 1); /* accepted, no ctx: ran */
    }
    CHECK_EQ(tp_submit(p, task_fn, (void *)(uintptr_t)0), -ESHUTDOWN);
    tp_pool_destroy(p);
    for (unsigned i = 0; i < ndl; i++)
        tp_ctx_release(dl[i]);
    tp_ctx_release(parent);
}

/* ---- buffer pool driver ------------------------------------------------------ */

#define XCHG 16
struct stamp {
    uint64_t owner, seq, cap;
};
struct buf_shared {
    tp_bufpool *bp;
    pthread_mutex_t mu;
    tp_buf *stack[XCHG];
    struct stamp st[XCHG];
    unsigned n;
    unsigned rounds;
};

static void stamp_buf(tp_buf *b, struct stamp s) {
    memcpy(b->data, &s, sizeof s);
    memcpy(b->data + b->cap - sizeof s, &s, sizeof s);
}

static void check_buf(tp_buf *b, struct stamp s) {
    struct stamp a, z;
    memcpy(&a, b->data, sizeof a);
    memcpy(&z, b->data + b->cap - sizeof z, sizeof z);
    CHECK(memcmp(&a, &s, sizeof s) == 0 && memcmp(&z, &s, sizeof s) == 0);
    CHECK_EQ(b->cap, s.cap);
}

/* Take one buffer off the exchange (someone else's, often) and put it. */
static bool buf_pop_put(struct buf_shared *sh) {
    pthread_mutex_lock(&sh->mu);
    if (sh->n == 0) {
        pthread_mutex_unlock(&sh->mu);
        return false;
    }
    sh->n--;
    tp_buf *b = sh->stack[sh->n];
    struct stamp s = sh->st[sh->n];
    pthread_mutex_unlock(&sh->mu);
    check_buf(b, s);
    tp_buf_put(sh->bp, b);
    return true;
}

struct buf_worker {
    struct buf_shared *sh;
    uint64_t id, seed;
};

static void *buf_worker(void *arg) {
    struct buf_worker *w = arg;
    struct buf_shared *sh = w->sh;
    for (unsigned i = 0; i < sh->rounds; i++) {
        uint64_t v = rnd(&w->seed) % 100;
        size_t sz = v < 70   ? 24 + (size_t)(rnd(&w->seed) % 4096)
                    : v < 97 ? 24 + (size_t)(rnd(&w->seed) % 65536)
                             : (size_t)(rnd(&w->seed) % (512u << 10)) + 24;
        tp_buf *b = NULL;
        int rc;
        if (i % 5 == 0) {
            tp_ctx *c;
            CHECK_EQ(tp_ctx_with_timeout(NULL, 2 * TP_NSEC_PER_MSEC, &c), 0);
            rc = tp_buf_get_ctx(sh->bp, sz, c, &b);
            tp_ctx_release(c);
        } else {
            rc = tp_buf_get_timeout(sh->bp, sz, 2 * TP_NSEC_PER_MSEC, &b);
        }
        if (rc != 0) { /* over the in-use cap: give one back and go on */
            CHECK(rc == -ETIMEDOUT || rc == -EAGAIN);
            buf_pop_put(sh);
            continue;
        }
        CHECK(b->cap >= sz && b->len == 0);
        struct stamp s = {w->id, i, b->cap};
        stamp_buf(b, s);
        pthread_mutex_lock(&sh->mu);
        bool pushed = sh->n < XCHG;
        if (pushed) {
            sh->stack[sh->n] = b;
            sh->st[sh->n] = s;
            sh->n++;
        }
        pthread_mutex_unlock(&sh->mu);
        if (!pushed) {
            check_buf(b, s);
            tp_buf_put(sh->bp, b);
        }
        if (rnd(&w->seed) % 2) buf_pop_put(sh);
    }
    return NULL;
}

static void buf_iteration(uint64_t *r) {
    tp_timers *tm;
    CHECK_EQ(tp_timers_create(&tm, NULL), 0);
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = (size_t)(256 + rnd(r) % 2048) << 10;
    o.max_inuse = (size_t)2 << 20;
    o.tick_interval_ns = (1 + rnd(r) % 5) * TP_NSEC_PER_MSEC;
    o.tick_ops = 64 + rnd(r) % 1024;
    o.timers = tm;
    o.thread_cache = rnd(r) % 4 != 0;
    o.zero_on_get = rnd(r) % 8 == 0;
    o.name = "soak";
    struct buf_shared sh = {.mu = PTHREAD_MUTEX_INITIALIZER, .rounds = 2000};
    CHECK_EQ(tp_bufpool_create(&sh.bp, &o), 0);
    if (rnd(r) % 2) CHECK_EQ(tp_bufpool_prewarm(sh.bp, 4096, 8, rnd(r) % 2), 0);
    pthread_t th[3];
    struct buf_worker w[3];
    for (unsigned i = 0; i < 3; i++) {
        w[i] = (struct buf_worker){&sh, i + 1, rnd(r) | 1};
        CHECK_EQ(pthread_create(&th[i], NULL, buf_worker, &w[i]), 0);
    }
    for (unsigned i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    while (buf_pop_put(&sh)) {
    }
    if (g_leak == LEAK_MEM) { /* injected: one buffer of the smallest class (64 B) never put */
        tp_buf *b = tp_buf_get(sh.bp, 1);
        CHECK(b != NULL);
        memset(b->data, 1, b->cap);
    }
    tp_bufpool_tick(sh.bp);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(sh.bp, &s);
    /* exact on a quiet pool, also while the timer's aging tick runs */
    if (g_leak != LEAK_MEM) CHECK_EQ(tp_bufpool_outstanding(sh.bp), 0);
    CHECK(s.total.gets == s.total.puts + (g_leak == LEAK_MEM));
    CHECK(s.peak_retained <= o.max_retained);
    CHECK(s.ticks >= 1);
    tp_bufpool_destroy(sh.bp);
    if (g_leak != LEAK_THREAD) tp_timers_destroy(tm); /* injected: service never destroyed */
    pthread_mutex_destroy(&sh.mu);
}

/* ---- fd pool driver ---------------------------------------------------------- */

#define NFILES 40
#define FSIZE 4096
#define MAX_OPEN 8
static _Atomic uint32_t g_gen[NFILES];

struct rec {
    uint32_t idx, gen;
};

static void fd_path(char *out, size_t n, unsigned i, const char *suffix) {
    snprintf(out, n, "%s/fd/f%02u%s", g_dir, i, suffix);
}

/* Write version gen of file i under a temporary name, then rename it over
 * the path (rotation: the old inode lives on in leases). */
static void fd_write(unsigned i, uint32_t gen) {
    char tmp[128], path[128];
    fd_path(tmp, sizeof tmp, i, ".new");
    fd_path(path, sizeof path, i, "");
    struct rec rec[FSIZE / sizeof(struct rec)];
    for (size_t k = 0; k < FSIZE / sizeof(struct rec); k++)
        rec[k] = (struct rec){i, gen};
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, rec, sizeof rec), sizeof rec);
    close(fd);
    atomic_store(&g_gen[i], gen);
    CHECK_EQ(rename(tmp, path), 0);
}

struct fd_worker {
    tp_fdpool *fp;
    uint64_t seed;
    atomic_bool *stop;
    uint64_t leases; /* acquires that succeeded */
};

static void *fd_worker(void *arg) {
    struct fd_worker *w = arg;
    struct rec rec[FSIZE / sizeof(struct rec)];
    for (unsigned n = 0; n < 64 || !atomic_load(w->stop); n++) {
        unsigned i = (unsigned)(rnd(&w->seed) % NFILES);
        char path[128];
        fd_path(path, sizeof path, i, "");
        tp_fd *h;
        int rc;
        if (rnd(&w->seed) % 4 == 0) {
            tp_ctx *c;
            CHECK_EQ(tp_ctx_with_timeout(NULL, 5 * TP_NSEC_PER_MSEC, &c), 0);
            rc = tp_fd_acquire_ctx(w->fp, c, path, O_RDONLY, 0, &h);
            tp_ctx_release(c);
            if (rc == -ETIMEDOUT) continue;
        } else {
            rc = tp_fd_acquire(w->fp, path, O_RDONLY, 0, &h);
        }
        CHECK_EQ(rc, 0);
        w->leases++;
        uint32_t gen_max = atomic_load(&g_gen[i]);
        CHECK_EQ(tp_fd_pread(h, rec, sizeof rec, 0), sizeof rec);
        for (size_t k = 0; k < FSIZE / sizeof(struct rec); k++) {
            CHECK_EQ(rec[k].idx, i);
            CHECK_EQ(rec[k].gen, rec[0].gen); /* one version, whole */
        }
        CHECK(rec[0].gen <= gen_max);
        if (rnd(&w->seed) % 16 == 0)
            tp_fd_close(w->fp, h);
        else
            tp_fd_release(w->fp, h);
    }
    return NULL;
}

static void fd_iteration(uint64_t *r) {
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = MAX_OPEN;
    o.valid_ns = rnd(r) % 2 ? 0 : TP_NSEC_PER_MSEC;
    o.inactive_ns = (1 + rnd(r) % 50) * TP_NSEC_PER_MSEC;
    o.use_inotify = rnd(r) % 2;
    o.min_uses = 1 + (unsigned)(rnd(r) % 2);
    tp_fdpool *fp;
    CHECK_EQ(tp_fdpool_create(&fp, &o), 0);
    atomic_bool stop = false;
    pthread_t th[3];
    struct fd_worker w[3];
    for (unsigned i = 0; i < 3; i++) {
        w[i] = (struct fd_worker){fp, rnd(r) | 1, &stop, 0};
        CHECK_EQ(pthread_create(&th[i], NULL, fd_worker, &w[i]), 0);
    }
    for (unsigned k = 0; k < 20; k++) { /* rotate while they read */
        unsigned i = (unsigned)(rnd(r) % NFILES);
        fd_write(i, atomic_load(&g_gen[i]) + 1);
        if (k % 7 == 0) {
            char path[128];
            fd_path(path, sizeof path, i, "");
            CHECK(tp_fdpool_invalidate(fp, path) >= 0);
        }
        sleep_us(1000);
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    if (g_leak == LEAK_FD) { /* injected: one lease never released */
        char path[128];
        tp_fd *h;
        fd_path(path, sizeof path, (unsigned)(rnd(r) % NFILES), "");
        CHECK_EQ(tp_fd_acquire(fp, path, O_RDONLY, 0, &h), 0);
    }
    tp_fdpool_expire(fp);
    struct tp_fdpool_stats s;
    tp_fdpool_stats(fp, &s);
    CHECK(s.peak_open <= MAX_OPEN);
    CHECK_EQ(s.leased, g_leak == LEAK_FD);
    uint64_t leases = 0;
    for (unsigned i = 0; i < 3; i++)
        leases += w[i].leases;
    CHECK(leases > 0 && s.hits + s.misses >= leases);
    CHECK_EQ(tp_fdpool_destroy(fp), g_leak == LEAK_FD ? -EBUSY : 0);
}

/* ---- engine driver --------------------------------------------------------- */

#define ECHUNK (16u << 10)
#define NEFILES 8
static const size_t g_esize[NEFILES] = {0,          1,      ECHUNK - 1, ECHUNK,
                                        ECHUNK + 1, 100000, 300000,     700001};
static unsigned char *g_edata[NEFILES];
static uint32_t g_ecrc[NEFILES];

static void eng_path(char *out, size_t n, const char *sub, unsigned i, const char *suffix) {
    snprintf(out, n, "%s/%s/e%u%s", g_dir, sub, i, suffix);
}

static void eng_setup(void) {
    uint64_t s = 99;
    for (unsigned i = 0; i < NEFILES; i++) {
        size_t n = g_esize[i];
        g_edata[i] = malloc(n + 1);
        CHECK(g_edata[i] != NULL);
        for (size_t b = 0; b < n; b++) {
            uint64_t v = rnd(&s);
            g_edata[i][b] = i % 2 ? (unsigned char)v /* random */
                                  : (v % 19 == 0 ? '\n' : (unsigned char)('a' + v % 7));
        }
        g_ecrc[i] = tp_crc32c(0, g_edata[i], n);
        char p[128];
        eng_path(p, sizeof p, "src", i, "");
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(write(fd, g_edata[i], n), n);
        close(fd);
    }
}

static bool same_as(const char *path, unsigned i) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    unsigned char *b = malloc(g_esize[i] + 2);
    CHECK(b != NULL);
    ssize_t n = read(fd, b, g_esize[i] + 1);
    close(fd);
    bool ok = n == (ssize_t)g_esize[i] && memcmp(b, g_edata[i], g_esize[i]) == 0;
    free(b);
    return ok;
}

struct chunks {
    uint32_t crc[64];
    size_t len[64];
    _Atomic unsigned calls;
};

static int chunk_fn(void *arg, uint64_t index, uint64_t offset, const void *data, size_t len) {
    struct chunks *c = arg;
    CHECK(index < 64 && offset == index * ECHUNK);
    c->crc[index] = tp_crc32c(0, data, len);
    c->len[index] = len;
    atomic_fetch_add(&c->calls, 1);
    return 0;
}

struct eng_count {
    unsigned ok, failed;
};

static void on_result(void *arg, const tp_file_result *res) {
    struct eng_count *c = arg;
    if (res->err == 0)
        c->ok++;
    else
        c->failed++;
}

/* No file in dir other than the sources (and .zst when allow_zst). */
static unsigned count_stray(const char *sub, bool allow_zst) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, sub);
    DIR *d = opendir(p);
    CHECK(d != NULL);
    unsigned stray = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.') continue;
        size_t l = strlen(n);
        bool src = n[0] == 'e' && l == 2;
        bool zst = l == 6 && strcmp(n + 2, ".zst") == 0;
        if (!src && !(zst && allow_zst)) {
            fprintf(stderr, "soak: stray file %s/%s\n", p, n);
            stray++;
        }
    }
    closedir(d);
    return stray;
}

static void engine_iteration(uint64_t *r) {
    bool cancel = rnd(r) % 4 == 0;
    tp_ctx *dl = NULL;
    if (cancel) CHECK_EQ(tp_ctx_with_timeout(NULL, (rnd(r) % 3000) * TP_NSEC_PER_USEC, &dl), 0);
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 1 + (unsigned)(rnd(r) % 3);
    o.chunk_size = ECHUNK;
    o.max_mem = (size_t)256 << 10;
    o.max_open = 1 + (unsigned)(rnd(r) % 4);
    o.ctx = dl;
    tp_engine *e;
    CHECK_EQ(tp_engine_create(&e, &o), 0);

    /* compress src/e* -> src/e*.zst */
    const char *paths[NEFILES];
    char pbuf[NEFILES][128];
    for (unsigned i = 0; i < NEFILES; i++) {
        eng_path(pbuf[i], sizeof pbuf[i], "src", i, "");
        paths[i] = pbuf[i];
    }
    struct eng_count cc = {0};
    tp_job j = {.op = TP_OP_COMPRESS,
                .level = 1 + (int)(rnd(r) % 3),
                .no_fsync = true,
                .on_result = on_result,
                .arg = &cc};
    int rc = tp_engine_run(e, &j, paths, NEFILES);
    if (cancel)
        CHECK(rc == 0 || rc == 1 || rc == -ECANCELED || rc == -ETIMEDOUT);
    else {
        CHECK_EQ(rc, 0);
        CHECK_EQ(cc.ok, NEFILES);
    }
    /* chunks of the largest file, combined, give its CRC */
    if (!cancel) {
        struct chunks ch = {0};
        unsigned big = NEFILES - 1;
        CHECK_EQ(tp_file_chunks(e, paths[big], chunk_fn, &ch), 0);
        unsigned n = (unsigned)((g_esize[big] + ECHUNK - 1) / ECHUNK);
        CHECK_EQ(atomic_load(&ch.calls), n);
        uint32_t crc = 0;
        for (unsigned k = 0; k < n; k++)
            crc = k ? tp_crc32c_combine(crc, ch.crc[k], ch.len[k]) : ch.crc[0];
        CHECK_EQ(crc, g_ecrc[big]);
    }
    struct tp_engine_stats es;
    tp_engine_stats(e, &es);
    CHECK(es.mem_peak <= es.mem_cap && es.open_peak <= es.open_cap);
    tp_engine_destroy(e);
    if (dl) tp_ctx_release(dl);
    CHECK_EQ(count_stray("src", true), 0); /* no temp file left, also after a cancel */

    /* move every published .zst to rt/ and decompress there (--rm) */
    const char *zpaths[NEFILES];
    char zbuf[NEFILES][128];
    unsigned nz = 0;
    for (unsigned i = 0; i < NEFILES; i++) {
        char from[128];
        eng_path(from, sizeof from, "src", i, ".zst");
        eng_path(zbuf[nz], sizeof zbuf[nz], "rt", i, ".zst");
        if (rename(from, zbuf[nz]) == 0) {
            zpaths[nz] = zbuf[nz];
            nz++;
        } else {
            CHECK(errno == ENOENT && cancel);
        }
    }
    if (nz) {
        tp_engine_opts_init(&o);
        o.workers = 2;
        o.chunk_size = ECHUNK;
        o.max_mem = (size_t)256 << 10;
        o.max_open = 2;
        CHECK_EQ(tp_engine_create(&e, &o), 0);
        struct eng_count dc = {0};
        tp_job d = {.op = TP_OP_DECOMPRESS,
                    .remove_src = true,
                    .no_fsync = true,
                    .on_result = on_result,
                    .arg = &dc};
        CHECK_EQ(tp_engine_run(e, &d, zpaths, nz), 0);
        CHECK_EQ(dc.ok, nz);
        tp_engine_destroy(e);
    }
    CHECK_EQ(count_stray("rt", false), 0);
    for (unsigned i = 0; i < NEFILES; i++) {
        char p[128];
        eng_path(p, sizeof p, "rt", i, "");
        if (access(p, F_OK) != 0) continue;
        CHECK(same_as(p, i)); /* round trip byte-exact */
        CHECK_EQ(unlink(p), 0);
    }
}

/* ---- drivers and monitor ----------------------------------------------------- */

static void *driver(void *arg) {
    unsigned d = (unsigned)(uintptr_t)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (d + 1);
    while (driver_checkpoint()) {
        switch (d) {
        case D_POOL:
            pool_iteration(&seed);
            break;
        case D_BUF:
            buf_iteration(&seed);
            break;
        case D_FD:
            fd_iteration(&seed);
            break;
        default:
            engine_iteration(&seed);
            break;
        }
        atomic_fetch_add(&g_iters[d], 1);
    }
    return NULL;
}

static long count_dir(const char *path) {
    DIR *d = opendir(path);
    CHECK(d != NULL);
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

struct sample {
    double t_min; /* minutes since start */
    double rss_kib, fds, threads;
};

static struct sample take_sample(uint64_t t0) {
    /* Give freed heap pages back first, so RSS follows live memory, not
     * where glibc's arenas happen to stand (a leak stays: trim only
     * returns free memory). */
    malloc_trim(0);
    struct sample s;
    s.t_min = (double)(tp_now_ns() - t0) / 60e9;
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    CHECK(f != NULL);
    CHECK_EQ(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    s.rss_kib = (double)res * (double)sysconf(_SC_PAGESIZE) / 1024.0;
    s.fds = (double)count_dir("/proc/self/fd") - 1; /* the listing's own */
    s.threads = (double)count_dir("/proc/self/task");
    return s;
}

/* Least-squares slope of y over t (per minute). */
static double slope(const struct sample *s, size_t n, size_t off) {
    double mt = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mt += s[i].t_min;
        my += *(const double *)((const char *)&s[i] + off);
    }
    mt /= (double)n;
    my /= (double)n;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double dt = s[i].t_min - mt;
        num += dt * (*(const double *)((const char *)&s[i] + off) - my);
        den += dt * dt;
    }
    return den > 0 ? num / den : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* samples (-v) show as they come, also into a file */
    /* One malloc arena: with glibc's default (up to 8 per CPU, opened as
     * threads contend) RSS steps up for minutes while arenas open and fill,
     * which is glibc's layout, not a leak (2-minute slope ~600 KiB/min, with
     * one arena ~30 KiB/min). A leak shows the same in one arena. */
    mallopt(M_ARENA_MAX, 1);
    unsigned seconds = 120;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-v") == 0) {
            g_verbose = true;
        } else if (strcmp(argv[a], "--leak") == 0 && a + 1 < argc) {
            const char *k = argv[++a];
            g_leak = strcmp(k, "mem") == 0      ? LEAK_MEM
                     : strcmp(k, "fd") == 0     ? LEAK_FD
                     : strcmp(k, "thread") == 0 ? LEAK_THREAD
                                                : LEAK_NONE;
            if (g_leak == LEAK_NONE) {
                fprintf(stderr, "soak: --leak mem|fd|thread\n");
                return 2;
            }
        } else {
            seconds = (unsigned)strtoul(argv[a], NULL, 10);
        }
    }
    if (seconds < 10) seconds = 10;
    /* Warm-up: a third of the run (at most 2 min) lets caches, malloc arenas
     * and the default timer thread settle (RSS climbs ~1 MiB in the first
     * 40 s, then stays flat); then a sample every interval. */
    double warm = seconds / 3.0 > 120 ? 120 : seconds / 3.0;
    double interval = seconds / 60.0;
    if (interval < 1) interval = 1;
    if (interval > 10) interval = 10;

    snprintf(g_dir, sizeof g_dir, "/tmp/tp_soak.%d", (int)getpid());
    char p[128];
    CHECK_EQ(mkdir(g_dir, 0755), 0);
    const char *subs[] = {"fd", "src", "rt"};
    for (unsigned i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, subs[i]);
        CHECK_EQ(mkdir(p, 0755), 0);
    }
    for (unsigned i = 0; i < NFILES; i++)
        fd_write(i, 1);
    eng_setup();

    uint64_t t0 = tp_now_ns();
    pthread_t th[NDRIVERS];
    for (unsigned d = 0; d < NDRIVERS; d++)
        CHECK_EQ(pthread_create(&th[d], NULL, driver, (void *)(uintptr_t)d), 0);

    size_t cap = (size_t)(seconds / interval) + 8, n = 0;
    struct sample *s = calloc(cap, sizeof *s);
    CHECK(s != NULL);
    double next = warm;
    for (;;) {
        double now = (double)(tp_now_ns() - t0) / 1e9;
        if (now >= seconds) break;
        if (now < next) {
            sleep_us(100000);
            continue;
        }
        next += interval;
        pthread_mutex_lock(&g_mu);
        g_pause = true;
        while (g_parked < NDRIVERS)
            pthread_cond_wait(&g_cv, &g_mu);
        if (n < cap) {
            s[n] = take_sample(t0);
            if (g_verbose)
                printf("soak: sample %.2f min rss %.0f KiB fds %.0f threads %.0f\n", s[n].t_min,
                       s[n].rss_kib, s[n].fds, s[n].threads);
            n++;
        }
        g_pause = false;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    pthread_mutex_lock(&g_mu);
    g_stop = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    for (unsigned d = 0; d < NDRIVERS; d++)
        pthread_join(th[d], NULL);

    CHECK(n >= 5);
    const double rss_bound = 256, fd_bound = 0.5, thr_bound = 0.5; /* per minute */
    double srss = slope(s, n, offsetof(struct sample, rss_kib));
    double sfd = slope(s, n, offsetof(struct sample, fds));
    double sthr = slope(s, n, offsetof(struct sample, threads));
    printf("soak: %u s (warm-up %.0f s, %zu samples every %.1f s)%s\n", seconds, warm, n, interval,
           g_leak ? " WITH AN INJECTED LEAK" : "");
    printf("soak: iterations:");
    for (unsigned d = 0; d < NDRIVERS; d++)
        printf(" %s %" PRIu64, g_driver_name[d], atomic_load(&g_iters[d]));
    printf("\n");
    printf("soak: first/last sample: rss %.0f/%.0f KiB, fds %.0f/%.0f, threads %.0f/%.0f\n",
           s[0].rss_kib, s[n - 1].rss_kib, s[0].fds, s[n - 1].fds, s[0].threads, s[n - 1].threads);
    printf("soak: slope rss %+.1f KiB/min (bound %.0f%s), fds %+.3f/min (bound %.1f), "
           "threads %+.3f/min (bound %.1f)\n",
           srss, rss_bound, SANITIZED ? ", not enforced under a sanitizer" : "", sfd, fd_bound,
           sthr, thr_bound);
    int bad = 0;
    if (!SANITIZED && srss > rss_bound) bad |= 1;
    if (sfd > fd_bound) bad |= 2;
    if (sthr > thr_bound) bad |= 4;
    if (bad)
        printf("soak: FAIL:%s%s%s slope over its bound\n", bad & 1 ? " rss" : "",
               bad & 2 ? " fds" : "", bad & 4 ? " threads" : "");
    free(s);
    for (unsigned i = 0; i < NEFILES; i++)
        free(g_edata[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "soak: could not remove %s\n", g_dir);
    return bad ? 1 : 0;
}
