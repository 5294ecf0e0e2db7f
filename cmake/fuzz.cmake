# SPDX-License-Identifier: MIT
# Fuzz targets: tests/fuzz/<target>.c defines LLVMFuzzerTestOneInput.
#  - Every build (plain, TSan, ASan+UBSan): fuzz_<target> is the target
#    linked with tests/fuzz/replay.c, and the ctest test fuzz_<target> feeds
#    it every file of tests/fuzz/corpus/<target>/ once (a few seconds).
#  - TP_SANITIZE=fuzz (clang; `make fuzz`, see scripts/fuzz.sh): linked with
#    libFuzzer instead, built by the target fuzz_all, registered as no test.
# A target links its file plus TP_FUZZ_SRC_<target> (sources) and
# TP_FUZZ_LIB_<target> (libraries); by default the whole library.
set(TP_FUZZ_SRC_parse ${CMAKE_SOURCE_DIR}/cli/parse.c)
set(TP_FUZZ_LIB_parse "")
set(TP_FUZZ_SRC_sumfile ${CMAKE_SOURCE_DIR}/cli/sumfile.c)
set(TP_FUZZ_LIB_sumfile "")
set(TP_FUZZ_LIB_seek tp_mod_engine)
set(TP_FUZZ_LIB_decompress tp_mod_engine)
set(TP_FUZZ_LIB_metrics tp_mod_metrics m)

file(GLOB fuzz_targets CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/*.c)
list(FILTER fuzz_targets EXCLUDE REGEX "/replay\\.c$")
set(TP_FUZZ_ALL "")
foreach(src ${fuzz_targets})
  get_filename_component(name ${src} NAME_WE)
  set(exe fuzz_${name})
  if(DEFINED TP_FUZZ_LIB_${name})
    set(libs ${TP_FUZZ_LIB_${name}})
  else()
    set(libs tripool_static m)
  endif()
  if(TP_SANITIZE STREQUAL "fuzz")
    add_executable(${exe} ${src} ${TP_FUZZ_SRC_${name}})
    target_link_options(${exe} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${exe} ${src} ${TP_FUZZ_SRC_${name}} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c)
    set(corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
    add_test(NAME ${exe} COMMAND ${exe} ${corpus})
    tp_test_timeout(${src} t)
    set_tests_properties(${exe} PROPERTIES TIMEOUT ${t} ENVIRONMENT "${TP_TEST_ENV}")
  endif()
  target_link_libraries(${exe} PRIVATE ${libs} Threads::Threads)
  list(APPEND TP_FUZZ_ALL ${exe})
endforeach()
if(TP_FUZZ_ALL)
  add_custom_target(fuzz_all DEPENDS ${TP_FUZZ_ALL})
endif()
