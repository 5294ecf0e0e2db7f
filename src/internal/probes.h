/* SPDX-License-Identifier: MIT */
/*
 * USDT probes for perf/bpftrace/systemtap: TP_PROBE(name, args...) with 0 to
 * 6 integer or pointer arguments, provider "tripool". With <sys/sdt.h>
 * (Debian: systemtap-sdt-dev; CMakeLists.txt detects it and defines
 * TP_HAVE_SDT, so TP_MINIMAL_DEPS=ON can build as if it were absent) each probe
 * is a nop plus an ELF note, costing nothing until a tracer attaches; without
 * it, or with -DTP_NO_PROBES, the macros compile to nothing and do not
 * evaluate their arguments.
 *
 *   TP_PROBE(task_submit, pool, queued);
 *   sudo bpftrace -e 'usdt:./libtripool.so:tripool:task_submit { @[arg1] = count(); }'
 *
 * Probe names used so far (keep this list current): see docs/metrics.md.
 */
#ifndef TP_INTERNAL_PROBES_H
#define TP_INTERNAL_PROBES_H

#if defined(TP_HAVE_SDT) && !defined(TP_NO_PROBES)
#include <sys/sdt.h>
#define TP_HAVE_PROBES 1
#endif

#ifdef TP_HAVE_PROBES
#define TP__PROBE_0(n) DTRACE_PROBE(tripool, n)
#define TP__PROBE_1(n, a) DTRACE_PROBE1(tripool, n, a)
#define TP__PROBE_2(n, a, b) DTRACE_PROBE2(tripool, n, a, b)
#define TP__PROBE_3(n, a, b, c) DTRACE_PROBE3(tripool, n, a, b, c)
#define TP__PROBE_4(n, a, b, c, d) DTRACE_PROBE4(tripool, n, a, b, c, d)
#define TP__PROBE_5(n, a, b, c, d, e) DTRACE_PROBE5(tripool, n, a, b, c, d, e)
#define TP__PROBE_6(n, a, b, c, d, e, f) DTRACE_PROBE6(tripool, n, a, b, c, d, e, f)
#else
/* sizeof names the arguments (no unused-variable warnings) without
 * evaluating them. */
#define TP__PROBE_0(n) ((void)0)
#define TP__PROBE_1(n, a) ((void)sizeof(a))
#define TP__PROBE_2(n, a, b) ((void)sizeof(a), (void)sizeof(b))
#define TP__PROBE_3(n, a, b, c) ((void)sizeof(a), (void)sizeof(b), (void)sizeof(c))
#define TP__PROBE_4(n, a, b, c, d) (TP__PROBE_3(n, a, b, c), (void)sizeof(d))
#define TP__PROBE_5(n, a, b, c, d, e) (TP__PROBE_4(n, a, b, c, d), (void)sizeof(e))
#define TP__PROBE_6(n, a, b, c, d, e, f) (TP__PROBE_5(n, a, b, c, d, e), (void)sizeof(f))
#endif

#define TP__PROBE_PICK(n, _1, _2, _3, _4, _5, _6, k, ...) TP__PROBE_##k
/* TP_PROBE(name[, up to 6 args]) */
#define TP_PROBE(...) TP__PROBE_PICK(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0, x)(__VA_ARGS__)

#endif
