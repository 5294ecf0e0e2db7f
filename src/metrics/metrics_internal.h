/* SPDX-License-Identifier: MIT */
/* Helpers shared by the metrics module's files (not public). */
#ifndef TP_METRICS_INTERNAL_H
#define TP_METRICS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* Cells per counter/histogram series; a power of two. 16 keeps a counter at
 * 1 KiB while giving 16 threads a line each. */
#define TP__METRICS_SHARDS 16

/* True if s is well-formed UTF-8. */
bool tp__metrics_utf8_valid(const char *s);

/* Format v the Prometheus way (shortest exact decimal, NaN, +Inf, -Inf). */
void tp__metrics_fmt_double(char *out, size_t cap, double v);

#endif
