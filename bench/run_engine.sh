#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Engine and CLI benchmark: tripool against its peers on the same inputs in
# the same run. Usage: bash bench/run_engine.sh BUILD_DIR [REPS]
#   1 GiB access log in the page cache: cat, xxhsum -H3, wc -l, zstd -T2/-T1 -3, cp
#   5,000 files of ~200 KiB: find | xargs -P2 zstd -3, xxhsum over the files
#   the reader alone: pread vs io_uring (engine_io), tree and big file
# Each timing is the best (lowest wall time) of REPS runs (default 3), with
# user+sys CPU seconds beside it, because the machine may be shared. Peak RSS
# and open files are sampled from /proc while tripool runs.
set -euo pipefail
B=${1:-build-bench}
REPS=${2:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(cd "$B" && pwd)/tripool
[ -x "$T" ] || { echo "run_engine: $T not built" >&2; exit 1; }
DATA="$B/bench-data"
mkdir -p "$DATA"
LOG="$DATA/access.log"
TREE="$DATA/tree5000"
[ -f "$LOG" ] || bash "$SRC/scripts/demo.sh" --gen-log "$LOG" $((1 << 30))
[ -d "$TREE" ] || bash "$SRC/scripts/demo.sh" --gen-tree "$TREE" 5000 $((200 << 10))
find "$TREE" -name '*.zst' -delete # left by an interrupted run
OUT="$DATA/out"
rm -rf "$OUT" && mkdir -p "$OUT"
MAXMEM=256M
MAXOPEN=64

# time_best NAME CMD...: best wall time of REPS runs, CPU of that run.
declare -A WALL CPU
time_best() {
    local name=$1; shift
    local best="" bcpu=""
    for _ in $(seq 1 "$REPS"); do
        [ -n "${PREP:-}" ] && eval "$PREP"
        local tf; tf=$(mktemp)
        local s e
        s=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$tf" "$@" > /dev/null 2>&1 || { echo "run_engine: $name failed" >&2; }
        e=$(date +%s.%N)
        local w c
        w=$(echo "$e - $s" | bc)
        c=$(awk '{printf "%.2f", $1 + $2}' "$tf")
        rm -f "$tf"
        if [ -z "$best" ] || [ "$(echo "$w < $best" | bc)" = 1 ]; then best=$w; bcpu=$c; fi
    done
    WALL[$name]=$(printf '%.3f' "$best")
    CPU[$name]=$bcpu
    printf '%-34s %8s s wall %8s s cpu\n' "$name" "${WALL[$name]}" "${CPU[$name]}"
}

# sample_peaks CMD...: run once, print "peak_rss_kib peak_fds" of the process.
sample_peaks() (
    set +e +o pipefail
    "$@" > /dev/null 2>&1 &
    pid=$!
    rss=0
    fds=0
    while kill -0 $pid 2> /dev/null; do
        r=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2> /dev/null)
        f=$(ls /proc/$pid/fd 2> /dev/null | wc -l)
        [ -n "$r" ] && [ "$r" -gt "$rss" ] && rss=$r
        [ "$f" -gt "$fds" ] && fds=$f
        sleep 0.02
    done
    wait $pid
    echo "$rss $fds"
)

echo "== inputs: $(stat -c %s "$LOG") byte log; $(ls "$TREE" | wc -l) files, $(du -sm "$TREE" | cut -f1) MiB tree"
echo "== machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$LOG" > /dev/null

echo "== one 1 GiB file (page cache)"
time_best "cat > /dev/null" cat "$LOG"
time_best "xxhsum -H3" xxhsum -H3 "$LOG"
time_best "tripool hash (xxh3)" "$T" hash "$LOG"
time_best "tripool hash -a crc32c" "$T" hash -a crc32c "$LOG"
time_best "wc -l" wc -l "$LOG"
time_best "tripool count" "$T" count "$LOG"
PREP="rm -f $OUT/z.zst" time_best "zstd -T2 -3" zstd -q -T2 -3 "$LOG" -o "$OUT/z.zst"
PREP="rm -f $OUT/z1.zst" time_best "zstd -T1 -3" zstd -q -T1 -3 "$LOG" -o "$OUT/z1.zst"
time_best "tripool compress -l 3" "$T" compress -f -l 3 --max-mem $MAXMEM -o "$OUT/t.zst" "$LOG"
time_best "tripool compress -l 3 --no-fsync" "$T" compress -f -l 3 --no-fsync -o "$OUT/t.zst" "$LOG"
time_best "zstd -d -T2 (tripool's file)" zstd -q -d -f "$OUT/t.zst" -o "$OUT/d1"
time_best "tripool decompress" "$T" decompress -f --no-fsync -o "$OUT/d2" "$OUT/t.zst"
cmp "$OUT/d2" "$LOG" && rm -f "$OUT/d1" "$OUT/d2"
PREP="rm -f $OUT/c1" time_best "cp" cp "$LOG" "$OUT/c1"
PREP="rm -f $OUT/c2" time_best "tripool cp" "$T" cp --no-fsync "$LOG" "$OUT/c2"
rm -f "$OUT/c1" "$OUT/c2"
zsz=$(stat -c %s "$OUT/z.zst"); tsz=$(stat -c %s "$OUT/t.zst")
read -r rss fds < <(sample_peaks "$T" compress -f -l 3 --max-mem $MAXMEM --max-open $MAXOPEN -o "$OUT/t.zst" "$LOG")

echo "== tree of 5,000 files (~200 KiB each)"
find "$TREE" -type f > /dev/null; cat "$TREE"/* > /dev/null
# sync: each run starts with the previous run's outputs gone from disk, not
# still being written back or freed underneath it (same for every command).
PREP="find $TREE -name '*.zst' -delete; sync"
time_best "find | xargs -P2 zstd -3" sh -c "find '$TREE' -type f ! -name '*.zst' | xargs -P2 -n 64 zstd -q -3"
time_best "tripool compress -r -l 3" "$T" compress -r -l 3 --no-fsync --max-open $MAXOPEN "$TREE"
time_best "tripool compress -r -l 3 (fsync)" "$T" compress -r -l 3 --max-open $MAXOPEN "$TREE"
PREP=""
read -r trss tfds < <(sample_peaks "$T" compress -r -l 3 --no-fsync --max-mem $MAXMEM --max-open $MAXOPEN "$TREE")
find "$TREE" -name '*.zst' -delete
time_best "xxhsum (all files, one process)" sh -c "find '$TREE' -type f | xargs xxhsum -H3"
time_best "tripool hash -r" "$T" hash -r --max-open $MAXOPEN "$TREE"

echo "== reader: pread vs io_uring (bench/engine_io.c, one thread, 256 KiB pieces, page cache)"
if [ -x "$B/engine_io" ]; then
    for _ in 1 2 3; do
        "$B/engine_io" pread 256 "$TREE"/* || true
        "$B/engine_io" uring 256 "$TREE"/* || echo "engine_io uring: refused here (exit $?)"
        "$B/engine_io" pread 256 "$LOG" || true
        "$B/engine_io" uring 256 "$LOG" || echo "engine_io uring: refused here (exit $?)"
    done
else
    echo "(engine_io not built: liburing-dev missing or -DTP_BUILD_BENCH=OFF)"
fi

r() { echo "scale=2; $1 / $2" | bc; }
cat << EOF

| measure (best of $REPS) | peer | tripool | ratio (goal) |
|---|---|---|---|
| hash 1 GiB vs cat | ${WALL["cat > /dev/null"]} s | ${WALL["tripool hash (xxh3)"]} s | $(r "${WALL["cat > /dev/null"]}" "${WALL["tripool hash (xxh3)"]}")x (>= 0.8x) |
| hash 1 GiB vs xxhsum -H3 | ${WALL["xxhsum -H3"]} s | ${WALL["tripool hash (xxh3)"]} s | $(r "${WALL["xxhsum -H3"]}" "${WALL["tripool hash (xxh3)"]}")x |
| crc32c 1 GiB vs cat | ${WALL["cat > /dev/null"]} s | ${WALL["tripool hash -a crc32c"]} s | $(r "${WALL["cat > /dev/null"]}" "${WALL["tripool hash -a crc32c"]}")x (>= 0.8x) |
| count 1 GiB vs cat | ${WALL["cat > /dev/null"]} s | ${WALL["tripool count"]} s | $(r "${WALL["cat > /dev/null"]}" "${WALL["tripool count"]}")x (>= 0.8x) |
| count vs wc -l | ${WALL["wc -l"]} s | ${WALL["tripool count"]} s | $(r "${WALL["wc -l"]}" "${WALL["tripool count"]}")x |
| compress -l 3 vs zstd -T2 -3 | ${WALL["zstd -T2 -3"]} s | ${WALL["tripool compress -l 3"]} s | $(r "${WALL["zstd -T2 -3"]}" "${WALL["tripool compress -l 3"]}")x (>= 1.0x) |
| compress --no-fsync vs zstd -T2 -3 | ${WALL["zstd -T2 -3"]} s | ${WALL["tripool compress -l 3 --no-fsync"]} s | $(r "${WALL["zstd -T2 -3"]}" "${WALL["tripool compress -l 3 --no-fsync"]}")x |
| compress vs zstd -T1 -3 | ${WALL["zstd -T1 -3"]} s | ${WALL["tripool compress -l 3"]} s | $(r "${WALL["zstd -T1 -3"]}" "${WALL["tripool compress -l 3"]}")x |
| compressed size vs zstd -T2 -3 | $zsz B | $tsz B | $(echo "scale=4; $tsz / $zsz" | bc) (<= 1.01) |
| decompress --no-fsync vs zstd -d | ${WALL["zstd -d -T2 (tripool's file)"]} s | ${WALL["tripool decompress"]} s | $(r "${WALL["zstd -d -T2 (tripool's file)"]}" "${WALL["tripool decompress"]}")x |
| cp --no-fsync 1 GiB vs cp | ${WALL["cp"]} s | ${WALL["tripool cp"]} s | $(r "${WALL["cp"]}" "${WALL["tripool cp"]}")x |
| tree compress vs xargs -P2 zstd -3 | ${WALL["find | xargs -P2 zstd -3"]} s | ${WALL["tripool compress -r -l 3"]} s | $(r "${WALL["find | xargs -P2 zstd -3"]}" "${WALL["tripool compress -r -l 3"]}")x (>= 2x) |
| tree compress with fsync per file | ${WALL["find | xargs -P2 zstd -3"]} s | ${WALL["tripool compress -r -l 3 (fsync)"]} s | $(r "${WALL["find | xargs -P2 zstd -3"]}" "${WALL["tripool compress -r -l 3 (fsync)"]}")x |
| tree hash vs xxhsum | ${WALL["xxhsum (all files, one process)"]} s | ${WALL["tripool hash -r"]} s | $(r "${WALL["xxhsum (all files, one process)"]}" "${WALL["tripool hash -r"]}")x (>= 1.8x) |
| peak RSS, 1 GiB compress, --max-mem $MAXMEM | | $((rss / 1024)) MiB | <= max-mem + 32 MiB |
| peak open fds, 1 GiB compress, --max-open $MAXOPEN | | $fds | <= max-open + 8 |
| peak RSS, tree compress | | $((trss / 1024)) MiB | <= max-mem + 32 MiB |
| peak open fds, tree compress, --max-open $MAXOPEN | | $tfds | <= max-open + 8 |
EOF
rm -rf "$OUT"
