/* SPDX-License-Identifier: MIT */
/*
 * The one internal assert facility, in two levels (after mimalloc's
 * mi_assert tiers):
 *
 *   TP__CHECK(cond, fmt, ...)  always on, in every build type: misuse of the
 *       API (a double put, a lease released twice, a context used after its
 *       last release) and invariants whose failure would corrupt memory.
 *       Prints "tripool: " + the message + newline to stderr, flushes it and
 *       aborts. By convention the message starts with the module or public
 *       call that caught it: "tp_buf_put: double put (...)".
 *   TP__FAIL(fmt, ...)         the same without a condition (the caller
 *       already knows it failed).
 *   TP__DEBUG_ASSERT(cond)     only without NDEBUG (Debug builds, the chaos
 *       build): internal invariants too costly for the hot path. With NDEBUG
 *       cond is not evaluated.
 *
 * The failure path is out of line and cold, so a check costs one compare and
 * a never-taken branch where it is used.
 */
#ifndef TP_INTERNAL_CHECK_H
#define TP_INTERNAL_CHECK_H

/* Print "tripool: <message>\n" on stderr and abort. */
_Noreturn void tp__check_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), cold, visibility("hidden")));

#define TP__CHECK(cond, ...)                                                                       \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) tp__check_fail(__VA_ARGS__);                             \
    } while (0)

#define TP__FAIL(...) tp__check_fail(__VA_ARGS__)

#ifdef NDEBUG
#define TP__DEBUG_ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define TP__DEBUG_ASSERT(cond)                                                                     \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            tp__check_fail("%s:%d: %s: assertion '%s' failed", __FILE__, __LINE__, __func__,       \
                           #cond);                                                                 \
    } while (0)
#endif

#endif
