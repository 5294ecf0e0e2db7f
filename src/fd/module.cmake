# SPDX-License-Identifier: MIT
# fd: the file-handle pool and the follower. Uses only internal (no ctx yet).
set(TP_DEPS_fd "")
