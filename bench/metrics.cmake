# SPDX-License-Identifier: MIT
# Metrics benchmarks (bench/run_metrics.sh BUILD_DIR runs them):
#   metrics_hotpath   counter/gauge/histogram sample cost vs mutex and shared atomic
#   metrics_overhead  1M empty tasks with the metrics observer on vs off
#   metrics_autoscale adaptive pool vs fixed pools on a phased CPU/blocking workload
add_executable(metrics_hotpath bench/metrics_hotpath.c)
target_compile_options(metrics_hotpath PRIVATE -O2)
target_link_libraries(metrics_hotpath PRIVATE tp_mod_metrics Threads::Threads)
if(TARGET tp_mod_obs AND EXISTS ${CMAKE_SOURCE_DIR}/bench/metrics_overhead.c)
  add_executable(metrics_overhead bench/metrics_overhead.c)
  target_compile_options(metrics_overhead PRIVATE -O2)
  target_link_libraries(metrics_overhead PRIVATE tp_mod_obs Threads::Threads)
endif()
if(TARGET tp_mod_obs AND EXISTS ${CMAKE_SOURCE_DIR}/bench/metrics_autoscale.c)
  add_executable(metrics_autoscale bench/metrics_autoscale.c)
  target_compile_options(metrics_autoscale PRIVATE -O2)
  target_link_libraries(metrics_autoscale PRIVATE tp_mod_obs Threads::Threads)
endif()
