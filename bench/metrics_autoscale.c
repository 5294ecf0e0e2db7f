/* SPDX-License-Identifier: MIT */
/*
 * Adaptive pool vs fixed pools on a workload whose character changes:
 *   cpu    tasks spin 100 us of CPU
 *   io     tasks sleep 1 ms (a blocking read) then spin 50 us
 *   mixed  half cpu tasks, half sleep 2 ms + spin 10 us
 *   cpu    again (does it come back down?)
 * Each pool runs the same phase sequence; a feeder thread keeps its queue
 * full so throughput is the pool's, not the feeder's. Reports tasks/s per
 * phase (whole phase, adaptation time included), threads, and for the
 * adaptive pool the target changes per minute in the second half of each
 * phase (steady load).
 * Usage: metrics_autoscale [PHASE_SECONDS] [REPS] [POOLS...]   e.g. 2 3 2 8 32 256 0
 * (0 = adaptive; default 2 s, 3 reps, pools 2 8 32 256 0). Each rep runs
 * every pool in turn; per pool and phase the median over reps is shown
 * (the machine's other load drifts, so pools are interleaved).
 * METRICS_AUTOSCALE_PHASES=io,mixed runs only those phases, in the usual
 * order (e.g. "io" alone: the adaptive pool meets the blocking phase at
 * its starting size, as after a quiet-machine cpu phase, whatever the
 * machine's load). METRICS_AUTOSCALE_TRACE=1 prints the adaptive pool's
 * bound every 100 ms.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tripool/obs.h"

enum { PH_CPU, PH_IO, PH_MIXED, PH_CPU2, NPHASE };
static const char *phase_name[NPHASE] = {"cpu", "io", "mixed", "cpu-again"};

static double g_iters_per_us;
static _Atomic int g_phase;
static _Atomic int g_stop;
static _Atomic uint64_t g_done;
static _Atomic uint64_t g_seq;

static uint64_t now_ns(void) {
    return tp_now_ns();
}

static void spin_us(unsigned us) {
    uint64_t x = 88172645463325252ull, n = (uint64_t)(us * g_iters_per_us);
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    __asm__ __volatile__("" : : "r"(x));
}

static void sleep_us(unsigned us) {
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
}

static int task(void *arg) {
    int ph = (int)(intptr_t)arg;
    switch (ph) {
    case PH_CPU:
    case PH_CPU2:
        spin_us(100);
        break;
    case PH_IO:
        sleep_us(1000);
        spin_us(50);
        break;
    case PH_MIXED:
        if (atomic_fetch_add_explicit(&g_seq, 1, memory_order_relaxed) & 1) {
            spin_us(100);
        } else {
            sleep_us(2000);
            spin_us(10);
        }
        break;
    }
    atomic_fetch_add_explicit(&g_done, 1, memory_order_relaxed);
    return 0;
}

static void *feeder(void *arg) {
    tp_pool *p = arg;
    while (!atomic_load(&g_stop)) {
        int ph = atomic_load_explicit(&g_phase, memory_order_relaxed);
        if (tp_submit_timeout(p, task, (void *)(intptr_t)ph, 50 * TP_NSEC_PER_MSEC) == -ESHUTDOWN)
            break;
    }
    return NULL;
}

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin iterations per microsecond of CPU time (thread CPU clock: immune to
 * preemption on a busy machine). */
static void calibrate(void) {
    g_iters_per_us = 100;
    uint64_t t0 = thread_cpu_ns();
    spin_us(50000);
    double us = (double)(thread_cpu_ns() - t0) / 1000.0;
    g_iters_per_us = 50000.0 * 100 / us;
}

struct result {
    double tput[NPHASE];
    unsigned threads_peak[NPHASE];
    double target_mean[NPHASE];
    double changes_per_min[NPHASE];
    double downs_per_min[NPHASE]; /* of which shrinking */
};

/* METRICS_AUTOSCALE_TRACE=1: print the adaptive pool's bound every 100 ms */
static bool g_trace;
static bool g_run[NPHASE] = {true, true, true, true}; /* METRICS_AUTOSCALE_PHASES */

static void run(unsigned fixed, double phase_s, struct result *res) {
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.queue_cap = 2048;
    o.max_workers = fixed ? fixed : tp_usable_cpus(); /* adaptive: start small */
    o.idle_timeout_ns = 200 * TP_NSEC_PER_MSEC;
    tp_obs_pool *op = NULL;
    if (!fixed && tp_obs_pool_prepare(NULL, "adaptive", &o, &op) != 0) exit(1);
    tp_pool *p;
    if (tp_pool_create(&p, &o) != 0 || (op && tp_obs_register_pool(op, p) != 0)) exit(1);
    tp_autoscale *a = NULL;
    if (!fixed && tp_autoscale_start(p, op, NULL, &a) != 0) exit(1);
    atomic_store(&g_stop, 0);
    int first = 0;
    while (first < NPHASE - 1 && !g_run[first])
        first++;
    atomic_store(&g_phase, first);
    pthread_t ft;
    pthread_create(&ft, NULL, feeder, p);
    for (int ph = 0; ph < NPHASE; ph++) {
        if (!g_run[ph]) continue;
        atomic_store(&g_phase, ph);
        uint64_t t0 = now_ns(), d0 = atomic_load(&g_done), end = t0 + (uint64_t)(phase_s * 1e9);
        uint64_t half = t0 + (end - t0) / 2, ch_half = 0, down_half = 0;
        bool half_seen = false;
        unsigned peak = 0;
        double tsum = 0;
        unsigned samples = 0;
        while (now_ns() < end) {
            sleep_us(10000);
            struct tp_pool_stats st;
            tp_pool_stats(p, &st);
            if (st.workers_running > peak) peak = st.workers_running;
            tsum += st.max_workers;
            if (g_trace && a && samples % 10 == 0)
                printf("trace %-9s t=%5.2f target=%3u workers=%3u queued=%4zu done=%llu\n",
                       phase_name[ph], (double)(now_ns() - t0) / 1e9, st.max_workers,
                       st.workers_running, st.queued,
                       (unsigned long long)(atomic_load(&g_done) - d0));
            samples++;
            if (a && !half_seen && now_ns() >= half) {
                struct tp_autoscale_stats as;
                tp_autoscale_stats(a, &as);
                ch_half = as.changes;
                down_half = as.downs;
                half_seen = true;
            }
        }
        uint64_t t1 = now_ns(), d1 = atomic_load(&g_done);
        res->tput[ph] = (double)(d1 - d0) / ((double)(t1 - t0) / 1e9);
        res->threads_peak[ph] = peak;
        res->target_mean[ph] = samples ? tsum / samples : 0;
        res->changes_per_min[ph] = res->downs_per_min[ph] = 0;
        if (a) {
            struct tp_autoscale_stats as;
            tp_autoscale_stats(a, &as);
            res->changes_per_min[ph] = (double)(as.changes - ch_half) / (phase_s / 2) * 60.0;
            res->downs_per_min[ph] = (double)(as.downs - down_half) / (phase_s / 2) * 60.0;
        }
    }
    atomic_store(&g_stop, 1);
    pthread_join(ft, NULL);
    tp_autoscale_stop(a);
    (void)tp_pool_close(p, TP_FOREVER);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmpd);
    return v[n / 2];
}

int main(int argc, char **argv) {
    double phase_s = argc > 1 ? atof(argv[1]) : 2.0;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    unsigned pools[16] = {2, 8, 32, 256, 0};
    int npools = 5;
    if (argc > 3) {
        npools = 0;
        for (int i = 3; i < argc && npools < 16; i++)
            pools[npools++] = (unsigned)atoi(argv[i]);
    }
    if (!(phase_s >= 0.5) || reps < 1 || reps > 15) {
        fprintf(stderr, "usage: %s [PHASE_SECONDS>=0.5] [REPS 1-15] [POOLS... (0 = adaptive)]\n",
                argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *tr = getenv("METRICS_AUTOSCALE_TRACE");
    g_trace = tr && *tr && strcmp(tr, "0") != 0;
    const char *phs = getenv("METRICS_AUTOSCALE_PHASES");
    if (phs && *phs) {
        int nrun = 0;
        for (int ph = 0; ph < NPHASE; ph++) {
            size_t n = strlen(phase_name[ph]);
            g_run[ph] = false;
            for (const char *q = phs; q; q = strchr(q, ','), q = q ? q + 1 : NULL)
                if (strncmp(q, phase_name[ph], n) == 0 && (q[n] == ',' || q[n] == '\0'))
                    g_run[ph] = true;
            nrun += g_run[ph];
        }
        if (nrun == 0) {
            fprintf(stderr, "METRICS_AUTOSCALE_PHASES: none of cpu,io,mixed,cpu-again\n");
            return 2;
        }
    }
    calibrate();
    printf("adaptive vs fixed pools: %u usable CPUs, %.1f s per phase, median of %d reps "
           "(%.0f spin iters/us)\n",
           tp_usable_cpus(), phase_s, reps, g_iters_per_us);
    static struct result all[15][16];
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < npools; i++)
            run(pools[i], phase_s, &all[r][i]);
    struct result res[16];
    for (int i = 0; i < npools; i++) {
        for (int ph = 0; ph < NPHASE; ph++) {
            double v[15], t[15], c[15], k[15], d[15];
            for (int r = 0; r < reps; r++) {
                v[r] = all[r][i].tput[ph];
                t[r] = all[r][i].threads_peak[ph];
                c[r] = all[r][i].changes_per_min[ph];
                d[r] = all[r][i].downs_per_min[ph];
                k[r] = all[r][i].target_mean[ph];
            }
            res[i].tput[ph] = median(v, reps);
            res[i].threads_peak[ph] = (unsigned)median(t, reps);
            res[i].changes_per_min[ph] = median(c, reps);
            res[i].downs_per_min[ph] = median(d, reps);
            res[i].target_mean[ph] = median(k, reps);
        }
    }

    printf("\n%-10s", "tasks/s");
    for (int ph = 0; ph < NPHASE; ph++)
        printf(" %12s", phase_name[ph]);
    printf("\n");
    double best[NPHASE] = {0};
    for (int i = 0; i < npools; i++) {
        char name[32];
        snprintf(name, sizeof name, pools[i] ? "fixed %u" : "adaptive", pools[i]);
        printf("%-10s", name);
        for (int ph = 0; ph < NPHASE; ph++) {
            printf(" %12.0f", res[i].tput[ph]);
            if (pools[i] && res[i].tput[ph] > best[ph]) best[ph] = res[i].tput[ph];
        }
        printf("   peak threads");
        for (int ph = 0; ph < NPHASE; ph++)
            printf(" %u", res[i].threads_peak[ph]);
        printf("\n");
    }
    unsigned largest = 0;
    for (int i = 0; i < npools; i++)
        if (pools[i] > largest) largest = pools[i];
    for (int i = 0; i < npools; i++) {
        if (pools[i]) continue;
        printf("\nadaptive / best fixed, per phase:");
        bool ok = true;
        for (int ph = 0; ph < NPHASE; ph++) {
            if (!g_run[ph]) continue;
            double r = best[ph] > 0 ? res[i].tput[ph] / best[ph] : 0;
            printf(" %s %.2f", phase_name[ph], r);
            ok = ok && r >= 0.90;
        }
        unsigned peak = 0;
        for (int ph = 0; ph < NPHASE; ph++)
            if (res[i].threads_peak[ph] > peak) peak = res[i].threads_peak[ph];
        printf("\n  goal >= 0.90 every phase: %s\n", ok ? "met" : "MISSED");
        printf("  peak threads %u vs largest fixed %u: %s (goal <= half)\n", peak, largest,
               largest && peak * 2 <= largest ? "met" : "MISSED");
        printf("  mean target per phase:");
        for (int ph = 0; ph < NPHASE; ph++)
            printf(" %s %.1f", phase_name[ph], res[i].target_mean[ph]);
        printf("\n  target changes/min, 2nd half of each phase (steady load):");
        for (int ph = 0; ph < NPHASE; ph++)
            printf(" %s %.0f (%.0f down)", phase_name[ph], res[i].changes_per_min[ph],
                   res[i].downs_per_min[ph]);
        printf("\n");
    }
    return 0;
}
