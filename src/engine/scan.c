/* SPDX-License-Identifier: MIT */
/*
 * Byte scanning for `count`: newlines (SSE2 compare + popcount; AVX2 when the
 * CPU has it) and lines containing a fixed string. Not concurrent: pure
 * functions on caller memory. Also the count kernel with a pattern
 * (tp__chunk_count_matches), run on a worker: it touches only its chunk
 * and reads on from the file to complete a line that runs past the chunk.
 */
#include <stdlib.h>
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

/* Lines containing the pattern that start in this chunk; a line that runs
 * past the chunk's end is completed by reading on from the file. */
int tp__chunk_count_matches(struct echunk *c, tp_fd *h) {
    struct run *r = c->r;
    const char *d = (const char *)c->in->data;
    size_t start = 0, len = c->len;
    if (c->off > 0) {
        char prev;
        ssize_t n = tp_fd_pread(h, &prev, 1, c->off - 1);
        if (n != 1) return chunk_fail(c, n < 0 ? (int)n : -EIO, "read");
        if (prev != '\n') { /* our first bytes end a line owned by the previous chunk */
            const char *nl = memchr(d, '\n', len);
            start = nl ? (size_t)(nl - d) + 1 : len;
        }
    }
    const char *reg = d + start;
    size_t rlen = len - start;
    const char *last = rlen ? memrchr(reg, '\n', rlen) : NULL;
    size_t full = last ? (size_t)(last - reg) + 1 : 0;
    c->count = tp__count_matches(reg, full, r->pat, r->patlen);
    size_t tail = rlen - full;
    if (tail == 0) return 0;
    if (c->off + len >= c->f->size) { /* last line of the file, unterminated */
        c->count += tp__count_matches(reg + full, tail, r->pat, r->patlen) ? 1 : 0;
        return 0;
    }
    /* Complete the line: copy what we have, read on until '\n' or EOF. */
    size_t cap = tail + 65536, have = tail;
    char *line = malloc(cap);
    if (!line) return chunk_fail(c, -ENOMEM, "count");
    memcpy(line, reg + full, tail);
    uint64_t pos = c->off + len;
    for (;;) {
        if (cap - have < 65536) {
            char *nl = realloc(line, cap * 2);
            if (!nl) {
                free(line);
                return chunk_fail(c, -ENOMEM, "count");
            }
            line = nl;
            cap *= 2;
        }
        ssize_t n = tp_fd_pread(h, line + have, 65536, pos);
        if (n < 0) {
            free(line);
            return chunk_fail(c, (int)n, "read");
        }
        char *nl = n ? memchr(line + have, '\n', (size_t)n) : NULL;
        if (nl) {
            have = (size_t)(nl - line);
            break;
        }
        have += (size_t)n;
        pos += (uint64_t)n;
        if (n == 0) break;
    }
    c->count += tp__count_matches(line, have, r->pat, r->patlen) ? 1 : 0;
    free(line);
    return 0;
}
