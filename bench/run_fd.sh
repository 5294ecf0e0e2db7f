#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# File-handle pool benchmark (issue 5). Usage: bench/run_fd.sh BUILD_DIR
# BUILD_DIR was configured with -DTP_BUILD_BENCH=ON (make bench does that).
# Creates 10k files of 8 KiB under FD_BENCH_DIR (default a temp dir, removed
# afterwards), then:
#   1. 50k random 4 KiB reads, max_open 256, working set 200 files (fits) and
#      10k files (does not fit), 1 and 2 threads (and 1 thread with
#      min_uses 2): pool vs open+pread+close.
#   2. soft RLIMIT_NOFILE 64: 10k files through the pool, default max_open
#      and max_open 1000 (above the limit: the EMFILE retry path).
# FD_BENCH_REPS (default 3) repetitions; the summary shows the median ratio.
set -euo pipefail
B=${1:?usage: bench/run_fd.sh BUILD_DIR}
BIN=$B/fd_bench
[ -x "$BIN" ] || { echo "run_fd.sh: $BIN not built (configure with -DTP_BUILD_BENCH=ON)" >&2; exit 1; }
REPS=${FD_BENCH_REPS:-3}
DIR=${FD_BENCH_DIR:-}
CLEAN=0
if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /tmp/tp_fd_bench.XXXXXX)
    CLEAN=1
fi
RAW=$(mktemp)
trap 'rm -f "$RAW"; [ $CLEAN = 1 ] && rm -rf "$DIR"' EXIT

"$BIN" setup "$DIR" 10000 8
echo "machine: $(nproc) CPUs, $(uname -r), files on $(df --output=fstype "$DIR" | tail -1)"
for rep in $(seq "$REPS"); do
    for ws in 200 10000; do
        for th in 1 2; do
            "$BIN" reads "$DIR" 10000 "$ws" 50000 256 "$th" 1 | tee -a "$RAW"
        done
        # min_uses 2: cache a file only from its second open (nginx-style)
        "$BIN" reads "$DIR" 10000 "$ws" 50000 256 1 2 | tee -a "$RAW"
    done
done
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "--- median pool speed-up over open+pread+close (50k reads, max_open 256; wall / CPU time)"
for ws in 200 10000; do
    for cfg in "1 1" "2 1" "1 2"; do
        set -- $cfg
        th=$1 mu=$2
        sel="ws=$ws threads=$th min_uses=$mu "
        w=$(grep "^ratio $sel" "$RAW" | sed 's/.*pool_speedup=\([0-9.]*\).*/\1/' | med)
        c=$(grep "^ratio $sel" "$RAW" | sed 's/.*pool_cpu_speedup=//' | med)
        pn=$(grep "^way=pool ws=$ws .*min_uses=$mu threads=$th " "$RAW" | sed 's/.* ns_per_read=\([0-9]*\).*/\1/' | med)
        on=$(grep -A1 "^way=pool ws=$ws .*min_uses=$mu threads=$th " "$RAW" | grep '^way=open' | sed 's/.* ns_per_read=\([0-9]*\).*/\1/' | med)
        echo "working set $ws files, $th thread(s), min_uses $mu: pool ${pn} ns/read, open+pread+close ${on} ns/read: ${w}x wall, ${c}x CPU"
    done
done
echo "--- soft RLIMIT_NOFILE 64, 10k files"
"$BIN" nofile "$DIR" 10000 64 0
"$BIN" nofile "$DIR" 10000 64 1000
if grep -q "errors=[1-9]" "$RAW"; then
    echo "run_fd.sh: errors reached the caller" >&2
    exit 1
fi
