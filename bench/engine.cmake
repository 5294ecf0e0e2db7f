# SPDX-License-Identifier: MIT
# Engine benchmark helpers (bench/run_engine.sh BUILD_DIR runs them with the CLI):
#   engine_io  the reader: pread vs io_uring on the same page-cached files
# liburing is optional: without it engine_io is not built (run_engine.sh says so).
if(TP_MINIMAL_DEPS)
  set(URING_FOUND OFF)
  set(TP_URING_REASON "${TP_ABSENT_REASON}")
else()
  pkg_check_modules(URING IMPORTED_TARGET liburing)
  set(TP_URING_REASON "pkg-config liburing not found (Debian: liburing-dev)")
endif()
tp_optional("liburing (liburing-dev)" URING_FOUND "the engine_io pread-vs-io_uring benchmark"
  "${TP_URING_REASON}")
if(URING_FOUND)
  add_executable(engine_io bench/engine_io.c)
  target_compile_options(engine_io PRIVATE -O2)
  target_link_libraries(engine_io PRIVATE PkgConfig::URING)
endif()
