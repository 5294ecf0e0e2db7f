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

#endif
