/* SPDX-License-Identifier: MIT */
/* Checksum lines as xxhsum writes and reads them, apart from cli/tripool.c
 * so tests/fuzz/sumfile.c runs the same code as `tripool hash` and
 * `tripool hash -c`. Pure functions, no allocation. */
#ifndef TP_CLI_SUMFILE_H
#define TP_CLI_SUMFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tripool/engine.h"

/* One parsed line; path and hex point into the parsed line (not terminated). */
struct tp__sum_line {
    const char *path;
    size_t path_len;
    const char *hex;
    size_t hex_len;
    tp_hash_alg alg;
};

/* Parse one line without its line end: "TAG (path) = hex" (BSD/tag form,
 * TAG one of XXH3 XXH128 XXH64 XXH32 CRC32C) or "hex  path" (GNU form, the
 * algorithm from the digest length: 8 XXH32, 16 XXH64, 32 XXH128). False for
 * anything else. */
bool tp__sum_parse_line(const char *line, struct tp__sum_line *out);

/* "XXH3", "XXH64", ... */
const char *tp__sum_alg_tag(tp_hash_alg a);

/* Write the line `tripool hash` prints for path with digest hex: the tag
 * form if tag or the algorithm has no GNU form (XXH3, CRC32C), else the GNU
 * form; then '\n'. */
void tp__sum_print(FILE *f, tp_hash_alg a, bool tag, const char *hex, const char *path);

#endif
