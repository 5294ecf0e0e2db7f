/* SPDX-License-Identifier: MIT */
/*
 * Adaptive scaling: a controller thread that sizes a task pool.
 *
 * DESIGN
 * One controller thread per tp_autoscale, started by tp_autoscale_start and
 * joined by tp_autoscale_stop. Every tick it takes a sample (pool stats,
 * process CPU time, the collector's queue-wait/run-time totals), asks the
 * policy (built-in or the user's) for a wished max_workers, clamps it into
 * [min, max], filters it through hysteresis and, when the decision differs
 * from the pool's current bound, calls tp_pool_resize().
 *
 * Hysteresis (applies to every policy): growing needs up_ticks consecutive
 * ticks wishing for more and goes to the smallest wish of that streak;
 * shrinking needs down_ticks consecutive ticks wishing for less, goes to the
 * largest wish of the streak, and by at most a quarter per change. So one
 * noisy sample never moves the pool, growth is fast and shrinking slow.
 * One exception, built-in policy only: an urgent wish (below) grows at
 * once.
 *
 * Built-in policy: the CPU the process may use (tp_usable_cpus(): affinity
 * and cgroup quota) is the budget; threads are worth adding while tasks wait
 * and that budget is not used, i.e. while tasks block.
 *  - backlog (tasks queued, or queue wait above half the run time) and the
 *    process used less than util_low of its CPUs: wish busy * target / util
 *    (target = midpoint of util_low and util_high), at least +1; at most
 *    2 x PROBE_FROM_PER_CPU x cpus from a pool smaller than that, x2 from a
 *    larger one. A wish of URGENT_FACTOR (1.5) x the size or more means the
 *    workers mostly block: it skips up_ticks. Measured (BENCHMARKS.md): a
 *    phase of 1 ms blocking tasks took ~0.7 s to climb 2-4-8-16-32 in
 *    doubling steps two ticks apart, 0.71 of the best fixed pool over a
 *    2 s phase; in one or two urgent steps (2 -> 16 -> 32, or 2 -> 32) it
 *    is there in ~0.2 s.
 *  - backlog, CPUs saturated (util above util_high) and more busy workers
 *    than CPUs: extra runnable threads only switch; trim 1/16 (1/8 when the
 *    workers spend over half their time in the run queue), never below cpus.
 *  - no backlog: keep the busy workers plus a quarter.
 * The band between util_low and util_high, wider than one trim step, keeps
 * the target from oscillating under steady load. Run-queue time of the
 * workers (schedstat) is in the sample for user policies; the built-in
 * uses it only to trim faster. A machine crowded by other processes reads
 * as "CPU budget unused", so the pool grows there (up to max): it claims
 * its quota, as a fixed pool of that size would.
 *
 * Growth must pay (built-in policy only, the part of a step above
 * PROBE_FROM_PER_CPU workers per CPU): after such a growth step the controller
 * watches throughput for PROBE_TICKS ticks (skipping the first; one tick
 * is enough when it rose by half the step's proportion); if it did not
 * rise by at least a quarter of the step's proportion (x2 workers: +25 %),
 * it goes back to the previous size and caps growth there for
 * PROBE_BACKOFF ticks, doubling with each failed probe up to 8x (so under
 * steady load it probes less and less often). A step from below the
 * probed range into it is judged against this tick's throughput scaled
 * linearly to the range's start; as that base can be inflated (a tick
 * that still ran a previous workload's short tasks, x8 when scaling from
 * 2 to 16), its failure only goes back to the range's start, with no cap,
 * and the next step is judged on measured throughput. (Capping there left
 * a quiet-machine io phase at 16 workers, 0.63 of the best fixed pool.)
 * The cap is lifted early, and
 * the back-off reset, when the tasks change character (a new workload):
 * their compute share (on-CPU time over on-CPU plus blocked time, from
 * schedstat; other processes and the pool size only move run-queue time)
 * moves by more than COMPUTE_SHIFT, or their mean run time changes 3x. The
 * run time alone missed a CPU -> blocking change on a crowded machine,
 * where time slicing stretches 0.1 ms spins close to the 1.2 ms blocking
 * tasks, and kept a CPU-phase ceiling through the next phase. Probing
 * finds the size past which more threads cost throughput (switching,
 * queue contention), which utilisation alone cannot see when other
 * processes hold the CPUs and util never reaches util_high. Growth below
 * the probed range is never judged, so a blocking workload ramps up fast.
 *
 * Threads and locks: a->lock protects a->stop and is held only around the
 * timed wait; the controller calls the pool and the policy without it.
 * Stats fields are atomics written by the controller and read by
 * tp_autoscale_stats (relaxed: independent numbers). Everything else in
 * struct tp_autoscale is private to the controller thread after start.
 * o->autoscale (atomic exchange, acq_rel) makes one controller per
 * collector; the collector must outlive the controller.
 */
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/atomic.h"
#include "internal/os.h"
#include "obs/obs_internal.h"
#include "tripool/obs.h"

#define PROBE_TICKS 3        /* ticks a growth step is judged over */
#define PROBE_BACKOFF 50     /* a ceiling lasts this many ticks */
#define PROBE_FROM_PER_CPU 8 /* only pools of 8+ workers per CPU are probed */
#define COMPUTE_SHIFT 0.3    /* compute-share change that marks a new workload */
#define URGENT_FACTOR 1.5    /* a built-in wish this much above the size skips up_ticks */

struct tp_autoscale {
    tp_pool *pool;
    tp_obs_pool *o;
    tp_autoscale_opts opts;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop; /* lock */

    /* exported (atomics, relaxed) */
    _Atomic unsigned target;
    _Atomic uint64_t ticks, changes, ups, downs;
    _Atomic uint64_t util_bits, tput_bits;
    tp_gauge *target_g;
    tp_counter *changes_c;

    /* controller thread only */
    unsigned up_streak, down_streak, streak_wish;
    /* growth probe (built-in policy): see DESIGN */
    bool probing;
    bool probe_extrapolated; /* the base was scaled up from a smaller pool */
    unsigned probe_from, probe_to, probe_ticks;
    double probe_base, probe_sum;
    unsigned ceiling;       /* 0 = none: growth above it did not pay */
    uint64_t ceiling_until; /* tick at which the ceiling is lifted */
    uint64_t backoff;       /* ticks the next ceiling lasts */
    double ceiling_run_s;   /* task run time when the ceiling was set */
    double ceiling_compute; /* tasks' compute share then (-1 unknown) */
    double tput_prev;       /* throughput of the previous tick */
    unsigned size_seen;     /* max_workers at the previous tick */
    unsigned at_size;       /* ticks at size_seen, this one included */
    uint64_t prev_t, prev_cpu, prev_completed;
    struct tp_obs_pool_totals prev_tot;
};

TP_API void tp_autoscale_opts_init(tp_autoscale_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    unsigned cpus = tp_usable_cpus();
    o->min_workers = 1;
    o->max_workers = cpus * 32 < 1024 ? cpus * 32 : 1024;
    o->tick_ns = 100 * TP_NSEC_PER_MSEC;
    o->up_ticks = 2;
    o->down_ticks = 5;
    o->util_low = 0.80;
    o->util_high = 0.95;
}

static uint64_t process_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * TP_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* *urgent: the wish is at least URGENT_FACTOR x the current size because
 * the workers mostly block (see DESIGN): grow without waiting up_ticks. */
static unsigned builtin_policy(const tp_autoscale_opts *op, const struct tp_autoscale_sample *s,
                               bool *urgent) {
    unsigned cur = s->current;
    *urgent = false;
    bool backlog =
        s->queued > 0 || (s->queue_wait_s > 0 && s->run_s > 0 && s->queue_wait_s > 0.5 * s->run_s);
    if (!backlog) {
        unsigned want = s->busy + s->busy / 4 + 1;
        return want < cur ? want : cur;
    }
    double want = cur;
    if (s->cpu_util < op->util_low) {
        /* tasks block: scale the busy workers up to the CPU we may use */
        double target = (op->util_low + op->util_high) / 2;
        double u = s->cpu_util > 0.02 ? s->cpu_util : 0.02;
        unsigned busy = s->busy > 0 ? s->busy : 1;
        want = ceil((double)busy * target / u);
        if (want < cur + 1.0) want = cur + 1.0;
        /* go where the CPU signal points in one step, but at most to
         * twice the size where probing starts (the part above it is
         * probed) or, in the probed range, to twice the size */
        double probe_from = (double)PROBE_FROM_PER_CPU * s->cpus;
        double cap = cur < probe_from ? 2.0 * probe_from : 2.0 * cur;
        if (want > cap) want = cap;
        *urgent = want >= URGENT_FACTOR * cur;
    } else if (s->cpu_util > op->util_high && s->busy > s->cpus) {
        /* CPUs saturated: extra runnable threads only switch; trim gently,
         * harder when the workers mostly wait in the run queue */
        unsigned step = s->runq_frac > 0.5 ? cur / 8 : cur / 16;
        want = cur - (step ? step : 1);
        if (want < s->cpus) want = s->cpus;
    }
    return want > 1e6 ? 1000000u : (unsigned)want;
}

/* Hysteresis over the (clamped) wish; returns the new bound. */
static unsigned decide(tp_autoscale *a, unsigned cur, unsigned wish, bool urgent) {
    if (wish > cur && urgent) {
        a->up_streak = a->down_streak = 0;
        return wish;
    }
    if (wish > cur) {
        a->down_streak = 0;
        a->streak_wish = a->up_streak++ ? (wish < a->streak_wish ? wish : a->streak_wish) : wish;
        if (a->up_streak < a->opts.up_ticks) return cur;
        a->up_streak = 0;
        return a->streak_wish;
    }
    if (wish < cur) {
        a->up_streak = 0;
        a->streak_wish = a->down_streak++ ? (wish > a->streak_wish ? wish : a->streak_wish) : wish;
        if (a->down_streak < a->opts.down_ticks) return cur;
        a->down_streak = 0;
        unsigned floor = cur - cur / 4;
        return a->streak_wish > floor ? a->streak_wish : (floor < cur ? floor : cur - 1);
    }
    a->up_streak = a->down_streak = 0;
    return cur;
}

/* Of the workers' time not spent waiting for a CPU, the fraction on one
 * (the rest they block): the tasks' compute share, which neither the pool
 * size nor other processes change (both only move run-queue time). -1
 * unknown. */
static double compute_frac(const struct tp_autoscale_sample *s) {
    if (s->active_frac < 0 || s->runq_frac < 0) return -1;
    double on_cpu = s->active_frac - s->runq_frac, blocked = 1 - s->active_frac;
    if (on_cpu < 0) on_cpu = 0;
    return on_cpu + blocked > 0.01 ? on_cpu / (on_cpu + blocked) : 1;
}

/* The tasks changed character since the ceiling was set: their compute
 * share moved by more than COMPUTE_SHIFT (computing <-> blocking; robust
 * when other processes stretch run times), or the mean run time changed
 * 3x. */
static bool new_workload(const tp_autoscale *a, const struct tp_autoscale_sample *s) {
    double c = compute_frac(s);
    if (c >= 0 && a->ceiling_compute >= 0 && fabs(c - a->ceiling_compute) > COMPUTE_SHIFT)
        return true;
    return s->run_s > 0 && a->ceiling_run_s > 0 &&
           (s->run_s > 3 * a->ceiling_run_s || 3 * s->run_s < a->ceiling_run_s);
}

static void tick(tp_autoscale *a) {
    struct tp_pool_stats st;
    tp_pool_stats(a->pool, &st);
    uint64_t now = tp__now_ns(), cpu = process_cpu_ns();
    struct tp_obs_pool_totals tot;
    tp_obs_pool_totals(a->o, &tot);

    uint64_t n = tp__add_relaxed(&a->ticks, 1) + 1;
    struct tp_autoscale_sample s = {0};
    s.tick = n;
    s.interval_ns = now - a->prev_t ? now - a->prev_t : 1;
    s.current = st.max_workers;
    s.min = a->opts.min_workers;
    s.max = a->opts.max_workers;
    s.cpus = tp_usable_cpus();
    s.queued = st.queued;
    s.workers = st.workers_running;
    s.busy = st.workers_running > st.workers_idle ? st.workers_running - st.workers_idle : 0;
    double secs = (double)s.interval_ns / 1e9;
    s.throughput = (double)(st.completed - a->prev_completed) / secs;
    s.cpu_util = (double)(cpu - a->prev_cpu) / ((double)s.interval_ns * s.cpus);
    s.queue_wait_s = s.run_s = -1;
    s.active_frac = s.runq_frac = -1;
    if (a->o && !tp__obs_sched_sample(a->o, s.interval_ns, &s.active_frac, &s.runq_frac))
        s.active_frac = s.runq_frac = -1;
    if (a->o && tot.tasks > a->prev_tot.tasks) {
        double k = (double)(tot.tasks - a->prev_tot.tasks);
        s.queue_wait_s = (double)(tot.queue_wait_ns - a->prev_tot.queue_wait_ns) / k / 1e9;
        s.run_s = (double)(tot.run_ns - a->prev_tot.run_ns) / k / 1e9;
    }
    a->prev_t = now;
    a->prev_cpu = cpu;
    a->prev_completed = st.completed;
    a->prev_tot = tot;
    tp__store_relaxed(&a->util_bits, dbits(s.cpu_util));
    tp__store_relaxed(&a->tput_bits, dbits(s.throughput));

    bool builtin = !a->opts.policy;
    unsigned cur = s.current, next;
    if (cur != a->size_seen) {
        a->size_seen = cur;
        a->at_size = 0;
    }
    a->at_size++; /* 1: the first tick after a resize (workers starting) */
    /* throughput at this size with workers settled: this tick's and the
     * previous one's when both qualify (0: none measured yet) */
    double base = a->at_size >= 3   ? (a->tput_prev + s.throughput) / 2
                  : a->at_size == 2 ? s.throughput
                                    : 0;
    a->tput_prev = s.throughput;
    if (builtin && a->probing) {
        /* judge a growth step by the throughput it brought (skip the first
         * tick after the resize: new workers are still starting) */
        if (a->probe_ticks++ > 0) a->probe_sum += s.throughput;
        double step = (double)(a->probe_to - a->probe_from) / a->probe_from;
        double need = 1.0 + 0.25 * step;
        /* a clear pass (half the step's proportion gained, twice what is
         * needed) ends the probe after one measured tick, so a ramp is not
         * held PROBE_TICKS at each size; failing takes every tick */
        bool clear = a->probe_ticks >= 2 && cur == a->probe_to &&
                     s.throughput >= a->probe_base * (1.0 + 0.5 * step);
        bool done = clear || a->probe_ticks > PROBE_TICKS || cur != a->probe_to;
        if (!done) return;
        a->probing = false;
        double after = a->probe_sum / (double)(a->probe_ticks - 1 ? a->probe_ticks - 1 : 1);
        if (cur == a->probe_to && after < a->probe_base * need && a->probe_extrapolated) {
            /* inconclusive (the scaled base may hold a previous workload's
             * tasks): go back to the range's start with no ceiling; the
             * next step from there is judged against a measured base */
            next = a->probe_from;
            goto apply;
        }
        if (cur == a->probe_to && after < a->probe_base * need) {
            /* did not pay: go back and do not try above it for a while */
            a->ceiling = a->probe_from;
            a->ceiling_until = n + a->backoff;
            if (a->backoff < 8 * PROBE_BACKOFF) a->backoff *= 2; /* settle: probe less often */
            a->ceiling_run_s = s.run_s;
            a->ceiling_compute = compute_frac(&s);
            next = a->probe_from;
            goto apply;
        }
        a->backoff = PROBE_BACKOFF;
    }
    if (a->ceiling && (n >= a->ceiling_until || new_workload(a, &s))) {
        /* expired, or the tasks changed character: a new workload starts
         * with a clean slate */
        if (n < a->ceiling_until) a->backoff = PROBE_BACKOFF;
        a->ceiling = 0;
    }

    bool urgent = false;
    unsigned wish = a->opts.policy ? a->opts.policy(a->opts.policy_arg, &s)
                                   : builtin_policy(&a->opts, &s, &urgent);
    if (builtin && a->ceiling && wish > a->ceiling) wish = a->ceiling > cur ? a->ceiling : cur;
    if (wish < s.min) wish = s.min;
    if (wish > s.max) wish = s.max;
    if (cur < s.min || cur > s.max)
        next = cur < s.min ? s.min : s.max; /* out of bounds: fix at once */
    else
        next = decide(a, cur, wish, urgent);
    if (next == cur) return;
    unsigned probe_min = PROBE_FROM_PER_CPU * s.cpus;
    if (builtin && next > cur && next > probe_min && cur >= s.min && cur <= s.max) {
        /* the part of the step above probe_min is probed against the
         * throughput at the current size, measured after the workers
         * settled (no growth there until one such tick); from below
         * probe_min, the throughput there is extrapolated linearly (the
         * policy grows there only while the CPUs idle, i.e. while adding
         * workers adds throughput in proportion). A base mixing in ticks
         * at an older size let every probe pass during a ramp and the
         * pool overshoot to max (64, where 32 is best here). */
        if (a->at_size < 2) return; /* wait for a settled tick */
        if (cur < probe_min && next < probe_min + probe_min / 2) {
            /* just past the range's start: a small step judged against an
             * extrapolated base is noise; stop at the start, unprobed */
            next = probe_min;
            goto apply;
        }
        a->probing = true;
        a->probe_from = cur >= probe_min ? cur : probe_min;
        a->probe_to = next;
        a->probe_ticks = 0;
        a->probe_sum = 0;
        /* extrapolate from this tick only: its utilisation made the wish,
         * and the previous one may have run another workload */
        a->probe_base = cur >= probe_min ? base : s.throughput * probe_min / cur;
        a->probe_extrapolated = cur < probe_min;
    }
apply:
    if (tp_pool_resize(a->pool, next) != 0) {
        a->probing = false;
        return;
    }
    tp__store_relaxed(&a->target, next);
    tp__add_relaxed(&a->changes, 1);
    tp__add_relaxed(next > cur ? &a->ups : &a->downs, 1);
    tp_gauge_set(a->target_g, next);
    tp_counter_inc(a->changes_c);
}

static void *controller(void *arg) {
    tp_autoscale *a = arg;
    uint64_t next = tp__now_ns() + a->opts.tick_ns;
    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        if (tp__cond_wait_until(&a->cond, &a->lock, next) != -ETIMEDOUT)
            continue; /* woken: stop, or spurious */
        pthread_mutex_unlock(&a->lock);
        tick(a);
        uint64_t now = tp__now_ns();
        next += a->opts.tick_ns;
        if (next < now) /* fell behind (a slow tick): do not burst */
            next = now + a->opts.tick_ns;
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

TP_API int tp_autoscale_start(tp_pool *p, tp_obs_pool *o, const tp_autoscale_opts *opts,
                              tp_autoscale **out) {
    if (!p || !out) return -EINVAL;
    tp_autoscale_opts def;
    if (!opts) {
        tp_autoscale_opts_init(&def);
        opts = &def;
    }
    if (opts->min_workers == 0 || opts->min_workers > opts->max_workers ||
        opts->max_workers > 1000000 || opts->tick_ns < TP_NSEC_PER_MSEC ||
        opts->tick_ns == TP_FOREVER || !(opts->util_low > 0) ||
        !(opts->util_high > opts->util_low) || opts->util_high > 1.5)
        return -EINVAL;
    tp_autoscale *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    a->pool = p;
    a->o = o;
    a->opts = *opts;
    if (a->opts.up_ticks == 0) a->opts.up_ticks = 1;
    if (a->opts.down_ticks == 0) a->opts.down_ticks = 1;
    int err = -ENOMEM;
    if (pthread_mutex_init(&a->lock, NULL) != 0) goto err_free;
    if (tp__cond_init_monotonic(&a->cond) != 0) goto err_destroy_lock;
    if (o) {
        tp_autoscale *none = NULL;
        /* acq_rel: claim the collector for this controller; pairs with the
         * release in tp_autoscale_stop so a later controller sees ours gone. */
        if (!atomic_compare_exchange_strong_explicit(&o->autoscale, &none, a, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            err = -EEXIST;
            goto err_destroy_cond;
        }
        if (o->reg) {
            /* best effort: a name clash leaves the handles NULL (no export) */
            if (tp_metrics_gauge(o->reg, "tripool_pool_autoscale_target",
                                 "Worker bound set by the adaptive controller.", &o->label, 1,
                                 &a->target_g) != 0)
                a->target_g = NULL;
            if (tp_metrics_counter(o->reg, "tripool_pool_autoscale_changes_total",
                                   "Resizes done by the adaptive controller.", &o->label, 1,
                                   &a->changes_c) != 0)
                a->changes_c = NULL;
        }
    }
    struct tp_pool_stats st;
    tp_pool_stats(p, &st);
    tp__store_relaxed(&a->target, st.max_workers);
    tp_gauge_set(a->target_g, st.max_workers);
    a->backoff = PROBE_BACKOFF;
    a->size_seen = st.max_workers; /* settled at start: the first tick counts */
    a->at_size = 1;
    a->prev_t = tp__now_ns();
    a->prev_cpu = process_cpu_ns();
    a->prev_completed = st.completed;
    tp_obs_pool_totals(o, &a->prev_tot);
    if (pthread_create(&a->thread, NULL, controller, a) != 0) {
        err = -EAGAIN;
        goto err_unclaim;
    }
    *out = a;
    return 0;

err_unclaim:
    if (o) {
        if (a->target_g) (void)tp_metrics_unregister(o->reg, a->target_g);
        if (a->changes_c) (void)tp_metrics_unregister(o->reg, a->changes_c);
        tp__store_release(&o->autoscale, NULL);
    }
err_destroy_cond:
    pthread_cond_destroy(&a->cond);
err_destroy_lock:
    pthread_mutex_destroy(&a->lock);
err_free:
    free(a);
    return err;
}

TP_API void tp_autoscale_stop(tp_autoscale *a) {
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    if (a->o) {
        if (a->target_g) (void)tp_metrics_unregister(a->o->reg, a->target_g);
        if (a->changes_c) (void)tp_metrics_unregister(a->o->reg, a->changes_c);
        /* release: see tp_autoscale_start */
        tp__store_release(&a->o->autoscale, NULL);
    }
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

TP_API void tp_autoscale_stats(tp_autoscale *a, struct tp_autoscale_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!a) return;
    out->target = tp__load_relaxed(&a->target);
    out->ticks = tp__load_relaxed(&a->ticks);
    out->changes = tp__load_relaxed(&a->changes);
    out->ups = tp__load_relaxed(&a->ups);
    out->downs = tp__load_relaxed(&a->downs);
    out->last_cpu_util = bitsd(tp__load_relaxed(&a->util_bits));
    out->last_throughput = bitsd(tp__load_relaxed(&a->tput_bits));
}
