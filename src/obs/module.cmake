# SPDX-License-Identifier: MIT
# obs: collectors reading each pool's (and the engine's) stats at scrape time, the task observer
# feeding histograms, and the adaptive scaling controller. Glue above the pools.
set(TP_DEPS_obs metrics engine pool buf fd ctx)
