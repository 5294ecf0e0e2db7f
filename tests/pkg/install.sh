#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TP_TEST_TIMEOUT: 120
# The installed package as a user sees it: `cmake --install BUILD --prefix
# STAGE`, then examples/chunks.c built against STAGE (never against the build
# tree) four ways and run on a file with a known number of zero bytes:
#   pkg-config --cflags --libs tripool             (links libtripool.so)
#   pkg-config --static, with libtripool.so hidden (libtripool.a + Libs.private)
#   find_package(tripool CONFIG): tripool::tripool (the shared library)
#                                 tripool::tripool_static
# and find_package(tripool 99) must be refused (the version file is read).
# Env: TP_BUILD (the build dir), TP_SRC (the source tree), CC.
set -euo pipefail
B=${TP_BUILD:?}; S=${TP_SRC:?}; CC=${CC:-cc}
W=$(mktemp -d "${TMPDIR:-/tmp}/tp_pkg.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$B" --prefix "$W/stage" > "$W/install.log" || { cat "$W/install.log"; fail "cmake --install"; }
PC=$(find "$W/stage" -name tripool.pc)
[ -n "$PC" ] || fail "no tripool.pc installed"
grep -qx "prefix=$W/stage" "$PC" || { cat "$PC"; fail "tripool.pc: prefix is not the install prefix $W/stage"; }
CFG=$(find "$W/stage" -name tripoolConfig.cmake)
[ -n "$CFG" ] || fail "no tripoolConfig.cmake installed"
[ -f "$(dirname "$CFG")/tripoolConfigVersion.cmake" ] || fail "no tripoolConfigVersion.cmake"
LIBDIR=$(dirname "$(dirname "$PC")")

# The input: 20 MiB of random bytes (three of the example's 8 MiB chunks),
# its zero bytes counted by tr.
head -c $((20 << 20)) /dev/urandom > "$W/in.bin"
want=$(tr -cd '\000' < "$W/in.bin" | wc -c)
[ "$want" -gt 0 ] || fail "test input has no zero bytes"

check() { # name binary [env...]
    local name=$1 bin=$2; shift 2
    local out
    out=$(env "$@" "$bin" "$W/in.bin") || fail "$name: exit $?"
    [ "$out" = "$want zero bytes" ] || fail "$name: printed '$out', want '$want zero bytes'"
    echo "ok: $name: $out"
}
needed() { readelf -d "$1" | grep -c 'NEEDED.*libtripool\.so' || true; }

export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
# 1. pkg-config, shared (the default -ltripool)
# shellcheck disable=SC2046
"$CC" -o "$W/chunks_pc" "$S/examples/chunks.c" $(pkg-config --cflags --libs tripool) \
    || fail "cc with pkg-config --cflags --libs tripool"
[ "$(needed "$W/chunks_pc")" -eq 1 ] || fail "chunks_pc does not link libtripool.so"
check "pkg-config (shared)" "$W/chunks_pc" LD_LIBRARY_PATH="$LIBDIR"

# 2. libtripool.a through pkg-config: a copy of the install without the .so,
# linked with `pkg-config --static` limited to tripool's own Libs and
# Libs.private and its Requires.private's Libs (depth 3): what the static
# library needs with the system libraries shared (a fully static link would
# need every transitive -dev package, e.g. gnutls's libunistring). A missing
# Libs.private or Requires.private entry fails this link.
cp -a "$W/stage" "$W/static"
find "$W/static" -name 'libtripool.so*' -delete
sed -i "s|^prefix=.*|prefix=$W/static|" "$(find "$W/static" -name tripool.pc)"
SPC=$(dirname "$(find "$W/static" -name tripool.pc)")
# shellcheck disable=SC2046
"$CC" -o "$W/chunks_pc_static" "$S/examples/chunks.c" \
    $(PKG_CONFIG_PATH="$SPC" pkg-config --static --maximum-traverse-depth=3 --cflags --libs tripool) \
    || fail "cc with pkg-config --static --cflags --libs tripool (Libs.private incomplete?)"
check "pkg-config --static" "$W/chunks_pc_static"

# 3. find_package(tripool CONFIG) from a project outside the tree
unset PKG_CONFIG_PATH
cmake -S "$S/tests/pkg/consumer" -B "$W/consumer" -DCMAKE_PREFIX_PATH="$W/stage" \
    -DCMAKE_C_COMPILER="$CC" -DTP_EXAMPLE="$S/examples/chunks.c" \
    -DTP_EXPECT_DIR="$(dirname "$CFG")" > "$W/consumer.log" 2>&1 \
    || { cat "$W/consumer.log"; fail "find_package(tripool 0.1 CONFIG) against the staged install"; }
cmake --build "$W/consumer" > "$W/consumer-build.log" 2>&1 \
    || { cat "$W/consumer-build.log"; fail "building against tripool::tripool"; }
[ "$(needed "$W/consumer/chunks_cmake")" -eq 1 ] || fail "tripool::tripool is not the shared library"
[ "$(needed "$W/consumer/chunks_cmake_static")" -eq 0 ] || fail "tripool::tripool_static links libtripool.so"
# The build RPATH points into the stage: no LD_LIBRARY_PATH needed.
check "find_package: tripool::tripool (shared)" "$W/consumer/chunks_cmake"
check "find_package: tripool::tripool_static" "$W/consumer/chunks_cmake_static"

# 4. the version file: 0.1 accepted above, 99 refused
mkdir -p "$W/v99"
cat > "$W/v99/CMakeLists.txt" << 'EOS'
cmake_minimum_required(VERSION 3.18)
project(v99 LANGUAGES C)
find_package(tripool 99 CONFIG REQUIRED)
EOS
if cmake -S "$W/v99" -B "$W/v99/b" -DCMAKE_PREFIX_PATH="$W/stage" > "$W/v99.log" 2>&1; then
    fail "find_package(tripool 99) accepted version $(grep -o 'PACKAGE_VERSION "[^"]*"' "$(dirname "$CFG")/tripoolConfigVersion.cmake")"
fi
grep -q "considered but not accepted" "$W/v99.log" || { cat "$W/v99.log"; fail "find_package(tripool 99) failed for another reason"; }
echo "ok: find_package(tripool 99) refused"
