/* SPDX-License-Identifier: MIT */
/*
 * promtool check for Prometheus text output. Standalone (no tripool headers)
 * so leaf-module tests such as metrics_registry can use it too.
 */
#ifndef TP_PROMTOOL_H
#define TP_PROMTOOL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Run `promtool check metrics` on a Prometheus text exposition; returns its
 * exit status as system() does (0 = valid). */
static inline int tp_test_promtool_check(const char *text) {
    char path[] = "/tmp/tp_promtool_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s >/dev/null 2>&1", path);
    int rc = system(cmd);
    unlink(path);
    return rc;
}

#endif
