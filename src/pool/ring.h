/* SPDX-License-Identifier: MIT */
/*
 * The task pool's queue: included by pool.c only, static inline so the hot
 * path compiles as one unit with the workers.
 *
 * DESIGN
 *
 * Queue. One bounded MPMC ring (Dmitry Vyukov's algorithm) of queue_cap
 * 32-byte slots {seq, fn, arg, t_enq} (2 slots when queue_cap is 1: the
 * algorithm needs two; the bound is then checked against deq). Submitters
 * claim a slot with a CAS on `enq`, fill it and publish it by storing
 * seq = pos + 1 (release); workers claim with a CAS on `deq`, read it and
 * free it by storing seq = pos + cap (release). The common submit allocates
 * nothing and takes no lock. Tasks carrying a context, label, future or
 * group are a heap node (tp__task) queued as the slot {node_marker, node}.
 * Chosen by measurement (docs/pool.md): against a mutex+condvar ring on the
 * same 2-core box the Vyukov ring runs 1M empty tasks 2-4x faster with 1
 * submitter and 3-5x faster with 64 workers; per-worker queues with
 * stealing were not built: with one submitter they need the same shared
 * hand-off plus a steal path. 32 bytes per queued task (+48 for a node).
 */
#ifndef TP_POOL_RING_H
#define TP_POOL_RING_H

#include "pool/pool_impl.h"

#include "internal/chaos.h"
#include "internal/os.h"
#include "internal/probes.h"

static _Thread_local uint32_t tls_sample; /* this submitter's pushes, for sampling */

/* 0, -EAGAIN (full) or -ESHUTDOWN. */
static inline int ring_push(tp_pool *p, tp_task_fn fn, void *arg) {
    uint64_t pos = tp__load_relaxed(&p->enq);
    slot *s;
    for (;;) {
        if (pos & CLOSED_BIT) return -ESHUTDOWN;
        s = slot_at(p, pos);
        /* acquire: the worker that freed the slot is done reading it. */
        uint64_t seq = tp__load_acquire(&s->seq);
        int64_t d = (int64_t)(seq - pos);
        if (d == 0) {
            /* Only queue_cap 1 has fewer allowed tasks than slots. */
            if (__builtin_expect(p->limit != p->cap, 0) &&
                pos - tp__load_seq_cst(&p->deq) >= p->limit)
                return -EAGAIN;
            /* seq_cst: the submitter half of the wake-or-spawn and close
             * Dekker pairs (see DESIGN). */
            if (tp__cas_weak_seq_cst(&p->enq, &pos, pos + 1)) break;
        } else if (d < 0) {
            /* Slot still in use. Really full, or a worker is between its
             * deq CAS and freeing the slot? seq_cst: pairs with nblocked. */
            uint64_t dq = tp__load_seq_cst(&p->deq);
            if (pos - dq >= p->limit) return -EAGAIN;
            tp__cpu_relax();
            pos = tp__load_relaxed(&p->enq);
        } else {
            pos = tp__load_relaxed(&p->enq);
        }
    }
    s->fn = fn;
    s->arg = arg;
    if (p->timed) {
        /* 0 marks a task left untimed by sampling (the clock is never 0). */
        uint64_t t = 0;
        if (!p->sample_mask || (tls_sample++ & p->sample_mask) == 0) t = tp__now_ns();
        tp__store_relaxed(&s->t_enq, t);
    }
    TP_CHAOS_POINT("pool.publish"); /* claimed, not yet published */
    /* release: publishes fn/arg/t_enq to the worker that acquires seq. */
    tp__store_release(&s->seq, pos + 1);
    TP_PROBE(task_submit, p, fn);
    return 0;
}

/* A dequeued task. */
typedef struct popped {
    tp_task_fn fn;
    void *arg;
    uint64_t t_enq;
} popped;

/* Record a queue depth seen at a dequeue in the peak statistic. */
static inline void note_peak(tp_pool *p, uint64_t depth) {
    if (depth > p->limit) depth = p->limit;
    if (depth > tp__load_relaxed(&p->peak_queued)) tp__max_relaxed(&p->peak_queued, depth);
}

#define ENQ_SAMPLE 8 /* a worker reads enq at most at 1 in 8 ring positions */

/* Take 1..max tasks from the head with one CAS on deq; returns how many
 * (0: the ring looked empty). A worker takes more than one only when the
 * ring holds at least 2 * nworkers * k tasks, so a batch never holds back
 * more than a small share of the backlog from the other workers, and a
 * shallow ring is taken one task at a time (see DESIGN).
 *
 * *seen is the caller's last view of enq (NULL: none; read enq each time).
 * enq only grows, so seen - pos is a lower bound of the depth that costs no
 * read of the submitters' hot line; a worker re-reads enq only when that
 * bound is used up and pos is a multiple of ENQ_SAMPLE. That re-read also
 * records the peak depth, which is therefore sampled (docs/pool.md). */
static inline unsigned ring_pop_batch(tp_pool *p, popped *out, unsigned max, uint64_t *seen) {
    uint64_t pos = tp__load_relaxed(&p->deq);
    uint64_t avail;
    unsigned k;
    slot *s;
    for (;;) {
        s = slot_at(p, pos);
        /* acquire: pairs with the submitter's publishing release. */
        uint64_t seq = tp__load_acquire(&s->seq);
        int64_t d = (int64_t)(seq - (pos + 1));
        if (d < 0) return 0;
        if (d > 0) {
            pos = tp__load_relaxed(&p->deq);
            continue;
        }
        avail = seen && *seen > pos ? *seen - pos : 0;
        if (avail <= 1 && (!seen || (pos & (ENQ_SAMPLE - 1)) == 0)) {
            /* acquire orders this load after the slot's: published slot
             * pos means enq > pos. */
            uint64_t e = tp__load_acquire(&p->enq) & ~CLOSED_BIT;
            if (seen) *seen = e;
            avail = e > pos ? e - pos : 1;
            note_peak(p, avail);
        }
        k = 1;
        if (max > 1 && avail >= 4) {
            unsigned n = tp__load_relaxed(&p->nworkers);
            uint64_t share = avail / (2 * (uint64_t)(n ? n : 1));
            if (share > 1) {
                k = share < max ? (unsigned)share : max;
                /* Only a published prefix: a submitter may sit between
                 * its enq CAS and its publishing store. acquire as above. */
                for (unsigned i = 1; i < k; i++) {
                    if (tp__load_acquire(&slot_at(p, pos + i)->seq) != pos + i + 1) {
                        k = i;
                        break;
                    }
                }
            }
        }
        TP_CHAOS_POINT("pool.pop");
        /* seq_cst: pairs with blocked submitters reading deq. The slots
         * pos..pos+k-1 were published and deq == pos means no worker took
         * them since. */
        if (tp__cas_weak_seq_cst(&p->deq, &pos, pos + k)) break;
    }
    for (unsigned i = 0; i < k; i++) {
        s = slot_at(p, pos + i);
        out[i].fn = s->fn;
        out[i].arg = s->arg;
        out[i].t_enq = tp__load_relaxed(&s->t_enq);
        /* release: our reads of the slot happen before the next
         * submitter's writes. */
        tp__store_release(&s->seq, pos + i + p->cap);
    }
    /* seq_cst: pairs with blocked submitters counting themselves before
     * re-reading deq: either the head of the blocked list sees the freed
     * slot, or we see it counted and wake it for that slot ("blocks while
     * the queue is full", pool.h). The ring is full while anyone waits, so
     * this is also where the peak is seen. */
    TP_CHAOS_POINT("pool.pop_freed");
    if (tp__load_seq_cst(&p->nblocked)) {
        note_peak(p, p->limit);
        pthread_mutex_lock(&p->mu);
        if (p->bw_head) pthread_cond_signal(&p->bw_head->cond);
        pthread_mutex_unlock(&p->mu);
    }
    return k;
}

static inline bool ring_pop(tp_pool *p, tp_task_fn *fn, void **arg, uint64_t *t_enq) {
    popped t;
    if (!ring_pop_batch(p, &t, 1, NULL)) return false;
    *fn = t.fn;
    *arg = t.arg;
    *t_enq = t.t_enq;
    return true;
}

#endif
