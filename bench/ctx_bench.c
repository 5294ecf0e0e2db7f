/* SPDX-License-Identifier: MIT */
/*
 * Benchmarks for the ctx module (issue 3 "Performance"):
 *   ctx_bench timers [N [M]]     create+cancel N tripool timers (batch: N
 *                                pending then all cancelled; and one at a
 *                                time), RSS per pending timer; peers with M
 *                                timers: one timerfd per timer, and one
 *                                thread per timeout (pthread_cond_timedwait,
 *                                cancelled by signalling)
 *   ctx_bench accuracy [N [LOAD [RT]]] N context deadlines spread over ~1 s,
 *                                LOAD busy-loop threads; lateness p50/p99/max
 *                                of the on_done callback; RT > 0 configures the
 *                                default timer service with that SCHED_FIFO
 *                                priority
 *   ctx_bench fanout [N]         cancel a root with N descendants
 * Output: one "key=value ..." line per measurement (parsed by run_ctx.sh).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tripool/ctx.h"
#include "tripool/timer.h"
#include "ctx/timer_internal.h"

static uint64_t now_ns(void) {
    return tp_now_ns();
}

/* Process CPU time: on a shared machine the wall clock also counts time spent
 * waiting for a CPU; CPU time gives the per-core cost. Both are printed. */
static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * TP_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

struct stamp {
    uint64_t wall, cpu;
};

static struct stamp stamp(void) {
    return (struct stamp){now_ns(), cpu_ns()};
}

/* "<key>_per_s=<wall rate> <key>_per_cpu_s=<cpu rate>" */
static void rate(const char *key, size_t n, struct stamp a, struct stamp b) {
    double w = (double)(b.wall - a.wall) / 1e9, c = (double)(b.cpu - a.cpu) / 1e9;
    printf(" %s_per_s=%.0f %s_per_cpu_s=%.0f", key, n / w, key, c > 0 ? n / c : 0.0);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void never(void *arg) {
    (void)arg;
    abort(); /* the benchmark's timers must never fire */
}

/* ---- timers: tripool ------------------------------------------------------ */

static void bench_tripool_timers(size_t n) {
    tp_timers *t;
    if (tp_timers_create(&t, NULL)) exit(1);
    tp_timer **h = malloc(n * sizeof(*h));
    if (!h) exit(1);
    memset(h, 0, n * sizeof(*h)); /* touch the handle array before measuring RSS */
    uint64_t far = now_ns() + 3600 * TP_NSEC_PER_SEC;

    long rss0 = rss_bytes();
    struct stamp t0 = stamp();
    for (size_t i = 0; i < n; i++)
        if (tp_timer_add(t, far + rnd() % TP_NSEC_PER_SEC, never, NULL, &h[i])) exit(1);
    struct stamp t1 = stamp();
    long rss1 = rss_bytes();
    /* Cancel in a scattered order (a prime stride visits every slot once
     * when it does not divide n), the hard case for a heap. */
    size_t stride = n % 7919 ? 7919 : 1;
    for (size_t i = 0, k = 0; i < n; i++, k = (k + stride) % n)
        if (!tp_timer_cancel(h[k])) exit(1);
    struct stamp t2 = stamp();
    printf("bench=timers peer=tripool mode=batch n=%zu", n);
    rate("create", n, t0, t1);
    rate("cancel", n, t1, t2);
    rate("pair", n, t0, t2);
    printf(" rss_per_pending_B=%.1f node_B=%zu\n", (double)(rss1 - rss0) / n,
           sizeof(struct tp_timer));

    /* One at a time: create then cancel at once (a timeout that is not hit). */
    t0 = stamp();
    for (size_t i = 0; i < n; i++) {
        tp_timer *x;
        if (tp_timer_add(t, far + rnd() % TP_NSEC_PER_SEC, never, NULL, &x)) exit(1);
        if (!tp_timer_cancel(x)) exit(1);
    }
    t1 = stamp();
    printf("bench=timers peer=tripool mode=single n=%zu", n);
    rate("pair", n, t0, t1);
    printf("\n");

    /* Through contexts: tp_ctx_with_timeout + release (what the pool uses). */
    t0 = stamp();
    for (size_t i = 0; i < n; i++) {
        tp_ctx *c;
        if (tp_ctx_with_timeout(NULL, 3600 * TP_NSEC_PER_SEC, &c)) exit(1);
        tp_ctx_release(c);
    }
    t1 = stamp();
    printf("bench=timers peer=tripool_ctx mode=single n=%zu", n);
    rate("pair", n, t0, t1);
    printf("\n");
    free(h);
    tp_timers_destroy(t);
}

/* ---- timers: one timerfd per timer ------------------------------------------ */

static void bench_timerfd(size_t m) {
    int *fds = malloc(m * sizeof(*fds));
    if (!fds) exit(1);
    struct itimerspec its = {.it_value = {.tv_sec = 3600}};
    struct stamp t0 = stamp();
    size_t made = 0;
    for (; made < m; made++) {
        fds[made] = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (fds[made] < 0) break;
        if (timerfd_settime(fds[made], 0, &its, NULL)) exit(1);
    }
    struct stamp t1 = stamp();
    for (size_t i = 0; i < made; i++)
        close(fds[i]);
    struct stamp t2 = stamp();
    printf("bench=timers peer=timerfd mode=batch n=%zu", made);
    rate("create", made, t0, t1);
    rate("cancel", made, t1, t2);
    rate("pair", made, t0, t2);
    printf(" rss_per_pending_B=kernel\n");
    free(fds);
}

/* ---- timers: one thread per timeout ----------------------------------------- */

struct waiter {
    pthread_t th;
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool cancelled;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += 3600;
    pthread_mutex_lock(&w->m);
    while (!w->cancelled)
        if (pthread_cond_timedwait(&w->cv, &w->m, &ts) != 0) break;
    pthread_mutex_unlock(&w->m);
    return NULL;
}

static void bench_threads(size_t m) {
    struct waiter *w = calloc(m, sizeof(*w));
    if (!w) exit(1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024); /* generous to the peer: small stacks */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    long rss0 = rss_bytes();
    struct stamp t0 = stamp();
    size_t made = 0;
    for (; made < m; made++) {
        pthread_mutex_init(&w[made].m, NULL);
        pthread_cond_init(&w[made].cv, &ca);
        if (pthread_create(&w[made].th, &attr, waiter_main, &w[made])) break;
    }
    struct stamp t1 = stamp();
    long rss1 = rss_bytes();
    for (size_t i = 0; i < made; i++) {
        pthread_mutex_lock(&w[i].m);
        w[i].cancelled = true;
        pthread_cond_signal(&w[i].cv);
        pthread_mutex_unlock(&w[i].m);
        pthread_join(w[i].th, NULL);
    }
    struct stamp t2 = stamp();
    printf("bench=timers peer=thread mode=batch n=%zu", made);
    rate("create", made, t0, t1);
    rate("cancel", made, t1, t2);
    rate("pair", made, t0, t2);
    printf(" rss_per_pending_B=%.1f\n", made ? (double)(rss1 - rss0) / made : 0.0);
    free(w);
}

/* ---- deadline accuracy under load --------------------------------------------- */

struct acc {
    uint64_t deadline;
    uint64_t fired;
    tp_ctx *c;
};

static void acc_fire(void *arg) {
    struct acc *a = arg;
    a->fired = now_ns();
}

static atomic_bool load_stop;

static void *busy(void *arg) {
    (void)arg;
    volatile uint64_t x = 0;
    while (!atomic_load_explicit(&load_stop, memory_order_relaxed))
        x++;
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_accuracy(size_t n, unsigned load, unsigned rt_priority) {
    tp_timers_opts o;
    tp_timers_opts_init(&o);
    o.rt_priority = rt_priority;
    if (tp_timers_default_configure(&o)) exit(1);
    struct acc *a = calloc(n, sizeof(*a));
    uint64_t *late = calloc(n, sizeof(*late));
    pthread_t *th = calloc(load ? load : 1, sizeof(*th));
    if (!a || !late || !th) exit(1);
    bool rt = tp_timers_realtime(NULL); /* starts the service before the clock runs */
    for (unsigned i = 0; i < load; i++)
        pthread_create(&th[i], NULL, busy, NULL);
    usleep(100 * 1000); /* let the load settle */
    /* Deadlines start well after creation ends, and the main thread then only
     * sleeps: no lock of ours is held by a preempted thread while timers
     * fire, so what is measured is the timer service's own lateness. */
    uint64_t start = now_ns() + 500 * TP_NSEC_PER_MSEC;
    for (size_t i = 0; i < n; i++) {
        a[i].deadline = start + rnd() % TP_NSEC_PER_SEC;
        if (tp_ctx_with_deadline(NULL, a[i].deadline, &a[i].c)) exit(1);
        if (tp_ctx_on_done(a[i].c, acc_fire, &a[i], NULL)) exit(1);
    }
    while (now_ns() < start + TP_NSEC_PER_SEC + 200 * TP_NSEC_PER_MSEC)
        usleep(50 * 1000);
    atomic_store(&load_stop, true);
    for (unsigned i = 0; i < load; i++)
        pthread_join(th[i], NULL);
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].fired) late[got++] = a[i].fired - a[i].deadline;
        tp_ctx_release(a[i].c);
    }
    qsort(late, got, sizeof(*late), cmp_u64);
    printf("bench=accuracy n=%zu load_threads=%u realtime=%d fired=%zu p50_us=%.1f p99_us=%.1f "
           "max_us=%.1f\n",
           n, load, rt, got, late[got / 2] / 1e3, late[(got * 99) / 100] / 1e3,
           late[got - 1] / 1e3);
    free(a);
    free(late);
    free(th);
}

/* ---- cancel fan-out ------------------------------------------------------------- */

static void bench_fanout(size_t n) {
    tp_ctx **all = malloc((n + 1) * sizeof(*all));
    if (!all) exit(1);
    if (tp_ctx_with_cancel(NULL, &all[0])) exit(1);
    size_t made = 1;
    unsigned maxdepth = 0;
    unsigned *depth = calloc(n + 1, sizeof(*depth));
    while (made <= n) {
        /* Mostly random parents (a random recursive tree, depth ~ ln n); every
         * 1000th node starts a chain of 100 (deep paths). */
        size_t p = rnd() % made;
        size_t chain = made % 1000 == 0 ? 100 : 1;
        for (size_t k = 0; k < chain && made <= n; k++) {
            if (tp_ctx_with_cancel(all[p], &all[made])) exit(1);
            depth[made] = depth[p] + 1;
            if (depth[made] > maxdepth) maxdepth = depth[made];
            p = made++;
        }
    }
    uint64_t c0 = cpu_ns();
    uint64_t t0 = now_ns();
    tp_ctx_cancel(all[0]);
    uint64_t t1 = now_ns();
    uint64_t c1 = cpu_ns();
    for (size_t i = 1; i <= n; i++)
        if (tp_ctx_err(all[i]) != -ECANCELED) exit(1);
    uint64_t t2 = now_ns();
    for (size_t i = 0; i <= n; i++)
        tp_ctx_release(all[i]);
    uint64_t t3 = now_ns();
    printf("bench=fanout n=%zu max_depth=%u cancel_ms=%.2f cancel_cpu_ms=%.2f per_ctx_ns=%.0f "
           "release_all_ms=%.2f\n",
           n, maxdepth, (t1 - t0) / 1e6, (c1 - c0) / 1e6, (double)(t1 - t0) / n, (t3 - t2) / 1e6);
    free(all);
    free(depth);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "timers") == 0) {
        size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
        size_t m = argc > 3 ? strtoul(argv[3], NULL, 10) : 10000;
        bench_tripool_timers(n);
        bench_timerfd(m);
        bench_threads(m);
    } else if (strcmp(what, "accuracy") == 0) {
        bench_accuracy(argc > 2 ? strtoul(argv[2], NULL, 10) : 10000,
                       argc > 3 ? (unsigned)atoi(argv[3]) : 2,
                       argc > 4 ? (unsigned)atoi(argv[4]) : 0);
    } else if (strcmp(what, "fanout") == 0) {
        bench_fanout(argc > 2 ? strtoul(argv[2], NULL, 10) : 100000);
    } else {
        fprintf(stderr,
                "usage: ctx_bench timers [N [M]] | accuracy [N [LOAD [RT]]] | fanout [N]\n");
        return 2;
    }
    return 0;
}
