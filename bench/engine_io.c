/* SPDX-License-Identifier: MIT */
/*
 * engine_io: the engine's reader, pread against io_uring, on the same files
 * in the page cache. Usage: engine_io pread|uring PIECE_KIB FILE...
 * Each file is opened, read to its end in PIECE_KIB pieces into one buffer
 * that stays in cache (what the engine's hash/compress readers do), summed
 * (so the reads are not dead) and closed. io_uring: a ring of depth 8 with
 * the buffer registered, reads of 8 files in flight at once (one piece each,
 * 8 buffers), so per-file latency and syscalls are batched; opens and closes
 * stay synchronous in both. Prints wall and CPU seconds and GB/s.
 * Single-threaded on purpose: it measures the per-byte and per-file cost of
 * the read path, which the engine pays on every worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 8

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static uint64_t touch(const unsigned char *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 64)
        s += p[i];
    return s;
}

static uint64_t run_pread(char **files, int n, size_t piece, uint64_t *bytes) {
    unsigned char *b = aligned_alloc(4096, piece);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        off_t off = 0;
        for (;;) {
            ssize_t k = pread(fd, b, piece, off);
            if (k <= 0) break;
            sum += touch(b, (size_t)k);
            off += k;
            *bytes += (uint64_t)k;
        }
        close(fd);
    }
    free(b);
    return sum;
}

struct slot {
    int fd;
    off_t off;
    int busy;
};

static uint64_t run_uring(char **files, int n, size_t piece, uint64_t *bytes) {
    struct io_uring ring;
    int err = io_uring_queue_init(DEPTH, &ring, 0);
    if (err < 0) {
        fprintf(stderr, "engine_io: io_uring_queue_init: %s (errno %d)\n", strerror(-err), -err);
        exit(3);
    }
    unsigned char *b = aligned_alloc(4096, piece * DEPTH);
    struct iovec iov = {b, piece * DEPTH};
    int fixed = io_uring_register_buffers(&ring, &iov, 1) == 0;
    struct slot s[DEPTH] = {{0}};
    uint64_t sum = 0;
    int next = 0, inflight = 0;
    for (;;) {
        for (int k = 0; k < DEPTH; k++) { /* fill empty slots with new files */
            if (s[k].busy || next >= n) continue;
            s[k].fd = open(files[next++], O_RDONLY | O_CLOEXEC);
            if (s[k].fd < 0) continue;
            s[k].off = 0;
            s[k].busy = 1;
            struct io_uring_sqe *q = io_uring_get_sqe(&ring);
            if (fixed)
                io_uring_prep_read_fixed(q, s[k].fd, b + (size_t)k * piece, (unsigned)piece, 0, 0);
            else
                io_uring_prep_read(q, s[k].fd, b + (size_t)k * piece, (unsigned)piece, 0);
            io_uring_sqe_set_data(q, &s[k]);
            inflight++;
        }
        if (inflight == 0) break;
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *c;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, c) {
            struct slot *x = io_uring_cqe_get_data(c);
            int k = (int)(x - s);
            seen++;
            inflight--;
            if (c->res <= 0) {
                close(x->fd);
                x->busy = 0;
                continue;
            }
            sum += touch(b + (size_t)k * piece, (size_t)c->res);
            *bytes += (uint64_t)c->res;
            x->off += c->res;
            struct io_uring_sqe *q = io_uring_get_sqe(&ring);
            if (fixed)
                io_uring_prep_read_fixed(q, x->fd, b + (size_t)k * piece, (unsigned)piece, x->off,
                                         0);
            else
                io_uring_prep_read(q, x->fd, b + (size_t)k * piece, (unsigned)piece,
                                   (uint64_t)x->off);
            io_uring_sqe_set_data(q, x);
            inflight++;
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
    free(b);
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: engine_io pread|uring PIECE_KIB FILE...\n");
        return 2;
    }
    size_t piece = (size_t)atoi(argv[2]) << 10;
    if (piece == 0) return 2;
    uint64_t bytes = 0, sum;
    double t0 = now(), c0 = cpu();
    if (strcmp(argv[1], "pread") == 0)
        sum = run_pread(argv + 3, argc - 3, piece, &bytes);
    else
        sum = run_uring(argv + 3, argc - 3, piece, &bytes);
    double w = now() - t0, c = cpu() - c0;
    printf("engine_io %s piece=%zuKiB files=%d bytes=%llu wall_s=%.3f cpu_s=%.3f GB_s=%.2f "
           "(sum %llu)\n",
           argv[1], piece >> 10, argc - 3, (unsigned long long)bytes, w, c, (double)bytes / w / 1e9,
           (unsigned long long)(sum & 0xff));
    return 0;
}
