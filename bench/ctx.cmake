# SPDX-License-Identifier: MIT
# ctx benchmarks (bench/ctx_bench.c): timer service vs. one timerfd per timer
# and one thread per timeout; deadline accuracy under load; cancel fan-out.
# Run with bench/run_ctx.sh BUILD_DIR.
if(TARGET tp_mod_ctx)
  add_executable(ctx_bench bench/ctx_bench.c)
  target_compile_options(ctx_bench PRIVATE -O2)
  target_link_libraries(ctx_bench PRIVATE tp_mod_ctx Threads::Threads)
else()
  message(STATUS "ctx_bench: no tp_mod_ctx")
endif()
