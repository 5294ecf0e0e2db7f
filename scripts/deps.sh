#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs every Debian package tripool needs to build, test and benchmark.
# Only runs apt-get when something is missing, so repeated `make` calls stay fast.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang
  clang-format                        # make format / format-check (CI)
  libclang-rt-dev                     # libFuzzer for make fuzz (clang's runtime)
  libcmocka-dev                       # test framework
  libzstd-dev zstd                    # compress/decompress + round-trip tests
  libxxhash-dev xxhash                # hash + xxhsum compatibility tests
  liburing-dev                        # engine reader (optional fast path)
  libmicrohttpd-dev curl prometheus   # metrics endpoint, scrape test, promtool
  logrotate                           # fd pool follower tests
  libglib2.0-dev cthreadpool-dev libuv1-dev   # task pool bench peers
  libjemalloc-dev libmimalloc-dev     # buffer pool bench peers
  systemtap-sdt-dev                   # optional USDT probes
  valgrind                            # memcheck over the unit tests (make test-valgrind)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
