/* SPDX-License-Identifier: MIT */
/*
 * Argument parsing and help: owns the help texts, the option parser
 * (argv after the command -> struct opts) and the usage-error format. Pure
 * except for printing help and usage errors; starts nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "parse.h"

#define prog tp__cli_prog

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
    "2 usage error, 130 interrupted (143 by SIGTERM). SIGUSR1 dumps the worker pool\n"
    "to stderr.\n";

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

int tp__cli_usage(FILE *f) {
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
    return tp__cli_usage(f);
}

int tp__cli_usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'tripool %s --help'.\n", cmd);
    return EXIT_USAGE;
}

bool tp__cli_known_cmd(const char *cmd) {
    static const char *const cmds[] = {"hash", "compress", "decompress", "cp", "count"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmd, cmds[i]) == 0) return true;
    return false;
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

/* Parse argv after the command. Returns 0 or an exit code (2, or -1 for
 * --help printed). */
int tp__cli_parse_args(struct opts *o, int argc, char **argv) {
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
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (!val) {                                                                                \
            if (i + 1 >= argc) return tp__cli_usage_error(cmd, "option '%s' needs a value", name); \
            val = argv[++i];                                                                       \
        }                                                                                          \
    } while (0)
#define NO_VAL()                                                                                   \
    do {                                                                                           \
        if (val) return tp__cli_usage_error(cmd, "option '%s' takes no value", name);              \
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
                return tp__cli_usage_error(cmd, "bad -j value '%s' (1..4096)", val);
        } else if (strcmp(name, "--chunk") == 0) {
            NEED_VAL();
            if (!tp__parse_size(val, &sz) || sz < 4096 || sz > ((uint64_t)1 << 30))
                return tp__cli_usage_error(cmd, "bad --chunk size '%s' (4K..1G)", val);
            o->eo.chunk_size = (size_t)sz;
        } else if (strcmp(name, "--max-mem") == 0) {
            NEED_VAL();
            if (!tp__parse_size(val, &sz) || sz < 65536 || sz > SIZE_MAX / 2)
                return tp__cli_usage_error(cmd, "bad --max-mem size '%s'", val);
            o->eo.max_mem = (size_t)sz;
        } else if (strcmp(name, "--max-open") == 0) {
            NEED_VAL();
            if (!tp__parse_uint(val, 1, 1000000, &o->eo.max_open))
                return tp__cli_usage_error(cmd, "bad --max-open value '%s'", val);
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
                return tp__cli_usage_error(cmd, "unknown algorithm '%s'", val);
        } else if (is_hash && strcmp(name, "-H") == 0) {
            NEED_VAL();
            if (!parse_alg(val, &o->job.alg))
                return tp__cli_usage_error(cmd, "unknown algorithm '%s'", val);
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
                return tp__cli_usage_error(cmd, "bad level '%s' (1..22, or negative for fast)",
                                           val);
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
                return tp__cli_usage_error(cmd, "PATTERN must not contain a newline%s", "");
            o->job.pattern = val;
        } else {
            return tp__cli_usage_error(cmd, "unknown option '%s'", a);
        }
#undef NEED_VAL
#undef NO_VAL
    }
    return 0;
}
