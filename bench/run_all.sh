#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every bench/run_<module>.sh with the bench build directory as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-bench}
rc=0
for s in bench/run_*.sh; do
  [ "$s" = bench/run_all.sh ] && continue
  echo "=== $s"
  bash "$s" "$B" || { echo "FAILED: $s" >&2; rc=1; }
done
exit $rc
