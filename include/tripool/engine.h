/* SPDX-License-Identifier: MIT */
/*
 * tripool/engine.h - the chunked file engine: the three pools doing real
 * work on big files and on trees of many files.
 *
 * An engine owns a task pool (workers), a buffer pool (memory) and a file
 * handle pool (descriptors) and runs jobs over lists of files:
 *
 *   reader     chunk k of a file is read with pread at k * chunk_size by a
 *              worker, into a buffer taken from the buffer pool
 *   workers    transform the chunk (hash, compress, decompress, scan)
 *   writer     one in-order consumer (the calling thread) applies results in
 *              sequence: writes output, combines hashes, reports files
 *
 * Every file is a run of chunks; the chunks of all files of a job form one
 * sequence with a bounded reorder window, so one huge file and 5,000 small
 * files run through the same pipeline (small whole files several to a
 * task). Bounds: buffer memory never exceeds max_mem (the buffer pool's
 * cap), input descriptors never exceed max_open (the fd pool's cap); output
 * files open at once are at most 5, plus one per worker while small files
 * are compressed (that path is taken only with <= 8 workers). Output files are
 * written to a temporary name in the target directory, fsynced and renamed
 * only when complete: no partial file ever appears under the final name.
 * The temporary name is ".NAME.tp.PID.XXXXXX" (PID: the writer's); a job
 * first removes the ones of its own outputs whose PID is not a live
 * process (left by a writer that was killed). Outputs get the source's
 * mode & 0777 (the umask does not apply, as with zstd) and its atime and
 * mtime. An output path that is a directory fails (-EISDIR, "output is a
 * directory"); one that is a symlink is an existing output (replaced, the
 * link itself, only with force).
 *
 * Existing outputs are never replaced unless tp_job.force is set.
 *
 * Inputs that change while a job runs: the size is taken when the file is
 * planned (stat) and the job covers exactly that many bytes. A file that
 * grows is processed up to its planned size (the bytes appended later are
 * not read); a file that shrinks below it fails with -EIO ("file shrank
 * while reading") and no output is published for it. A file rewritten in
 * place within its size is read as it is at each chunk's read: the output
 * is consistent per chunk, not a snapshot (use a snapshot or a lock for
 * that).
 *
 * Cancellation: tp_engine_cancel() (or cancelling the parent context) stops
 * a running job at its next check; temporary files are removed and the job
 * returns -ECANCELED. Safe to call from any thread, not from a signal
 * handler (use a thread that sigwait()s, as the tripool command does).
 */
#ifndef TRIPOOL_ENGINE_H
#define TRIPOOL_ENGINE_H

#include "tripool/buf.h"
#include "tripool/common.h"
#include "tripool/ctx.h"
#include "tripool/fd.h"
#include "tripool/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_engine tp_engine;

/* The ranges of tp_engine_opts and tp_job.level: tp_engine_create (and
 * tp_engine_run for the level) return -EINVAL outside them. The level range
 * is zstd's (ZSTD_minCLevel() .. ZSTD_maxCLevel()); 0 means the default. */
#define TP_ENGINE_WORKERS_MAX 4096u
#define TP_ENGINE_CHUNK_MIN ((size_t)4 << 10)
#define TP_ENGINE_CHUNK_MAX ((size_t)1 << 30)
#define TP_ENGINE_MAX_OPEN_MAX 1000000u
#define TP_ENGINE_LEVEL_MIN (-131072)
#define TP_ENGINE_LEVEL_MAX 22

typedef struct tp_engine_opts {
    unsigned workers;  /* worker threads; default tp_usable_cpus(); 1 .. 4096 */
    size_t chunk_size; /* bytes per chunk; default 4 MiB; 4 KiB .. 1 GiB */
    size_t max_mem;    /* cap on buffer memory; default 256 MiB; 3/4 of it must
                          hold 2 chunks (rounded up to a power of two) */
    unsigned max_open; /* cap on input descriptors held; default 64, >= 1 */
    tp_ctx *ctx;       /* parent context (NULL = background); retained */
    /* Called once by tp_engine_create, on its thread, with the options of
     * the engine's task pool just before the pool is created: the place to
     * install an observer (tp_obs_pool_prepare) or change the pool's
     * settings (max_workers is already `workers`). A nonzero return (a
     * negative errno) makes tp_engine_create fail with it. NULL = none. */
    int (*pool_setup)(tp_pool_opts *opts, void *arg);
    void *pool_setup_arg;
    /* More fields may be added; always start from tp_engine_opts_init(). */
} tp_engine_opts;

TP_API void tp_engine_opts_init(tp_engine_opts *o);

/* Create an engine and its pools. Returns 0, -EINVAL (out NULL, an option
 * out of its range, 3/4 of max_mem smaller than two chunks), -ENOMEM, the
 * error pool_setup returned, or a pool's error; *out is NULL on error. */
TP_API TP_MUST_USE int tp_engine_create(tp_engine **out, const tp_engine_opts *opts);

/* Cancel the running and every later job of this engine (-ECANCELED). */
TP_API void tp_engine_cancel(tp_engine *e);

/* Join the workers and free everything. e may be NULL. */
TP_API void tp_engine_destroy(tp_engine *e);

/* The engine's task pool (for tp_pool_stats, dumps, metrics collectors).
 * Owned by the engine; valid until tp_engine_destroy. */
TP_API tp_pool *tp_engine_pool(tp_engine *e);

/* The engine's buffer pool and fd pool (for their stats and metrics
 * collectors, e.g. tp_obs_register_bufpool). Owned by the engine; valid
 * until tp_engine_destroy; do not get, put, acquire or close through them
 * while a job runs (they hold the job's bounds). */
TP_API tp_bufpool *tp_engine_bufpool(tp_engine *e);
TP_API tp_fdpool *tp_engine_fdpool(tp_engine *e);

/* Statistics over the engine's life. Struct tag, not typedef (see pool.h). */
struct tp_engine_stats {
    uint64_t bytes_in;     /* input bytes processed */
    uint64_t bytes_out;    /* output bytes written */
    uint64_t files_ok;     /* files finished successfully */
    uint64_t files_failed; /* files reported with an error */
    uint64_t chunks;       /* chunks processed */
    uint64_t mem_peak;     /* peak buffer memory in use (bytes) */
    uint64_t mem_cap;      /* max_mem */
    uint64_t open_peak;    /* peak input descriptors held */
    uint64_t open_cap;     /* max_open */
    uint64_t buf_gets;     /* buffer pool: gets and hits (reuse) */
    uint64_t buf_hits;
    uint64_t fd_hits;   /* fd pool: acquires served by a cached descriptor */
    uint64_t fd_misses; /* fd pool: acquires that opened */
    struct tp_pool_stats pool;
};
TP_API void tp_engine_stats(tp_engine *e, struct tp_engine_stats *out);

/* Progress of the running job, readable from any thread at any time:
 * bytes consumed so far and bytes planned (grows while trees are walked). */
TP_API void tp_engine_progress(tp_engine *e, uint64_t *done, uint64_t *total);

/* ---- the generic call: "run my function over this file in chunks" ------ */

/* Called on a worker for every chunk, in no particular order and possibly
 * in parallel: chunk index, its file offset and its bytes (valid only
 * during the call). Returns >= 0, or a negative errno that stops the run. */
typedef int (*tp_chunk_fn)(void *arg, uint64_t index, uint64_t offset, const void *data,
                           size_t len);

/* Run fn over path in chunks of the engine's chunk size with its workers,
 * memory and descriptor bounds. Returns 0, the first error of fn or of a
 * read (-ENOENT, -EISDIR, -EIO, ...), or -ECANCELED. An empty file calls fn
 * once with len 0. */
TP_API TP_MUST_USE int tp_file_chunks(tp_engine *e, const char *path, tp_chunk_fn fn, void *arg);

/* ---- jobs: what the tripool command runs -------------------------------- */

typedef enum tp_job_op {
    TP_OP_HASH,       /* digest of every file */
    TP_OP_COMPRESS,   /* path -> path.zst (or out_path) */
    TP_OP_DECOMPRESS, /* path.zst -> path (or out_path) */
    TP_OP_COPY,       /* path -> out_path */
    TP_OP_COUNT       /* newlines, or lines containing a pattern */
} tp_job_op;

typedef enum tp_hash_alg {
    TP_HASH_XXH3,   /* XXH3 64-bit */
    TP_HASH_XXH128, /* XXH3 128-bit */
    TP_HASH_XXH64,
    TP_HASH_XXH32,
    TP_HASH_CRC32C /* computed in parallel chunks and combined */
} tp_hash_alg;

/* The outcome of one input file, reported in input order. */
typedef struct tp_file_result {
    const char *path;     /* input path */
    size_t index;         /* index of the input argument it came from */
    const char *out_path; /* output written (compress, decompress, copy) */
    int err;              /* 0 or a negative errno */
    const char *err_op;   /* on error: what failed ("open", "read", "write", ...) */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t count;           /* TP_OP_COUNT: lines or matching lines */
    unsigned char digest[16]; /* TP_OP_HASH: canonical (big-endian) bytes */
    size_t digest_len;        /* 4, 8 or 16 */
    /* Set (err 0, nothing else) for an entry a walk (recursive) did not
     * process, saying why: "symbolic link not followed", "not a regular
     * file". Such an entry is neither a success nor a failure. */
    const char *skipped;
} tp_file_result;

/* Called on the thread running tp_engine_run, in input order, once per
 * file. Strings are valid only during the call. */
typedef void (*tp_result_fn)(void *arg, const tp_file_result *r);

typedef struct tp_job {
    tp_job_op op;
    tp_hash_alg alg;         /* TP_OP_HASH */
    const tp_hash_alg *algs; /* TP_OP_HASH: per input path (overrides alg); may be NULL */
    int level;               /* TP_OP_COMPRESS: zstd level; default 3 */
    const char *pattern;     /* TP_OP_COUNT: fixed string; NULL = count newlines */
    const char *out_path;    /* single input only: output file (or directory for copy) */
    bool recursive;          /* walk directories given as inputs. A walk never follows
                                a symlink (reported as skipped, see
                                tp_file_result.skipped); each file it found must
                                still be the same inode when opened (O_NOFOLLOW),
                                else it fails with -ESTALE ("replaced during the run") */
    bool remove_src;         /* compress/decompress: delete the input after the output
                                is fsynced and verified, if it is unchanged (same
                                inode, size and mtime; else -ESTALE, source kept) */
    bool no_fsync;           /* skip fsync before rename (faster, less durable) */
    bool force;              /* compress/decompress/copy: replace an existing output file.
                                Default: such an input fails with -EEXIST (err_op
                                "output exists"), nothing is written; the check is made
                                when the file is planned and again, atomically, at the
                                rename (RENAME_NOREPLACE) */
    tp_result_fn on_result;
    void *arg;
    /* More fields may be added; zero-initialise and set what you need. */
} tp_job;

/* Run job over paths. Each failing input is reported through on_result and
 * the rest are processed. Returns 0 when every input succeeded, 1 when some
 * failed, -ECANCELED when cancelled (temporary files removed), or -EINVAL
 * (bad job: out_path with several inputs, unknown op). */
TP_API TP_MUST_USE int tp_engine_run(tp_engine *e, const tp_job *job, const char *const *paths,
                                     size_t npaths);

/* ---- building blocks ----------------------------------------------------- */

/* CRC-32C of data continuing crc (start with 0). Hardware-accelerated. */
TP_API uint32_t tp_crc32c(uint32_t crc, const void *data, size_t len);

/* CRC-32C of A||B from crc(A), crc(B) and |B|. */
TP_API uint32_t tp_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/* Number of '\n' bytes in data (vectorised). */
TP_API uint64_t tp_count_newlines(const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_ENGINE_H */
