/* SPDX-License-Identifier: MIT */
/*
 * tripool.h - the one header users include.
 *
 * tripool keeps concurrent work inside hard resource bounds: a task pool
 * (threads), a buffer pool (memory), a file-handle pool (descriptors), a
 * context tree (deadlines and cancellation) tying them together, and a
 * chunked file engine built on all of them. See README.md and docs/.
 */
#ifndef TRIPOOL_H
#define TRIPOOL_H

#include "tripool/common.h"
#include "tripool/buf.h"
#include "tripool/ctx.h"
#include "tripool/engine.h"
#include "tripool/fd.h"
#include "tripool/metrics.h"
#include "tripool/obs.h"
#include "tripool/pool.h"
#include "tripool/timer.h"

#endif /* TRIPOOL_H */
