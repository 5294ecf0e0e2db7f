/* SPDX-License-Identifier: MIT */
/*
 * Retry with exponential backoff and full jitter (see tp_retry() in ctx.h).
 * Not concurrent: all state is on the caller's stack; the only shared object
 * is the context, used through its thread-safe API.
 */
#include <string.h>

#include "tripool/ctx.h"
#include "internal/os.h"

void tp_retry_opts_init(tp_retry_opts *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof(*opts));
    opts->max_attempts = 5;
    opts->base_ns = 10 * TP_NSEC_PER_MSEC;
    opts->cap_ns = TP_NSEC_PER_SEC;
    opts->max_elapsed_ns = TP_FOREVER;
    opts->retryable = tp_retry_default_retryable;
}

bool tp_retry_default_retryable(int err, void *pred_arg) {
    (void)pred_arg;
    switch (-err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ETIMEDOUT:
    case EINTR:
    case EBUSY:
    case ENOBUFS:
    case ENOMEM:
    case ECONNRESET:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

/* splitmix64: a small, good generator for jitter (not for secrets). */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* min(cap, base * 2^(attempt-1)) without overflow. */
static uint64_t backoff_bound(const tp_retry_opts *o, unsigned attempt) {
    uint64_t b = o->base_ns;
    for (unsigned i = 1; i < attempt && b < o->cap_ns; i++)
        b = b > o->cap_ns / 2 ? o->cap_ns : b * 2;
    return b < o->cap_ns ? b : o->cap_ns;
}

int tp_retry(tp_ctx *c, const tp_retry_opts *opts, int (*fn)(void *arg, unsigned attempt),
             void *arg) {
    tp_retry_opts o;
    tp_retry_opts_init(&o);
    if (opts) o = *opts;
    if (!fn || o.cap_ns < o.base_ns) return -EINVAL;
    if (!o.retryable) o.retryable = tp_retry_default_retryable;
    uint64_t seed = o.seed ? o.seed : tp__now_ns() ^ (uint64_t)(uintptr_t)&o;
    uint64_t start = tp__now_ns();

    int last = 0;
    for (unsigned attempt = 1;; attempt++) {
        int cerr = tp_ctx_err(c);
        if (cerr) return cerr;
        last = fn(arg, attempt);
        if (last >= 0) return last;
        if (!o.retryable(last, o.pred_arg)) return last;
        if (o.max_attempts && attempt >= o.max_attempts) return last;
        if (attempt == UINT32_MAX) return last;

        uint64_t bound = backoff_bound(&o, attempt);
        uint64_t r = next_rand(&seed);
        uint64_t sleep = bound == UINT64_MAX ? r : r % (bound + 1);
        uint64_t now = tp__now_ns();
        if (o.max_elapsed_ns != TP_FOREVER && now - start + sleep > o.max_elapsed_ns) return last;
        if (sleep) {
            int w = tp_ctx_wait(c, sleep);
            if (w != -EAGAIN) return w; /* c is done */
        }
    }
}
