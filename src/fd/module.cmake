# SPDX-License-Identifier: MIT
# fd: the file-handle pool and the follower. tp_fd_acquire_ctx waits with a
# context (wake-up via tp_ctx_on_done).
set(TP_DEPS_fd ctx)
