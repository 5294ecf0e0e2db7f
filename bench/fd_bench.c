/* SPDX-License-Identifier: MIT */
/*
 * File-handle pool benchmark (issue 5 "Performance").
 *
 *   fd_bench setup DIR NFILES FILE_KIB     create the files (once)
 *   fd_bench reads DIR NFILES WS READS MAX_OPEN THREADS [MIN_USES]
 *       READS random 4 KiB preads over the first WS of NFILES files, split
 *       over THREADS threads, two ways: through a pool with MAX_OPEN
 *       (acquire + tp_fd_pread + release) and open + pread + close per read
 *       (the peer). Prints one line per way: ns/read, reads/s, errors.
 *   fd_bench nofile DIR NFILES SOFT MAX_OPEN
 *       Sets the soft RLIMIT_NOFILE to SOFT, then reads 4 KiB from each of
 *       NFILES files through a pool (MAX_OPEN 0 = default) while the
 *       program also holds descriptors of its own; counts errors that reach
 *       the caller (EMFILE must be 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tripool/fd.h"

#define READ_SIZE 4096

static char g_dir[512];
static unsigned g_nfiles, g_ws, g_file_blocks = 2;

static void path_of(char *out, size_t n, unsigned i) {
    snprintf(out, n, "%s/d%02u/f%05u", g_dir, i % 100, i);
}

static int setup(unsigned file_kib) {
    char *block = malloc(1024);
    for (int i = 0; i < 1024; i++)
        block[i] = (char)('a' + i % 26);
    for (unsigned d = 0; d < 100; d++) {
        char p[600];
        snprintf(p, sizeof p, "%s/d%02u", g_dir, d);
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return perror(p), 1;
    }
    for (unsigned i = 0; i < g_nfiles; i++) {
        char p[600];
        path_of(p, sizeof p, i);
        struct stat st;
        if (stat(p, &st) == 0 && st.st_size == (off_t)file_kib * 1024) continue;
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return perror(p), 1;
        for (unsigned k = 0; k < file_kib; k++) {
            if (write(fd, block, 1024) != 1024) return perror("write"), 1;
        }
        close(fd);
    }
    free(block);
    return 0;
}

struct job {
    tp_fdpool *fp; /* NULL = open/pread/close */
    unsigned reads;
    unsigned seed;
    unsigned errors;
    int first_err;
    uint64_t checksum;
};

static void *run_job(void *arg) {
    struct job *j = arg;
    char buf[READ_SIZE];
    char p[600];
    unsigned s = j->seed;
    for (unsigned k = 0; k < j->reads; k++) {
        s = s * 1103515245u + 12345u;
        unsigned i = (s >> 4) % g_ws;
        s = s * 1103515245u + 12345u;
        uint64_t off = (uint64_t)((s >> 8) % g_file_blocks) * READ_SIZE;
        path_of(p, sizeof p, i);
        ssize_t n;
        if (j->fp) {
            tp_fd *h;
            int rc = tp_fd_acquire(j->fp, p, O_RDONLY, 0, &h);
            if (rc) {
                j->errors++;
                j->first_err = j->first_err ? j->first_err : rc;
                continue;
            }
            n = tp_fd_pread(h, buf, READ_SIZE, off);
            tp_fd_release(j->fp, h);
        } else {
            int fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                j->errors++;
                j->first_err = j->first_err ? j->first_err : -errno;
                continue;
            }
            n = pread(fd, buf, READ_SIZE, (off_t)off);
            close(fd);
        }
        if (n != READ_SIZE) {
            j->errors++;
            continue;
        }
        j->checksum += (unsigned char)buf[k % READ_SIZE];
    }
    return NULL;
}

/* CPU time (user + system) of the whole process, ns. */
static uint64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

struct tally {
    uint64_t wall, cpu;
    unsigned errors;
    int first_err;
};

/* Run reads over threads; adds wall/CPU time and errors to *t. */
static void run_reads(tp_fdpool *fp, unsigned reads, unsigned threads, unsigned seed,
                      struct tally *t) {
    pthread_t *th = calloc(threads, sizeof *th);
    struct job *j = calloc(threads, sizeof *j);
    uint64_t w0 = tp_now_ns(), c0 = cpu_ns();
    for (unsigned i = 0; i < threads; i++) {
        j[i] = (struct job){fp, reads / threads, seed + i * 7919u, 0, 0, 0};
        pthread_create(&th[i], NULL, run_job, &j[i]);
    }
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        t->errors += j[i].errors;
        if (!t->first_err) t->first_err = j[i].first_err;
    }
    t->wall += tp_now_ns() - w0;
    t->cpu += cpu_ns() - c0;
    free(th);
    free(j);
}

/* Pool and peer run in 10 interleaved segments each, so machine noise (other
 * processes on a shared box) hits both alike; CPU time is also reported
 * because it does not count time the process was not running. */
static int bench_reads(unsigned reads, unsigned max_open, unsigned threads, unsigned min_uses) {
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = max_open;
    o.min_uses = min_uses ? min_uses : 1;
    tp_fdpool *fp;
    int rc = tp_fdpool_create(&fp, &o);
    if (rc) return fprintf(stderr, "create: %s\n", tp_strerror(rc)), 1;
    struct tally warm = {0}, tp = {0}, tn = {0};
    /* Warm the page cache and the pool once, untimed. */
    run_reads(NULL, reads / 4, 1, 1, &warm);
    run_reads(fp, reads / 4, 1, 1, &warm);
    const unsigned segs = 10;
    for (unsigned k = 0; k < segs; k++) {
        run_reads(fp, reads / segs, threads, 12345u + k * 101u, &tp);
        run_reads(NULL, reads / segs, threads, 12345u + k * 101u, &tn);
    }
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    printf("way=pool ws=%u files=%u max_open=%u min_uses=%u threads=%u reads=%u ns_per_read=%.0f "
           "cpu_ns_per_read=%.0f reads_per_s=%.0f errors=%u first_error=%d hits=%llu "
           "misses=%llu evictions=%llu peak_open=%u\n",
           g_ws, g_nfiles, max_open, o.min_uses, threads, reads, (double)tp.wall / reads,
           (double)tp.cpu / reads, reads * 1e9 / (double)tp.wall, tp.errors, tp.first_err,
           (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.evictions, st.peak_open);
    printf("way=open_pread_close ws=%u files=%u threads=%u reads=%u ns_per_read=%.0f "
           "cpu_ns_per_read=%.0f reads_per_s=%.0f errors=%u first_error=%d\n",
           g_ws, g_nfiles, threads, reads, (double)tn.wall / reads, (double)tn.cpu / reads,
           reads * 1e9 / (double)tn.wall, tn.errors, tn.first_err);
    printf("ratio ws=%u threads=%u min_uses=%u pool_speedup=%.2f pool_cpu_speedup=%.2f\n", g_ws,
           threads, o.min_uses, (double)tn.wall / (double)tp.wall, (double)tn.cpu / (double)tp.cpu);
    tp_fdpool_destroy(fp);
    return tp.errors || tn.errors;
}

static int bench_nofile(rlim_t soft, unsigned max_open) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = soft;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return perror("setrlimit"), 1;
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = max_open;
    tp_fdpool *fp;
    int rc = tp_fdpool_create(&fp, &o);
    if (rc) return fprintf(stderr, "create: %s\n", tp_strerror(rc)), 1;
    /* Other code in the process takes descriptors too: a quarter of the
     * limit, grabbed and dropped while the pool works. */
    int other[64];
    unsigned nother = 0;
    unsigned errors = 0, emfile = 0;
    char buf[READ_SIZE], p[600];
    uint64_t t0 = tp_now_ns();
    for (unsigned i = 0; i < g_nfiles; i++) {
        if (i % 500 == 0) {
            while (nother > 0)
                close(other[--nother]);
            while (nother < soft / 4 && nother < 64) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd < 0) break;
                other[nother++] = fd;
            }
        }
        path_of(p, sizeof p, i);
        tp_fd *h;
        rc = tp_fd_acquire(fp, p, O_RDONLY, 0, &h);
        if (rc) {
            errors++;
            emfile += rc == -EMFILE || rc == -ENFILE;
            continue;
        }
        if (tp_fd_pread(h, buf, sizeof buf, 0) != READ_SIZE) errors++;
        tp_fd_release(fp, h);
    }
    uint64_t dt = tp_now_ns() - t0;
    while (nother > 0)
        close(other[--nother]);
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    printf("nofile soft=%llu max_open=%u(%s) files=%u errors=%u emfile_to_caller=%u "
           "emfile_retries=%llu evictions=%llu peak_open=%u ms=%.1f\n",
           (unsigned long long)soft, st.max_open, max_open ? "set" : "default", g_nfiles, errors,
           emfile, (unsigned long long)st.emfile_retries, (unsigned long long)st.evictions,
           st.peak_open, dt / 1e6);
    tp_fdpool_destroy(fp);
    return errors != 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "setup") == 0) {
        snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
        g_nfiles = (unsigned)atoi(argv[3]);
        return setup((unsigned)atoi(argv[4]));
    }
    if (argc >= 8 && strcmp(argv[1], "reads") == 0) {
        snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
        g_nfiles = (unsigned)atoi(argv[3]);
        g_ws = (unsigned)atoi(argv[4]);
        if (g_ws == 0 || g_ws > g_nfiles) g_ws = g_nfiles;
        return bench_reads((unsigned)atoi(argv[5]), (unsigned)atoi(argv[6]),
                           (unsigned)atoi(argv[7]) ? (unsigned)atoi(argv[7]) : 1,
                           argc > 8 ? (unsigned)atoi(argv[8]) : 1);
    }
    if (argc >= 6 && strcmp(argv[1], "nofile") == 0) {
        snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
        g_nfiles = (unsigned)atoi(argv[3]);
        return bench_nofile((rlim_t)atoi(argv[4]), (unsigned)atoi(argv[5]));
    }
    fprintf(stderr, "usage: fd_bench setup DIR NFILES FILE_KIB\n"
                    "       fd_bench reads DIR NFILES WS READS MAX_OPEN THREADS [MIN_USES]\n"
                    "       fd_bench nofile DIR NFILES SOFT MAX_OPEN\n");
    return 2;
}
