/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the command line's size and number parsers (cli/parse.c),
 * used for --chunk, --max-mem, -j, --max-open and -l. The input (up to its
 * first NUL) is one argument. Invariant: each parser accepts exactly what a
 * reference written here accepts, with the value the reference computes in
 * 128-bit arithmetic: a size is decimal digits, an optional K/M/G/T (any
 * case; then optionally "iB", "B" or "b") or a lone "B", below 2^64; a
 * number is decimal digits (with a '-' first for the signed parser) within
 * the range. No blanks, no '+', nothing after the number.
 *
 * TP_TEST_TIMEOUT: 30
 */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "../../cli/parse.h"
#include "fuzz.h"

typedef unsigned __int128 u128;

/* Digits at *s (at least one): the value saturated at 2^64 + 1. */
static bool ref_digits(const char **s, u128 *v) {
    const char *p = *s;
    u128 x = 0;
    while (*p >= '0' && *p <= '9') {
        x = x * 10 + (u128)(*p - '0');
        if (x > (u128)UINT64_MAX + 1) x = (u128)UINT64_MAX + 1;
        p++;
    }
    if (p == *s) return false;
    *s = p;
    *v = x;
    return true;
}

static bool ref_size(const char *s, uint64_t *out) {
    u128 v;
    if (!ref_digits(&s, &v)) return false;
    unsigned shift = 0;
    const char *units = "kKmMgGtT";
    const char *u = *s ? strchr(units, *s) : NULL;
    if (u) {
        shift = 10 * (unsigned)(1 + (u - units) / 2);
        s++;
        if (strcmp(s, "iB") == 0 || strcmp(s, "B") == 0 || strcmp(s, "b") == 0) s += strlen(s);
    } else if (strcmp(s, "B") == 0) {
        s++;
    }
    if (*s) return false;
    if (v > UINT64_MAX) return false;
    u128 r = v << shift;
    if (r > UINT64_MAX) return false;
    *out = (uint64_t)r;
    return true;
}

static bool ref_int(const char *s, bool sign, __int128 lo, __int128 hi, __int128 *out) {
    bool neg = sign && *s == '-';
    if (neg) s++;
    u128 v;
    if (!ref_digits(&s, &v) || *s) return false;
    __int128 x = neg ? -(__int128)v : (__int128)v;
    if (x < lo || x > hi) return false;
    *out = x;
    return true;
}

static void check_uint(const char *s, unsigned lo, unsigned hi) {
    unsigned got = 12345;
    __int128 want = 0;
    bool ok = tp__parse_uint(s, lo, hi, &got), rok = ref_int(s, false, lo, hi, &want);
    FUZZ_CHECK(ok == rok, "parse_uint('%s', %u, %u) %s, reference %s", s, lo, hi,
               ok ? "accepts" : "rejects", rok ? "accepts" : "rejects");
    if (ok)
        FUZZ_CHECK(got == (unsigned)want, "parse_uint('%s') = %u, reference %u", s, got,
                   (unsigned)want);
}

static void check_int(const char *s, int lo, int hi) {
    int got = 12345;
    __int128 want = 0;
    bool ok = tp__parse_int(s, lo, hi, &got), rok = ref_int(s, true, lo, hi, &want);
    FUZZ_CHECK(ok == rok, "parse_int('%s', %d, %d) %s, reference %s", s, lo, hi,
               ok ? "accepts" : "rejects", rok ? "accepts" : "rejects");
    if (ok) FUZZ_CHECK(got == (int)want, "parse_int('%s') = %d, reference %d", s, got, (int)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;

    uint64_t got = 12345, want = 0;
    bool ok = tp__parse_size(s, &got), rok = ref_size(s, &want);
    FUZZ_CHECK(ok == rok, "parse_size('%s') %s, reference %s", s, ok ? "accepts" : "rejects",
               rok ? "accepts" : "rejects");
    if (ok)
        FUZZ_CHECK(got == want, "parse_size('%s') = %llu, reference %llu", s,
                   (unsigned long long)got, (unsigned long long)want);

    check_uint(s, 1, 4096);    /* -j */
    check_uint(s, 1, 1000000); /* --max-open */
    check_uint(s, 0, UINT_MAX);
    check_int(s, -131072, 22); /* -l */
    check_int(s, INT_MIN, INT_MAX);
    free(s);
    return 0;
}
