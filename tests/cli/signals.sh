#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 60
# SIGINT mid-run cancels through the context: exit 130, no temp file and no
# partial output left. SIGUSR1 prints the pool dump and the run goes on.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_sig.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
head -c 64M /dev/urandom > big
# -l 19 on random data with one worker: slow enough to interrupt reliably.
"$T" compress -l 19 -j 1 --chunk 1M big & pid=$!
for i in $(seq 1 100); do
    ls -a | grep -q '\.tp\.' && break
    sleep 0.05
done
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "SIGINT must exit 130, got $rc"
[ ! -e big.zst ] || fail "partial output under the final name"
[ -z "$(ls -a | grep '\.tp\.')" ] || fail "temp file left: $(ls -a)"

"$T" hash -a crc32c -j 1 --chunk 64K big > o 2> e & pid=$!
sleep 0.2
kill -USR1 $pid 2> /dev/null
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "hash after SIGUSR1 exit $rc"
grep -q '^CRC32C (big) = ' o || fail "hash output missing after SIGUSR1"
echo "signals: all checks passed"
