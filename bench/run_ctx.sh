#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Contexts and timers (issue 3 "Performance"). Usage: bench/run_ctx.sh BUILD_DIR
# BUILD_DIR was configured with -DTP_BUILD_BENCH=ON (make bench does that).
# CTX_BENCH_REPS (default 3) repetitions of each scenario; every line printed
# is one measurement (key=value), so the spread is visible.
set -euo pipefail
B=${1:?usage: bench/run_ctx.sh BUILD_DIR}
BIN=$B/ctx_bench
[ -x "$BIN" ] || { echo "run_ctx.sh: $BIN not built (configure with -DTP_BUILD_BENCH=ON)" >&2; exit 1; }
REPS=${CTX_BENCH_REPS:-3}
echo "# ctx_bench on $(nproc) CPUs, $(uname -r), reps=$REPS"
for r in $(seq "$REPS"); do
  "$BIN" timers 1000000 10000
done
# Default service as contexts get it (normal thread, short EEVDF slice), then
# configured real-time (SCHED_FIFO 10; falls back to normal if not permitted:
# see realtime= in the output).
for r in $(seq "$REPS"); do
  "$BIN" accuracy 10000 2 0
  "$BIN" accuracy 10000 2 10
done
for r in $(seq "$REPS"); do
  "$BIN" fanout 100000
done
