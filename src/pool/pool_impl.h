/* SPDX-License-Identifier: MIT */
/*
 * The task pool's structures, shared by pool.c (workers, submit, close),
 * ring.h (the queue) and diag.c (stats, dump, watchdog). Which lock or
 * which order protects each field is said at the field; the DESIGN block
 * in pool.c explains the protocols. Not installed.
 */
#ifndef TP_POOL_IMPL_H
#define TP_POOL_IMPL_H

#include "pool/pool_internal.h"

#include "internal/atomic.h"

#include <pthread.h>
#include <string.h>

/* Sizes below (ring bytes = queue_cap x 32, up to 2^30 slots) assume a
 * 64-bit size_t; tripool refuses to build for 32-bit targets. */
_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8, "tripool needs a 64-bit target");

#define CLOSED_BIT (UINT64_C(1) << 63)
#define SPIN1 (UINT64_C(1) << 32)
#define IDLE_MASK UINT64_C(0xffffffff)
#define MAX_WORKERS_LIMIT (1u << 20)
#define MAX_QUEUE_LIMIT ((size_t)1 << 30)
#ifndef SPIN_ROUNDS
#define SPIN_ROUNDS 256 /* empty-ring polls before parking; see docs/pool.md */
#endif

#ifndef POP_BATCH
#define POP_BATCH 16 /* most tasks one worker takes with one deq CAS */
#endif

/* Cap of the adaptive spin before parking (see DESIGN). */
#ifndef LONG_SPIN_MAX_NS
#define LONG_SPIN_MAX_NS (128 * TP_NSEC_PER_USEC)
#endif

#ifndef FULL_YIELDS
#define FULL_YIELDS 16 /* yields before a submitter sleeps on a full ring */
#endif

enum { W_IDLE = 0, W_RUNNING = 1, W_EXITING = 2 };

/* Bytes of a task's label the pool keeps (NUL included); pool.h says 47. */
#define LABEL_MAX 48
#define LABEL_WORDS (LABEL_MAX / 8)

typedef struct slot {
    _Atomic uint64_t seq;
    tp_task_fn fn; /* fn/arg/t_enq: published by seq (release/acquire) */
    void *arg;
    _Atomic uint64_t t_enq; /* submit time; only written when the pool tracks
                             * time; atomic because dumps peek at the head */
} slot;

typedef struct worker {
    /* Written by the worker itself (single writer), read by stats/dump. */
    _Atomic uint64_t completed;
    _Atomic uint64_t failed;
    _Atomic uint64_t canceled;
    _Atomic int state;
    /* The running task's label, copied at its start so that readers never
     * touch the caller's string after the task (a seqlock: lseq is odd
     * while the worker writes, readers retry). All zero = no label. */
    _Atomic uint32_t lseq;
    _Atomic uint64_t lwords[LABEL_WORDS];
    bool has_label;            /* worker-private: lwords hold a label */
    _Atomic uint64_t start_ns; /* of the running task, when timed */
    /* Watchdog only (under mu): start_ns of the last task reported stuck. */
    uint64_t stuck_reported;
    /* The rest of the worker's last batch (see held_take): written by the
     * worker, taken by it or stolen by other workers. */
    _Atomic uint64_t bstate; /* generation:32 | next:16 | end:16 */
    struct held_task {
        _Atomic uintptr_t fn, arg;
        _Atomic uint64_t t_enq;
    } batch[POP_BATCH];
    tp_pool *pool;
    pthread_t tid;
    unsigned id;
    /* Under mu. */
    pthread_cond_t cond;
    bool wake;         /* set by the waker; the waker already moved the idle count */
    uint64_t woken_at; /* when a submitter woke it (0: woken for another reason) */
    bool in_idle;
    struct worker *prev, *next;   /* all live workers */
    struct worker *iprev, *inext; /* idle list; head = most recently parked */
    struct worker *znext;         /* zombie list */
} worker;

struct tp_pool {
    /* Read-only after create. */
    slot *ring;
    uint64_t cap;   /* ring slots: max(queue_cap, 2) (Vyukov needs >= 2) */
    uint64_t limit; /* queue_cap: the bound on queued tasks */
    uint64_t mask;
    bool pow2;
    bool nonblocking;
    bool timed;
    unsigned batch_max;   /* 1 with opts.fifo, else POP_BATCH */
    uint32_t sample_mask; /* observer_sample - 1 (power of two), 0 = time all */
    unsigned min_workers;
    unsigned max_blocked;
    uint64_t idle_timeout_ns;
    tp_error_fn on_error;
    void *on_error_arg;
    tp_observer_fn observer;
    void *observer_arg;
    uint64_t stuck_threshold_ns;
    tp_stuck_fn on_stuck;
    void *on_stuck_arg;
    char name[32];

    /* Read by every submit/worker, written rarely (under mu). */
    _Atomic unsigned max_workers;
    _Atomic unsigned nworkers;

    TP_CACHE_ALIGNED _Atomic uint64_t enq; /* submitters; top bit = closed */
    TP_CACHE_ALIGNED _Atomic uint64_t deq; /* workers */
    TP_CACHE_ALIGNED _Atomic uint64_t idle_spin;
    TP_CACHE_ALIGNED _Atomic unsigned nheld;    /* workers whose batch has tasks left */
    TP_CACHE_ALIGNED _Atomic unsigned nblocked; /* read per submit and dequeue, written rarely */
    _Atomic uint64_t peak_queued;
    _Atomic unsigned full_yielders; /* submitters yielding on a full ring */
    _Atomic uint64_t rejected;
    _Atomic uint64_t inline_submitted;
    _Atomic uint64_t inline_completed;
    _Atomic uint64_t inline_failed;
    _Atomic uint64_t inline_canceled;
    _Atomic uint64_t stuck;
    _Atomic unsigned peak_workers;

    TP_CACHE_ALIGNED pthread_mutex_t mu;
    struct bwaiter *bw_head, *bw_tail; /* blocked submitters, FIFO */
    pthread_cond_t state_cond;         /* wait_idle and close waiters */
    worker *all;
    worker *idle;
    worker *zombies;
    unsigned waiters; /* threads in wait_idle/close (under mu) */
    unsigned joiners; /* submitters joining zombies outside mu (under mu) */
    unsigned next_id;
    uint64_t ret_completed, ret_failed, ret_canceled; /* of exited workers */
    bool close_started;
    /* Watchdog (under mu). */
    bool wd_running;
    bool wd_stop;
    pthread_t wd_tid;
    pthread_cond_t wd_cond;
};

/* A submitter blocked on a full ring (on its stack, listed under mu). */
typedef struct bwaiter {
    pthread_cond_t cond;
    tp_pool *pool;
    struct bwaiter *next, *prev;
} bwaiter;

/* The queue slot of ring position pos. */
static inline slot *slot_at(tp_pool *p, uint64_t pos) {
    return &p->ring[p->pow2 ? (pos & p->mask) : (pos % p->cap)];
}

/* The batch state word (see held_take in pool.c). */
#define BS_NEXT(st) ((unsigned)((st) >> 16) & 0xffffu)
#define BS_END(st) ((unsigned)(st)&0xffffu)

/* Tasks left in w's batch (a snapshot). */
static inline unsigned held_count(worker *w) {
    uint64_t st = tp__load_relaxed(&w->bstate);
    return BS_END(st) - BS_NEXT(st);
}

/* Tasks accepted but not yet taken by a worker (seq_cst: used in the Dekker
 * checks). Claimed-but-unpublished slots count as queued. */
static inline uint64_t ring_depth_sc(tp_pool *p) {
    uint64_t e = tp__load_seq_cst(&p->enq) & ~CLOSED_BIT;
    uint64_t d = tp__load_seq_cst(&p->deq);
    return e > d ? e - d : 0;
}

/* Copy w's current label into out; "" when none, "?" if w kept changing
 * it faster than we could read (a reader never blocks the worker). */
static inline void label_load(worker *w, char out[LABEL_MAX]) {
    uint64_t words[LABEL_WORDS];
    for (int tries = 0; tries < 64; tries++) {
        /* acquire: pairs with the worker's closing release store. */
        uint32_t q = tp__load_acquire(&w->lseq);
        if (q & 1) {
            tp__cpu_relax();
            continue;
        }
        /* acquire: pairs with the word stores, see label_store(). */
        for (unsigned i = 0; i < LABEL_WORDS; i++)
            words[i] = tp__load_acquire(&w->lwords[i]);
        if (tp__load_relaxed(&w->lseq) == q) {
            memcpy(out, words, LABEL_MAX);
            out[LABEL_MAX - 1] = 0;
            return;
        }
    }
    memcpy(out, "?", 2);
}

/* Set on the watchdog thread: close and wait_idle from on_stuck return
 * -EDEADLK (pool.c). */
void tp__pool_mark_hook_thread(tp_pool *p);

/* The stuck-task watchdog thread (diag.c); started by create, stopped and
 * joined by close. */
void *tp__pool_watchdog(void *arg);

#endif
