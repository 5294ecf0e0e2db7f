# SPDX-License-Identifier: MIT
# The buffer pool. Uses only internal (atomics, clock, OS contract).
set(TP_DEPS_buf "")
