#SPDX - License - Identifier : MIT
#The task pool uses contexts(tp_submit_ctx, groups, future waits).
set(TP_DEPS_pool ctx)
