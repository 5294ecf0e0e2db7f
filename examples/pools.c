/* SPDX-License-Identifier: MIT */
/*
 * The three pools and a deadline, by hand: tasks on a bounded task pool
 * read files through the fd pool into buffers from the buffer pool, all
 * under one context with a deadline. Usage: pools FILE...
 */
#include <fcntl.h>
#include <stdio.h>
#include <tripool.h>

struct job {
    const char *path;
    tp_fdpool *fds;
    tp_bufpool *bufs;
    uint64_t bytes; /* written by the task, read after tp_group_wait */
};

static int read_file(void *arg) {
    struct job *j = arg;
    tp_fd *h;
    int err = tp_fd_acquire(j->fds, j->path, O_RDONLY, 0, &h);
    if (err) return err;
    tp_buf *b = tp_buf_get(j->bufs, 64 << 10); /* NULL only on ENOMEM / over the cap */
    if (!b) {
        tp_fd_release(j->fds, h);
        return -ENOMEM;
    }
    uint64_t off = 0;
    ssize_t n;
    /* Stop early when the group's context is cancelled or its deadline passes. */
    while (!tp_ctx_done(tp_task_ctx()) && (n = tp_fd_pread(h, b->data, b->cap, off)) > 0)
        off += (uint64_t)n;
    tp_buf_put(j->bufs, b);
    tp_fd_release(j->fds, h);
    j->bytes = off;
    return tp_ctx_err(tp_task_ctx());
}

int main(int argc, char **argv) {
    tp_pool *pool = NULL;
    tp_bufpool *bufs = NULL;
    tp_fdpool *fds = NULL;
    tp_ctx *deadline = NULL;
    tp_group *g = NULL;
    int err;

    tp_fdpool_opts fo;
    tp_fdpool_opts_init(&fo);
    fo.max_open = 8; /* never more than 8 descriptors, however many files */
    tp_bufpool_opts bo;
    tp_bufpool_opts_init(&bo);
    bo.max_retained = 4 << 20; /* keep at most 4 MiB of idle buffers */

    if ((err = tp_pool_create(&pool, NULL)) || (err = tp_bufpool_create(&bufs, &bo)) ||
        (err = tp_fdpool_create(&fds, &fo)) ||
        (err = tp_ctx_with_timeout(NULL, 10 * TP_NSEC_PER_SEC, &deadline)) ||
        (err = tp_group_create(pool, deadline, 0, &g)))
        goto out;

    struct job jobs[64];
    int n = argc - 1 < 64 ? argc - 1 : 64;
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){.path = argv[i + 1], .fds = fds, .bufs = bufs};
        if ((err = tp_group_submit(g, read_file, &jobs[i]))) goto out;
    }
    err = tp_group_wait(g, TP_FOREVER); /* the first failure, or 0 */
    for (int i = 0; i < n && !err; i++)
        printf("%s: %llu bytes\n", jobs[i].path, (unsigned long long)jobs[i].bytes);

    struct tp_pool_stats ps;
    tp_pool_stats(pool, &ps);
    struct tp_fdpool_stats fs;
    tp_fdpool_stats(fds, &fs);
    printf("tasks completed %llu, peak workers %u, peak open files %u\n",
           (unsigned long long)ps.completed, ps.peak_workers, fs.peak_open);
out:
    if (err) fprintf(stderr, "pools: %s\n", tp_strerror(err));
    if (g) tp_group_destroy(g);
    tp_ctx_release(deadline);
    tp_pool_destroy(pool);
    tp_fdpool_destroy(fds);
    tp_bufpool_destroy(bufs);
    return err ? 1 : 0;
}
