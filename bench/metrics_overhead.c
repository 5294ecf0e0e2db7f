/* SPDX-License-Identifier: MIT */
/*
 * Cost of metrics on the task pool: N empty tasks (default 1M) submitted
 * from one thread to a pool of tp_usable_cpus() workers, with the obs
 * collector (observer feeding two histograms + stats series) off and on.
 * Rounds alternate off/on; prints the median time of each and the ratio.
 * First, the cost of the clock reads the pool's timing makes: is
 * clock_gettime(CLOCK_MONOTONIC) served by the vDSO here, or does it fall
 * back to a system call (compare with a forced syscall)?
 * Usage: metrics_overhead [N] [ROUNDS]    metrics_overhead clock (clocks only)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "tripool/obs.h"

static int empty(void *arg) {
    (void)arg;
    return 0;
}

static void null_observer(void *arg, const char *label, uint64_t wait_ns, uint64_t run_ns,
                          int result) {
    (void)arg, (void)label, (void)wait_ns, (void)run_ns, (void)result;
}

/* mode 0: no observer; 1: an empty observer (the pool's own timing cost);
 * 2: the obs collector (timing + histograms + stats series); 3: the obs
 * collector with opts.observer_sample = SAMPLE (1 task in SAMPLE timed). */
#define SAMPLE 64
static double run(unsigned long n, int mode) {
    bool metrics = mode >= 2;
    tp_metrics *reg = NULL;
    tp_obs_pool *op = NULL;
    tp_pool *p;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.queue_cap = 65536;
    if (mode == 1) o.observer = null_observer;
    if (metrics && (tp_metrics_create(&reg) || tp_obs_pool_prepare(reg, "bench", &o, &op))) {
        fprintf(stderr, "metrics setup failed\n");
        exit(1);
    }
    if (mode == 3) o.observer_sample = SAMPLE;
    if (tp_pool_create(&p, &o) || (op && tp_obs_register_pool(op, p))) {
        fprintf(stderr, "pool setup failed\n");
        exit(1);
    }
    uint64_t t0 = tp_now_ns();
    for (unsigned long i = 0; i < n; i++) {
        if (tp_submit(p, empty, NULL) != 0) {
            fprintf(stderr, "submit failed\n");
            exit(1);
        }
    }
    if (tp_pool_wait_idle(p, TP_FOREVER) != 0) exit(1);
    double secs = (double)(tp_now_ns() - t0) / 1e9;
    struct tp_pool_stats st;
    tp_pool_stats(p, &st);
    if (st.completed != n) {
        fprintf(stderr, "lost tasks\n");
        exit(1);
    }
    if (op) {
        struct tp_obs_pool_totals t;
        (void)tp_pool_close(p, TP_FOREVER);
        tp_obs_pool_totals(op, &t);
        /* One submitting thread: exactly 1 in SAMPLE is timed. */
        if (t.tasks != (mode == 3 ? n / SAMPLE : n)) {
            fprintf(stderr, "observer missed tasks: %llu\n", (unsigned long long)t.tasks);
            exit(1);
        }
        tp_obs_pool_destroy(op);
    }
    tp_pool_destroy(p);
    tp_metrics_destroy(reg);
    return secs;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum clk { CLK_VDSO, CLK_COARSE, CLK_SYSCALL, CLK_TSC };

/* ns per read, median of 7 runs of 1M reads, on the calling thread. */
static double clock_cost(enum clk k) {
    enum { READS = 1000000, RUNS = 7 };
    double v[RUNS];
    volatile uint64_t sink = 0;
    for (int r = 0; r < RUNS; r++) {
        struct timespec ts;
        uint64_t t0 = tp_now_ns();
        for (int i = 0; i < READS; i++) {
            switch (k) {
            case CLK_VDSO:
                clock_gettime(CLOCK_MONOTONIC, &ts);
                break;
            case CLK_COARSE:
                clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
                break;
            case CLK_SYSCALL:
                syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
                break;
            case CLK_TSC:
#if defined(__x86_64__) || defined(__i386__)
                ts.tv_nsec = (long)__rdtsc();
#else
                ts.tv_nsec = 0;
#endif
                break;
            }
            sink += (uint64_t)ts.tv_nsec;
        }
        v[r] = (double)(tp_now_ns() - t0) / READS;
    }
    (void)sink;
    qsort(v, RUNS, sizeof v[0], cmp);
    return v[RUNS / 2];
}

static void clock_report(void) {
    char src[64] = "?";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (fgets(src, sizeof src, f)) src[strcspn(src, "\n")] = '\0';
        fclose(f);
    }
    double vd = clock_cost(CLK_VDSO), co = clock_cost(CLK_COARSE), sc = clock_cost(CLK_SYSCALL),
           tsc = clock_cost(CLK_TSC);
    printf("clock reads (ns/call, median of 7 x 1M): clocksource %s, vDSO %s\n", src,
           getauxval(AT_SYSINFO_EHDR) ? "mapped" : "absent");
    printf("  clock_gettime(CLOCK_MONOTONIC)        %6.1f\n", vd);
    printf("  clock_gettime(CLOCK_MONOTONIC_COARSE) %6.1f\n", co);
    printf("  syscall(SYS_clock_gettime, MONOTONIC) %6.1f\n", sc);
    printf("  rdtsc                                 %6.1f\n", tsc);
    printf("  CLOCK_MONOTONIC is %s (%.2fx a forced system call)\n",
           vd < 0.5 * sc ? "vDSO-fast" : "NOT vDSO-fast: the vDSO falls back to the system call",
           vd / sc);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    clock_report();
    if (argc > 1 && strcmp(argv[1], "clock") == 0) return 0;
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 5;
    if (n == 0 || rounds == 0 || rounds > 51) {
        fprintf(stderr, "usage: %s [N] [ROUNDS<=51]\n", argv[0]);
        return 2;
    }
    double off[51], on[51], nul[51], smp[51];
    run(n / 10, 0); /* warm up */
    for (unsigned r = 0; r < rounds; r++) {
        off[r] = run(n, 0);
        nul[r] = run(n, 1);
        on[r] = run(n, 2);
        smp[r] = run(n, 3);
    }
    qsort(off, rounds, sizeof off[0], cmp);
    qsort(nul, rounds, sizeof nul[0], cmp);
    qsort(on, rounds, sizeof on[0], cmp);
    qsort(smp, rounds, sizeof smp[0], cmp);
    double ms = smp[rounds / 2];
    double mo = off[rounds / 2], mn = on[rounds / 2], mz = nul[rounds / 2];
    printf("pool with metrics: %lu empty tasks, %u workers, median of %u alternating rounds\n", n,
           tp_usable_cpus(), rounds);
    printf("  metrics off: %.3f s  (%.0f tasks/s)\n", mo, (double)n / mo);
    printf("  empty observer (pool timing only): %.3f s  (%.0f tasks/s)\n", mz, (double)n / mz);
    printf("  metrics on:  %.3f s  (%.0f tasks/s)\n", mn, (double)n / mn);
    printf("  on/empty-observer time: %.3f  (cost of the metrics themselves)\n", mn / mz);
    printf("  on/off time: %.3f  (goal <= 1.05)\n", mn / mo);
    printf("  metrics on, observer_sample %d: %.3f s  (%.0f tasks/s)\n", SAMPLE, ms,
           (double)n / ms);
    printf("  sampled on/off time: %.3f  (goal <= 1.05)\n", ms / mo);
    return 0;
}
