/* SPDX-License-Identifier: MIT */
/*
 * The zstd kernels: compress a chunk as one frame (whole, or read in PIECE
 * pieces into one frame), decode one frame of a multi-frame file (into a
 * buffer, or in pieces pwritten in place), decode a foreign .zst as one
 * stream, and --rm's verification (decode the finished output again and
 * compare the input's XXH64).
 *
 * The chunk kernels run on a worker and touch only their chunk, the
 * worker's own zstd contexts (struct zctx, thread-specific) and, for a
 * fast-path chunk, its file's --rm hash (the file's only chunk); the
 * outputs they write (stream_fd, pw_fd) were opened by the coordinator,
 * which closes them only after the chunk is consumed. tp__verify_zst runs
 * on the coordinator at publish.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "engine/engine_internal.h"

/* A zstd error as an errno: running out of memory is not corrupt data. */
static int zstd_err(size_t code, int otherwise) {
    return ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? -ENOMEM : otherwise;
}

/* Decode a whole .zst file as a stream into c->stream_fd. */
int tp__chunk_stream_decompress(struct echunk *c, tp_fd *h, struct zctx *z) {
    tp_ctx *ctx = c->r->e->ctx;
    if (!z->d && !(z->d = ZSTD_createDCtx())) return chunk_fail(c, -ENOMEM, "decompress");
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    uint64_t pos = 0;
    size_t last = 0;
    bool any = false;
    for (;;) {
        if (tp_ctx_done(ctx)) return chunk_fail(c, tp_ctx_err(ctx), "canceled");
        ssize_t n = tp_fd_pread(h, c->in->data, c->in->cap, pos);
        if (n < 0) return chunk_fail(c, (int)n, "read");
        if (n == 0) break;
        any = true;
        pos += (uint64_t)n;
        ZSTD_inBuffer ib = {c->in->data, (size_t)n, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
            last = ZSTD_decompressStream(z->d, &ob, &ib);
            if (ZSTD_isError(last))
                return chunk_fail(c, zstd_err(last, -EBADMSG), "not zstd data or corrupt");
            size_t w = 0;
            while (w < ob.pos) {
                ssize_t k = write(c->stream_fd, (char *)ob.dst + w, ob.pos - w);
                if (k < 0) {
                    if (errno == EINTR) continue;
                    return chunk_fail(c, -errno, "write");
                }
                w += (size_t)k;
            }
            c->out_len += ob.pos;
        }
    }
    if (!any || last != 0) return chunk_fail(c, -EBADMSG, "truncated zstd data");
    return 0;
}

/* Compress a chunk as one zstd frame, reading it in pieces of the input
 * buffer's size: the read copies into a buffer that stays in cache (a
 * chunk-sized one does not, and the copy out of the page cache into cold
 * memory was a fifth of compress's CPU), and zstd takes each piece into its
 * own window. The frame equals what one ZSTD_compress2 call would make of
 * the chunk's bytes, up to block boundaries. */
int tp__chunk_compress_pieces(struct echunk *c, tp_fd *h, struct zctx *z) {
    tp_ctx *ctx = c->r->e->ctx;
    if (!z->c && !(z->c = ZSTD_createCCtx())) return chunk_fail(c, -ENOMEM, "zstd context");
    ZSTD_CCtx_reset(z->c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, c->r->job->level);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(z->c, c->len);
    ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
    uint64_t pos = c->off, end = c->off + c->len;
    while (pos < end) {
        int err = tp_ctx_err(ctx);
        if (err) return chunk_fail(c, err, "canceled");
        size_t n = end - pos < c->in->cap ? (size_t)(end - pos) : c->in->cap;
        ssize_t k = tp_fd_pread(h, c->in->data, n, pos);
        if (k < 0) return chunk_fail(c, (int)k, "read");
        if ((size_t)k != n) return chunk_fail(c, -EIO, "file shrank while reading");
        pos += n;
        ZSTD_EndDirective mode = pos == end ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib = {c->in->data, n, 0};
        size_t ret;
        do {
            ret = ZSTD_compressStream2(z->c, &ob, &ib, mode);
            if (ZSTD_isError(ret) || (ob.pos == ob.size && ret != 0 && mode == ZSTD_e_end))
                return chunk_fail(c, ZSTD_isError(ret) ? zstd_err(ret, -EIO) : -EIO, "compress");
        } while (mode == ZSTD_e_end ? ret != 0 : ib.pos < ib.size);
    }
    c->out_len = ob.pos;
    return 0;
}

/* Decode the .zst at path and compare the XXH64 of its content. */
int tp__verify_zst(const char *path, XXH64_hash_t want) {
    int fd = tp__open_retry(path, O_RDONLY);
    if (fd < 0) return -errno;
    int err = 0;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    XXH64_state_t *x = XXH64_createState();
    size_t isz = ZSTD_DStreamInSize(), osz = ZSTD_DStreamOutSize();
    char *ib = malloc(isz), *ob = malloc(osz);
    if (!d || !x || !ib || !ob) {
        err = -ENOMEM;
        goto out;
    }
    XXH64_reset(x, 0);
    size_t last = 1;
    for (;;) {
        ssize_t n = read(fd, ib, isz);
        if (n < 0) {
            if (errno == EINTR) continue;
            err = -errno;
            goto out;
        }
        if (n == 0) break;
        ZSTD_inBuffer in = {ib, (size_t)n, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer o = {ob, osz, 0};
            last = ZSTD_decompressStream(d, &o, &in);
            if (ZSTD_isError(last)) {
                err = zstd_err(last, -EBADMSG);
                goto out;
            }
            XXH64_update(x, ob, o.pos);
        }
    }
    if (last != 0 || XXH64_digest(x) != want) err = -EBADMSG;
out:
    free(ib);
    free(ob);
    XXH64_freeState(x);
    ZSTD_freeDCtx(d);
    close(fd);
    return err;
}

/* Compress the chunk (read whole into c->in) as one zstd frame into c->out;
 * a fast-path chunk also feeds --rm's hash of the input. */
int tp__chunk_compress(struct echunk *c, struct zctx *z) {
    int err = 0;
    if (!z->c && !(z->c = ZSTD_createCCtx())) return chunk_fail(c, -ENOMEM, "zstd context");
    ZSTD_CCtx_reset(z->c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, c->r->job->level);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(z->c, c->out->data, c->out->cap, c->in->data, c->len);
    if (ZSTD_isError(n))
        err = chunk_fail(c, zstd_err(n, -EIO), "compress");
    else
        c->out_len = n;
    if (!err && c->fast && c->f->verify) /* --rm: the input's hash, checked at publish */
        XXH64_update(c->f->verify, c->in->data, c->len);
    return err;
}

/* Decode one frame of a multi-frame file (read whole into c->in): into
 * c->out, or with c->pw_fd in cache-sized pieces pwritten at c->dst_off. */
int tp__chunk_decompress(struct echunk *c, struct zctx *z) {
    int err = 0;
    if (!z->d && !(z->d = ZSTD_createDCtx())) return chunk_fail(c, -ENOMEM, "zstd context");
    if (c->pw_fd < 0) {
        size_t n = ZSTD_decompressDCtx(z->d, c->out->data, c->dsize, c->in->data, c->len);
        if (ZSTD_isError(n) || n != c->dsize)
            return chunk_fail(c, ZSTD_isError(n) ? zstd_err(n, -EBADMSG) : -EBADMSG,
                              "corrupt zstd frame");
        c->out_len = n;
        return 0;
    }
    /* Decode in cache-sized pieces written in place: no big cold buffer. */
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = {c->in->data, c->len, 0};
    size_t ret = 1;
    /* Until the whole entry is decoded: stopping at the end of its first
     * frame dropped any frame or bytes after it that zstd -d decodes or
     * rejects. */
    while (!err && (ret != 0 || ib.pos < ib.size)) {
        ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
        ret = ZSTD_decompressStream(z->d, &ob, &ib);
        if (ZSTD_isError(ret) || c->out_len + ob.pos > c->dsize ||
            (ob.pos == 0 && ib.pos == ib.size && ret != 0)) {
            err = chunk_fail(c, ZSTD_isError(ret) ? zstd_err(ret, -EBADMSG) : -EBADMSG,
                             "corrupt zstd frame");
            break;
        }
        size_t w = 0;
        while (w < ob.pos) {
            ssize_t k = pwrite(c->pw_fd, (char *)ob.dst + w, ob.pos - w,
                               (off_t)(c->dst_off + c->out_len + w));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) {
                err = chunk_fail(c, -errno, "write");
                break;
            }
            w += (size_t)k;
        }
        c->out_len += ob.pos;
    }
    if (!err && c->out_len != c->dsize) err = chunk_fail(c, -EBADMSG, "corrupt zstd frame");
    return err;
}
