#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Buffer pool vs. glibc, jemalloc and mimalloc (issue 4 "Performance").
# Usage: bench/run_buf.sh BUILD_DIR   (configured with -DTP_BUILD_BENCH=ON)
# Workloads a (1 thread get/touch/put), b (2 threads), c (producer/consumer
# through a 4-slot ring) at 64 B..8 MiB, full and partial fills. Each
# measurement is its own process (so peak RSS is its own); the four variants
# run interleaved, BUF_BENCH_REPS times (default 3), and the table shows the
# median ops/s (a, b: per CPU-second of each thread; c: per wall second).
# BUF_BENCH_SECONDS (default 0.1; the pipeline c, whose wall-clock hand-offs
# are the noisiest on a shared machine, gets twice that) is the timed part of
# one run, after a warm-up of >= 0.05 s and >= 8 operations (14 for c).
# A run takes ~2 minutes on a loaded 2-CPU machine.
set -euo pipefail
B=${1:?usage: bench/run_buf.sh BUILD_DIR}
REPS=${BUF_BENCH_REPS:-3}
SECS=${BUF_BENCH_SECONDS:-0.1}
for v in glibc jemalloc mimalloc; do
  [ -x "$B/buf_bench_$v" ] || { echo "run_buf.sh: $B/buf_bench_$v not built" >&2; exit 1; }
done
echo "# allocators in use:"
for v in glibc jemalloc mimalloc; do "$B/buf_bench_$v" --which | sed 's/^/#   /'; done
"$B/buf_bench_jemalloc" --which | grep -q jemalloc || { echo "jemalloc not in use" >&2; exit 1; }
"$B/buf_bench_mimalloc" --which | grep -q mimalloc || { echo "mimalloc not in use" >&2; exit 1; }
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
SIZES="64 4096 65536 1048576 8388608"
for w in a b c; do
  for s in $SIZES; do
    for f in full partial; do
      t=$SECS
      [ $w = c ] && t=$(awk -v s="$SECS" 'BEGIN { print 2 * s }')
      for r in $(seq "$REPS"); do
        "$B/buf_bench_glibc" malloc $w $s $f "$t" >>"$RAW"
        "$B/buf_bench_jemalloc" malloc $w $s $f "$t" >>"$RAW"
        "$B/buf_bench_mimalloc" malloc $w $s $f "$t" >>"$RAW"
        "$B/buf_bench_glibc" pool $w $s $f "$t" >>"$RAW"
      done
    done
  done
done
# Medians per (variant, workload, size, fill); then one row per cell with the
# pool's ratio to each peer and whether its peak RSS stayed under the bound.
sort -k1,1 -k2,2 -k3,3n -k4,4 -k5,5n "$RAW" | awk -v reps="$REPS" '
  { key = $1 " " $2 " " $3 " " $4; n[key]++; v[key, n[key]] = $5;
    if ($6 > rss[key]) rss[key] = $6; bound[key] = $7 }
  END {
    for (k in n) { m = int((n[k] + 1) / 2); med[k] = v[k, m] }
    printf "| work | size | fill | glibc | jemalloc | mimalloc | tripool | vs glibc | vs jemalloc | vs mimalloc | vs best | pool RSS MiB (bound) |\n"
    printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    split("a b c", W, " "); split("64 4096 65536 1048576 8388608", S, " "); split("full partial", F, " ")
    for (i = 1; i <= 3; i++) for (j = 1; j <= 5; j++) for (l = 1; l <= 2; l++) {
      c = W[i] " " S[j] " " F[l]
      g = med["glibc " c]; je = med["jemalloc " c]; mi = med["mimalloc " c]; tp = med["tripool " c]
      best = g; if (je > best) best = je; if (mi > best) best = mi
      ok = rss["tripool " c] <= bound["tripool " c] ? "ok" : "OVER"
      sz = S[j] >= 1048576 ? S[j] / 1048576 " MiB" : (S[j] >= 1024 ? S[j] / 1024 " KiB" : S[j] " B")
      printf "| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.2fx | %.2fx | %.2fx | %.2fx | %.1f (%.1f) %s |\n",
        W[i], sz, F[l], g, je, mi, tp, tp / (g ? g : 1), tp / (je ? je : 1), tp / (mi ? mi : 1),
        tp / (best ? best : 1), rss["tripool " c] / 1024, bound["tripool " c] / 1024, ok
    }
  }'
