/* SPDX-License-Identifier: MIT */
/*
 * Temporary output files: the one place that knows their names.
 *
 * An output "dir/base" is written as "dir/.base.tp.PID.XXXXXX" (PID: the
 * writer's process id in decimal; XXXXXX: 6 characters of [A-Za-z0-9]),
 * created with O_EXCL, and renamed to "dir/base" when complete. A writer
 * killed (kill -9, power loss) leaves its temp behind; the next run that
 * writes "dir/base" removes the temps of "dir/base" whose PID is not a live
 * process (kill(PID, 0) fails with ESRCH) before it starts. A name that
 * does not have exactly this form, or whose PID is alive (a concurrent run,
 * or a reused PID: kept, to be safe), is never touched. PIDs are those of
 * the writer's PID namespace: runs in different namespaces writing the same
 * directory must not share outputs.
 *
 * Not concurrent: plain functions; the names they build are the caller's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_internal.h"

#define TMP_TAG ".tp."
#define TMP_RAND 6

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static uint64_t mix(uint64_t x) { /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int tp__tmp_create(const char *out, mode_t mode, char **tmp_out, int *fd_out) {
    static _Atomic uint64_t seq; /* relaxed: only makes names differ */
    *tmp_out = NULL;
    *fd_out = -1;
    const char *slash = strrchr(out, '/');
    size_t dl = slash ? (size_t)(slash - out) + 1 : 0;
    const char *base = out + dl;
    char pid[24];
    int pl = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    size_t need = dl + 1 + strlen(base) + strlen(TMP_TAG) + (size_t)pl + 1 + TMP_RAND + 1;
    char *t = malloc(need);
    if (!t) return -ENOMEM;
    for (int tries = 0; tries < 1000; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t r = mix(atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed) ^
                         ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid());
        char rnd[TMP_RAND + 1];
        for (int i = 0; i < TMP_RAND; i++, r /= 62)
            rnd[i] = alnum[r % 62];
        rnd[TMP_RAND] = 0;
        snprintf(t, need, "%.*s.%s" TMP_TAG "%s.%s", (int)dl, out, base, pid, rnd);
        int fd = open(t, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0) {
            *tmp_out = t;
            *fd_out = fd;
            return 0;
        }
        if (errno != EEXIST && errno != EINTR) break;
    }
    int err = errno ? -errno : -EEXIST;
    free(t);
    return err;
}

bool tp__tmp_parse(const char *name, size_t *baselen, long *pid) {
    size_t n = strlen(name), tl = strlen(TMP_TAG);
    if (n < 1 + 1 + tl + 1 + 1 + TMP_RAND || name[0] != '.') return false;
    const char *r = name + n - TMP_RAND;
    for (int i = 0; i < TMP_RAND; i++)
        if (!strchr(alnum, r[i]) || !r[i]) return false;
    if (r[-1] != '.') return false;
    const char *d = r - 1; /* the '.' before the random part; digits before it */
    const char *p = d;
    while (p > name && p[-1] >= '0' && p[-1] <= '9')
        p--;
    if (p == d || d - p > 10 || p[0] == '0') return false;
    if ((size_t)(p - name) < 1 + 1 + tl || memcmp(p - tl, TMP_TAG, tl) != 0) return false;
    long v = 0;
    for (const char *q = p; q < d; q++)
        v = v * 10 + (*q - '0');
    if (baselen) *baselen = (size_t)(p - tl - name) - 1;
    if (pid) *pid = v;
    return true;
}

static bool pid_dead(long pid) {
    if (pid <= 0 || pid == (long)getpid()) return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sweep one directory: remove stale temps whose base is in bases[0..n)
 * (sorted). Returns the number removed. */
static size_t sweep_dir(const char *dir, char **bases, size_t n) {
    DIR *d = opendir(dir[0] ? dir : ".");
    if (!d) return 0;
    size_t removed = 0;
    int dfd = dirfd(d);
    char *key = NULL;
    size_t keycap = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t bl;
        long pid;
        if (!tp__tmp_parse(de->d_name, &bl, &pid)) continue;
        if (bl + 1 > keycap) {
            char *k = realloc(key, bl + 1);
            if (!k) break;
            key = k;
            keycap = bl + 1;
        }
        memcpy(key, de->d_name + 1, bl);
        key[bl] = 0;
        if (!bsearch(&key, bases, n, sizeof(*bases), cmp_str) || !pid_dead(pid)) continue;
        struct stat st; /* only regular files: never a directory or link of that name */
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dfd, de->d_name, 0) == 0) removed++;
    }
    free(key);
    closedir(d);
    return removed;
}

struct outname {
    char *dir, *base;
};

static int cmp_out(const void *a, const void *b) {
    const struct outname *x = a, *y = b;
    int c = strcmp(x->dir, y->dir);
    return c ? c : strcmp(x->base, y->base);
}

size_t tp__tmp_sweep(const char *const *outs, size_t n) {
    struct outname *v = calloc(n ? n : 1, sizeof(*v));
    char **bases = calloc(n ? n : 1, sizeof(*bases));
    size_t m = 0, removed = 0;
    if (!v || !bases) goto out;
    for (size_t i = 0; i < n; i++) {
        if (!outs[i]) continue;
        const char *s = strrchr(outs[i], '/');
        size_t dl = s ? (size_t)(s - outs[i]) : 0;
        v[m].dir = s ? strndup(outs[i], dl ? dl : 1) : strdup("");
        v[m].base = strdup(s ? s + 1 : outs[i]);
        if (!v[m].dir || !v[m].base) {
            free(v[m].dir);
            free(v[m].base);
            break;
        }
        m++;
    }
    qsort(v, m, sizeof(*v), cmp_out);
    for (size_t i = 0; i < m;) {
        size_t k = i;
        while (k < m && strcmp(v[k].dir, v[i].dir) == 0) {
            bases[k - i] = v[k].base;
            k++;
        }
        removed += sweep_dir(v[i].dir, bases, k - i);
        i = k;
    }
out:
    for (size_t i = 0; v && i < m; i++) {
        free(v[i].dir);
        free(v[i].base);
    }
    free(v);
    free(bases);
    return removed;
}
