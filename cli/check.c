/* SPDX-License-Identifier: MIT */
/*
 * `tripool hash -c`: owns the checklist (the entries read from the sum
 * files), reading sum files (line syntax in cli/sumfile.c), the per-file
 * verdicts (OK / FAILED / could not read) and the summary lines and exit
 * status, all as xxhsum -c prints them. Runs on main only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "sumfile.h"

#define prog tp__cli_prog

void tp__cli_hex(const unsigned char *d, size_t n, char *out) {
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = 0;
}

const char *tp__cli_errtext(int err) {
    if (err < 0 && err > -4096 && err != -ESHUTDOWN) return strerror(-err);
    return tp_strerror(err);
}

static int check_add(struct checklist *c, const char *path, size_t plen, const char *hx,
                     size_t hlen, tp_hash_alg a, const char *sumfile, unsigned line) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        char **p = realloc(c->paths, nc * sizeof(*p));
        if (p) c->paths = p;
        char **e = realloc(c->expect, nc * sizeof(*e));
        if (e) c->expect = e;
        char **sf = realloc(c->sumfile, nc * sizeof(*sf));
        if (sf) c->sumfile = sf;
        unsigned *l = realloc(c->line, nc * sizeof(*l));
        if (l) c->line = l;
        tp_hash_alg *al = realloc(c->algs, nc * sizeof(*al));
        if (al) c->algs = al;
        if (!p || !e || !sf || !l || !al) return -ENOMEM;
        c->cap = nc;
    }
    c->paths[c->n] = strndup(path, plen);
    c->expect[c->n] = strndup(hx, hlen);
    c->sumfile[c->n] = (char *)sumfile;
    c->line[c->n] = line;
    c->algs[c->n] = a;
    if (!c->paths[c->n] || !c->expect[c->n]) return -ENOMEM;
    c->n++;
    return 0;
}

static int read_sumfile(struct checklist *c, const char *name, const struct opts *o) {
    FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
        return 1;
    }
    char *l = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0, good = 0;
    while ((n = getline(&l, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (l[n - 1] == '\n' || l[n - 1] == '\r'))
            l[--n] = 0;
        struct tp__sum_line sl;
        if (!tp__sum_parse_line(l, &sl)) {
            c->bad_lines++;
            if (o->warn && !o->status)
                fprintf(stderr, "%s:%u: Error: Improperly formatted checksum line.\n", name,
                        lineno);
            continue;
        }
        if (check_add(c, sl.path, sl.path_len, sl.hex, sl.hex_len, sl.alg, name, lineno) != 0) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit(1);
        }
        good++;
    }
    free(l);
    if (f != stdin) fclose(f);
    if (!good) {
        fprintf(stderr, "%s: no properly formatted xxHash checksum lines found\n",
                strcmp(name, "-") == 0 ? "stdin" : name);
        return 1;
    }
    return 0;
}

int tp__cli_check_read(struct checklist *c, const struct opts *o) {
    int bad = 0;
    for (size_t i = 0; i < o->npaths; i++)
        bad |= read_sumfile(c, o->paths[i], o);
    return bad;
}

void tp__cli_check_result(struct checklist *c, const struct opts *o, const tp_file_result *r) {
    if (r->err) {
        c->unreadable++;
        if (!o->status)
            printf("%s:%u: Could not open or read '%s': %s.\n", c->sumfile[r->index],
                   c->line[r->index], r->path, tp__cli_errtext(r->err));
        return;
    }
    char h[33];
    tp__cli_hex(r->digest, r->digest_len, h);
    bool ok = strcasecmp(h, c->expect[r->index]) == 0;
    if (!ok) c->mismatched++;
    if (!o->status && (!ok || !o->quiet)) printf("%s: %s\n", r->path, ok ? "OK" : "FAILED");
}

int tp__cli_check_finish(const struct checklist *c, const struct opts *o, int code) {
    if (!o->status) {
        if (c->bad_lines)
            printf("%u line%s improperly formatted\n", c->bad_lines,
                   c->bad_lines == 1 ? " is" : "s are");
        if (c->unreadable)
            printf("%u listed file%s could not be read\n", c->unreadable,
                   c->unreadable == 1 ? "" : "s");
        if (c->mismatched)
            printf("%u computed checksum%s did NOT match\n", c->mismatched,
                   c->mismatched == 1 ? "" : "s");
    }
    if (code == 0 && (c->mismatched || c->unreadable || (o->strict && c->bad_lines))) code = 1;
    return code;
}

void tp__cli_check_free(struct checklist *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->paths[i]);
        free(c->expect[i]);
    }
    free(c->paths);
    free(c->expect);
    free(c->sumfile);
    free(c->line);
    free(c->algs);
    memset(c, 0, sizeof(*c));
}
