#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 60
# SIGINT mid-run cancels through the context: exit 130 (SIGTERM: 143), no
# temp file and no partial output left (one big file; a tree: published outputs complete).
# SIGUSR1 prints the pool dump and the run goes on.
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
# SIGTERM the same way, but exit 143 (128 + 15, as a shell reports it).
"$T" compress -l 19 -j 1 --chunk 1M big 2> eterm & pid=$!
for i in $(seq 1 100); do
    ls -a | grep -q '\.tp\.' && break
    sleep 0.05
done
kill -TERM $pid
wait $pid; rc=$?
[ $rc -eq 143 ] || fail "SIGTERM must exit 143, got $rc"
grep -q 'interrupted; temporary files removed' eterm || fail "SIGTERM: no 'interrupted' line: $(cat eterm)"
[ ! -e big.zst ] || fail "partial output under the final name after SIGTERM"
[ -z "$(ls -a | grep '\.tp\.')" ] || fail "temp file left after SIGTERM: $(ls -a)"

# SIGUSR1: once the command blocks it (it is handled by a sigwait thread),
# it prints the pool dump on stderr and keeps running.
"$T" compress -l 19 -j 1 --chunk 1M -o big2.zst big 2> e & pid=$!
for i in $(seq 1 200); do
    blk=$(awk '/^SigBlk/ {print $2}' /proc/$pid/status 2> /dev/null)
    [ -n "$blk" ] && [ $((0x$blk & 0x200)) -ne 0 ] && break
    sleep 0.05
done
kill -USR1 $pid
sleep 0.5
kill -0 $pid 2> /dev/null || fail "SIGUSR1 ended the process"
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "SIGINT after SIGUSR1 must exit 130, got $rc"
[ "$(grep -vc 'interrupted' e)" -gt 0 ] || fail "no pool dump on stderr after SIGUSR1"
[ ! -e big2.zst ] || fail "partial output after SIGINT"
# SIGINT during a tree: no temp file is left, and every output that was
# published before the signal is complete (renamed only when whole).
mkdir tree && for i in $(seq 1 40); do head -c 300000 /dev/urandom > tree/f$i; done
"$T" compress -r -l 19 -j 1 --chunk 128K --no-fsync tree & pid=$!
for i in $(seq 1 200); do
    [ -n "$(find tree -name '.*.tp.*')" ] && break
    sleep 0.02
done
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "SIGINT during a tree must exit 130, got $rc"
[ -z "$(find tree -name '.*.tp.*')" ] || fail "temp files left in the tree"
for z in tree/*.zst; do
    [ -e "$z" ] || continue
    zstd -q -d -c "$z" | cmp - "${z%.zst}" || fail "published output $z incomplete"
done
[ "$(ls tree/*.zst 2> /dev/null | wc -l)" -lt 40 ] || fail "the tree finished before the signal"
echo "signals: all checks passed"
