/* SPDX-License-Identifier: MIT */
/*
 * tripool/fd.h - the file-handle pool: many files, a hard descriptor bound.
 *
 * A pool caches open descriptors keyed by (path, open flags that stay with
 * the open file: access mode, O_APPEND, O_NONBLOCK, O_DIRECT, O_SYNC,
 * O_DSYNC, O_NOATIME, O_NOFOLLOW, O_DIRECTORY, O_PATH). An acquire returns a
 * lease (tp_fd *) on a cached descriptor, opening it on a miss; a release
 * gives the lease back and the descriptor stays open, idle, for the next
 * acquire of the same key. Several leases may share one descriptor
 * (reference counted): use positional I/O (tp_fd_pread / tp_fd_pwrite), not
 * the shared file offset.
 *
 * Bound: the pool never holds more than max_open descriptors, its inotify
 * descriptor included when use_inotify is on (stats.max_open then reports
 * max_open - 1, the room left for files; with max_open 1 inotify is not
 * used). Descriptors being opened count from before the open() call. A miss
 * with max_open open evicts the least
 * recently used idle descriptor; when every descriptor is leased the
 * acquire waits (up to wait_ns / its timeout / its context) or fails with
 * -EMFILE when waiting is off. Every descriptor that becomes idle or is
 * closed wakes every waiting acquire (each looks again), so no waiter
 * sleeps while a descriptor is free for it. If open() itself fails with EMFILE/ENFILE
 * (other code in the process holds descriptors), idle descriptors are
 * closed one by one and the open retried before the error is returned.
 *
 * Freshness: an idle descriptor unused for `inactive_ns` is closed by the
 * next acquire or release (up to 8 per call) or tp_fdpool_expire(); no
 * thread runs in the background, so a pool nobody calls keeps them. A cached
 * descriptor older than `valid_ns` since its last check is re-validated on
 * acquire with stat(path): if the path now names another inode (rotation
 * by rename + create) or no file (deleted), the acquire opens the path
 * afresh while existing leases keep the old descriptor until released.
 * Within valid_ns of the last check a hit may thus return a file the path no
 * longer names; tp_fdpool_invalidate() forces the check. With `use_inotify`,
 * changes in the parent directory and to the file mark cached entries for
 * re-validation within a few ms; inotify is only a speed-up (a queue
 * overflow re-validates every entry; watch limits fall back to valid_ns).
 *
 * Every descriptor is opened with O_CLOEXEC. Flags O_TRUNC and O_EXCL make
 * the acquire open afresh (never a cache hit); the new descriptor replaces
 * the cached one for later acquires. O_TMPFILE is refused (-EINVAL).
 * Paths are used as given; a relative path is relative to the working
 * directory at open time. The key is the string: after a chdir(), a cached
 * relative path keeps naming the file it opened until its next
 * re-validation (valid_ns, tp_fdpool_invalidate()) finds another inode.
 *
 * Thread safety: every function may be called from any thread. A lease is
 * owned by the caller that acquired it until it is released exactly once.
 * Releasing a lease twice, or to another pool, aborts with a message when
 * detected (the lease memory is recycled by later acquires, so detection is
 * best effort: a lease handed out again in between is not caught).
 */
#ifndef TRIPOOL_FD_H
#define TRIPOOL_FD_H

#include <sys/types.h>

#include "tripool/common.h"
#include "tripool/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_fdpool tp_fdpool;
typedef struct tp_fd tp_fd;

/* Called by tp_fdpool_destroy once per descriptor still leased, with the
 * pool's lock held: it must not call tp_fd or tp_fdpool functions. */
typedef void (*tp_fd_leak_fn)(const char *path, unsigned leases, void *arg);

typedef struct tp_fdpool_opts {
    unsigned max_open;     /* descriptor bound; 0 = default: soft RLIMIT_NOFILE / 2
                              (after raise_nofile), at least 1 */
    bool raise_nofile;     /* raise the soft RLIMIT_NOFILE to the hard one at create */
    uint64_t inactive_ns;  /* close idle descriptors unused this long; default 60 s;
                              TP_FOREVER = never */
    uint64_t valid_ns;     /* re-validate a cached descriptor (stat) after this long;
                              default 1 s; 0 = on every acquire; TP_FOREVER = never */
    uint64_t wait_ns;      /* tp_fd_acquire's wait when all descriptors are leased;
                              default TP_FOREVER; 0 = fail at once with -EMFILE */
    bool use_inotify;      /* watch files and their directories for rotation */
    unsigned min_uses;     /* cache a file only from its min_uses-th open within
                              inactive_ns (nginx's open_file_cache_min_uses); earlier
                              opens are closed at release. Default 1 (always cache) */
    tp_fd_leak_fn on_leak; /* leak report at destroy; may be NULL */
    void *on_leak_arg;
    /* More fields may be added; always start from tp_fdpool_opts_init(). */
} tp_fdpool_opts;

/* The stats type is a struct tag, not a typedef: tp_fdpool_stats is also the
 * function that fills it. Counters are totals since create. */
struct tp_fdpool_stats {
    uint64_t hits;           /* acquires served by a cached descriptor */
    uint64_t misses;         /* acquires that opened a descriptor */
    uint64_t evictions;      /* idle descriptors closed to make room (bound or EMFILE) */
    uint64_t expired;        /* idle descriptors closed after inactive_ns */
    uint64_t reopened;       /* cached entries replaced because the path changed inode
                                or vanished (rotation, deletion) */
    uint64_t waits;          /* acquires that had to wait for a descriptor */
    uint64_t emfile_retries; /* open() failures with EMFILE/ENFILE that were retried */
    uint64_t failures;       /* acquires that returned an error, except argument errors
                                (-EINVAL, -ENAMETOOLONG); a context done before the
                                call and -ESHUTDOWN count */
    uint64_t uncached;       /* misses not cached because of min_uses */
    unsigned open;           /* descriptors held now */
    unsigned peak_open;      /* most descriptors held at once */
    unsigned leased;         /* leases out now */
    unsigned max_open;       /* the bound in force */
    bool inotify;            /* inotify acceleration active */
};

TP_API void tp_fdpool_opts_init(tp_fdpool_opts *o);

/* Create a pool. opts NULL = defaults. Returns 0, -EINVAL (out NULL,
 * max_open above 1048576), -ENOMEM, or -errno from setrlimit when
 * raise_nofile fails. The default max_open is also at most 1048576 (1024
 * when RLIMIT_NOFILE is unlimited).
 * use_inotify falls back silently (stats.inotify false) if inotify is
 * unavailable. */
TP_API TP_MUST_USE int tp_fdpool_create(tp_fdpool **out, const tp_fdpool_opts *opts);

/* Lease a descriptor for path opened with flags (O_CLOEXEC is added) and
 * mode (used with O_CREAT). Waits as opts.wait_ns says when every descriptor
 * is leased. On success *out owns a lease; give it back with tp_fd_release.
 * Returns 0 or: -EINVAL (NULL argument, empty path, O_TMPFILE),
 * -ENAMETOOLONG (path >= PATH_MAX), -EMFILE (all leased and not waiting, or
 * the process is out of descriptors with nothing idle to close),
 * -ETIMEDOUT (waited wait_ns), -ESHUTDOWN (tp_fdpool_destroy started: to
 * waiting acquires, and to acquires while leases keep a destroyed pool
 * alive), or open()'s error (-ENOENT, -EACCES, -EISDIR, -EEXIST for
 * O_CREAT | O_EXCL, ...). On error *out is NULL. */
TP_API TP_MUST_USE int tp_fd_acquire(tp_fdpool *fp, const char *path, int flags, mode_t mode,
                                     tp_fd **out);

/* As tp_fd_acquire, waiting at most timeout_ns (0 = fail at once with
 * -EMFILE) for a descriptor; -ETIMEDOUT when the wait ran out. */
TP_API TP_MUST_USE int tp_fd_acquire_timeout(tp_fdpool *fp, const char *path, int flags,
                                             mode_t mode, uint64_t timeout_ns, tp_fd **out);

/* As tp_fd_acquire, but the wait for a descriptor also ends when c is done
 * (NULL = background): returns tp_ctx_err(c) (-ECANCELED, -ETIMEDOUT). A
 * context already done fails at once, even for a cached file. */
TP_API TP_MUST_USE int tp_fd_acquire_ctx(tp_fdpool *fp, tp_ctx *c, const char *path, int flags,
                                         mode_t mode, tp_fd **out);

/* The descriptor of a lease, valid until the lease is released; -EINVAL for
 * NULL. Do not close it. */
TP_API int tp_fd_get(const tp_fd *h);

/* True when the descriptor cannot seek (pipe, FIFO, socket, tty): asks the
 * kernel (one lseek that does not move the offset). */
TP_API bool tp_fd_is_sequential(const tp_fd *h);

/* Give a lease back. The descriptor stays cached (idle) unless its entry was
 * replaced (rotation) or the pool was destroyed with leases out, in which
 * case the last release closes it. h NULL is a no-op. */
TP_API void tp_fd_release(tp_fdpool *fp, tp_fd *h);

/* Give a lease back and stop caching its descriptor: later acquires open
 * the path afresh, and the descriptor is closed as soon as its last lease
 * is released (now, if this was the only one). For files used once, e.g. a
 * temporary output that was just renamed into place. h NULL is a no-op. */
TP_API void tp_fd_close(tp_fdpool *fp, tp_fd *h);

/* Read up to len bytes at offset off, retrying short reads and EINTR until
 * len bytes or end of file. Returns the bytes read (0 at EOF), or -ESPIPE
 * (sequential handle: the kernel refuses positional I/O on it), -EINVAL, or
 * -errno of pread. Safe from many threads on one descriptor. */
TP_API ssize_t tp_fd_pread(const tp_fd *h, void *buf, size_t len, uint64_t off);

/* Write all len bytes at offset off (retrying short writes and EINTR).
 * Returns len, or -ESPIPE (sequential handle), -EINVAL, -errno of pwrite.
 * Note: on a descriptor opened with O_APPEND, Linux appends and ignores
 * off. */
TP_API ssize_t tp_fd_pwrite(const tp_fd *h, const void *buf, size_t len, uint64_t off);

/* Sequential I/O for any handle (uses the descriptor's shared offset): one
 * read / a full write, EINTR retried. Returns bytes or -errno. */
TP_API ssize_t tp_fd_read(const tp_fd *h, void *buf, size_t len);
TP_API ssize_t tp_fd_write(const tp_fd *h, const void *buf, size_t len);

/* Mark cached entries of path (every flag set) for re-validation at their
 * next acquire, e.g. after renaming the file yourself. Returns the number of
 * entries marked, or -EINVAL. */
TP_API int tp_fdpool_invalidate(tp_fdpool *fp, const char *path);

/* Close idle descriptors unused for inactive_ns now (this also happens on
 * every acquire and release). Returns how many were closed. */
TP_API unsigned tp_fdpool_expire(tp_fdpool *fp);

/* A snapshot of the counters (taken under the pool lock). */
TP_API void tp_fdpool_stats(tp_fdpool *fp, struct tp_fdpool_stats *out);

/* Close every idle descriptor and free the pool. Threads waiting in acquire
 * get -ESHUTDOWN first. With leases still out it returns -EBUSY after
 * calling opts.on_leak once per leased descriptor: the pool then takes no
 * new acquires, each outstanding lease stays valid until released, and the
 * release of the last one closes the rest and frees the pool. Returns 0
 * when everything was freed. fp NULL returns 0. After destroy, only
 * releasing the outstanding leases, and acquires (-ESHUTDOWN) that cannot
 * race with the last release, are defined. */
TP_API int tp_fdpool_destroy(tp_fdpool *fp);

/* ---- follower (tail -F) ------------------------------------------------
 * Follows a path across appends, truncation and rotation, using leases of
 * its pool. Bytes come in file order: when the path names a new file
 * (rotation by rename + create, or deletion + create), the old file is read
 * to its end and kept for opts.grace_ns more (a writer may still append to
 * it) before the follower moves on to the new file from its start. Files
 * that rotate away meanwhile are queued with their own leases (up to 8), so
 * none is skipped. Truncation (size below the read offset, as copytruncate
 * does) restarts at offset 0; bytes written and truncated away between two
 * polls cannot be seen by anyone (logrotate documents this window).
 * One thread at a time may use a follower. */
typedef struct tp_follower tp_follower;

typedef struct tp_follow_opts {
    bool from_start;   /* read the existing content first; default false: start at end */
    uint64_t poll_ns;  /* poll interval while waiting; default 10 ms */
    uint64_t grace_ns; /* keep draining a rotated-away file this long; default 500 ms */
    /* More fields may be added; always start from tp_follow_opts_init(). */
} tp_follow_opts;

struct tp_follow_stats {
    uint64_t bytes;       /* bytes returned */
    uint64_t truncations; /* times the file shrank below the read offset */
    uint64_t rotations;   /* switches to a new file at the path */
};

TP_API void tp_follow_opts_init(tp_follow_opts *o);

/* Start following path (which need not exist yet). The follower keeps a
 * lease of fp per queued file (one, except right after rotations). Returns
 * 0, -EINVAL, -ENAMETOOLONG, -ENOMEM, or the pool's acquire error. */
TP_API TP_MUST_USE int tp_follow_open(tp_follower **out, tp_fdpool *fp, const char *path,
                                      const tp_follow_opts *opts);

/* Read new bytes, waiting up to timeout_ns for some. Returns the number of
 * bytes (> 0), 0 when nothing new arrived in time, or -errno. */
TP_API ssize_t tp_follow_read(tp_follower *f, void *buf, size_t len, uint64_t timeout_ns);

TP_API void tp_follow_stats(tp_follower *f, struct tp_follow_stats *out);

/* Release the follower's leases and free it. f NULL is a no-op. */
TP_API void tp_follow_close(tp_follower *f);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_FD_H */
