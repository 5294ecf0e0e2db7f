#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the metrics benchmarks from a bench build: bench/run_metrics.sh BUILD_DIR
set -euo pipefail
B=${1:-build-bench}
for exe in metrics_hotpath metrics_overhead metrics_autoscale; do
  if [ -x "$B/$exe" ]; then
    echo "--- $exe"
    case $exe in
      metrics_overhead) "$B/$exe" 1000000 5 ;;
      metrics_autoscale)
        "$B/$exe" 2 3
        # the blocking phase alone, met at 2 workers (as after a quiet cpu phase)
        echo "--- metrics_autoscale, io phase alone"
        METRICS_AUTOSCALE_PHASES=io "$B/$exe" 2 3 32 256 0 ;;
      *) "$B/$exe" ;;
    esac
  else
    echo "--- $exe: not built (module missing?)"
  fi
done
