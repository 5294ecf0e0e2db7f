# SPDX-License-Identifier: MIT
# Engine benchmark helpers (bench/run_engine.sh BUILD_DIR runs them with the CLI):
#   engine_io  the reader: pread vs io_uring on the same page-cached files
pkg_check_modules(URING IMPORTED_TARGET liburing)
if(URING_FOUND)
  add_executable(engine_io bench/engine_io.c)
  target_compile_options(engine_io PRIVATE -O2)
  target_link_libraries(engine_io PRIVATE PkgConfig::URING)
endif()
