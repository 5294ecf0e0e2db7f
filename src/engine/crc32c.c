/* SPDX-License-Identifier: MIT */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and xor-out
 * ~0): the SSE4.2 crc32 instruction when the CPU has it, a slicing-by-8
 * table otherwise, and an exact combine so chunks hashed in parallel give
 * the CRC of the whole file.
 *
 * Combine: appending len2 bytes to a message multiplies its CRC register by
 * x^(8*len2) modulo P in GF(2). With the pre/post inversion of CRC-32C the
 * relation crc(A||B) = crc(A) * x^(8|B|) mod P  xor  crc(B) still holds,
 * so tp_crc32c_combine needs only a polynomial product and x^(8n) mod P,
 * which comes from a table of x^(2^k) mod P in O(log n) products.
 *
 * Not concurrent: the tables are built once under pthread_once.
 */
#include <pthread.h>
#include <string.h>

#include "tripool/engine.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static uint32_t x2n_table[32]; /* x^(2^k) mod P, reflected */
static bool have_sse42;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a * b mod P, both reflected (bit 31 is the x^0 coefficient). */
static uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

/* x^(n * 2^k) mod P. */
static uint32_t x2nmodp(uint64_t n, unsigned k) {
    uint32_t p = 1u << 31; /* x^0 */
    while (n) {
        if (n & 1) p = multmodp(x2n_table[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    uint32_t p = 1u << 30; /* x^1 */
    x2n_table[0] = p;
    for (int k = 1; k < 32; k++)
        x2n_table[k] = p = multmodp(p, p);
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c; /* little-endian hosts; see the big-endian guard below */
        c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
            crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
            crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
            crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p,
                                                         size_t n) {
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        n--;
    }
    /* Three independent streams hide the instruction's 3-cycle latency; the
     * partial CRCs are joined with the same combine used across chunks. */
    if (n >= 3 * 4096) {
        size_t blk = (n / 3) & ~(size_t)7;
        const unsigned char *p1 = p + blk, *p2 = p + 2 * blk;
        uint64_t c1 = 0xffffffffu, c2 = 0xffffffffu;
        for (size_t i = 0; i < blk; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p1 + i, 8);
            memcpy(&w2, p2 + i, 8);
            c64 = _mm_crc32_u64(c64, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        /* c64 is a raw register; c1, c2 started at ~0 like a fresh CRC. */
        uint32_t shift = x2nmodp(blk, 3);
        c64 = multmodp(shift, (uint32_t)c64) ^ (uint32_t)c1 ^ multmodp(shift, 0xffffffffu);
        c64 = multmodp(shift, (uint32_t)c64) ^ (uint32_t)c2 ^ multmodp(shift, 0xffffffffu);
        p += 3 * blk;
        n -= 3 * blk;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    return (uint32_t)c64;
}
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "crc32c.c: the slicing table path assumes a little-endian host"
#endif

uint32_t tp_crc32c(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    if (!data) return crc;
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (have_sse42) return ~crc_hw(c, data, len);
#endif
    return ~crc_sw(c, data, len);
}

uint32_t tp_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2) {
    pthread_once(&crc_once, crc_init);
    return multmodp(x2nmodp(len2, 3), crc1) ^ crc2;
}
