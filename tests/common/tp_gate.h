/* SPDX-License-Identifier: MIT */
/*
 * A gate for pool tests: gate_task() counts itself in gate_waiting and
 * blocks until the test sets gate_open, so a test can hold workers busy at
 * a known point. reset() closes the gate and zeroes the count. One gate per
 * test binary (static state).
 */
#ifndef TP_GATE_H
#define TP_GATE_H

#include <stdatomic.h>

#include "tp_test.h"

static atomic_int gate_open;
static atomic_int gate_waiting;

static int gate_task(void *arg) {
    (void)arg;
    atomic_fetch_add(&gate_waiting, 1);
    while (!atomic_load(&gate_open))
        tp_test_sleep_ms(1);
    return 0;
}

static void reset(void) {
    atomic_store(&gate_open, 0);
    atomic_store(&gate_waiting, 0);
}

#endif
