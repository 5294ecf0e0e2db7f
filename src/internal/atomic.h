/* SPDX-License-Identifier: MIT */
/*
 * Atomics with the memory order in the name (after mimalloc's mi_atomic_*).
 * Use the weakest order that is correct and say why at the call site when it
 * is not relaxed.
 */
#ifndef TP_INTERNAL_ATOMIC_H
#define TP_INTERNAL_ATOMIC_H

#include <stdatomic.h>

#define tp__load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define tp__load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define tp__store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define tp__store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define tp__add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define tp__sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define tp__add_release(p, v) atomic_fetch_add_explicit((p), (v), memory_order_release)
#define tp__add_acq_rel(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define tp__sub_acq_rel(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define tp__cas_weak_relaxed(p, e, d)                                                              \
    atomic_compare_exchange_weak_explicit((p), (e), (d), memory_order_relaxed, memory_order_relaxed)
#define tp__cas_weak_acq_rel(p, e, d)                                                              \
    atomic_compare_exchange_weak_explicit((p), (e), (d), memory_order_acq_rel, memory_order_acquire)
#define tp__cas_strong_acq_rel(p, e, d)                                                            \
    atomic_compare_exchange_strong_explicit((p), (e), (d), memory_order_acq_rel,                   \
                                            memory_order_acquire)

/* seq_cst: only for a Dekker-style pair (each side stores, then loads the
 * other side's variable: "I registered as a waiter, then re-check the
 * condition" against "I changed the condition, then look for waiters"),
 * which acquire/release does not order. Say which pair at the call site. */
#define tp__load_seq_cst(p) atomic_load_explicit((p), memory_order_seq_cst)
#define tp__store_seq_cst(p, v) atomic_store_explicit((p), (v), memory_order_seq_cst)
#define tp__add_seq_cst(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define tp__sub_seq_cst(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define tp__exchange_seq_cst(p, v) atomic_exchange_explicit((p), (v), memory_order_seq_cst)
#define tp__or_seq_cst(p, v) atomic_fetch_or_explicit((p), (v), memory_order_seq_cst)
#define tp__cas_weak_seq_cst(p, e, d)                                                              \
    atomic_compare_exchange_weak_explicit((p), (e), (d), memory_order_seq_cst, memory_order_seq_cst)
#define tp__cas_strong_seq_cst(p, e, d)                                                            \
    atomic_compare_exchange_strong_explicit((p), (e), (d), memory_order_seq_cst,                   \
                                            memory_order_seq_cst)

/* Keep hot fields on their own cache line. */
#define TP_CACHELINE 64
#define TP_CACHE_ALIGNED _Alignas(TP_CACHELINE)

/* Raise *max to v if v is larger (for peak statistics). */
static inline void tp__max_relaxed(_Atomic(uint64_t) *max, uint64_t v) {
    uint64_t cur = tp__load_relaxed(max);
    while (v > cur && !atomic_compare_exchange_weak_explicit(max, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

static inline void tp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
