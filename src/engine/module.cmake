# SPDX-License-Identifier: MIT
# The chunked file engine: the three pools plus zstd and xxHash.
set(TP_DEPS_engine pool buf fd ctx)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
set(TP_LIBS_engine PkgConfig::ZSTD PkgConfig::XXHASH)
list(APPEND TP_PC_REQUIRES libzstd libxxhash)
