/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 30
 * Temporary output names (src/engine/tmpfile.c): what is and is not a temp
 * name, that a created temp has the form with our pid, and that the sweep
 * removes exactly the stale temps (dead writer) of the outputs it is given:
 * never a live writer's, another output's, a non-regular file, or a name
 * not of the form. */
#include "tp_test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/engine_internal.h"

static char dir[256];

static void test_parse(void **state) {
    (void)state;
    size_t bl = 0;
    long pid = 0;
    assert_true(tp__tmp_parse(".a.zst.tp.1234.AbC9xz", &bl, &pid));
    assert_int_equal(bl, 5); /* "a.zst" */
    assert_int_equal(pid, 1234);
    assert_true(tp__tmp_parse(".x.tp.1.000000", &bl, &pid));
    assert_int_equal(bl, 1);
    assert_int_equal(pid, 1);
    /* not the form: no leading dot, no pid, leading zero, 5 or 7 random
     * characters, a bad character, no base, a pid of 11 digits */
    const char *bad[] = {"a.zst.tp.1234.AbC9xz",
                         ".a.zst.tp..AbC9xz",
                         ".a.zst.tp.0123.AbC9xz",
                         ".a.zst.tp.1234.AbC9x",
                         ".a.zst.tp.1234.AbC9xzz",
                         ".a.zst.tp.1234.AbC-xz",
                         "..tp.1234.AbC9xz",
                         ".a.tp.12345678901.AbC9xz",
                         ".a.zst.tpx1234.AbC9xz",
                         ".a.zst.XXXXXX",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tp__tmp_parse(bad[i], NULL, NULL)) fail_msg("'%s' parsed as a temp name", bad[i]);
    }
}

static void test_create(void **state) {
    (void)state;
    char out[320], *tmp = NULL;
    snprintf(out, sizeof(out), "%s/file.zst", dir);
    int fd = -1;
    assert_int_equal(tp__tmp_create(out, 0600, &tmp, &fd), 0);
    assert_true(fd >= 0);
    const char *base = strrchr(tmp, '/') + 1;
    size_t bl;
    long pid;
    assert_true(tp__tmp_parse(base, &bl, &pid));
    assert_int_equal(pid, (long)getpid());
    assert_int_equal(bl, strlen("file.zst"));
    assert_memory_equal(base + 1, "file.zst", bl);
    assert_int_equal(strncmp(tmp, dir, strlen(dir)), 0); /* beside the output */
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a second one for the same output is another file */
    char *tmp2 = NULL;
    int fd2 = -1;
    assert_int_equal(tp__tmp_create(out, 0600, &tmp2, &fd2), 0);
    assert_string_not_equal(tmp, tmp2);
    close(fd);
    close(fd2);
    unlink(tmp);
    unlink(tmp2);
    free(tmp);
    free(tmp2);
}

static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    assert_true(p > 0);
    assert_int_equal(waitpid(p, NULL, 0), p);
    return (long)p; /* reaped: no such process (unless reused at once) */
}

static void touch(const char *name) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static bool exists(const char *name) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return lstat(p, &st) == 0;
}

static void test_sweep(void **state) {
    (void)state;
    long dead = dead_pid();
    char stale[128], stale2[128], live[128], other[128], sdir[128], slink[128];
    snprintf(stale, sizeof(stale), ".out.zst.tp.%ld.Abcdef", dead);
    snprintf(stale2, sizeof(stale2), ".out.zst.tp.%ld.Zyxwvu", dead);
    snprintf(live, sizeof(live), ".out.zst.tp.%ld.Abcdef", (long)getpid());
    snprintf(other, sizeof(other), ".other.zst.tp.%ld.Abcdef", dead);
    snprintf(sdir, sizeof(sdir), ".out.zst.tp.%ld.Dir000", dead);
    snprintf(slink, sizeof(slink), ".out.zst.tp.%ld.Lnk000", dead);
    touch(stale);
    touch(stale2);
    touch(live);
    touch(other);
    touch(".out.zst.tp.x.Abcdef");
    touch("out.zst.tp.1.Abcdef");
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, sdir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/%s", dir, slink);
    assert_int_equal(symlink("nowhere", p), 0);

    char out[320];
    snprintf(out, sizeof(out), "%s/out.zst", dir);
    const char *outs[] = {out, NULL};
    assert_int_equal(tp__tmp_sweep(outs, 2), 2);
    assert_false(exists(stale));
    assert_false(exists(stale2));
    assert_true(exists(live));
    assert_true(exists(other)); /* not an output of this job */
    assert_true(exists(".out.zst.tp.x.Abcdef"));
    assert_true(exists("out.zst.tp.1.Abcdef"));
    assert_true(exists(sdir)); /* only regular files */
    assert_true(exists(slink));
    assert_int_equal(tp__tmp_sweep(outs, 2), 0); /* nothing left to remove */
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tp_unit_tmpname.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
