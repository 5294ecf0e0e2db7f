# SPDX-License-Identifier: MIT
# The buffer-pool benchmark: bench/buf_bench.c built four times, against
# glibc malloc, jemalloc and mimalloc (each first on the link line so its
# malloc serves the process; `buf_bench_X --which` shows it). The tripool
# variant is buf_bench_glibc run in "pool" mode: the pool on top of plain
# glibc, as a user would get it. Run: bench/run_buf.sh BUILD_DIR
find_library(BB_JEMALLOC NAMES jemalloc)
find_library(BB_MIMALLOC NAMES mimalloc)
if(TARGET tp_mod_buf)
  foreach(v glibc jemalloc mimalloc)
    add_executable(buf_bench_${v} bench/buf_bench.c)
    target_compile_options(buf_bench_${v} PRIVATE -O2)
    target_compile_definitions(buf_bench_${v} PRIVATE BUF_BENCH_VARIANT="${v}")
    set(alloc "")
    if(v STREQUAL "jemalloc")
      if(NOT BB_JEMALLOC)
        message(FATAL_ERROR "buf_bench needs libjemalloc-dev")
      endif()
      set(alloc ${BB_JEMALLOC})
    elseif(v STREQUAL "mimalloc")
      if(NOT BB_MIMALLOC)
        message(FATAL_ERROR "buf_bench needs libmimalloc-dev")
      endif()
      set(alloc ${BB_MIMALLOC})
    endif()
    # The allocator goes first so it precedes libc in DT_NEEDED.
    target_link_libraries(buf_bench_${v} PRIVATE ${alloc} tp_mod_buf Threads::Threads ${CMAKE_DL_LIBS})
    if(alloc)
      target_link_options(buf_bench_${v} PRIVATE -Wl,--no-as-needed)
    endif()
  endforeach()
endif()
