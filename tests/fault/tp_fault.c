/* SPDX-License-Identifier: MIT */
/*
 * tp_fault - an LD_PRELOAD shim that makes the Nth call of a kind fail.
 *
 *   TP_FAULT="op:N:kind[,op:N:kind...]"
 *       op    open (open, openat, their 64 and fortified forms, creat), read,
 *             pread, write, pwrite, fsync (fsync, fdatasync, syncfs), rename
 *             (rename, renameat, renameat2, link), unlink (unlink, unlinkat),
 *             cfr (copy_file_range), malloc (malloc, calloc, realloc)
 *       N     the Nth call of that op (counted from 1) fails, once
 *       kind  EIO ENOSPC EINTR EMFILE ENOMEM EXDEV EINVAL EACCES, or short:
 *             a read/write/copy that does half of what was asked
 *   TP_FAULT_PATH=s  only calls on a path containing s count: by path for
 *             open, rename, unlink; by descriptor for the others (a
 *             descriptor counts when it was opened through this shim on a
 *             matching path, or openat'ed relative to such a directory).
 *             malloc counts every call (of every thread) after the shim's
 *             constructor. Unset: every call counts.
 *   TP_FAULT_LOG=file  one line appended per injected fault (written with
 *             raw system calls, never counted); its absence after a run says
 *             that run's N was past the last call of that op.
 *
 * Counting only the files under test keeps the Nth call the same from run to
 * run (libc, the loader and the sanitizers make calls of their own). Calls
 * made inside glibc (fopen, mkostemp, scandir) do not go through the PLT and
 * are not seen; the engine makes its file calls directly.
 *
 * Sanitizers: under ASan and TSan the preloaded shim sits in front of the
 * runtime's interceptors (run with ASAN_OPTIONS=verify_asan_link_order=0);
 * it forwards to the next definition (dlsym RTLD_NEXT), i.e. the
 * interceptor, which then calls libc. Its own code is not instrumented.
 * The malloc faults are built only for the plain build: under ASan and TSan
 * the heap belongs to the runtime, which allocates for strdup, getline,
 * scandir, realpath and more inside its interceptors without calling any
 * malloc symbol, so a count here would miss most allocations, and the
 * shim's malloc would have to forward to the runtime's through dlsym, which
 * can itself allocate while the shim starts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if !defined(TP_SANITIZER_ADDRESS) && !defined(TP_SANITIZER_THREAD)
#define TPF_MALLOC 1
#endif

enum op {
    OP_OPEN,
    OP_READ,
    OP_PREAD,
    OP_WRITE,
    OP_PWRITE,
    OP_FSYNC,
    OP_RENAME,
    OP_UNLINK,
    OP_CFR,
    OP_MALLOC,
    OP_N
};
static const char *const op_names[OP_N] = {"open",  "read",   "pread",  "write", "pwrite",
                                           "fsync", "rename", "unlink", "cfr",   "malloc"};

#define KIND_SHORT (-1)
#define MAX_RULES 8
struct rule {
    int op;
    unsigned long n;
    int kind; /* errno, or KIND_SHORT */
};
static struct rule rules[MAX_RULES];
static int nrules;
static _Atomic unsigned long counts[OP_N];
static char match[512];
static bool match_all = true;
static char logpath[512];
static atomic_bool ready;

/* Descriptors opened on matching paths. */
#define MAX_FD 65536
static atomic_uchar marked[MAX_FD];

static bool fd_marked(int fd) {
    return match_all || (fd >= 0 && fd < MAX_FD && atomic_load(&marked[fd]));
}
static void fd_mark(int fd, bool on) {
    if (fd >= 0 && fd < MAX_FD) atomic_store(&marked[fd], on);
}
static bool path_matches(const char *p) {
    return match_all || (p && strstr(p, match) != NULL);
}

static void log_line(const char *op, unsigned long n, int kind, const char *what) {
    if (!logpath[0]) return;
    char buf[768];
    const char *k = kind == KIND_SHORT ? "short" : strerrorname_np(kind);
    int len = snprintf(buf, sizeof(buf), "tp_fault: %s call %lu: %s (%s)\n", op, n, k ? k : "?",
                       what ? what : "");
    if (len < 0) return;
    if ((size_t)len >= sizeof(buf)) len = sizeof(buf) - 1;
    long fd =
        syscall(SYS_openat, AT_FDCWD, logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    (void)syscall(SYS_write, (int)fd, buf, (size_t)len);
    (void)syscall(SYS_close, (int)fd);
}

/* Count a call of op; returns the kind to inject, or 0. */
static int hit(int op, const char *what) {
    if (!atomic_load_explicit(&ready, memory_order_acquire) || nrules == 0) return 0;
    unsigned long n = atomic_fetch_add(&counts[op], 1) + 1;
    for (int i = 0; i < nrules; i++)
        if (rules[i].op == op && rules[i].n == n) {
            log_line(op_names[op], n, rules[i].kind, what);
            return rules[i].kind;
        }
    return 0;
}

static int parse_kind(const char *s) {
    static const struct {
        const char *n;
        int e;
    } k[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EINTR", EINTR},
             {"EMFILE", EMFILE}, {"ENOMEM", ENOMEM}, {"EXDEV", EXDEV},
             {"EINVAL", EINVAL}, {"EACCES", EACCES}, {"short", KIND_SHORT}};
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
        if (strcmp(s, k[i].n) == 0) return k[i].e;
    return 0;
}

__attribute__((constructor)) static void tpf_init(void) {
    const char *m = getenv("TP_FAULT_PATH");
    if (m && *m) {
        snprintf(match, sizeof(match), "%s", m);
        match_all = false;
    }
    const char *l = getenv("TP_FAULT_LOG");
    if (l) snprintf(logpath, sizeof(logpath), "%s", l);
    const char *spec = getenv("TP_FAULT");
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && nrules < MAX_RULES;
         t = strtok_r(NULL, ",", &save)) {
        char op[32], kind[32];
        unsigned long n;
        if (sscanf(t, "%31[^:]:%lu:%31s", op, &n, kind) != 3) goto bad;
        int o = -1;
        for (int i = 0; i < OP_N; i++)
            if (strcmp(op, op_names[i]) == 0) o = i;
        int k = parse_kind(kind);
        if (o < 0 || k == 0 || n == 0) goto bad;
        bool data = o == OP_READ || o == OP_PREAD || o == OP_WRITE || o == OP_PWRITE || o == OP_CFR;
        if ((k == KIND_SHORT && !data) || (o == OP_MALLOC && k != ENOMEM)) goto bad;
#ifndef TPF_MALLOC
        if (o == OP_MALLOC) {
            static const char msg[] =
                "tp_fault: malloc faults are built for the plain build only\n";
            (void)syscall(SYS_write, 2, msg, sizeof(msg) - 1);
            _exit(125);
        }
#endif
        rules[nrules++] = (struct rule){o, n, k};
        continue;
    bad : {
        static const char msg[] = "tp_fault: bad TP_FAULT rule (want op:N:kind)\n";
        (void)syscall(SYS_write, 2, msg, sizeof(msg) - 1);
        _exit(125);
    }
    }
    atomic_store_explicit(&ready, true, memory_order_release);
}

#define REAL(name)                                                                                 \
    static __typeof__(&name) real_##name;                                                          \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static int fail(int e) {
    errno = e;
    return -1;
}

/* ---- open ------------------------------------------------------------------- */

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

static int after_open(int fd, bool m) {
    if (fd >= 0) fd_mark(fd, m);
    return fd;
}

static int do_openat(openat_fn real, int dirfd, const char *path, int flags, mode_t mode) {
    bool m = path_matches(path) ||
             (path[0] != '/' && dirfd != AT_FDCWD && fd_marked(dirfd) && !match_all);
    if (m) {
        int k = hit(OP_OPEN, path);
        if (k > 0) return fail(k);
    }
    return after_open(real(dirfd, path, flags, mode), m);
}

static int do_open(open_fn real, const char *path, int flags, mode_t mode) {
    bool m = path_matches(path);
    if (m) {
        int k = hit(OP_OPEN, path);
        if (k > 0) return fail(k);
    }
    return after_open(real(path, flags, mode), m);
}

int open(const char *path, int flags, ...) {
    REAL(open);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(real_open, path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    REAL(open64);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(real_open64, path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(real_openat, dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(real_openat64, dirfd, path, flags, mode);
}
int __open_2(const char *path, int flags) {
    REAL(open);
    return do_open(real_open, path, flags, 0);
}
int __open64_2(const char *path, int flags) {
    REAL(open64);
    return do_open(real_open64, path, flags, 0);
}
int __openat_2(int dirfd, const char *path, int flags) {
    REAL(openat);
    return do_openat(real_openat, dirfd, path, flags, 0);
}
int __openat64_2(int dirfd, const char *path, int flags) {
    REAL(openat64);
    return do_openat(real_openat64, dirfd, path, flags, 0);
}
int creat(const char *path, mode_t mode) {
    REAL(open);
    return do_open(real_open, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
    REAL(close);
    fd_mark(fd, false);
    return real_close(fd);
}

/* ---- data ---------------------------------------------------------------------- */

#define FD_HIT(op, fd) (fd_marked(fd) ? hit(op, "fd") : 0)

ssize_t read(int fd, void *buf, size_t n) {
    REAL(read);
    int k = FD_HIT(OP_READ, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_read(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
    REAL(pread);
    int k = FD_HIT(OP_PREAD, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_pread(fd, buf, n, off);
}
ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
    REAL(pread64);
    int k = FD_HIT(OP_PREAD, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_pread64(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    int k = FD_HIT(OP_WRITE, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    int k = FD_HIT(OP_PWRITE, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_pwrite(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64);
    int k = FD_HIT(OP_PWRITE, fd);
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t copy_file_range(int in, off_t *ip, int out, off_t *op, size_t n, unsigned flags) {
    REAL(copy_file_range);
    int k = fd_marked(in) || fd_marked(out) ? hit(OP_CFR, "fd") : 0;
    if (k > 0) return fail(k);
    if (k == KIND_SHORT && n > 1) n /= 2;
    return real_copy_file_range(in, ip, out, op, n, flags);
}

int fsync(int fd) {
    REAL(fsync);
    int k = FD_HIT(OP_FSYNC, fd);
    if (k > 0) return fail(k);
    return real_fsync(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync);
    int k = FD_HIT(OP_FSYNC, fd);
    if (k > 0) return fail(k);
    return real_fdatasync(fd);
}
int syncfs(int fd) {
    REAL(syncfs);
    int k = FD_HIT(OP_FSYNC, fd);
    if (k > 0) return fail(k);
    return real_syncfs(fd);
}

/* ---- names -------------------------------------------------------------------- */

int rename(const char *a, const char *b) {
    REAL(rename);
    int k = path_matches(a) || path_matches(b) ? hit(OP_RENAME, b) : 0;
    if (k > 0) return fail(k);
    return real_rename(a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
    REAL(renameat);
    int k = path_matches(a) || path_matches(b) ? hit(OP_RENAME, b) : 0;
    if (k > 0) return fail(k);
    return real_renameat(da, a, db, b);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned flags) {
    REAL(renameat2);
    int k = path_matches(a) || path_matches(b) ? hit(OP_RENAME, b) : 0;
    if (k > 0) return fail(k);
    return real_renameat2(da, a, db, b, flags);
}
int link(const char *a, const char *b) {
    REAL(link);
    int k = path_matches(a) || path_matches(b) ? hit(OP_RENAME, b) : 0;
    if (k > 0) return fail(k);
    return real_link(a, b);
}
int unlink(const char *p) {
    REAL(unlink);
    int k = path_matches(p) ? hit(OP_UNLINK, p) : 0;
    if (k > 0) return fail(k);
    return real_unlink(p);
}
int unlinkat(int d, const char *p, int flags) {
    REAL(unlinkat);
    int k = path_matches(p) || (p[0] != '/' && !match_all && fd_marked(d)) ? hit(OP_UNLINK, p) : 0;
    if (k > 0) return fail(k);
    return real_unlinkat(d, p, flags);
}

/* ---- memory (plain build only: see the top) ----------------------------------- */

#ifdef TPF_MALLOC
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n) {
    if (hit(OP_MALLOC, "malloc") == ENOMEM) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (hit(OP_MALLOC, "calloc") == ENOMEM) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (hit(OP_MALLOC, "realloc") == ENOMEM) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}
#endif
