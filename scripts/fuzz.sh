#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the libFuzzer targets built by `make fuzz` (TP_SANITIZE=fuzz in BUILD):
#   scripts/fuzz.sh BUILD SECONDS [TARGET...]      (default: every target)
# Each target runs SECONDS at nice 19 on a copy of tests/fuzz/corpus/<target>/;
# crashes, hangs (-timeout) and failed invariants are saved under
# BUILD/fuzz-artifacts/<target>/ and make the script exit 1. Afterwards the
# new inputs no bigger than FUZZ_KEEP_BYTES (default 4096) that add coverage
# are merged into the committed corpus (libFuzzer -merge=1), unless the corpus
# would pass FUZZ_CORPUS_MAX_KB (default 2048) in total. Logs: BUILD/fuzz-<target>.log.
set -uo pipefail
BUILD=${1:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
SECONDS_EACH=${2:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
shift 2
SRC=$(cd "$(dirname "$0")/.." && pwd)
KEEP=${FUZZ_KEEP_BYTES:-4096}
MAXKB=${FUZZ_CORPUS_MAX_KB:-2048}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$SRC"/tests/fuzz/*.c; do
        t=$(basename "$f" .c)
        [ "$t" = replay ] || targets+=("$t")
    done
fi
# The decompress target writes a file per input: keep that off the disk.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
failed=()
summary=()
for t in "${targets[@]}"; do
    exe="$BUILD/fuzz_$t"
    [ -x "$exe" ] || { echo "fuzz: $exe not built" >&2; failed+=("$t"); continue; }
    committed="$SRC/tests/fuzz/corpus/$t"
    work="$BUILD/fuzz-work/$t"
    art="$BUILD/fuzz-artifacts/$t"
    rm -rf "$work" && mkdir -p "$work" "$art" "$committed"
    cp "$committed"/* "$work"/ 2>/dev/null
    log="$BUILD/fuzz-$t.log"
    echo "fuzz: $t for ${SECONDS_EACH}s (log $log)"
    # -timeout: an input running 10 s is a hang. -rss_limit_mb: a leak or a
    # runaway allocation is a finding, not a swap storm.
    nice -n 19 "$exe" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ $rc -ne 0 ] || ls "$art" | grep -q .; then
        failed+=("$t")
        echo "fuzz: $t FAILED (rc $rc); inputs in $art:" >&2
        ls -l "$art" >&2
        grep -m5 -E "ERROR|invariant failed|runtime error" "$log" >&2
    fi
    # Merge back the small new inputs that add coverage.
    small="$BUILD/fuzz-work/$t-small"
    rm -rf "$small" && mkdir -p "$small"
    find "$work" -type f -size -"$((KEEP + 1))"c -exec cp {} "$small"/ \;
    before=$(ls "$committed" | wc -l)
    nice -n 19 "$exe" -merge=1 "$committed" "$small" >> "$log" 2>&1
    after=$(ls "$committed" | wc -l)
    kb=$(find "$SRC/tests/fuzz/corpus" -type f -printf '%s\n' | awk '{s += $1} END {print int(s / 1024)}')
    if [ "$kb" -gt "$MAXKB" ]; then
        echo "fuzz: corpus would be ${kb} KiB (> $MAXKB): not adding $t's new inputs" >&2
        (cd "$committed" && git ls-files --error-unmatch . >/dev/null 2>&1 &&
            git clean -fq -- .)
    fi
    summary+=("$(printf '%-12s %12s execs %8s exec/s  corpus %4s -> %4s files' "$t" "${execs:-?}" \
        "${rate:-?}" "$before" "$(ls "$committed" | wc -l)")")
done
echo "fuzz: ${SECONDS_EACH}s per target"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: findings in: ${failed[*]}" >&2
    exit 1
fi
