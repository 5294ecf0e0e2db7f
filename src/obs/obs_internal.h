/* SPDX-License-Identifier: MIT */
/* The task-pool collector, shared by collect.c and autoscale.c (not public). */
#ifndef TP_OBS_INTERNAL_H
#define TP_OBS_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>

#include "tripool/obs.h"

/* A thread that ran this pool's tasks, for the controller's scheduler
 * statistics (/proc/self/task/<tid>/schedstat). */
struct tp__obs_thread {
    pid_t tid;
    bool primed;        /* run/wait hold a previous reading */
    uint64_t run, wait; /* ns on a CPU, ns runnable but waiting for one */
};

#define TP__OBS_POOL_SERIES 10 /* entries of pool_fields in collect.c */

struct field_ref;

struct tp_obs_pool {
    char *name;
    tp_label label;      /* pool=<name> */
    tp_metrics *reg;     /* where the series live: the user's or own_reg */
    tp_metrics *own_reg; /* private registry when the user gave none */
    tp_pool *pool;       /* set once by tp_obs_register_pool */
    tp_histogram *wait_h, *run_h;
    tp_observer_fn chained; /* the observer that was in the opts before us */
    void *chained_arg;
    _Atomic(tp_autoscale *) autoscale; /* the one controller using this collector */
    struct field_ref *refs;            /* TP__OBS_POOL_SERIES entries */
    void *handles[TP__OBS_POOL_SERIES];
    pthread_mutex_t threads_lock; /* protects threads, nthreads, cap */
    struct tp__obs_thread *threads;
    size_t nthreads, cap;
};

/* Scheduler statistics of the pool's threads since the previous call:
 * fraction of their time spent on a CPU or runnable (active) and runnable
 * but waiting for a CPU (runq), over interval_ns. False when no thread had
 * a previous reading (or schedstat is unavailable). */
bool tp__obs_sched_sample(tp_obs_pool *o, uint64_t interval_ns, double *active, double *runq);

#endif
