/* SPDX-License-Identifier: MIT */
/*
 * Hot-path sample cost with T threads (default 2): tripool counter add,
 * gauge set, histogram observe, against a mutex-protected counter and a C11
 * atomic fetch_add on one shared cache line. Each round every thread does N
 * updates; the per-update cost of a round is wall time / N (threads run in
 * parallel, so this is the latency each thread sees). Prints the median of R
 * rounds. Usage: metrics_hotpath [THREADS] [N] [ROUNDS]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tripool/metrics.h"

enum op { OP_COUNTER, OP_GAUGE, OP_HIST, OP_MUTEX, OP_ATOMIC, OP_N };
static const char *op_name[OP_N] = {"tp_counter_add", "tp_gauge_set", "tp_histogram_observe",
                                    "mutex counter", "atomic fetch_add (shared line)"};

static tp_counter *g_counter;
static tp_gauge *g_gauge;
static tp_histogram *g_hist;
static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_mutex_counter;
static _Alignas(64) _Atomic uint64_t g_shared;
static unsigned long g_n;
static pthread_barrier_t g_bar;

struct arg {
    enum op op;
    unsigned id;
    double cpu_ns; /* this thread's CPU time per update */
};

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *run(void *p) {
    struct arg *a = p;
    double v = 0.0001 * (a->id + 1);
    pthread_barrier_wait(&g_bar);
    uint64_t c0 = cpu_ns();
    switch (a->op) {
    case OP_COUNTER:
        for (unsigned long i = 0; i < g_n; i++)
            tp_counter_add(g_counter, 1);
        break;
    case OP_GAUGE:
        for (unsigned long i = 0; i < g_n; i++)
            tp_gauge_set(g_gauge, (double)i);
        break;
    case OP_HIST:
        for (unsigned long i = 0; i < g_n; i++) {
            tp_histogram_observe(g_hist, v);
            v = v < 10 ? v * 1.5 : 0.0001; /* walk across the buckets */
        }
        break;
    case OP_MUTEX:
        for (unsigned long i = 0; i < g_n; i++) {
            pthread_mutex_lock(&g_mutex);
            g_mutex_counter++;
            pthread_mutex_unlock(&g_mutex);
        }
        break;
    case OP_ATOMIC:
        for (unsigned long i = 0; i < g_n; i++)
            atomic_fetch_add_explicit(&g_shared, 1, memory_order_relaxed);
        break;
    default:
        break;
    }
    a->cpu_ns = (double)(cpu_ns() - c0) / (double)g_n;
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    g_n = argc > 2 ? strtoul(argv[2], NULL, 10) : 5000000;
    unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 7;
    if (threads < 1 || threads > 64 || g_n < 1 || rounds < 1 || rounds > 101) {
        fprintf(stderr, "usage: %s [THREADS] [N] [ROUNDS]\n", argv[0]);
        return 2;
    }
    tp_metrics *r;
    double bounds[16];
    if (tp_metrics_create(&r) || tp_metrics_counter(r, "c_total", "c", NULL, 0, &g_counter) ||
        tp_metrics_gauge(r, "g", "g", NULL, 0, &g_gauge) ||
        tp_metrics_buckets_exp(0.0001, 2.5, 16, bounds) ||
        tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, bounds, 16, &g_hist)) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    printf("metrics hot path: %u threads, %lu updates per thread, median of %u rounds\n", threads,
           g_n, rounds);
    printf("wall = round time / N (includes preemption on a busy machine);\n"
           "cpu  = the updating thread's own CPU time / N (median over threads and rounds)\n");
    printf("%-32s %10s %10s %10s\n", "operation", "wall med", "wall min", "cpu med");
    for (int op = 0; op < OP_N; op++) {
        double ns[101], cpu[101 * 64];
        unsigned ncpu = 0;
        for (unsigned rd = 0; rd < rounds; rd++) {
            pthread_t t[64];
            struct arg a[64];
            pthread_barrier_init(&g_bar, NULL, threads + 1);
            for (unsigned i = 0; i < threads; i++) {
                a[i] = (struct arg){(enum op)op, i, 0};
                pthread_create(&t[i], NULL, run, &a[i]);
            }
            pthread_barrier_wait(&g_bar);
            uint64_t t0 = now_ns();
            for (unsigned i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
            ns[rd] = (double)(now_ns() - t0) / (double)g_n;
            for (unsigned i = 0; i < threads; i++)
                cpu[ncpu++] = a[i].cpu_ns;
            pthread_barrier_destroy(&g_bar);
        }
        qsort(ns, rounds, sizeof ns[0], cmp);
        qsort(cpu, ncpu, sizeof cpu[0], cmp);
        printf("%-32s %10.2f %10.2f %10.2f\n", op_name[op], ns[rounds / 2], ns[0], cpu[ncpu / 2]);
    }
    /* sanity: nothing lost */
    uint64_t want = (uint64_t)threads * g_n * rounds;
    if (tp_counter_value(g_counter) != want || tp_histogram_count(g_hist) != want ||
        g_mutex_counter != want || atomic_load(&g_shared) != want) {
        fprintf(stderr, "lost updates!\n");
        return 1;
    }
    tp_metrics_destroy(r);
    return 0;
}
