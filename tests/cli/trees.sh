#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 120
# Untrusted trees and outputs:
# 1. -r never follows a symlink found in the tree (file, directory, dangling,
#    loop): each is skipped with a note on stderr, exit 0, the link and its
#    target untouched (also by --rm); a symlink given as an argument is
#    followed; a symlink loop given as an argument fails cleanly;
# 2. an output path that is a symlink is never written through: refused
#    without -f, replaced (the link itself) with -f; an output path that is
#    a directory is refused even with -f; --rm keeps the source then;
# 3. an output on another filesystem (tmpfs beside the disk) is complete,
#    and --rm removes the source only then;
# 4. outputs keep the source's permission bits and mtime, whatever the
#    umask (as zstd does);
# 5. inputs replaced after the walk (a file by a symlink, by another file,
#    a directory by a symlink): each fails "replaced" or ELOOP, nothing read
#    through; --rm keeps a source that changed after it was read;
# 6. a tree that changes while it is walked (files deleted, re-created,
#    renamed, swapped for symlinks to a secret, directories swapped for
#    symlinks): exit 0 or 1, never a crash or a hang, never a wrong hash or
#    output, never a byte of the secret read, no output outside the tree, no
#    temp file left.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
SAN=${TP_TEST_SANITIZER:-none}
D=$(mktemp -d /tmp/tp_cli_trees.XXXXXX)
trap 'kill $mut 2> /dev/null; rm -rf "$D" "${S:-}"' EXIT
mut=
fail() { echo "FAIL: $*" >&2; exit 1; }
no_tmp() { [ -z "$(find "$1" -name '.*.tp.*')" ] || fail "temp files left: $(find "$1" -name '.*.tp.*')"; }
cd "$D"

# ---- 1. symlinks in a tree ------------------------------------------------------------
mkdir -p t/sub out && seq 1 1000 > t/f && seq 1 2000 > t/sub/g && seq 7 70 > out/target
ln -s f t/lf && ln -s sub t/ld && ln -s nowhere t/dangling && ln -s self t/self
ln -s .. t/sub/up && ln -s "$D/out/target" t/abs && ln -s "$D/out" t/outdir
"$T" hash -r t > o 2> e; rc=$?
[ $rc -eq 0 ] || fail "hash -r over symlinks must exit 0, got $rc: $(cat e)"
[ "$(wc -l < o)" -eq 2 ] && grep -q '(t/f)' o && grep -q '(t/sub/g)' o || fail "hash -r hashed: $(cat o)"
for l in lf ld dangling self sub/up abs outdir; do
    grep -qx "tripool: t/$l: skipped: symbolic link not followed" e || fail "no note for t/$l: $(cat e)"
done
[ "$(wc -l < e)" -eq 7 ] || fail "hash -r: unexpected stderr: $(cat e)"
"$T" count -r t > o 2> /dev/null && grep -qx '1000 t/f' o && grep -qx '2000 t/sub/g' o &&
    [ "$(wc -l < o)" -eq 3 ] || fail "count -r over symlinks: $(cat o)"
"$T" compress --rm -r t 2> e || fail "compress --rm -r over symlinks: $(cat e)"
[ -f t/f.zst ] && [ -f t/sub/g.zst ] && [ ! -e t/f ] && [ ! -e t/sub/g ] || fail "compress -r: $(ls -laR t)"
for l in lf ld dangling self sub/up abs outdir; do [ -L t/$l ] || fail "t/$l is no longer a symlink"; done
[ -z "$(find t out -name '*.zst' ! -name f.zst ! -name g.zst)" ] || fail "a symlink was compressed: $(find t out -name '*.zst')"
cmp -s out/target <(seq 7 70) && [ ! -e out/target.zst ] || fail "a symlink's target was touched"
"$T" decompress --rm -r t 2> e && [ -f t/f ] && [ -f t/sub/g ] || fail "decompress --rm -r: $(cat e)"
# An argument that is a symlink is the user's choice: followed.
"$T" hash t/lf | sed 's|t/lf|t/f|' | cmp -s - <("$T" hash t/f) || fail "a symlink argument is not followed"
"$T" hash t/self > o 2> e; [ $? -eq 1 ] || fail "a symlink loop argument must exit 1"
grep -q 'Too many levels of symbolic links' e && [ "$(wc -l < e)" -eq 1 ] || fail "loop argument: $(cat e)"

# ---- 2. outputs that are symlinks or directories ----------------------------------------
seq 1 500 > a && seq 3 33 > victim && cp victim victim.ref
ln -s victim a.zst
"$T" compress a 2> e; [ $? -eq 1 ] || fail "an output that is a symlink must be refused without -f"
grep -q 'already exists' e && cmp -s victim victim.ref && [ -L a.zst ] || fail "symlink output: $(cat e)"
"$T" compress -f --rm a 2> e || fail "compress -f over a symlink output: $(cat e)"
[ -f a.zst ] && [ ! -L a.zst ] && cmp -s victim victim.ref || fail "-f wrote through the symlink"
zstd -q -d -c a.zst | cmp -s - <(seq 1 500) || fail "-f over a symlink: output wrong"
seq 1 500 > a && rm a.zst && mkdir a.zst && touch a.zst/keep
for f in "" -f; do
    "$T" compress --rm $f a 2> e; [ $? -eq 1 ] || fail "an output that is a directory must fail ($f)"
    grep -q 'a: output is a directory: Is a directory' e || fail "directory output message: $(cat e)"
    [ -f a ] && [ -f a.zst/keep ] || fail "directory output: source or directory lost ($f)"
done
"$T" compress -o a2.zst a && mkdir a2 && "$T" decompress -f a2.zst 2> e; [ $? -eq 1 ] || fail "decompress into a directory must fail"
grep -q 'output is a directory' e && [ -d a2 ] || fail "decompress into a directory: $(cat e)"
no_tmp .

# ---- 3. output on another filesystem ---------------------------------------------------
S=$(mktemp -d /dev/shm/tp_cli_trees.XXXXXX 2> /dev/null) || S=
if [ -n "$S" ] && [ "$(stat -c %d "$S")" != "$(stat -c %d .)" ]; then
    head -c 3000000 /dev/urandom > x && cp x x.ref
    "$T" compress --rm --chunk 64K -o "$S/x.zst" x 2> e || fail "compress to another fs: $(cat e)"
    [ ! -e x ] && zstd -q -d -c "$S/x.zst" | cmp -s - x.ref || fail "compress to another fs: output or --rm wrong"
    "$T" decompress --rm -o x "$S/x.zst" 2> e && cmp -s x x.ref && [ ! -e "$S/x.zst" ] || fail "decompress from another fs: $(cat e)"
    "$T" cp --chunk 256K x "$S/" 2> e && cmp -s "$S/x" x.ref || fail "cp to another fs: $(cat e)"
    no_tmp "$S"
    echo "trees: other filesystem $(stat -f -c %T "$S") checked"
else
    echo "trees: no second filesystem here; section 3 skipped"
fi

# ---- 4. mode and mtime -------------------------------------------------------------------
seq 1 3000 > m && chmod 640 m && touch -d '2020-01-02 03:04:05.5' m
want="640 $(stat -c %Y m)"
(umask 077 && "$T" compress -o m.zst m && "$T" decompress -o m.out m.zst && "$T" cp m m.cp) ||
    fail "mode/mtime: commands failed"
for f in m.zst m.out m.cp; do
    [ "$(stat -c '%a %Y' $f)" = "$want" ] || fail "$f: mode/mtime $(stat -c '%a %Y' $f), want $want"
done
chmod 604 m && (umask 022 && "$T" compress -f -o m.zst m) && [ "$(stat -c %a m.zst)" = 604 ] ||
    fail "mode with umask 022: $(stat -c %a m.zst)"
chmod 4755 m && "$T" compress -f -o m.zst m && [ "$(stat -c %a m.zst)" = 755 ] ||
    fail "set-uid bit copied: $(stat -c %a m.zst)"

# ---- 5. inputs replaced after the walk (deterministic: while the first, slow file is
# compressed by the one worker, the next ones are swapped) ---------------------------------
mkdir -p q/sub q2 && head -c 1500000 /dev/urandom | base64 > q/a && seq 1 100 > q/b && seq 1 200 > q/c &&
    seq 1 300 > q/sub/d && cp -a q qref && seq 1 50 > q2/d && seq 9 99 > newc && head -c 3000 /dev/urandom > secret
"$T" compress --rm -r -j 1 -l 19 --chunk 1M --no-fsync q 2> e & pid=$!
for i in $(seq 1 500); do [ -n "$(find q -name '.a.zst.tp.*')" ] && break; sleep 0.01; done
[ -n "$(find q -name '.a.zst.tp.*')" ] || fail "the first file's temp never appeared"
ln -sfn "$D/secret" q/b                  # a file swapped for a symlink
mv newc q/c                              # a file swapped for another
mv q/sub q/sub.old && ln -s "$D/q2" q/sub # a directory swapped for a symlink
wait $pid; rc=$?
[ $rc -eq 1 ] || fail "inputs replaced during the run: exit $rc, want 1: $(cat e)"
grep -q '^tripool: q/b: Too many levels of symbolic links$' e || fail "q/b swapped for a symlink: $(cat e)"
grep -q '^tripool: q/c: replaced during the run: ' e || fail "q/c replaced: $(cat e)"
grep -q '^tripool: q/sub/d: replaced during the run: ' e || fail "q/sub/d replaced: $(cat e)"
[ "$(wc -l < e)" -eq 3 ] || fail "replaced inputs: stderr: $(cat e)"
[ ! -e q/b.zst ] && [ ! -e q/c.zst ] && [ -z "$(ls q2 | grep -v '^d$')" ] || fail "a replaced input was compressed: $(ls -a q q2)"
[ ! -e q/a ] && zstd -q -d -c q/a.zst | cmp -s - qref/a || fail "the untouched input was not compressed"
cmp -s q2/d <(seq 1 50) && [ -L q/b ] && cmp -s q/c <(seq 9 99) || fail "a replaced input was changed or removed"
no_tmp q
# --rm keeps a source that changed after it was read (appended while compressed)
cp qref/a q/a2
"$T" compress --rm -j 1 -l 19 --chunk 1M --no-fsync q/a2 2> e & pid=$!
for i in $(seq 1 500); do [ -n "$(find q -name '.a2.zst.tp.*')" ] && break; sleep 0.01; done
echo appended >> q/a2
wait $pid; rc=$?
[ $rc -eq 1 ] && grep -q 'q/a2: source changed during the run (kept)' e || fail "source changed under --rm: rc $rc: $(cat e)"
[ -e q/a2 ] && [ "$(tail -1 q/a2)" = appended ] || fail "--rm removed a source that changed"
zstd -q -d -c q/a2.zst | cmp -s - qref/a || fail "the output of a grown source is not its planned bytes"

# ---- 6. a tree that changes while walked -------------------------------------------------
N=120
mkdir -p live/d1 live/d2 elsewhere && seq 1 9 > elsewhere/e1
for i in $(seq 1 $N); do seq 1 $i > live/d$((i % 2 + 1))/f$i; done
mkdir ref && for i in $(seq 1 $N); do seq 1 $i > ref/f$i; done
"$T" hash ref/* | sed 's|.*(ref/\(f[0-9]*\)) = |\1 |' | sort > ref.hash
# (contents change only by rename: a file is the whole of one content)
mutate() {
    local k=0
    while :; do
        k=$((k + 1))
        local i=$((k % N + 1)) d=live/d$((k % 2 + 1))
        case $((k % 6)) in
        0) rm -f $d/f$i ;;
        1) seq 1 $i > $d/f$i.new && mv -f $d/f$i.new $d/f$i ;;
        2) [ -e $d/f$i ] && mv -f $d/f$i $d/g$i ;;
        3) ln -sfn "$D/secret" $d/f$i ;;
        4) rm -rf live/d3 && ln -sfn "$D/elsewhere" live/d3 ;;
        5) rm -f live/d3 && mkdir -p live/d3 && seq 1 $i > stage && mv stage live/d3/f$i ;;
        esac
    done
}
mutate & mut=$!
runs=$([ "$SAN" = none ] && echo 6 || echo 3)
for r in $(seq 1 $runs); do
    timeout 60 "$T" hash -r live > o 2> e; rc=$?
    [ $rc -le 1 ] || fail "hash -r on a changing tree: exit $rc: $(tail -3 e)"
    [ -z "$(grep -v '^tripool: ' e)" ] || fail "hash -r: stray stderr: $(grep -v '^tripool: ' e | head -3)"
    # every hash printed is that of the file's (name-given) content
    # (f12.new: the mutator's file being written; *.zst: earlier outputs)
    sed -n 's|^XXH3 (live/d[0-9]/[fg]\([0-9]*\)) = |f\1 |p' o | sort -u | comm -23 - ref.hash > bad
    [ -z "$(grep -v '^XXH3 (live/' o)" ] || fail "hash -r: stray line: $(grep -v '^XXH3 (live/' o | head -2)"
    [ ! -s bad ] || fail "hash -r on a changing tree printed wrong hashes: $(head -3 bad)"
    timeout 60 "$T" compress -f -r --no-fsync live > /dev/null 2> e; rc=$?
    [ $rc -le 1 ] || fail "compress -r on a changing tree: exit $rc: $(tail -3 e)"
    [ -z "$(find elsewhere -name '*.zst')" ] || fail "compress -r wrote through a swapped directory"
done
kill $mut && wait $mut 2> /dev/null; mut=
for z in $(find live -name '*.zst' -type f); do
    b=$(basename "$z" .zst)
    n=${b#[fg]}
    n=${n%.new}
    [ "$b" = "${b%.new}" ] || continue # a mutator temp caught mid-rename: content may be partial
    zstd -q -d -c "$z" 2> /dev/null | cmp -s - "ref/f$n" || fail "$z does not hold f$n's content"
done
for z in $(find live -name '*.zst' -type f); do
    zstd -q -d -c "$z" 2> /dev/null | cmp -s - secret && fail "$z holds the secret"
done
no_tmp live
echo "trees: all checks passed ($runs runs on a changing tree) [$SAN]"
