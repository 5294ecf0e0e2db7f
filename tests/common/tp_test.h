/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests. Include after <setjmp.h>/<stdarg.h>/<stddef.h>
 * as cmocka requires (this header does it for you).
 */
#ifndef TP_TEST_H
#define TP_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "tripool.h"
#include "internal/os.h"
#include "tp_promtool.h"

/* "none", "thread", "address", "chaos" (the TP_CHAOS schedule-perturbation
 * build) or "valgrind" (a plain build under memcheck, scripts/valgrind.sh):
 * which checking build or tool this binary runs under. */
static inline const char *tp_test_sanitizer(void) {
    const char *s = getenv("TP_TEST_SANITIZER");
    return s ? s : "none";
}

/* Scale a loop count down under sanitizers (they are 5-20x slower). */
static inline unsigned tp_test_scale(unsigned n) {
    const char *s = tp_test_sanitizer();
    if (strcmp(s, "thread") == 0) return n / 8 ? n / 8 : 1;
    if (strcmp(s, "valgrind") == 0) /* memcheck: one thread at a time, ~30x slower */
        return n / 4 ? n / 4 : 1;
    if (strcmp(s, "address") == 0 || strcmp(s, "chaos") == 0) return n / 4 ? n / 4 : 1;
    return n;
}

/* How many times slower than a plain build code runs here: for the time
 * bounds of tests that check "promptly" (a bound proportional to the
 * execution speed, not a looser promise). */
static inline unsigned tp_test_slowdown(void) {
    const char *s = tp_test_sanitizer();
    if (strcmp(s, "valgrind") == 0) return 30;
    if (strcmp(s, "thread") == 0) return 8;
    if (strcmp(s, "address") == 0 || strcmp(s, "chaos") == 0) return 4;
    return 1;
}

/* Sleep for ms milliseconds. */
static inline void tp_test_sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Poll cond (an expression) every ms until true or timeout_ms passes. */
#define TP_TEST_WAIT_FOR(cond, timeout_ms)                                                         \
    do {                                                                                           \
        uint64_t tp__end_ = tp_now_ns() + (uint64_t)(timeout_ms)*TP_NSEC_PER_MSEC;                 \
        while (!(cond) && tp_now_ns() < tp__end_)                                                  \
            tp_test_sleep_ms(1);                                                                   \
    } while (0)

/* A task pool with these worker bounds and queue capacity, the rest default. */
static inline tp_pool *tp_test_pool(unsigned min_workers, unsigned max_workers, size_t queue_cap) {
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.min_workers = min_workers;
    o.max_workers = max_workers;
    o.queue_cap = queue_cap;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    assert_non_null(p);
    return p;
}

/* Run fn(arg) in a forked child (SIGABRT at its default action, no core
 * file) with its stderr captured into out (cap bytes, NUL-terminated).
 * Returns the child's wait status. For tests of misuse that must abort. */
typedef void (*tp_test_child_fn)(void *arg);
static inline int tp_test_run_child(tp_test_child_fn fn, void *arg, char *out, size_t cap) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0); /* not reached when the misuse is caught */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* The wait status of a child that died of SIGABRT. */
static inline bool tp_test_aborted(int status) {
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

/* Remove a test's scratch directory and everything in it; 0 on success. */
static inline int tp_test_rm_rf(const char *dir) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
