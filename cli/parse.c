/* SPDX-License-Identifier: MIT */
/* Number and size parsing for the command line (see parse.h). */
#include "parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* strtoull and strtol skip blanks and take a sign (strtoull then negates
 * into a huge value: " -18446744073709486080" was 65536): a number here
 * starts with a digit, or '-' and a digit where negatives are allowed. */
bool tp__parse_size(const char *s, uint64_t *out) {
    if (!s || !is_digit(*s)) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    case '\0':
    case 'B': /* bytes: "4096B" (checked below) */
        break;
    default:
        return false;
    }
    if (shift) {
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0 || strcmp(end, "b") == 0)
            end += strlen(end);
    } else if (strcmp(end, "B") == 0) {
        end++;
    }
    if (*end) return false;
    if (shift && v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

bool tp__parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
    if (!s || !is_digit(*s)) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < (long)lo || v > (long)hi) return false;
    *out = (unsigned)v;
    return true;
}

bool tp__parse_int(const char *s, int lo, int hi, int *out) {
    if (!s || !is_digit(*s == '-' ? s[1] : *s)) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}
