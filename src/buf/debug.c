/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool's debug checks (o.debug; DESIGN in buf_internal.h): the
 * registry of every buffer the pool allocated (a tsearch tree under dbg_mu,
 * so a put of a foreign or freed pointer is caught before it is read), and
 * poisoning (retained buffers are filled with POISON_BYTE and poisoned for
 * ASan; a get verifies the fill, so a write after put is caught). The
 * always-on part of the put checks (magic, owner, double put) is inline in
 * buf_internal.h (check_put), because every put through the full path runs it.
 */
#include "buf/buf_internal.h"

#include <search.h>

static int ptr_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

void tp__buf_dbg_add(tp_bufpool *bp, tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    void *r = tsearch(b, &bp->dbg_root, ptr_cmp);
    pthread_mutex_unlock(&bp->dbg_mu);
    TP__CHECK(r, "buffer pool debug registry out of memory");
}

bool tp__buf_dbg_has(tp_bufpool *bp, const tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    bool found = tfind(b, &bp->dbg_root, ptr_cmp) != NULL;
    pthread_mutex_unlock(&bp->dbg_mu);
    return found;
}

void tp__buf_dbg_del(tp_bufpool *bp, tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    tdelete(b, &bp->dbg_root, ptr_cmp);
    pthread_mutex_unlock(&bp->dbg_mu);
}

static void nofree(void *p) {
    (void)p;
}

void tp__buf_dbg_destroy(tp_bufpool *bp) {
    if (bp->dbg_root) tdestroy(bp->dbg_root, nofree);
    bp->dbg_root = NULL;
}

void tp__buf_dbg_poison(tp_buf *b) {
    memset(b->data, POISON_BYTE, b->cap);
    TP_POISON(b->data, b->cap);
}

void tp__buf_dbg_check_poison(tp_bufpool *bp, tp_buf *b) {
    TP_UNPOISON(b->data, b->cap);
    for (size_t i = 0; i < b->cap; i++) {
        TP__CHECK(b->data[i] == POISON_BYTE,
                  "tp_buf_get: buffer %p was written after it was put (byte %zu, pool '%s')",
                  (void *)b, i, bp->name);
    }
}
