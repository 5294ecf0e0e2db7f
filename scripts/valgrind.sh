#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every unit test of a plain (unsanitized) build under Valgrind memcheck,
# two at a time, each with a time limit; fails on any memcheck error or test
# failure. Memcheck sees what ASan cannot: accesses made inside libc (e.g. a
# pthread_mutex_lock on freed memory) and reads of uninitialised bytes.
#   usage: scripts/valgrind.sh BUILD_DIR        (make test-valgrind)
# Environment: VALGRIND_JOBS (default 2), VALGRIND_TIMEOUT (seconds per test,
# default 150), VALGRIND_TESTS (a regex selecting tests, default all).
#
# Options and why:
#   --error-exitcode=99        a memcheck error fails the test with a code no
#                              test returns itself (cmocka returns the number
#                              of failed cases)
#   --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
#                              a definitely lost block (no pointer to it
#                              anywhere) is an error. "Possibly lost" and
#                              "still reachable" are not: the process-wide
#                              default timer service is never stopped
#                              (timer.h) and glibc keeps thread stacks and TLS
#                              cached, so both are found in correct programs.
#   --fair-sched=yes           Valgrind runs one thread at a time; its default
#                              lock is unfair and starves a thread that waits
#                              for another (spin-then-park in the pools), which
#                              only makes tests slow, never finds a bug
#   --child-silent-after-fork=yes  tests that fork (crash and fork-safety
#                              cases) check the child's exit status; a child's
#                              own report would be noise
#   --num-callers=30           whole stacks through the pool's task trampolines
# Tests see TP_TEST_SANITIZER=valgrind: tp_test_scale() shrinks their loops
# (memcheck is 20-50x slower and serialises threads).
set -euo pipefail
BUILD=${1:?usage: scripts/valgrind.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${VALGRIND_JOBS:-2}
TMO=${VALGRIND_TIMEOUT:-150}
SEL=${VALGRIND_TESTS:-.}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not installed (scripts/deps.sh)" >&2; exit 1; }

# Tests that cannot run under memcheck, and exactly why. Keep this short:
# prefer making a test scale down with tp_test_scale().
EXCLUDE=(
)

LOGDIR="$BUILD/valgrind"
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
tests=()
for t in "$BUILD"/unit_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  [[ "$n" =~ $SEL ]] || continue
  skip=0
  for x in "${EXCLUDE[@]}"; do [ "$n" = "$x" ] && skip=1; done
  if [ $skip = 1 ]; then echo "valgrind: $n excluded (see scripts/valgrind.sh)"; continue; fi
  tests+=("$n")
done
[ ${#tests[@]} -gt 0 ] || { echo "valgrind.sh: no unit_* tests in $BUILD" >&2; exit 1; }

run_one() {
  local n=$1 start rc
  start=$(date +%s)
  set +e
  (cd "$BUILD" && TP_TEST_SANITIZER=valgrind TP_TEST_DATA="$ROOT/tests/data" \
    timeout -k 10 "$TMO" valgrind --tool=memcheck --error-exitcode=99 \
      --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
      --fair-sched=yes --child-silent-after-fork=yes --num-callers=30 -q \
      "./$n") >"$LOGDIR/$n.log" 2>&1
  rc=$?
  set -e
  local secs=$(( $(date +%s) - start ))
  case $rc in
    0) echo "valgrind: $n ok (${secs}s)" ;;
    99) echo "valgrind: $n MEMCHECK ERROR (${secs}s)"; cat "$LOGDIR/$n.log" ;;
    124|137) echo "valgrind: $n TIMEOUT after ${TMO}s"; tail -n 40 "$LOGDIR/$n.log" ;;
    *) echo "valgrind: $n FAILED rc=$rc (${secs}s)"; tail -n 60 "$LOGDIR/$n.log" ;;
  esac
  return $rc
}

t0=$(date +%s)
declare -A running=() # pid -> test
failed=()
reap() { # wait for whichever running test ends first
  local pid rc=0
  wait -n -p pid "${!running[@]}" || rc=$?
  [ $rc -eq 0 ] || failed+=("${running[$pid]}")
  unset "running[$pid]"
}
for n in "${tests[@]}"; do
  while [ ${#running[@]} -ge "$JOBS" ]; do reap; done
  run_one "$n" &
  running[$!]=$n
done
while [ ${#running[@]} -gt 0 ]; do reap; done
echo "valgrind: ${#tests[@]} tests, ${#failed[@]} failed, $(( $(date +%s) - t0 ))s (logs in $LOGDIR)"
[ ${#failed[@]} -eq 0 ] || { echo "valgrind: failed: ${failed[*]}"; exit 1; }
