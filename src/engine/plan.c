/* SPDX-License-Identifier: MIT */
/*
 * Planning: from the job's paths to chunks in the window. It owns the
 * inputs (stat of each path; the tree walk of a recursive job, which never
 * follows a symlink and skips our temps), the output names, and each
 * file's plan (plan_file: checks, how it splits, each chunk's range and
 * buffers, which chunks join a small-file batch). The frame plan of a
 * multi-frame .zst comes from its seek table (seek.c).
 *
 * Coordinator only: nothing here runs on a worker. Planning may consume
 * the window's head (tp__get_buf, open_output_slot, tp__push_chunk) to
 * stay within the memory, task and open-output bounds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "engine/engine_internal.h"

static char *str_cat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

static struct echunk *chunk_new(struct run *r, struct efile *f, uint64_t index) {
    struct echunk *c = calloc(1, sizeof(*c));
    if (c) {
        c->r = r;
        c->f = f;
        c->index = index;
        c->stream_fd = -1;
        c->pw_fd = -1;
    }
    return c;
}

static int inputs_add(struct inputs *in, const char *path, size_t index, int err,
                      const struct stat *st) {
    if (in->n == in->cap) {
        size_t nc = in->cap ? in->cap * 2 : 64;
        struct input *nv = realloc(in->v, nc * sizeof(*nv));
        if (!nv) return -ENOMEM;
        in->v = nv;
        in->cap = nc;
    }
    struct input *x = &in->v[in->n];
    memset(x, 0, sizeof(*x));
    x->path = strdup(path);
    if (!x->path) return -ENOMEM;
    x->index = index;
    x->err = err;
    if (st) x->st = *st;
    in->n++;
    return 0;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Our own temporary files (tmpfile.c) are never inputs. */
static bool is_tmp_name(const char *name) {
    return tp__tmp_parse(name, NULL, NULL);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entry names of directory fd (closed), sorted; *n of them. */
static int read_names(int fd, char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = -errno;
        close(fd);
        return err;
    }
    char **v = NULL;
    size_t cap = 0;
    int err = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            err = errno ? -errno : 0;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || is_tmp_name(de->d_name))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                err = -ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[*n] = strdup(de->d_name))) {
            err = -ENOMEM;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof(*v), cmp_name);
    *out = v;
    return err;
}

/* Walk dir, which was stat'ed as *dst. Never follows a symlink found in
 * the tree (a symlinked file or directory is reported as skipped), and a
 * directory replaced (by a symlink or another directory) between its stat
 * and its open fails with -ESTALE instead of being walked. Entries that
 * vanish or change later fail per file (see src_acquire). */
static int walk(struct run *r, struct inputs *in, const char *dir, const struct stat *dst,
                size_t index, unsigned depth) {
    int fd = tp__open_retry(dir, O_RDONLY | O_DIRECTORY | (depth ? O_NOFOLLOW : 0));
    struct stat dst2;
    if (fd < 0) return inputs_add(in, dir, index, -errno, NULL);
    if (fstat(fd, &dst2) != 0 || dst2.st_dev != dst->st_dev || dst2.st_ino != dst->st_ino) {
        close(fd);
        int err = inputs_add(in, dir, index, -ESTALE, NULL);
        if (!err) in->v[in->n - 1].err_op = "directory replaced during the walk";
        return err;
    }
    char **names;
    size_t n;
    int rerr = read_names(fd, &names, &n);
    int err = rerr ? inputs_add(in, dir, index, rerr, NULL) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        size_t dl = strlen(dir);
        char *p = err ? NULL : malloc(dl + strlen(name) + 2);
        if (!err && !p) err = -ENOMEM;
        if (p) {
            sprintf(p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
            bool zst = ends_with(name, ".zst");
            bool want = !(r->op == TP_OP_COMPRESS && zst) && !(r->op == TP_OP_DECOMPRESS && !zst);
            struct stat st;
            if (lstat(p, &st) != 0) {
                if (errno != ENOENT || want) err = inputs_add(in, p, index, -errno, NULL);
            } else if (S_ISDIR(st.st_mode)) {
                err = depth > 64 ? inputs_add(in, p, index, -ELOOP, NULL)
                                 : walk(r, in, p, &st, index, depth + 1);
            } else if (want) {
                err = inputs_add(in, p, index, 0, &st);
                if (!err) {
                    struct input *x = &in->v[in->n - 1];
                    x->walked = true;
                    if (S_ISLNK(st.st_mode))
                        x->skip = "symbolic link not followed";
                    else if (!S_ISREG(st.st_mode))
                        x->skip = "not a regular file";
                    else
                        tp__add_relaxed(&r->e->prog_total, (uint64_t)st.st_size);
                }
            }
            free(p);
        }
        free(names[i]);
    }
    free(names);
    return err;
}

/* Output path for an input, or NULL with *err set. */
static char *out_name(struct run *r, const char *path, int *err) {
    const tp_job *j = r->job;
    if (r->op == TP_OP_COPY) {
        struct stat st;
        if (stat(j->out_path, &st) == 0 && S_ISDIR(st.st_mode)) {
            const char *b = strrchr(path, '/');
            b = b ? b + 1 : path;
            char *s = malloc(strlen(j->out_path) + strlen(b) + 2);
            if (s)
                sprintf(s, "%s/%s", j->out_path, b);
            else
                *err = -ENOMEM;
            return s;
        }
        char *s = strdup(j->out_path);
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (j->out_path) {
        char *s = strdup(j->out_path);
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (r->op == TP_OP_COMPRESS) {
        char *s = str_cat(path, ".zst");
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (!ends_with(path, ".zst") || strlen(path) == 4) {
        *err = -EINVAL;
        return NULL;
    }
    char *s = strndup(path, strlen(path) - 4);
    if (!s) *err = -ENOMEM;
    return s;
}

static size_t digest_len_of(tp_hash_alg a) {
    switch (a) {
    case TP_HASH_XXH128:
        return 16;
    case TP_HASH_XXH32:
    case TP_HASH_CRC32C:
        return 4;
    default:
        return 8;
    }
}

/* Take one of the MAX_STREAMS output slots (finishing the oldest files until
 * one is free) and open f's temp output in it. On failure c records the
 * error; the slot is not taken. Returns 0 or -errno. */
static int open_output_slot(struct run *r, struct efile *f, struct echunk *c) {
    while (r->streams >= MAX_STREAMS)
        tp__consume_head(r);
    int err = tp__open_tmp(f);
    if (err) {
        chunk_fail(c, err, "create output");
        return err;
    }
    r->streams++;
    return 0;
}

/* Small whole files run several to a task (fewer hand-offs and wake-ups);
 * compressed ones are also written by the worker (which then also hashes
 * the input for --rm's verification), unless more workers than
 * FAST_MAX_WORKERS could hold outputs open at once. */
static bool batchable(const struct run *r, const struct efile *f) {
    if (f->err || f->size > BATCH_BYTES || f->size > r->e->o.chunk_size) return false;
    if (r->op == TP_OP_HASH || r->op == TP_OP_COUNT) return true;
    return r->op == TP_OP_COMPRESS && r->e->o.workers <= FAST_MAX_WORKERS;
}

/* plan_file's first step: a new efile for input x (no chunk yet). */
static struct efile *file_new(const struct run *r, const struct input *x) {
    const tp_job *j = r->job;
    struct efile *f = calloc(1, sizeof(*f));
    if (!f) return NULL;
    f->out_fd = -1;
    f->index = x->index;
    f->path = strdup(x->path);
    if (!f->path) {
        free(f);
        return NULL;
    }
    f->alg = j->algs ? j->algs[x->index] : j->alg;
    f->digest_len = digest_len_of(f->alg);
    f->size = (uint64_t)x->st.st_size;
    f->mode = x->st.st_mode;
    f->atime = x->st.st_atim;
    f->mtime = x->st.st_mtim;
    f->nchunks = 1;
    f->src_dev = x->st.st_dev;
    f->src_ino = x->st.st_ino;
    f->nofollow = x->walked;
    return f;
}

/* plan_file's second step: what makes f fail (or be skipped) before any
 * work: the stat's result, the file type, the output name and whether
 * that output may be written. Sets f->err (and f->out for writing ops). */
static void file_check(struct run *r, struct efile *f, const struct input *x) {
    const tp_job *j = r->job;
    /* A cached descriptor may name an older file at this path (rewritten
     * since an earlier job): have the fd pool re-check it on next acquire. */
    if (!x->err) (void)tp_fdpool_invalidate(r->e->fp, f->path);
    if (x->skip) {
        f->skip = x->skip;
        file_fail(f, -ECANCELED, "skipped"); /* (never reported: f->skip is) */
    } else if (x->err) {
        file_fail(f, x->err, x->err_op ? x->err_op : "open");
    } else if (S_ISDIR(x->st.st_mode)) {
        file_fail(f, -EISDIR, "open");
    } else if (!S_ISREG(x->st.st_mode)) {
        file_fail(f, -EINVAL, "not a regular file");
    } else if (op_writes(r->op)) {
        int err = 0;
        f->out = out_name(r, f->path, &err);
        if (!f->out)
            file_fail(f, err, err == -EINVAL ? "unknown suffix (want .zst)" : "output name");
        struct stat ost;
        if (f->out && stat(f->out, &ost) == 0 && ost.st_dev == x->st.st_dev &&
            ost.st_ino == x->st.st_ino)
            file_fail(f, -EINVAL, "input and output are the same file");
        else if (f->out && lstat(f->out, &ost) == 0 && S_ISDIR(ost.st_mode))
            file_fail(f, -EISDIR, "output is a directory"); /* even with force */
        else if (f->out && !j->force && lstat(f->out, &ost) == 0)
            file_fail(f, -EEXIST, "output exists"); /* checked again at the rename */
    }
}

/* plan_file's third step: how f splits. Sets f->nchunks (or f->stream),
 * *frames (decompress of a multi-frame file) and returns the input bytes
 * per chunk. */
static size_t file_layout(struct run *r, struct efile *f, uint64_t **frames) {
    const tp_job *j = r->job;
    size_t chunk = r->e->o.chunk_size;
    size_t step = r->op == TP_OP_COMPRESS ? tp__compress_input_len(chunk) : chunk;
    if (r->op == TP_OP_DECOMPRESS) {
        size_t nf = 0;
        if (tp__plan_frames(r, f, frames, &nf))
            f->nchunks = nf;
        else
            f->stream = true;
    } else if (r->op == TP_OP_HASH && f->alg != TP_HASH_CRC32C) {
        step = f->size > 0 ? f->size : 1; /* XXH* is sequential: one task streams the file */
    } else if (f->size > step) {
        f->nchunks = (f->size + step - 1) / step;
    }
    if (r->op == TP_OP_COMPRESS && j->remove_src) {
        if (!(f->verify = XXH64_createState()))
            file_fail(f, -ENOMEM, "hash state");
        else
            XXH64_reset(f->verify, 0);
    }
    return step;
}

/* Where the cursor of a file's chunk plan is. */
struct cursor {
    uint64_t off, dst_off; /* next input offset; decompress: next output offset */
    size_t step;           /* input bytes per chunk */
    const uint64_t *frames;
};

/* Chunk k of f (a step of plan_file): its range, its buffer sizes, and
 * for the outputs tasks write themselves, the output slot. */
static int chunk_layout(struct run *r, struct echunk *c, uint64_t k, struct cursor *cur,
                        size_t *in_sz, size_t *out_sz) {
    struct efile *f = c->f;
    const tp_job *j = r->job;
    size_t chunk = r->e->o.chunk_size;
    int err = 0;
    if (r->op == TP_OP_DECOMPRESS && f->stream) {
        c->off = 0;
        c->len = 0;
        /* zstd streams through buffers of any size: no bigger than the
         * file or a chunk, so a small max_mem still holds them. */
        *in_sz = ZSTD_DStreamInSize();
        *out_sz = ZSTD_DStreamOutSize();
        if (*in_sz > f->size) *in_sz = f->size ? (size_t)f->size : 1;
        if (*in_sz > chunk) *in_sz = chunk;
        if (*out_sz > chunk) *out_sz = chunk;
        err = open_output_slot(r, f, c);
        if (!err) c->stream_fd = f->out_fd;
    } else if (r->op == TP_OP_DECOMPRESS) {
        c->off = cur->off;
        c->len = (size_t)cur->frames[2 * k];
        c->dsize = (size_t)cur->frames[2 * k + 1];
        c->dst_off = cur->dst_off;
        cur->dst_off += c->dsize;
        *in_sz = c->len;
        *out_sz = c->dsize ? c->dsize : 1; /* an empty frame still decodes into a buffer */
        if (k == 0 && f->nchunks > 1) {    /* several frames: tasks pwrite in place */
            err = open_output_slot(r, f, c);
            if (!err) f->pw = true;
        }
        if (f->pw) {
            c->pw_fd = f->out_fd;
            *out_sz = PIECE < chunk ? PIECE : chunk;
        }
    } else {
        c->off = cur->off;
        c->len = (size_t)(f->size - cur->off < cur->step ? f->size - cur->off : cur->step);
        *in_sz = c->len;
        if (piecewise(r)) *in_sz = c->len < PIECE ? c->len : PIECE;
        if (r->op == TP_OP_COMPRESS) *out_sz = ZSTD_compressBound(c->len);
        if (r->op == TP_OP_COMPRESS && c->len > PIECE && !j->remove_src) {
            c->zpieces = true; /* --rm hashes the whole chunk at apply: keep it */
            *in_sz = PIECE;
        }
        if (r->op == TP_OP_COPY && k == 0 && c->len > 0) { /* tasks copy in place */
            err = open_output_slot(r, f, c);
            if (!err) f->pw = true;
        }
        if (r->op == TP_OP_COPY && f->pw) {
            c->pw_fd = f->out_fd;
            *in_sz = c->len < PIECE ? c->len : PIECE; /* only if the kernel copy is refused */
        }
    }
    cur->off += c->len;
    return err;
}

/* Take c's buffers (a step of plan_file; may consume the window's head).
 * A batched chunk's buffers are its batch leader's (push_chunk). */
static void chunk_bufs(struct run *r, struct echunk *c, size_t in_sz, size_t out_sz) {
    if (c->err || c->batched || !(in_sz || (r->op != TP_OP_HASH && r->op != TP_OP_COUNT))) return;
    int err = tp__get_buf(r, in_sz, &c->in);
    if (!err && out_sz) err = tp__get_buf(r, out_sz, &c->out);
    if (err) {
        chunk_fail(c, err, "buffer");
    } else {
        c->mem = c->in->cap + (c->out ? c->out->cap : 0);
        mem_add(r->e, c->mem);
    }
}

/* Plan one input into chunks and push them (consuming as the bounds say):
 * file_new, file_check, file_layout, then per chunk chunk_layout,
 * chunk_bufs and tp__push_chunk. */
int tp__plan_file(struct run *r, const struct input *x) {
    tp_engine *e = r->e;
    struct efile *f = file_new(r, x);
    if (!f) return -ENOMEM;
    file_check(r, f, x);
    if (f->err) {
        struct echunk *c = chunk_new(r, f, 0);
        if (!c) {
            tp__file_free(f);
            return -ENOMEM;
        }
        c->err = f->err;
        c->err_op = f->err_op;
        tp__push_chunk(r, c);
        return 0;
    }

    uint64_t *frames = NULL; /* decompress: (compressed, decompressed) pairs */
    struct cursor cur = {0};
    cur.step = file_layout(r, f, &frames);
    cur.frames = frames;
    for (uint64_t k = 0; k < f->nchunks; k++) {
        struct echunk *c = chunk_new(r, f, k);
        if (!c) {
            /* Cannot even describe the rest: shorten the file to what was
             * pushed (at least one chunk carries the error). */
            if (k == 0) {
                free(frames);
                tp__file_free(f);
                return -ENOMEM;
            }
            f->nchunks = k;
            file_fail(f, -ENOMEM, "plan");
            break;
        }
        int err = f->err ? f->err : tp_ctx_err(e->ctx);
        if (err) {
            c->err = err;
            c->err_op = f->err ? f->err_op : "canceled";
            f->nchunks = k + 1; /* the rest is not planned */
            tp__push_chunk(r, c);
            break;
        }
        size_t in_sz = 0, out_sz = 0;
        (void)chunk_layout(r, c, k, &cur, &in_sz, &out_sz); /* an error is in c */
        if (f->nchunks == 1 && batchable(r, f)) {
            c->batched = true;
            c->fast = f->fast = r->op == TP_OP_COMPRESS;
        }
        chunk_bufs(r, c, in_sz, out_sz);
        tp__push_chunk(r, c);
    }
    free(frames);
    return 0;
}

/* Before writing anything: remove the temps that killed earlier runs left
 * for this job's outputs (tmpfile.c says which: never another's). */
void tp__sweep_stale_tmps(struct run *r, const struct inputs *in) {
    char **outs = calloc(in->n ? in->n : 1, sizeof(*outs));
    if (!outs) return; /* only housekeeping */
    for (size_t i = 0; i < in->n; i++) {
        int err = 0;
        if (!in->v[i].err && S_ISREG(in->v[i].st.st_mode))
            outs[i] = out_name(r, in->v[i].path, &err);
    }
    (void)tp__tmp_sweep((const char *const *)outs, in->n);
    for (size_t i = 0; i < in->n; i++)
        free(outs[i]);
    free(outs);
}

int tp__plan_inputs(struct run *r, struct inputs *in, const char *const *paths, size_t npaths) {
    const tp_job *job = r->job;
    int err = 0;
    for (size_t i = 0; i < npaths && !err; i++) {
        struct stat st;
        if (!paths[i] || !paths[i][0]) {
            err = inputs_add(in, paths[i] ? paths[i] : "", i, -ENOENT, NULL);
        } else if (stat(paths[i], &st) != 0) {
            err = inputs_add(in, paths[i], i, -errno, NULL);
        } else if (S_ISDIR(st.st_mode) && job->recursive) {
            err = walk(r, in, paths[i], &st, i, 0);
        } else {
            err = inputs_add(in, paths[i], i, 0, &st);
            if (!err && S_ISREG(st.st_mode))
                tp__add_relaxed(&r->e->prog_total, (uint64_t)st.st_size);
        }
    }
    return err;
}

void tp__inputs_free(struct inputs *in) {
    for (size_t i = 0; i < in->n; i++)
        free(in->v[i].path);
    free(in->v);
}
