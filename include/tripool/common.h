/* SPDX-License-Identifier: MIT */
/*
 * tripool/common.h - conventions shared by every tripool module.
 *
 * Errors: every function that can fail returns int: 0 on success or a
 * negative errno value (-EINVAL, -ENOMEM, -EAGAIN, -ETIMEDOUT, -ECANCELED,
 * -ESHUTDOWN, -EMFILE, ...). tp_strerror() turns one into text. Predicates
 * return bool. Functions returning a pointer return NULL on failure and say
 * so in their comment.
 *
 * Time: all times are nanoseconds. Deadlines are absolute CLOCK_MONOTONIC
 * values (see tp_now_ns()); timeouts are relative. A timeout of 0 means
 * "do not wait"; TP_FOREVER means "wait without a time limit".
 *
 * Options structs: every object is created with tp_X_create(&out, opts)
 * where opts == NULL means defaults and tp_X_opts_init() fills the defaults.
 * Fields may be added to options and stats structs in later versions;
 * always start from tp_X_opts_init().
 */
#ifndef TRIPOOL_COMMON_H
#define TRIPOOL_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TP_API __attribute__((visibility("default")))
#define TP_MUST_USE __attribute__((warn_unused_result))
#else
#define TP_API
#define TP_MUST_USE
#endif

#define TP_VERSION_MAJOR 0
#define TP_VERSION_MINOR 1
#define TP_VERSION_PATCH 0

/* A timeout meaning "no time limit". */
#define TP_FOREVER UINT64_MAX

#define TP_NSEC_PER_USEC UINT64_C(1000)
#define TP_NSEC_PER_MSEC UINT64_C(1000000)
#define TP_NSEC_PER_SEC UINT64_C(1000000000)

/* Text for a tripool error (negative errno) or 0. Never NULL; thread-safe;
 * the string is static. Unknown codes give "unknown error". */
TP_API const char *tp_strerror(int err);

/* The CLOCK_MONOTONIC time in nanoseconds: the clock every deadline uses. */
TP_API uint64_t tp_now_ns(void);

/* Number of CPUs this process may use: the smaller of its sched affinity
 * mask and the cgroup v2 cpu.max quota (rounded up), at least 1. */
TP_API unsigned tp_usable_cpus(void);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_COMMON_H */
