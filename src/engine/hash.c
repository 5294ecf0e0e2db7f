/* SPDX-License-Identifier: MIT */
/*
 * The hash kernel (and the plain newline count, which streams the same
 * way): a chunk is read through a PIECE-sized buffer that stays in cache
 * and fed to XXH3/XXH128 (the AVX2 build when the CPU has it,
 * xxh3_avx2.c), XXH64, XXH32, CRC-32C (crc32c.c; chunks combined at
 * apply) or the newline counter (scan.c). XXH* of one file is sequential:
 * its one chunk is the whole file (plan.c).
 *
 * Runs on a worker; touches only its chunk and hash states of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

void tp__digest_of_chunk(struct echunk *c, tp_hash_alg alg, unsigned char *out) {
    const void *d = c->in ? (const void *)c->in->data : (const void *)"";
    switch (alg) {
    case TP_HASH_XXH3: {
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH3_64bits(d, c->len));
        memcpy(out, &cn, 8);
        break;
    }
    case TP_HASH_XXH128: {
        XXH128_canonical_t cn;
        XXH128_canonicalFromHash(&cn, XXH3_128bits(d, c->len));
        memcpy(out, &cn, 16);
        break;
    }
    case TP_HASH_XXH64: {
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH64(d, c->len, 0));
        memcpy(out, &cn, 8);
        break;
    }
    case TP_HASH_XXH32: {
        XXH32_canonical_t cn;
        XXH32_canonicalFromHash(&cn, XXH32(d, c->len, 0));
        memcpy(out, &cn, 4);
        break;
    }
    case TP_HASH_CRC32C:
        break;
    }
}

int tp__chunk_pieces(struct echunk *c, tp_fd *h) {
    struct efile *f = c->f;
    tp_ctx *ctx = c->r->e->ctx;
    XXH3_state_t *x3 = NULL;
    XXH64_state_t *x64 = NULL;
    XXH32_state_t *x32 = NULL;
    bool hash = c->r->op == TP_OP_HASH;
    bool wide = f->alg == TP_HASH_XXH128;
    void *xa = NULL; /* AVX2 build of XXH3, when the CPU has it */
    int err = 0;
    if (hash && (f->alg == TP_HASH_XXH3 || wide) && tp__xxh3_avx2_usable()) {
        if (!(xa = tp__xxh3_avx2_new(wide))) return chunk_fail(c, -ENOMEM, "hash state");
    } else if (hash && (f->alg == TP_HASH_XXH3 || f->alg == TP_HASH_XXH128)) {
        if (!(x3 = XXH3_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        if (f->alg == TP_HASH_XXH3)
            XXH3_64bits_reset(x3);
        else
            XXH3_128bits_reset(x3);
    } else if (hash && f->alg == TP_HASH_XXH64) {
        if (!(x64 = XXH64_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        XXH64_reset(x64, 0);
    } else if (hash && f->alg == TP_HASH_XXH32) {
        if (!(x32 = XXH32_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        XXH32_reset(x32, 0);
    }
    uint64_t pos = c->off, end = c->off + c->len;
    while (pos < end) {
        if ((err = tp_ctx_err(ctx)) != 0) {
            chunk_fail(c, err, "canceled");
            break;
        }
        size_t n = end - pos < c->in->cap ? (size_t)(end - pos) : c->in->cap;
        ssize_t k = tp_fd_pread(h, c->in->data, n, pos);
        if (k < 0 || (size_t)k != n) {
            err =
                chunk_fail(c, k < 0 ? (int)k : -EIO, k < 0 ? "read" : "file shrank while reading");
            break;
        }
        const unsigned char *d = c->in->data;
        if (!hash)
            c->count += tp_count_newlines(d, n);
        else if (f->alg == TP_HASH_CRC32C)
            c->crc = tp_crc32c(c->crc, d, n);
        else if (xa)
            tp__xxh3_avx2_update(xa, wide, d, n);
        else if (f->alg == TP_HASH_XXH3)
            XXH3_64bits_update(x3, d, n);
        else if (f->alg == TP_HASH_XXH128)
            XXH3_128bits_update(x3, d, n);
        else if (x64)
            XXH64_update(x64, d, n);
        else
            XXH32_update(x32, d, n);
        pos += n;
    }
    if (!err && hash) {
        if (xa) {
            tp__xxh3_avx2_digest(xa, wide, c->digest);
        } else if (f->alg == TP_HASH_XXH3) {
            XXH64_canonical_t cn;
            XXH64_canonicalFromHash(&cn, XXH3_64bits_digest(x3));
            memcpy(c->digest, &cn, 8);
        } else if (f->alg == TP_HASH_XXH128) {
            XXH128_canonical_t cn;
            XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(x3));
            memcpy(c->digest, &cn, 16);
        } else if (x64) {
            XXH64_canonical_t cn;
            XXH64_canonicalFromHash(&cn, XXH64_digest(x64));
            memcpy(c->digest, &cn, 8);
        } else if (x32) {
            XXH32_canonical_t cn;
            XXH32_canonicalFromHash(&cn, XXH32_digest(x32));
            memcpy(c->digest, &cn, 4);
        }
    }
    XXH3_freeState(x3);
    tp__xxh3_avx2_free(xa);
    XXH64_freeState(x64);
    XXH32_freeState(x32);
    return err;
}
