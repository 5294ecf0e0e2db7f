/* SPDX-License-Identifier: MIT */
/* Internal pieces of the engine shared by its files and unit tests. */
#ifndef TP_ENGINE_INTERNAL_H
#define TP_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tripool/engine.h"

/* The zstd seekable-format seek table (a skippable frame at the end of a
 * multi-frame file; `zstd -d` skips it): per frame its compressed and
 * decompressed size, then a 9-byte footer. */
#define TP__SEEK_SKIPPABLE_MAGIC 0x184D2A5Eu
#define TP__SEEK_FOOTER_MAGIC 0x8F92EAB1u
#define TP__SEEK_FOOTER_SIZE 9
#define TP__SEEK_ENTRY_SIZE 8

/* Bytes of the seek table for n frames (frame header included). */
size_t tp__seek_table_size(size_t nframes);

/* Write the table for n frames (sizes[2*i] = compressed, [2*i+1] =
 * decompressed) into out (tp__seek_table_size(n) bytes). */
void tp__seek_table_write(unsigned char *out, const uint32_t *sizes, size_t nframes);

/* Parse a footer (the last 9 bytes of a file). Returns the number of frames
 * (>= 0) and sets *checksums, or -EINVAL when it is not a seek table footer. */
long tp__seek_footer_parse(const unsigned char *footer, int *checksums);

/* Where the seek table of a file of file_size bytes is, from its footer
 * (the last 9 bytes): the table, from its skippable-frame header to the
 * footer, is table_len bytes at offset table_start. Returns the number of
 * frames (> 0) and sets *checksums, or -EINVAL. */
long tp__seek_table_locate(const unsigned char *footer, uint64_t file_size, int *checksums,
                           uint64_t *table_start, size_t *table_len);

/* Check the table t (the table_len bytes located above for n frames) and
 * fill pairs[2*i] = compressed, pairs[2*i+1] = decompressed size of frame i.
 * Accepts only a table whose skippable-frame size is the table's and whose
 * frames are all non-empty and tile the file before the table exactly. Returns 0 or -EINVAL (pairs then partly
 * written). */
int tp__seek_table_parse(const unsigned char *t, long n, int checksums, uint64_t table_start,
                         uint64_t *pairs);

/* Input bytes per compressed chunk such that ZSTD_compressBound of it fits
 * a buffer of chunk bytes. */
size_t tp__compress_input_len(size_t chunk);

/* Number of lines of data[0..len) containing pat (a fixed string without
 * '\n'); an unterminated last line counts. patlen 0 matches every line. */
uint64_t tp__count_matches(const char *data, size_t len, const char *pat, size_t patlen);

/* XXH3 streaming built for AVX2 (xxh3_avx2.c); only when usable() says so.
 * wide = 128-bit. digest writes 8 or 16 canonical bytes. */
bool tp__xxh3_avx2_usable(void);
void *tp__xxh3_avx2_new(bool wide);
void tp__xxh3_avx2_update(void *s, bool wide, const void *d, size_t n);
void tp__xxh3_avx2_digest(void *s, bool wide, unsigned char *out);
void tp__xxh3_avx2_free(void *s);

/* Temporary outputs (tmpfile.c): ".base.tp.PID.XXXXXX" beside "dir/base". */
#include <sys/types.h>

/* Create a new temp for out with O_EXCL (retrying on EEXIST and EINTR);
 * sets *tmp (malloc'ed name) and *fd. Returns 0 or -errno. */
int tp__tmp_create(const char *out, mode_t mode, char **tmp, int *fd);

/* Whether name (a file name, no directory) is a temp name; sets the length
 * of the base it stands for (after the leading '.') and the writer's pid. */
bool tp__tmp_parse(const char *name, size_t *baselen, long *pid);

/* Remove the temps of outs[0..n) left by writers that are no longer
 * running (see tmpfile.c). NULL entries are skipped. Returns how many. */
size_t tp__tmp_sweep(const char *const *outs, size_t n);

#endif
