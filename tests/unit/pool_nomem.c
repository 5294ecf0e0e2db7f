/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Out of memory: create returns -ENOMEM and leaves nothing behind. Runs the
 * allocation failures in a forked child under RLIMIT_AS; the plain build
 * only, because the sanitizers' allocators abort on a failed allocation by
 * design (allocator_may_return_null=0) and reserve address space that an
 * address-space limit would break. */
#include "tp_test.h"

#include <sys/resource.h>
#include <sys/wait.h>

static int noop(void *arg) {
    (void)arg;
    return 0;
}

static void test_enomem(void **state) {
    (void)state;
    if (strcmp(tp_test_sanitizer(), "none") != 0) {
        print_message("sanitizer build: allocation failure not simulated (see header)\n");
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {512u << 20, 512u << 20}; /* 512 MiB of address space */
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(10);
        tp_pool_opts o;
        tp_pool_opts_init(&o);
        o.max_workers = 1;
        o.queue_cap = (size_t)1 << 26; /* 2 GiB of slots: cannot fit */
        tp_pool *p = (tp_pool *)0x1;
        if (tp_pool_create(&p, &o) != -ENOMEM || p != NULL) _exit(11);
        /* Memory is still usable afterwards: a normal pool works. */
        o.queue_cap = 1024;
        if (tp_pool_create(&p, &o) != 0) _exit(12);
        if (tp_submit(p, noop, NULL) != 0) _exit(13);
        if (tp_pool_close(p, TP_FOREVER) != 0) _exit(14);
        tp_pool_destroy(p);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_enomem)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
