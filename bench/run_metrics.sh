#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the metrics benchmarks from a bench build: bench/run_metrics.sh BUILD_DIR
set -euo pipefail
B=${1:-build-bench}
for exe in metrics_hotpath metrics_overhead metrics_autoscale; do
  if [ -x "$B/$exe" ]; then
    echo "--- $exe"
    "$B/$exe"
  else
    echo "--- $exe: not built (module missing?)"
  fi
done
