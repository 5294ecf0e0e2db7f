/* SPDX-License-Identifier: MIT */
/*
 * tripool/metrics.h - a metrics registry with Prometheus and JSON output.
 *
 * A registry holds metric families (counters, gauges, histograms). A family
 * has a name, a help text, a type and a fixed list of label names; each
 * distinct set of label values is one series, registered once and then
 * updated through its handle. Updates are lock-free and touch only per-shard
 * cells (counters, histograms) or one atomic word (gauges), so they are safe
 * and cheap from any thread on hot paths. Reads (render, value getters) add
 * the shards up.
 *
 * Names are checked at registration (-EINVAL): metric names match
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label names match [a-zA-Z_][a-zA-Z0-9_]* and do
 * not start with "__"; counters end in "_total"; histograms may not use the
 * label "le". Label values and help text must be valid UTF-8 (-EINVAL
 * otherwise, as the exposition format requires) and may hold any character
 * but NUL; they are escaped on output. Registering a series whose family exists with a
 * different type, help, label names or bucket layout is -EINVAL; registering
 * the same series twice is -EEXIST.
 *
 * Output: tp_metrics_render_text() writes the Prometheus text exposition
 * format 0.0.4; tp_metrics_render_json() the same data as JSON (see
 * docs/metrics.md for its shape). tp_metrics_serve() serves both over HTTP.
 *
 * Thread safety: every function may be called from any thread. A series
 * handle stays valid until tp_metrics_unregister() or tp_metrics_destroy();
 * updating a handle after that is a use after free.
 */
#ifndef TRIPOOL_METRICS_H
#define TRIPOOL_METRICS_H

#include "tripool/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_metrics tp_metrics;     /* a registry */
typedef struct tp_counter tp_counter;     /* one counter series */
typedef struct tp_gauge tp_gauge;         /* one gauge series */
typedef struct tp_histogram tp_histogram; /* one histogram series */

/* One label: name and value. Both are copied at registration. */
typedef struct tp_label {
    const char *name;
    const char *value;
} tp_label;

/* Reads a value at scrape time (callback series). Runs on the scraping
 * thread with the registry lock held: it must not call into the registry. */
typedef double (*tp_metric_read_fn)(void *arg);

/* Create an empty registry. Returns 0, -EINVAL or -ENOMEM. */
TP_API TP_MUST_USE int tp_metrics_create(tp_metrics **out);

/* Free the registry and every series in it. r may be NULL. Stop every server
 * using r first. */
TP_API void tp_metrics_destroy(tp_metrics *r);

/* ---- registration ---------------------------------------------------------
 * labels may be NULL when nlabels is 0. help may be NULL (empty help). */

/* A monotonic counter; name must end in "_total". */
TP_API TP_MUST_USE int tp_metrics_counter(tp_metrics *r, const char *name, const char *help,
                                          const tp_label *labels, size_t nlabels, tp_counter **out);

/* A gauge set or moved by the caller. */
TP_API TP_MUST_USE int tp_metrics_gauge(tp_metrics *r, const char *name, const char *help,
                                        const tp_label *labels, size_t nlabels, tp_gauge **out);

/* Callback series: fn(arg) is read at every scrape. out (may be NULL)
 * receives a handle for tp_metrics_unregister(). A counter callback must
 * return a value that never decreases. */
TP_API TP_MUST_USE int tp_metrics_gauge_fn(tp_metrics *r, const char *name, const char *help,
                                           const tp_label *labels, size_t nlabels,
                                           tp_metric_read_fn fn, void *arg, void **out);
TP_API TP_MUST_USE int tp_metrics_counter_fn(tp_metrics *r, const char *name, const char *help,
                                             const tp_label *labels, size_t nlabels,
                                             tp_metric_read_fn fn, void *arg, void **out);

/* A histogram with nbounds upper bounds (strictly ascending, finite; the
 * +Inf bucket is implicit). 1 <= nbounds <= TP_METRICS_MAX_BUCKETS. Every
 * series of a family must use the same bounds. */
#define TP_METRICS_MAX_BUCKETS 64
TP_API TP_MUST_USE int tp_metrics_histogram(tp_metrics *r, const char *name, const char *help,
                                            const tp_label *labels, size_t nlabels,
                                            const double *bounds, size_t nbounds,
                                            tp_histogram **out);

/* Fill out[0..n) with start, start*factor, start*factor^2, ... Returns 0 or
 * -EINVAL (start <= 0, factor <= 1, n == 0 or > TP_METRICS_MAX_BUCKETS). */
TP_API int tp_metrics_buckets_exp(double start, double factor, size_t n, double *out);

/* Remove one series (any handle above, or the void* of a callback series).
 * After it returns the series is gone from output, its callback is never
 * called again and the handle is freed. Returns 0 or -ENOENT. */
TP_API int tp_metrics_unregister(tp_metrics *r, const void *series);

/* ---- updates (hot path: lock-free, any thread; NULL handles are ignored) -- */
TP_API void tp_counter_add(tp_counter *c, uint64_t v);
TP_API void tp_counter_inc(tp_counter *c);
TP_API void tp_gauge_set(tp_gauge *g, double v);
TP_API void tp_gauge_add(tp_gauge *g, double delta); /* negative to subtract */
TP_API void tp_histogram_observe(tp_histogram *h, double v);
/* Observe a duration given in ns, recorded in seconds (Prometheus base unit). */
TP_API void tp_histogram_observe_ns(tp_histogram *h, uint64_t ns);

/* ---- reads ----------------------------------------------------------------- */
TP_API uint64_t tp_counter_value(const tp_counter *c);
TP_API double tp_gauge_value(const tp_gauge *g);
/* Observation count and sum of a histogram. */
TP_API uint64_t tp_histogram_count(const tp_histogram *h);
TP_API double tp_histogram_sum(const tp_histogram *h);

/* Render every family in Prometheus text format 0.0.4 (content type
 * TP_METRICS_TEXT_CONTENT_TYPE) or JSON into a NUL-terminated buffer from
 * malloc(), owned by the caller (free() it). len (may be NULL) receives the
 * length without the NUL. Families appear in registration order, series
 * in registration order. Returns 0, -EINVAL or -ENOMEM. */
#define TP_METRICS_TEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
TP_API TP_MUST_USE int tp_metrics_render_text(tp_metrics *r, char **out, size_t *len);
TP_API TP_MUST_USE int tp_metrics_render_json(tp_metrics *r, char **out, size_t *len);

/* ---- HTTP endpoint ----------------------------------------------------------
 * tp_metrics_serve(r, "127.0.0.1:9464", &srv) serves GET /metrics (text),
 * GET /metrics.json (JSON) and 404 elsewhere, from one background thread
 * (libmicrohttpd). addr is "HOST:PORT", "[IPv6]:PORT" or ":PORT"; an empty
 * host means 127.0.0.1 (loopback unless told otherwise: use "0.0.0.0:PORT"
 * to listen on every interface). PORT 0 picks a free port (see
 * tp_metrics_server_port). Returns 0, -EINVAL (malformed address or port,
 * unknown host), -EADDRINUSE (port taken), -EADDRNOTAVAIL (not a local
 * address), -EACCES (privileged port), -ENOMEM, or -EIO (the HTTP daemon
 * failed to start). r must outlive the server. */
typedef struct tp_metrics_server tp_metrics_server;
TP_API TP_MUST_USE int tp_metrics_serve(tp_metrics *r, const char *addr, tp_metrics_server **out);

/* The TCP port the server listens on. */
TP_API unsigned tp_metrics_server_port(const tp_metrics_server *s);

/* Stop serving and free: new requests are refused (a request arriving
 * during shutdown gets a complete response or a 503), the listening socket
 * is closed and the server thread joined. s may be NULL. */
TP_API void tp_metrics_server_stop(tp_metrics_server *s);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_METRICS_H */
