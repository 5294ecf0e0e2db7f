#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 30
# USDT probes at the pools' hot points (issue 7): the tripool binary, which
# links every module, carries a stapsdt note of provider "tripool" for each,
# so perf/bpftrace can attach without a rebuild. When the build had no
# <sys/sdt.h> (not installed, or TP_MINIMAL_DEPS=ON: cmake says which in
# TP_TEST_PROBES), TP_PROBE compiles to nothing by design: then no note at all.
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
P=${TP_TEST_PROBES:?set by cmake/tests.cmake: 1, or why the build has no probes}
command -v readelf > /dev/null || { echo "FAIL: readelf (binutils) missing" >&2; exit 1; }
if [ "$P" != 1 ]; then
    n=$(readelf -n "$T" | grep -c 'Provider: tripool')
    if [ "$n" -ne 0 ]; then
        echo "FAIL: the build says no probes ($P) but $T has $n tripool notes" >&2
        exit 1
    fi
    echo "probes: compiled out ($P); none in the binary, as expected"
    exit 0
fi
notes=$(readelf -n "$T" | grep -A2 'Provider: tripool' | sed -n 's/^ *Name: //p' | sort -u)
rc=0
for p in task_submit task_start task_finish buf_get buf_put fd_open fd_evict metrics_scrape; do
    if ! grep -qx "$p" <<< "$notes"; then
        echo "FAIL: no USDT probe tripool:$p in $T" >&2
        rc=1
    fi
done
[ $rc -eq 0 ] && echo "probes: all present: $(echo $notes)"
exit $rc
