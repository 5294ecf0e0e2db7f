/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the seek table of tripool's multi-frame .zst files
 * (src/engine/seek.c), which `tripool decompress` uses to split a file into
 * frames decoded in parallel. The input is a whole file; the target does
 * what the engine's plan_frames() does with the same functions. Invariants:
 * a located table lies inside the file and ends at its footer; an accepted
 * table is consistent: its skippable-frame header is the magic and the size
 * of the rest of the table, every frame is non-empty and the frames are
 * increasing offsets that tile the bytes before the table exactly (each one
 * inside the file); and what tripool writes for the accepted sizes is the
 * very table read.
 *
 * TP_TEST_TIMEOUT: 30
 */
#include <string.h>

#include "engine/engine_internal.h"
#include "fuzz.h"

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < TP__SEEK_FOOTER_SIZE + 8) return 0; /* plan_frames: too small for a table */
    int sums = -1;
    uint64_t tstart = 0;
    size_t tlen = 0;
    long n = tp__seek_table_locate(data + size - TP__SEEK_FOOTER_SIZE, size, &sums, &tstart, &tlen);
    if (n <= 0) return 0;
    FUZZ_CHECK(sums == 0 || sums == 1, "checksum flag %d", sums);
    FUZZ_CHECK(tstart <= size && tlen <= size - tstart &&
                   tstart + tlen + TP__SEEK_FOOTER_SIZE == size,
               "table at %llu+%zu is not inside a file of %zu bytes ending at its footer",
               (unsigned long long)tstart, tlen, size);
    size_t esz = TP__SEEK_ENTRY_SIZE + (sums ? 4 : 0);
    FUZZ_CHECK(tlen == 8 + (size_t)n * esz, "table of %zu bytes for %ld entries", tlen, n);

    uint64_t *pairs = malloc((size_t)n * 2 * sizeof(uint64_t));
    if (!pairs) return 0;
    const unsigned char *t = data + tstart;
    if (tp__seek_table_parse(t, n, sums, tstart, pairs) == 0) {
        FUZZ_CHECK(get32(t) == TP__SEEK_SKIPPABLE_MAGIC, "accepted without the skippable magic");
        FUZZ_CHECK(get32(t + 4) == tlen - 8 + TP__SEEK_FOOTER_SIZE,
                   "accepted a skippable frame of %u bytes holding a %zu-byte table", get32(t + 4),
                   tlen - 8 + TP__SEEK_FOOTER_SIZE);
        uint64_t off = 0;
        for (long i = 0; i < n; i++) {
            uint64_t cs = pairs[2 * i], ds = pairs[2 * i + 1];
            FUZZ_CHECK(cs > 0, "frame %ld is empty", i);
            FUZZ_CHECK(cs <= UINT32_MAX && ds <= UINT32_MAX, "frame %ld sizes not 32-bit", i);
            FUZZ_CHECK(off + cs > off && off + cs <= tstart,
                       "frame %ld at %llu+%llu past the table", i, (unsigned long long)off,
                       (unsigned long long)cs);
            off += cs;
        }
        FUZZ_CHECK(off == tstart, "frames end at %llu, table at %llu", (unsigned long long)off,
                   (unsigned long long)tstart);
        if (!sums) { /* tripool writes this form: writing the sizes back gives the table */
            uint32_t *sz = malloc((size_t)n * 2 * sizeof(uint32_t));
            unsigned char *w = malloc(tp__seek_table_size((size_t)n));
            if (sz && w) {
                for (long i = 0; i < 2 * n; i++)
                    sz[i] = (uint32_t)pairs[i];
                FUZZ_CHECK(tp__seek_table_size((size_t)n) == tlen + TP__SEEK_FOOTER_SIZE,
                           "table size for %ld frames", n);
                tp__seek_table_write(w, sz, (size_t)n);
                /* all but the descriptor byte, whose low two bits are unused */
                FUZZ_CHECK(memcmp(w, t, tlen + 4) == 0 &&
                               memcmp(w + tlen + 5, t + tlen + 5, 4) == 0,
                           "the accepted table is not what tripool writes for its sizes");
            }
            free(sz);
            free(w);
        }
    }
    free(pairs);
    return 0;
}
