/* SPDX-License-Identifier: MIT */
/*
 * What the command's files share: the parsed options (struct opts, filled
 * by cli/args.c), the checklist of `hash -c` (cli/check.c), the signal and
 * progress threads (cli/signals.c). cli/tripool.c holds main and the run.
 * Internal to the command: nothing here is part of the library.
 */
#ifndef TP_CLI_CLI_H
#define TP_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tripool.h"
#include "tripool/engine.h"

#define EXIT_USAGE 2

extern const char *const tp__cli_prog; /* "tripool": the prefix of every message */

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

/* ---- cli/args.c: argument parsing and help ---- */

/* Is cmd one of the commands that run a job (hash compress decompress cp count)? */
bool tp__cli_known_cmd(const char *cmd);
/* The top-level usage on f; returns 2 for stderr, 0 for stdout. */
int tp__cli_usage(FILE *f);
/* `tripool --help-man`: the OPTIONS section of docs/tripool.1, from the
 * option table. */
void tp__cli_help_man(FILE *f);
/* "tripool CMD: <fmt with arg>" and the --help hint on stderr; returns 2. */
int tp__cli_usage_error(const char *cmd, const char *fmt, const char *arg);
/* Parse argv after the command into o (o->cmd set, the rest defaulted).
 * Returns 0, an exit code (1 out of memory, 2 usage error), or -1 when
 * --help was printed. o->paths is allocated (free it) whatever it returns. */
int tp__cli_parse_args(struct opts *o, int argc, char **argv);

/* ---- cli/check.c: hash -c ---- */

struct checklist {
    char **paths;
    char **expect;  /* per entry: the expected hex digest */
    char **sumfile; /* per entry: the sum file it came from (argv, not owned) */
    unsigned *line; /* per entry: its line in that file */
    tp_hash_alg *algs;
    size_t n, cap;
    unsigned bad_lines;
    unsigned mismatched, unreadable; /* counted by tp__cli_check_result */
};

/* Read every sum file of o->paths into c. Returns 0, or 1 if some could not
 * be read or had no valid line (reported on stderr). Exits 1 out of memory. */
int tp__cli_check_read(struct checklist *c, const struct opts *o);
/* Print the verdict for one verified file (OK / FAILED / unreadable). */
void tp__cli_check_result(struct checklist *c, const struct opts *o, const tp_file_result *r);
/* Print the summary lines ("N computed checksums did NOT match", ...) and
 * return the exit code for code (the run's code without hash -c). */
int tp__cli_check_finish(const struct checklist *c, const struct opts *o, int code);
void tp__cli_check_free(struct checklist *c);

/* errno text as the standard tools print it; tripool's own codes otherwise. */
const char *tp__cli_errtext(int err);
void tp__cli_hex(const unsigned char *d, size_t n, char *out);

/* ---- cli/signals.c: signals and the progress bar ---- */

/* Block SIGINT, SIGTERM and SIGUSR1 in the calling thread and so in every
 * thread it starts; call before any thread exists. */
void tp__cli_block_signals(void);
/* Start the signal thread for engine e. 0, or the pthread_create error. */
int tp__cli_signals_start(tp_engine *e);
/* The signal thread no longer sees the engine (call before destroying it). */
void tp__cli_signals_retire(void);
/* Join the signal thread (after tp__cli_signals_start succeeded). */
void tp__cli_signals_stop(void);
/* The signal that cancelled the job (SIGINT, SIGTERM) or 0. */
int tp__cli_interrupted(void);
/* Start the progress thread for e. 0, or the pthread_create error. */
int tp__cli_progress_start(tp_engine *e);
/* Stop and join it (after tp__cli_progress_start succeeded). */
void tp__cli_progress_stop(void);

#endif
