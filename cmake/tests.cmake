# SPDX-License-Identifier: MIT
# Registers every test with ctest; each is its own process with a timeout.
#   tests/unit/<module>_<case>.c    -> unit_<module>_<case>   (links tp_mod_<module>)
#   tests/stress/<module>_<case>.c  -> stress_<module>_<case> (args: THREADS SCALE ITER)
#   tests/cli/<case>.sh             -> cli_<case>             (env TRIPOOL=path of the command)
#   tests/dl/<module>_<case>.c      -> dl_<module>_<case>     (plain build only, see below)
#   tests/soak/<case>.c             -> soak_<case>            (arg: SECONDS; links tripool_static)
# A test file may set its timeout with a first-20-lines comment "TP_TEST_TIMEOUT: <seconds>",
# and wrap library calls for fault injection with "TP_TEST_WRAP: sym ..." (ld --wrap: the
# test defines __wrap_sym and calls __real_sym; the sanitizers' interceptors stay in place).
# CLI tests also get TP_FAULT_LIB, the fault-injecting LD_PRELOAD shim (tests/fault/).
if(TP_SANITIZE STREQUAL "" AND TP_CHAOS)
  set(TP_TEST_ENV "TP_TEST_SANITIZER=chaos")
elseif(TP_SANITIZE STREQUAL "")
  set(TP_TEST_ENV "TP_TEST_SANITIZER=none")
else()
  set(TP_TEST_ENV "TP_TEST_SANITIZER=${TP_SANITIZE}")
endif()
# Whether the build has USDT probes: 1, or the reason it has none (CMakeLists.txt).
list(APPEND TP_TEST_ENV "TP_TEST_PROBES=${TP_TEST_PROBES}")
list(APPEND TP_TEST_ENV
  "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1"
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")

function(tp_test_timeout file out)
  file(STRINGS ${file} lines LIMIT_COUNT 20 REGEX "TP_TEST_TIMEOUT: *[0-9]+")
  set(t 120)
  if(lines)
    string(REGEX MATCH "TP_TEST_TIMEOUT: *([0-9]+)" _ "${lines}")
    set(t ${CMAKE_MATCH_1})
  endif()
  if(NOT TP_SANITIZE STREQUAL "")
    math(EXPR t "${t} * 4")
  endif()
  set(${out} ${t} PARENT_SCOPE)
endfunction()

foreach(kind unit stress)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${kind}/*.c)
  foreach(src ${tests})
    get_filename_component(name ${src} NAME_WE)
    string(REGEX MATCH "^[a-z0-9]+" m ${name})
    if(NOT TARGET tp_mod_${m})
      # A test for a module with no sources yet: fatal in CI, skipped (loudly) while
      # a module is being written in a shared work tree.
      if(DEFINED ENV{CI})
        message(FATAL_ERROR "${src}: no module '${m}' (file names start with the module)")
      endif()
      message(WARNING "${src}: no module '${m}' yet; test skipped")
      continue()
    endif()
    add_executable(${kind}_${name} ${src})
    target_include_directories(${kind}_${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
    target_link_libraries(${kind}_${name} PRIVATE tp_mod_${m} PkgConfig::CMOCKA Threads::Threads m)
    file(STRINGS ${src} wraps LIMIT_COUNT 20 REGEX "TP_TEST_WRAP:")
    if(wraps)
      string(REGEX REPLACE ".*TP_TEST_WRAP: *" "" wraps "${wraps}")
      separate_arguments(wraps)
      foreach(sym ${wraps})
        target_link_options(${kind}_${name} PRIVATE "-Wl,--wrap=${sym}")
      endforeach()
    endif()
    add_test(NAME ${kind}_${name} COMMAND ${kind}_${name})
    tp_test_timeout(${src} t)
    set_tests_properties(${kind}_${name} PROPERTIES TIMEOUT ${t}
      ENVIRONMENT "${TP_TEST_ENV};TP_TEST_DATA=${CMAKE_SOURCE_DIR}/tests/data")
  endforeach()
endforeach()

# tests/dl/<module>_<case>.c -> dl_<module>_<case>: programs that dlopen() the
# shared library (argv[1] = its path) and link nothing of tripool. The shared
# library is built only without sanitizers (see CMakeLists.txt), so these run
# in the plain build only: registered when the tripool_shared target exists.
if(TARGET tripool_shared)
  file(GLOB dl_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/dl/*.c)
  foreach(src ${dl_tests})
    get_filename_component(name ${src} NAME_WE)
    add_executable(dl_${name} ${src})
    add_dependencies(dl_${name} tripool_shared)
    target_link_libraries(dl_${name} PRIVATE PkgConfig::CMOCKA Threads::Threads ${CMAKE_DL_LIBS})
    add_test(NAME dl_${name} COMMAND dl_${name} $<TARGET_FILE:tripool_shared>)
    tp_test_timeout(${src} t)
    set_tests_properties(dl_${name} PROPERTIES TIMEOUT ${t} ENVIRONMENT "${TP_TEST_ENV}")
  endforeach()
endif()

# tests/soak/<case>.c -> soak_<case>: long mixed runs over the whole library
# (links tripool_static), argument SECONDS. make test runs the short version
# (2 min plain, 30 s under a sanitizer, which inflates memory); make soak the
# long one (SOAK_SECONDS).
file(GLOB soak_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/soak/*.c)
foreach(src ${soak_tests})
  get_filename_component(name ${src} NAME_WE)
  add_executable(soak_${name} ${src})
  target_link_libraries(soak_${name} PRIVATE tripool_static Threads::Threads m)
  if(TP_SANITIZE STREQUAL "")
    set(secs 120)
  else()
    set(secs 30)
  endif()
  add_test(NAME soak_${name} COMMAND soak_${name} ${secs})
  math(EXPR t "${secs} * 2 + 120")
  set_tests_properties(soak_${name} PROPERTIES TIMEOUT ${t} ENVIRONMENT "${TP_TEST_ENV}")
endforeach()

if(TARGET tripool)
  file(GLOB cli_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli/*.sh)
  foreach(src ${cli_tests})
    get_filename_component(name ${src} NAME_WE)
    add_test(NAME cli_${name} COMMAND bash ${src})
    tp_test_timeout(${src} t)
    set_tests_properties(cli_${name} PROPERTIES TIMEOUT ${t}
      ENVIRONMENT "${TP_TEST_ENV};TRIPOOL=$<TARGET_FILE:tripool>;TP_SRC=${CMAKE_SOURCE_DIR};TP_FAULT_LIB=$<TARGET_FILE:tp_fault>")
  endforeach()
endif()

# examples/*.c are the README's library examples: built against the full
# library and run, so the documentation cannot rot.
file(GLOB examples CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/examples/*.c)
foreach(src ${examples})
  get_filename_component(name ${src} NAME_WE)
  add_executable(example_${name} ${src})
  target_link_libraries(example_${name} PRIVATE tripool_static)
  add_test(NAME example_${name} COMMAND example_${name}
    ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/LICENSE ${CMAKE_SOURCE_DIR}/CMakeLists.txt)
  set_tests_properties(example_${name} PROPERTIES TIMEOUT 60 ENVIRONMENT "${TP_TEST_ENV}")
endforeach()

# tests/pkg/install.sh: cmake --install into a temporary prefix, then
# examples/chunks.c built against it through pkg-config and find_package and
# run. Plain build only (no sanitizer, no TP_CHAOS): it tests what a user
# installs (the shared library, which sanitizer builds do not make; a
# sanitized libtripool.a would need the sanitizer's flags in every consumer),
# and the install step is the same in every build, so once is enough.
if(TARGET tripool_shared AND NOT TP_CHAOS)
  add_test(NAME pkg_install COMMAND bash ${CMAKE_SOURCE_DIR}/tests/pkg/install.sh)
  tp_test_timeout(${CMAKE_SOURCE_DIR}/tests/pkg/install.sh t)
  set_tests_properties(pkg_install PROPERTIES TIMEOUT ${t} ENVIRONMENT
    "${TP_TEST_ENV};TP_BUILD=${CMAKE_BINARY_DIR};TP_SRC=${CMAKE_SOURCE_DIR};CC=${CMAKE_C_COMPILER}")
endif()

# tests/fuzz/: corpus replays fuzz_<target> (and the libFuzzer build of make fuzz).
include(${CMAKE_SOURCE_DIR}/cmake/fuzz.cmake)

# The fault injector for tests/cli/faults.sh and friends: an LD_PRELOAD shim
# (tests/fault/tp_fault.c). Not instrumented itself: under the sanitizers it
# sits in front of the runtime's interceptors (see the file's comment).
add_library(tp_fault MODULE ${CMAKE_SOURCE_DIR}/tests/fault/tp_fault.c)
target_link_libraries(tp_fault PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(tp_fault PROPERTIES C_VISIBILITY_PRESET default)
target_compile_options(tp_fault PRIVATE -fno-sanitize=all)
target_link_options(tp_fault PRIVATE -fno-sanitize=all)
