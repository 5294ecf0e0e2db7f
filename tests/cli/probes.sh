#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 30
# USDT probes at the pools' hot points (issue 7): the tripool binary, which
# links every module, carries a stapsdt note of provider "tripool" for each,
# so perf/bpftrace can attach without a rebuild. Skipped only when the build
# had no <sys/sdt.h> (then TP_PROBE compiles to nothing by design).
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
if [ ! -e /usr/include/x86_64-linux-gnu/sys/sdt.h ] && [ ! -e /usr/include/sys/sdt.h ]; then
    echo "probes: <sys/sdt.h> not installed; probes compiled out (nothing to check)"
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
