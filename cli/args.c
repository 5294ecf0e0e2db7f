/* SPDX-License-Identifier: MIT */
/*
 * Argument parsing and help: owns the option table (every option's name,
 * short name, argument kind, the commands that accept it, its limits and
 * its help and man-page text), the parser that reads argv after the
 * command through it, `tripool CMD --help`, and `tripool --help-man`, which
 * prints the OPTIONS section of docs/tripool.1 from the same table
 * (tests/cli/manpage.sh fails when the two differ; regenerate with
 * scripts/man-options.sh). Pure except for printing help and usage errors.
 *
 * Limits come from include/tripool/engine.h (TP_ENGINE_*); "@LO@" and
 * "@HI@" in help and man text are replaced by the row's limits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "parse.h"

#define prog tp__cli_prog

/* ---- the table ---------------------------------------------------------------- */

enum cmd_bit { C_HASH = 1, C_COMP = 2, C_DEC = 4, C_CP = 8, C_COUNT = 16, C_ALL = 31 };

static const struct {
    const char *name;
    unsigned bit;
} cmds[] = {{"hash", C_HASH},
            {"compress", C_COMP},
            {"decompress", C_DEC},
            {"cp", C_CP},
            {"count", C_COUNT}};

enum arg_kind {
    A_NONE, /* a flag */
    A_UINT, /* decimal in [lo, hi] */
    A_INT,  /* decimal in [lo, hi] */
    A_SIZE, /* bytes with K M G suffixes, in [lo, hi] */
    A_ALG,  /* a hash algorithm name */
    A_STR,
};

/* What a bad value's message adds after "PREFIX 'VALUE'". */
enum range_note { R_NONE, R_LOHI, R_LEVEL };

/* Where a parsed option goes (apply()). */
enum target {
    T_HELP,
    T_WORKERS,
    T_CHUNK,
    T_MAX_MEM,
    T_MAX_OPEN,
    T_PROGRESS,
    T_NO_PROGRESS,
    T_JSON,
    T_METRICS,
    T_RECURSIVE,
    T_ALG,
    T_CHECK,
    T_TAG,
    T_QUIET,
    T_STATUS,
    T_STRICT,
    T_WARN,
    T_LEVEL,
    T_RM,
    T_OUT,
    T_FORCE,
    T_NO_FSYNC,
    T_LINES,
    T_PATTERN,
};

struct cli_opt {
    const char *name; /* "--chunk", or NULL */
    char shrt;        /* 'j', or 0 */
    enum arg_kind arg;
    unsigned cmds; /* enum cmd_bit mask */
    const char *metavar;
    long long lo, hi; /* A_UINT, A_INT, A_SIZE */
    const char *bad;  /* message prefix for a bad value */
    enum range_note range;
    enum target to;
    bool hidden;      /* accepted, not in help or man page */
    const char *help; /* one line of --help */
    const char *man;  /* the man page's paragraph (roff); NULL: help */
};

/* The command's own floor for --max-mem (the library needs 3/4 of it to
 * hold two chunks; this turns nonsense like "1K" into a usage error). */
#define CLI_MAX_MEM_MIN (16 * (long long)TP_ENGINE_CHUNK_MIN)

/* Order: the command-specific options, then the common ones (C_ALL); help
 * and the man page list them in this order. */
static const struct cli_opt opt_table[] = {
    {.shrt = 'a',
     .arg = A_ALG,
     .cmds = C_HASH,
     .metavar = "ALG",
     .bad = "unknown algorithm",
     .to = T_ALG,
     .help = "xxh3 (default), xxh128, xxh64, xxh32 or crc32c",
     .man = "the algorithm: xxh3 (the default), xxh128, xxh64, xxh32 or crc32c (also\n"
            "xxhsum's numbers 3, 2, 1, 0)."},
    {.shrt = 'H',
     .arg = A_ALG,
     .cmds = C_HASH,
     .metavar = "ALG",
     .bad = "unknown algorithm",
     .to = T_ALG,
     .hidden = true,
     .help = "the same as -a (xxhsum's -H0..-H3)"},
    {.name = "--check",
     .shrt = 'c',
     .cmds = C_HASH,
     .to = T_CHECK,
     .help = "verify the checksum lines of each SUMFILE",
     .man = "verify the checksum lines of each\n.I SUMFILE\n(\\- for standard input)."},
    {.name = "--tag",
     .cmds = C_HASH,
     .to = T_TAG,
     .help = "BSD-style lines 'ALG (path) = hex'",
     .man = "BSD-style lines\n.B ALG (path) = hex\nfor every algorithm."},
    {.name = "--quiet",
     .shrt = 'q',
     .cmds = C_HASH,
     .to = T_QUIET,
     .help = "with -c: no line for a file that is OK"},
    {.name = "--status",
     .cmds = C_HASH,
     .to = T_STATUS,
     .help = "with -c: print nothing, the exit status tells"},
    {.name = "--strict",
     .cmds = C_HASH,
     .to = T_STRICT,
     .help = "with -c: improperly formatted lines make the exit status 1"},
    {.name = "--warn",
     .cmds = C_HASH,
     .to = T_WARN,
     .help = "with -c: warn about each improperly formatted line"},
    {.shrt = 'l',
     .arg = A_INT,
     .cmds = C_COMP,
     .metavar = "LEVEL",
     .lo = TP_ENGINE_LEVEL_MIN,
     .hi = TP_ENGINE_LEVEL_MAX,
     .bad = "bad level",
     .range = R_LEVEL,
     .to = T_LEVEL,
     .help = "zstd level 1..@HI@, or negative for fast (default 3)",
     .man = "the zstd level, 1 to @HI@, or negative (down to @LO@) for fast (default 3)."},
    {.shrt = 'l',
     .cmds = C_COUNT,
     .to = T_LINES,
     .help = "count lines (the default)",
     .man = "count lines (the default)."},
    {.shrt = 'e',
     .arg = A_STR,
     .cmds = C_COUNT,
     .metavar = "PATTERN",
     .to = T_PATTERN,
     .help = "count the lines containing the fixed string PATTERN",
     .man = "count the lines containing the fixed string\n.I PATTERN\n(no newline in it)."},
    {.name = "--recursive",
     .shrt = 'r',
     .cmds = C_HASH | C_COMP | C_DEC | C_COUNT,
     .to = T_RECURSIVE,
     .help = "walk directories (sorted; symbolic links not followed)",
     .man = "walk directories (sorted). Symbolic links found in a walk are never\n"
            "followed, to files or to directories: each is skipped with the note\n"
            ".I \"PATH: skipped: symbolic link not followed\"\n"
            "on standard error (devices, FIFOs and sockets:\n"
            ".IR \"not a regular file\" );\n"
            "the exit status is not changed. A symbolic link given as an argument is\n"
            "followed. Walking an untrusted tree that changes meanwhile is safe: each\n"
            "file found is opened without following a symlink and must still be the\n"
            "file (device, inode) the walk found, else it fails with\n"
            ".I \"replaced during the run\"\n"
            "(a directory replaced by a symlink is not entered); files that vanish fail\n"
            "with\n"
            ".IR \"No such file or directory\" .\n"
            "With\n"
            ".BR \\-\\-rm ,\n"
            "a source is removed only if it is still unchanged (inode, size, mtime)\n"
            "after its output was published; otherwise it is kept and reported\n"
            ".RI ( \"source changed during the run (kept)\" )."},
    {.name = "--rm",
     .cmds = C_COMP | C_DEC,
     .to = T_RM,
     .help = "delete a source after its output is fsynced and verified",
     .man = "delete a source after its output was fsynced and verified (compress: decoded\n"
            "again and found identical)."},
    {.shrt = 'o',
     .arg = A_STR,
     .cmds = C_COMP | C_DEC,
     .metavar = "OUT",
     .to = T_OUT,
     .help = "the output file (one input only, no -r)",
     .man = "the output file (one input only, no\n.BR \\-r )."},
    {.name = "--force",
     .shrt = 'f',
     .cmds = C_COMP | C_DEC | C_CP,
     .to = T_FORCE,
     .help = "replace existing output files (default: refuse)",
     .man = "replace existing output files. Without it an\n"
            "existing output (checked when the input is planned and again, atomically,\n"
            "at the final rename) makes that input fail with exit status 1."},
    {.name = "--no-fsync",
     .cmds = C_COMP | C_DEC | C_CP,
     .to = T_NO_FSYNC,
     .help = "rename outputs without fsync (not durable across a crash)",
     .man = "rename outputs without fsync (faster; not durable across a crash)."},
    {.name = "--jobs",
     .shrt = 'j',
     .arg = A_UINT,
     .cmds = C_ALL,
     .metavar = "N",
     .lo = 1,
     .hi = TP_ENGINE_WORKERS_MAX,
     .bad = "bad -j value",
     .range = R_LOHI,
     .to = T_WORKERS,
     .help = "worker threads (default: usable CPUs)",
     .man = "Worker threads, 1 to @HI@ (default: the CPUs this process may use, honouring\n"
            "affinity and cgroup quotas)."},
    {.name = "--chunk",
     .arg = A_SIZE,
     .cmds = C_ALL,
     .metavar = "SIZE",
     .lo = (long long)TP_ENGINE_CHUNK_MIN,
     .hi = (long long)TP_ENGINE_CHUNK_MAX,
     .bad = "bad --chunk size",
     .range = R_LOHI,
     .to = T_CHUNK,
     .help = "bytes per chunk, e.g. 4M (default 4M)",
     .man = "Bytes per chunk (default 4M; @LO@ to @HI@). SIZE takes K, M, G suffixes\n"
            "(powers of 1024)."},
    {.name = "--max-mem",
     .arg = A_SIZE,
     .cmds = C_ALL,
     .metavar = "SIZE",
     .lo = CLI_MAX_MEM_MIN,
     .hi = (long long)(SIZE_MAX / 2),
     .bad = "bad --max-mem size",
     .to = T_MAX_MEM,
     .help = "hard bound on buffer memory (default 256M)",
     .man = "Hard bound on buffer memory (default 256M, at least @LO@). Three quarters hold\n"
            "chunks in flight, one quarter buffers kept for reuse; it must hold two chunks."},
    {.name = "--max-open",
     .arg = A_UINT,
     .cmds = C_ALL,
     .metavar = "N",
     .lo = 1,
     .hi = TP_ENGINE_MAX_OPEN_MAX,
     .bad = "bad --max-open value",
     .to = T_MAX_OPEN,
     .help = "hard bound on open input files (default 64)",
     .man = "Hard bound on open input files (default 64, at most @HI@). Outputs add one (at\n"
            "most five while foreign .zst files are decoded as streams)."},
    {.name = "--progress",
     .cmds = C_ALL,
     .to = T_PROGRESS,
     .help = "progress bar on stderr (default: only on a TTY)",
     .man = "A progress bar on standard error (bytes, rate, ETA). Default: on when\n"
            "standard error is a terminal."},
    {.name = "--no-progress",
     .cmds = C_ALL,
     .to = T_NO_PROGRESS,
     .help = "no progress bar",
     .man = "No progress bar."},
    {.name = "--json",
     .cmds = C_ALL,
     .to = T_JSON,
     .help = "print a JSON summary line on stdout at the end",
     .man = "Print a one-line JSON summary on standard output at the end: command,\n"
            "exit, files, bytes in and out, seconds, throughput, peak buffer memory,\n"
            "peak RSS, peak open files, and task, buffer and fd pool statistics."},
    {.name = "--metrics-addr",
     .arg = A_STR,
     .cmds = C_ALL,
     .metavar = "HOST:PORT",
     .to = T_METRICS,
     .help = "serve Prometheus metrics while running",
     .man = "Serve Prometheus metrics (GET /metrics) while running (port 0: any free\n"
            "port, printed on standard error). The series are the library's own\n"
            "collectors, each labelled\n"
            ".BR pool=\"engine\" :\n"
            "the task pool\n"
            ".RB ( tripool_pool_* ,\n"
            "with queue-wait and run-time histograms), the buffer pool\n"
            ".RB ( tripool_buf_* ,\n"
            "per size class), the fd pool\n"
            ".RB ( tripool_fd_* )\n"
            "and the engine\n"
            ".RB ( tripool_engine_* :\n"
            "bytes in and out, chunks, files by result, peak and maximum memory and\n"
            "open files); see docs/metrics.md. An address that cannot be bound is a\n"
            "usage error."},
    {.name = "--help",
     .shrt = 'h',
     .cmds = C_ALL,
     .to = T_HELP,
     .help = "this help",
     .man = "Print the command's usage and options and exit 0."},
};
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

/* ---- help ----------------------------------------------------------------------- */

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
     "after its output is fsynced and verified. Default level 3.\n"},
    {"decompress", "usage: tripool decompress [-r] [-f] [--rm] [--no-fsync] [-o OUT] PATH.zst...\n"
                   "Write PATH without .zst. Files written by tripool decode in parallel;\n"
                   "any other .zst file decodes as a stream.\n"},
    {"cp",
     "usage: tripool cp [-f] [--no-fsync] SRC DST\n"
     "Copy SRC to DST (a file, or a directory to copy into) with parallel chunked\n"
     "copies in the kernel (copy_file_range); holes stay holes (sparse files stay sparse).\n"},
    {"count", "usage: tripool count [-l] [-e PATTERN] [-r] PATH...\n"
              "Count lines ('\\n', the same as wc -l), or with -e the lines containing the\n"
              "fixed string PATTERN (the same as grep -cF). Prints 'N PATH' per file and\n"
              "'N total' for several files.\n"},
};

/* A limit as the help and messages write it: sizes with the largest exact
 * K/M/G suffix, numbers in decimal. */
static void fmt_limit(const struct cli_opt *r, long long v, char *buf, size_t n) {
    static const char sfx[] = "KMG";
    int i = -1;
    if (r->arg == A_SIZE)
        while (i < 2 && v >= 1024 && v % 1024 == 0) {
            v /= 1024;
            i++;
        }
    if (i >= 0)
        snprintf(buf, n, "%lld%c", v, sfx[i]);
    else
        snprintf(buf, n, "%lld", v);
}

/* text with "@LO@" and "@HI@" replaced by the row's limits, to f; with
 * roff, '-' written as roff's "\-" (for help text in the man page). */
static void put_text(FILE *f, const struct cli_opt *r, const char *text, bool roff) {
    for (const char *p = text; *p;) {
        bool lo = strncmp(p, "@LO@", 4) == 0, hi = strncmp(p, "@HI@", 4) == 0;
        if (lo || hi) {
            char b[32];
            fmt_limit(r, lo ? r->lo : r->hi, b, sizeof(b));
            fputs(b, f);
            p += 4;
        } else {
            if (roff && *p == '-') fputc('\\', f);
            fputc(*p++, f);
        }
    }
}

/* "-f, --force", "-j, --jobs N", "--chunk SIZE" */
static void opt_label(const struct cli_opt *r, char *buf, size_t n) {
    int k = 0;
    if (r->shrt) k = snprintf(buf, n, "-%c%s", r->shrt, r->name ? ", " : "");
    if (r->name) k += snprintf(buf + k, n - (size_t)k, "%s", r->name);
    if (r->metavar) snprintf(buf + k, n - (size_t)k, " %s", r->metavar);
}

/* The help lines of the rows for command bit: the common ones (C_ALL) or the others. */
static void list_opts(FILE *f, unsigned bit, bool common) {
    for (size_t i = 0; i < NOPTS; i++) {
        const struct cli_opt *r = &opt_table[i];
        if (r->hidden || (r->cmds == C_ALL) != common || !(r->cmds & bit)) continue;
        char label[64];
        opt_label(r, label, sizeof(label));
        fprintf(f, "  %-18s ", label);
        if (strlen(label) > 18) fputc(' ', f);
        put_text(f, r, r->help, false);
        fputc('\n', f);
    }
}

static const char common_tail[] =
    "SIZE takes a suffix K, M, G (powers of 1024). Exit: 0 ok, 1 some inputs failed,\n"
    "2 usage error, 130 interrupted (143 by SIGTERM). SIGUSR1 dumps the worker pool\n"
    "to stderr.\n";

static void common_help(FILE *f) {
    fputs("Common options:\n", f);
    list_opts(f, C_ALL, true);
    fputs(common_tail, f);
}

int tp__cli_usage(FILE *f) {
    fprintf(f, "usage: tripool COMMAND [OPTIONS] PATH...\n"
               "Commands:\n"
               "  hash        checksums, xxhsum-compatible (hash -c verifies)\n"
               "  compress    .zst files, parallel, decodable by zstd -d\n"
               "  decompress  .zst files, parallel for tripool's multi-frame files\n"
               "  cp          parallel chunked copy\n"
               "  count       lines (wc -l) or lines containing a pattern\n"
               "  info        usable CPUs and limits\n"
               "Run 'tripool COMMAND --help' for a command's options. See tripool(1).\n\n");
    common_help(f);
    return f == stderr ? EXIT_USAGE : 0;
}

static unsigned cmd_bit(const char *cmd) {
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmd, cmds[i].name) == 0) return cmds[i].bit;
    return 0;
}

static void cmd_usage(const char *cmd, FILE *f) {
    for (size_t i = 0; i < sizeof(cmd_help) / sizeof(cmd_help[0]); i++)
        if (strcmp(cmd_help[i][0], cmd) == 0) {
            fprintf(f, "%s", cmd_help[i][1]);
            unsigned bit = cmd_bit(cmd);
            fputs("Options:\n", f);
            list_opts(f, bit, false);
            fputc('\n', f);
            common_help(f);
            return;
        }
    tp__cli_usage(f);
}

/* roff: '-' is written "\-" in option names. */
static void roff_name(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '-') fputc('\\', f);
        fputc(*s, f);
    }
}

void tp__cli_help_man(FILE *f) {
    fputs(".SH OPTIONS\n", f);
    for (size_t i = 0; i < NOPTS; i++) {
        const struct cli_opt *r = &opt_table[i];
        if (r->hidden) continue;
        fputs(".TP\n", f);
        if (r->shrt) {
            fprintf(f, "\\fB\\-%c\\fR", r->shrt);
            if (r->name) fputs(", ", f);
        }
        if (r->name) {
            fputs("\\fB", f);
            roff_name(f, r->name);
            fputs("\\fR", f);
        }
        if (r->metavar) fprintf(f, " \\fI%s\\fR", r->metavar);
        fputc('\n', f);
        if (r->cmds != C_ALL) {
            const char *sep = "";
            for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
                if (r->cmds & cmds[c].bit) {
                    fprintf(f, "%s%s", sep, cmds[c].name);
                    sep = ", ";
                }
            fputs(": ", f);
        }
        if (r->man)
            put_text(f, r, r->man, false);
        else
            put_text(f, r, r->help, true);
        fputc('\n', f);
    }
}

int tp__cli_usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'tripool %s --help'.\n", cmd);
    return EXIT_USAGE;
}

bool tp__cli_known_cmd(const char *cmd) {
    return cmd_bit(cmd) != 0;
}

/* ---- parsing -------------------------------------------------------------------- */

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

/* The usage error for a bad value of r: "PREFIX 'VALUE'" and its range. */
static int bad_value(const char *cmd, const struct cli_opt *r, const char *val) {
    char lo[32], hi[32], msg[256];
    fmt_limit(r, r->lo, lo, sizeof(lo));
    fmt_limit(r, r->hi, hi, sizeof(hi));
    int k = snprintf(msg, sizeof(msg), "%s '%s'", r->bad, val);
    if (k < 0 || (size_t)k >= sizeof(msg)) k = (int)sizeof(msg) - 1;
    if (r->range == R_LOHI)
        snprintf(msg + k, sizeof(msg) - (size_t)k, " (%s..%s)", lo, hi);
    else if (r->range == R_LEVEL)
        snprintf(msg + k, sizeof(msg) - (size_t)k, " (1..%s, or negative for fast)", hi);
    return tp__cli_usage_error(cmd, "%s", msg);
}

/* Parse val by r's kind and store it where r says. Returns 0, 2 (usage
 * error printed) or -1 (--help printed). */
static int apply(struct opts *o, const struct cli_opt *r, const char *val) {
    const char *cmd = o->cmd;
    unsigned u = 0;
    int n = 0;
    uint64_t sz = 0;
    tp_hash_alg alg = TP_HASH_XXH3;
    bool ok = true;
    switch (r->arg) {
    case A_UINT:
        ok = tp__parse_uint(val, (unsigned)r->lo, (unsigned)r->hi, &u);
        break;
    case A_INT:
        ok = tp__parse_int(val, (int)r->lo, (int)r->hi, &n);
        break;
    case A_SIZE:
        ok = tp__parse_size(val, &sz) && sz >= (uint64_t)r->lo && sz <= (uint64_t)r->hi;
        break;
    case A_ALG:
        ok = parse_alg(val, &alg);
        break;
    case A_NONE:
    case A_STR:
        break;
    }
    if (r->to == T_LEVEL && n == 0) ok = false; /* 0 is "the default", not a level */
    if (!ok) return bad_value(cmd, r, val);
    tp_job *j = &o->job;
    switch (r->to) {
    case T_HELP:
        cmd_usage(cmd, stdout);
        return -1;
    case T_WORKERS:
        o->eo.workers = u;
        break;
    case T_CHUNK:
        o->eo.chunk_size = (size_t)sz;
        break;
    case T_MAX_MEM:
        o->eo.max_mem = (size_t)sz;
        break;
    case T_MAX_OPEN:
        o->eo.max_open = u;
        break;
    case T_PROGRESS:
        o->progress = 1;
        break;
    case T_NO_PROGRESS:
        o->progress = 0;
        break;
    case T_JSON:
        o->json = true;
        break;
    case T_METRICS:
        o->metrics_addr = val;
        break;
    case T_RECURSIVE:
        j->recursive = true;
        break;
    case T_ALG:
        j->alg = alg;
        break;
    case T_CHECK:
        o->check = true;
        break;
    case T_TAG:
        o->tag = true;
        break;
    case T_QUIET:
        o->quiet = true;
        break;
    case T_STATUS:
        o->status = true;
        break;
    case T_STRICT:
        o->strict = true;
        break;
    case T_WARN:
        o->warn = true;
        break;
    case T_LEVEL:
        j->level = n;
        break;
    case T_RM:
        j->remove_src = true;
        break;
    case T_OUT:
        j->out_path = val;
        break;
    case T_FORCE:
        j->force = true;
        break;
    case T_NO_FSYNC:
        j->no_fsync = true;
        break;
    case T_LINES:
        break;
    case T_PATTERN:
        if (strchr(val, '\n'))
            return tp__cli_usage_error(cmd, "PATTERN must not contain a newline%s", "");
        j->pattern = val;
        break;
    }
    return 0;
}

/* The row for name ("--chunk" or "-j") that command bit accepts, or NULL. */
static const struct cli_opt *find_opt(const char *name, unsigned bit) {
    for (size_t i = 0; i < NOPTS; i++) {
        const struct cli_opt *r = &opt_table[i];
        if (!(r->cmds & bit)) continue;
        if (name[1] == '-' ? r->name && strcmp(r->name, name) == 0
                           : r->shrt && r->shrt == name[1] && name[2] == 0)
            return r;
    }
    return NULL;
}

int tp__cli_parse_args(struct opts *o, int argc, char **argv) {
    const char *cmd = o->cmd;
    unsigned bit = cmd_bit(cmd);
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
            if (n >= sizeof(name)) return tp__cli_usage_error(cmd, "unknown option '%s'", a);
            memcpy(name, a, n);
            name[n] = 0;
            if (eq) val = eq + 1;
        } else {
            name[0] = '-';
            name[1] = a[1];
            name[2] = 0;
            if (a[2]) val = a + 2;
        }
        const struct cli_opt *r = find_opt(name, bit);
        if (!r) return tp__cli_usage_error(cmd, "unknown option '%s'", a);
        if (r->arg == A_NONE && val)
            return tp__cli_usage_error(cmd, "option '%s' takes no value", name);
        if (r->arg != A_NONE && !val) {
            if (i + 1 >= argc) return tp__cli_usage_error(cmd, "option '%s' needs a value", name);
            val = argv[++i];
        }
        int rc = apply(o, r, val);
        if (rc) return rc;
    }
    return 0;
}
