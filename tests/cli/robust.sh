#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 90
# Inputs and outputs that misbehave (issue 6's test list):
# 1. unreadable inputs and directories: exit 1, each reported, the rest done
#    (as root the command runs as nobody, since root reads anything);
# 2. a full disk (a 2 MiB tmpfs; where mounting is not permitted, a file-size
#    limit, ulimit -f, which fails writes with EFBIG): exit 1, a clear
#    message, nothing under the final name, no temp file; in a tree the
#    outputs that did fit are complete;
# 3. files that grow or shrink while compressed: the engine covers the size
#    seen when the file was planned. A file that grows gives exactly its
#    first planned-size bytes (never a garbage tail); one that shrinks fails
#    ("file shrank while reading") and publishes nothing.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_robust.XXXXXX)
trap 'umount "$D/full" 2> /dev/null; rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
no_tmp() { [ -z "$(find "$1" -name '.*.tp.*')" ] || fail "temp files left: $(find "$1" -name '.*.tp.*')"; }
cd "$D"
chmod 755 "$D"

# ---- 1. unreadable inputs ------------------------------------------------------------
AS=""
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv > /dev/null || fail "running as root without setpriv: cannot test unreadable files"
    AS="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
mkdir -p u/sub u/closed && chmod 777 u u/sub
seq 1 1000 > u/a && seq 2 2000 > u/sub/b && seq 3 3000 > u/secret && seq 4 400 > u/closed/c
chmod 644 u/a u/sub/b && chmod 000 u/secret u/closed
$AS "$T" hash u/a u/secret u/sub/b > o 2> e; rc=$?
[ $rc -eq 1 ] || fail "hash with an unreadable input must exit 1, got $rc"
grep -q 'u/secret: Permission denied' e || fail "no message for the unreadable file: $(cat e)"
[ "$(wc -l < o)" -eq 2 ] && grep -q '(u/a)' o && grep -q '(u/sub/b)' o || fail "readable inputs not hashed"
$AS "$T" count -r u > o 2> e; [ $? -eq 1 ] || fail "count -r with unreadable entries must exit 1"
grep -q 'u/closed: Permission denied' e && grep -q 'u/secret: Permission denied' e \
    || fail "count -r: unreadable file and directory not both reported: $(cat e)"
grep -qx '1000 u/a' o && grep -qx '1999 u/sub/b' o || fail "count -r did not count the rest: $(cat o)"
$AS "$T" compress -r u 2> e; [ $? -eq 1 ] || fail "compress -r with an unreadable file must exit 1"
[ -f u/a.zst ] && [ -f u/sub/b.zst ] && [ ! -e u/secret.zst ] || fail "compress -r outputs: $(ls -R u)"
zstd -q -d -c u/sub/b.zst | cmp - u/sub/b || fail "compress -r output differs"
no_tmp u
chmod 755 u/closed

# ---- 2. a full disk --------------------------------------------------------------------
mkdir full
head -c 3000000 /dev/urandom > r3
if mount -t tmpfs -o size=2m tmpfs full 2> /dev/null; then
    MODE=tmpfs
    WANT='No space left on device'
    run_limited() { "$@"; }
else
    # No mount here: a 2 MiB file-size limit gives EFBIG on the same writes.
    # SIGXFSZ is ignored so the write fails instead of killing the process.
    MODE="ulimit -f"
    WANT='File too large'
    run_limited() { (trap '' XFSZ; ulimit -f 2048; "$@"); }
fi
echo "robust: full disk by $MODE"
for cmd in "cp r3 full/r3" "compress -l 1 -o full/r3.zst r3" "compress -l 1 --chunk 64K -o full/m.zst r3"; do
    run_limited "$T" $cmd 2> e; rc=$?
    [ $rc -eq 1 ] || fail "$cmd on a full disk must exit 1, got $rc"
    grep -q "$WANT" e || fail "$cmd: no '$WANT' message: $(cat e)"
    [ -z "$(ls -A full)" ] || fail "$cmd left files on the full disk: $(ls -A full)"
done
# decompress of a 3.4 MB output from a small .zst (parallel frames, pwrite in place)
seq 1 500000 > s3 && "$T" compress -l 1 --chunk 64K -o big.zst s3 && cp big.zst full/ || fail "setup"
run_limited "$T" decompress -o full/big full/big.zst 2> e; [ $? -eq 1 ] || fail "decompress on a full disk must exit 1"
grep -q "$WANT" e && [ "$(ls -A full)" = big.zst ] || fail "decompress left: $(ls -A full); $(cat e)"
rm -f full/big.zst
# A tree that partly fits: what is published is complete, the rest fails.
mkdir full/t && for i in $(seq 1 12); do head -c 120000 /dev/urandom > full/t/f$i; done
# (the file-size limit is per file: there one input's output must exceed it)
[ "$MODE" = tmpfs ] || head -c 2500000 /dev/urandom > full/t/f7
run_limited "$T" compress -r -l 1 --no-fsync full/t 2> e; rc=$?
[ $rc -eq 1 ] || fail "tree on a full disk must exit 1, got $rc"
grep -q "$WANT" e || fail "tree: no '$WANT' message"
for z in full/t/*.zst; do
    [ -e "$z" ] || continue
    zstd -q -d -c "$z" | cmp - "${z%.zst}" || fail "tree: published output $z is not complete"
done
no_tmp full
[ "$MODE" = tmpfs ] && umount full

# ---- 3. files that grow or shrink while compressed -----------------------------------
# -l 19 on random data, one worker, 64 chunks: seconds of work; the file is
# changed as soon as the first chunk's output exists (its temp file appears).
head -c 16M /dev/urandom > g && cp g g.orig
wait_tmp() {
    for _ in $(seq 1 400); do
        [ -n "$(find . -maxdepth 1 -name ".$1.zst.tp.*")" ] && return 0
        sleep 0.01
    done
    return 1
}
"$T" compress -l 19 -j 1 --chunk 256K --no-fsync g & pid=$!
wait_tmp g || fail "no temp output appeared"
head -c 1M /dev/urandom >> g
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "a growing file must compress (its planned size), got $rc"
zstd -q -d -c g.zst | cmp - g.orig || fail "grown file: output is not exactly the planned 16 MiB"
cp g.orig s
"$T" compress -l 19 -j 1 --chunk 256K --no-fsync s 2> e & pid=$!
wait_tmp s || fail "no temp output appeared"
truncate -s 256K s
wait $pid; rc=$?
[ $rc -eq 1 ] || fail "a shrinking file must fail, got $rc"
grep -q 's: file shrank while reading' e || fail "no shrink message: $(cat e)"
[ ! -e s.zst ] || fail "output published for a file that shrank"
no_tmp .
echo "robust: all checks passed"
