/* SPDX-License-Identifier: MIT */
/* Linux implementation of the OS contract in src/internal/os.h. */
#include "internal/os.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t tp__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TP_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

TP_API uint64_t tp_now_ns(void) {
    return tp__now_ns();
}

struct timespec tp__ts_from_ns(uint64_t ns) {
    struct timespec ts;
    uint64_t sec = ns / TP_NSEC_PER_SEC;
    if (sec > (uint64_t)INT64_MAX / 2)
        sec = (uint64_t)INT64_MAX / 2; /* far future; avoids time_t overflow */
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)(ns % TP_NSEC_PER_SEC);
    return ts;
}

uint64_t tp__deadline_after(uint64_t timeout_ns) {
    uint64_t now = tp__now_ns();
    if (timeout_ns == TP_FOREVER || timeout_ns > TP_FOREVER - now) return TP_FOREVER;
    return now + timeout_ns;
}

int tp__cond_init_monotonic(pthread_cond_t *c) {
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc) return -rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!rc) rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

int tp__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ns) {
    if (deadline_ns == TP_FOREVER) {
        pthread_cond_wait(c, m);
        return 0;
    }
    struct timespec ts = tp__ts_from_ns(deadline_ns);
    int rc = pthread_cond_timedwait(c, m, &ts);
    return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* cgroup v2 "cpu.max": "max 100000" or "<quota> <period>". Returns the CPU
 * count the quota allows (rounded up) or 0 when unlimited/unknown. */
static unsigned cgroup_cpu_limit(void) {
    char path[PATH_MAX] = "/sys/fs/cgroup";
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = '\0';
                if (strcmp(line + 3, "/") != 0)
                    snprintf(path, sizeof path, "/sys/fs/cgroup%s", line + 3);
                break;
            }
        }
        fclose(f);
    }
    /* Walk from our cgroup up to the root: the tightest quota wins. */
    unsigned best = 0;
    for (;;) {
        char file[PATH_MAX + 16];
        snprintf(file, sizeof file, "%s/cpu.max", path);
        FILE *q = fopen(file, "re");
        if (q) {
            char quota[32];
            unsigned long long period = 0;
            if (fscanf(q, "%31s %llu", quota, &period) == 2 && strcmp(quota, "max") != 0 &&
                period > 0) {
                unsigned long long qv = strtoull(quota, NULL, 10);
                unsigned n = (unsigned)((qv + period - 1) / period);
                if (n == 0) n = 1;
                if (best == 0 || n < best) best = n;
            }
            fclose(q);
        }
        char *slash = strrchr(path, '/');
        if (!slash || strcmp(path, "/sys/fs/cgroup") == 0) break;
        *slash = '\0';
    }
    return best;
}

unsigned tp__usable_cpus(void) {
    unsigned n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = (unsigned)CPU_COUNT(&set);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    unsigned q = cgroup_cpu_limit();
    if (q && q < n) n = q;
    return n ? n : 1;
}

TP_API unsigned tp_usable_cpus(void) {
    return tp__usable_cpus();
}

int tp__thread_count(void) {
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return -errno;
    char line[256];
    int n = -ENOENT;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Threads:", 8) == 0) {
            n = atoi(line + 8);
            break;
        }
    }
    fclose(f);
    return n;
}

int tp__open_fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -errno;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

size_t tp__page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* ---- memory and descriptors for the buffer and fd pools ------------------ */

int tp__os_map(size_t size, bool populate, void **out) {
    int fl = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, fl, -1, 0);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}

int tp__os_map_huge(size_t size, bool populate, void **out) {
    const size_t huge = TP__OS_HUGE_PAGE;
    if (size > SIZE_MAX - huge) return -ENOMEM;
    uint8_t *raw = mmap(NULL, size + huge, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return -errno;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + size + huge > p + size) munmap(p + size, (size_t)(raw + size + huge - (p + size)));
    (void)madvise(p, size, MADV_HUGEPAGE); /* advice: fine if THP is off */
    if (populate)
        for (size_t off = 0; off < size; off += 4096)
            ((volatile uint8_t *)p)[off] = 0;
    *out = p;
    return 0;
}

int tp__os_unmap(void *p, size_t size) {
    return munmap(p, size) == 0 ? 0 : -errno;
}

int tp__os_nofile_limit(uint64_t *soft) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    *soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return 0;
}

int tp__os_nofile_raise(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    if (rl.rlim_cur == rl.rlim_max) return 0;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    return 0;
}

uint64_t tp__os_coarse_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * TP_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

int tp__os_notify_open(void) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int tp__os_notify_add(int nfd, const char *path, enum tp__os_watch what) {
    uint32_t mask = what == TP__OS_WATCH_DIR
                        ? (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR)
                        : (IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB);
    int wd = inotify_add_watch(nfd, path, mask);
    return wd >= 0 ? wd : -errno;
}

int tp__os_notify_rm(int nfd, int wd) {
    return inotify_rm_watch(nfd, wd) == 0 ? 0 : -errno;
}

void tp__os_notify_drain(int nfd,
                         void (*fn)(void *arg, enum tp__os_notify_ev ev, int wd, const char *name),
                         void *arg) {
    _Alignas(struct inotify_event) char buf[4096];
    for (;;) {
        ssize_t n = read(nfd, buf, sizeof buf);
        if (n <= 0) return; /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW)
                fn(arg, TP__OS_NOTIFY_OVERFLOW, -1, NULL);
            else if (ev->mask & IN_IGNORED) /* watch gone (inode freed or removed) */
                fn(arg, TP__OS_NOTIFY_GONE, ev->wd, NULL);
            else
                fn(arg, TP__OS_NOTIFY_CHANGE, ev->wd, ev->len ? ev->name : NULL);
        }
    }
}

/* ---- files and scheduling -------------------------------------------------- */

ssize_t tp__os_copy_range(int in, off_t *in_off, int out, off_t *out_off, size_t len) {
    ssize_t n = copy_file_range(in, in_off, out, out_off, len, 0);
    return n < 0 ? -errno : n;
}

int tp__os_sync(int fd, bool whole_fs) {
    int rc;
    do
        rc = whole_fs ? syncfs(fd) : fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : -errno;
}

int tp__os_rename_noreplace(const char *old, const char *new_path) {
    return renameat2(AT_FDCWD, old, AT_FDCWD, new_path, RENAME_NOREPLACE) == 0 ? 0 : -errno;
}

void tp__os_writeback_start(int fd, uint64_t off, uint64_t len) {
    (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int tp__os_thread_schedstat(pid_t tid, uint64_t *run_ns, uint64_t *wait_ns) {
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (n <= 0) return err ? err : -EIO;
    buf[n] = '\0';
    unsigned long long r, w;
    if (sscanf(buf, "%llu %llu", &r, &w) != 2) return -EPROTO;
    *run_ns = r;
    *wait_ns = w;
    return 0;
}

bool tp__os_sched_timer_thread(unsigned rt_priority) {
    (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* default is 50 us */
    if (rt_priority) {
        struct sched_param sp = {.sched_priority = (int)rt_priority};
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0) return true;
    }
#ifdef SYS_sched_setattr
    struct {
        uint32_t size, policy;
        uint64_t flags;
        int32_t nice;
        uint32_t priority;
        uint64_t runtime, deadline, period;
    } attr = {.size = 48, .policy = 0 /* SCHED_OTHER */, .runtime = 100 * 1000};
    (void)syscall(SYS_sched_setattr, 0, &attr, 0);
#endif
    return false;
}
