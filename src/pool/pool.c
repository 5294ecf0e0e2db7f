/* SPDX-License-Identifier: MIT */
/*
 * The task pool: workers, the queue, wake-ups, close.
 *
 * DESIGN
 *
 * Queue: see ring.h. Structures: pool_impl.h. Stats, dump and the
 * stuck-task watchdog: diag.c.
 *
 * Close. The top bit of `enq` is the CLOSED flag, set with one fetch_or.
 * Because a submit claims its slot with a CAS on the same word, every submit
 * is either ordered before close (its slot is counted in enq and will be
 * drained) or fails with -ESHUTDOWN: a submit racing close can never be lost.
 * Workers exit only when CLOSED is set and deq == enq (all accepted tasks
 * taken, including claimed-but-not-yet-published slots, which they wait for).
 *
 * Wake-or-spawn. `idle_spin` packs the number of parked workers (low 32
 * bits) and of spinning workers (high 32). A worker that finds the ring
 * empty counts itself spinning, spins briefly, then parks on its own
 * condition variable on the LIFO idle list (LIFO so surplus workers stay
 * parked long enough to expire). After a push a submitter reads idle_spin:
 * if a worker spins it will find the task; else it wakes a parked worker
 * (moving it from idle to spinning in one atomic add so other submitters do
 * not wake a second one) or spawns one while below max. The rule that no
 * task is stranded is a Dekker pair on seq_cst operations:
 *   submitter:  CAS enq (seq_cst)            ; load idle_spin, nworkers (seq_cst)
 *   worker:     add idle_spin / store nworkers; load enq, deq (seq_cst)
 * so either the submitter sees the worker idle/gone (and wakes or spawns)
 * or the worker sees the task (and does not park or exit). Every transition
 * that stops a worker looking at the ring (park, idle expiry, shrink) does
 * its announcement first and the ring check second. On x86 the CASes are
 * locked instructions and seq_cst loads are plain moves, so this costs no
 * fence on the hot path. When the last spinner takes a task and more are
 * queued it wakes (or spawns) the next worker, so a burst ramps up to max.
 *
 * Spinning. A worker that finds the ring empty polls it SPIN_ROUNDS times,
 * then, if it is the pool's only spinner, keeps polling (with sched_yield
 * between rounds, so a submitter sharing its CPU runs) for spin_ns, then
 * parks. spin_ns adapts per worker: after a park it is twice the gap
 * between parking and the submit that woke it (woken_at, the waker's
 * clock), or 0 if that exceeds LONG_SPIN_MAX_NS. Waking a parked thread
 * costs 50-250 us on the VMs we measure on; a spin only pays when work
 * arrives within it, and long gaps (an idle or trickle-fed pool) turn it
 * off, so such a pool still parks at once.
 *
 * Batches. With a deep ring (>= 4 tasks per worker) a worker claims k
 * slots with its one deq CAS (k = depth / (2 * nworkers), <= POP_BATCH),
 * runs the first and publishes the rest in its own `batch` array; `bstate`
 * (generation | next | end) is taken with a CAS by the owner (no lock) or
 * by thieves (under mu, which keeps the owner's struct alive). The owner
 * refills only an empty batch and bumps the generation, so a thief's CAS
 * fails if the entry it read is stale. `nheld` counts non-empty batches
 * (incremented by the owner after publishing, decremented by whoever takes
 * the last entry). Held tasks count as pending work wherever a worker
 * would stop looking for work (park, expiry, shrink, close) and in the
 * ramp-up/resize decisions; the batch-publish side is another Dekker pair:
 *   owner:   add nheld (seq_cst)         ; load idle_spin (seq_cst) -> wake
 *   parker:  add idle_spin (seq_cst)     ; load nheld (seq_cst) -> recheck
 * Spinners poll nheld and steal once the ring is empty. opts.fifo turns
 * batches off (strict FIFO start order across workers).
 *
 * The depth a worker needs (batch size, peak stat) comes from its private
 * copy of enq: enq only grows, so seen - pos is a lower bound, and enq is
 * re-read only when that is used up and pos % ENQ_SAMPLE == 0, which keeps
 * the submitters' line in their cache when the ring is near empty.
 *
 * Blocked submitters (ring full) queue in arrival order on a FIFO list of
 * `bwaiter`s under `mu`, each on its own condition variable, after counting
 * themselves in `nblocked` (seq_cst) and re-reading deq (seq_cst); only the
 * list's head may push. A worker reads nblocked (seq_cst) after its deq CAS
 * and, if anyone is blocked, wakes the head for the slot it just freed; a
 * head that pushed (or gave up) wakes the next one while room is left.
 * While anyone is blocked, new submits skip the fast path and queue behind
 * (a non-blocking or zero-timeout submit gets -EAGAIN): room that frees
 * goes to the blocked submitters first, in order, so a fast submitter
 * cannot starve them and none sleeps while a slot is free for it.
 *
 * Counters. Each worker owns its completed/failed/canceled counters (single
 * writer, relaxed); a worker that exits folds them into the pool's retired
 * totals under mu. submitted = enq + inline runs. Peak queue depth is sampled
 * by workers when they re-read enq. Nothing on the hot path is a shared RMW
 * besides the two ring CASes (and two nheld updates per batch).
 *
 * Locks. One mutex `mu` per pool protects: the worker lists (all, idle,
 * zombie), each worker's `wake` flag, nworkers (also read atomically), the
 * retired totals, waiter counts, close/watchdog state. Futures and groups
 * have their own mutex; lock order: group/future mutex is never held while
 * taking mu, and mu is never held while calling user code (tasks, hooks,
 * observer, dump writer) or tp_ctx functions that may run callbacks.
 *
 * Threads. Workers start lazily (or all at create with prealloc). A worker
 * that exits (idle expiry above min, shrink, close) puts itself on the
 * zombie list; close joins them all, spawns join earlier ones. The optional
 * stuck-task watchdog is the only other thread, joined by close. After close
 * returns 0 the pool has no thread left.
 */
#include "pool/ring.h"

#include "internal/atomic.h"
#include "internal/check.h"
#include "internal/chaos.h"
#include "internal/os.h"
#include "internal/probes.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local worker *tls_worker;
/* The pool whose task or hook this thread runs outside a worker: a task run
 * inline by a submitter, or on_stuck on the watchdog (close and wait_idle
 * from there would wait for the caller itself). */
static _Thread_local tp_pool *tls_busy_pool;
static _Thread_local tp_ctx *tls_ctx;

void tp__pool_mark_hook_thread(tp_pool *p) {
    tls_busy_pool = p;
}

/* The queue slot fn of a task node; never called. */
static int node_marker(void *arg) {
    (void)arg;
    return -EINVAL;
}

/* ---- held batches -------------------------------------------------------- */

static void wake_or_spawn_locked(tp_pool *p);

/* With idle_spin word is: a parked worker to wake, or room to start one. */
static inline bool can_add_worker(tp_pool *p, uint64_t is) {
    return (is & IDLE_MASK) != 0 ||
           tp__load_relaxed(&p->nworkers) < tp__load_relaxed(&p->max_workers);
}

/* Give pending work a worker unless one is spinning by the time we hold
 * mu (it will find the work). */
static void wake_or_spawn_unless_spinning(tp_pool *p) {
    pthread_mutex_lock(&p->mu);
    if (!(tp__load_relaxed(&p->idle_spin) >> 32)) wake_or_spawn_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/* Make t[0..n) the calling worker's batch (its previous one is used up):
 * it runs them in order unless other workers steal them first. */
static void held_publish(tp_pool *p, worker *w, const popped *t, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        tp__store_relaxed(&w->batch[i].fn, (uintptr_t)t[i].fn);
        tp__store_relaxed(&w->batch[i].arg, (uintptr_t)t[i].arg);
        tp__store_relaxed(&w->batch[i].t_enq, t[i].t_enq);
    }
    uint64_t gen = (tp__load_relaxed(&w->bstate) >> 32) + 1;
    /* seq_cst: the held-batch half of a Dekker pair with park(): count the
     * batch, then look for idle workers; park announces itself idle, then
     * reads nheld. Either the parking worker sees the batch or we see it
     * idle and wake it, so a batch whose owner blocks in a task (maybe on a
     * task of the same batch) is never left with every other worker
     * asleep. Counted *before* the batch is published: a thief that takes
     * its last task decrements nheld, which must never run ahead of this
     * increment (nheld would wrap to UINT_MAX for a moment). A worker that
     * sees the count before the state just finds nothing to steal yet and
     * looks again (spin_poll polls nheld). */
    tp__add_seq_cst(&p->nheld, 1);
    TP_CHAOS_POINT("pool.batch_publish");
    /* release: a thief that acquires this state reads the entries above. */
    tp__store_release(&w->bstate, (gen << 32) | n);
    uint64_t is = tp__load_seq_cst(&p->idle_spin);
    if ((is >> 32) == 0 && can_add_worker(p, is)) wake_or_spawn_unless_spinning(p);
}

/* Take the next task of w's batch: w's own worker without a lock, other
 * workers under mu (which keeps w alive). */
static bool held_take(tp_pool *p, worker *w, popped *out) {
    /* acquire: the entries of the state read were written before the
     * owner's release store of it. */
    uint64_t st = tp__load_acquire(&w->bstate);
    for (;;) {
        unsigned next = BS_NEXT(st), end = BS_END(st);
        if (next >= end) return false;
        out->fn = (tp_task_fn)tp__load_relaxed(&w->batch[next].fn);
        out->arg = (void *)tp__load_relaxed(&w->batch[next].arg);
        out->t_enq = tp__load_relaxed(&w->batch[next].t_enq);
        /* The owner refills only an empty batch, with a new generation, so
         * a successful CAS proves the entry read belongs to the state
         * swapped. acq_rel on success: release orders our reads of the
         * entry before the owner's refill (the owner acquires the state
         * that shows the batch used up before it overwrites entries);
         * acquire on failure: we retry with the new state's entries. */
        TP_CHAOS_POINT("pool.steal");
        if (tp__cas_weak_acq_rel(&w->bstate, &st, st + (UINT64_C(1) << 16))) {
            if (next + 1 == end) {
                unsigned was = tp__sub_relaxed(&p->nheld, 1);
                /* Counted before published (held_publish): never below 0.
                 * Checked in the Debug (sanitizer) and chaos builds. */
                TP__DEBUG_ASSERT(was != 0);
                (void)was;
            }
            return true;
        }
    }
}

/* Steal one task from another worker's batch. */
static bool held_steal(tp_pool *p, worker *self, popped *out) {
    bool got = false;
    pthread_mutex_lock(&p->mu);
    for (worker *w = p->all; w && !got; w = w->next)
        if (w != self) got = held_take(p, w, out);
    pthread_mutex_unlock(&p->mu);
    return got;
}

/* Queued in the ring or held in a worker's batch (seq_cst, as above). */
static inline bool work_pending_sc(tp_pool *p) {
    return ring_depth_sc(p) != 0 || tp__load_seq_cst(&p->nheld) != 0;
}

/* True on a thread that runs one of p's tasks or hooks. */
static inline bool on_own_thread(tp_pool *p) {
    return (tls_worker && tls_worker->pool == p) || tls_busy_pool == p;
}

static inline bool pool_closed(tp_pool *p) {
    return (tp__load_relaxed(&p->enq) & CLOSED_BIT) != 0;
}

/* ---- labels (copied per task, see struct worker) ----------------------- */

/* The worker stores the label of the task it starts (NULL: none). */
static void label_store(worker *w, const char *label) {
    uint64_t words[LABEL_WORDS] = {0};
    if (label) memcpy(words, label, strnlen(label, LABEL_MAX - 1));
    uint32_t q = tp__load_relaxed(&w->lseq);
    tp__store_relaxed(&w->lseq, q + 1);
    /* release (each word): a reader that acquires any new word also sees
     * the odd count stored before it, so it retries. (No fences: TSan does
     * not model them; on x86 these are plain stores.) */
    for (unsigned i = 0; i < LABEL_WORDS; i++)
        tp__store_release(&w->lwords[i], words[i]);
    /* release: the words above before the even count. */
    tp__store_release(&w->lseq, q + 2);
    w->has_label = label != NULL;
}

/* ---- workers ------------------------------------------------------------- */

static void *worker_main(void *arg);
static uint64_t run_task(tp_pool *p, struct worker *w, tp_task_fn fn, void *arg, uint64_t t_enq,
                         uint64_t t_start);

static void idle_remove_locked(tp_pool *p, worker *w) {
    if (w->iprev)
        w->iprev->inext = w->inext;
    else
        p->idle = w->inext;
    if (w->inext) w->inext->iprev = w->iprev;
    w->iprev = w->inext = NULL;
    w->in_idle = false;
}

static void idle_push_locked(tp_pool *p, worker *w) {
    w->iprev = NULL;
    w->inext = p->idle;
    if (p->idle) p->idle->iprev = w;
    p->idle = w;
    w->in_idle = true;
}

static void all_remove_locked(tp_pool *p, worker *w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        p->all = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Start one worker, counted as spinning. Returns 0 or -EAGAIN/-ENOMEM. */
static int spawn_locked(tp_pool *p) {
    worker *w = aligned_alloc(TP_CACHELINE,
                              (sizeof(worker) + TP_CACHELINE - 1) & ~(size_t)(TP_CACHELINE - 1));
    if (!w) return -ENOMEM;
    memset(w, 0, sizeof *w);
    int rc = tp__cond_init_monotonic(&w->cond);
    if (rc) {
        free(w);
        return rc;
    }
    w->pool = p;
    w->id = p->next_id++;
    tp__add_relaxed(&p->idle_spin, SPIN1); /* the new worker starts spinning */
    unsigned n = tp__load_relaxed(&p->nworkers) + 1;
    tp__store_relaxed(&p->nworkers, n);
    w->next = p->all;
    if (p->all) p->all->prev = w;
    p->all = w;
    rc = pthread_create(&w->tid, NULL, worker_main, w);
    if (rc) {
        all_remove_locked(p, w);
        tp__store_relaxed(&p->nworkers, n - 1);
        tp__sub_relaxed(&p->idle_spin, SPIN1);
        p->next_id--;
        pthread_cond_destroy(&w->cond);
        free(w);
        return -EAGAIN;
    }
    if (n > tp__load_relaxed(&p->peak_workers)) tp__store_relaxed(&p->peak_workers, n);
    return 0;
}

/* Wake the parked worker w (under mu). woken_at: the submit's time when a
 * submitter wakes it for work (sizes its next spin), else 0. */
static void wake_parked_locked(tp_pool *p, worker *w, uint64_t woken_at) {
    idle_remove_locked(p, w);
    w->wake = true;
    w->woken_at = woken_at;
    /* idle -> spinning in one step so no second submitter wakes another
     * worker for the same task. */
    tp__add_relaxed(&p->idle_spin, SPIN1 - 1);
    pthread_cond_signal(&w->cond);
}

/* Give queued work a worker: wake a parked one or spawn below max. */
static void wake_or_spawn_locked(tp_pool *p) {
    TP_CHAOS_POINT("pool.wake");
    if (p->idle) {
        wake_parked_locked(p, p->idle, tp__now_ns());
        return;
    }
    /* Spawn only for queued work: a submitter whose task was already taken
     * must not start a thread, least of all after close has returned (the
     * ring stays empty once closed and drained). */
    if ((tp__load_relaxed(&p->idle_spin) >> 32) == 0 &&
        tp__load_relaxed(&p->nworkers) < tp__load_relaxed(&p->max_workers) && work_pending_sc(p))
        (void)spawn_locked(p); /* on failure running workers still drain */
}

static worker *take_zombies_locked(tp_pool *p) {
    worker *z = p->zombies;
    p->zombies = NULL;
    return z;
}

static void join_zombies(worker *z) {
    while (z) {
        worker *n = z->znext;
        pthread_join(z->tid, NULL);
        pthread_cond_destroy(&z->cond);
        free(z);
        z = n;
    }
}

/* Run queued tasks on this thread because no worker could be started.
 * until_empty (close, with CLOSED set so the depth only falls): also wait
 * for slots claimed but not yet published; otherwise stop at the first
 * such slot, whose submitter comes here itself. Returns true if it ran
 * any task. */
static bool drain_inline(tp_pool *p, bool until_empty) {
    tp_task_fn fn;
    void *arg;
    uint64_t t;
    bool ran = false;
    for (;;) {
        if (ring_pop(p, &fn, &arg, &t)) {
            (void)run_task(p, NULL, fn, arg, t, 0);
            ran = true;
        } else if (until_empty && ring_depth_sc(p) != 0) {
            sched_yield(); /* a submitter is between claim and publish */
        } else {
            return ran;
        }
    }
}

static void wake_or_spawn(tp_pool *p) {
    pthread_mutex_lock(&p->mu);
    wake_or_spawn_locked(p);
    worker *z = p->zombies && !p->close_started ? take_zombies_locked(p) : NULL;
    bool stranded = tp__load_relaxed(&p->nworkers) == 0;
    if (z) p->joiners++; /* close waits for us: no thread outlives it */
    pthread_mutex_unlock(&p->mu);
    if (z) {
        join_zombies(z);
        pthread_mutex_lock(&p->mu);
        if (--p->joiners == 0 && p->waiters) pthread_cond_broadcast(&p->state_cond);
        pthread_mutex_unlock(&p->mu);
    }
    /* Could not start any thread: run the queue here rather than strand
     * accepted tasks. */
    if (stranded && drain_inline(p, false)) {
        pthread_mutex_lock(&p->mu);
        if (p->waiters) pthread_cond_broadcast(&p->state_cond); /* close, wait_idle */
        pthread_mutex_unlock(&p->mu);
    }
}

/* After a successful push: make sure some worker will look at the ring. */
static inline void after_push(tp_pool *p) {
    TP_CHAOS_POINT("pool.after_push");
    /* seq_cst: second half of the submitter side of the Dekker pair. */
    uint64_t w = tp__load_seq_cst(&p->idle_spin);
    if (w >> 32) {
        /* A spinning worker will find it, unless more tasks wait than
         * there are spinners: a spinner may be preempted (or a woken worker
         * not yet scheduled) on a loaded machine, so each extra queued task
         * wakes one more parked worker instead of waiting behind it. */
        if ((w & IDLE_MASK) == 0 || ring_depth_sc(p) <= (w >> 32)) return;
        wake_or_spawn(p);
        return;
    }
    if ((w & IDLE_MASK) != 0 || tp__load_seq_cst(&p->nworkers) < tp__load_relaxed(&p->max_workers))
        wake_or_spawn(p);
}

/* Worker is exiting (under mu, not in idle list, not counted in idle_spin):
 * account and hand over. */
static void worker_retire_locked(tp_pool *p, worker *w) {
    tp__store_relaxed(&w->state, W_EXITING);
    all_remove_locked(p, w);
    p->ret_completed += tp__load_relaxed(&w->completed);
    p->ret_failed += tp__load_relaxed(&w->failed);
    p->ret_canceled += tp__load_relaxed(&w->canceled);
    w->znext = p->zombies;
    p->zombies = w;
    if (p->waiters) pthread_cond_broadcast(&p->state_cond);
}

/* Decrement nworkers and re-check the ring (Dekker, see DESIGN). Returns
 * true if the worker may exit; false if it must stay (work appeared and it
 * was needed). Under mu. */
static bool worker_may_leave_locked(tp_pool *p) {
    unsigned n = tp__load_relaxed(&p->nworkers);
    /* seq_cst: worker half of the Dekker pair with after_push(). */
    tp__store_seq_cst(&p->nworkers, n - 1);
    TP_CHAOS_POINT("pool.leave");
    if (!work_pending_sc(p)) return true;
    tp__store_seq_cst(&p->nworkers, n);
    return false;
}

static void note_result(tp_pool *p, worker *w, tp_task_fn fn, void *arg, int r) {
    if (r < 0) {
        if (w)
            tp__store_relaxed(&w->failed, tp__load_relaxed(&w->failed) + 1);
        else
            tp__add_relaxed(&p->inline_failed, 1);
        if (p->on_error) p->on_error(r, fn, arg, p->on_error_arg);
    }
}

/* Run one dequeued task (plain or node) on this thread. w is the running
 * worker or NULL for inline runs outside a worker's own counters. */
/* t_start: the time the task starts if the caller knows it (the end of
 * the task this worker ran just before), else 0. Returns the end time when
 * the observer needed it, else 0: one clock read per task saved while a
 * worker runs tasks back to back. */
static uint64_t run_task(tp_pool *p, worker *w, tp_task_fn fn, void *arg, uint64_t t_enq,
                         uint64_t t_start) {
    const char *label = NULL;
    tp__task *node = NULL;
    tp_ctx *saved_ctx = tls_ctx;
    tp_pool *saved_busy = tls_busy_pool;
    if (!w) tls_busy_pool = p; /* inline: this thread now runs p's task */
    uint64_t t0 = 0, t1 = 0;
    int r;

    if (fn == node_marker) {
        node = arg;
        fn = node->fn;
        arg = node->arg;
        label = node->label;
        if (node->ctx) {
            int cerr = tp_ctx_err(node->ctx);
            if (cerr) {
                /* release: see count_finished(). */
                if (w)
                    tp__store_release(&w->canceled, tp__load_relaxed(&w->canceled) + 1);
                else
                    tp__add_release(&p->inline_canceled, 1);
                if (p->observer && t_enq) /* t_enq 0: sampled out */
                    p->observer(p->observer_arg, label, tp__now_ns() - t_enq, 0, cerr);
                if (node->fut) tp__future_complete(node->fut, cerr, true);
                if (node->group) tp__group_complete(node->group, cerr);
                goto free_node;
            }
            tls_ctx = node->ctx;
        }
    }
    /* Sampled out (t_enq 0): no clock reads for this task. */
    bool timed = p->timed && t_enq != 0;
    if (w) {
        if (label || w->has_label) label_store(w, label);
        if (timed) {
            /* A task queued after the previous one ended started no
             * earlier than its submit. */
            t0 = t_start ? (t_start > t_enq ? t_start : t_enq) : tp__now_ns();
            tp__store_relaxed(&w->start_ns, t0);
        } else if (p->timed) {
            tp__store_relaxed(&w->start_ns, 0); /* dump: "unknown" */
        }
        /* release: dump/watchdog that see RUNNING also see label/start. */
        tp__store_release(&w->state, W_RUNNING);
    } else if (timed) {
        t0 = tp__now_ns();
    }

    TP_PROBE(task_start, p, label);
    r = fn(arg);
    TP_PROBE(task_finish, p, label, r);

    if (w) tp__store_relaxed(&w->state, W_IDLE);
    tls_ctx = saved_ctx;
    note_result(p, w, fn, arg, r);
    if (p->observer && timed) {
        t1 = tp__now_ns();
        char copy[LABEL_MAX]; /* the task has ended: its label may be gone */
        const char *l = label;
        if (label && w) {
            label_load(w, copy); /* our own words: never contended */
            l = copy;
        }
        p->observer(p->observer_arg, l, t0 > t_enq ? t0 - t_enq : 0, t1 - t0, r);
    }
    /* Count before completing the future/group: a waiter woken by them
     * (through their mutex, which orders this store before its loads) must
     * find the task in stats.completed. */
    /* release: a reader that acquires this count also sees the task's
     * submission counted (see count_finished()). */
    if (w)
        tp__store_release(&w->completed, tp__load_relaxed(&w->completed) + 1);
    else
        tp__add_release(&p->inline_completed, 1);
    if (node) {
        if (node->fut) tp__future_complete(node->fut, r, false);
        if (node->group) tp__group_complete(node->group, r);
    }
    if (!node) goto out;
free_node:
    if (node->ctx) tp_ctx_release(node->ctx);
    if (node->fut) tp__future_release_ref(node->fut);
    free(node);
out:
    tls_busy_pool = saved_busy;
    return t1;
}

enum { PARK_WOKEN, PARK_RECHECK, PARK_EXIT };

/* Under mu, after the worker has stopped counting itself as spinning or
 * idle (seq_cst, the worker half of the Dekker pair): leave if the pool may
 * lose it, else count it spinning again to re-check the ring. Unlocks mu. */
static int leave_or_respin_unlock(tp_pool *p, worker *w) {
    if (worker_may_leave_locked(p)) {
        worker_retire_locked(p, w);
        pthread_mutex_unlock(&p->mu);
        return PARK_EXIT;
    }
    tp__add_relaxed(&p->idle_spin, SPIN1);
    pthread_mutex_unlock(&p->mu);
    return PARK_RECHECK;
}

/* The worker is counted spinning and saw an empty ring. */
static int park(tp_pool *p, worker *w) {
    pthread_mutex_lock(&p->mu);
    if (tp__load_relaxed(&p->nworkers) > tp__load_relaxed(&p->max_workers)) {
        /* Surplus after a shrink. seq_cst: stop counting as a spinner
         * before worker_may_leave_locked re-checks the ring (Dekker). */
        tp__sub_seq_cst(&p->idle_spin, SPIN1);
        return leave_or_respin_unlock(p, w);
    }
    idle_push_locked(p, w);
    w->wake = false;
    w->woken_at = 0;
    /* seq_cst: worker half of the Dekker pair (announce idle, then look). */
    tp__add_seq_cst(&p->idle_spin, 1 - SPIN1);
    TP_CHAOS_POINT("pool.park");
    if (work_pending_sc(p)) {
        idle_remove_locked(p, w);
        tp__add_relaxed(&p->idle_spin, SPIN1 - 1);
        pthread_mutex_unlock(&p->mu);
        return PARK_RECHECK;
    }
    if (p->waiters) pthread_cond_broadcast(&p->state_cond); /* maybe idle now */
    bool expire = tp__load_relaxed(&p->nworkers) > p->min_workers;
    uint64_t deadline = expire ? tp__deadline_after(p->idle_timeout_ns) : TP_FOREVER;
    while (!w->wake) {
        if (pool_closed(p)) {
            /* Drained and closed: leave. (Not drained: close woke us.) */
            idle_remove_locked(p, w);
            tp__sub_relaxed(&p->idle_spin, 1);
            if (work_pending_sc(p)) {
                tp__add_relaxed(&p->idle_spin, SPIN1);
                pthread_mutex_unlock(&p->mu);
                return PARK_RECHECK;
            }
            tp__store_relaxed(&p->nworkers, tp__load_relaxed(&p->nworkers) - 1);
            worker_retire_locked(p, w);
            pthread_mutex_unlock(&p->mu);
            return PARK_EXIT;
        }
        int rc = tp__cond_wait_until(&w->cond, &p->mu, deadline);
        if (w->wake) break;
        if (rc == -ETIMEDOUT) {
            if (tp__load_relaxed(&p->nworkers) > p->min_workers) {
                idle_remove_locked(p, w);
                /* seq_cst: announce "not idle" before the ring re-check. */
                tp__sub_seq_cst(&p->idle_spin, 1);
                return leave_or_respin_unlock(p, w);
            }
            deadline = TP_FOREVER;
        }
    }
    /* The waker removed us from the idle list and counted us spinning. */
    pthread_mutex_unlock(&p->mu);
    return PARK_WOKEN;
}

/* After a task: leave if resize shrank the pool below the live count. */
static bool worker_shrink(tp_pool *p, worker *w) {
    pthread_mutex_lock(&p->mu);
    if (tp__load_relaxed(&p->nworkers) <= tp__load_relaxed(&p->max_workers)) {
        pthread_mutex_unlock(&p->mu);
        return false;
    }
    unsigned n = tp__load_relaxed(&p->nworkers);
    tp__store_seq_cst(&p->nworkers, n - 1);
    if (work_pending_sc(p) && !(tp__load_relaxed(&p->idle_spin) >> 32)) wake_or_spawn_locked(p);
    worker_retire_locked(p, w);
    pthread_mutex_unlock(&p->mu);
    return true;
}

/* Poll the head slot (published means a pop would succeed) and the held
 * batches up to rounds times. True if there is work to try. */
static bool spin_poll(tp_pool *p, int rounds) {
    for (int i = 0; i < rounds; i++) {
        uint64_t pos = tp__load_relaxed(&p->deq);
        if (tp__load_relaxed(&slot_at(p, pos)->seq) == pos + 1) return true;
        if (tp__load_relaxed(&p->nheld)) return true; /* a batch to steal from */
        tp__cpu_relax();
    }
    return false;
}

/* The adaptive spin (see DESIGN): only the pool's sole spinner keeps
 * looking for up to ns, yielding between polls so a thread that shares its
 * CPU (a submitter) is not starved. True if work showed up. */
static bool long_spin(tp_pool *p, uint64_t ns) {
    if (!ns || (tp__load_relaxed(&p->idle_spin) >> 32) != 1) return false;
    uint64_t until = tp__now_ns() + ns;
    do {
        sched_yield();
        if (spin_poll(p, 64)) return true;
        if (pool_closed(p)) return false;
    } while (tp__now_ns() < until);
    return false;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    tp_pool *p = w->pool;
    bool spinning = true;  /* spawn counted us spinning */
    uint64_t last_end = 0; /* end of the previous task if we went straight on */
    uint64_t seen_enq = 0; /* last enq read (ring_pop_batch) */
    uint64_t spin_ns = 0;  /* adaptive long spin before parking, 0 = none */
    tls_worker = w;

    for (;;) {
        popped batch[POP_BATCH];
        unsigned nb = ring_pop_batch(p, batch, p->batch_max, &seen_enq);
        if (!nb && tp__load_relaxed(&p->nheld) && held_steal(p, w, &batch[0])) nb = 1;
        if (nb) {
            if (spinning) {
                spinning = false;
                uint64_t old = tp__sub_seq_cst(&p->idle_spin, SPIN1);
                /* Depth last: it reads the submitters' line. Held
                 * batches count: their owners may block. */
                if ((old >> 32) == 1 && can_add_worker(p, old) && work_pending_sc(p))
                    wake_or_spawn_unless_spinning(p);
            }
            if (nb > 1) held_publish(p, w, batch + 1, nb - 1);
            last_end = run_task(p, w, batch[0].fn, batch[0].arg, batch[0].t_enq, last_end);
            while (nb > 1 && held_take(p, w, &batch[0]))
                last_end = run_task(p, w, batch[0].fn, batch[0].arg, batch[0].t_enq, last_end);
            if (tp__load_relaxed(&p->nworkers) > tp__load_relaxed(&p->max_workers) &&
                worker_shrink(p, w))
                return NULL;
            continue;
        }
        last_end = 0; /* the next task's start is not "now" any more */
        if (!spinning) {
            spinning = true;
            tp__add_relaxed(&p->idle_spin, SPIN1);
        }
        if (spin_poll(p, SPIN_ROUNDS)) continue;
        if (long_spin(p, spin_ns)) continue;
        if (ring_depth_sc(p) != 0) {
            sched_yield(); /* a slot is claimed but not yet published */
            continue;
        }
        uint64_t t_park = tp__now_ns();
        int r = park(p, w);
        if (r == PARK_EXIT) return NULL;
        if (r == PARK_WOKEN) {
            /* Size the next spin from the gap between parking and the
             * submit that woke us (the waker's clock, so the wake-up's own
             * latency does not count): twice the gap if that is within
             * the cap, else no long spin. Long gaps cost nothing, gaps a
             * spin can bridge cost a spinning CPU (docs/pool.md). */
            uint64_t g = w->woken_at > t_park ? w->woken_at - t_park : UINT64_MAX / 4;
            spin_ns = 2 * g <= LONG_SPIN_MAX_NS ? 2 * g : 0;
        }
        /* WOKEN or RECHECK: counted spinning again. */
    }
}

/* ---- submit -------------------------------------------------------------- */

/* A blocked submitter's context became done: wake it. */
static void cb_wake_blocked(void *arg) {
    bwaiter *bw = arg;
    pthread_mutex_lock(&bw->pool->mu);
    pthread_cond_signal(&bw->cond);
    pthread_mutex_unlock(&bw->pool->mu);
}

static void bw_append_locked(tp_pool *p, bwaiter *bw) {
    bw->next = NULL;
    bw->prev = p->bw_tail;
    if (p->bw_tail)
        p->bw_tail->next = bw;
    else
        p->bw_head = bw;
    p->bw_tail = bw;
}

static void bw_remove_locked(tp_pool *p, bwaiter *bw) {
    if (bw->prev)
        bw->prev->next = bw->next;
    else
        p->bw_head = bw->next;
    if (bw->next)
        bw->next->prev = bw->prev;
    else
        p->bw_tail = bw->prev;
}

/* Wait in line for room (see DESIGN, blocked submitters). Under mu. */
static int submit_blocked_locked(tp_pool *p, bwaiter *bw, tp_task_fn fn, void *arg,
                                 uint64_t deadline, tp_ctx *wctx) {
    int rc;
    bw_append_locked(p, bw);
    /* seq_cst: count ourselves before re-reading deq in ring_push (Dekker
     * with the worker's deq CAS then nblocked load). */
    tp__add_seq_cst(&p->nblocked, 1);
    TP_CHAOS_POINT("pool.blocked");
    for (;;) {
        rc = p->bw_head == bw ? ring_push(p, fn, arg) : pool_closed(p) ? -ESHUTDOWN : -EAGAIN;
        if (rc != -EAGAIN) break;
        if (wctx && (rc = tp_ctx_err(wctx)) != 0) break;
        if (tp__cond_wait_until(&bw->cond, &p->mu, deadline) == -ETIMEDOUT) {
            rc = p->bw_head == bw ? ring_push(p, fn, arg) : -EAGAIN;
            if (rc == -EAGAIN) rc = wctx && tp_ctx_err(wctx) ? tp_ctx_err(wctx) : -ETIMEDOUT;
            break;
        }
    }
    bw_remove_locked(p, bw);
    tp__sub_seq_cst(&p->nblocked, 1);
    /* Pass the turn on: the next in line may push if room is left (we
     * pushed into one freed slot, or left without using it), or must learn
     * that the pool closed. */
    if (p->bw_head && (ring_depth_sc(p) < p->limit || pool_closed(p)))
        pthread_cond_signal(&p->bw_head->cond);
    return rc;
}

/* The queue was full, or submitters are blocked on it. Run inline
 * (nested), fail, or wait in line. */
static int submit_slow(tp_pool *p, tp_task_fn fn, void *arg, uint64_t deadline, tp_ctx *wctx) {
    int rc;
    if (p->nonblocking || deadline <= tp__now_ns()) {
        rc = -EAGAIN;
        if (!p->nonblocking && deadline != 0) rc = -ETIMEDOUT;
        goto reject;
    }
    if (on_own_thread(p)) {
        /* A worker waiting for room in its own queue could deadlock. */
        tp__add_relaxed(&p->inline_submitted, 1);
        (void)run_task(p, NULL, fn, arg, p->timed ? tp__now_ns() : 0, 0);
        return 0;
    }
    /* A full ring usually drains within microseconds: one submitter at a
     * time yields a few times before sleeping, unless others already wait
     * (then it queues behind them). More yielders would only take CPU from
     * the workers (64 submitters on 2 cores). */
    rc = -EAGAIN;
    if (!tp__load_relaxed(&p->nblocked)) {
        if (tp__add_relaxed(&p->full_yielders, 1) == 0) {
            for (int i = 0; i < FULL_YIELDS && !tp__load_relaxed(&p->nblocked); i++) {
                sched_yield();
                rc = ring_push(p, fn, arg);
                if (rc != -EAGAIN) break;
            }
        }
        tp__sub_relaxed(&p->full_yielders, 1);
    }
    if (rc == 0) {
        after_push(p);
        return 0;
    }
    if (rc != -EAGAIN) goto reject;
    bwaiter bw = {.pool = p};
    if ((rc = tp__cond_init_monotonic(&bw.cond)) != 0) goto reject;
    tp_ctx_cb *cb = NULL;
    if (wctx) {
        rc = tp_ctx_err(wctx);
        if (rc) goto destroy_cond;
        uint64_t cd = tp_ctx_deadline(wctx);
        if (cd < deadline) deadline = cd;
        rc = tp_ctx_on_done(wctx, cb_wake_blocked, &bw, &cb);
        if (rc) goto destroy_cond;
    }
    pthread_mutex_lock(&p->mu);
    if (p->max_blocked && tp__load_relaxed(&p->nblocked) >= p->max_blocked)
        rc = -EAGAIN;
    else
        rc = submit_blocked_locked(p, &bw, fn, arg, deadline, wctx);
    pthread_mutex_unlock(&p->mu);
    if (cb) tp_ctx_cb_stop(cb); /* waits for a running callback: bw stays valid */
destroy_cond:
    pthread_cond_destroy(&bw.cond);
    if (rc == 0) {
        after_push(p);
        return 0;
    }
reject:
    tp__add_relaxed(&p->rejected, 1);
    return rc;
}

static int submit_common(tp_pool *p, tp_task_fn fn, void *arg, uint64_t deadline, tp_ctx *wctx) {
    /* Blocked submitters go first (see DESIGN); the line is read-mostly. */
    if (__builtin_expect(!tp__load_relaxed(&p->nblocked), 1)) {
        int rc = ring_push(p, fn, arg);
        if (__builtin_expect(rc == 0, 1)) {
            after_push(p);
            return 0;
        }
        if (rc == -ESHUTDOWN) {
            tp__add_relaxed(&p->rejected, 1);
            return rc;
        }
    } else if (pool_closed(p)) {
        tp__add_relaxed(&p->rejected, 1);
        return -ESHUTDOWN;
    }
    return submit_slow(p, fn, arg, deadline, wctx);
}

TP_API int tp_submit(tp_pool *p, tp_task_fn fn, void *arg) {
    if (!p || !fn) return -EINVAL;
    return submit_common(p, fn, arg, TP_FOREVER, NULL);
}

TP_API int tp_submit_timeout(tp_pool *p, tp_task_fn fn, void *arg, uint64_t timeout_ns) {
    if (!p || !fn) return -EINVAL;
    return submit_common(p, fn, arg, timeout_ns ? tp__deadline_after(timeout_ns) : 0, NULL);
}

int tp__pool_submit_task(tp_pool *p, tp__task *t, uint64_t deadline_ns) {
    if (t->ctx) {
        int cerr = tp_ctx_err(t->ctx);
        if (cerr) {
            tp__add_relaxed(&p->rejected, 1);
            return cerr;
        }
    }
    return submit_common(p, node_marker, t, deadline_ns, t->ctx);
}

TP_API void tp_task_opts_init(tp_task_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->timeout_ns = TP_FOREVER;
}

TP_API int tp_submit_ex(tp_pool *p, const tp_task_opts *o) {
    if (o && o->future) *o->future = NULL;
    if (!p || !o || !o->fn) return -EINVAL;
    uint64_t deadline = o->timeout_ns ? tp__deadline_after(o->timeout_ns) : 0;
    if (!o->ctx && !o->label && !o->future) return submit_common(p, o->fn, o->arg, deadline, NULL);
    if (o->future) return tp__submit_future_opts(p, o, deadline);
    tp__task *t = malloc(sizeof *t);
    if (!t) return -ENOMEM;
    *t = (tp__task){.fn = o->fn, .arg = o->arg, .label = o->label};
    if (o->ctx) t->ctx = tp_ctx_retain(o->ctx);
    int rc = tp__pool_submit_task(p, t, deadline);
    if (rc) {
        if (t->ctx) tp_ctx_release(t->ctx);
        free(t);
    }
    return rc;
}

TP_API int tp_submit_ctx(tp_pool *p, tp_ctx *c, tp_task_fn fn, void *arg) {
    tp_task_opts o;
    tp_task_opts_init(&o);
    o.fn = fn;
    o.arg = arg;
    o.ctx = c;
    return tp_submit_ex(p, &o);
}

TP_API tp_ctx *tp_task_ctx(void) {
    return tls_ctx ? tls_ctx : tp_ctx_background();
}

/* ---- lifecycle ----------------------------------------------------------- */

TP_API void tp_pool_opts_init(tp_pool_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->min_workers = 0;
    o->max_workers = tp__usable_cpus();
    o->queue_cap = 65536;
    o->idle_timeout_ns = TP_NSEC_PER_SEC;
}

static void stop_watchdog(tp_pool *p) {
    pthread_mutex_lock(&p->mu);
    bool join = p->wd_running;
    p->wd_running = false;
    p->wd_stop = true;
    pthread_cond_broadcast(&p->wd_cond);
    pthread_mutex_unlock(&p->mu);
    if (join) pthread_join(p->wd_tid, NULL);
}

static void pool_free(tp_pool *p) {
    pthread_cond_destroy(&p->wd_cond);
    pthread_cond_destroy(&p->state_cond);
    pthread_mutex_destroy(&p->mu);
    free(p->ring);
    free(p);
}

TP_API int tp_pool_create(tp_pool **out, const tp_pool_opts *opts) {
    tp_pool_opts d;
    int rc;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!opts) {
        tp_pool_opts_init(&d);
        opts = &d;
    }
    if (opts->max_workers == 0 || opts->max_workers > MAX_WORKERS_LIMIT ||
        opts->min_workers > opts->max_workers || opts->queue_cap == 0 ||
        opts->queue_cap > MAX_QUEUE_LIMIT || opts->max_blocked > MAX_WORKERS_LIMIT * 64u)
        return -EINVAL;

    tp_pool *p = aligned_alloc(TP_CACHELINE,
                               (sizeof(tp_pool) + TP_CACHELINE - 1) & ~(size_t)(TP_CACHELINE - 1));
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    p->limit = opts->queue_cap;
    p->cap = p->limit < 2 ? 2 : p->limit;
    p->pow2 = (p->cap & (p->cap - 1)) == 0;
    p->mask = p->cap - 1;
    p->ring = aligned_alloc(TP_CACHELINE, ((size_t)p->cap * sizeof(slot) + TP_CACHELINE - 1) &
                                              ~(size_t)(TP_CACHELINE - 1));
    if (!p->ring) {
        free(p);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < p->cap; i++) {
        tp__store_relaxed(&p->ring[i].seq, i);
        p->ring[i].fn = NULL;
        p->ring[i].arg = NULL;
        tp__store_relaxed(&p->ring[i].t_enq, 0);
    }
    p->nonblocking = opts->nonblocking;
    p->batch_max = opts->fifo ? 1 : POP_BATCH;
    p->min_workers = opts->min_workers;
    p->max_blocked = opts->max_blocked;
    p->idle_timeout_ns = opts->idle_timeout_ns;
    p->on_error = opts->on_error;
    p->on_error_arg = opts->on_error_arg;
    p->observer = opts->observer;
    p->observer_arg = opts->observer_arg;
    p->stuck_threshold_ns = opts->stuck_threshold_ns;
    p->on_stuck = opts->on_stuck;
    p->on_stuck_arg = opts->on_stuck_arg;
    p->timed = p->observer || p->stuck_threshold_ns;
    if (p->observer && !p->stuck_threshold_ns && opts->observer_sample > 1) {
        uint32_t n = 1;
        while (n < opts->observer_sample && n < (1u << 30))
            n <<= 1;
        p->sample_mask = n - 1;
    }
    snprintf(p->name, sizeof p->name, "%s", opts->name ? opts->name : "pool");
    tp__store_relaxed(&p->max_workers, opts->max_workers);

    if ((rc = -pthread_mutex_init(&p->mu, NULL)) != 0) goto err_free_ring;
    if ((rc = tp__cond_init_monotonic(&p->state_cond)) != 0) goto err_mutex;
    if ((rc = tp__cond_init_monotonic(&p->wd_cond)) != 0) goto err_state;

    if (p->stuck_threshold_ns) {
        if (pthread_create(&p->wd_tid, NULL, tp__pool_watchdog, p)) {
            rc = -EAGAIN;
            goto err_wd;
        }
        p->wd_running = true;
    }
    unsigned start = opts->prealloc ? opts->max_workers : opts->min_workers;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < start; i++) {
        if ((rc = spawn_locked(p)) != 0) {
            pthread_mutex_unlock(&p->mu);
            (void)tp_pool_close(p, TP_FOREVER);
            pool_free(p);
            return rc == -ENOMEM ? -ENOMEM : -EAGAIN;
        }
    }
    pthread_mutex_unlock(&p->mu);
    *out = p;
    return 0;

err_wd:
    pthread_cond_destroy(&p->wd_cond);
err_state:
    pthread_cond_destroy(&p->state_cond);
err_mutex:
    pthread_mutex_destroy(&p->mu);
err_free_ring:
    free(p->ring);
    free(p);
    return rc;
}

/* Tasks finished (run or skipped), under mu. Each count is read with
 * acquire, pairing with the release that published it: every task counted
 * here was accepted before the accepted count read *after* this call. */
static uint64_t count_finished_locked(tp_pool *p) {
    uint64_t fin = p->ret_completed + p->ret_canceled + tp__load_acquire(&p->inline_completed) +
                   tp__load_acquire(&p->inline_canceled);
    for (worker *w = p->all; w; w = w->next)
        fin += tp__load_acquire(&w->completed) + tp__load_acquire(&w->canceled);
    return fin;
}

static uint64_t count_accepted(tp_pool *p) {
    return (tp__load_relaxed(&p->enq) & ~CLOSED_BIT) + tp__load_relaxed(&p->inline_submitted);
}

/* Every accepted task has finished. Finished first, accepted second: read
 * the other way round, tasks accepted and finished between the two reads
 * would mask one still running (the finished total then reaches the
 * accepted total with that task outstanding). */
static bool pool_idle_locked(tp_pool *p) {
    uint64_t fin = count_finished_locked(p);
    TP_CHAOS_POINT("pool.idle_check");
    return fin >= count_accepted(p);
}

TP_API int tp_pool_close(tp_pool *p, uint64_t timeout_ns) {
    if (!p) return -EINVAL;
    if (on_own_thread(p)) return -EDEADLK;
    uint64_t deadline = tp__deadline_after(timeout_ns);
    /* seq_cst: ordered against every submitter's CAS on enq (see DESIGN). */
    tp__or_seq_cst(&p->enq, CLOSED_BIT);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (!p->close_started) {
        p->close_started = true;
        for (bwaiter *bw = p->bw_head; bw; bw = bw->next)
            pthread_cond_signal(&bw->cond); /* each sees -ESHUTDOWN */
    }
    /* Wake every parked worker: each drains, then exits. */
    while (p->idle)
        wake_parked_locked(p, p->idle, 0);
    TP_CHAOS_POINT("pool.close");
    if (tp__load_relaxed(&p->nworkers) == 0 && ring_depth_sc(p) != 0 && spawn_locked(p) != 0) {
        /* No thread to be had: drain here, to the last claimed slot, so no
         * task is left to run after we return. */
        pthread_mutex_unlock(&p->mu);
        (void)drain_inline(p, true);
        pthread_mutex_lock(&p->mu);
    }
    /* Done when no worker is left, no submitter joins zombies, and every
     * accepted task has finished: tasks that submitters run inline because
     * no thread could be started finish outside any worker. */
    p->waiters++;
    while (tp__load_relaxed(&p->nworkers) > 0 || p->joiners > 0 || !pool_idle_locked(p)) {
        if (tp__cond_wait_until(&p->state_cond, &p->mu, deadline) == -ETIMEDOUT &&
            (tp__load_relaxed(&p->nworkers) > 0 || p->joiners > 0 || !pool_idle_locked(p))) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    p->waiters--;
    worker *z = take_zombies_locked(p);
    pthread_mutex_unlock(&p->mu);
    join_zombies(z);
    if (rc == 0) stop_watchdog(p);
    return rc;
}

TP_API void tp_pool_destroy(tp_pool *p) {
    if (!p) return;
    (void)tp_pool_close(p, TP_FOREVER);
    pool_free(p);
}

TP_API int tp_pool_resize(tp_pool *p, unsigned max_workers) {
    if (!p || max_workers == 0 || max_workers > MAX_WORKERS_LIMIT || max_workers < p->min_workers)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    tp__store_relaxed(&p->max_workers, max_workers);
    /* Shrink: wake surplus parked workers; park() lets them leave. */
    unsigned live = tp__load_relaxed(&p->nworkers);
    for (unsigned i = max_workers; i < live && p->idle; i++)
        wake_parked_locked(p, p->idle, 0);
    if (!p->close_started) {
        uint64_t want = ring_depth_sc(p);
        for (worker *w = p->all; w; w = w->next)
            want += held_count(w);
        while (want > 0 && tp__load_relaxed(&p->nworkers) < max_workers) {
            if (p->idle)
                wake_or_spawn_locked(p);
            else if (spawn_locked(p) != 0)
                break;
            want--;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

TP_API int tp_pool_wait_idle(tp_pool *p, uint64_t timeout_ns) {
    if (!p) return -EINVAL;
    if (on_own_thread(p)) return -EDEADLK;
    uint64_t deadline = tp__deadline_after(timeout_ns);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    p->waiters++;
    while (!pool_idle_locked(p)) {
        if (tp__cond_wait_until(&p->state_cond, &p->mu, deadline) == -ETIMEDOUT &&
            !pool_idle_locked(p)) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    p->waiters--;
    pthread_mutex_unlock(&p->mu);
    return rc;
}
