#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Task pool vs. its peers (issue 2 "Performance"). Usage: bench/run_pool.sh BUILD_DIR
# BUILD_DIR was configured with -DTP_BUILD_BENCH=ON (make bench does that).
# Every scenario runs each peer once per repetition, peers interleaved, so
# machine noise hits all of them alike; the tables show medians.
# POOL_BENCH_REPS (default 3) sets the repetitions; the memory scenario runs
# twice whatever it is (it hardly varies). A run takes ~2 min on an idle
# 2-CPU machine, ~3 min when other jobs share it.
set -euo pipefail
B=${1:?usage: bench/run_pool.sh BUILD_DIR}
BIN=$B/pool_bench
[ -x "$BIN" ] || { echo "run_pool.sh: $BIN not built (configure with -DTP_BUILD_BENCH=ON)" >&2; exit 1; }
REPS=${POOL_BENCH_REPS:-3}
PEERS=$("$BIN" 2>&1 | sed -n 's/^peers: *//p' || true)
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT

M=1000000      # "1M" tasks
SMALL=100000   # C pools at 64 workers run at ~100k/s: a smaller count, same per-task rate
TPT=10000      # one thread per task: a smaller count, per-task rate
LAT=20000      # latency samples per run (the pace can be slow on a busy machine)

run() { # TAG PEER ARGS...
    local tag=$1 peer=$2
    shift 2
    "$BIN" "$peer" "$@" | sed "s/^/tag=$tag /" >>"$RAW" || {
        echo "run_pool.sh: $peer $* failed" >&2
        echo "tag=$tag peer=$peer failed=1" >>"$RAW"
    }
}

t_start=$(date +%s)
load_start=$(cut -d' ' -f1 /proc/loadavg)
for rep in $(seq "$REPS"); do
    echo "run_pool.sh: repetition $rep of $REPS" >&2
    for p in $PEERS; do
        case $p in thread) n=$TPT ;; *) n=$M ;; esac
        run e2 "$p" empty --workers 2 --tasks "$n"
    done
    for p in $PEERS; do
        case $p in tripool) n=$M ;; thread) n=$TPT ;; *) n=$SMALL ;; esac
        run e64 "$p" empty --workers 64 --tasks "$n"
    done
    for p in $PEERS; do
        case $p in thread) n=$TPT ;; *) n=200000 ;; esac
        run busy "$p" busy --workers 2 --tasks "$n" --task-us 1
    done
    for p in $PEERS; do
        run lat "$p" latency --workers 2 --tasks "$LAT" --task-us 10 --load 0.5
    done
    for s in 8 64; do
        for p in $PEERS; do
            case $p in thread) n=$TPT ;; *) n=$M ;; esac
            run "m$s" "$p" empty --workers 2 --submitters "$s" --tasks "$n"
        done
    done
    if [ "$rep" -le 2 ]; then
        for p in $PEERS; do
            [ "$p" = thread ] && continue
            run mem "$p" memory --workers 2 --tasks 1048576
        done
    fi
done
t_end=$(date +%s)
load_end=$(cut -d' ' -f1 /proc/loadavg)

# med TAG PEER FIELD -> median of FIELD over the repetitions ("" if none)
med() {
    awk -v tag="tag=$1" -v peer="peer=$2" -v key="$3=" '
        $1 == tag && $2 == peer && !/failed=1/ {
            for (i = 3; i <= NF; i++) if (index($i, key) == 1) v[++n] = substr($i, length(key) + 1) + 0
        }
        END {
            if (!n) exit
            for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
            printf "%.6g", (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2)
        }' "$RAW"
}
# tasks TAG PEER -> task count used
tasks() { awk -v tag="tag=$1" -v peer="peer=$2" '$1 == tag && $2 == peer {
    for (i = 3; i <= NF; i++) if ($i ~ /^tasks=/) { print substr($i, 7); exit } }' "$RAW"; }
rate() { # pretty tasks/s
    awk -v r="$1" 'BEGIN { if (r == "") print "-"; else if (r >= 1e6) printf "%.2fM", r/1e6;
                           else printf "%.0fk", r/1e3 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a/b }'; }
verdict() { # VALUE OP LIMIT
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { if (v == "-" || v == "") { print "n/a"; exit }
        ok = (op == ">=") ? v >= l : v <= l; print ok ? "met" : "**missed**" }'
}
name() {
    case $1 in tripool) echo tripool ;; glib) echo "GLib" ;; cthreadpool) echo "C-Thread-Pool" ;;
        libuv) echo "libuv" ;; thread) echo "thread/task" ;; *) echo "$1" ;; esac
}

have_tp=no
for p in $PEERS; do [ "$p" = tripool ] && have_tp=yes; done

echo
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);" \
    "$(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC'); $REPS repetitions, medians;" \
    "wall time $((t_end - t_start)) s; load average $load_start at start, $load_end at end."
echo
head="| Scenario |"
sep="|---|"
for p in $PEERS; do
    head="$head $(name "$p") |"
    sep="$sep---:|"
done
echo "$head"
echo "$sep"
row() { # TITLE TAG FIELD FORMATTER [NOMINAL_TASKS]
    local line="| $1 |" v n
    for p in $PEERS; do
        v=$(med "$2" "$p" "$3")
        case $4 in
        rate)
            n=$(tasks "$2" "$p")
            line="$line $(rate "$v")"
            if [ -n "$n" ] && [ "$n" != "${5:-$M}" ]; then line="$line ($((n / 1000))k tasks)"; fi
            line="$line |"
            ;;
        lat) line="$line $v / $(med "$2" "$p" p99_us) |" ;;
        cpu) line="$line ${v:--} |" ;;
        mem)
            if [ -z "$v" ]; then line="$line n/a |"
            else line="$line $v B (RSS $(med "$2" "$p" rss_mib) MiB) |"; fi
            ;;
        esac
    done
    echo "$line"
}
row "1M empty tasks, 2 workers, tasks/s" e2 rate rate
row "1M empty tasks, 64 workers, tasks/s" e64 rate rate
row "200k tasks of 1 us, 2 workers, tasks/s" busy rate rate 200000
row "latency p50 / p99 us (10 us tasks, 50% of the CPU the run got, 2 workers)" lat p50_us lat
row "bytes per queued task (RSS growth / total RSS with 1M queued)" mem bytes_per_task mem
row "matrix 1 submitter x 1M, tasks/s" e2 rate rate
row "matrix 8 submitters x 125k, tasks/s" m8 rate rate
row "matrix 64 submitters x 16k, tasks/s" m64 rate rate

echo
echo "CPU time per task (ns, all threads of the process, median): how much work each pool"
echo "spends per task, whatever share of the CPUs the machine gave the run."
echo
echo "$head"
echo "$sep"
row "1M empty tasks, 2 workers" e2 cpu_ns_per_task cpu
row "1M empty tasks, 64 workers" e64 cpu_ns_per_task cpu
row "200k tasks of 1 us, 2 workers" busy cpu_ns_per_task cpu
row "matrix 8 submitters x 125k" m8 cpu_ns_per_task cpu
row "matrix 64 submitters x 16k" m64 cpu_ns_per_task cpu

echo
echo "Latency detail (us, medians; load = arrivals / what the workers could run;"
echo "cpu = share of 2 idle CPUs two spinning threads got just before the run; CPU/task = process"
echo "CPU time per task in ns, the 10 us of work and the paced submitter included):"
echo
echo "| Peer | p50 | p99 | p99.9 | max | load | cpu | CPU/task |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for p in $PEERS; do
    echo "| $(name "$p") | $(med lat "$p" p50_us) | $(med lat "$p" p99_us) | $(med lat "$p" p999_us) |" \
        "$(med lat "$p" max_us) | $(med lat "$p" load) | $(med lat "$p" cpu) |" \
        "$(med lat "$p" cpu_ns_per_task) |"
done

if [ $have_tp = yes ]; then
    best64=0
    cbest64=
    for p in glib cthreadpool libuv; do
        v=$(med e64 "$p" rate)
        best64=$(awk -v a="$best64" -v b="${v:-0}" 'BEGIN { print (b > a) ? b : a }')
        v=$(med e64 "$p" cpu_ns_per_task)
        cbest64=$(awk -v a="$cbest64" -v b="$v" 'BEGIN { print (a == "" || (b != "" && b < a)) ? b : a }')
    done
    r_e2=$(ratio "$(med e2 tripool rate)" "$(med e2 glib rate)")
    r_e64=$(ratio "$(med e64 tripool rate)" "$best64")
    r_own=$(ratio "$(med e64 tripool rate)" "$(med e2 tripool rate)")
    r_busy=$(ratio "$(med busy tripool rate)" "$(med busy glib rate)")
    r_p99=$(ratio "$(med lat tripool p99_us)" "$(med lat glib p99_us)")
    # the same ratios in CPU time per task (peer / tripool): steadier on a shared machine
    c_e2=$(ratio "$(med e2 glib cpu_ns_per_task)" "$(med e2 tripool cpu_ns_per_task)")
    c_e64=$(ratio "$cbest64" "$(med e64 tripool cpu_ns_per_task)")
    c_own=$(ratio "$(med e2 tripool cpu_ns_per_task)" "$(med e64 tripool cpu_ns_per_task)")
    c_busy=$(ratio "$(med busy glib cpu_ns_per_task)" "$(med busy tripool cpu_ns_per_task)")
    memb=$(med mem tripool bytes_per_task)
    echo
    echo "| Goal (issue 2) | Measured (wall clock) | Result | Same ratio in CPU time per task |"
    echo "|---|---:|---|---:|"
    echo "| 1M empty, 2 workers: >= 3x GLib | ${r_e2}x | $(verdict "$r_e2" ">=" 3) | ${c_e2}x |"
    echo "| 1M empty, 64 workers: >= 10x best C pool | ${r_e64}x | $(verdict "$r_e64" ">=" 10) | ${c_e64}x |"
    echo "| 1M empty, 64 workers: >= 0.5x own 2-worker rate | ${r_own}x | $(verdict "$r_own" ">=" 0.5) | ${c_own}x |"
    echo "| 200k x 1 us, 2 workers: >= 1.8x GLib | ${r_busy}x | $(verdict "$r_busy" ">=" 1.8) | ${c_busy}x |"
    echo "| latency p99 <= 0.5x GLib's | ${r_p99}x | $(verdict "$r_p99" "<=" 0.5) | |"
    echo "| <= 64 bytes per queued task | ${memb:--} B | $(verdict "${memb:--}" "<=" 64) | |"
    echo
    echo "Matrix ratios tripool / best other pool (tasks/s):"
    for t in "e2 1x1M" "m8 8x125k" "m64 64x16k"; do
        set -- $t
        t=$1
        best=0
        for p in glib cthreadpool libuv; do
            v=$(med "$t" "$p" rate)
            best=$(awk -v a="$best" -v b="${v:-0}" 'BEGIN { print (b > a) ? b : a }')
        done
        echo "- $2: $(ratio "$(med "$t" tripool rate)" "$best")x"
    done
else
    echo
    echo "(tripool not built into $BIN: peers only)"
fi
if grep -q failed=1 "$RAW"; then
    echo
    echo "Failed runs:"
    grep failed=1 "$RAW" | sed 's/^/- /'
fi
