#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 60
# --metrics-addr (issue 7): while a job runs, GET /metrics serves the
# library's own collectors for the engine's task pool (counters, gauges and
# the queue-wait/run-time histograms), buffer pool, fd pool and the engine,
# each with label pool="engine"; promtool accepts the exposition; the
# engine's byte counters move; an unusable address is a usage error (2).
set -u
T=${TRIPOOL:?set TRIPOOL to the tripool binary}
D=$(mktemp -d /tmp/tp_cli_metrics.XXXXXX)
trap 'kill $pid 2> /dev/null; rm -rf "$D"' EXIT
pid=""
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$D"
head -c 48M /dev/urandom > big
# -l 19 with one worker: slow enough to scrape twice while it runs.
"$T" compress -l 19 -j 1 --chunk 1M --no-fsync --metrics-addr 127.0.0.1:0 big 2> e & pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' e)
    [ -n "$port" ] && break
    sleep 0.02
done
[ -n "$port" ] || fail "no 'metrics on port' line: $(cat e)"
bytes_in() { sed -n 's/^tripool_engine_bytes_in_total{pool="engine"} \([0-9.e+]*\)$/\1/p' "$1"; }
got1=""
for _ in $(seq 1 300); do # until a first chunk was consumed
    curl -sf "http://127.0.0.1:$port/metrics" > m1 || fail "scrape failed"
    got1=$(bytes_in m1)
    [ -n "$got1" ] && [ "${got1%%.*}" != 0 ] && break
    sleep 0.05
done
kill -0 $pid 2> /dev/null || fail "the job ended before it could be scraped twice"
sleep 0.5
curl -sf "http://127.0.0.1:$port/metrics" > m2 || fail "second scrape failed"
promtool check metrics < m2 || fail "promtool rejects the exposition"
for series in \
    'tripool_pool_tasks_submitted_total{pool="engine"}' \
    'tripool_pool_queue_wait_seconds_bucket{pool="engine",le="+Inf"}' \
    'tripool_pool_task_run_seconds_count{pool="engine"}' \
    'tripool_buf_gets_total{pool="engine",' \
    'tripool_fd_misses_total{pool="engine"}' \
    'tripool_engine_bytes_in_total{pool="engine"}' \
    'tripool_engine_bytes_out_total{pool="engine"}' \
    'tripool_engine_files_total{pool="engine",result="ok"}' \
    'tripool_engine_peak_mem_bytes{pool="engine"}' \
    'tripool_engine_peak_open_files{pool="engine"}'; do
    grep -qF "$series" m2 || fail "series $series missing: $(grep -c . m2) lines"
done
got2=$(bytes_in m2)
awk -v a="$got1" -v b="$got2" 'BEGIN { exit !(b + 0 >= a + 0 && b + 0 > 0) }' \
    || fail "bytes_in did not advance: $got1 -> $got2"
kill -INT $pid
wait $pid; rc=$?
pid=""
[ $rc -eq 130 ] || fail "SIGINT must exit 130, got $rc"

# A port already in use: usage error, no job run.
"$T" hash --metrics-addr "127.0.0.1:$port" big > /dev/null 2>&1 # port now free again: must work
[ $? -eq 0 ] || fail "hash with a free metrics port failed"
python3 -c 'import socket,time,sys
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1); print(s.getsockname()[1]); sys.stdout.flush(); time.sleep(30)' > portfile & holder=$!
for _ in $(seq 1 100); do [ -s portfile ] && break; sleep 0.02; done
busy=$(cat portfile)
"$T" hash --metrics-addr "127.0.0.1:$busy" big > o 2> e; rc=$?
kill $holder
[ $rc -eq 2 ] || fail "a busy metrics port must exit 2, got $rc"
grep -q -- "--metrics-addr 127.0.0.1:$busy" e && [ ! -s o ] || fail "busy port: $(cat e)"
echo "metrics: all checks passed"
