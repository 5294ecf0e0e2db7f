/* SPDX-License-Identifier: MIT */
/*
 * Schedule perturbation for tests (the TP_CHAOS build, `cmake -DTP_CHAOS=ON`).
 *
 * TP_CHAOS_POINT("where") marks a place where another thread's interleaving
 * matters: a publication, a park or wake, a close or steal step. In a chaos
 * build it sometimes yields the CPU and sometimes sleeps for a few
 * microseconds, driven by a per-thread random stream derived from one
 * process-wide seed, so stress tests explore interleavings that normal
 * scheduling (and ThreadSanitizer, which only sees the ones that happen)
 * rarely produces. In every other build it compiles to nothing.
 *
 * The seed is printed to stderr on first use ("tripool chaos: seed=N"); a
 * failing run is repeated with TP_CHAOS_SEED=N. (Reading the environment is
 * confined to this test-only build; the library proper never does.) The
 * seed fixes each thread's stream in thread-creation order, so a replay
 * reproduces the perturbation pattern, not the exact schedule.
 */
#ifndef TP_INTERNAL_CHAOS_H
#define TP_INTERNAL_CHAOS_H

#include <stdint.h>

#ifdef TP_CHAOS
void tp__chaos_point(const char *where);
/* The seed in use (starts the streams on first call). */
uint64_t tp__chaos_seed(void);
#define TP_CHAOS_POINT(where) tp__chaos_point(where)
#else
#define TP_CHAOS_POINT(where) ((void)0)
#endif

#endif
