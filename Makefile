# SPDX-License-Identifier: MIT
# The newcomer's entry points. See README.md.
#   make demo   install missing Debian packages, build, run the main job on a default input
#   make test   install, build, run every test; the unit tests under valgrind memcheck; then
#               again under TSan and ASan+UBSan and schedule perturbation
#   make bench  build and run the benchmarks against their peers (see BENCHMARKS.md)
#   make stress the stress tests, longer, under schedule perturbation (TP_CHAOS)
#   make soak   an hour (SOAK_SECONDS) of mixed work; fails if RSS, fds or threads grow
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
BUILD  ?= build
DEMO_DIR ?= demo-data
# -Werror for the project's own test builds and CI (TP_WERROR defaults to OFF in
# CMakeLists.txt, so a release built by cmake or `make build` with a newer
# compiler does not fail on a new warning). `make build` passes nothing: a
# build dir keeps what it was configured with.
TEST_CMAKE_FLAGS ?= -DTP_WERROR=ON

.PHONY: format-check all deps build test test-plain test-valgrind test-tsan test-asan test-chaos test-minimal stress soak fuzz bench demo install clean format

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

test: deps test-plain test-valgrind test-tsan test-asan test-chaos test-minimal
	@echo "make test: all suites passed (plain, valgrind memcheck, thread sanitizer, address+UB sanitizer, schedule perturbation, required dependencies only)"

test-plain: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The unit tests of the plain build under Valgrind memcheck (two at a time).
test-valgrind: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	@bash scripts/valgrind.sh $(BUILD)

test-tsan: deps
	@$(CMAKE) -S . -B build-tsan -DTP_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-tsan -j $(JOBS)
	@cd build-tsan && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@$(CMAKE) -S . -B build-asan -DTP_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

# Schedule perturbation (src/internal/chaos.h): the pool and stress tests with
# random yields and sleeps at the pools' race points; the seed is printed.
# Also the timer/context contract tests (destroy races, cancel-walk
# completion), ~5 s; the other unit_ctx_ tests take ~15 s more under it.
# Optimised, but with assert() on (no NDEBUG): the pools' internal checks run.
CHAOS_TESTS ?= ^(stress_|unit_pool_|unit_ctx_timer_destroy$$|unit_ctx_contract$$)
test-chaos: deps
	@$(CMAKE) -S . -B build-chaos -DTP_CHAOS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-chaos -j $(JOBS)
	@cd build-chaos && ctest --output-on-failure -j $(JOBS) -R '$(CHAOS_TESTS)'

# The plain build with the required dependencies only (TP_MINIMAL_DEPS: no
# optional package looked for, their headers shadowed by cmake/absent/ ones
# that #error), then the tests whose outcome depends on them: the probes
# (compiled out: no notes, arguments not evaluated), the unit tests, the
# examples and the install test. ~1 minute to build, ~30 s to test.
MINIMAL_TESTS ?= ^(unit_|cli_probes$$|example_|pkg_install$$)
test-minimal: deps
	@$(CMAKE) -S . -B build-minimal -DTP_MINIMAL_DEPS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-minimal -j $(JOBS)
	@cd build-minimal && ctest --output-on-failure -j $(JOBS) -R '$(MINIMAL_TESTS)'

# The stress tests for longer (STRESS_ROUNDS times each, ~6 s a round; fresh seed per round)
# under perturbation, then once under ThreadSanitizer with perturbation.
STRESS_ROUNDS ?= 50
stress: test-chaos
	@$(CMAKE) -S . -B build-chaos-tsan -DTP_CHAOS=ON -DTP_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-chaos-tsan -j $(JOBS)
	@bash scripts/stress.sh build-chaos $(STRESS_ROUNDS)
	@bash scripts/stress.sh build-chaos-tsan 1

# libFuzzer targets (tests/fuzz/, clang) for FUZZ_SECONDS each; never part of
# make test, which replays their corpus. See docs/fuzzing.md.
FUZZ_SECONDS ?= 600
fuzz: deps
	@$(CMAKE) -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTP_SANITIZE=fuzz -DTP_WERROR=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@$(CMAKE) --build build-fuzz -j $(JOBS) --target fuzz_all
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

# The soak test (tests/soak/mixed.c) for SOAK_SECONDS on the plain build;
# make test runs its 2-minute version. Prints the RSS/fd/thread slopes.
SOAK_SECONDS ?= 3600
soak: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS) --target soak_mixed
	@nice -n 19 $(BUILD)/soak_mixed $(SOAK_SECONDS)

bench: deps
	@$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DTP_BUILD_BENCH=ON -DTP_BUILD_TESTS=OFF >/dev/null
	@$(CMAKE) --build build-bench -j $(JOBS)
	@bash bench/run_all.sh build-bench

demo: build
	@bash scripts/demo.sh $(BUILD) $(DEMO_DIR)

install: build
	@$(CMAKE) --install $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

# Fails if any C file differs from what the committed .clang-format makes of it.
format-check: deps
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')
	@echo "format-check: every C file is clang-formatted"

clean:
	rm -rf $(BUILD) build-tsan build-asan build-bench build-chaos build-chaos-tsan build-fuzz build-minimal
