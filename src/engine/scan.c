/* SPDX-License-Identifier: MIT */
/*
 * Byte scanning for `count`: newlines (SSE2 compare + popcount; AVX2 when the
 * CPU has it) and lines containing a fixed string. Not concurrent: pure
 * functions on caller memory.
 */
#include <string.h>

#include "engine/engine_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2"))) static uint64_t nl_avx2(const unsigned char *p, size_t n) {
    uint64_t c = 0;
    const __m256i nl = _mm256_set1_epi8('\n');
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        __m256i d = _mm256_loadu_si256((const __m256i *)(p + i + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(p + i + 96));
        c += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, nl)));
        c += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, nl)));
        c += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(d, nl)));
        c += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(e, nl)));
    }
    for (; i < n; i++)
        c += p[i] == '\n';
    return c;
}

static uint64_t nl_sse2(const unsigned char *p, size_t n) {
    uint64_t c = 0;
    const __m128i nl = _mm_set1_epi8('\n');
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        unsigned m0 = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl));
        unsigned m1 = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 16)), nl));
        unsigned m2 = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 32)), nl));
        unsigned m3 = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 48)), nl));
        c += (uint64_t)__builtin_popcountll((uint64_t)m0 | (uint64_t)m1 << 16 | (uint64_t)m2 << 32 |
                                            (uint64_t)m3 << 48);
    }
    for (; i < n; i++)
        c += p[i] == '\n';
    return c;
}
#endif

uint64_t tp_count_newlines(const void *data, size_t len) {
    const unsigned char *p = data;
    if (!p) return 0;
#if defined(__x86_64__)
    static int have_avx2 = -1; /* benign race: every thread computes the same value */
    int h = __atomic_load_n(&have_avx2, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&have_avx2, h, __ATOMIC_RELAXED);
    }
    return h ? nl_avx2(p, len) : nl_sse2(p, len);
#else
    uint64_t c = 0;
    for (const unsigned char *e = p + len; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        c++;
    return c;
#endif
}

uint64_t tp__count_matches(const char *data, size_t len, const char *pat, size_t patlen) {
    uint64_t c = 0;
    const char *p = data, *end = data + len;
    if (patlen == 0) { /* every line matches, including an unterminated last one */
        c = tp_count_newlines(data, len);
        if (len && data[len - 1] != '\n') c++;
        return c;
    }
    while ((size_t)(end - p) >= patlen) {
        const char *m = memmem(p, (size_t)(end - p), pat, patlen);
        if (!m) break;
        c++;
        const char *nl = memchr(m + patlen, '\n', (size_t)(end - m - (ptrdiff_t)patlen));
        if (!nl) break;
        p = nl + 1;
    }
    return c;
}
