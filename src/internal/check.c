/* SPDX-License-Identifier: MIT */
/* The failure path of TP__CHECK / TP__FAIL / TP__DEBUG_ASSERT (check.h). */
#include "internal/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void tp__check_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tripool: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}
