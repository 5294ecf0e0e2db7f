/* SPDX-License-Identifier: MIT */
/*
 * XXH3 (64 and 128 bit) streaming compiled for AVX2, used when the CPU has
 * it: Debian's libxxhash is built for the SSE2 baseline, which hashes at
 * about half the speed. Same algorithm, same results (the unit test checks
 * both paths against the library). Not concurrent: a state belongs to one
 * task.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

/* GCC only: clang ignores `#pragma GCC target` (xxhash.h then lacks the
 * AVX2 types); a clang build (make fuzz) uses the library's SSE2 code. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

void *tp__xxh3_avx2_new(bool wide) {
    XXH3_state_t *s = XXH3_createState();
    if (s) {
        if (wide)
            XXH3_128bits_reset(s);
        else
            XXH3_64bits_reset(s);
    }
    return s;
}

void tp__xxh3_avx2_update(void *s, bool wide, const void *d, size_t n) {
    if (wide)
        XXH3_128bits_update(s, d, n);
    else
        XXH3_64bits_update(s, d, n);
}

/* Canonical (big-endian) digest: 8 or 16 bytes. */
void tp__xxh3_avx2_digest(void *s, bool wide, unsigned char *out) {
    if (wide) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
        memcpy(out, &c, 16);
    } else {
        XXH64_canonical_t c;
        XXH64_canonicalFromHash(&c, XXH3_64bits_digest(s));
        memcpy(out, &c, 8);
    }
}

void tp__xxh3_avx2_free(void *s) {
    XXH3_freeState(s);
}
#pragma GCC pop_options

bool tp__xxh3_avx2_usable(void) {
    static int have = -1; /* benign race: every thread computes the same value */
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h == 1;
}
#else
bool tp__xxh3_avx2_usable(void) {
    return false;
}
void *tp__xxh3_avx2_new(bool wide) {
    (void)wide;
    return NULL;
}
void tp__xxh3_avx2_update(void *s, bool wide, const void *d, size_t n) {
    (void)s, (void)wide, (void)d, (void)n;
}
void tp__xxh3_avx2_digest(void *s, bool wide, unsigned char *out) {
    (void)s, (void)wide, (void)out;
}
void tp__xxh3_avx2_free(void *s) {
    (void)s;
}
#endif
