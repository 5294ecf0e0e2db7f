/* SPDX-License-Identifier: MIT */
/*
 * DESIGN - the tripool command. The only code that reads argv, prints and
 * exits.
 *
 * Threads: main parses arguments and runs one engine job; results come back
 * on main (tp_job.on_result) in input order and are printed there. A signal
 * thread sigwait()s for SIGINT/SIGTERM (cancel the engine: temp files are
 * removed, exit 130/143) and SIGUSR1 (tp_pool_dump of the engine's pool to
 * stderr); the signals are blocked in every other thread, so no work runs in
 * a signal handler. A progress thread (--progress, default on a TTY) redraws
 * one stderr line from tp_engine_progress() every 200 ms. Shared state:
 * `interrupted` (atomic) and the engine pointer, set before the helper
 * threads start and read-only after.
 *
 * Exit codes: 0 ok, 1 some inputs failed (each on stderr), 2 usage error,
 * 130 interrupted.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tripool.h"
#include "tripool/engine.h"
#include "tripool/metrics.h"
#include "tripool/obs.h"

#include "parse.h"
#include "sumfile.h"

#define EXIT_USAGE 2

static const char *prog = "tripool";

/* ---- usage ---------------------------------------------------------------- */

static const char common_help[] =
    "Common options:\n"
    "  -j N               worker threads (default: usable CPUs)\n"
    "  --chunk SIZE       bytes per chunk, e.g. 4M (default 4M)\n"
    "  --max-mem SIZE     hard bound on buffer memory (default 256M)\n"
    "  --max-open N       hard bound on open input files (default 64)\n"
    "  --progress         progress bar on stderr (default: only on a TTY)\n"
    "  --no-progress      no progress bar\n"
    "  --json             print a JSON summary line on stdout at the end\n"
    "  --metrics-addr HOST:PORT  serve Prometheus metrics while running\n"
    "  -h, --help         this help\n"
    "SIZE takes a suffix K, M, G (powers of 1024). Exit: 0 ok, 1 some inputs failed,\n"
    "2 usage error, 130 interrupted. SIGUSR1 dumps the worker pool to stderr.\n";

static const char *const cmd_help[][2] = {
    {"hash", "usage: tripool hash [-a xxh3|xxh128|xxh64|xxh32|crc32c] [--tag] [-r] PATH...\n"
             "       tripool hash -c [--quiet] [--status] [--strict] [--warn] SUMFILE...\n"
             "Print checksums exactly as xxhsum does (XXH3: 'XXH3 (path) = hex'; others\n"
             "'hex  path', or BSD style with --tag), or verify a checksum file written by\n"
             "tripool or xxhsum (-c). Default algorithm xxh3. crc32c hashes big files in\n"
             "parallel chunks combined exactly.\n"},
    {"compress",
     "usage: tripool compress [-l LEVEL] [-r] [-f] [--rm] [--no-fsync] [-o OUT] PATH...\n"
     "Write PATH.zst (or OUT, one input only). Big files become independent zstd\n"
     "frames per chunk plus a seek table, decodable by `zstd -d`. Output goes to a\n"
     "temporary file, is fsynced and renamed when complete. --rm deletes a source\n"
     "after its output is fsynced and verified. Default level 3.\n"
     "  -f, --force        replace existing output files (default: refuse)\n"},
    {"decompress", "usage: tripool decompress [-r] [-f] [--rm] [--no-fsync] [-o OUT] PATH.zst...\n"
                   "Write PATH without .zst. Files written by tripool decode in parallel;\n"
                   "any other .zst file decodes as a stream.\n"
                   "  -f, --force        replace existing output files (default: refuse)\n"},
    {"cp", "usage: tripool cp [-f] [--no-fsync] SRC DST\n"
           "Copy SRC to DST (a file, or a directory to copy into) with parallel chunked\n"
           "copies in the kernel (copy_file_range); holes stay holes (sparse files stay sparse).\n"
           "  -f, --force        replace an existing DST file (default: refuse)\n"},
    {"count", "usage: tripool count [-l] [-e PATTERN] [-r] PATH...\n"
              "Count lines ('\\n', the same as wc -l), or with -e the lines containing the\n"
              "fixed string PATTERN (the same as grep -cF). Prints 'N PATH' per file and\n"
              "'N total' for several files.\n"},
    {"info", "usage: tripool info\nPrint what this machine gives tripool.\n"},
};

static int usage(FILE *f) {
    fprintf(f,
            "usage: tripool COMMAND [OPTIONS] PATH...\n"
            "Commands:\n"
            "  hash        checksums, xxhsum-compatible (hash -c verifies)\n"
            "  compress    .zst files, parallel, decodable by zstd -d\n"
            "  decompress  .zst files, parallel for tripool's multi-frame files\n"
            "  cp          parallel chunked copy\n"
            "  count       lines (wc -l) or lines containing a pattern\n"
            "  info        usable CPUs and limits\n"
            "Run 'tripool COMMAND --help' for a command's options. See tripool(1).\n\n%s",
            common_help);
    return f == stderr ? EXIT_USAGE : 0;
}

static int cmd_usage(const char *cmd, FILE *f) {
    for (size_t i = 0; i < sizeof(cmd_help) / sizeof(cmd_help[0]); i++)
        if (strcmp(cmd_help[i][0], cmd) == 0) {
            fprintf(f, "%s\n%s", cmd_help[i][1], common_help);
            return f == stderr ? EXIT_USAGE : 0;
        }
    return usage(f);
}

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'tripool %s --help'.\n", cmd);
    return EXIT_USAGE;
}

/* ---- parsing helpers ----------------------------------------------------- */

static bool parse_alg(const char *s, tp_hash_alg *a) {
    static const struct {
        const char *n;
        tp_hash_alg a;
    } t[] = {{"xxh3", TP_HASH_XXH3},   {"xxh128", TP_HASH_XXH128}, {"xxh64", TP_HASH_XXH64},
             {"xxh32", TP_HASH_XXH32}, {"crc32c", TP_HASH_CRC32C}, {"3", TP_HASH_XXH3},
             {"2", TP_HASH_XXH128},    {"1", TP_HASH_XXH64},       {"0", TP_HASH_XXH32}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcasecmp(s, t[i].n) == 0) {
            *a = t[i].a;
            return true;
        }
    return false;
}

/* ---- options ---------------------------------------------------------------- */

struct opts {
    const char *cmd;
    tp_engine_opts eo;
    int progress; /* -1 auto */
    bool json;
    const char *metrics_addr;
    tp_job job;
    bool check, tag, quiet, status, strict, warn;
    const char **paths;
    size_t npaths;
};

/* Parse argv after the command. Returns 0 or an exit code (2, or -1 for
 * --help printed). */
static int parse_args(struct opts *o, int argc, char **argv) {
    const char *cmd = o->cmd;
    o->paths = calloc((size_t)argc + 1, sizeof(char *));
    if (!o->paths) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    bool only_paths = false;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (only_paths || a[0] != '-' || strcmp(a, "-") == 0) {
            o->paths[o->npaths++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_paths = true;
            continue;
        }
        /* Split "--opt=value" and "-jN" forms. */
        const char *val = NULL;
        char name[64];
        if (a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a) : strlen(a);
            if (n >= sizeof(name)) return usage_error(cmd, "unknown option '%s'", a);
            memcpy(name, a, n);
            name[n] = 0;
            if (eq) val = eq + 1;
        } else {
            name[0] = '-';
            name[1] = a[1];
            name[2] = 0;
            if (a[2]) val = a + 2;
        }
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (!val) {                                                                                \
            if (i + 1 >= argc) return usage_error(cmd, "option '%s' needs a value", name);         \
            val = argv[++i];                                                                       \
        }                                                                                          \
    } while (0)
#define NO_VAL()                                                                                   \
    do {                                                                                           \
        if (val) return usage_error(cmd, "option '%s' takes no value", name);                      \
    } while (0)
        bool is_hash = strcmp(cmd, "hash") == 0, is_comp = strcmp(cmd, "compress") == 0,
             is_dec = strcmp(cmd, "decompress") == 0, is_count = strcmp(cmd, "count") == 0,
             is_cp = strcmp(cmd, "cp") == 0;
        uint64_t sz;
        if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
            cmd_usage(cmd, stdout);
            return -1;
        } else if (strcmp(name, "-j") == 0 || strcmp(name, "--jobs") == 0) {
            NEED_VAL();
            if (!tp__parse_uint(val, 1, 4096, &o->eo.workers))
                return usage_error(cmd, "bad -j value '%s' (1..4096)", val);
        } else if (strcmp(name, "--chunk") == 0) {
            NEED_VAL();
            if (!tp__parse_size(val, &sz) || sz < 4096 || sz > ((uint64_t)1 << 30))
                return usage_error(cmd, "bad --chunk size '%s' (4K..1G)", val);
            o->eo.chunk_size = (size_t)sz;
        } else if (strcmp(name, "--max-mem") == 0) {
            NEED_VAL();
            if (!tp__parse_size(val, &sz) || sz < 65536 || sz > SIZE_MAX / 2)
                return usage_error(cmd, "bad --max-mem size '%s'", val);
            o->eo.max_mem = (size_t)sz;
        } else if (strcmp(name, "--max-open") == 0) {
            NEED_VAL();
            if (!tp__parse_uint(val, 1, 1000000, &o->eo.max_open))
                return usage_error(cmd, "bad --max-open value '%s'", val);
        } else if (strcmp(name, "--progress") == 0) {
            NO_VAL();
            o->progress = 1;
        } else if (strcmp(name, "--no-progress") == 0) {
            NO_VAL();
            o->progress = 0;
        } else if (strcmp(name, "--json") == 0) {
            NO_VAL();
            o->json = true;
        } else if (strcmp(name, "--metrics-addr") == 0) {
            NEED_VAL();
            o->metrics_addr = val;
        } else if ((is_hash || is_comp || is_dec || is_count) &&
                   (strcmp(name, "-r") == 0 || strcmp(name, "--recursive") == 0)) {
            NO_VAL();
            o->job.recursive = true;
        } else if (is_hash && strcmp(name, "-a") == 0) {
            NEED_VAL();
            if (!parse_alg(val, &o->job.alg))
                return usage_error(cmd, "unknown algorithm '%s'", val);
        } else if (is_hash && strcmp(name, "-H") == 0) {
            NEED_VAL();
            if (!parse_alg(val, &o->job.alg))
                return usage_error(cmd, "unknown algorithm '%s'", val);
        } else if (is_hash && (strcmp(name, "-c") == 0 || strcmp(name, "--check") == 0)) {
            NO_VAL();
            o->check = true;
        } else if (is_hash && strcmp(name, "--tag") == 0) {
            NO_VAL();
            o->tag = true;
        } else if (is_hash && (strcmp(name, "-q") == 0 || strcmp(name, "--quiet") == 0)) {
            NO_VAL();
            o->quiet = true;
        } else if (is_hash && strcmp(name, "--status") == 0) {
            NO_VAL();
            o->status = true;
        } else if (is_hash && strcmp(name, "--strict") == 0) {
            NO_VAL();
            o->strict = true;
        } else if (is_hash && strcmp(name, "--warn") == 0) {
            NO_VAL();
            o->warn = true;
        } else if (is_comp && strcmp(name, "-l") == 0) {
            NEED_VAL();
            if (!tp__parse_int(val, -131072, 22, &o->job.level) || o->job.level == 0)
                return usage_error(cmd, "bad level '%s' (1..22, or negative for fast)", val);
        } else if ((is_comp || is_dec) && strcmp(name, "--rm") == 0) {
            NO_VAL();
            o->job.remove_src = true;
        } else if ((is_comp || is_dec) && strcmp(name, "-o") == 0) {
            NEED_VAL();
            o->job.out_path = val;
        } else if ((is_comp || is_dec || is_cp) &&
                   (strcmp(name, "-f") == 0 || strcmp(name, "--force") == 0)) {
            NO_VAL();
            o->job.force = true;
        } else if ((is_comp || is_dec || is_cp) && strcmp(name, "--no-fsync") == 0) {
            NO_VAL();
            o->job.no_fsync = true;
        } else if (is_count && strcmp(name, "-l") == 0) {
            NO_VAL();
        } else if (is_count && strcmp(name, "-e") == 0) {
            NEED_VAL();
            if (strchr(val, '\n'))
                return usage_error(cmd, "PATTERN must not contain a newline%s", "");
            o->job.pattern = val;
        } else {
            return usage_error(cmd, "unknown option '%s'", a);
        }
#undef NEED_VAL
#undef NO_VAL
    }
    return 0;
}

/* ---- signals, progress ------------------------------------------------------ */

/* g_engine is used by the signal thread under g_engine_lock, so main can
 * retire it (set NULL) before destroying the engine; the progress thread is
 * joined before that. */
static pthread_mutex_t g_engine_lock = PTHREAD_MUTEX_INITIALIZER;
static tp_engine *g_engine;
static atomic_int interrupted;
static atomic_bool progress_stop;
static atomic_bool signals_stop;

static void dump_line(void *arg, const char *line) {
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

static void *signal_thread(void *arg) {
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0) continue;
        if (atomic_load(&signals_stop)) return NULL; /* see stop_signals */
        pthread_mutex_lock(&g_engine_lock);
        if (g_engine && sig == SIGUSR1) {
            tp_pool_dump(tp_engine_pool(g_engine), dump_line, NULL);
        } else if (g_engine) {
            atomic_store(&interrupted, sig);
            tp_engine_cancel(g_engine);
        }
        pthread_mutex_unlock(&g_engine_lock);
    }
    return NULL;
}

static void retire_engine(void) {
    pthread_mutex_lock(&g_engine_lock); /* the signal thread no longer sees it */
    g_engine = NULL;
    pthread_mutex_unlock(&g_engine_lock);
}

/* End the signal thread (flag, then a signal only it waits for) so no
 * thread outlives the job: exit is then immediate, also under
 * ThreadSanitizer, which otherwise sleeps a second at exit. */
static void stop_signals(pthread_t th) {
    atomic_store(&signals_stop, true);
    pthread_kill(th, SIGUSR1);
    pthread_join(th, NULL);
}

static void human(double v, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void *progress_thread(void *arg) {
    (void)arg;
    uint64_t t0 = tp_now_ns();
    while (!atomic_load(&progress_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t done = 0, total = 0;
        tp_engine_progress(g_engine, &done, &total);
        double secs = (double)(tp_now_ns() - t0) / 1e9;
        double rate = secs > 0 ? (double)done / secs : 0;
        double frac = total ? (double)done / (double)total : 0;
        if (frac > 1) frac = 1;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        char d[32], t[32], r[32];
        human((double)done, d, sizeof(d));
        human((double)total, t, sizeof(t));
        human(rate, r, sizeof(r));
        double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
        fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s  %s/s  ETA %.0fs  ", prog, bar, frac * 100, d, t,
                r, eta);
        fflush(stderr);
    }
    fprintf(stderr, "\n");
    return NULL;
}

/* ---- output -------------------------------------------------------------------- */

struct outstate {
    struct opts *o;
    uint64_t total_count;
    size_t files;
    /* hash -c */
    const char *const *expect; /* per input: expected hex */
    const char *const *sumfile;
    const unsigned *line;
    unsigned mismatched, unreadable;
};

static void hex(const unsigned char *d, size_t n, char *out) {
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = 0;
}

/* errno text as the standard tools print it; tripool's own codes otherwise. */
static const char *errtext(int err) {
    if (err < 0 && err > -4096 && err != -ESHUTDOWN) return strerror(-err);
    return tp_strerror(err);
}

static void report_error(const tp_file_result *r) {
    const char *op = r->err_op ? r->err_op : "error";
    if (r->err == -EEXIST && r->out_path)
        fprintf(stderr, "%s: %s: %s already exists; not overwritten (use -f to overwrite)\n", prog,
                r->path, r->out_path);
    else if (strcmp(op, "open") == 0)
        fprintf(stderr, "%s: %s: %s\n", prog, r->path, errtext(r->err));
    else
        fprintf(stderr, "%s: %s: %s: %s\n", prog, r->path, op, errtext(r->err));
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
        if (r->err) {
            s->unreadable++;
            if (!o->status)
                printf("%s:%u: Could not open or read '%s': %s.\n", s->sumfile[r->index],
                       s->line[r->index], r->path, errtext(r->err));
            return;
        }
        char h[33];
        hex(r->digest, r->digest_len, h);
        bool ok = strcasecmp(h, s->expect[r->index]) == 0;
        if (!ok) s->mismatched++;
        if (!o->status && (!ok || !o->quiet)) printf("%s: %s\n", r->path, ok ? "OK" : "FAILED");
        return;
    }
    if (r->err) {
        report_error(r);
        return;
    }
    if (strcmp(o->cmd, "hash") == 0) {
        char h[33];
        hex(r->digest, r->digest_len, h);
        tp__sum_print(stdout, o->job.alg, o->tag, h, r->path);
    } else if (strcmp(o->cmd, "count") == 0) {
        printf("%" PRIu64 " %s\n", r->count, r->path);
        s->total_count += r->count;
    }
}

/* ---- hash -c: checksum files ------------------------------------------------ */

struct checklist {
    char **paths;
    char **expect;
    char **sumfile;
    unsigned *line;
    tp_hash_alg *algs;
    size_t n, cap;
    unsigned bad_lines;
};

static int check_add(struct checklist *c, const char *path, size_t plen, const char *hx,
                     size_t hlen, tp_hash_alg a, const char *sumfile, unsigned line) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        char **p = realloc(c->paths, nc * sizeof(*p));
        if (p) c->paths = p;
        char **e = realloc(c->expect, nc * sizeof(*e));
        if (e) c->expect = e;
        char **sf = realloc(c->sumfile, nc * sizeof(*sf));
        if (sf) c->sumfile = sf;
        unsigned *l = realloc(c->line, nc * sizeof(*l));
        if (l) c->line = l;
        tp_hash_alg *al = realloc(c->algs, nc * sizeof(*al));
        if (al) c->algs = al;
        if (!p || !e || !sf || !l || !al) return -ENOMEM;
        c->cap = nc;
    }
    c->paths[c->n] = strndup(path, plen);
    c->expect[c->n] = strndup(hx, hlen);
    c->sumfile[c->n] = (char *)sumfile;
    c->line[c->n] = line;
    c->algs[c->n] = a;
    if (!c->paths[c->n] || !c->expect[c->n]) return -ENOMEM;
    c->n++;
    return 0;
}

static int read_sumfile(struct checklist *c, const char *name, struct opts *o) {
    FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
        return 1;
    }
    char *l = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0, good = 0;
    while ((n = getline(&l, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (l[n - 1] == '\n' || l[n - 1] == '\r'))
            l[--n] = 0;
        struct tp__sum_line sl;
        if (!tp__sum_parse_line(l, &sl)) {
            c->bad_lines++;
            if (o->warn && !o->status)
                fprintf(stderr, "%s:%u: Error: Improperly formatted checksum line.\n", name,
                        lineno);
            continue;
        }
        if (check_add(c, sl.path, sl.path_len, sl.hex, sl.hex_len, sl.alg, name, lineno) != 0) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit(1);
        }
        good++;
    }
    free(l);
    if (f != stdin) fclose(f);
    if (!good) {
        fprintf(stderr, "%s: no properly formatted xxHash checksum lines found\n",
                strcmp(name, "-") == 0 ? "stdin" : name);
        return 1;
    }
    return 0;
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

    if (o->npaths == 0) return usage_error(cmd, "%smissing PATH", "");
    if (j->op == TP_OP_COPY) {
        if (o->npaths != 2) return usage_error(cmd, "%sneeds exactly SRC and DST", "");
        j->out_path = o->paths[1];
        o->npaths = 1;
    }
    if (j->out_path && j->op != TP_OP_COPY && (o->npaths != 1 || j->recursive))
        return usage_error(cmd, "%s-o takes exactly one input file (no -r)", "");
    if (o->check && j->recursive) return usage_error(cmd, "%s-c and -r do not mix", "");

    struct checklist cl = {0};
    const char *const *paths = o->paths;
    size_t npaths = o->npaths;
    if (o->check) {
        int bad = 0;
        for (size_t i = 0; i < o->npaths; i++)
            bad |= read_sumfile(&cl, o->paths[i], o);
        if (bad && cl.n == 0) return 1;
        paths = (const char *const *)cl.paths;
        npaths = cl.n;
        j->algs = cl.algs;
    }

    /* Signals go to the signal thread only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct metrics_state ms = {0};
    if (o->metrics_addr) {
        int err = tp_metrics_create(&ms.reg);
        if (err) {
            fprintf(stderr, "%s: metrics: %s\n", prog, tp_strerror(err));
            return 1;
        }
        o->eo.pool_setup = pool_obs_setup;
        o->eo.pool_setup_arg = &ms;
    }
    tp_engine *e = NULL;
    int err = tp_engine_create(&e, &o->eo);
    if (err) {
        stop_metrics(NULL, &ms);
        if (err == -EINVAL)
            return usage_error(cmd, "%sbad limits: --max-mem must hold two chunks", "");
        fprintf(stderr, "%s: cannot start: %s\n", prog, tp_strerror(err));
        return 1;
    }
    pthread_mutex_lock(&g_engine_lock);
    g_engine = e;
    pthread_mutex_unlock(&g_engine_lock);
    pthread_t sig_th, prog_th;
    err = pthread_create(&sig_th, NULL, signal_thread, &set);
    if (err != 0) { /* no thread to take SIGINT: do not start what it could not stop */
        fprintf(stderr, "%s: cannot start: %s\n", prog, strerror(err));
        retire_engine();
        stop_metrics(e, &ms);
        tp_engine_destroy(e);
        return 1;
    }

    if (o->metrics_addr) {
        err = start_metrics(o->metrics_addr, e, &ms);
        if (err) {
            fprintf(stderr, "%s: --metrics-addr %s: %s\n", prog, o->metrics_addr, tp_strerror(err));
            retire_engine();
            stop_signals(sig_th);
            stop_metrics(e, &ms);
            tp_engine_destroy(e);
            return EXIT_USAGE;
        }
        fprintf(stderr, "%s: metrics on port %u\n", prog, tp_metrics_server_port(ms.srv));
    }

    bool show = o->progress == 1 || (o->progress < 0 && isatty(2));
    if (show && pthread_create(&prog_th, NULL, progress_thread, NULL) != 0) show = false;

    struct outstate st = {.o = o,
                          .expect = (const char *const *)cl.expect,
                          .sumfile = (const char *const *)cl.sumfile,
                          .line = cl.line};
    j->on_result = on_result;
    j->arg = &st;
    if (j->level == 0) j->level = 3;
    uint64_t t0 = tp_now_ns();
    int rc = tp_engine_run(e, j, paths, npaths);
    double secs = (double)(tp_now_ns() - t0) / 1e9;
    if (show) {
        atomic_store(&progress_stop, true);
        pthread_join(prog_th, NULL);
    }
    fflush(stdout);
    int sig = atomic_load(&interrupted);
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
    if (j->op == TP_OP_COUNT && st.files > 1 && code != 130)
        printf("%" PRIu64 " total\n", st.total_count);
    if (o->check && !o->status) {
        if (cl.bad_lines)
            printf("%u line%s improperly formatted\n", cl.bad_lines,
                   cl.bad_lines == 1 ? " is" : "s are");
        if (st.unreadable)
            printf("%u listed file%s could not be read\n", st.unreadable,
                   st.unreadable == 1 ? "" : "s");
        if (st.mismatched)
            printf("%u computed checksum%s did NOT match\n", st.mismatched,
                   st.mismatched == 1 ? "" : "s");
    }
    if (o->check && code == 0 && (st.mismatched || st.unreadable || (o->strict && cl.bad_lines)))
        code = 1;
    if (o->json) print_json(o, e, secs, code);
    fflush(stdout);
    stop_metrics(e, &ms);
    retire_engine();
    stop_signals(sig_th);
    tp_engine_destroy(e);
    for (size_t i = 0; i < cl.n; i++) {
        free(cl.paths[i]);
        free(cl.expect[i]);
    }
    free(cl.paths);
    free(cl.expect);
    free(cl.sumfile);
    free(cl.line);
    free(cl.algs);
    return code;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
        return usage(stdout);
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
    static const char *const cmds[] = {"hash", "compress", "decompress", "cp", "count"};
    bool known = false;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
        return usage(stderr);
    }
    struct opts o;
    memset(&o, 0, sizeof(o));
    o.cmd = cmd;
    o.progress = -1;
    tp_engine_opts_init(&o.eo);
    int rc = parse_args(&o, argc - 2, argv + 2);
    if (rc == 0)
        rc = run(&o);
    else if (rc < 0)
        rc = 0;
    free(o.paths);
    return rc;
}
