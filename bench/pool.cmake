# SPDX-License-Identifier: MIT
# The task-pool benchmark (bench/pool_bench.c): tripool against GLib
# GThreadPool, C-Thread-Pool (compiled from the Debian source), libuv
# uv_queue_work and one pthread per task, all in one binary built with -O2.
# Run it with bench/run_pool.sh BUILD_DIR.
# -DTP_BENCH_POOL_PEERS_ONLY=ON builds the peers without tripool (for when
# the pool module does not build yet).
option(TP_BENCH_POOL_PEERS_ONLY "pool_bench without tripool" OFF)
pkg_check_modules(PB_GLIB REQUIRED IMPORTED_TARGET glib-2.0)
pkg_check_modules(PB_UV REQUIRED IMPORTED_TARGET libuv)
set(PB_THPOOL_SRC /usr/share/cthreadpool/thpool.c)
if(NOT EXISTS ${PB_THPOOL_SRC})
  message(FATAL_ERROR "pool_bench needs cthreadpool-dev (${PB_THPOOL_SRC})")
endif()

add_executable(pool_bench bench/pool_bench.c bench/pool_peers.c ${PB_THPOOL_SRC})
target_include_directories(pool_bench PRIVATE ${CMAKE_SOURCE_DIR}/bench /usr/include/cthreadpool)
target_compile_options(pool_bench PRIVATE -O2)
# Third-party source, compiled as shipped: its warnings are not ours.
set_source_files_properties(${PB_THPOOL_SRC} PROPERTIES COMPILE_OPTIONS "-w")
target_link_libraries(pool_bench PRIVATE PkgConfig::PB_GLIB PkgConfig::PB_UV Threads::Threads)
if(TARGET tp_mod_pool AND NOT TP_BENCH_POOL_PEERS_ONLY)
  target_link_libraries(pool_bench PRIVATE tp_mod_pool)
  target_compile_definitions(pool_bench PRIVATE TP_BENCH_HAVE_TRIPOOL=1)
else()
  message(STATUS "pool_bench: built without tripool (no tp_mod_pool yet)")
endif()
