/* SPDX-License-Identifier: MIT */
/*
 * The window: the chunks of a job in flight, in submission order (a ring
 * of win_cap), with their buffers. It owns backpressure and ordered
 * consumption: tp__get_buf takes a buffer without waiting and, while the
 * buffer pool is at its cap, consumes the head (which gives buffers back);
 * tp__push_chunk makes room (window length, task cap), joins a small file
 * to the open batch or submits its task; tp__consume_head waits on the
 * head's future and applies its result (output.c).
 *
 * Coordinator only. A chunk belongs to a worker between its submit and the
 * return of tp_future_wait on it (the pool publishes the task's writes
 * before the wait returns); a batch's followers come back with their
 * leader's future. Waits: tp_future_wait on a submitted task (bounded by
 * that task, which never waits on the coordinator: workers take no
 * buffers), and tp_buf_get_timeout with a 10 s cap only when the window
 * is empty (someone else holds the memory).
 */
#include <errno.h>
#include <stdlib.h>

#include <zstd.h>

#include "engine/engine_internal.h"

static void chunk_free(struct run *r, struct echunk *c) {
    tp_engine *e = r->e;
    if (c->in) tp_buf_put(e->bp, c->in);
    if (c->out) tp_buf_put(e->bp, c->out);
    tp__sub_relaxed(&e->mem_now, c->mem);
    free(c);
}

/* Take a buffer of n bytes without waiting; consume the window's head while
 * the buffer pool is at its cap. */
int tp__get_buf(struct run *r, size_t n, tp_buf **out) {
    for (;;) {
        int err = tp_buf_get_timeout(r->e->bp, n, 0, out);
        if (err != -EAGAIN) return err;
        if (r->n == 0) /* nothing of ours to give back: someone else holds the memory */
            return tp_buf_get_timeout(r->e->bp, n, 10 * TP_NSEC_PER_SEC, out);
        tp__consume_head(r);
    }
}

/* Submit the batch being filled (the coordinator is about to wait, or the
 * batch is full). */
void tp__batch_submit(struct run *r) {
    struct echunk *lead = r->batch;
    if (!lead) return;
    r->batch = r->batch_end = NULL;
    r->batch_files = 0;
    r->batch_bytes = 0;
    int err = tp_submit_future(r->e->pool, r->e->ctx, tp__batch_task, lead, &lead->fut);
    if (err) {
        lead->fut = NULL;
        for (struct echunk *c = lead; c; c = c->batch_next)
            chunk_fail(c, err, "submit");
    }
}

void tp__consume_head(struct run *r) {
    tp__batch_submit(r); /* the head may be in it; never wait on an unsubmitted task */
    struct echunk *c = r->win[r->head];
    r->head = (r->head + 1) % r->win_cap;
    r->n--;
    if (c->task) r->ntasks--;
    if (c->batched && !c->fut && !c->ran && !c->err) {
        /* Its batch's leader was consumed before it (window order), so the
         * batch is over; a chunk it did not reach was cancelled. */
        int err = tp_ctx_err(r->e->ctx);
        chunk_fail(c, err ? err : -ECANCELED, "canceled");
    }
    if (c->fut) {
        int res = 0;
        int w = tp_future_wait(c->fut, TP_FOREVER, &res);
        tp_future_release(c->fut);
        c->fut = NULL;
        if (w < 0 && !c->err)
            chunk_fail(c, w, "canceled");
        else if (res < 0 && !c->err)
            chunk_fail(c, res, "task");
    }
    tp__apply(r, c);
    chunk_free(r, c);
}

/* Append c to the window (making room first) and submit its task unless it
 * already carries an error. */
void tp__push_chunk(struct run *r, struct echunk *c) {
    bool join = c->batched && !c->err && r->batch;
    if (!join) c->task = !c->err;
    while (r->n == r->win_cap || (c->task && r->ntasks >= r->task_cap)) {
        tp__consume_head(r); /* submits the open batch first: c cannot join it now */
        if (join && !r->batch) {
            join = false;
            c->task = true;
        }
    }
    if (c->batched && !c->err && !join) {
        /* A new batch: its leader takes buffers big enough for any file of
         * it (at most a chunk and BATCH_BYTES); this may consume the head,
         * which only makes room. */
        size_t big = r->e->o.chunk_size < BATCH_BYTES ? r->e->o.chunk_size : (size_t)BATCH_BYTES;
        size_t in_sz = piecewise(r) ? (big < PIECE ? big : PIECE) : big;
        int err = tp__get_buf(r, in_sz, &c->in);
        if (!err && r->op == TP_OP_COMPRESS) err = tp__get_buf(r, ZSTD_compressBound(big), &c->out);
        if (err) {
            chunk_fail(c, err, "buffer");
            c->task = false;
        } else {
            c->mem = c->in->cap + (c->out ? c->out->cap : 0);
            mem_add(r->e, c->mem);
        }
    }
    if (c->batched && !c->err) {
        if (join) {
            r->batch_end->batch_next = c;
        } else {
            tp__batch_submit(r);
            r->batch = c;
        }
        r->batch_end = c;
        r->batch_files++;
        r->batch_bytes += c->len;
    } else if (!c->err) {
        tp__batch_submit(r); /* keep submission in window order */
        int err = tp_submit_future(r->e->pool, r->e->ctx, tp__chunk_task, c, &c->fut);
        if (err) {
            c->fut = NULL;
            chunk_fail(c, err, "submit");
        }
    }
    if (c->task) r->ntasks++;
    r->win[(r->head + r->n) % r->win_cap] = c;
    r->n++;
    if (r->batch && (r->batch_files >= BATCH_FILES || r->batch_bytes >= BATCH_TASK_BYTES))
        tp__batch_submit(r);
}
