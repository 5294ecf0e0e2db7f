/* SPDX-License-Identifier: MIT */
/*
 * The OS contract: every Linux specific the pools need, behind small calls
 * returning 0 or a negative errno (after mimalloc's prim.h). Implemented in
 * src/os/linux.c. Modules call these instead of raw syscalls so they read
 * as policy.
 */
#ifndef TP_INTERNAL_OS_H
#define TP_INTERNAL_OS_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <time.h>

#include "tripool/common.h"

/* CLOCK_MONOTONIC now, in ns. */
uint64_t tp__now_ns(void);

/* Absolute CLOCK_MONOTONIC deadline -> timespec, saturating. */
struct timespec tp__ts_from_ns(uint64_t ns);

/* now + timeout, saturating to TP_FOREVER. */
uint64_t tp__deadline_after(uint64_t timeout_ns);

/* Initialise a condition variable that waits on CLOCK_MONOTONIC. */
int tp__cond_init_monotonic(pthread_cond_t *c);

/* Wait on c until the absolute monotonic deadline (TP_FOREVER = no limit).
 * Returns 0 when woken (possibly spuriously) or -ETIMEDOUT. */
int tp__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ns);

/* CPUs in the affinity mask, capped by cgroup v2 cpu.max; >= 1. */
unsigned tp__usable_cpus(void);

/* Number of threads in this process (from /proc/self/status), or -errno. */
int tp__thread_count(void);

/* Number of open descriptors (entries of /proc/self/fd), or -errno. */
int tp__open_fd_count(void);

/* System page size. */
size_t tp__page_size(void);

#endif
