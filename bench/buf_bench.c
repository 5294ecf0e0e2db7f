/* SPDX-License-Identifier: MIT */
/*
 * Buffer pool vs. general allocators (issue 4 "Performance").
 *
 * One source, built four times (bench/buf.cmake): linked against glibc,
 * jemalloc and mimalloc (each first on the link line, so its malloc/free
 * serve the whole process; `--which` prints which library malloc resolves
 * to), and once against tripool's buffer pool. One measurement per process,
 * so peak RSS (ru_maxrss) belongs to that measurement alone.
 *
 * usage: buf_bench --which
 *        buf_bench malloc|pool a|b|c SIZE full|partial SECONDS
 *   a: one thread get/touch/put; b: two threads doing a (ops/s summed);
 *   a and b count ops per second of each thread's CPU time (user + system,
 *   so page faults count; time preempted by other processes does not);
 *   c (wall-clock ops/s): a producer gets
 *   and fills, a consumer reads and puts, through a 4-slot SPSC ring.
 *   full = memset of the whole buffer, partial = one byte per 4 KiB page.
 * Output: variant workload size fill ops_per_s peak_rss_kib bound_kib
 *   bound_kib (pool only): RSS at start + cap + buffers held at once.
 * Experiments (pool mode; not used by run_buf.sh): BUF_BENCH_HUGE=1 sets
 * huge_pages, BUF_BENCH_CACHE=N sets cache_bytes. BUF_BENCH_STATS=1 prints the
 * pool's counters to stderr.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tripool/buf.h"

#ifndef BUF_BENCH_VARIANT
#define BUF_BENCH_VARIANT "glibc"
#endif

#define RING 4
#define POOL_CAP ((size_t)64 << 20)

static bool use_pool, full;
static size_t size;
static double seconds;
static tp_bufpool *bp;

struct item {
    uint8_t *p;
    tp_buf *b;
};

static double cpu_s(void) { /* this thread's CPU time (user + system) */
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline struct item get(void) {
    struct item it = {0};
    if (use_pool) {
        it.b = tp_buf_get(bp, size);
        if (it.b) it.p = it.b->data;
    } else {
        it.p = malloc(size);
    }
    if (!it.p) {
        fprintf(stderr, "buf_bench: out of memory\n");
        exit(1);
    }
    return it;
}

static inline void put(struct item it) {
    if (use_pool)
        tp_buf_put(bp, it.b);
    else
        free(it.p);
}

static inline void fill(uint8_t *p, unsigned v) {
    if (full) {
        memset(p, (int)v, size);
    } else {
        for (size_t off = 0; off < size; off += 4096)
            p[off] = (uint8_t)v;
    }
    /* Keep the compiler from eliding malloc/fill/free. */
    __asm__ volatile("" : : "r"(p) : "memory");
}

static inline unsigned readback(const uint8_t *p) {
    __asm__ volatile("" : : "r"(p) : "memory");
    return p[0] + p[size - 1];
}

static unsigned batch(void) {
    if (size <= 4096) return 1024;
    if (size <= 65536) return 64;
    return 1;
}

/* ---- a and b ---------------------------------------------------------- */
/* Warm-up before timing: at least WARM_S seconds and WARM_OPS operations,
 * so every variant is measured in its steady state (a pool is full, an
 * allocator has its arenas), not on first-touch page faults. */
#define WARM_S 0.05
#define WARM_OPS 8

static void *loop(void *arg) {
    uint64_t *ops = arg, n = 0;
    unsigned k = batch(), v = 0;
    double t = now_s(), warm_end = t + WARM_S, start = 0, cpu0 = 0;
    bool warm = true;
    for (;;) {
        for (unsigned i = 0; i < k; i++) {
            struct item it = get();
            fill(it.p, ++v);
            put(it);
        }
        n += k;
        t = now_s();
        if (warm) {
            if (t >= warm_end && n >= WARM_OPS) {
                warm = false;
                start = t;
                cpu0 = cpu_s();
                n = 0;
            }
        } else if (t - start >= seconds) {
            break;
        }
    }
    /* Ops per second of this thread's CPU time: the machine is shared, and
     * time the thread spent preempted is not the allocator's cost. */
    double cpu = cpu_s() - cpu0;
    *ops = (uint64_t)((double)n / (cpu > 1e-6 ? cpu : 1e-6));
    return NULL;
}

/* ---- c: SPSC ring ----------------------------------------------------- */
static struct item ring[RING];
static _Atomic uint64_t head, tail; /* head: producer writes; tail: consumer */
static atomic_bool done;
static _Atomic uint64_t consumed; /* consumer's count, read by the producer to time */

static void backoff(unsigned *spins) {
    if (++*spins < 64)
        __asm__ volatile("pause");
    else
        sched_yield();
}

static void *consumer(void *arg) {
    (void)arg;
    uint64_t t = 0, n = 0;
    unsigned sink = 0;
    for (;;) {
        unsigned spins = 0;
        /* acquire: the slot's content is published by the producer's release. */
        while (atomic_load_explicit(&head, memory_order_acquire) == t) {
            if (atomic_load_explicit(&done, memory_order_acquire) &&
                atomic_load_explicit(&head, memory_order_acquire) == t)
                goto out;
            backoff(&spins);
        }
        struct item it = ring[t % RING];
        sink += readback(it.p);
        put(it);
        t++;
        n++;
        atomic_store_explicit(&consumed, n, memory_order_relaxed);
        /* release: the slot may be reused by the producer after this. */
        atomic_store_explicit(&tail, t, memory_order_release);
    }
out:
    if (sink == 0xFFFFFFFFu) /* keeps the reads */
        fprintf(stderr, "unlikely\n");
    return NULL;
}

static uint64_t pipeline(void) {
    pthread_t c;
    pthread_create(&c, NULL, consumer, NULL);
    uint64_t h = 0, c0 = 0;
    unsigned v = 0;
    double t = now_s(), warm_end = t + WARM_S, start = 0;
    bool warm = true;
    for (;;) {
        t = now_s();
        if (warm) {
            /* The ring and both threads hold RING + 2 buffers: warm past
             * that so the pool has reached its steady set. */
            if (t >= warm_end && atomic_load(&consumed) >= RING + 2 + WARM_OPS) {
                warm = false;
                start = t;
                c0 = atomic_load(&consumed);
            }
        } else if (t - start >= seconds) {
            break;
        }
        for (unsigned i = 0; i < batch(); i++) {
            struct item it = get();
            fill(it.p, ++v);
            unsigned spins = 0;
            while (h - atomic_load_explicit(&tail, memory_order_acquire) == RING)
                backoff(&spins);
            ring[h % RING] = it;
            h++;
            atomic_store_explicit(&head, h, memory_order_release);
        }
    }
    uint64_t c1 = atomic_load(&consumed);
    atomic_store_explicit(&done, true, memory_order_release);
    pthread_join(c, NULL);
    return (uint64_t)((double)(c1 - c0) / (t - start)); /* ops per second */
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--which") == 0) {
        Dl_info di;
        void *(*m)(size_t) = malloc;
        if (dladdr((void *)m, &di) && di.dli_fname)
            printf("%s malloc from %s\n", BUF_BENCH_VARIANT, di.dli_fname);
        else
            printf("%s malloc from (unknown)\n", BUF_BENCH_VARIANT);
        return 0;
    }
    if (argc != 6) {
        fprintf(stderr, "usage: %s malloc|pool a|b|c SIZE full|partial SECONDS\n", argv[0]);
        return 2;
    }
    use_pool = strcmp(argv[1], "pool") == 0;
    char w = argv[2][0];
    size = strtoull(argv[3], NULL, 0);
    full = strcmp(argv[4], "full") == 0;
    seconds = atof(argv[5]);
    if (!size || seconds <= 0) return 2;
    if (use_pool) {
        tp_bufpool_opts o;
        tp_bufpool_opts_init(&o);
        o.max_retained = POOL_CAP;
        o.huge_pages = getenv("BUF_BENCH_HUGE") != NULL; /* experiment: THP mappings */
        if (getenv("BUF_BENCH_CACHE"))                   /* experiments: per-class cache bytes */
            o.cache_bytes = strtoull(getenv("BUF_BENCH_CACHE"), NULL, 0);
        if (tp_bufpool_create(&bp, &o) != 0) return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long base_kib = ru.ru_maxrss; /* before any buffer */
    uint64_t ops = 0;             /* per second */
    if (w == 'a') {
        loop(&ops);
    } else if (w == 'b') {
        uint64_t o1 = 0, o2 = 0;
        pthread_t t1, t2;
        pthread_create(&t1, NULL, loop, &o1);
        pthread_create(&t2, NULL, loop, &o2);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        ops = o1 + o2;
    } else {
        ops = pipeline();
    }
    getrusage(RUSAGE_SELF, &ru);
    /* The bound the pool promises: the cap on retained bytes plus the buffers
     * the workload holds at once (one per thread, plus the ring in c). */
    size_t inflight = w == 'a' ? 1 : w == 'b' ? 2 : RING + 2;
    size_t bound_kib = (size_t)base_kib + (POOL_CAP + inflight * size) / 1024;
    printf("%s %c %zu %s %.0f %ld %zu\n", use_pool ? "tripool" : BUF_BENCH_VARIANT, w, size,
           full ? "full" : "partial", (double)ops, ru.ru_maxrss, use_pool ? bound_kib : 0);
    if (use_pool) {
        struct tp_bufpool_stats st;
        tp_bufpool_stats(bp, &st);
        if (getenv("BUF_BENCH_STATS"))
            fprintf(stderr,
                    "  pool: gets %llu hits %llu misses %llu dropped %llu ticks %llu peak %zu\n",
                    (unsigned long long)st.total.gets, (unsigned long long)st.total.hits,
                    (unsigned long long)st.total.misses, (unsigned long long)st.total.dropped,
                    (unsigned long long)st.ticks, st.total.peak_bytes);
        tp_bufpool_destroy(bp);
    }
    return 0;
}
