/* SPDX-License-Identifier: MIT */
/*
 * Collectors: the task, buffer and fd pools' and the engine's series in a
 * metrics registry.
 *
 * DESIGN
 * Stats-backed series are callback series (tp_metrics_*_fn): at scrape time
 * the registry (holding its lock) calls read_field(), which calls the pool's
 * stats function and picks one field. Nothing runs between scrapes. A
 * collector owns a `struct field_ref` per series (the callback's argument),
 * so the arguments live exactly as long as the series: the collector is
 * freed only after tp_metrics_unregister() returned for each of them, after
 * which the registry never calls them again. That is also why a collector
 * must be destroyed before its pool: unregistering is the only barrier
 * between a scrape and the pool's memory.
 *
 * The task pool's histograms are fed by the pool's observer (pool.h),
 * called on worker threads after every task; tp_histogram_observe_ns is
 * lock-free (per-thread slots), so the observer adds no shared lock to the
 * pool's hot path. With no registry the collector keeps a private one so
 * the controller in autoscale.c can still read the histograms.
 *
 * Worker threads: the observer records each thread's id (o->threads, under
 * o->threads_lock) on its first task so the controller can read the
 * thread's schedstat; tp__obs_sched_sample holds that lock while it reads
 * the /proc files (a worker's first task may wait that long, once).
 *
 * Lock order: registry lock -> the pool's own locks (a scrape calls the
 * stats functions under the registry lock; tp_engine_stats takes the
 * engine's task, buffer and fd pools' locks in turn, one at a time, and
 * the engine never calls into a registry). The observer takes no registry
 * lock (histogram updates are lock-free), so no cycle. o->threads_lock is a
 * leaf.
 *
 * Shared fields: a collector's fields are written before it is published
 * (prepare/register return) and then only read; o->pool is set once by
 * tp_obs_register_pool before its series exist. o->autoscale is the
 * controller's claim (atomic exchange) so one pool gets one controller.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "internal/atomic.h"
#include "obs/obs_internal.h"

#include "internal/os.h"
#include "tripool/obs.h"

enum src { SRC_POOL, SRC_BUF, SRC_FD, SRC_ENGINE };
enum ftype { F_U32, F_U64, F_SIZE };

/* One stats field exported as one series. */
struct field {
    const char *name;
    const char *help;
    bool counter;
    size_t offset;
    enum ftype type;
};

struct field_ref {
    enum src src;
    void *pool; /* tp_pool / tp_bufpool / tp_fdpool / tp_engine */
    const struct field *f;
    unsigned cls; /* buffer class index */
};

#define FIELD(st, n, h, c, m, t)                                                                   \
    { n, h, c, offsetof(struct st, m), t }

static const struct field pool_fields[] = {
    FIELD(tp_pool_stats, "tripool_pool_tasks_submitted_total", "Tasks accepted by submit.", true,
          submitted, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_tasks_completed_total",
          "Tasks finished (success or failure).", true, completed, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_tasks_failed_total", "Tasks that returned an error.", true,
          failed, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_tasks_rejected_total",
          "Submits refused (queue full, closed, timed out, context done).", true, rejected, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_tasks_canceled_total",
          "Tasks accepted but not run because their context was done.", true, canceled, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_tasks_stuck_total",
          "Tasks reported by the stuck-task watchdog.", true, stuck, F_U64),
    FIELD(tp_pool_stats, "tripool_pool_queue_depth", "Tasks waiting in the queue.", false, queued,
          F_SIZE),
    FIELD(tp_pool_stats, "tripool_pool_workers_running", "Worker threads alive.", false,
          workers_running, F_U32),
    FIELD(tp_pool_stats, "tripool_pool_workers_idle", "Worker threads waiting for work.", false,
          workers_idle, F_U32),
    FIELD(tp_pool_stats, "tripool_pool_workers_max", "Current bound on worker threads.", false,
          max_workers, F_U32),
};

static const struct field buf_fields[] = {
    FIELD(tp_bufpool_class_stats, "tripool_buf_gets_total", "Buffers handed out.", true, gets,
          F_U64),
    FIELD(tp_bufpool_class_stats, "tripool_buf_hits_total", "Gets served by a retained buffer.",
          true, hits, F_U64),
    FIELD(tp_bufpool_class_stats, "tripool_buf_misses_total", "Gets that allocated.", true, misses,
          F_U64),
    FIELD(tp_bufpool_class_stats, "tripool_buf_retained_bytes", "Idle bytes kept for reuse.", false,
          retained_bytes, F_SIZE),
    FIELD(tp_bufpool_class_stats, "tripool_buf_inuse_bytes", "Bytes handed out.", false,
          inuse_bytes, F_SIZE),
};

static const struct field fd_fields[] = {
    FIELD(tp_fdpool_stats, "tripool_fd_hits_total", "Acquires served by a cached descriptor.", true,
          hits, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_misses_total", "Acquires that opened a descriptor.", true,
          misses, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_evictions_total", "Idle descriptors closed to make room.",
          true, evictions, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_expirations_total",
          "Idle descriptors closed after the inactivity timeout.", true, expired, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_rotations_total",
          "Cached descriptors replaced because the path changed inode.", true, reopened, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_failures_total", "Acquires that returned an error.", true,
          failures, F_U64),
    FIELD(tp_fdpool_stats, "tripool_fd_open", "Descriptors held open.", false, open, F_U32),
    FIELD(tp_fdpool_stats, "tripool_fd_leased", "Descriptors leased out.", false, leased, F_U32),
    FIELD(tp_fdpool_stats, "tripool_fd_max_open", "The descriptor bound.", false, max_open, F_U32),
};

/* The engine: tp_engine_stats. The names of the CLI's first hand-made series
 * (bytes_in/out, files, peak_mem, peak_open) are kept; files are split by a
 * result label (sum over it = files finished). Memory in use is the buffer
 * collector's tripool_buf_inuse_bytes (tp_engine_stats has no such field). */
static const struct field engine_fields[] = {
    FIELD(tp_engine_stats, "tripool_engine_bytes_in_total", "Input bytes processed.", true,
          bytes_in, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_bytes_out_total", "Output bytes written.", true,
          bytes_out, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_chunks_total", "Chunks processed.", true, chunks, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_files_total", "Files finished, by result.", true,
          files_ok, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_files_total", "Files finished, by result.", true,
          files_failed, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_peak_mem_bytes", "Peak buffer memory in use.", false,
          mem_peak, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_max_mem_bytes", "The buffer memory bound (max_mem).",
          false, mem_cap, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_peak_open_files", "Peak input descriptors held.", false,
          open_peak, F_U64),
    FIELD(tp_engine_stats, "tripool_engine_max_open_files",
          "The input descriptor bound (max_open).", false, open_cap, F_U64),
};
/* The result label of each engine field (NULL: none). */
static const char *const engine_result[] = {NULL, NULL, NULL, "ok", "failed",
                                            NULL, NULL, NULL, NULL};

#define NPOOL (sizeof pool_fields / sizeof pool_fields[0])
_Static_assert(NPOOL == TP__OBS_POOL_SERIES, "obs_internal.h must match pool_fields");
#define NBUF (sizeof buf_fields / sizeof buf_fields[0])
#define NFD (sizeof fd_fields / sizeof fd_fields[0])
#define NENGINE (sizeof engine_fields / sizeof engine_fields[0])
_Static_assert(sizeof engine_result / sizeof engine_result[0] == NENGINE,
               "one result label entry per engine field");
#define NCLS (TP_BUF_NCLASSES + 1)

static double field_value(const void *stats, const struct field *f) {
    const char *p = (const char *)stats + f->offset;
    switch (f->type) {
    case F_U32:
        return (double)*(const unsigned *)p;
    case F_U64:
        return (double)*(const uint64_t *)p;
    case F_SIZE:
        return (double)*(const size_t *)p;
    }
    return 0;
}

/* tp_metric_read_fn: one field of a fresh stats call. */
static double read_field(void *arg) {
    struct field_ref *r = arg;
    switch (r->src) {
    case SRC_POOL: {
        struct tp_pool_stats st;
        tp_pool_stats(r->pool, &st);
        return field_value(&st, r->f);
    }
    case SRC_BUF: {
        struct tp_bufpool_stats st;
        tp_bufpool_stats(r->pool, &st);
        return field_value(&st.cls[r->cls], r->f);
    }
    case SRC_FD: {
        struct tp_fdpool_stats st;
        tp_fdpool_stats(r->pool, &st);
        return field_value(&st, r->f);
    }
    case SRC_ENGINE: {
        struct tp_engine_stats st;
        tp_engine_stats(r->pool, &st);
        return field_value(&st, r->f);
    }
    }
    return 0;
}

/* Register refs[i] for fields[i]; on failure unregister the ones done. */
static int add_fields(tp_metrics *reg, const struct field *fields, size_t n, struct field_ref *refs,
                      void **handles, const tp_label *labels, size_t nlabels) {
    for (size_t i = 0; i < n; i++) {
        int err = fields[i].counter
                      ? tp_metrics_counter_fn(reg, fields[i].name, fields[i].help, labels, nlabels,
                                              read_field, &refs[i], &handles[i])
                      : tp_metrics_gauge_fn(reg, fields[i].name, fields[i].help, labels, nlabels,
                                            read_field, &refs[i], &handles[i]);
        if (err) {
            while (i-- > 0) {
                (void)tp_metrics_unregister(reg, handles[i]);
                handles[i] = NULL;
            }
            return err;
        }
    }
    return 0;
}

static void remove_all(tp_metrics *reg, void **handles, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (handles[i]) (void)tp_metrics_unregister(reg, handles[i]);
        handles[i] = NULL;
    }
}

/* ---- task pool ------------------------------------------------------------------ */

/* Remember the calling thread's id in o->threads (first task only). */
static void __attribute__((noinline)) register_thread(tp_obs_pool *o) {
    pid_t tid = gettid();
    pthread_mutex_lock(&o->threads_lock);
    if (o->nthreads == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct tp__obs_thread *t = realloc(o->threads, cap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&o->threads_lock);
            return; /* not sampled; the controller falls back */
        }
        o->threads = t;
        o->cap = cap;
    }
    o->threads[o->nthreads++] = (struct tp__obs_thread){tid, false, 0, 0};
    pthread_mutex_unlock(&o->threads_lock);
}

/* The collector this thread last registered with (a worker serves one pool). */
static _Thread_local const tp_obs_pool *tls_registered;

static void pool_observer(void *arg, const char *label, uint64_t queue_wait_ns, uint64_t run_ns,
                          int result) {
    tp_obs_pool *o = arg;
    if (__builtin_expect(tls_registered != o, 0)) {
        register_thread(o);
        tls_registered = o;
    }
    tp_histogram_observe_ns(o->wait_h, queue_wait_ns);
    tp_histogram_observe_ns(o->run_h, run_ns);
    if (o->chained) o->chained(o->chained_arg, label, queue_wait_ns, run_ns, result);
}

bool tp__obs_sched_sample(tp_obs_pool *o, uint64_t interval_ns, double *active, double *runq) {
    if (!o || interval_ns == 0) return false;
    uint64_t sum_run = 0, sum_wait = 0;
    size_t n = 0;
    pthread_mutex_lock(&o->threads_lock);
    for (size_t i = 0; i < o->nthreads;) {
        struct tp__obs_thread *t = &o->threads[i];
        uint64_t run, wait;
        if (tp__os_thread_schedstat(t->tid, &run, &wait) != 0) {
            *t = o->threads[--o->nthreads]; /* exited: forget it */
            continue;
        }
        if (t->primed && run >= t->run && wait >= t->wait) {
            sum_run += run - t->run;
            sum_wait += wait - t->wait;
            n++;
        }
        t->run = run;
        t->wait = wait;
        t->primed = true;
        i++;
    }
    pthread_mutex_unlock(&o->threads_lock);
    if (n == 0) return false;
    double total = (double)n * (double)interval_ns;
    double a = (double)(sum_run + sum_wait) / total, q = (double)sum_wait / total;
    *active = a > 1 ? 1 : a;
    *runq = q > 1 ? 1 : q;
    return true;
}

TP_API int tp_obs_pool_prepare(tp_metrics *reg, const char *name, tp_pool_opts *opts,
                               tp_obs_pool **out) {
    if (!name || !opts || !out) return -EINVAL;
    tp_obs_pool *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    int err = -ENOMEM;
    o->name = strdup(name);
    o->refs = calloc(NPOOL, sizeof *o->refs);
    if (!o->name || !o->refs || pthread_mutex_init(&o->threads_lock, NULL) != 0)
        goto err_free_names;
    if (!reg) {
        err = tp_metrics_create(&o->own_reg);
        if (err) goto err_free;
        reg = o->own_reg;
    }
    o->reg = reg;
    o->label = (tp_label){"pool", o->name};
    /* 10 us .. ~42 s in x2.6 steps: queue waits and run times both fit */
    double b[17];
    (void)tp_metrics_buckets_exp(1e-5, 2.6, 17, b);
    err = tp_metrics_histogram(reg, "tripool_pool_queue_wait_seconds",
                               "Time tasks waited in the queue before starting.", &o->label, 1, b,
                               17, &o->wait_h);
    if (err) goto err_free;
    err = tp_metrics_histogram(reg, "tripool_pool_task_run_seconds", "Time tasks ran.", &o->label,
                               1, b, 17, &o->run_h);
    if (err) goto err_unregister_wait;
    o->chained = opts->observer;
    o->chained_arg = opts->observer_arg;
    opts->observer = pool_observer;
    opts->observer_arg = o;
    *out = o;
    return 0;

err_unregister_wait:
    (void)tp_metrics_unregister(reg, o->wait_h);
err_free:
    tp_metrics_destroy(o->own_reg);
    pthread_mutex_destroy(&o->threads_lock);
err_free_names:
    free(o->refs);
    free(o->name);
    free(o);
    return err;
}

TP_API int tp_obs_register_pool(tp_obs_pool *o, tp_pool *p) {
    if (!o || !p || o->pool) return -EINVAL;
    o->pool = p;
    for (size_t i = 0; i < NPOOL; i++)
        o->refs[i] = (struct field_ref){SRC_POOL, p, &pool_fields[i], 0};
    int err = add_fields(o->reg, pool_fields, NPOOL, o->refs, o->handles, &o->label, 1);
    if (err) o->pool = NULL;
    return err;
}

TP_API void tp_obs_pool_destroy(tp_obs_pool *o) {
    if (!o) return;
    remove_all(o->reg, o->handles, NPOOL);
    (void)tp_metrics_unregister(o->reg, o->wait_h);
    (void)tp_metrics_unregister(o->reg, o->run_h);
    tp_metrics_destroy(o->own_reg);
    pthread_mutex_destroy(&o->threads_lock);
    free(o->threads);
    free(o->refs);
    free(o->name);
    free(o);
}

TP_API void tp_obs_pool_totals(const tp_obs_pool *o, struct tp_obs_pool_totals *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!o) return;
    out->tasks = tp_histogram_count(o->run_h);
    out->queue_wait_ns = (uint64_t)(tp_histogram_sum(o->wait_h) * 1e9 + 0.5);
    out->run_ns = (uint64_t)(tp_histogram_sum(o->run_h) * 1e9 + 0.5);
}

/* ---- buffer pool ------------------------------------------------------------------ */

struct tp_obs_bufpool {
    tp_metrics *reg;
    struct field_ref refs[NCLS][NBUF];
    void *handles[NCLS][NBUF];
};

TP_API int tp_obs_register_bufpool(tp_metrics *reg, const char *name, tp_bufpool *bp,
                                   tp_obs_bufpool **out) {
    if (!reg || !name || !bp || !out) return -EINVAL;
    tp_obs_bufpool *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    o->reg = reg;
    struct tp_bufpool_stats st;
    tp_bufpool_stats(bp, &st);
    for (unsigned c = 0; c < NCLS; c++) {
        char cls[32];
        if (c == TP_BUF_HUGE)
            snprintf(cls, sizeof cls, "huge");
        else
            snprintf(cls, sizeof cls, "%zu",
                     st.cls[c].size ? st.cls[c].size : TP_BUF_MIN_SIZE << c);
        tp_label l[2] = {{"pool", name}, {"class", cls}};
        for (size_t i = 0; i < NBUF; i++)
            o->refs[c][i] = (struct field_ref){SRC_BUF, bp, &buf_fields[i], c};
        int err = add_fields(reg, buf_fields, NBUF, o->refs[c], o->handles[c], l, 2);
        if (err) {
            tp_obs_bufpool_destroy(o);
            return err;
        }
    }
    *out = o;
    return 0;
}

TP_API void tp_obs_bufpool_destroy(tp_obs_bufpool *o) {
    if (!o) return;
    for (unsigned c = 0; c < NCLS; c++)
        remove_all(o->reg, o->handles[c], NBUF);
    free(o);
}

/* ---- fd pool ---------------------------------------------------------------------- */

struct tp_obs_fdpool {
    tp_metrics *reg;
    struct field_ref refs[NFD];
    void *handles[NFD];
};

TP_API int tp_obs_register_fdpool(tp_metrics *reg, const char *name, tp_fdpool *fp,
                                  tp_obs_fdpool **out) {
    if (!reg || !name || !fp || !out) return -EINVAL;
    tp_obs_fdpool *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    o->reg = reg;
    tp_label l = {"pool", name};
    for (size_t i = 0; i < NFD; i++)
        o->refs[i] = (struct field_ref){SRC_FD, fp, &fd_fields[i], 0};
    int err = add_fields(reg, fd_fields, NFD, o->refs, o->handles, &l, 1);
    if (err) {
        free(o);
        return err;
    }
    *out = o;
    return 0;
}

TP_API void tp_obs_fdpool_destroy(tp_obs_fdpool *o) {
    if (!o) return;
    remove_all(o->reg, o->handles, NFD);
    free(o);
}

/* ---- engine ----------------------------------------------------------------------- */

struct tp_obs_engine {
    tp_metrics *reg;
    struct field_ref refs[NENGINE];
    void *handles[NENGINE];
};

TP_API int tp_obs_register_engine(tp_metrics *reg, const char *name, tp_engine *e,
                                  tp_obs_engine **out) {
    if (!reg || !name || !e || !out) return -EINVAL;
    tp_obs_engine *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    o->reg = reg;
    for (size_t i = 0; i < NENGINE; i++) {
        o->refs[i] = (struct field_ref){SRC_ENGINE, e, &engine_fields[i], 0};
        tp_label l[2] = {{"pool", name}, {"result", engine_result[i]}};
        /* one series at a time: the label sets differ (files_total) */
        int err = add_fields(reg, &engine_fields[i], 1, &o->refs[i], &o->handles[i], l,
                             engine_result[i] ? 2 : 1);
        if (err) {
            tp_obs_engine_destroy(o); /* removes the ones registered */
            return err;
        }
    }
    *out = o;
    return 0;
}

TP_API void tp_obs_engine_destroy(tp_obs_engine *o) {
    if (!o) return;
    remove_all(o->reg, o->handles, NENGINE);
    free(o);
}
