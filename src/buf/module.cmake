# SPDX-License-Identifier: MIT
# The buffer pool: waits on the in-use cap with a context (tp_buf_get_ctx).
set(TP_DEPS_buf ctx)
