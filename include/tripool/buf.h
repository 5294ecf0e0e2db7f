/* SPDX-License-Identifier: MIT */
/*
 * tripool/buf.h - the buffer pool: reusable byte buffers under a hard memory
 * bound.
 *
 * Size classes are powers of two from 64 B (TP_BUF_MIN_SIZE) to 64 MiB
 * (TP_BUF_MAX_SIZE). tp_buf_get(bp, n) returns a buffer of the smallest class
 * >= n (n == 0 gives the 64 B class). A request above 64 MiB is a "huge"
 * buffer: mapped straight from the OS with cap = n rounded up to the page
 * size, never retained, unmapped on put.
 *
 * Each thread keeps a small cache per pool in front of a shared depot (one
 * lock per class); a thread that exits hands its cache back. Buffers idle in
 * the pool are aged: every tick (tp_bufpool_tick(), every tick_ops depot
 * operations, or every tick_interval_ns on the timer service) moves idle
 * buffers to a victim tier and frees what stayed idle for two ticks. Buffers
 * reserved by tp_bufpool_prewarm() are never aged out.
 *
 * Memory bounds:
 *  - max_retained: idle bytes kept by the pool (depot and thread caches)
 *    never exceed it; a put that would exceed it frees the buffer instead.
 *  - max_inuse (0 = none): bytes handed out at a time, counted in cap bytes
 *    (the class size, or the page-rounded size of a huge buffer), not in the
 *    sizes asked for. Over it, tp_buf_get() fails (NULL, errno EAGAIN) or
 *    waits (opts.block_on_cap); the _timeout and _ctx variants wait with a
 *    limit. Every put wakes every waiter that now fits (a waiter for a big
 *    buffer does not hold up one for a small buffer that fits).
 *  - the 95th-percentile rule: once enough gets were seen, buffers whose
 *    class is more than 4x the class of 95% of the gets are not retained.
 *
 * Thread safety: get/put/stats/tick/prewarm may be called from any thread at
 * the same time. create/destroy must not race with other calls on the pool.
 *
 * Ownership: a buffer returned by get belongs to the caller until it is given
 * back exactly once with tp_buf_put() on the same pool. The caller may move
 * it between threads. data[0..cap) is writable; len is the caller's.
 *
 * Unloading (dlclose() of libtripool.so): destroy every pool first, and do
 * not call dlclose() while a thread that used a pool may be inside a tripool
 * call or exiting. Threads that used a pool may outlive the dlclose(): the
 * library deletes its thread-exit key when it is unloaded, so their exit runs
 * no tripool code. What their caches held was freed by tp_bufpool_destroy();
 * the small per-thread records left (about 1 KiB per pool the thread used,
 * at most 8 per thread) are then never freed; the unloading thread's own are.
 * A pool still alive at dlclose() is leaked with its buffers. Do not use the
 * default timer service (tick_interval_ns with timers NULL, contexts with a
 * deadline) in a program that unloads the library: its thread runs library
 * code and never stops (timer.h). glibc (2.36 checked) really unmaps the
 * library at dlclose() although it uses initial-exec TLS
 * (tests/dl/buf_dlclose.c checks the whole sequence).
 */
#ifndef TRIPOOL_BUF_H
#define TRIPOOL_BUF_H

#include "tripool/common.h"
#include "tripool/ctx.h"
#include "tripool/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TP_BUF_MIN_SHIFT 6
#define TP_BUF_MAX_SHIFT 26
#define TP_BUF_MIN_SIZE ((size_t)1 << TP_BUF_MIN_SHIFT) /* 64 B */
#define TP_BUF_MAX_SIZE ((size_t)1 << TP_BUF_MAX_SHIFT) /* 64 MiB */
/* Number of size classes; stats have one more slot for huge buffers. */
#define TP_BUF_NCLASSES (TP_BUF_MAX_SHIFT - TP_BUF_MIN_SHIFT + 1)
#define TP_BUF_HUGE TP_BUF_NCLASSES

typedef struct tp_bufpool tp_bufpool;

/* A buffer. data/len/cap are the caller's to use; the tp_*_ fields are
 * private to the pool. */
typedef struct tp_buf {
    uint8_t *data; /* cap writable bytes */
    size_t len;    /* bytes in use: 0 on every get, then the caller's */
    size_t cap;    /* capacity: the class size (or page-rounded, huge) */
    /* private */
    struct tp_buf *tp_next_;
    struct tp_bufpool *tp_pool_;
    uint64_t tp_stamp_;
    uint32_t tp_magic_;
    uint8_t tp_class_;
    uint8_t tp_flags_;
    uint8_t tp_state_;
    uint8_t tp_pad_;
} tp_buf;

/* Called on a buffer that is reused, before get returns it. */
typedef void (*tp_buf_reset_fn)(tp_buf *b, void *arg);

typedef struct tp_bufpool_opts {
    size_t max_retained;       /* idle bytes kept; default 256 MiB; 0 = keep none */
    size_t max_inuse;          /* bytes handed out at a time; default 0 = no cap */
    bool block_on_cap;         /* tp_buf_get over max_inuse waits instead of failing */
    bool page_aligned;         /* data page-aligned in every class (O_DIRECT) */
    bool huge_pages;           /* buffers >= 2 MiB 2 MiB-aligned with MADV_HUGEPAGE
                                  (transparent huge pages: fewer faults and TLB
                                  misses; a touched buffer is resident whole) */
    bool zero_on_get;          /* data zeroed on every get */
    tp_buf_reset_fn reset;     /* reset hook on reuse; may be NULL */
    void *reset_arg;           /* passed to reset */
    bool debug;                /* poison put buffers, detect double put, foreign and
                                  other pools' buffers (abort with a message) */
    bool passthrough;          /* plain allocate/free on every get/put, no retention */
    bool thread_cache;         /* per-thread caches; default true */
    size_t cache_bytes;        /* per thread, per class cache limit; default 1 MiB,
                                  at most max_retained / 64 (at least one buffer, at
                                  most 32); 0 = no thread caches */
    uint64_t tick_ops;         /* auto tick every N depot operations; default 65536;
                                  0 = only explicit ticks */
    uint64_t tick_interval_ns; /* also tick from a timer every interval; default 0 = off */
    tp_timers *timers;         /* service for those ticks; NULL = the default service */
    bool outlier_rule;         /* 95th-percentile rule; default true */
    uint64_t calibrate_gets;   /* a tick recalibrates the rule once at least this many
                                  gets happened since the last recalibration;
                                  default 10000 */
    const char *name;          /* label for messages; its first 31 bytes are copied */
    /* More fields may be added; always start from tp_bufpool_opts_init(). */
} tp_bufpool_opts;

/* Counters of one class (or of the totals). */
struct tp_bufpool_class_stats {
    size_t size;           /* class size (0 for the huge slot) */
    uint64_t gets;         /* successful gets */
    uint64_t hits;         /* gets served by a retained buffer */
    uint64_t misses;       /* gets that allocated */
    uint64_t puts;         /* puts */
    uint64_t dropped;      /* puts freed instead of retained (cap, outlier, huge) */
    size_t retained_bytes; /* idle bytes kept (depot and caches) */
    size_t inuse_bytes;    /* bytes handed out (total: exact when max_inuse is set) */
    size_t peak_bytes;     /* high-water mark of bytes allocated (in use + retained) */
    size_t retained;       /* idle buffers kept */
    size_t outstanding;    /* buffers handed out and not yet put */
};

/* The stats type is a struct tag, not a typedef: tp_bufpool_stats is also
 * the function that fills it. */
struct tp_bufpool_stats {
    struct tp_bufpool_class_stats total;
    struct tp_bufpool_class_stats cls[TP_BUF_NCLASSES + 1]; /* [TP_BUF_HUGE] = huge */
    double hit_ratio;    /* total.hits / total.gets (0 when no gets) */
    size_t max_retained; /* the caps in force */
    size_t max_inuse;
    size_t reserved_bytes; /* retained bytes plus room held by thread caches (<= cap) */
    size_t peak_retained;  /* high-water mark of retained bytes (depot view) */
    uint64_t ticks;        /* aging ticks run */
    uint64_t aged;         /* buffers freed by aging */
    uint64_t waits;        /* gets that waited for the in-use cap */
    uint64_t cap_failures; /* gets refused other than for ENOMEM/EINVAL: over the
                              in-use cap (EAGAIN, E2BIG), timed out, or their
                              context done (also when done before the call) */
    size_t outlier_limit;  /* largest class retained by the 95th-percentile rule */
};

TP_API void tp_bufpool_opts_init(tp_bufpool_opts *o);

/* Create a pool. opts NULL = defaults. Returns 0, -EINVAL (out NULL),
 * -ENOMEM, or the timer service's error when tick_interval_ns is set. */
TP_API TP_MUST_USE int tp_bufpool_create(tp_bufpool **out, const tp_bufpool_opts *opts);

/* A buffer with cap >= min_cap, len 0. Returns NULL only on ENOMEM or over
 * the in-use cap, with errno ENOMEM, EAGAIN (over max_inuse, not waiting),
 * E2BIG (the buffer's cap alone, min_cap rounded up to its class, exceeds
 * max_inuse: it could never fit) or EINVAL (bp NULL). Waits without a limit
 * over max_inuse when opts.block_on_cap. */
TP_API TP_MUST_USE tp_buf *tp_buf_get(tp_bufpool *bp, size_t min_cap);

/* Like tp_buf_get but waits up to timeout_ns for room under max_inuse
 * (0 = do not wait, TP_FOREVER = no limit). Returns 0 and *out, -EAGAIN (no
 * room, timeout 0), -ETIMEDOUT, -E2BIG, -ENOMEM or -EINVAL. */
TP_API TP_MUST_USE int tp_buf_get_timeout(tp_bufpool *bp, size_t min_cap, uint64_t timeout_ns,
                                          tp_buf **out);

/* Like tp_buf_get_timeout but waits until ctx is done (its deadline or a
 * cancel): then returns the context's error (-ETIMEDOUT or -ECANCELED), also
 * at once when ctx is already done. ctx NULL = background (no limit). */
TP_API TP_MUST_USE int tp_buf_get_ctx(tp_bufpool *bp, size_t min_cap, tp_ctx *ctx, tp_buf **out);

/* Give b back. b NULL is ignored. b must come from this pool and not be
 * used after the call. In debug mode a double put, a buffer of another pool
 * or a foreign pointer aborts with a message; in release mode a double put
 * or another pool's buffer aborts with a message while the buffer is still
 * retained by the pool (not freed by the caps or aging), a foreign pointer
 * is undefined behaviour (like free()). Two puts of one buffer racing in
 * two threads are caught only in debug mode (release mode checks and marks
 * the buffer with a plain load and store). In both modes a second put after
 * the buffer was handed out again cannot be told from the new owner's put. */
TP_API void tp_buf_put(tp_bufpool *bp, tp_buf *b);

/* Free a buffer without a pool: only for buffers still out when their pool
 * was destroyed (they stay valid until freed). A buffer of a live pool goes
 * back with tp_buf_put(). */
TP_API void tp_buf_free(tp_buf *b);

/* Fill *out. Counters are summed over threads without stopping them, so a
 * snapshot taken during traffic is approximate; it is exact when quiet. */
TP_API void tp_bufpool_stats(tp_bufpool *bp, struct tp_bufpool_stats *out);

/* One aging step: buffers idle since the previous tick move to the victim
 * tier, victims idle for two ticks are freed (except prewarmed reserve).
 * The calling thread's cache is aged at once, other threads' caches on their
 * next get/put. Also recalibrates the 95th-percentile rule. Returns the
 * number of buffers freed. */
TP_API size_t tp_bufpool_tick(tp_bufpool *bp);

/* Allocate count buffers of the class of size and keep them as a reserve
 * that aging never frees. populate pre-faults their pages (MAP_POPULATE or a
 * touch per page). Returns 0, -EINVAL, -ENOSPC (over max_retained; nothing
 * reserved) or -ENOMEM. Reserves add up over calls. */
TP_API TP_MUST_USE int tp_bufpool_prewarm(tp_bufpool *bp, size_t size, size_t count, bool populate);

/* Buffers handed out and not yet put (exact when no get/put runs). */
TP_API size_t tp_bufpool_outstanding(tp_bufpool *bp);

/* Free the pool and every retained buffer. Buffers still out are not freed
 * and stay valid: release them with tp_buf_free() (never tp_buf_put()); call
 * tp_bufpool_outstanding() before to learn their count. bp may be NULL. */
TP_API void tp_bufpool_destroy(tp_bufpool *bp);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_BUF_H */
