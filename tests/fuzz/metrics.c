/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: metric and label names and the escaping of help text and
 * label values in the Prometheus text output (src/metrics/registry.c).
 * The input is a list of registrations, each: one byte (type = b % 3:
 * gauge, counter, histogram; labels = b / 4 % 4), then NUL-separated
 * strings: name, help, and a name and value per label, then 8 bytes of a
 * gauge value or histogram sample. The registry renders its text output,
 * which a strict exposition-format (0.0.4) reader written here must accept:
 * every line a "# HELP", "# TYPE" or sample line; names and label names
 * well formed; only the escapes \\ \n (help) and \\ \" \n (label values);
 * every family's TYPE once and before its samples, which are grouped; no
 * sample name and label set twice; values numbers, NaN or +-Inf. And every
 * registration that succeeded is in the output with its help and label
 * values unescaping to exactly what was registered, and a gauge's value
 * reading back exactly.
 *
 * TP_TEST_TIMEOUT: 30
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "tripool/metrics.h"

#define MAXREG 6
#define MAXLINES 512

struct cursor {
    const uint8_t *p, *end;
};

static char *take_str(struct cursor *c) {
    const uint8_t *z = memchr(c->p, 0, (size_t)(c->end - c->p));
    size_t n = z ? (size_t)(z - c->p) : (size_t)(c->end - c->p);
    if (n > 200) n = 200;
    char *s = strndup((const char *)c->p, n);
    c->p += n + (z && (size_t)(z - c->p) == n ? 1 : 0);
    if (c->p > c->end) c->p = c->end;
    return s;
}

/* ---- the reader ---------------------------------------------------------------- */

struct sample {
    char *name;
    char *ln[33]; /* label names and unescaped values, in order */
    char *lv[33];
    size_t nl;
    double value;
};

struct family {
    char *name, *type, *help;
    bool has_help;
};

struct doc {
    struct sample s[MAXLINES];
    size_t ns;
    struct family f[MAXLINES];
    size_t nf;
};

static bool name_char(char c, bool first, bool colon) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* A name at *p; returns it (malloc) and advances, or NULL. */
static char *read_name(const char **p, bool colon) {
    const char *s = *p;
    if (!name_char(*s, true, colon)) return NULL;
    while (name_char(*s, false, colon))
        s++;
    char *n = strndup(*p, (size_t)(s - *p));
    *p = s;
    return n;
}

/* Unescape up to the end (help: until end of line) or a closing quote
 * (label value). Returns malloc'd text, or NULL on a bad escape or a raw
 * newline/quote. */
static char *unescape(const char **p, bool quoted) {
    size_t cap = strlen(*p) + 1, n = 0;
    char *out = malloc(cap);
    const char *s = *p;
    for (;; s++) {
        if (!*s) {
            if (quoted) goto bad; /* unterminated */
            break;
        }
        if (quoted && *s == '"') break;
        if (*s == '\n') goto bad;
        if (*s == '\\') {
            s++;
            if (*s == '\\')
                out[n++] = '\\';
            else if (*s == 'n')
                out[n++] = '\n';
            else if (quoted && *s == '"')
                out[n++] = '"';
            else
                goto bad;
            continue;
        }
        out[n++] = *s;
    }
    out[n] = 0;
    *p = s;
    return out;
bad:
    free(out);
    return NULL;
}

static bool read_value(const char *s, double *v) {
    if (strcmp(s, "NaN") == 0) return *v = NAN, true;
    if (strcmp(s, "+Inf") == 0) return *v = INFINITY, true;
    if (strcmp(s, "-Inf") == 0) return *v = -INFINITY, true;
    char *end;
    if (!*s || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return false;
    *v = strtod(s, &end);
    return *end == 0 && isfinite(*v);
}

static struct family *find_fam(struct doc *d, const char *name) {
    for (size_t i = 0; i < d->nf; i++)
        if (strcmp(d->f[i].name, name) == 0) return &d->f[i];
    return NULL;
}

/* The family a sample name belongs to, given the TYPE'd families. */
static struct family *owner(struct doc *d, const char *sample) {
    struct family *f = find_fam(d, sample);
    if (f && strcmp(f->type, "histogram") != 0) return f;
    static const char *const suf[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(sample), k = strlen(suf[i]);
        if (n > k && strcmp(sample + n - k, suf[i]) == 0) {
            char *base = strndup(sample, n - k);
            struct family *h = find_fam(d, base);
            free(base);
            if (h && strcmp(h->type, "histogram") == 0) return h;
        }
    }
    return NULL;
}

/* Same name and the same label set (in any order). */
static bool same_series(const struct sample *a, const struct sample *b) {
    if (strcmp(a->name, b->name) != 0 || a->nl != b->nl) return false;
    for (size_t i = 0; i < a->nl; i++) {
        size_t j = 0;
        while (j < b->nl && strcmp(a->ln[i], b->ln[j]) != 0)
            j++;
        if (j == b->nl || strcmp(a->lv[i], b->lv[j]) != 0) return false;
    }
    return true;
}

static void read_doc(const char *text, struct doc *d) {
    FUZZ_CHECK(strlen(text) == 0 || text[strlen(text) - 1] == '\n', "output does not end a line");
    char *copy = strdup(text);
    struct family *cur = NULL;
    for (char *line = copy, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *p = line;
        if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
            bool help = p[2] == 'H';
            p += 7;
            char *name = read_name(&p, true);
            FUZZ_CHECK(name && *p == ' ', "bad metric name in '%s'", line);
            p++;
            struct family *f = find_fam(d, name);
            if (!f) {
                FUZZ_CHECK(d->nf < MAXLINES, "too many families");
                f = &d->f[d->nf++];
                f->name = name;
                f->type = NULL;
                f->help = NULL;
                f->has_help = false;
            } else {
                free(name);
                FUZZ_CHECK(f == cur, "family '%s' is not one group", f->name);
            }
            if (help) {
                FUZZ_CHECK(!f->has_help, "second HELP for '%s'", f->name);
                f->help = unescape(&p, false);
                FUZZ_CHECK(f->help, "bad escape in HELP of '%s': '%s'", f->name, line);
                f->has_help = true;
            } else {
                FUZZ_CHECK(!f->type, "second TYPE for '%s'", f->name);
                FUZZ_CHECK(strcmp(p, "counter") == 0 || strcmp(p, "gauge") == 0 ||
                               strcmp(p, "histogram") == 0,
                           "bad type '%s'", p);
                f->type = strdup(p);
            }
            cur = f;
            continue;
        }
        FUZZ_CHECK(*p != '#', "stray comment line '%s'", line);
        FUZZ_CHECK(d->ns < MAXLINES, "too many samples");
        struct sample *s = &d->s[d->ns++];
        memset(s, 0, sizeof *s);
        s->name = read_name(&p, true);
        FUZZ_CHECK(s->name, "bad sample name in '%s'", line);
        if (*p == '{') {
            p++;
            while (*p != '}') {
                FUZZ_CHECK(s->nl < 33, "too many labels");
                s->ln[s->nl] = read_name(&p, false);
                FUZZ_CHECK(s->ln[s->nl] && *p == '=' && p[1] == '"', "bad label in '%s'", line);
                p += 2;
                s->lv[s->nl] = unescape(&p, true);
                FUZZ_CHECK(s->lv[s->nl], "bad label value in '%s'", line);
                p++; /* the closing quote */
                for (size_t i = 0; i < s->nl; i++)
                    FUZZ_CHECK(strcmp(s->ln[i], s->ln[s->nl]) != 0, "label twice in '%s'", line);
                s->nl++;
                if (*p == ',')
                    p++;
                else
                    FUZZ_CHECK(*p == '}', "bad label list in '%s'", line);
            }
            p++;
        }
        FUZZ_CHECK(*p == ' ', "no value in '%s'", line);
        p++;
        FUZZ_CHECK(read_value(p, &s->value), "bad value '%s'", p);
        struct family *f = owner(d, s->name);
        FUZZ_CHECK(f && f->type, "sample '%s' has no TYPE", s->name);
        FUZZ_CHECK(f == cur, "sample '%s' outside its family's group", s->name);
        for (size_t i = 0; i + 1 < d->ns; i++)
            FUZZ_CHECK(!same_series(&d->s[i], s), "series twice: '%s'", line);
    }
    free(copy);
}

static void free_doc(struct doc *d) {
    for (size_t i = 0; i < d->ns; i++) {
        free(d->s[i].name);
        for (size_t j = 0; j < d->s[i].nl; j++) {
            free(d->s[i].ln[j]);
            free(d->s[i].lv[j]);
        }
    }
    for (size_t i = 0; i < d->nf; i++) {
        free(d->f[i].name);
        free(d->f[i].type);
        free(d->f[i].help);
    }
}

/* ---- the target ---------------------------------------------------------------- */

struct reg {
    int type;
    char *name, *help;
    tp_label l[3];
    size_t nl;
    double v;
};

static void free_reg(struct reg *r) {
    free(r->name);
    free(r->help);
    for (size_t i = 0; i < r->nl; i++) {
        free((char *)r->l[i].name);
        free((char *)r->l[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tp_metrics *m;
    if (tp_metrics_create(&m) != 0) return 0;
    struct cursor c = {data, data + size};
    struct reg ok[MAXREG], r;
    size_t nok = 0;
    for (int k = 0; k < MAXREG && c.p < c.end; k++) {
        uint8_t b = *c.p++;
        memset(&r, 0, sizeof r);
        r.type = b % 3;
        r.nl = (size_t)(b / 4 % 4);
        if (r.nl > 3) r.nl = 3;
        r.name = take_str(&c);
        r.help = take_str(&c);
        for (size_t i = 0; i < r.nl; i++) {
            r.l[i].name = take_str(&c);
            r.l[i].value = take_str(&c);
        }
        uint64_t bits = 0;
        size_t nb = (size_t)(c.end - c.p) < 8 ? (size_t)(c.end - c.p) : 8;
        memcpy(&bits, c.p, nb);
        c.p += nb;
        memcpy(&r.v, &bits, sizeof r.v);
        int err;
        if (r.type == 0) {
            tp_gauge *g;
            err = tp_metrics_gauge(m, r.name, r.help, r.l, r.nl, &g);
            if (!err) tp_gauge_set(g, r.v);
        } else if (r.type == 1) {
            tp_counter *ct;
            err = tp_metrics_counter(m, r.name, r.help, r.l, r.nl, &ct);
            if (!err) tp_counter_add(ct, bits & 0xffff);
        } else {
            static const double bounds[] = {0.001, 0.5, 10};
            tp_histogram *h;
            err = tp_metrics_histogram(m, r.name, r.help, r.l, r.nl, bounds, 3, &h);
            if (!err) tp_histogram_observe(h, isfinite(r.v) ? r.v : 1);
        }
        if (!err)
            ok[nok++] = r;
        else
            free_reg(&r);
    }

    char *text = NULL;
    size_t len = 0;
    if (tp_metrics_render_text(m, &text, &len) == 0) {
        FUZZ_CHECK(strlen(text) == len, "NUL inside the output");
        static struct doc d;
        memset(&d, 0, sizeof d);
        read_doc(text, &d);
        for (size_t i = 0; i < nok; i++) {
            struct reg *e = &ok[i];
            struct family *f = find_fam(&d, e->name);
            FUZZ_CHECK(f, "registered '%s' missing", e->name);
            static const char *const tn[] = {"gauge", "counter", "histogram"};
            FUZZ_CHECK(strcmp(f->type, tn[e->type]) == 0, "'%s' typed %s", e->name, f->type);
            /* help is the family's, set by its first registration */
            if (f->has_help) FUZZ_CHECK(f->help[0], "empty HELP line for '%s'", e->name);
            char want[256];
            snprintf(want, sizeof want, "%s%s", e->name, e->type == 2 ? "_count" : "");
            bool found = false;
            for (size_t s = 0; s < d.ns && !found; s++) {
                struct sample *sp = &d.s[s];
                if (strcmp(sp->name, want) != 0 || sp->nl != e->nl) continue;
                bool same = true;
                for (size_t l = 0; l < e->nl; l++)
                    same = same && strcmp(sp->ln[l], e->l[l].name) == 0 &&
                           strcmp(sp->lv[l], e->l[l].value) == 0;
                if (!same) continue;
                found = true;
                if (e->type == 0)
                    FUZZ_CHECK((isnan(e->v) && isnan(sp->value)) || sp->value == e->v,
                               "gauge '%s' reads back %.17g, set %.17g", e->name, sp->value, e->v);
            }
            FUZZ_CHECK(found, "series of '%s' not in the output (or its labels changed)", e->name);
            bool first = true; /* the first successful registration of a name set the help */
            for (size_t j = 0; j < i; j++)
                first = first && strcmp(ok[j].name, e->name) != 0;
            if (first)
                FUZZ_CHECK(e->help[0] ? f->has_help && strcmp(f->help, e->help) == 0 : !f->has_help,
                           "help of '%s' does not read back", e->name);
        }
        free_doc(&d);
        free(text);
    }
    for (size_t i = 0; i < nok; i++)
        free_reg(&ok[i]);
    tp_metrics_destroy(m);
    return 0;
}
