#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writes the seed inputs of tests/fuzz/corpus/ from a built tripool (real
# outputs: sum files, multi-frame .zst files with seek tables made by
# `tripool compress --chunk 64K`, and truncated copies), xxhsum and zstd.
#   bash tests/fuzz/make_seeds.sh build/tripool
# Seeds are named seed-*; inputs the fuzzer adds (make fuzz) keep libFuzzer's
# hash names, and regression inputs for fixed bugs are named crash-*.
set -euo pipefail
T=$(realpath "${1:?usage: make_seeds.sh path/to/tripool}")
C=$(cd "$(dirname "$0")" && pwd)/corpus
W=$(mktemp -d /tmp/tp_seeds.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$C"/{sumfile,parse,seek,decompress,metrics}
cd "$W"

# sumfile: what tripool and xxhsum write, every algorithm and style, and damage.
printf 'hello\n' > a; printf '' > 'with space'; printf x > 'b) = c'
for alg in xxh3 xxh128 xxh64 xxh32 crc32c; do
    "$T" hash -a $alg a 'with space' 'b) = c' > "$C/sumfile/seed-$alg"
    "$T" hash -a $alg --tag a > "$C/sumfile/seed-$alg-tag"
done
xxhsum -H1 a 'with space' > "$C/sumfile/seed-xxhsum-gnu" 2>/dev/null
xxhsum -H2 --tag a > "$C/sumfile/seed-xxhsum-tag" 2>/dev/null
sed 's/$/\r/' "$C/sumfile/seed-xxh64" > "$C/sumfile/seed-crlf"
head -c 30 "$C/sumfile/seed-xxh3" > "$C/sumfile/seed-truncated"
printf 'junk\n0123  short\nXXH64 (x) = 0123\nXXH3 () = 0123456789abcdef\n' > "$C/sumfile/seed-bad"

# parse: one argument each.
i=0
for s in 4M 512k 1GiB 100 100B 4KB 4Kb 64K 1T 0 22 -5 -131072 4096 1000000 \
    18446744073709551615 18446744073709551616 16777215T 16777216T 17179869183G \
    ' 4M' '+4' '-1' '4M ' 0x10 4Mx 4MiBB 1e3 007 ''; do
    printf '%s' "$s" > "$C/parse/seed-$i"
    i=$((i + 1))
done

# seek and decompress: multi-frame files with seek tables, truncated copies.
for i in $(seq 4200); do echo "tripool fuzz seed, line $((i % 7)) of compressible text"; done > text
"$T" compress --chunk 64K -o multi.zst text
"$T" compress --chunk 64K -o single.zst a
zstd -q -19 -o zstd.zst text
zstd -q -c a > z1 && zstd -q -c 'b) = c' > z2 && cat z1 z2 > concat.zst
for d in seek decompress; do
    cp multi.zst "$C/$d/seed-multi.zst"
    cp single.zst "$C/$d/seed-single.zst"
    cp zstd.zst "$C/$d/seed-zstd.zst"
    cp concat.zst "$C/$d/seed-concat.zst"
    n=$(stat -c %s multi.zst)
    head -c $((n - 1)) multi.zst > "$C/$d/seed-multi-cut1.zst"
    head -c $((n / 2)) multi.zst > "$C/$d/seed-multi-half.zst"
    tail -c 40 multi.zst > "$C/$d/seed-multi-tail.zst"
done
printf '' > "$C/decompress/seed-empty.zst"
# Hand-made tables (python3): entries with checksums (descriptor bit 7), a
# decompressed size that lies, and empty frames (the last two entries of
# the list: 1 entry, then 2).
: > nothing && zstd -q -c nothing > empty.zst
python3 - "$C" multi.zst empty.zst <<'PY'
import struct, sys
C, multi, empty = sys.argv[1], open(sys.argv[2], 'rb').read(), open(sys.argv[3], 'rb').read()
def table(pairs, sums=False):
    body = b''.join(struct.pack('<II', c, u) + (b'\0\0\0\0' if sums else b'') for c, u in pairs)
    return (struct.pack('<II', 0x184D2A5E, len(body) + 9) + body + struct.pack('<I', len(pairs)) +
            bytes([0x80 if sums else 0]) + struct.pack('<I', 0x8F92EAB1))
n = struct.unpack('<I', multi[-9:-5])[0]
start = len(multi) - 9 - 8 * n - 8
pairs = [struct.unpack('<II', multi[start + 8 + 8 * i:start + 16 + 8 * i]) for i in range(n)]
frames = multi[:start]
out = {'seed-sums.zst': frames + table(pairs, True),
       'seed-dsize-lies.zst': frames + table([(c, u + 1) for c, u in pairs]),
       'crash-empty-frame.zst': empty + table([(len(empty), 0)]),
       'seed-two-empty-frames.zst': empty + empty + table([(len(empty), 0)] * 2)}
for d in ('seek', 'decompress'):
    for name, data in out.items():
        open(f'{C}/{d}/{name}', 'wb').write(data)
PY

# metrics: records of (type/label byte, name NUL help NUL [label NUL value NUL]..., 8 value bytes).
rec() { printf "$@"; }
rec '\x00jobs\0Jobs \\ done\nnow\0\x00\x00\x00\x00\x00\x00\xf0\x3f' > "$C/metrics/seed-gauge"
rec '\x05req_total\0Requests\0path\0/a"b\\c\nd\0\x01\x00\x00\x00\x00\x00\x00\x00' > "$C/metrics/seed-counter"
rec '\x0aio_seconds\0IO\0dev\0sda\0op\0r\0\x00\x00\x00\x00\x00\x00\xe0\x3f' > "$C/metrics/seed-hist"
rec '\x04g\0\0k\0v1\0\x00\x00\x00\x00\x00\x00\xf8\x7f\x04g\0\0k\0v2\0\x00\x00\x00\x00\x00\x00\xf0\xff' > "$C/metrics/seed-two-series"
rec '\x00x_bucket\0\0\x00\x00\x00\x00\x00\x00\x00\x00\x02x\0\0\x00\x00\x00\x00\x00\x00\x00\x00' > "$C/metrics/seed-clash"
rec '\x04a:b\0h\xc3\xa9\0l\0\xe2\x82\xac\0\x00\x00\x00\x00\x00\x00\x00\x80' > "$C/metrics/seed-utf8"
echo "seeds written to $C"
