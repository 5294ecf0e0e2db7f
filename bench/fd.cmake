# SPDX-License-Identifier: MIT
# File-handle pool benchmark (bench/fd_bench.c): pooled acquire+pread+release
# vs open+pread+close per read, and 10k files under a soft RLIMIT_NOFILE of 64.
# Run with bench/run_fd.sh BUILD_DIR.
if(TARGET tp_mod_fd)
  add_executable(fd_bench bench/fd_bench.c)
  target_compile_options(fd_bench PRIVATE -O2)
  target_link_libraries(fd_bench PRIVATE tp_mod_fd Threads::Threads)
else()
  message(STATUS "fd_bench: no tp_mod_fd")
endif()
