# SPDX-License-Identifier: MIT
# obs: collectors reading each pool's stats at scrape time, the task observer
# feeding histograms, and the adaptive scaling controller. Glue above the pools.
set(TP_DEPS_obs metrics pool buf fd ctx)
