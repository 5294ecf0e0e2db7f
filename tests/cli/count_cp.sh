#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 90
# tripool count == wc -l and grep -cF, at and around chunk boundaries and
# with long lines spanning chunks; tripool cp is byte-identical and keeps
# sparse files sparse; --json summary; a full disk fails cleanly.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_count.XXXXXX)
trap 'umount "$D/full" 2>/dev/null; rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
C=4096
: > empty
printf x > one
printf '\n' > nl
seq 1 100000 > nums
head -c 20000 /dev/zero | tr '\0' 'a' > longline && printf 'needle\nabc' >> longline
head -c $C /dev/zero | tr '\0' 'q' > exact && (head -c $((C - 1)) /dev/zero | tr '\0' 'q'; echo) > exactnl
FILES="empty one nl nums longline exact exactnl"

"$T" count --chunk $C -j 3 $FILES > o || fail "count exit"
wc -l $FILES | sed 's/^ *//' > t
cmp o t || { diff o t; fail "count differs from wc -l"; }
for p in 9 99 123 needle aaaa q zz; do # one run per pattern over every file
    "$T" count --chunk $C -e "$p" $FILES | head -n -1 > o || fail "count -e $p"
    for f in $FILES; do echo "$(grep -cF -- "$p" $f) $f"; done > t
    cmp o t || { diff o t; fail "count -e $p differs from grep -cF"; }
done

head -c 100000 /dev/urandom > r
"$T" cp --chunk $C r r2 && cmp r r2 || fail "cp"
mkdir dir && "$T" cp r dir && cmp r dir/r || fail "cp into directory"
"$T" cp empty e2 && [ -f e2 ] && [ ! -s e2 ] || fail "cp empty"
truncate -s 64M sp && printf end >> sp
"$T" cp sp sp2 --json > j || fail "cp sparse"
cmp sp sp2 || fail "sparse copy differs"
[ "$(du -k sp2 | cut -f1)" -lt 8192 ] || fail "sparse copy is not sparse"
grep -q '"bytes_in":67108867' j && grep -q '"peak_open_files"' j || fail "json summary"
"$T" cp nothere x 2> /dev/null; [ $? -eq 1 ] || fail "cp missing source must exit 1"
"$T" cp r 2> /dev/null; [ $? -eq 2 ] || fail "cp with one path must exit 2"

# Full disk: a 1 MiB tmpfs (where mounting is not permitted, a 1 MiB file-size
# limit: EFBIG); the copy fails, nothing is left behind. tests/cli/robust.sh
# covers compress and decompress the same way.
mkdir full
head -c 3000000 /dev/urandom > r3
if mount -t tmpfs -o size=1m tmpfs full 2> /dev/null; then
    "$T" cp r3 full/r3 2> e; rc=$?
    want='No space left'
    umount_full=1
else
    (trap '' XFSZ; ulimit -f 1024; "$T" cp r3 full/r3) 2> e; rc=$?
    want='File too large'
    umount_full=0
fi
[ $rc -eq 1 ] || fail "full disk must exit 1, got $rc"
grep -qi "$want" e || fail "no '$want' message: $(cat e)"
[ -z "$(ls -A full)" ] || fail "partial file left on the full disk: $(ls -A full)"
[ $umount_full -eq 1 ] && umount full
echo "count_cp: all checks passed"
