#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 300
# Injected faults (tests/fault/tp_fault.c, LD_PRELOAD) on every failure path
# of hash, compress (and --rm), decompress (and --rm), cp and count: for each
# command, each kind of call (open, read, pread, write, pwrite, fsync,
# rename, unlink, copy_file_range, malloc) and each error, the Nth call on
# the files under test fails, for N = 1, 2, ... until a run makes fewer
# calls than N. Every run must either
#   - succeed (exit 0, no stderr, outputs equal to the reference), which is
#     required for EINTR and short reads/writes (retried transparently), or
#   - fail with exit 1 and exactly one stderr line "tripool: ..." naming the
#     injected error,
# and in both cases: no file under a final name that is not complete and
# correct, the source of --rm kept unless its output is complete, no
# temporary file left, no hang (each run has a timeout). Under ASan the
# faults are fewer (one or two errors per call kind, on the cases with the
# most cleanup; no malloc, see tp_fault.c): the runs are ~5x slower, and
# what ASan adds is leaks and bad frees on those error paths. Not run under
# TSan: an injected fault changes one call's result on one thread, which
# the plain run checks completely; TSan would only repeat it at ~10x the
# cost (the engine's threading is exercised by its stress tests there).
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
F=${TP_FAULT_LIB:?set TP_FAULT_LIB to the fault shim}
SAN=${TP_TEST_SANITIZER:-none}
# tmpfs when there is one: fsync costs nothing there, and faults need no disk
D=$(mktemp -d /dev/shm/tp_cli_faults.XXXXXX 2> /dev/null || mktemp -d /tmp/tp_cli_faults.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
W=$D/w # the files under test: TP_FAULT_PATH matches only these
R=$D/ref
mkdir -p "$R"
cd "$D"
# ASan must not insist on being first: the shim is preloaded before it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"

# ---- reference inputs -------------------------------------------------------------
seq 1 20000 > "$R/small"                                    # one small file (batch path)
{ seq 1 30000; head -c 100000 /dev/urandom | base64; } > "$R/big" # 4+ chunks of 64K
mkdir "$R/tree" && seq 1 300 > "$R/tree/a" && seq 5 900 > "$R/tree/b" && : > "$R/tree/empty"
"$T" compress --chunk 64K -o "$R/big.zst" "$R/big" || fail "setup: multi-frame .zst"
zstd -q -c "$R/small" > "$R/small.zst" || fail "setup: foreign .zst"
"$T" hash -a crc32c --chunk 64K "$R/big" | sed "s|$R|$W|" > "$R/hash.big"
"$T" hash -r "$R/tree" | sed "s|$R|$W|" > "$R/hash.tree"
"$T" count --chunk 64K -e 99 "$R/big" | sed "s|$R|$W|" > "$R/count.big"

# ---- the cases: name | inputs to copy into W | command | what a success leaves -----
# check kinds: stdout:REF  out:FILE=REFFILE (decoded if .zst)  gone:FILE (--rm)
CASES=(
    "hash-crc-big|big|hash -a crc32c --chunk 64K $W/big|stdout:hash.big"
    "hash-tree|tree|hash -r $W/tree|stdout:hash.tree"
    "count-e|big|count --chunk 64K -e 99 $W/big|stdout:count.big"
    "compress-big|big|compress --chunk 64K $W/big|out:big.zst=big"
    "compress-rm-small|small|compress --rm $W/small|out:small.zst=small gone:small"
    "compress-rm-big|big|compress --rm --chunk 64K $W/big|out:big.zst=big gone:big"
    "compress-tree|tree|compress -r $W/tree|out:tree/a.zst=tree/a out:tree/b.zst=tree/b out:tree/empty.zst=tree/empty"
    "decompress-rm|big.zst|decompress --rm $W/big.zst|out:big=big gone:big.zst"
    "decompress-rm-stream|small.zst|decompress --rm $W/small.zst|out:small=small gone:small.zst"
    "cp|big|cp --chunk 64K $W/big $W/copy|out:copy=big"
)

# (EXDEV on copy_file_range: the pread/pwrite fallback; EINVAL on rename:
# the link+unlink fallback for filesystems without RENAME_NOREPLACE)
OPS_FULL="open:EMFILE,ENOSPC,EINTR read:EIO,short pread:EIO,EINTR,short
write:ENOSPC,EINTR,short pwrite:ENOSPC,short cfr:EIO,EINTR,short,EXDEV
fsync:EIO,EINTR rename:EIO,EXDEV,EINVAL unlink:EIO malloc:ENOMEM"
OPS_SAN="open:EMFILE read:EIO pread:EIO,short write:ENOSPC,EINTR pwrite:ENOSPC cfr:EIO,short
fsync:EIO rename:EXDEV,EINVAL unlink:EIO"
# Under ASan the cases whose error paths free the most (leaks show there);
# TSan is not run: see the top.
SAN_CASES="count-e compress-rm-big compress-tree decompress-rm decompress-rm-stream cp"
MALLOC_CASES="hash-tree compress-rm-big compress-tree decompress-rm cp"
case $SAN in
none) OPS=$OPS_FULL ;;
address) OPS=$OPS_SAN ;;
*) echo "faults: not run under $SAN (see the top)"; exit 0 ;;
esac

errtext() {
    case $1 in
    EIO) echo 'Input/output error' ;; ENOSPC) echo 'No space left on device' ;;
    EMFILE) echo 'Too many open files' ;;
    # (pthread_create says EAGAIN when it cannot allocate a thread)
    ENOMEM) echo 'Cannot allocate memory|out of memory|cannot start: Resource temporarily unavailable' ;;
    EXDEV) echo 'Invalid cross-device link' ;; EINVAL) echo 'Invalid argument' ;;
    EACCES) echo 'Permission denied' ;;
    esac
}

# Does W hold the complete, correct output $1 (relative to W) of reference $2?
out_ok() {
    local out=$W/$1 ref=$R/$2
    [ -f "$out" ] || return 1
    case $out in
    *.zst) zstd -q -d -c "$out" 2> /dev/null | cmp -s - "$ref" ;;
    *) cmp -s "$out" "$ref" ;;
    esac
}

runs=0 recovered=0 failed_ok=0 nfail=0
check_run() { # case-name spec checks rc
    local name=$1 spec=$2 checks=$3 rc=$4 kind=${2##*:}
    local ctx="$name with $spec (rc $rc)"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && fail "$ctx: hang (timeout)"
    [ $rc -eq 0 ] || [ $rc -eq 1 ] || fail "$ctx: exit status $rc; stderr: $(cat err)"
    local tmps
    tmps=$(find "$W" -name '.*.tp.*')
    [ -z "$tmps" ] || fail "$ctx: temporary files left: $tmps"
    if [ $rc -eq 0 ]; then
        [ ! -s err ] || fail "$ctx: exit 0 with stderr: $(cat err)"
    else
        case $kind in EINTR | short) fail "$ctx: $kind must be retried, got: $(cat err)" ;; esac
        # one line per failed input: a tree's files can share a fault (one
        # syncfs, one batch task)
        local max=1
        case $name in *tree*) max=3 ;; esac
        [ "$(wc -l < err)" -ge 1 ] && [ "$(wc -l < err)" -le $max ] ||
            fail "$ctx: want 1..$max error lines, got: $(cat err)"
        [ -z "$(grep -v '^tripool: ' err)" ] || fail "$ctx: error line not from tripool: $(cat err)"
        [ -z "$(grep -Ev "$(errtext "$kind")" err)" ] || fail "$ctx: error does not say $kind: $(cat err)"
    fi
    local c
    for c in $checks; do
        case $c in
        stdout:*)
            if [ $rc -eq 0 ]; then
                cmp -s out "$R/${c#stdout:}" || fail "$ctx: wrong output: $(diff out "$R/${c#stdout:}")"
            else # what was printed is correct (the failed file is missing)
                [ -z "$(grep -vxFf "$R/${c#stdout:}" out)" ] || fail "$ctx: wrong line: $(cat out)"
            fi ;;
        out:*)
            local o=${c#out:}
            o=${o%%=*}
            if [ -e "$W/$o" ]; then
                out_ok "$o" "${c#*=}" || fail "$ctx: $o under its final name is not complete"
                ! grep -q 'verify (source kept)' err ||
                    fail "$ctx: $o is under its final name though its verification failed"
            elif [ $rc -eq 0 ]; then
                fail "$ctx: exit 0 without $o"
            fi ;;
        gone:*)
            local g=${c#gone:} o
            o=$(echo "$checks" | tr ' ' '\n' | sed -n 's/^out:\([^=]*\)=.*/\1/p' | head -1)
            if [ $rc -eq 0 ]; then
                [ ! -e "$W/$g" ] || fail "$ctx: --rm kept $g after success"
            else
                [ -e "$W/$g" ] || fail "$ctx: --rm failed and removed $g"
            fi ;;
        esac
    done
}

for cs in "${CASES[@]}"; do
    IFS='|' read -r name inputs cmd checks <<< "$cs"
    [ "$SAN" = none ] || [[ " $SAN_CASES " == *" $name "* ]] || continue
    [ -z "${FAULTS_CASES:-}" ] || [[ " $FAULTS_CASES " == *" $name "* ]] || continue # (to debug)
    for oe in $OPS; do
        op=${oe%%:*}
        # malloc faults hit every allocation of the run (~70 each): on the
        # cases that reach the most code only
        [ $op = malloc ] && ! [[ " $MALLOC_CASES " == *" $name "* ]] && continue
        for kind in $(echo "${oe#*:}" | tr ',' ' '); do
            n=1
            while :; do
                rm -rf "$W" log && mkdir "$W"
                for i in $inputs; do cp -a "$R/$i" "$W/"; done
                TP_FAULT="$op:$n:$kind" TP_FAULT_PATH="$W/" TP_FAULT_LOG="$D/log" \
                    timeout -k 2 30 env LD_PRELOAD="$F" "$T" $cmd -j 2 > out 2> err
                rc=$?
                [ $rc -eq 125 ] && fail "shim refused $op:$n:$kind: $(cat err)"
                [ -e log ] || break # fewer than n calls of this kind: done
                # (a subshell: with FAULTS_KEEP_GOING=1 every failing run is listed)
                if ! (check_run "$name" "$op:$n:$kind" "$checks" $rc); then
                    nfail=$((nfail + 1))
                    [ -n "${FAULTS_KEEP_GOING:-}" ] || exit 1
                fi
                runs=$((runs + 1))
                [ $rc -eq 0 ] && recovered=$((recovered + 1)) || failed_ok=$((failed_ok + 1))
                n=$((n + 1))
                [ $n -le 400 ] || fail "$name: $op has more than 400 calls: narrow the case"
            done
        done
    done
done
[ $nfail -eq 0 ] || fail "$nfail of $runs runs failed"
echo "faults: $runs injected runs passed ($failed_ok failed cleanly, $recovered recovered) [$SAN]"
