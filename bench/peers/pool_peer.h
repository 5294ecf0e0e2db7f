/* SPDX-License-Identifier: MIT */
/*
 * bench/peers/pool_peer.h - one small interface over every pool the task-pool
 * benchmark compares (tripool, GLib GThreadPool, C-Thread-Pool, libuv
 * uv_queue_work, one pthread per task), so each scenario is written once.
 *
 * Completion is counted by the harness, not by the pools: every peer's worker
 * entry calls pb_run(arg), which runs the scenario's task and bumps a counter
 * owned by the running thread (one cache line per thread, single writer), so
 * counting adds no shared-line traffic to the hot path. The harness sums the
 * counters (pb_completed) to see when a run is done. Threads that live for one
 * task only (thread-per-task) use the shared pb_tpt_done counter instead,
 * because a slot per thread would grow without bound.
 */
#ifndef TP_BENCH_POOL_PEER_H
#define TP_BENCH_POOL_PEER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*pb_task_fn)(void *arg);

typedef struct pb_peer {
    const char *name;
    /* Make a pool of `workers` threads that can hold at least qcap queued
     * tasks (0 = the peer's default; unbounded peers ignore it). nsub is the
     * number of threads that will submit. Returns 0 or a negative errno. */
    int (*create)(void **pool, unsigned workers, size_t qcap, unsigned nsub);
    /* Per-submitter state, made on the submitting thread, for at most
     * ntasks submits. */
    int (*sub_begin)(void *pool, size_t ntasks, void **sub);
    /* Queue pb_run(arg) (arg must not be NULL: GLib rejects NULL data). */
    int (*submit)(void *sub, void *arg);
    /* On the submitting thread after its last submit: does what the peer
     * needs from that thread for its tasks to finish (libuv: run the loop
     * until every request is done), then frees sub. */
    void (*sub_end)(void *sub);
    /* Wait for queued work, stop and free the pool (not timed). */
    void (*destroy)(void *pool);
} pb_peer;

/* The task of the current scenario. Written by the harness only while no
 * task runs; the pool's own hand-off publishes it to the workers. */
extern pb_task_fn pb_task;

struct pb_slot {
    _Atomic uint64_t n;
    char pad[64 - sizeof(uint64_t)];
};
extern _Thread_local struct pb_slot *pb_my_slot;
extern _Atomic uint64_t pb_tpt_done;
struct pb_slot *pb_slot_register(void);

/* Run the scenario task, then count it on this thread's slot. The release
 * store pairs with the acquire loads in pb_completed(): once the harness sees
 * the count, it sees what the task wrote (latency samples). */
static inline void pb_run(void *arg) {
    pb_task(arg);
    struct pb_slot *s = pb_my_slot;
    if (!s) s = pb_my_slot = pb_slot_register();
    atomic_store_explicit(&s->n, atomic_load_explicit(&s->n, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* --stats: peers print their own counters at destroy (tripool only). */
extern bool pb_verbose;

/* Tasks completed so far in this process (all peers, all runs). */
uint64_t pb_completed(void);

/* NULL-terminated list of the peers built into this binary. */
extern const pb_peer *const pb_peers[];

#endif
