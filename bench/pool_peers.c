/* SPDX-License-Identifier: MIT */
/*
 * The peers of the task-pool benchmark behind bench/peers/pool_peer.h.
 *
 * DESIGN
 * Each adapter does the least a careful user of that pool would do:
 *  - tripool: tp_pool_opts_init, then max_workers (and queue_cap when the
 *    scenario needs room for every task); tp_submit blocks while full.
 *  - GLib: an exclusive GThreadPool of `workers` threads; g_thread_pool_push.
 *  - C-Thread-Pool: thpool_init(workers); thpool_add_work (one malloc per job).
 *    Its source keeps globals, so one pool at a time (the harness makes one).
 *  - libuv: the process-wide threadpool sized by UV_THREADPOOL_SIZE (libuv
 *    reads it once, at first use: one worker count per process). Each
 *    submitting thread owns a loop and an array of uv_work_t (libuv needs the
 *    request memory until the request completes), queues with uv_queue_work
 *    and runs its loop in sub_end until every request is done.
 *  - thread per task: pthread_create per task; each submitter keeps at most
 *    max(1, 64 / nsub) threads outstanding and joins the oldest first, so the
 *    process never holds more than ~64 task threads.
 * Ownership: sub state belongs to the submitting thread from sub_begin to
 * sub_end; pools belong to the harness thread that made them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>
#include <thpool.h>
#include <uv.h>

#ifdef TP_BENCH_HAVE_TRIPOOL
#include "tripool.h"
#endif

#include "peers/pool_peer.h"

/* Subs that are just the pool pointer. */
static int sub_is_pool(void *pool, size_t ntasks, void **sub) {
    (void)ntasks;
    *sub = pool;
    return 0;
}

static void sub_end_none(void *sub) {
    (void)sub;
}

/* ---- tripool ------------------------------------------------------------- */
#ifdef TP_BENCH_HAVE_TRIPOOL
static int tp_entry(void *arg) {
    pb_run(arg);
    return 0;
}

static int tp_create(void **pool, unsigned workers, size_t qcap, unsigned nsub) {
    (void)nsub;
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = workers;
    if (qcap) o.queue_cap = qcap;
    o.name = "bench";
    tp_pool *p = NULL;
    int rc = tp_pool_create(&p, &o);
    *pool = p;
    return rc;
}

static int tp_sub_submit(void *sub, void *arg) {
    return tp_submit(sub, tp_entry, arg);
}

static void tp_destroy_pool(void *pool) {
    if (pb_verbose) {
        struct tp_pool_stats st;
        tp_pool_stats(pool, &st);
        fprintf(stderr,
                "tripool stats: workers %u (idle %u, peak %u), submitted %llu, completed %llu, "
                "peak queued %zu\n",
                st.workers_running, st.workers_idle, st.peak_workers,
                (unsigned long long)st.submitted, (unsigned long long)st.completed, st.peak_queued);
    }
    tp_pool_destroy(pool);
}

static const pb_peer peer_tripool = {"tripool",     tp_create,    sub_is_pool,
                                     tp_sub_submit, sub_end_none, tp_destroy_pool};
#endif

/* ---- GLib GThreadPool ---------------------------------------------------- */
static void glib_entry(gpointer data, gpointer user) {
    (void)user;
    pb_run(data);
}

static int glib_create(void **pool, unsigned workers, size_t qcap, unsigned nsub) {
    (void)qcap;
    (void)nsub;
    GError *err = NULL;
    GThreadPool *p = g_thread_pool_new(glib_entry, NULL, (gint)workers, TRUE, &err);
    if (!p) {
        fprintf(stderr, "g_thread_pool_new: %s\n", err ? err->message : "?");
        g_clear_error(&err);
        return -EAGAIN;
    }
    *pool = p;
    return 0;
}

static int glib_submit(void *sub, void *arg) {
    return g_thread_pool_push(sub, arg, NULL) ? 0 : -EAGAIN;
}

static void glib_destroy(void *pool) {
    g_thread_pool_free(pool, FALSE, TRUE);
}

static const pb_peer peer_glib = {"glib",      glib_create,  sub_is_pool,
                                  glib_submit, sub_end_none, glib_destroy};

/* ---- C-Thread-Pool ------------------------------------------------------- */
static void thpool_entry(void *arg) {
    pb_run(arg);
}

static int thpool_create(void **pool, unsigned workers, size_t qcap, unsigned nsub) {
    (void)qcap;
    (void)nsub;
    threadpool p = thpool_init((int)workers);
    *pool = p;
    return p ? 0 : -EAGAIN;
}

static int thpool_submit(void *sub, void *arg) {
    return thpool_add_work(sub, thpool_entry, arg) == 0 ? 0 : -ENOMEM;
}

static void thpool_destroy_pool(void *pool) {
    thpool_wait(pool);
    thpool_destroy(pool);
}

static const pb_peer peer_cthreadpool = {"cthreadpool", thpool_create, sub_is_pool,
                                         thpool_submit, sub_end_none,  thpool_destroy_pool};

/* ---- libuv uv_queue_work ------------------------------------------------- */
static unsigned uv_pool_workers; /* the size libuv was started with, 0 = not yet */

struct uv_sub {
    uv_loop_t loop;
    uv_work_t *reqs;
    size_t cap, used;
};

static void uv_entry(uv_work_t *req) {
    pb_run(req->data);
}

static int uv_create(void **pool, unsigned workers, size_t qcap, unsigned nsub) {
    (void)qcap;
    (void)nsub;
    if (uv_pool_workers && uv_pool_workers != workers)
        return -EINVAL; /* libuv's pool is sized once per process */
    if (!uv_pool_workers) {
        char buf[16];
        snprintf(buf, sizeof buf, "%u", workers);
        setenv("UV_THREADPOOL_SIZE", buf, 1);
        uv_pool_workers = workers;
    }
    *pool = &uv_pool_workers;
    return 0;
}

static int uv_sub_begin(void *pool, size_t ntasks, void **sub) {
    (void)pool;
    struct uv_sub *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->reqs = malloc((ntasks ? ntasks : 1) * sizeof *s->reqs);
    if (!s->reqs || uv_loop_init(&s->loop) != 0) {
        free(s->reqs);
        free(s);
        return -ENOMEM;
    }
    s->cap = ntasks;
    *sub = s;
    return 0;
}

static int uv_submit(void *sub, void *arg) {
    struct uv_sub *s = sub;
    if (s->used == s->cap) return -ENOSPC;
    uv_work_t *r = &s->reqs[s->used++];
    r->data = arg;
    return uv_queue_work(&s->loop, r, uv_entry, NULL);
}

static void uv_sub_end(void *sub) {
    struct uv_sub *s = sub;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    free(s->reqs);
    free(s);
}

static void uv_destroy(void *pool) {
    (void)pool;
}

static const pb_peer peer_libuv = {"libuv",   uv_create,  uv_sub_begin,
                                   uv_submit, uv_sub_end, uv_destroy};

/* ---- one pthread per task ------------------------------------------------ */
#define TPT_WINDOW 64

struct tpt_pool {
    unsigned window; /* threads outstanding per submitter */
};

struct tpt_sub {
    pthread_t *ring;
    unsigned window, head, n; /* oldest at head, n outstanding */
};

static void *tpt_main(void *arg) {
    pb_task(arg);
    /* Release: the harness reads the task's writes after seeing the count. */
    atomic_fetch_add_explicit(&pb_tpt_done, 1, memory_order_release);
    return NULL;
}

static int tpt_create(void **pool, unsigned workers, size_t qcap, unsigned nsub) {
    (void)workers;
    (void)qcap;
    struct tpt_pool *p = malloc(sizeof *p);
    if (!p) return -ENOMEM;
    p->window = nsub && TPT_WINDOW / nsub ? TPT_WINDOW / nsub : 1;
    *pool = p;
    return 0;
}

static int tpt_sub_begin(void *pool, size_t ntasks, void **sub) {
    (void)ntasks;
    struct tpt_pool *p = pool;
    struct tpt_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->ring = malloc(p->window * sizeof *s->ring))) {
        free(s);
        return -ENOMEM;
    }
    s->window = p->window;
    *sub = s;
    return 0;
}

static int tpt_submit(void *sub, void *arg) {
    struct tpt_sub *s = sub;
    if (s->n == s->window) {
        pthread_join(s->ring[s->head], NULL);
        s->head = (s->head + 1) % s->window;
        s->n--;
    }
    unsigned slot = (s->head + s->n) % s->window;
    int rc = pthread_create(&s->ring[slot], NULL, tpt_main, arg);
    if (rc) return -rc;
    s->n++;
    return 0;
}

static void tpt_sub_end(void *sub) {
    struct tpt_sub *s = sub;
    for (; s->n; s->n--, s->head = (s->head + 1) % s->window)
        pthread_join(s->ring[s->head], NULL);
    free(s->ring);
    free(s);
}

static void tpt_destroy(void *pool) {
    free(pool);
}

static const pb_peer peer_tpt = {"thread",   tpt_create,  tpt_sub_begin,
                                 tpt_submit, tpt_sub_end, tpt_destroy};

const pb_peer *const pb_peers[] = {
#ifdef TP_BENCH_HAVE_TRIPOOL
    &peer_tripool,
#endif
    &peer_glib,    &peer_cthreadpool, &peer_libuv, &peer_tpt, NULL};
