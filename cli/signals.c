/* SPDX-License-Identifier: MIT */
/*
 * Signals and the progress bar: owns the two helper threads of a run.
 *
 * The signal thread sigwait()s for SIGINT/SIGTERM (records which one and
 * cancels the engine: temp files are removed, main exits 130/143) and
 * SIGUSR1 (tp_pool_dump of the engine's pool to stderr). The signals are
 * blocked in every thread (tp__cli_block_signals before any thread starts),
 * so no work runs in a signal handler.
 *
 * The progress thread (--progress, default on a TTY) redraws one stderr
 * line from tp_engine_progress() every 200 ms.
 *
 * Shared state: `interrupted` (atomic); the engine pointer, which the
 * signal thread reads under g_engine_lock so main can retire it (set NULL)
 * before destroying the engine; the progress thread's engine is set before
 * it starts and it is joined before the engine goes.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"

#define prog tp__cli_prog

static pthread_mutex_t g_engine_lock = PTHREAD_MUTEX_INITIALIZER;
static tp_engine *g_engine;
static sigset_t g_set; /* written before the signal thread starts */
static pthread_t g_sig_th, g_prog_th;
static tp_engine *g_prog_engine;
static atomic_int interrupted;
static atomic_bool progress_stop;
static atomic_bool signals_stop;

void tp__cli_block_signals(void) {
    sigemptyset(&g_set);
    sigaddset(&g_set, SIGINT);
    sigaddset(&g_set, SIGTERM);
    sigaddset(&g_set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &g_set, NULL);
}

static void dump_line(void *arg, const char *line) {
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

static void *signal_thread(void *arg) {
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&g_set, &sig) != 0) continue;
        if (atomic_load(&signals_stop)) return NULL; /* see tp__cli_signals_stop */
        pthread_mutex_lock(&g_engine_lock);
        if (g_engine && sig == SIGUSR1) {
            tp_pool_dump(tp_engine_pool(g_engine), dump_line, NULL);
        } else if (g_engine) {
            atomic_store(&interrupted, sig);
            tp_engine_cancel(g_engine);
        }
        pthread_mutex_unlock(&g_engine_lock);
    }
    return NULL;
}

int tp__cli_signals_start(tp_engine *e) {
    pthread_mutex_lock(&g_engine_lock);
    g_engine = e;
    pthread_mutex_unlock(&g_engine_lock);
    int err = pthread_create(&g_sig_th, NULL, signal_thread, NULL);
    if (err) tp__cli_signals_retire();
    return err;
}

void tp__cli_signals_retire(void) {
    pthread_mutex_lock(&g_engine_lock); /* the signal thread no longer sees it */
    g_engine = NULL;
    pthread_mutex_unlock(&g_engine_lock);
}

/* End the signal thread (flag, then a signal only it waits for) so no
 * thread outlives the job: exit is then immediate, also under
 * ThreadSanitizer, which otherwise sleeps a second at exit. */
void tp__cli_signals_stop(void) {
    atomic_store(&signals_stop, true);
    pthread_kill(g_sig_th, SIGUSR1);
    pthread_join(g_sig_th, NULL);
}

int tp__cli_interrupted(void) {
    return atomic_load(&interrupted);
}

static void human(double v, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void *progress_thread(void *arg) {
    (void)arg;
    uint64_t t0 = tp_now_ns();
    while (!atomic_load(&progress_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t done = 0, total = 0;
        tp_engine_progress(g_prog_engine, &done, &total);
        double secs = (double)(tp_now_ns() - t0) / 1e9;
        double rate = secs > 0 ? (double)done / secs : 0;
        double frac = total ? (double)done / (double)total : 0;
        if (frac > 1) frac = 1;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        char d[32], t[32], r[32];
        human((double)done, d, sizeof(d));
        human((double)total, t, sizeof(t));
        human(rate, r, sizeof(r));
        double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
        fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s  %s/s  ETA %.0fs  ", prog, bar, frac * 100, d, t,
                r, eta);
        fflush(stderr);
    }
    fprintf(stderr, "\n");
    return NULL;
}

int tp__cli_progress_start(tp_engine *e) {
    g_prog_engine = e;
    return pthread_create(&g_prog_th, NULL, progress_thread, NULL);
}

void tp__cli_progress_stop(void) {
    atomic_store(&progress_stop, true);
    pthread_join(g_prog_th, NULL);
}
