#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 90
# tripool compress/decompress: zstd -d decodes our multi-frame output
# byte-identically (empty, 1 byte, at/around chunk boundaries, sparse), we
# decode zstd's own files, -o, -r trees, --rm only after a verified output,
# size close to zstd's, no temp files left, errors and exit codes.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_zst.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
C=16384
: > empty
printf x > one
for n in $((C - 1)) $C $((C + 1)) $((5 * C + 3)); do head -c $n /dev/urandom > "b$n"; done
seq 1 300000 | sed 's/$/ GET \/index.html 200/' > log
truncate -s 2M sparse && printf tail >> sparse
FILES="empty one b16383 b16384 b16385 b81923 log sparse"

"$T" compress --chunk $C -j 3 $FILES || fail "compress exit"
for f in $FILES; do
    [ -f $f.zst ] || fail "$f.zst missing"
    zstd -q -t $f.zst || fail "zstd -t rejects $f.zst"
    zstd -q -d -c $f.zst | cmp - $f || fail "zstd -d of $f.zst differs"
done
[ -z "$(ls -a | grep '\.tp\.')" ] || fail "temp files left"

# Our decoder: parallel for our files, to -o; stream for zstd's.
mkdir out
for f in $FILES; do
    "$T" decompress -o out/$f $f.zst || fail "decompress $f"
    cmp out/$f $f || fail "round trip $f"
done
zstd -q -3 log -o zlog.zst && zstd -q -19 --long one -o zone.zst
"$T" decompress zlog.zst zone.zst && cmp zlog log && cmp zone one || fail "decode zstd's files"
cat one.zst log.zst > cat.zst && "$T" decompress -o out/cat cat.zst && cat one log | cmp - out/cat \
    || fail "concatenated frames"

# Size: within 1% of zstd -3 -T2 for an access log at the default chunk.
bash "${TP_SRC:?}/scripts/demo.sh" --gen-log biglog $((24 << 20))
"$T" compress -l 3 biglog && zstd -q -3 -T2 biglog -o ref.zst
ours=$(stat -c %s biglog.zst); ref=$(stat -c %s ref.zst)
[ $((ours * 100)) -le $((ref * 101)) ] || fail "size $ours vs zstd $ref"

# -r over a tree; --rm keeps nothing but verified outputs.
mkdir -p tree/a && for i in $(seq 1 30); do seq $i 2000 > tree/a/f$i.log; done
"$T" compress -r --rm tree || fail "compress -r --rm"
[ "$(find tree -name '*.log' | wc -l)" -eq 0 ] || fail "--rm left sources"
[ "$(find tree -name '*.zst' | wc -l)" -eq 30 ] || fail "missing outputs"
"$T" decompress -r --rm tree || fail "decompress -r --rm"
for i in $(seq 1 30); do seq $i 2000 | cmp - tree/a/f$i.log || fail "tree round trip $i"; done
[ "$(find tree -name '*.zst' | wc -l)" -eq 0 ] || fail "decompress --rm left .zst"

# Small files run in batches and are written by the workers; sizes around the
# 256 KiB read piece and the 1 MiB batch limit, compressible and not.
mkdir -p mix && for n in 0 1 262143 262144 262145 300000 700000 1048576 1048577 2000000; do
    head -c $n biglog > mix/l$n; head -c $n /dev/urandom > mix/r$n
done
"$T" compress -r -j 2 mix || fail "compress -r mix"
for f in mix/l* mix/r*; do
    case $f in *.zst) continue ;; esac
    zstd -q -d -c $f.zst | cmp - $f || fail "batched/fast output $f.zst differs"
done
[ -z "$(find mix -name '.*.tp.*')" ] || fail "temp files left in mix"

# Errors: corrupt input fails alone (exit 1), no partial output; usage exit 2.
head -c 100 log.zst > trunc.zst
printf 'not zstd at all' > junk.zst
"$T" decompress trunc.zst junk.zst one.zst -o x 2> /dev/null; [ $? -eq 2 ] || fail "-o with 3 inputs"
rm -f one
"$T" decompress trunc.zst junk.zst one.zst 2> e; rc=$?
[ $rc -eq 1 ] || fail "corrupt inputs must exit 1, got $rc"
[ ! -e trunc ] && [ ! -e junk ] || fail "partial output left under the final name"
cmp one <(printf x) || fail "the good input was not processed"
[ -z "$(ls -a | grep '\.tp\.')" ] || fail "temp files left after errors"
"$T" decompress one 2> e; [ $? -eq 1 ] && grep -q 'suffix' e || fail "no .zst suffix"
"$T" compress -l 99 one 2> /dev/null; [ $? -eq 2 ] || fail "bad level must exit 2"
"$T" compress --max-mem 64K one 2> /dev/null; [ $? -eq 2 ] || fail "max-mem < 2 chunks must exit 2"
echo "compress: all checks passed"
