/* SPDX-License-Identifier: MIT */
/*
 * The OS contract: every Linux specific the pools need, behind small calls
 * returning 0 or a negative errno (after mimalloc's prim.h). Implemented in
 * src/os/linux.c. Modules call these instead of raw syscalls so they read
 * as policy.
 */
#ifndef TP_INTERNAL_OS_H
#define TP_INTERNAL_OS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <time.h>
#include <stdbool.h>
#include <sys/types.h>

#include "tripool/common.h"

/* CLOCK_MONOTONIC now, in ns. */
uint64_t tp__now_ns(void);

/* Absolute CLOCK_MONOTONIC deadline -> timespec, saturating. */
struct timespec tp__ts_from_ns(uint64_t ns);

/* now + timeout, saturating to TP_FOREVER. */
uint64_t tp__deadline_after(uint64_t timeout_ns);

/* Initialise a condition variable that waits on CLOCK_MONOTONIC. */
int tp__cond_init_monotonic(pthread_cond_t *c);

/* Wait on c until the absolute monotonic deadline (TP_FOREVER = no limit).
 * Returns 0 when woken (possibly spuriously) or -ETIMEDOUT. */
int tp__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ns);

/* CPUs in the affinity mask, capped by cgroup v2 cpu.max; >= 1. */
unsigned tp__usable_cpus(void);

/* Number of threads in this process (from /proc/self/status), or -errno. */
int tp__thread_count(void);

/* Number of open descriptors (entries of /proc/self/fd), or -errno. */
int tp__open_fd_count(void);

/* System page size. */
size_t tp__page_size(void);

/* ---- memory and descriptors for the buffer and fd pools ------------------ */

/* The boundary and size of a transparent huge page. */
#define TP__OS_HUGE_PAGE ((size_t)2 << 20)

/* size bytes of private anonymous read/write memory in *out. populate: fault
 * every page in now (MAP_POPULATE). 0 or a negative errno (*out untouched). */
int tp__os_map(size_t size, bool populate, void **out);

/* Like tp__os_map, but aligned to TP__OS_HUGE_PAGE with transparent huge
 * pages asked for (one fault and one TLB entry per 2 MiB; advice only, fine
 * when THP is off): over-maps by one huge page and unmaps the slack, so the
 * result is an ordinary mapping of exactly size bytes (tp__os_unmap). Never
 * reserves swap (MAP_NORESERVE); populate touches every page. 0 or -errno. */
int tp__os_map_huge(size_t size, bool populate, void **out);

/* Unmap what tp__os_map/tp__os_map_huge returned. 0 or -errno. */
int tp__os_unmap(void *p, size_t size);

/* The soft limit on open descriptors in *soft (UINT64_MAX: unlimited).
 * 0 or -errno. */
int tp__os_nofile_limit(uint64_t *soft);

/* Raise the soft limit on open descriptors to the hard limit. 0 or -errno. */
int tp__os_nofile_raise(void);

/* A coarse monotonic clock in ns: the kernel tick as resolution (a few ms),
 * much cheaper than tp__now_ns in VMs. */
uint64_t tp__os_coarse_now_ns(void);

/* File-change notification (inotify). A descriptor (non-blocking,
 * close-on-exec; close() it) or -errno. */
int tp__os_notify_open(void);

/* What a watch reports. FILE: the file was moved, deleted or its attributes
 * (links, mode) changed. DIR: an entry of the directory was created, moved
 * in or out, or deleted (fails with -ENOTDIR on anything but a directory). */
enum tp__os_watch { TP__OS_WATCH_FILE, TP__OS_WATCH_DIR };

/* Watch path on the descriptor: a watch id >= 0 or -errno (ENOSPC at the
 * watch limit, EACCES, ...). Watches of the same inode share one id. */
int tp__os_notify_add(int nfd, const char *path, enum tp__os_watch what);

/* Remove a watch. 0 or -errno. */
int tp__os_notify_rm(int nfd, int wd);

/* Events tp__os_notify_drain reports. OVERFLOW: events were lost (wd -1):
 * treat everything as changed. GONE: the watch wd no longer exists (its inode
 * was freed or it was removed). CHANGE: wd saw a change; name is the
 * directory entry for a directory watch, else NULL. */
enum tp__os_notify_ev { TP__OS_NOTIFY_OVERFLOW, TP__OS_NOTIFY_GONE, TP__OS_NOTIFY_CHANGE };

/* Read every pending event of nfd, calling fn for each, until a read would
 * block (or fails). */
void tp__os_notify_drain(int nfd,
                         void (*fn)(void *arg, enum tp__os_notify_ev ev, int wd, const char *name),
                         void *arg);

/* ---- files and scheduling (engine, timer service, obs) -------------------- */

/* copy_file_range(2): up to len bytes from in at *in_off to out at *out_off
 * inside the kernel (both offsets advanced). Bytes copied (0: end of in), or
 * -errno as the call gave it (-EINTR is not retried here; -EXDEV, -EINVAL,
 * -EOPNOTSUPP, -ENOSYS, -EBADF mean no in-kernel copy for this pair). */
ssize_t tp__os_copy_range(int in, off_t *in_off, int out, off_t *out_off, size_t len);

/* fsync(fd), or with whole_fs syncfs(fd) (every file of fd's filesystem:
 * one journal commit for a batch). Retried on EINTR. 0 or -errno. */
int tp__os_sync(int fd, bool whole_fs);

/* rename(old, new) that fails with -EEXIST instead of replacing an existing
 * new (renameat2 RENAME_NOREPLACE). 0 or -errno; -EINVAL or -ENOSYS where
 * the filesystem or kernel lacks it (the caller falls back). */
int tp__os_rename_noreplace(const char *old, const char *new_path);

/* Start writing back [off, off + len) of fd without waiting for it
 * (sync_file_range SYNC_FILE_RANGE_WRITE). A hint: errors surface at the
 * fsync that follows. */
void tp__os_writeback_start(int fd, uint64_t off, uint64_t len);

/* Thread tid of this process: its time on a CPU and waiting for one, ns,
 * since it started (/proc/self/task/TID/schedstat). 0 or -errno (-ENOENT
 * once the thread is gone). */
int tp__os_thread_schedstat(pid_t tid, uint64_t *run_ns, uint64_t *wait_ns);

/* Make the calling thread a timer thread: 1 us timer slack (default 50 us);
 * SCHED_FIFO at rt_priority when that is 1..99 and permitted; otherwise a
 * short scheduler slice (EEVDF custom slice, Linux >= 6.12, no privilege),
 * so a waking timer preempts CPU hogs sooner. Refused or unsupported
 * requests leave a normal thread. Returns true if the thread is real-time. */
bool tp__os_sched_timer_thread(unsigned rt_priority);

#endif
