/* SPDX-License-Identifier: MIT */
/* The command line's number and size parsers, apart so tests/fuzz/parse.c
 * calls the same code as cli/tripool.c. Pure functions; *out is written only
 * when true is returned. */
#ifndef TP_CLI_PARSE_H
#define TP_CLI_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "4M", "512k", "1GiB", "100" -> bytes. Suffixes K M G T (any case, powers
 * of 1024), optionally followed by "iB", "B" or "b"; "B" alone for bytes. */
bool tp__parse_size(const char *s, uint64_t *out);

/* A decimal integer in [lo, hi]. */
bool tp__parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);
bool tp__parse_int(const char *s, int lo, int hi, int *out);

#endif
