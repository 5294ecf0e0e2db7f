#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 60
# Overwrite safety, as zstd/gzip do it: compress, decompress and cp never
# replace an existing output unless -f/--force is given. The refused input
# fails (exit 1, a message on stderr naming the output), the existing file
# is left untouched, the other inputs are processed, no temp file is left.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_over.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
no_tmp() { [ -z "$(find . -name '.*.tp.*')" ] || fail "temp files left: $(find . -name '.*.tp.*')"; }
cd "$D"
seq 1 20000 > a
seq 5 30000 > b
head -c 300000 /dev/urandom > big # several chunks at --chunk 64K

# compress: a.zst exists (not ours) -> a fails, b is compressed, a.zst kept.
echo precious > a.zst
"$T" compress a b 2> e; rc=$?
[ $rc -eq 1 ] || fail "compress over an existing output must exit 1, got $rc"
grep -q 'a\.zst already exists; not overwritten (use -f to overwrite)' e || fail "message: $(cat e)"
[ "$(cat a.zst)" = precious ] || fail "a.zst was replaced"
zstd -q -d -c b.zst | cmp - b || fail "the other input was not compressed"
no_tmp
# Running the same command again: both exist now, both refused, nothing changes.
cp b.zst b.zst.before
"$T" compress a b 2> e; [ $? -eq 1 ] || fail "second compress must exit 1"
[ "$(grep -c 'already exists' e)" -eq 2 ] || fail "two refusals expected: $(cat e)"
cmp b.zst b.zst.before || fail "b.zst changed"
# -f and --force replace.
"$T" compress -f a 2> e || fail "compress -f: $(cat e)"
zstd -q -d -c a.zst | cmp - a || fail "-f did not replace a.zst"
echo precious > a.zst
"$T" compress --force a || fail "compress --force"
zstd -q -d -c a.zst | cmp - a || fail "--force did not replace a.zst"
# -o to an existing file, multi-frame output (tasks write in parallel).
echo keep > out.zst
"$T" compress --chunk 64K -o out.zst big 2> e; [ $? -eq 1 ] || fail "-o over a file must exit 1"
grep -q 'out\.zst already exists' e && [ "$(cat out.zst)" = keep ] || fail "-o replaced out.zst"
"$T" compress --chunk 64K -f -o out.zst big && zstd -q -d -c out.zst | cmp - big || fail "-o -f"
# An existing output that is a symlink or a directory is not replaced either.
ln -s /nonexistent/target b.zst.link && "$T" compress -o b.zst.link b 2> /dev/null
[ $? -eq 1 ] && [ -L b.zst.link ] || fail "a dangling symlink output was replaced"
no_tmp

# decompress: a exists -> refused (also with --rm: the source is kept).
mv a a.orig && echo precious > a
"$T" decompress --rm a.zst 2> e; rc=$?
[ $rc -eq 1 ] || fail "decompress over an existing file must exit 1, got $rc"
grep -q "a already exists; not overwritten" e || fail "decompress message: $(cat e)"
[ "$(cat a)" = precious ] && [ -f a.zst ] || fail "decompress replaced a or removed a.zst"
"$T" decompress -f a.zst && cmp a a.orig || fail "decompress -f"
# multi-frame decode (pwrite in place) to an existing -o
echo keep > big.out
"$T" decompress -o big.out out.zst 2> /dev/null; [ $? -eq 1 ] && [ "$(cat big.out)" = keep ] \
    || fail "parallel decompress replaced big.out"
"$T" decompress -f -o big.out out.zst && cmp big.out big || fail "parallel decompress -f"
no_tmp

# cp: to an existing file, and into a directory holding the name.
echo keep > dst
"$T" cp big dst 2> e; rc=$?
[ $rc -eq 1 ] && grep -q 'dst already exists' e && [ "$(cat dst)" = keep ] || fail "cp replaced dst"
mkdir dir && echo keep > dir/big
"$T" cp big dir 2> e; [ $? -eq 1 ] && [ "$(cat dir/big)" = keep ] || fail "cp into dir replaced"
"$T" cp -f big dst && cmp big dst || fail "cp -f"
"$T" cp --force big dir && cmp big dir/big || fail "cp --force into dir"
no_tmp

# -f is documented; it is not an option of hash/count (usage error 2).
"$T" compress --help | grep -q -- '-f, --force' || fail "compress --help lacks -f"
"$T" cp --help | grep -q -- '-f, --force' || fail "cp --help lacks -f"
"$T" hash -f a 2> /dev/null; [ $? -eq 2 ] || fail "hash -f must be a usage error"
echo "overwrite: all checks passed"
