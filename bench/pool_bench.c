/* SPDX-License-Identifier: MIT */
/*
 * pool_bench - the task pool against its peers (issue 2, "Performance").
 *
 *   pool_bench PEER SCENARIO [--workers W] [--submitters S] [--tasks N]
 *              [--reps R] [--qcap Q] [--task-us U] [--load L] [--pace spin|sleep]
 *              [--calibrate 0|1] [--stats 0|1]
 *
 * PEER: tripool glib cthreadpool libuv thread (see bench/pool_peers.c).
 * SCENARIO:
 *   empty    N empty tasks from S submitting threads on W workers; time from
 *            the first submit until every task has run. Prints tasks/s.
 *   busy     as empty, each task spins U us (default 1) on clock_gettime.
 *   latency  N tasks of U us (default 10) submitted by one thread at a fixed
 *            pace that keeps W workers L busy (default 0.5); submit-to-start
 *            latency p50/p99/p99.9/max (first 5% of samples are warm-up).
 *            "Busy" is relative to the CPU this process can get right now:
 *            W plain threads first spin U us chunks for 200 ms, and the pace
 *            is L times the chunks/s they managed (on a shared machine the
 *            nominal W / U would overload the workers and measure only the
 *            backlog). --calibrate 0 paces at L * W / U instead.
 *   memory   W tasks block the workers, then N empty tasks are queued; RSS
 *            growth from before pool creation, per queued task.
 * Each repetition prints one line of key=value pairs; with R > 1 a final
 * "median" line follows. bench/run_pool.sh runs the peers interleaved and
 * builds the markdown table.
 *
 * DESIGN
 * Counting completions: pb_run() (peers/pool_peer.h) bumps a per-thread
 * counter slot (single writer, release store); the harness sums the slots
 * with acquire loads and polls every 100 us, so no pool gets a shared atomic
 * in its hot path and no pool's own "wait" API decides the end time. Slots are
 * handed out once per thread by an atomic index into a fixed array and never
 * freed (pool threads may outlive a run). Multi-submitter runs start every
 * submitter on one gate (mutex + cond) after each has made its per-thread
 * state, so setup is not timed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "peers/pool_peer.h"

/* ---- completion counting ------------------------------------------------- */
#define PB_MAX_SLOTS 4096

pb_task_fn pb_task;
bool pb_verbose;
_Thread_local struct pb_slot *pb_my_slot;
_Atomic uint64_t pb_tpt_done;
static struct pb_slot pb_slots[PB_MAX_SLOTS] __attribute__((aligned(64)));
static _Atomic unsigned pb_nslots;

struct pb_slot *pb_slot_register(void) {
    /* Relaxed: the index only has to be unique; pb_completed() reads every
     * slot up to PB_MAX_SLOTS, so it needs no ordering with this. */
    unsigned i = atomic_fetch_add_explicit(&pb_nslots, 1, memory_order_relaxed);
    if (i >= PB_MAX_SLOTS) {
        fprintf(stderr, "pool_bench: more than %d counting threads\n", PB_MAX_SLOTS);
        abort();
    }
    return &pb_slots[i];
}

uint64_t pb_completed(void) {
    unsigned n = atomic_load_explicit(&pb_nslots, memory_order_relaxed);
    if (n > PB_MAX_SLOTS) n = PB_MAX_SLOTS;
    /* Acquire pairs with the release in pb_run()/tpt_main(): the tasks'
     * writes are visible once counted. */
    uint64_t sum = atomic_load_explicit(&pb_tpt_done, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        sum += atomic_load_explicit(&pb_slots[i].n, memory_order_acquire);
    return sum;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process (every thread), ns. */
static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void spin_ns(uint64_t ns) {
    uint64_t end = now_ns() + ns;
    while (now_ns() < end) {
    }
}

static int wait_completed(uint64_t target, uint64_t timeout_ns) {
    uint64_t end = now_ns() + timeout_ns;
    while (pb_completed() < target) {
        if (now_ns() > end) return -ETIMEDOUT;
        sleep_ns(100000);
    }
    return 0;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "pool_bench: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

/* ---- tasks --------------------------------------------------------------- */
static char dummy_arg;   /* a non-NULL arg for tasks that need none */
static uint64_t task_ns; /* busy work per task; set before any submit */

static void task_noop(void *arg) {
    (void)arg;
}

static void task_spin(void *arg) {
    (void)arg;
    spin_ns(task_ns);
}

struct lat_sample {
    uint64_t t_submit, t_start;
};

static void task_latency(void *arg) {
    struct lat_sample *s = arg;
    s->t_start = now_ns();
    spin_ns(task_ns);
}

/* The memory scenario's blockers hold every worker until the gate opens. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    unsigned started;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

static void gate_open(void) {
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

static void task_memory(void *arg) {
    if (arg != &gate) return;
    pthread_mutex_lock(&gate.mu);
    gate.started++;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
}

/* ---- configuration ------------------------------------------------------- */
struct cfg {
    const pb_peer *peer;
    const char *scen;
    unsigned workers, subs, reps;
    size_t tasks, qcap;
    double task_us, load;
    bool pace_sleep, calibrate;
};

static void print_head(const struct cfg *c, unsigned rep) {
    printf("peer=%s scen=%s workers=%u subs=%u tasks=%zu rep=%u", c->peer->name, c->scen,
           c->workers, c->subs, c->tasks, rep);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n) {
    qsort(v, n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *make_pool(const struct cfg *c, size_t qcap) {
    void *pool = NULL;
    int rc = c->peer->create(&pool, c->workers, qcap, c->subs);
    if (rc) die("create", rc);
    return pool;
}

/* Run one task through the pool so lazily started parts (libuv's threads,
 * tripool's first worker) exist before timing. */
static void warm_up(const struct cfg *c, void *pool) {
    void *sub;
    pb_task = task_noop;
    uint64_t base = pb_completed();
    int rc = c->peer->sub_begin(pool, 1, &sub);
    if (rc) die("sub_begin", rc);
    if ((rc = c->peer->submit(sub, &dummy_arg)) != 0) die("submit", rc);
    c->peer->sub_end(sub);
    if (wait_completed(base + 1, 10 * 1000000000ull)) die("warm-up task never ran", -ETIMEDOUT);
}

/* ---- throughput (empty, busy) -------------------------------------------- */
struct submitter {
    const struct cfg *c;
    void *pool, *sub;
    size_t n;
    pthread_t th;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;
    bool go;
} start = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};

static void submit_n(const struct cfg *c, void *sub, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = c->peer->submit(sub, &dummy_arg);
        if (rc) die("submit", rc);
    }
    c->peer->sub_end(sub);
}

static void *submitter_main(void *arg) {
    struct submitter *s = arg;
    int rc = s->c->peer->sub_begin(s->pool, s->n, &s->sub);
    if (rc) die("sub_begin", rc);
    pthread_mutex_lock(&start.mu);
    start.ready++;
    pthread_cond_broadcast(&start.cv);
    while (!start.go)
        pthread_cond_wait(&start.cv, &start.mu);
    pthread_mutex_unlock(&start.mu);
    submit_n(s->c, s->sub, s->n);
    return NULL;
}

/* Returns the wall seconds; *cpu_per_task gets the process CPU ns per task
 * over the same interval (robust to how much CPU a shared machine gives). */
static double run_throughput(const struct cfg *c, pb_task_fn fn, double *cpu_per_task) {
    void *pool = make_pool(c, c->qcap);
    warm_up(c, pool);
    pb_task = fn;
    uint64_t base = pb_completed();
    uint64_t t0, t1, c0;
    if (c->subs == 1) {
        void *sub;
        int rc = c->peer->sub_begin(pool, c->tasks, &sub);
        if (rc) die("sub_begin", rc);
        c0 = cpu_ns();
        t0 = now_ns();
        submit_n(c, sub, c->tasks);
        if (wait_completed(base + c->tasks, 600 * 1000000000ull))
            die("tasks never completed", -ETIMEDOUT);
        t1 = now_ns();
    } else {
        struct submitter *s = calloc(c->subs, sizeof *s);
        if (!s) die("calloc", -ENOMEM);
        start.ready = 0;
        start.go = false;
        for (unsigned i = 0; i < c->subs; i++) {
            s[i].c = c;
            s[i].pool = pool;
            s[i].n = c->tasks / c->subs + (i < c->tasks % c->subs);
            int rc = pthread_create(&s[i].th, NULL, submitter_main, &s[i]);
            if (rc) die("pthread_create", rc);
        }
        pthread_mutex_lock(&start.mu);
        while (start.ready < c->subs)
            pthread_cond_wait(&start.cv, &start.mu);
        c0 = cpu_ns();
        t0 = now_ns();
        start.go = true;
        pthread_cond_broadcast(&start.cv);
        pthread_mutex_unlock(&start.mu);
        if (wait_completed(base + c->tasks, 600 * 1000000000ull))
            die("tasks never completed", -ETIMEDOUT);
        for (unsigned i = 0; i < c->subs; i++)
            pthread_join(s[i].th, NULL);
        t1 = now_ns();
        free(s);
    }
    *cpu_per_task = (double)(cpu_ns() - c0) / (double)c->tasks;
    c->peer->destroy(pool);
    uint64_t done = pb_completed() - base;
    if (done != c->tasks) {
        fprintf(stderr, "pool_bench: %s ran %llu tasks, expected %zu\n", c->peer->name,
                (unsigned long long)done, c->tasks);
        exit(1);
    }
    return (double)(t1 - t0) / 1e9;
}

/* ---- latency ------------------------------------------------------------- */
static void pace_until(uint64_t target, bool sleep_first) {
    if (sleep_first) {
        uint64_t now = now_ns();
        if (target > now + 2000) {
            struct timespec ts = {(time_t)(target / 1000000000u), (long)(target % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
        }
    }
    while (now_ns() < target) {
    }
}

struct lat_result {
    double p50, p99, p999, max, load, cap_frac, cpu_per_task;
};

struct calib {
    uint64_t end;
    _Atomic uint64_t chunks;
};

static void *calib_main(void *arg) {
    struct calib *k = arg;
    uint64_t n = 0;
    while (now_ns() < k->end) {
        spin_ns(task_ns);
        n++;
    }
    atomic_fetch_add_explicit(&k->chunks, n, memory_order_relaxed); /* read after join */
    return NULL;
}

/* task_ns chunks per second that `workers` spinning threads get now. */
static double capacity(unsigned workers) {
    const uint64_t dur = 200000000u;
    struct calib k = {.end = now_ns() + dur};
    pthread_t th[workers];
    for (unsigned i = 0; i < workers; i++) {
        int rc = pthread_create(&th[i], NULL, calib_main, &k);
        if (rc) die("pthread_create", rc);
    }
    for (unsigned i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    return (double)atomic_load_explicit(&k.chunks, memory_order_relaxed) * 1e9 / (double)dur;
}

static struct lat_result run_latency(const struct cfg *c) {
    struct lat_sample *smp = calloc(c->tasks, sizeof *smp);
    uint64_t *lat = calloc(c->tasks, sizeof *lat);
    if (!smp || !lat) die("calloc", -ENOMEM);
    void *pool = make_pool(c, c->qcap);
    warm_up(c, pool);
    task_ns = (uint64_t)(c->task_us * 1000);
    pb_task = task_latency;
    double nominal = 1e9 / (double)task_ns * c->workers; /* tasks/s W workers can run */
    double cap = c->calibrate ? capacity(c->workers) : nominal;
    uint64_t period = (uint64_t)(1e9 / (c->load * cap));
    uint64_t base = pb_completed();
    void *sub;
    int rc = c->peer->sub_begin(pool, c->tasks, &sub);
    if (rc) die("sub_begin", rc);
    uint64_t t0 = now_ns() + 1000000, tlast = t0, c0 = cpu_ns();
    for (size_t i = 0; i < c->tasks; i++) {
        pace_until(t0 + i * period, c->pace_sleep);
        smp[i].t_submit = tlast = now_ns();
        if ((rc = c->peer->submit(sub, &smp[i])) != 0) die("submit", rc);
    }
    c->peer->sub_end(sub);
    if (wait_completed(base + c->tasks, 600 * 1000000000ull))
        die("tasks never completed", -ETIMEDOUT);
    uint64_t c1 = cpu_ns();
    c->peer->destroy(pool);

    size_t skip = c->tasks / 20, n = 0;
    for (size_t i = skip; i < c->tasks; i++)
        lat[n++] = smp[i].t_start - smp[i].t_submit;
    qsort(lat, n, sizeof *lat, cmp_u64);
    struct lat_result r = {
        .p50 = lat[n / 2] / 1e3,
        .p99 = lat[(size_t)(n * 0.99)] / 1e3,
        .p999 = lat[(size_t)(n * 0.999)] / 1e3,
        .max = lat[n - 1] / 1e3,
        /* offered load: arrivals per second over what the workers can run */
        .load = (double)c->tasks * 1e9 / (double)(tlast - t0) / cap,
        .cap_frac = cap / nominal,
        /* whole process, the paced submitter's sleeps and the task's spin included */
        .cpu_per_task = (double)(c1 - c0) / (double)c->tasks,
    };
    free(smp);
    free(lat);
    return r;
}

/* ---- memory -------------------------------------------------------------- */
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (!f || fscanf(f, "%lu %lu", &size, &res) != 2) die("read /proc/self/statm", -EIO);
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

static double run_memory(const struct cfg *c, double *rss_mib, double *total_mib) {
    pb_task = task_memory;
    gate.open = false;
    gate.started = 0;
    size_t rss0 = rss_bytes();
    /* Room for the blockers too: a blocker still queued (its worker not yet
     * started) must not make the last submit wait on a full queue forever. */
    void *pool = make_pool(c, c->qcap ? c->qcap : c->tasks + c->workers);
    uint64_t base = pb_completed();
    void *sub;
    int rc = c->peer->sub_begin(pool, c->tasks + c->workers, &sub);
    if (rc) die("sub_begin", rc);
    for (unsigned i = 0; i < c->workers; i++)
        if ((rc = c->peer->submit(sub, &gate)) != 0) die("submit", rc);
    pthread_mutex_lock(&gate.mu);
    uint64_t end = now_ns() + 5 * 1000000000ull;
    while (gate.started < c->workers && now_ns() < end) {
        pthread_mutex_unlock(&gate.mu);
        sleep_ns(1000000);
        pthread_mutex_lock(&gate.mu);
    }
    unsigned started = gate.started;
    pthread_mutex_unlock(&gate.mu);
    if (started < c->workers)
        fprintf(stderr, "pool_bench: only %u of %u workers started\n", started, c->workers);
    for (size_t i = 0; i < c->tasks; i++)
        if ((rc = c->peer->submit(sub, &dummy_arg)) != 0) die("submit", rc);
    size_t rss1 = rss_bytes();
    gate_open();
    c->peer->sub_end(sub);
    if (wait_completed(base + c->tasks + c->workers, 600 * 1000000000ull))
        die("tasks never completed", -ETIMEDOUT);
    c->peer->destroy(pool);
    *rss_mib = (double)(rss1 - rss0) / (1024.0 * 1024.0);
    *total_mib = (double)rss1 / (1024.0 * 1024.0);
    return (double)(rss1 - rss0) / (double)c->tasks;
}

/* ---- main ---------------------------------------------------------------- */
static void usage(void) {
    fprintf(stderr, "usage: pool_bench PEER empty|busy|latency|memory [--workers W] "
                    "[--submitters S] [--tasks N] [--reps R] [--qcap Q] [--task-us U] "
                    "[--load L] [--pace spin|sleep] [--calibrate 0|1] [--stats 0|1]\npeers:");
    for (unsigned i = 0; pb_peers[i]; i++)
        fprintf(stderr, " %s", pb_peers[i]->name);
    fprintf(stderr, "\n");
    exit(2);
}

static unsigned long long num_arg(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s) usage();
    return v;
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    struct cfg c = {.scen = argv[2],
                    .workers = 2,
                    .subs = 1,
                    .reps = 1,
                    .tasks = 1000000,
                    .task_us = -1,
                    .load = 0.5,
                    .pace_sleep = true,
                    .calibrate = true};
    for (unsigned i = 0; pb_peers[i]; i++)
        if (strcmp(pb_peers[i]->name, argv[1]) == 0) c.peer = pb_peers[i];
    if (!c.peer) usage();
    for (int i = 3; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(k, "--workers"))
            c.workers = (unsigned)num_arg(v);
        else if (!strcmp(k, "--submitters"))
            c.subs = (unsigned)num_arg(v);
        else if (!strcmp(k, "--tasks"))
            c.tasks = (size_t)num_arg(v);
        else if (!strcmp(k, "--reps"))
            c.reps = (unsigned)num_arg(v);
        else if (!strcmp(k, "--qcap"))
            c.qcap = (size_t)num_arg(v);
        else if (!strcmp(k, "--task-us"))
            c.task_us = atof(v);
        else if (!strcmp(k, "--load"))
            c.load = atof(v);
        else if (!strcmp(k, "--stats"))
            pb_verbose = num_arg(v) != 0;
        else if (!strcmp(k, "--calibrate"))
            c.calibrate = num_arg(v) != 0;
        else if (!strcmp(k, "--pace"))
            c.pace_sleep = strcmp(v, "spin") != 0;
        else
            usage();
    }
    if (!c.workers || !c.subs || !c.reps || !c.tasks || c.reps > 100 || c.load <= 0 ||
        c.workers > 4096 || c.subs > 4096)
        usage();
    /* Sleeps in the paced submitter should end on time, not up to 50 us late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    double v[100], v2[100];
    for (unsigned r = 1; r <= c.reps; r++) {
        if (!strcmp(c.scen, "empty") || !strcmp(c.scen, "busy")) {
            bool busy = !strcmp(c.scen, "busy");
            task_ns = (uint64_t)((c.task_us < 0 ? 1 : c.task_us) * 1000);
            double cpt;
            double s = run_throughput(&c, busy ? task_spin : task_noop, &cpt);
            v[r - 1] = c.tasks / s;
            print_head(&c, r);
            printf(" secs=%.4f rate=%.0f cpu_ns_per_task=%.0f\n", s, v[r - 1], cpt);
        } else if (!strcmp(c.scen, "latency")) {
            if (c.task_us < 0) c.task_us = 10;
            struct lat_result l = run_latency(&c);
            v[r - 1] = l.p50;
            v2[r - 1] = l.p99;
            print_head(&c, r);
            printf(" p50_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.1f load=%.2f cpu=%.2f "
                   "cpu_ns_per_task=%.0f\n",
                   l.p50, l.p99, l.p999, l.max, l.load, l.cap_frac, l.cpu_per_task);
        } else if (!strcmp(c.scen, "memory")) {
            double mib, total;
            v[r - 1] = run_memory(&c, &mib, &total);
            print_head(&c, r);
            printf(" bytes_per_task=%.1f rss_growth_mib=%.1f rss_mib=%.1f\n", v[r - 1], mib, total);
        } else {
            usage();
        }
        fflush(stdout);
    }
    if (c.reps > 1) {
        print_head(&c, 0);
        if (!strcmp(c.scen, "latency")) printf(" median_p99_us=%.2f", median(v2, c.reps));
        printf(" median=%.2f\n", median(v, c.reps));
    }
    return 0;
}
