#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 60
# tripool hash: byte-identical to xxhsum for every algorithm and style, around
# chunk boundaries; xxhsum -c accepts our sum files and we accept its files;
# crc32c in parallel chunks equals the one-chunk value; errors and exit codes.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_hash.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
C=4096
: > empty
printf x > one
for n in $((C - 1)) $C $((C + 1)) $((3 * C)) $((3 * C + 7)); do
    head -c $n /dev/urandom > "b$n"
done
head -c 300000 /dev/urandom > big
truncate -s 1M sparse && printf tail >> sparse
mkdir -p tree/sub && for i in 1 2 3; do seq $i 500 > tree/f$i; seq $i 90 > tree/sub/g$i; done
FILES="empty one b4095 b4096 b4097 b12288 b12295 big sparse"

# 1. Output equals xxhsum's, byte for byte.
"$T" hash --chunk $C $FILES > ours3 || fail "hash exit"
xxhsum -H3 $FILES > theirs3 2>/dev/null
cmp ours3 theirs3 || { diff ours3 theirs3; fail "xxh3 differs from xxhsum -H3"; }
for pair in "xxh128 2" "xxh64 1" "xxh32 0"; do
    set -- $pair
    "$T" hash -a $1 --chunk $C -j 3 $FILES > o || fail "hash -a $1"
    xxhsum -H$2 $FILES > t 2>/dev/null
    cmp o t || { diff o t; fail "$1 differs from xxhsum -H$2"; }
    "$T" hash -a $1 --tag --chunk $C $FILES > o
    xxhsum -H$2 --tag $FILES > t 2>/dev/null
    cmp o t || fail "$1 --tag differs from xxhsum --tag"
done

# 2. xxhsum -c accepts ours; we accept xxhsum's (all styles, mixed file).
xxhsum -c ours3 > /dev/null || fail "xxhsum -c rejects our XXH3 file"
"$T" hash -a xxh128 $FILES > s128 && xxhsum -c s128 > /dev/null || fail "xxhsum -c xxh128"
xxhsum -H1 $FILES > mixed 2>/dev/null; xxhsum -H0 --tag one big >> mixed 2>/dev/null
"$T" hash -c mixed > out || { cat out; fail "our -c rejects xxhsum's file"; }
[ "$(grep -c ': OK$' out)" -eq 11 ] || fail "expected 11 OK lines"
"$T" hash -c --quiet ours3 > out && [ ! -s out ] || fail "--quiet printed or failed"

# 3. A changed file and a missing file: FAILED / could not be read, exit 1.
cp ours3 bad3 && echo "XXH3 (nothere) = 0123456789abcdef" >> bad3 && echo junk >> bad3
printf y > one
"$T" hash -c bad3 > out; rc=$?
[ $rc -eq 1 ] || fail "-c with failures must exit 1, got $rc"
grep -qx 'one: FAILED' out || fail "no FAILED line"
grep -q "^bad3:10: Could not open or read 'nothere'" out || fail "no unreadable line"
grep -qx '1 computed checksum did NOT match' out || fail "no mismatch summary"
grep -qx '1 line is improperly formatted' out || fail "no format summary"

# 4. crc32c: parallel chunks combine to the one-chunk value.
"$T" hash -a crc32c --chunk 4K -j 3 big sparse > small
"$T" hash -a crc32c --chunk 1M big sparse > large
cmp small large || fail "crc32c depends on chunking"
grep -q '^CRC32C (big) = [0-9a-f]\{8\}$' small || fail "crc32c format"

# 5. Trees, unreadable inputs, usage errors.
"$T" hash -r tree > o || fail "hash -r"
[ "$(wc -l < o)" -eq 6 ] || fail "hash -r should list 6 files"
(cd tree && xxhsum -H3 f1 f2 f3 sub/g1 sub/g2 sub/g3 2>/dev/null | sed 's|(|(tree/|') > t
cmp o t || { diff o t; fail "hash -r differs"; }
"$T" hash one nothere tree big > o 2> e; rc=$?
[ $rc -eq 1 ] || fail "missing inputs must exit 1, got $rc"
[ "$(wc -l < o)" -eq 2 ] || fail "the readable inputs must still be hashed"
grep -q 'nothere: No such file or directory' e || fail "no error for missing file"
grep -q 'tree: Is a directory' e || fail "no error for directory"
"$T" hash -a md5 one 2> /dev/null; [ $? -eq 2 ] || fail "bad algorithm must exit 2"
"$T" hash 2> /dev/null; [ $? -eq 2 ] || fail "no path must exit 2"
"$T" hash --chunk 12Q one 2> /dev/null; [ $? -eq 2 ] || fail "bad size must exit 2"
"$T" hash --help | grep -q 'usage: tripool hash' || fail "--help"
echo "hash: all checks passed"
