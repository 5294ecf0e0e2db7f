/* SPDX-License-Identifier: MIT */
/*
 * The metrics registry: families, series, lock-free updates, rendering.
 *
 * DESIGN
 * Structure: a registry owns a singly linked list of families (registration
 * order); each family owns a list of its series. Families and series are
 * created and freed only under reg->lock. A family is freed with its last
 * series, so re-registering a name later may change its help or labels.
 *
 * Hot path: updates never take a lock. Each counter and histogram series
 * has TP__METRICS_SHARDS + 1 slots of cells, each slot on its own cache
 * line(s). A thread claims one of the first TP__METRICS_SHARDS slots for
 * itself the first time it updates any series (bit i of the process-wide
 * `slot_mask`; a pthread key destructor gives it back at thread exit). A slot
 * has exactly one writer, so its updates are a relaxed load and a relaxed
 * store: no locked instruction, no lost update. Threads beyond the first
 * TP__METRICS_SHARDS live ones share the last slot and use atomic adds (CAS
 * for the double sum). slot_mask, its key and the thread-local slot number
 * are the module's only process-wide state: they belong to the thread, not
 * to any registry. A gauge is one atomic word (the double's bits) on its own
 * cache line: set is a plain store, add a CAS loop. A histogram slot holds
 * one count per bucket (the last is +Inf) and the sum; the observation count
 * is not stored: it is the sum of the buckets, so the rendered le="+Inf"
 * bucket always equals _count.
 *
 * Reads: render and the value getters add the shards up with relaxed loads.
 * The result is not an atomic snapshot across shards (an update racing the
 * read may or may not be counted) but every counter read is monotonic per
 * cell, and histogram buckets are made cumulative from one copy, so the
 * output is always self-consistent (ascending buckets, +Inf == _count).
 *
 * Memory orders: cells are relaxed: they are independent statistics and
 * nobody infers anything about other memory from their values. The one
 * ordering need is slot hand-over: the release in slot_release and the
 * acquire CAS in shard_choose make the old owner's last cell stores visible
 * to the new owner before its first load-and-store. Publication of a new series
 * to renderers happens under reg->lock; publication of a handle to updating
 * threads is the caller's business (it got the handle from a call that took
 * the lock, and passes it on with its own synchronisation).
 *
 * Lock order: reg->lock is a leaf; callbacks (tp_metric_read_fn) run under it
 * and must not call back into the registry.
 *
 * Shared fields: reg->first/last, fam->first/last/next, series->next: reg->lock.
 * cells: atomics (any thread). Everything else is immutable after creation.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/atomic.h"
#include "metrics/metrics_internal.h"
#include "tripool/metrics.h"

#define SHARDS TP__METRICS_SHARDS /* slots owned by one thread each */
#define SHARED_SLOT SHARDS        /* one more, shared by all other threads */
#define NSLOTS (SHARDS + 1)
#define WORDS_PER_LINE (TP_CACHELINE / sizeof(uint64_t))

enum fam_type { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM };
enum series_kind { S_COUNTER, S_GAUGE, S_FN, S_HISTOGRAM };

struct family;

struct series {
    struct series *next;
    struct family *fam;
    char **values; /* fam->nlabels label values */
    enum series_kind kind;
    tp_metric_read_fn fn; /* S_FN */
    void *arg;
    const double *bounds; /* S_HISTOGRAM: fam->bounds */
    size_t nbounds;
    size_t stride;           /* words per shard (S_COUNTER, S_HISTOGRAM) */
    _Atomic uint64_t *cells; /* cache-line aligned; see DESIGN */
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum fam_type type;
    size_t nlabels;
    char **label_names;
    double *bounds;
    size_t nbounds;
    struct series *first, *last;
};

struct tp_metrics {
    pthread_mutex_t lock;
    struct family *first, *last;
};

/* ---- shard choice ---------------------------------------------------------- */

/* Process-wide slot ownership (see DESIGN): bit i of slot_mask is set while a
 * live thread owns slot i. The key's destructor gives the slot back at
 * thread exit. */
static _Atomic uint32_t slot_mask;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
static bool slot_key_ok;
/* 0 = not chosen yet, else slot + 1 */
static _Thread_local unsigned shard_tls __attribute__((tls_model("initial-exec")));

static void slot_release(void *v) {
    unsigned idx = (unsigned)(uintptr_t)v - 1;
    /* Any later update from this thread (another key's destructor) must not
     * touch the slot it no longer owns. */
    shard_tls = SHARED_SLOT + 1;
    /* release: our last plain-RMW stores to the slot's cells happen before
     * the next owner's acquire CAS on the mask, so it continues from them. */
    atomic_fetch_and_explicit(&slot_mask, ~(UINT32_C(1) << idx), memory_order_release);
}

static void slot_key_init(void) {
    slot_key_ok = pthread_key_create(&slot_key, slot_release) == 0;
}

static unsigned __attribute__((noinline)) shard_choose(void) {
    unsigned idx = SHARED_SLOT;
    pthread_once(&slot_once, slot_key_init);
    if (slot_key_ok) {
        uint32_t full = (UINT32_C(1) << SHARDS) - 1;
        uint32_t m = tp__load_relaxed(&slot_mask);
        while ((m & full) != full) {
            unsigned i = (unsigned)__builtin_ctz(~m);
            /* acquire: pairs with slot_release of the previous owner. */
            if (atomic_compare_exchange_weak_explicit(&slot_mask, &m, m | (UINT32_C(1) << i),
                                                      memory_order_acquire, memory_order_relaxed)) {
                idx = i;
                break;
            }
        }
        if (idx != SHARED_SLOT && pthread_setspecific(slot_key, (void *)(uintptr_t)(idx + 1))) {
            atomic_fetch_and_explicit(&slot_mask, ~(UINT32_C(1) << idx), memory_order_release);
            idx = SHARED_SLOT;
        }
    }
    shard_tls = idx + 1;
    return idx;
}

/* This thread's slot: < SHARDS = owned alone, SHARED_SLOT = shared. */
static inline unsigned shard(void) {
    unsigned s = shard_tls;
    if (__builtin_expect(s == 0, 0)) return shard_choose();
    return s - 1;
}

/* Add to a cell of this thread's slot: a plain load and store when the slot
 * is ours alone (no locked instruction), an atomic add on the shared slot. */
static inline void cell_add(_Atomic uint64_t *w, unsigned slot, uint64_t v) {
    if (__builtin_expect(slot < SHARDS, 1))
        tp__store_relaxed(w, tp__load_relaxed(w) + v);
    else
        tp__add_relaxed(w, v);
}

/* ---- validation ------------------------------------------------------------- */

static bool valid_metric_name(const char *s) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
    }
    return true;
}

static bool valid_label_name(const char *s) {
    if (!s || !*s || (s[0] == '_' && s[1] == '_')) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool tp__metrics_utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        p += n + 1;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static int validate(enum fam_type type, const char *name, const char *help, const tp_label *labels,
                    size_t nlabels) {
    if (!valid_metric_name(name)) return -EINVAL;
    if (type == FAM_COUNTER && !ends_with(name, "_total")) return -EINVAL;
    if (help && !tp__metrics_utf8_valid(help)) return -EINVAL;
    if (nlabels > 0 && !labels) return -EINVAL;
    if (nlabels > 32) return -EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_label_name(labels[i].name) || !labels[i].value ||
            !tp__metrics_utf8_valid(labels[i].value))
            return -EINVAL;
        if (type == FAM_HISTOGRAM && strcmp(labels[i].name, "le") == 0) return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0) return -EINVAL;
    }
    return 0;
}

/* ---- families and series ---------------------------------------------------- */

static void free_strv(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_series(struct series *s) {
    if (!s) return;
    free_strv(s->values, s->fam ? s->fam->nlabels : 0);
    free((void *)s->cells);
    free(s);
}

static void free_family(struct family *f) {
    free(f->name);
    free(f->help);
    free_strv(f->label_names, f->nlabels);
    free(f->bounds);
    free(f);
}

/* Sample names a family writes: name, or name_bucket/_sum/_count. */
static bool family_emits(const struct family *f, const char *sample) {
    if (f->type != FAM_HISTOGRAM) return strcmp(f->name, sample) == 0;
    size_t n = strlen(f->name);
    if (strncmp(f->name, sample, n) != 0) return false;
    const char *rest = sample + n;
    return strcmp(rest, "_bucket") == 0 || strcmp(rest, "_sum") == 0 || strcmp(rest, "_count") == 0;
}

/* True if a new family (name, type) would write a sample name an existing
 * family already writes. */
static bool clashes(const tp_metrics *r, const char *name, enum fam_type type) {
    static const char *const hist_suffix[] = {"_bucket", "_sum", "_count"};
    char buf[512];
    for (const struct family *f = r->first; f; f = f->next) {
        if (type != FAM_HISTOGRAM) {
            if (family_emits(f, name)) return true;
            continue;
        }
        for (size_t i = 0; i < 3; i++) {
            int n = snprintf(buf, sizeof buf, "%s%s", name, hist_suffix[i]);
            if (n < 0 || (size_t)n >= sizeof buf || family_emits(f, buf)) return true;
        }
        if (f->type == FAM_HISTOGRAM) {
            /* Both histograms: does the old one write our base name's
             * samples, or we its? Compare the three derived names. */
            for (size_t i = 0; i < 3; i++) {
                int n = snprintf(buf, sizeof buf, "%s%s", f->name, hist_suffix[i]);
                if (n < 0 || (size_t)n >= sizeof buf) return true;
                for (size_t j = 0; j < 3; j++) {
                    char mine[512];
                    int m = snprintf(mine, sizeof mine, "%s%s", name, hist_suffix[j]);
                    if (m < 0 || (size_t)m >= sizeof mine || strcmp(buf, mine) == 0) return true;
                }
            }
        }
    }
    return false;
}

static struct family *find_family(const tp_metrics *r, const char *name) {
    for (struct family *f = r->first; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static char *dup_or_empty(const char *s) {
    return strdup(s ? s : "");
}

/* Find or make the family; reg->lock held. */
static int get_family(tp_metrics *r, enum fam_type type, const char *name, const char *help,
                      const tp_label *labels, size_t nlabels, const double *bounds, size_t nbounds,
                      struct family **out) {
    struct family *f = find_family(r, name);
    if (f) {
        if (f->type != type || strcmp(f->help, help ? help : "") != 0 || f->nlabels != nlabels)
            return -EINVAL;
        for (size_t i = 0; i < nlabels; i++)
            if (strcmp(f->label_names[i], labels[i].name) != 0) return -EINVAL;
        if (type == FAM_HISTOGRAM &&
            (f->nbounds != nbounds || memcmp(f->bounds, bounds, nbounds * sizeof *bounds) != 0))
            return -EINVAL;
        *out = f;
        return 0;
    }
    if (strlen(name) > 400 || clashes(r, name, type)) return -EINVAL;
    f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->type = type;
    f->nlabels = nlabels;
    f->name = strdup(name);
    f->help = dup_or_empty(help);
    f->label_names = calloc(nlabels ? nlabels : 1, sizeof(char *));
    if (!f->name || !f->help || !f->label_names) goto err_free_family;
    for (size_t i = 0; i < nlabels; i++)
        if (!(f->label_names[i] = strdup(labels[i].name))) goto err_free_family;
    if (type == FAM_HISTOGRAM) {
        f->bounds = malloc(nbounds * sizeof *bounds);
        if (!f->bounds) goto err_free_family;
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
        f->nbounds = nbounds;
    }
    if (r->last)
        r->last->next = f;
    else
        r->first = f;
    r->last = f;
    *out = f;
    return 0;

err_free_family:
    free_family(f);
    return -ENOMEM;
}

static bool same_values(const struct series *s, const tp_label *labels, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], labels[i].value) != 0) return false;
    return true;
}

static void unlink_family(tp_metrics *r, struct family *f) {
    struct family **pp = &r->first, *prev = NULL;
    while (*pp && *pp != f) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = f->next;
    if (r->last == f) r->last = prev;
    free_family(f);
}

static void *alloc_cells(size_t words) {
    size_t bytes = (words * sizeof(uint64_t) + TP_CACHELINE - 1) / TP_CACHELINE * TP_CACHELINE;
    void *p = aligned_alloc(TP_CACHELINE, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static int add_series(tp_metrics *r, enum fam_type type, enum series_kind kind, const char *name,
                      const char *help, const tp_label *labels, size_t nlabels,
                      const double *bounds, size_t nbounds, tp_metric_read_fn fn, void *arg,
                      struct series **out) {
    if (!r || !out) return -EINVAL;
    int err = validate(type, name, help, labels, nlabels);
    if (err) return err;
    if (kind == S_FN && !fn) return -EINVAL;
    if (type == FAM_HISTOGRAM) {
        if (!bounds || nbounds == 0 || nbounds > TP_METRICS_MAX_BUCKETS) return -EINVAL;
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) return -EINVAL;
    }

    struct series *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->kind = kind;
    s->fn = fn;
    s->arg = arg;
    s->values = calloc(nlabels ? nlabels : 1, sizeof(char *));
    if (!s->values) goto err_free_series;
    for (size_t i = 0; i < nlabels; i++)
        if (!(s->values[i] = strdup(labels[i].value))) goto err_free_values;
    switch (kind) {
    case S_COUNTER:
        s->stride = WORDS_PER_LINE;
        s->cells = alloc_cells(s->stride * NSLOTS);
        break;
    case S_GAUGE:
        s->cells = alloc_cells(WORDS_PER_LINE);
        break;
    case S_HISTOGRAM:
        /* nbounds finite buckets + the +Inf bucket + the sum */
        s->stride = (nbounds + 2 + WORDS_PER_LINE - 1) / WORDS_PER_LINE * WORDS_PER_LINE;
        s->cells = alloc_cells(s->stride * NSLOTS);
        s->nbounds = nbounds;
        break;
    case S_FN:
        break;
    }
    if (kind != S_FN && !s->cells) goto err_free_values;

    pthread_mutex_lock(&r->lock);
    struct family *f;
    err = get_family(r, type, name, help, labels, nlabels, bounds, nbounds, &f);
    if (err) {
        pthread_mutex_unlock(&r->lock);
        goto err_free_values_err;
    }
    for (struct series *o = f->first; o; o = o->next) {
        if (same_values(o, labels, nlabels)) {
            pthread_mutex_unlock(&r->lock);
            err = -EEXIST;
            goto err_free_values_err;
        }
    }
    s->fam = f;
    s->bounds = f->bounds;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    pthread_mutex_unlock(&r->lock);
    *out = s;
    return 0;

err_free_values:
    err = -ENOMEM;
err_free_values_err:
    /* s->fam is unset: free the values by count here. */
    free_strv(s->values, nlabels);
    s->values = NULL;
err_free_series:
    free((void *)s->cells);
    free(s);
    return err ? err : -ENOMEM;
}

/* ---- public registration ------------------------------------------------------ */

TP_API int tp_metrics_create(tp_metrics **out) {
    if (!out) return -EINVAL;
    tp_metrics *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return -ENOMEM;
    }
    *out = r;
    return 0;
}

TP_API void tp_metrics_destroy(tp_metrics *r) {
    if (!r) return;
    struct family *f = r->first;
    while (f) {
        struct family *fn = f->next;
        struct series *s = f->first;
        while (s) {
            struct series *sn = s->next;
            free_series(s);
            s = sn;
        }
        free_family(f);
        f = fn;
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

TP_API int tp_metrics_counter(tp_metrics *r, const char *name, const char *help,
                              const tp_label *labels, size_t nlabels, tp_counter **out) {
    return add_series(r, FAM_COUNTER, S_COUNTER, name, help, labels, nlabels, NULL, 0, NULL, NULL,
                      (struct series **)out);
}

TP_API int tp_metrics_gauge(tp_metrics *r, const char *name, const char *help,
                            const tp_label *labels, size_t nlabels, tp_gauge **out) {
    return add_series(r, FAM_GAUGE, S_GAUGE, name, help, labels, nlabels, NULL, 0, NULL, NULL,
                      (struct series **)out);
}

TP_API int tp_metrics_gauge_fn(tp_metrics *r, const char *name, const char *help,
                               const tp_label *labels, size_t nlabels, tp_metric_read_fn fn,
                               void *arg, void **out) {
    struct series *s;
    int err = add_series(r, FAM_GAUGE, S_FN, name, help, labels, nlabels, NULL, 0, fn, arg, &s);
    if (!err && out) *out = s;
    return err;
}

TP_API int tp_metrics_counter_fn(tp_metrics *r, const char *name, const char *help,
                                 const tp_label *labels, size_t nlabels, tp_metric_read_fn fn,
                                 void *arg, void **out) {
    struct series *s;
    int err = add_series(r, FAM_COUNTER, S_FN, name, help, labels, nlabels, NULL, 0, fn, arg, &s);
    if (!err && out) *out = s;
    return err;
}

TP_API int tp_metrics_histogram(tp_metrics *r, const char *name, const char *help,
                                const tp_label *labels, size_t nlabels, const double *bounds,
                                size_t nbounds, tp_histogram **out) {
    return add_series(r, FAM_HISTOGRAM, S_HISTOGRAM, name, help, labels, nlabels, bounds, nbounds,
                      NULL, NULL, (struct series **)out);
}

TP_API int tp_metrics_buckets_exp(double start, double factor, size_t n, double *out) {
    if (!out || !(start > 0) || !(factor > 1) || n == 0 || n > TP_METRICS_MAX_BUCKETS)
        return -EINVAL;
    double v = start;
    for (size_t i = 0; i < n; i++, v *= factor) {
        if (!isfinite(v)) return -EINVAL;
        out[i] = v;
    }
    return 0;
}

TP_API int tp_metrics_unregister(tp_metrics *r, const void *series) {
    if (!r || !series) return -EINVAL;
    pthread_mutex_lock(&r->lock);
    for (struct family *f = r->first; f; f = f->next) {
        struct series *prev = NULL;
        for (struct series *s = f->first; s; prev = s, s = s->next) {
            if (s != series) continue;
            if (prev)
                prev->next = s->next;
            else
                f->first = s->next;
            if (f->last == s) f->last = prev;
            free_series(s);
            if (!f->first) unlink_family(r, f);
            pthread_mutex_unlock(&r->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return -ENOENT;
}

/* ---- updates ------------------------------------------------------------------- */

static inline uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double bitsd(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline void add_double_relaxed(_Atomic uint64_t *w, double v) {
    uint64_t old = tp__load_relaxed(w);
    while (!atomic_compare_exchange_weak_explicit(w, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

TP_API void tp_counter_add(tp_counter *c, uint64_t v) {
    struct series *s = (struct series *)c;
    if (!s) return;
    unsigned slot = shard();
    cell_add(&s->cells[slot * WORDS_PER_LINE], slot, v);
}

TP_API void tp_counter_inc(tp_counter *c) {
    tp_counter_add(c, 1);
}

TP_API void tp_gauge_set(tp_gauge *g, double v) {
    struct series *s = (struct series *)g;
    if (!s) return;
    tp__store_relaxed(&s->cells[0], dbits(v));
}

TP_API void tp_gauge_add(tp_gauge *g, double delta) {
    struct series *s = (struct series *)g;
    if (!s) return;
    add_double_relaxed(&s->cells[0], delta);
}

/* Index of the first bucket with v <= bound; nbounds (+Inf) if none, also
 * for NaN. */
static inline size_t bucket_of(const double *b, size_t n, double v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= b[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

TP_API void tp_histogram_observe(tp_histogram *h, double v) {
    struct series *s = (struct series *)h;
    if (!s) return;
    unsigned slot = shard();
    _Atomic uint64_t *cell = s->cells + slot * s->stride;
    cell_add(&cell[bucket_of(s->bounds, s->nbounds, v)], slot, 1);
    _Atomic uint64_t *sum = &cell[s->nbounds + 1];
    if (__builtin_expect(slot < SHARDS, 1))
        tp__store_relaxed(sum, dbits(bitsd(tp__load_relaxed(sum)) + v));
    else
        add_double_relaxed(sum, v);
}

TP_API void tp_histogram_observe_ns(tp_histogram *h, uint64_t ns) {
    tp_histogram_observe(h, (double)ns * 1e-9);
}

/* ---- reads ------------------------------------------------------------------------ */

static uint64_t counter_sum(const struct series *s) {
    uint64_t v = 0;
    for (size_t i = 0; i < NSLOTS; i++)
        v += tp__load_relaxed(&s->cells[i * WORDS_PER_LINE]);
    return v;
}

/* Per-bucket counts (not cumulative) into out[0..nbounds], and the sum. */
static double hist_read(const struct series *s, uint64_t *out) {
    double sum = 0;
    memset(out, 0, (s->nbounds + 1) * sizeof *out);
    for (size_t i = 0; i < NSLOTS; i++) {
        _Atomic uint64_t *cell = s->cells + i * s->stride;
        for (size_t b = 0; b <= s->nbounds; b++)
            out[b] += tp__load_relaxed(&cell[b]);
        sum += bitsd(tp__load_relaxed(&cell[s->nbounds + 1]));
    }
    return sum;
}

TP_API uint64_t tp_counter_value(const tp_counter *c) {
    const struct series *s = (const struct series *)c;
    return s && s->kind == S_COUNTER ? counter_sum(s) : 0;
}

TP_API double tp_gauge_value(const tp_gauge *g) {
    const struct series *s = (const struct series *)g;
    return s && s->kind == S_GAUGE ? bitsd(tp__load_relaxed(&s->cells[0])) : 0.0;
}

TP_API uint64_t tp_histogram_count(const tp_histogram *h) {
    const struct series *s = (const struct series *)h;
    if (!s || s->kind != S_HISTOGRAM) return 0;
    uint64_t b[TP_METRICS_MAX_BUCKETS + 1], n = 0;
    hist_read(s, b);
    for (size_t i = 0; i <= s->nbounds; i++)
        n += b[i];
    return n;
}

TP_API double tp_histogram_sum(const tp_histogram *h) {
    const struct series *s = (const struct series *)h;
    if (!s || s->kind != S_HISTOGRAM) return 0;
    uint64_t b[TP_METRICS_MAX_BUCKETS + 1];
    return hist_read(s, b);
}

/* ---- rendering -------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s) {
    sb_putn(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    sb_putn(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Shortest of %.15g..%.17g that reads back exactly; Prometheus spellings
 * for the non-finite values. */
void tp__metrics_fmt_double(char *out, size_t cap, double v) {
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static void sb_double(struct sbuf *b, double v) {
    char tmp[40];
    tp__metrics_fmt_double(tmp, sizeof tmp, v);
    sb_puts(b, tmp);
}

/* Text format escapes: label values \\ \" \n; help \\ \n. */
static void sb_escaped(struct sbuf *b, const char *s, bool quote) {
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (!rep) continue;
        sb_putn(b, run, (size_t)(s - run));
        sb_puts(b, rep);
        run = s + 1;
    }
    sb_putn(b, run, (size_t)(s - run));
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels. */
static void text_labels(struct sbuf *b, const struct series *s, const char *le) {
    const struct family *f = s->fam;
    if (f->nlabels == 0 && !le) return;
    sb_puts(b, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i) sb_puts(b, ",");
        sb_puts(b, f->label_names[i]);
        sb_puts(b, "=\"");
        sb_escaped(b, s->values[i], true);
        sb_puts(b, "\"");
    }
    if (le) {
        if (f->nlabels) sb_puts(b, ",");
        sb_puts(b, "le=\"");
        sb_puts(b, le);
        sb_puts(b, "\"");
    }
    sb_puts(b, "}");
}

static const char *type_name(enum fam_type t) {
    return t == FAM_COUNTER ? "counter" : t == FAM_GAUGE ? "gauge" : "histogram";
}

static void text_family(struct sbuf *b, const struct family *f) {
    if (f->help[0]) {
        sb_puts(b, "# HELP ");
        sb_puts(b, f->name);
        sb_puts(b, " ");
        sb_escaped(b, f->help, false);
        sb_puts(b, "\n");
    }
    sb_puts(b, "# TYPE ");
    sb_puts(b, f->name);
    sb_puts(b, " ");
    sb_puts(b, type_name(f->type));
    sb_puts(b, "\n");
    for (const struct series *s = f->first; s; s = s->next) {
        if (s->kind != S_HISTOGRAM) {
            sb_puts(b, f->name);
            text_labels(b, s, NULL);
            sb_puts(b, " ");
            if (s->kind == S_COUNTER)
                sb_printf(b, "%" PRIu64, counter_sum(s));
            else if (s->kind == S_GAUGE)
                sb_double(b, bitsd(tp__load_relaxed(&s->cells[0])));
            else
                sb_double(b, s->fn(s->arg));
            sb_puts(b, "\n");
            continue;
        }
        uint64_t cnt[TP_METRICS_MAX_BUCKETS + 1], cum = 0;
        double sum = hist_read(s, cnt);
        char le[40];
        for (size_t i = 0; i <= s->nbounds; i++) {
            cum += cnt[i];
            if (i < s->nbounds)
                tp__metrics_fmt_double(le, sizeof le, s->bounds[i]);
            else
                snprintf(le, sizeof le, "+Inf");
            sb_puts(b, f->name);
            sb_puts(b, "_bucket");
            text_labels(b, s, le);
            sb_printf(b, " %" PRIu64 "\n", cum);
        }
        sb_puts(b, f->name);
        sb_puts(b, "_sum");
        text_labels(b, s, NULL);
        sb_puts(b, " ");
        sb_double(b, sum);
        sb_puts(b, "\n");
        sb_puts(b, f->name);
        sb_puts(b, "_count");
        text_labels(b, s, NULL);
        sb_printf(b, " %" PRIu64 "\n", cum);
    }
}

/* JSON string with escapes for ", \ and control characters. */
static void json_str(struct sbuf *b, const char *s) {
    sb_puts(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != '"' && c != '\\' && c >= 0x20) continue;
        sb_putn(b, run, (size_t)(s - run));
        if (c == '"')
            sb_puts(b, "\\\"");
        else if (c == '\\')
            sb_puts(b, "\\\\");
        else if (c == '\n')
            sb_puts(b, "\\n");
        else if (c == '\t')
            sb_puts(b, "\\t");
        else
            sb_printf(b, "\\u%04x", c);
        run = s + 1;
    }
    sb_putn(b, run, (size_t)(s - run));
    sb_puts(b, "\"");
}

/* JSON has no NaN/Inf: write null for them. */
static void json_num(struct sbuf *b, double v) {
    if (!isfinite(v))
        sb_puts(b, "null");
    else
        sb_double(b, v);
}

static void json_family(struct sbuf *b, const struct family *f) {
    sb_puts(b, "{\"name\":");
    json_str(b, f->name);
    sb_puts(b, ",\"type\":\"");
    sb_puts(b, type_name(f->type));
    sb_puts(b, "\",\"help\":");
    json_str(b, f->help);
    sb_puts(b, ",\"series\":[");
    for (const struct series *s = f->first; s; s = s->next) {
        sb_puts(b, s == f->first ? "{\"labels\":{" : ",{\"labels\":{");
        for (size_t i = 0; i < f->nlabels; i++) {
            if (i) sb_puts(b, ",");
            json_str(b, f->label_names[i]);
            sb_puts(b, ":");
            json_str(b, s->values[i]);
        }
        sb_puts(b, "}");
        if (s->kind == S_COUNTER) {
            sb_printf(b, ",\"value\":%" PRIu64 "}", counter_sum(s));
        } else if (s->kind == S_GAUGE || s->kind == S_FN) {
            sb_puts(b, ",\"value\":");
            json_num(b, s->kind == S_GAUGE ? bitsd(tp__load_relaxed(&s->cells[0])) : s->fn(s->arg));
            sb_puts(b, "}");
        } else {
            uint64_t cnt[TP_METRICS_MAX_BUCKETS + 1], cum = 0;
            double sum = hist_read(s, cnt);
            sb_puts(b, ",\"buckets\":[");
            for (size_t i = 0; i <= s->nbounds; i++) {
                cum += cnt[i];
                sb_puts(b, i ? ",{\"le\":" : "{\"le\":");
                if (i < s->nbounds)
                    sb_double(b, s->bounds[i]);
                else
                    sb_puts(b, "\"+Inf\"");
                sb_printf(b, ",\"count\":%" PRIu64 "}", cum);
            }
            sb_printf(b, "],\"count\":%" PRIu64 ",\"sum\":", cum);
            json_num(b, sum);
            sb_puts(b, "}");
        }
    }
    sb_puts(b, "]}");
}

static int render(tp_metrics *r, bool json, char **out, size_t *len) {
    if (!r || !out) return -EINVAL;
    struct sbuf b = {0};
    sb_putn(&b, "", 0);
    pthread_mutex_lock(&r->lock);
    if (json) sb_puts(&b, "{\"families\":[");
    for (const struct family *f = r->first; f; f = f->next) {
        if (json) {
            if (f != r->first) sb_puts(&b, ",");
            json_family(&b, f);
        } else {
            text_family(&b, f);
        }
    }
    if (json) sb_puts(&b, "]}\n");
    pthread_mutex_unlock(&r->lock);
    if (b.oom || !b.p) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    if (len) *len = b.len;
    return 0;
}

TP_API int tp_metrics_render_text(tp_metrics *r, char **out, size_t *len) {
    return render(r, false, out, len);
}

TP_API int tp_metrics_render_json(tp_metrics *r, char **out, size_t *len) {
    return render(r, true, out, len);
}
