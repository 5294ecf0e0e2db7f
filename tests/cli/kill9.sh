#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 240
# kill -9 at random moments of `compress --rm -r`, `decompress --rm -r` and
# `cp` (a random delay between 0 and the command's measured run time),
# KILL9_ITER times in all (200; 40 under the sanitizers). After every kill:
#   - every input exists as its source (unchanged) or as its complete,
#     verified output, never neither;
#   - a file under a final output name is always complete;
# then the same command runs again (-f: outputs published before the kill
# but whose source was not yet removed are redone) and must succeed,
# leaving every output complete, no source of --rm, and no temporary file:
# the temps the killed run left are removed by this run (their writer pid
# is dead). Files that only look like temps (a live pid, a bad form, another
# output's) are never touched.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
SAN=${TP_TEST_SANITIZER:-none}
ITER=${KILL9_ITER:-$([ "$SAN" = none ] && echo 200 || echo 40)}
D=$(mktemp -d /dev/shm/tp_cli_kill9.XXXXXX 2> /dev/null || mktemp -d /tmp/tp_cli_kill9.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
R=$D/ref
mkdir -p "$R/src" "$R/zst"
seq 1 20000 > "$R/src/a"
head -c 60000 /dev/urandom > "$R/src/b"
{ seq 1 200000; head -c 600000 /dev/urandom | base64; } > "$R/src/c" # 2.1 MB: many 64K chunks
: > "$R/src/empty"
head -c 40000000 /dev/urandom > "$R/big"
for f in a b c empty; do
    "$T" compress --chunk 64K -o "$R/zst/$f.zst" "$R/src/$f" || fail "setup"
done
OPTS="-j 2 --chunk 64K"

setup() { # case
    rm -rf w && mkdir w
    case $1 in
    compress) cp -a "$R/src" w/t && LOOK="w/t/.a.zst.tp.$$.Abc123" ;; # (other names are inputs)
    decompress) cp -a "$R/zst" w/t && LOOK="w/t/.a.tp.$$.Abc123 w/t/.a.tp.x.Abc123" ;;
    cp) cp -a "$R/big" w/big && LOOK="w/.copy.tp.$$.Abc123 w/.copy.tp.x.Abc123" ;;
    esac
    # look-alikes of this output's temps that are not stale (a live writer:
    # this shell; not a pid) and a stale one of another output: must survive
    LOOK="$LOOK w/.other.tp.999999999.Abc123"
    local l
    for l in $LOOK; do : > "$l"; done
}
cmd() { # case [extra options]
    case $1 in
    compress) echo "compress --rm -r $OPTS ${2:-} w/t" ;;
    decompress) echo "decompress --rm -r $OPTS ${2:-} w/t" ;;
    cp) echo "cp $OPTS ${2:-} w/big w/copy" ;;
    esac
}

# Every input as source or complete output; final names complete.
check_state() { # case when
    local f
    case $1 in
    compress)
        for f in a b c empty; do
            local s=w/t/$f z=w/t/$f.zst
            [ -e "$s" ] || [ -e "$z" ] || fail "$2: $f lost: neither source nor output"
            [ ! -e "$s" ] || cmp -s "$s" "$R/src/$f" || fail "$2: source $f changed"
            [ ! -e "$z" ] || zstd -q -d -c "$z" 2> /dev/null | cmp -s - "$R/src/$f" ||
                fail "$2: $z under its final name is not complete"
        done ;;
    decompress)
        for f in a b c empty; do
            local s=w/t/$f.zst o=w/t/$f
            [ -e "$s" ] || [ -e "$o" ] || fail "$2: $f lost: neither source nor output"
            [ ! -e "$s" ] || cmp -s "$s" "$R/zst/$f.zst" || fail "$2: source $f.zst changed"
            [ ! -e "$o" ] || cmp -s "$o" "$R/src/$f" || fail "$2: $o under its final name is not complete"
        done ;;
    cp)
        cmp -s w/big "$R/big" || fail "$2: cp source changed"
        [ ! -e w/copy ] || cmp -s w/copy "$R/big" || fail "$2: w/copy under its final name is not complete" ;;
    esac
}

# Measure each command's run time (ms; the faster of two runs): the kill
# delays span it.
declare -A MS
for c in compress decompress cp; do
    MS[$c]=1000000
    for k in 1 2; do
        setup $c
        t0=$(date +%s%N)
        "$T" $(cmd $c) 2> err || fail "$c: $(cat err)"
        t=$((($(date +%s%N) - t0) / 1000000 + 1))
        [ $t -lt ${MS[$c]} ] && MS[$c]=$t
    done
done
echo "kill9: run times (ms): compress ${MS[compress]}, decompress ${MS[decompress]}, cp ${MS[cp]}"

exec 9<> <(:) # never readable: `read -t` on it is a sleep without a process
cases=(compress decompress cp)
left=0 early=0 swept=0
t0=$(date +%s)
for i in $(seq 1 "$ITER"); do
    c=${cases[$((i % 3))]}
    setup $c
    ms=$((RANDOM % (MS[$c] + 1)))
    "$T" $(cmd $c) 2> /dev/null &
    pid=$!
    read -r -t "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))" -u 9 # sleeps, no fork
    kill -9 $pid 2> /dev/null || early=$((early + 1)) # already done: still checked
    wait $pid 2> /dev/null
    check_state $c "iteration $i ($c killed at ${ms} ms)"
    ntmp=$(find w -name '.*.tp.[1-9]*' ! -name ".*.tp.$$.*" ! -name '.other.*' | wc -l)
    [ "$ntmp" -gt 0 ] && left=$((left + 1))
    # The next run over the same inputs: completes and removes the dead temps.
    "$T" $(cmd $c -f) > /dev/null 2> err || fail "iteration $i: rerun of $c failed: $(cat err)"
    check_state $c "iteration $i rerun"
    case $c in
    compress) for f in a b c empty; do [ ! -e w/t/$f ] || fail "iteration $i: rerun kept source $f"; done ;;
    decompress) for f in a b c empty; do [ ! -e w/t/$f.zst ] || fail "iteration $i: rerun kept $f.zst"; done ;;
    cp) [ -e w/copy ] || fail "iteration $i: rerun made no copy" ;;
    esac
    rest=$(find w -name '.*.tp.*' ! -name '*.Abc123')
    [ -z "$rest" ] || fail "iteration $i: temps left after the rerun: $rest"
    for l in $LOOK; do
        [ -e "$l" ] || fail "iteration $i: $l (not a stale temp of this run) was removed"
    done
    [ "$ntmp" -gt 0 ] && swept=$((swept + ntmp))
done
echo "kill9: $ITER kills in $(($(date +%s) - t0)) s; $left left temps ($swept removed by the next run), $early finished before the kill [$SAN]"
[ "$SAN" != none ] || [ $left -gt 0 ] || fail "no kill ever left a temp: the kills missed the writes"
