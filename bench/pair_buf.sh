#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Before/after comparison of the buffer pool: the tripool cells of
# bench/run_buf.sh (workloads a b c, 64 B..8 MiB, full and partial), the two
# builds' buf_bench_glibc run back to back, REPS times each (default 5), and
# one line per cell: median ops/s before, after, and after/before.
# Usage: bench/pair_buf.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR
# (both configured with -DCMAKE_BUILD_TYPE=Release -DTP_BUILD_BENCH=ON). On a
# loaded machine run it more than once: (c) is wall-clock and swings +-50%.
set -euo pipefail
A=${1:?usage: bench/pair_buf.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR}/buf_bench_glibc
B=${2:?usage: bench/pair_buf.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR}/buf_bench_glibc
REPS=${BUF_BENCH_REPS:-5}
SECS=${BUF_BENCH_SECONDS:-0.1}
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
for w in a b c; do
  for s in 64 4096 65536 1048576 8388608; do
    for f in full partial; do
      t=$SECS
      [ $w = c ] && t=$(awk -v s="$SECS" 'BEGIN { print 2 * s }')
      for r in $(seq "$REPS"); do
        echo "before $("$A" pool $w $s $f "$t")" >>"$RAW"
        echo "after $("$B" pool $w $s $f "$t")" >>"$RAW"
      done
    done
  done
done
echo "| work | size | fill | before | after | after/before |"
echo "|---|---|---|---|---|---|"
awk '{ k = $3 " " $4 " " $5; v[$1, k, ++n[$1, k]] = $6; keys[k] = 1 }
  function med(tag, k,   i, j, m, t, a) {
    m = n[tag, k]; for (i = 1; i <= m; i++) a[i] = v[tag, k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((m + 1) / 2)]
  }
  END { for (k in keys) { b = med("before", k); a = med("after", k)
          split(k, p, " "); printf "| %s | %s | %s | %.0f | %.0f | %.3f |\n", p[1], p[2], p[3], b, a, a / (b ? b : 1) } }' "$RAW" |
  sort -t'|' -k2,2 -k3,3n -k4,4
