#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every stress test of BUILD_DIR (default THREADS SCALE ITER) ROUNDS times, each
# round with a fresh chaos seed (printed by the test); stops at the first
# failure and prints the seed to replay it with TP_CHAOS_SEED.
#   scripts/stress.sh BUILD_DIR [ROUNDS]
set -euo pipefail
build=${1:?usage: stress.sh BUILD_DIR [ROUNDS]}
rounds=${2:-10}
shopt -s nullglob
bins=("$build"/stress_*)
[ ${#bins[@]} -gt 0 ] || { echo "stress: no stress tests in $build" >&2; exit 2; }
san=none
case "$build" in *tsan*) san=thread ;; *chaos*) san=chaos ;; esac
for ((r = 1; r <= rounds; r++)); do
  for b in "${bins[@]}"; do
    seed=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ^ (r << 45) | 1 ))
    echo "stress: round $r/$rounds $(basename "$b") TP_CHAOS_SEED=$seed"
    if ! TP_CHAOS_SEED=$seed TP_TEST_SANITIZER=$san TP_TEST_DATA="$(pwd)/tests/data" \
        timeout 900 "$b" >"/tmp/stress.$$.log" 2>&1; then
      cat "/tmp/stress.$$.log" >&2
      echo "stress: FAILED $(basename "$b") with TP_CHAOS_SEED=$seed" >&2
      exit 1
    fi
  done
done
rm -f "/tmp/stress.$$.log"
echo "stress: all rounds passed"
