/* SPDX-License-Identifier: MIT */
/*
 * The zstd seekable format's seek table, which tripool appends to files it
 * compresses in several independent frames, so `tripool decompress` can
 * split the work by frame. It is a skippable frame, so every zstd decoder
 * ignores it. Layout (little endian):
 *   u32 0x184D2A5E, u32 size of the rest,
 *   n x { u32 compressed size, u32 decompressed size },
 *   u32 n, u8 descriptor (bit 7: entries carry a checksum; we write 0),
 *   u32 0x8F92EAB1.
 * Not concurrent: pure functions; tp__plan_frames (the frame plan of a
 * file to decompress, from its table) runs on the coordinator.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine/engine_internal.h"
#include <zstd.h>

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t tp__seek_table_size(size_t nframes) {
    return 8 + nframes * TP__SEEK_ENTRY_SIZE + TP__SEEK_FOOTER_SIZE;
}

void tp__seek_table_write(unsigned char *out, const uint32_t *sizes, size_t nframes) {
    put32(out, TP__SEEK_SKIPPABLE_MAGIC);
    put32(out + 4, (uint32_t)(tp__seek_table_size(nframes) - 8));
    unsigned char *p = out + 8;
    for (size_t i = 0; i < nframes; i++, p += 8) {
        put32(p, sizes[2 * i]);
        put32(p + 4, sizes[2 * i + 1]);
    }
    put32(p, (uint32_t)nframes);
    p[4] = 0;
    put32(p + 5, TP__SEEK_FOOTER_MAGIC);
}

long tp__seek_footer_parse(const unsigned char *f, int *checksums) {
    if (get32(f + 5) != TP__SEEK_FOOTER_MAGIC) return -EINVAL;
    if (f[4] & 0x7c) /* reserved bits must be zero */
        return -EINVAL;
    *checksums = (f[4] & 0x80) != 0;
    return (long)get32(f);
}

long tp__seek_table_locate(const unsigned char *footer, uint64_t file_size, int *checksums,
                           uint64_t *table_start, size_t *table_len) {
    int sums = 0;
    long n = tp__seek_footer_parse(footer, &sums);
    size_t esz = TP__SEEK_ENTRY_SIZE + (sums ? 4 : 0);
    if (n <= 0 || (uint64_t)n > file_size / esz) return -EINVAL;
    size_t tsz = (size_t)n * esz;
    /* header + entries + footer must fit: file_size - footer - tsz would wrap */
    if (file_size < TP__SEEK_FOOTER_SIZE + 8 || tsz > file_size - TP__SEEK_FOOTER_SIZE - 8)
        return -EINVAL;
    uint64_t entries_off = file_size - TP__SEEK_FOOTER_SIZE - tsz;
    *checksums = sums;
    *table_start = entries_off - 8;
    *table_len = tsz + 8;
    return n;
}

int tp__seek_table_parse(const unsigned char *t, long n, int checksums, uint64_t table_start,
                         uint64_t *pairs) {
    size_t esz = TP__SEEK_ENTRY_SIZE + (checksums ? 4 : 0);
    if (get32(t) != TP__SEEK_SKIPPABLE_MAGIC) return -EINVAL;
    /* The skippable frame's size must be the table's: zstd -d skips that
     * many bytes, and would fail on a file we decoded. */
    if (get32(t + 4) != (uint64_t)n * esz + TP__SEEK_FOOTER_SIZE) return -EINVAL;
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        const unsigned char *q = t + 8 + (size_t)i * esz;
        pairs[2 * i] = get32(q);
        pairs[2 * i + 1] = get32(q + 4);
        if (pairs[2 * i] == 0) return -EINVAL;
        sum += pairs[2 * i];
    }
    return sum == table_start ? 0 : -EINVAL;
}

size_t tp__compress_input_len(size_t chunk) {
    size_t l = chunk - (chunk >> 8) - 128;
    while (l > 1 && ZSTD_COMPRESSBOUND(l) > chunk)
        l -= 64;
    return l;
}

/* Plan decompression of f from its seek table; false = decode as a stream. */
bool tp__plan_frames(struct run *r, struct efile *f, uint64_t **pairs, size_t *nframes) {
    tp_fd *h = NULL;
    *pairs = NULL;
    *nframes = 0;
    if (f->size < TP__SEEK_FOOTER_SIZE + 8) return false;
    if (tp__src_acquire(r->e, f, &h) != 0) return false; /* the stream path reports it */
    bool ok = false;
    unsigned char foot[TP__SEEK_FOOTER_SIZE];
    int sums = 0;
    long n = -1;
    uint64_t tstart = 0;
    size_t tlen = 0;
    if (tp_fd_pread(h, foot, sizeof(foot), f->size - sizeof(foot)) == (ssize_t)sizeof(foot))
        n = tp__seek_table_locate(foot, f->size, &sums, &tstart, &tlen);
    if (n <= 0) goto out;
    unsigned char *t = malloc(tlen);
    uint64_t *p = malloc((size_t)n * 2 * sizeof(uint64_t));
    if (!t || !p) {
        free(t);
        free(p);
        goto out;
    }
    size_t maxpair = (r->e->o.max_mem / 2);
    if (tp_fd_pread(h, t, tlen, tstart) == (ssize_t)tlen) {
        ok = tp__seek_table_parse(t, n, sums, tstart, p) == 0;
        for (long i = 0; ok && i < n; i++)
            if (class_of(p[2 * i]) + class_of(p[2 * i + 1]) > maxpair)
                ok = false; /* too big for the memory bound: decode as a stream */
    }
    free(t);
    if (ok) {
        *pairs = p;
        *nframes = (size_t)n;
    } else {
        free(p);
    }
out:
    tp_fd_release(r->e->fp, h);
    return ok;
}
