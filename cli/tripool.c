/* SPDX-License-Identifier: MIT */
/*
 * DESIGN - the tripool command. cli/ is the only code that reads argv,
 * prints and exits. This file owns main and one run: the command word,
 * the engine's life, the per-file output (on_result), --json and
 * --metrics-addr, and the exit code. Elsewhere: cli/args.c (options and
 * help), cli/check.c (hash -c), cli/signals.c (signal and progress
 * threads), cli/sumfile.c (sum lines), cli/parse.c (numbers and sizes).
 *
 * Threads: main parses arguments and runs one engine job; results come back
 * on main (tp_job.on_result) in input order and are printed there. The
 * signal thread and the progress thread are in cli/signals.c.
 *
 * Exit codes: 0 ok, 1 some inputs failed (each on stderr) or the command
 * could not start (a thread, memory), 2 usage error, 130 interrupted by
 * SIGINT, 143 by SIGTERM.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tripool.h"
#include "tripool/engine.h"
#include "tripool/metrics.h"
#include "tripool/obs.h"

#include "cli.h"
#include "sumfile.h"

const char *const tp__cli_prog = "tripool";
#define prog tp__cli_prog

/* ---- output -------------------------------------------------------------------- */

struct outstate {
    struct opts *o;
    uint64_t total_count;
    size_t files;
    struct checklist *check; /* hash -c */
};

static void report_error(const tp_file_result *r) {
    const char *op = r->err_op ? r->err_op : "error";
    if (r->err == -EEXIST && r->out_path)
        fprintf(stderr, "%s: %s: %s already exists; not overwritten (use -f to overwrite)\n", prog,
                r->path, r->out_path);
    else if (strcmp(op, "open") == 0)
        fprintf(stderr, "%s: %s: %s\n", prog, r->path, tp__cli_errtext(r->err));
    else
        fprintf(stderr, "%s: %s: %s: %s\n", prog, r->path, op, tp__cli_errtext(r->err));
}

static void on_result(void *arg, const tp_file_result *r) {
    struct outstate *s = arg;
    struct opts *o = s->o;
    if (r->skipped) { /* a note, not an error: the exit status is not changed */
        fprintf(stderr, "%s: %s: skipped: %s\n", prog, r->path, r->skipped);
        return;
    }
    s->files++;
    if (o->check) {
        tp__cli_check_result(s->check, o, r);
        return;
    }
    if (r->err) {
        report_error(r);
        return;
    }
    if (strcmp(o->cmd, "hash") == 0) {
        char h[33];
        tp__cli_hex(r->digest, r->digest_len, h);
        tp__sum_print(stdout, o->job.alg, o->tag, h, r->path);
    } else if (strcmp(o->cmd, "count") == 0) {
        printf("%" PRIu64 " %s\n", r->count, r->path);
        s->total_count += r->count;
    }
}

/* ---- JSON and metrics ------------------------------------------------------------- */

static void print_json(struct opts *o, tp_engine *e, double secs, int rc) {
    struct tp_engine_stats s;
    tp_engine_stats(e, &s);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mbps = secs > 0 ? (double)s.bytes_in / secs / 1e6 : 0;
    printf("{\"command\":\"%s\",\"exit\":%d,\"files\":%" PRIu64 ",\"files_failed\":%" PRIu64
           ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"seconds\":%.3f,"
           "\"throughput_mb_s\":%.1f,\"peak_mem_bytes\":%" PRIu64 ",\"max_mem_bytes\":%" PRIu64
           ",\"peak_rss_bytes\":%ld,\"peak_open_files\":%" PRIu64 ",\"max_open\":%" PRIu64
           ",\"chunks\":%" PRIu64 ",\"pool\":{\"workers\":%u,\"peak_workers\":%u,"
           "\"submitted\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"canceled\":%" PRIu64 ",\"peak_queued\":%zu},\"buf\":{\"gets\":%" PRIu64
           ",\"hits\":%" PRIu64 "},\"fd\":{\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 "}}\n",
           o->cmd, rc, s.files_ok + s.files_failed, s.files_failed, s.bytes_in, s.bytes_out, secs,
           mbps, s.mem_peak, s.mem_cap, ru.ru_maxrss * 1024L, s.open_peak, s.open_cap, s.chunks,
           s.pool.max_workers, s.pool.peak_workers, s.pool.submitted, s.pool.completed,
           s.pool.failed, s.pool.canceled, s.pool.peak_queued, s.buf_gets, s.buf_hits, s.fd_hits,
           s.fd_misses);
}

/* --metrics-addr: the library's own collectors for the engine's task pool
 * (with its queue-wait/run-time histograms, whose observer must be in the
 * pool's options before the pool exists: see pool_obs_setup), buffer pool,
 * fd pool and the engine, all with label pool="engine". */
struct metrics_state {
    tp_metrics *reg;
    tp_metrics_server *srv;
    tp_obs_pool *pool;
    tp_obs_bufpool *buf;
    tp_obs_fdpool *fd;
    tp_obs_engine *engine;
};

static int pool_obs_setup(tp_pool_opts *po, void *arg) {
    struct metrics_state *m = arg;
    return tp_obs_pool_prepare(m->reg, "engine", po, &m->pool);
}

static int start_metrics(const char *addr, tp_engine *e, struct metrics_state *m) {
    int err;
    if ((err = tp_obs_register_pool(m->pool, tp_engine_pool(e))) ||
        (err = tp_obs_register_bufpool(m->reg, "engine", tp_engine_bufpool(e), &m->buf)) ||
        (err = tp_obs_register_fdpool(m->reg, "engine", tp_engine_fdpool(e), &m->fd)) ||
        (err = tp_obs_register_engine(m->reg, "engine", e, &m->engine)))
        return err;
    return tp_metrics_serve(m->reg, addr, &m->srv);
}

/* Collectors go before what they read: the server first, then (with the
 * task pool closed, so its observer is quiet) every collector, the
 * registry; the engine after this. */
static void stop_metrics(tp_engine *e, struct metrics_state *m) {
    tp_metrics_server_stop(m->srv);
    if (e && m->pool) (void)tp_pool_close(tp_engine_pool(e), TP_FOREVER);
    tp_obs_engine_destroy(m->engine);
    tp_obs_fdpool_destroy(m->fd);
    tp_obs_bufpool_destroy(m->buf);
    tp_obs_pool_destroy(m->pool);
    tp_metrics_destroy(m->reg);
    memset(m, 0, sizeof(*m));
}

/* ---- main ---------------------------------------------------------------------- */

/* Stop what run started, in reverse: metrics, the signal thread, the engine. */
static void teardown(tp_engine *e, struct metrics_state *ms, bool signals) {
    stop_metrics(e, ms);
    tp__cli_signals_retire();
    if (signals) tp__cli_signals_stop();
    tp_engine_destroy(e);
}

static int run(struct opts *o) {
    const char *cmd = o->cmd;
    tp_job *j = &o->job;
    if (strcmp(cmd, "hash") == 0)
        j->op = TP_OP_HASH;
    else if (strcmp(cmd, "compress") == 0)
        j->op = TP_OP_COMPRESS;
    else if (strcmp(cmd, "decompress") == 0)
        j->op = TP_OP_DECOMPRESS;
    else if (strcmp(cmd, "cp") == 0)
        j->op = TP_OP_COPY;
    else
        j->op = TP_OP_COUNT;

    if (o->npaths == 0) return tp__cli_usage_error(cmd, "%smissing PATH", "");
    if (j->op == TP_OP_COPY) {
        if (o->npaths != 2) return tp__cli_usage_error(cmd, "%sneeds exactly SRC and DST", "");
        j->out_path = o->paths[1];
        o->npaths = 1;
    }
    if (j->out_path && j->op != TP_OP_COPY && (o->npaths != 1 || j->recursive))
        return tp__cli_usage_error(cmd, "%s-o takes exactly one input file (no -r)", "");
    if (o->check && j->recursive) return tp__cli_usage_error(cmd, "%s-c and -r do not mix", "");

    struct checklist cl = {0};
    const char *const *paths = o->paths;
    size_t npaths = o->npaths;
    if (o->check) {
        if (tp__cli_check_read(&cl, o) && cl.n == 0) {
            tp__cli_check_free(&cl);
            return 1;
        }
        paths = (const char *const *)cl.paths;
        npaths = cl.n;
        j->algs = cl.algs;
    }

    /* Signals go to the signal thread only: block them before any thread starts. */
    tp__cli_block_signals();

    struct metrics_state ms = {0};
    if (o->metrics_addr) {
        int err = tp_metrics_create(&ms.reg);
        if (err) {
            fprintf(stderr, "%s: metrics: %s\n", prog, tp_strerror(err));
            tp__cli_check_free(&cl);
            return 1;
        }
        o->eo.pool_setup = pool_obs_setup;
        o->eo.pool_setup_arg = &ms;
    }
    tp_engine *e = NULL;
    int err = tp_engine_create(&e, &o->eo);
    if (err) {
        stop_metrics(NULL, &ms);
        tp__cli_check_free(&cl);
        if (err == -EINVAL)
            return tp__cli_usage_error(cmd, "%sbad limits: --max-mem must hold two chunks", "");
        fprintf(stderr, "%s: cannot start: %s\n", prog, tp_strerror(err));
        return 1;
    }
    err = tp__cli_signals_start(e);
    if (err != 0) { /* no thread to take SIGINT: do not start what it could not stop */
        fprintf(stderr, "%s: cannot start: %s (signal thread)\n", prog, strerror(err));
        teardown(e, &ms, false);
        tp__cli_check_free(&cl);
        return 1;
    }

    if (o->metrics_addr) {
        err = start_metrics(o->metrics_addr, e, &ms);
        if (err) {
            fprintf(stderr, "%s: --metrics-addr %s: %s\n", prog, o->metrics_addr, tp_strerror(err));
            teardown(e, &ms, true);
            tp__cli_check_free(&cl);
            return EXIT_USAGE;
        }
        fprintf(stderr, "%s: metrics on port %u\n", prog, tp_metrics_server_port(ms.srv));
    }

    bool show = o->progress == 1 || (o->progress < 0 && isatty(2));
    if (show && (err = tp__cli_progress_start(e)) != 0) {
        fprintf(stderr, "%s: cannot start: %s (progress thread)\n", prog, strerror(err));
        teardown(e, &ms, true);
        tp__cli_check_free(&cl);
        return 1;
    }

    struct outstate st = {.o = o, .check = &cl};
    j->on_result = on_result;
    j->arg = &st;
    if (j->level == 0) j->level = 3;
    uint64_t t0 = tp_now_ns();
    int rc = tp_engine_run(e, j, paths, npaths);
    double secs = (double)(tp_now_ns() - t0) / 1e9;
    if (show) tp__cli_progress_stop();
    fflush(stdout);
    int sig = tp__cli_interrupted();
    int code;
    if (rc == -ECANCELED || sig) {
        fprintf(stderr, "%s: interrupted; temporary files removed\n", prog);
        code = sig == SIGTERM ? 143 : 130;
    } else if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, tp_strerror(rc));
        code = rc == -EINVAL ? EXIT_USAGE : 1;
    } else {
        code = rc ? 1 : 0;
    }
    if (j->op == TP_OP_COUNT && st.files > 1 && code != 130 && code != 143)
        printf("%" PRIu64 " total\n", st.total_count);
    if (o->check) code = tp__cli_check_finish(&cl, o, code);
    if (o->json) print_json(o, e, secs, code);
    fflush(stdout);
    teardown(e, &ms, true);
    tp__cli_check_free(&cl);
    return code;
}

int main(int argc, char **argv) {
    if (argc < 2) return tp__cli_usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
        return tp__cli_usage(stdout);
    if (strcmp(cmd, "--help-man") == 0) { /* hidden: see scripts/man-options.sh */
        tp__cli_help_man(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("tripool %d.%d.%d\n", TP_VERSION_MAJOR, TP_VERSION_MINOR, TP_VERSION_PATCH);
        return 0;
    }
    if (strcmp(cmd, "info") == 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        printf("tripool %d.%d.%d: usable CPUs %u, open file limit %llu\n", TP_VERSION_MAJOR,
               TP_VERSION_MINOR, TP_VERSION_PATCH, tp_usable_cpus(),
               (unsigned long long)rl.rlim_cur);
        return 0;
    }
    if (!tp__cli_known_cmd(cmd)) {
        fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
        return tp__cli_usage(stderr);
    }
    struct opts o;
    memset(&o, 0, sizeof(o));
    o.cmd = cmd;
    o.progress = -1;
    tp_engine_opts_init(&o.eo);
    int rc = tp__cli_parse_args(&o, argc - 2, argv + 2);
    if (rc == 0)
        rc = run(&o);
    else if (rc < 0)
        rc = 0;
    free(o.paths);
    return rc;
}
