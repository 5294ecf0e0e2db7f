#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: the main job on a default input.
#   bash scripts/demo.sh BUILD_DIR [DEMO_DIR]
# Generates (once) DEMO_DIR/access.log (1 GiB of access-log lines) and
# DEMO_DIR/logs/ (2,000 rotated log files), then hashes, compresses,
# verifies (hash -c, zstd -t, round trip) and decompresses them with
# progress bars and JSON summaries.
# Also used by bench/run_engine.sh to make the same inputs:
#   bash scripts/demo.sh --gen-log FILE BYTES [SEED]
#   bash scripts/demo.sh --gen-tree DIR COUNT AVG_BYTES
set -euo pipefail

# One awk process writes BYTES of combined-format access-log lines with
# varying addresses, paths, statuses, sizes, referrers and agents.
gen_log_awk='
BEGIN {
    srand(seed);
    split("GET GET GET GET GET POST POST PUT DELETE HEAD", M, " ");
    split("/ /index.html /api/v1/items /api/v1/users /api/v1/orders /static/app.js /static/style.css /images/logo.png /login /logout /search /cart /checkout /health /metrics", P, " ");
    split("200 200 200 200 200 200 200 304 301 404 404 500 403 201", S, " ");
    split("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36|Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0|Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148|curl/7.88.1|Go-http-client/1.1|python-requests/2.31.0|Prometheus/2.45.0", U, "|");
    split("- https://example.com/ https://www.google.com/ https://example.com/cart https://news.ycombinator.com/", R, " ");
    split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", MO, " ");
    t = seed * 86400; bytes = 0; nf = 0;
    out = (files > 0) ? sprintf("%s/app-%04d.log", dir, nf) : "/dev/stdout";
    want = (files > 0) ? avg / 2 + rand() * avg : size;
    while (1) {
        t += int(rand() * 3);
        s = t % 60; m = int(t / 60) % 60; h = int(t / 3600) % 24; d = 1 + int(t / 86400) % 28;
        p = P[1 + int(rand() * 15)];
        if (rand() < 0.4) p = p "/" int(rand() * 100000);
        if (rand() < 0.2) p = p "?page=" int(rand() * 50);
        line = sprintf("%d.%d.%d.%d - - [%02d/%s/2026:%02d:%02d:%02d +0000] \"%s %s HTTP/1.1\" %s %d \"%s\" \"%s\"",
            10 + int(rand() * 200), int(rand() * 256), int(rand() * 256), 1 + int(rand() * 254),
            d, MO[1 + (int(t / 2419200) % 12)], h, m, s, M[1 + int(rand() * 10)], p,
            S[1 + int(rand() * 14)], int(rand() * 50000), R[1 + int(rand() * 5)], U[1 + int(rand() * 7)]);
        print line > out;
        bytes += length(line) + 1;
        if (bytes >= want) {
            if (files == 0) break;
            close(out); nf++; bytes = 0;
            if (nf >= files) break;
            out = sprintf("%s/app-%04d.log", dir, nf);
            want = avg / 2 + rand() * avg;
        }
    }
}'

gen_log() { # FILE BYTES [SEED]: up to 4 distinct 64 MiB pieces made in parallel, repeated
    local file=$1 bytes=$2 seed=${3:-1} piece=$((64 << 20))
    [ "$bytes" -lt "$piece" ] && piece=$bytes
    local n=$(((bytes + piece - 1) / piece)) tmp="$file.gen.$$"
    local u=$((n < 4 ? n : 4)) # a piece is longer than zstd's window: repeats do not help it
    mkdir -p "$tmp"
    seq 0 $((u - 1)) | GEN_AWK=$gen_log_awk GEN_DIR=$tmp GEN_SEED=$seed GEN_PIECE=$piece \
        xargs -P "$(nproc)" -I{} sh -c 'awk -v seed=$((GEN_SEED * 1000 + $1)) \
            -v size="$GEN_PIECE" -v files=0 "$GEN_AWK" > "$GEN_DIR/$1"' _ {}
    for i in $(seq 0 $((n - 1))); do cat "$tmp/$((i % u))"; done > "$file.part"
    truncate -s "$bytes" "$file.part"
    rm -rf "$tmp"
    mv "$file.part" "$file"
}

gen_tree() { # DIR COUNT AVG_BYTES
    local dir=$1 count=$2 avg=$3
    mkdir -p "$dir.part"
    awk -v seed=7 -v files="$count" -v avg="$avg" -v dir="$dir.part" "$gen_log_awk"
    mv "$dir.part" "$dir"
}

case "${1:-}" in
--gen-log) gen_log "$2" "$3" "${4:-1}"; exit 0 ;;
--gen-tree) gen_tree "$2" "$3" "$4"; exit 0 ;;
esac

B=${1:-build}
DIR=${2:-demo-data}
T="$B/tripool"
[ -x "$T" ] || { echo "demo: $T not built (run make build)" >&2; exit 1; }
mkdir -p "$DIR"
LOG="$DIR/access.log"
TREE="$DIR/logs"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

"$T" info
if [ ! -f "$LOG" ]; then
    step "generating $LOG (1 GiB of access-log lines, once)"
    gen_log "$LOG" $((1 << 30))
fi
if [ ! -d "$TREE" ]; then
    step "generating $TREE (2,000 rotated log files, once)"
    gen_tree "$TREE" 2000 $((100 << 10))
fi
rm -rf "$DIR/out" && mkdir -p "$DIR/out"
ls -la "$LOG" && echo "$(ls "$TREE" | wc -l) files in $TREE, $(du -sh "$TREE" | cut -f1)"

step "hash: XXH3 of the 1 GiB log (xxhsum format), crc32c in parallel chunks"
"$T" hash --progress "$LOG" | tee "$DIR/out/access.xxh3"
"$T" hash -a crc32c --progress "$LOG"

step "hash -r: 2,000 files in parallel, at most 64 open"
"$T" hash -r --max-open 64 --progress "$TREE" > "$DIR/out/logs.xxh3"
head -3 "$DIR/out/logs.xxh3" && echo "... $(wc -l < "$DIR/out/logs.xxh3") lines"

step "compress -l 3: independent zstd frames per chunk, under --max-mem 256M"
"$T" compress -l 3 --max-mem 256M --progress --json -o "$DIR/out/access.log.zst" "$LOG"
ls -la "$DIR/out/access.log.zst"

step "verify: zstd -t accepts it; xxhsum -c accepts our sums"
zstd -q -t "$DIR/out/access.log.zst" && echo "zstd -t: OK"
if command -v xxhsum > /dev/null; then xxhsum -c "$DIR/out/access.xxh3"; fi

step "decompress in parallel (seek table), then hash -c the round trip"
"$T" decompress --progress --json -o "$DIR/out/access.log" "$DIR/out/access.log.zst"
sed "s|($LOG)|($DIR/out/access.log)|" "$DIR/out/access.xxh3" > "$DIR/out/rt.xxh3"
"$T" hash -c "$DIR/out/rt.xxh3"

step "compress -r the tree (log archiving), decompress, verify with hash -c"
cp -r "$TREE" "$DIR/out/logs"
"$T" compress -r --rm --no-fsync --max-open 64 --progress --json "$DIR/out/logs"
echo "$(find "$DIR/out/logs" -name '*.zst' | wc -l) .zst files, $(du -sh "$DIR/out/logs" | cut -f1)"
"$T" decompress -r --rm --no-fsync --progress "$DIR/out/logs"
sed "s|$TREE|$DIR/out/logs|" "$DIR/out/logs.xxh3" > "$DIR/out/logs-rt.xxh3"
"$T" hash -c --quiet "$DIR/out/logs-rt.xxh3" && echo "hash -c: all 2,000 files OK"

step "count: lines (== wc -l) and lines with ' 500 '"
"$T" count --progress "$LOG"
"$T" count -e '" 500 ' "$LOG"

rm -rf "$DIR/out/access.log" "$DIR/out/logs"
echo
echo "demo finished in $(($(date +%s) - start)) s (inputs kept in $DIR; delete it to regenerate)"
