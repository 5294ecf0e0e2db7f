/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * buf.h: "Buffers handed out and not yet put (exact when no get/put runs)"
 * (tp_bufpool_outstanding) and "it is exact when quiet" (tp_bufpool_stats),
 * also while the pool's own aging tick runs on the timer service thread
 * (tick_interval_ns). Every buffer is put back, then the test only reads the
 * stats while ticks free the idle buffers: outstanding must read 0 every
 * time and in-use bytes 0. Before the fix a tick took the freed buffers out
 * of the retained count under the depot lock but out of the allocation
 * count only after it, so a reader in between saw them as outstanding
 * (found by the soak test, tests/soak/mixed.c). */
#include <sched.h>

#include "tp_test.h"
#include "tripool/buf.h"

#define NBUF 16
#define SIZE ((size_t)256 << 10) /* mapped class: freeing takes long enough to be seen */

static void test_outstanding_exact_while_aging(void **st) {
    (void)st;
    tp_timers *tm;
    assert_int_equal(tp_timers_create(&tm, NULL), 0);
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.thread_cache = false; /* puts go straight to the depot the tick ages */
    o.tick_ops = 0;
    o.tick_interval_ns = 20 * TP_NSEC_PER_USEC;
    o.timers = tm;
    tp_bufpool *bp;
    assert_int_equal(tp_bufpool_create(&bp, &o), 0);
    unsigned cycles = tp_test_scale(400), wrong = 0, reads = 0;
    uint64_t aged_before = 0;
    for (unsigned c = 0; c < cycles; c++) {
        tp_buf *b[NBUF];
        for (int i = 0; i < NBUF; i++) {
            b[i] = tp_buf_get(bp, SIZE);
            assert_non_null(b[i]);
            b[i]->data[0] = 1; /* touch: a real page to unmap */
        }
        for (int i = 0; i < NBUF; i++)
            tp_buf_put(bp, b[i]);
        /* quiet from here: read until the ticks have freed them */
        uint64_t end = tp_now_ns() + 5 * TP_NSEC_PER_SEC; /* loaded machines */
        struct tp_bufpool_stats s;
        do {
            tp_bufpool_stats(bp, &s);
            reads++;
            if (s.total.outstanding != 0 || s.total.inuse_bytes != 0) wrong++;
            sched_yield(); /* leave the timer thread a CPU */
        } while (s.aged < aged_before + NBUF && tp_now_ns() < end);
        /* the timer's ticks freed exactly this cycle's buffers */
        assert_int_equal(s.aged, aged_before + NBUF);
        tp_bufpool_stats(bp, &s); /* aged is read after retained: read again */
        assert_int_equal(s.total.retained, 0);
        aged_before = s.aged;
    }
    printf("buf_stats_tick: %u cycles, %u stats reads, %u showed buffers outstanding\n", cycles,
           reads, wrong);
    assert_int_equal(wrong, 0);
    assert_int_equal(tp_bufpool_outstanding(bp), 0);
    tp_bufpool_destroy(bp);
    tp_timers_destroy(tm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outstanding_exact_while_aging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
