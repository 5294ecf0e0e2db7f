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
 * frames are all non-empty and tile the file before the table exactly. Returns 0 or -EINVAL (pairs
 * then partly written). */
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

/* ==== The engine's shared state (engine.c, plan.c, window.c, work.c, the
 * kernels hash.c zstd.c copy.c scan.c, output.c, seek.c). Who may touch
 * what is said at each structure; see the DESIGN block in engine.c. ==== */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include <xxhash.h>
#include <zstd.h>

#include "internal/atomic.h"
#include "tripool/buf.h"
#include "tripool/fd.h"

#define MAX_STREAMS 4
#define BATCH_FILES 16                       /* small files per batch task */
#define BATCH_BYTES ((uint64_t)1 << 20)      /* largest file a batch takes */
#define BATCH_TASK_BYTES ((uint64_t)4 << 20) /* input bytes per batch task */
#define FAST_MAX_WORKERS 8                /* small-file outputs are opened by workers (one each) */
#define PENDING_MAX 512                   /* outputs per batch sync */
#define PENDING_BYTES ((uint64_t)1 << 30) /* output bytes per batch sync */
#define MIN_CHUNK ((size_t)4096)
#define MAX_CHUNK ((size_t)1 << 30)

struct tp_engine {
    tp_engine_opts o;
    tp_ctx *ctx; /* child of opts.ctx, cancelled by tp_engine_cancel */
    tp_pool *pool;
    tp_bufpool *bp;
    tp_fdpool *fp;
    pthread_key_t zkey; /* per worker thread zstd contexts (struct zctx) */
    _Atomic(uint64_t) bytes_in, bytes_out, files_ok, files_failed, chunks;
    _Atomic(uint64_t) mem_now, mem_peak;
    _Atomic(uint64_t) prog_done, prog_total;
};

struct zctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
};

enum { OP_USER = 100 };

/* One input file of a job. Coordinator-only. */
struct efile {
    char *path;
    size_t index;
    uint64_t size;
    mode_t mode;
    int err;
    const char *err_op;
    tp_hash_alg alg;
    char *out;  /* final output path */
    char *tmp;  /* temporary output path while writing */
    int out_fd; /* -1 when none */
    uint64_t nchunks, consumed;
    uint64_t bytes_out, count;
    XXH64_state_t *verify; /* compress --rm: hash of the input, checked on re-read */
    uint32_t crc;
    uint32_t *frames; /* compress: (compressed, decompressed) size pairs */
    size_t nframes, frames_cap;
    bool stream; /* decompress: one task decodes the whole file as a stream */
    unsigned char digest[16];
    size_t digest_len;
    bool pw;         /* output opened at plan time, written by tasks with pwrite */
    bool fast;       /* small file: one chunk in a batch task, output written by the worker */
    uint64_t wb_off; /* output bytes whose writeback was started (sync_file_range) */
    dev_t dev;       /* filesystem of the output */
    struct timespec atime, mtime; /* the source's, given to the output */
    dev_t src_dev;                /* the source as planned: every open must find it */
    ino_t src_ino;
    bool nofollow;    /* found by a walk: opened with O_NOFOLLOW */
    const char *skip; /* not processed, not an error: why (a walk's symlink, device) */
    bool synced;      /* output made durable by a batch sync */
};

/* One unit of work. Coordinator-owned except while its task runs. */
struct echunk {
    struct run *r;
    struct efile *f;
    uint64_t index, off; /* off: input offset */
    size_t len;          /* input bytes */
    size_t dsize;        /* decompress: expected output bytes */
    tp_buf *in, *out;
    size_t mem; /* bytes of in + out, for the window's accounting */
    size_t out_len;
    int err;
    const char *err_op;
    uint32_t crc;
    uint64_t count;
    bool zero;                /* copy: all bytes zero (written as a hole) */
    unsigned char digest[16]; /* hash of a one-chunk file */
    tp_future *fut;
    struct echunk *batch_next; /* small files: the next chunk of this chunk's batch task */
    bool batched;              /* runs inside a batch task (the leader holds the future) */
    bool task;                 /* counts against the window's task cap (a leader or a lone chunk) */
    bool fast;                 /* a whole small file whose output the worker writes itself */
    bool ran;                  /* set by the worker once the chunk was processed (batches) */
    bool zpieces;              /* compress: read in PIECE-sized reads fed to one zstd frame */
    int stream_fd;             /* stream decompress: the output, owned by the file */
    int pw_fd;                 /* framed decompress of a multi-frame file: the output, owned by
                                  the file; the task pwrites at dst_off (order does not matter) */
    uint64_t dst_off;
};

/* A job being run. Coordinator-only, except the read-only fields
 * (e, job, pat, patlen, user_*) that tasks read. */
struct run {
    tp_engine *e;
    const tp_job *job;
    int op;
    const char *pat;
    size_t patlen;
    tp_chunk_fn user_fn;
    void *user_arg;
    struct echunk **win;
    size_t win_cap, head, n;
    size_t task_cap, ntasks;          /* tasks in the window (a batch counts once) */
    struct echunk *batch, *batch_end; /* the batch being filled, not yet submitted */
    size_t batch_files;
    uint64_t batch_bytes;
    unsigned streams;
    int failed;
    struct efile *pending[PENDING_MAX]; /* finished outputs waiting for a batch sync */
    size_t npending;
    uint64_t pending_bytes;
};
/* An input: the path, its argument index and the result of stat. */
struct input {
    char *path;
    size_t index;
    int err;
    struct stat st;
    bool walked;        /* found by a walk (lstat; opened with O_NOFOLLOW) */
    const char *err_op; /* with err: what failed (default "open") */
    const char *skip;   /* not processed: why */
};

struct inputs {
    struct input *v;
    size_t n, cap;
};

/* Hash and newline count stream the chunk through a small buffer
 * (PIECE bytes, stays in cache) instead of holding the whole chunk. */
#define PIECE ((size_t)256 << 10)

/* Buffer pool class (bytes) that a request of n bytes takes. */
static inline size_t class_of(size_t n) {
    size_t c = TP_BUF_MIN_SIZE;
    while (c < n && c < TP_BUF_MAX_SIZE)
        c <<= 1;
    if (n > TP_BUF_MAX_SIZE) /* huge buffers are page-rounded */
        c = (n + 4095) & ~(size_t)4095;
    return c;
}

/* Record c's error (the last call wins; callers stop at
 * the first). Returns err. Worker or coordinator, whoever owns c. */
static inline int chunk_fail(struct echunk *c, int err, const char *op) {
    c->err = err;
    c->err_op = op;
    return err;
}

/* Record f's first error. Coordinator only (and a fast-path worker that
 * owns the file's only chunk). */
static inline void file_fail(struct efile *f, int err, const char *op) {
    if (!f->err) {
        f->err = err;
        f->err_op = op;
    }
}

static inline bool op_writes(int op) {
    return op == TP_OP_COMPRESS || op == TP_OP_DECOMPRESS || op == TP_OP_COPY;
}

/* Operations whose chunks stream through a PIECE buffer (hash.c). */
static inline bool piecewise(const struct run *r) {
    return r->op == TP_OP_HASH || (r->op == TP_OP_COUNT && !r->pat);
}

static inline void mem_add(tp_engine *e, size_t n) {
    uint64_t now = tp__add_relaxed(&e->mem_now, n) + n;
    tp__max_relaxed(&e->mem_peak, now);
}

/* ---- planning (plan.c) ---- */
/* Stat every path (walking directories with job->recursive) into *in. */
int tp__plan_inputs(struct run *r, struct inputs *in, const char *const *paths, size_t npaths);
void tp__inputs_free(struct inputs *in);
/* Remove temps killed earlier runs left for this job's outputs. */
void tp__sweep_stale_tmps(struct run *r, const struct inputs *in);
/* Plan one input into chunks and push them into the window. */
int tp__plan_file(struct run *r, const struct input *x);
/* seek.c: plan f's frames from its seek table; false = decode as a stream. */
bool tp__plan_frames(struct run *r, struct efile *f, uint64_t **pairs, size_t *nframes);

/* ---- the window (window.c) ---- */
int tp__get_buf(struct run *r, size_t n, tp_buf **out);
void tp__batch_submit(struct run *r);
void tp__consume_head(struct run *r);
void tp__push_chunk(struct run *r, struct echunk *c);

/* ---- work (work.c), run on a worker ---- */
int tp__src_acquire(tp_engine *e, const struct efile *f, tp_fd **h);
int tp__chunk_task(void *arg);
int tp__batch_task(void *arg);

/* ---- kernels, run on a worker: each fills c's result or calls chunk_fail ---- */
void tp__digest_of_chunk(struct echunk *c, tp_hash_alg alg, unsigned char *out); /* hash.c */
int tp__chunk_pieces(struct echunk *c, tp_fd *h);                                /* hash.c */
int tp__chunk_count_matches(struct echunk *c, tp_fd *h);                         /* scan.c */
int tp__chunk_copy_in_place(struct echunk *c, tp_fd *h);                         /* copy.c */
void tp__chunk_copy_scan(struct echunk *c);                                      /* copy.c */
int tp__chunk_stream_decompress(struct echunk *c, tp_fd *h, struct zctx *z);     /* zstd.c */
int tp__chunk_compress_pieces(struct echunk *c, tp_fd *h, struct zctx *z);       /* zstd.c */
int tp__chunk_compress(struct echunk *c, struct zctx *z);                        /* zstd.c */
int tp__chunk_decompress(struct echunk *c, struct zctx *z);                      /* zstd.c */
int tp__verify_zst(const char *path, XXH64_hash_t want);                         /* zstd.c */

/* ---- output (output.c) ---- */
int tp__open_tmp(struct efile *f);
void tp__finish_meta(struct efile *f, int fd);
int tp__write_all(int fd, const void *p, size_t n);
int tp__open_retry(const char *path, int flags);
void tp__file_free(struct efile *f);
int tp__fast_output(struct echunk *c); /* on a worker: the fast path's whole output */
void tp__apply(struct run *r, struct echunk *c);
void tp__flush_pending(struct run *r);

#endif
