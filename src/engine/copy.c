/* SPDX-License-Identifier: MIT */
/*
 * The copy kernel (cp): each chunk is copied inside the kernel
 * (copy_file_range) to the same offset of the output, holes kept; where
 * the kernel refuses, through the chunk's small buffer with pread +
 * pwrite. Without an in-place output (an empty file) the chunk is only
 * checked for zeros and the coordinator writes it (output.c).
 *
 * Runs on a worker; touches only its chunk and writes to the chunk's
 * range of the output (pw_fd, opened and closed by the coordinator):
 * tasks of one file write disjoint ranges, so order does not matter.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "internal/os.h"

static bool all_zero(const unsigned char *p, size_t n) {
    if (n == 0) return false;
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

/* cp: copy the chunk's range to the same offset of the output inside the
 * kernel (copy_file_range: no copy through user memory, several chunks at
 * once). A range that is a hole in the input (SEEK_DATA) is skipped and
 * stays a hole (the output is sized at the end). Where the kernel refuses
 * (another filesystem type, old kernel) it falls back to pread + pwrite
 * through the chunk's small buffer. */
int tp__chunk_copy_in_place(struct echunk *c, tp_fd *h) {
    int in = tp_fd_get(h);
    uint64_t pos = c->off, end = c->off + c->len;
    off_t d = lseek(in, (off_t)pos, SEEK_DATA);
    if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= end)) {
        c->zero = true; /* all hole */
        return 0;
    }
    bool kernel = true;
    while (pos < end) {
        int err = tp_ctx_err(c->r->e->ctx);
        if (err) return chunk_fail(c, err, "canceled");
        size_t want = end - pos > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)(end - pos);
        ssize_t n;
        if (kernel) {
            off_t ip = (off_t)pos, op = (off_t)pos;
            n = tp__os_copy_range(in, &ip, c->pw_fd, &op, want);
            if (n == -EINTR) continue;
            if (n == -EXDEV || n == -EINVAL || n == -EOPNOTSUPP || n == -ENOSYS || n == -EBADF) {
                kernel = false;
                continue;
            }
            if (n < 0) return chunk_fail(c, (int)n, n == -EIO ? "read" : "write");
        } else {
            if (want > c->in->cap) want = c->in->cap;
            n = tp_fd_pread(h, c->in->data, want, pos);
            if (n < 0) return chunk_fail(c, (int)n, "read");
            for (ssize_t w = 0; w < n;) {
                ssize_t k = pwrite(c->pw_fd, (char *)c->in->data + w, (size_t)(n - w),
                                   (off_t)(pos + (uint64_t)w));
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) return chunk_fail(c, -errno, "write");
                w += k;
            }
        }
        if (n == 0) return chunk_fail(c, -EIO, "file shrank while reading");
        pos += (uint64_t)n;
    }
    return 0;
}

/* cp through the coordinator (no in-place output): the chunk was read
 * into c->in; note whether it is all zero (written as a hole at apply). */
void tp__chunk_copy_scan(struct echunk *c) {
    c->zero = all_zero(c->in->data, c->len);
}
