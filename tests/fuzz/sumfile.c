/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: checksum lines (cli/sumfile.c), as `tripool hash -c` reads a
 * sum file: the input is split into lines and each is stripped of trailing
 * CR/LF like read_sumfile() does. Invariants for every line the parser
 * accepts: the digest is hex of the algorithm's length, the path is not
 * empty and lies in the line, and printing the parsed entry the way
 * `tripool hash` does gives back the very line, which parses to the same
 * entry. And for any path (the line itself) and every algorithm and style,
 * what `tripool hash` prints parses back to that algorithm, digest and path.
 *
 * TP_TEST_TIMEOUT: 30
 */
#include <stdbool.h>
#include <string.h>

#include "../../cli/sumfile.h"
#include "fuzz.h"

static size_t hex_len(tp_hash_alg a) {
    return a == TP_HASH_XXH128 ? 32 : a == TP_HASH_XXH3 || a == TP_HASH_XXH64 ? 16 : 8;
}

/* What tp__sum_print writes, as a string (caller frees). */
static char *print_line(tp_hash_alg a, bool tag, const char *hex, const char *path) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    tp__sum_print(f, a, tag, hex, path);
    fclose(f);
    FUZZ_CHECK(len > 0 && out[len - 1] == '\n', "printed line lacks its newline");
    out[len - 1] = 0;
    return out;
}

static void check_line(const char *l) {
    struct tp__sum_line e;
    if (!tp__sum_parse_line(l, &e)) return;
    size_t n = strlen(l);
    FUZZ_CHECK(e.hex_len == hex_len(e.alg), "digest of %zu hex digits for alg %d", e.hex_len,
               (int)e.alg);
    for (size_t i = 0; i < e.hex_len; i++)
        FUZZ_CHECK(strchr("0123456789abcdefABCDEF", e.hex[i]) && e.hex[i], "non-hex digest");
    FUZZ_CHECK(e.path_len > 0, "empty path accepted");
    FUZZ_CHECK(e.path >= l && e.path + e.path_len <= l + n, "path outside the line");
    FUZZ_CHECK(e.hex >= l && e.hex + e.hex_len <= l + n, "digest outside the line");

    char *path = strndup(e.path, e.path_len), *hex = strndup(e.hex, e.hex_len);
    if (!path || !hex) goto out;
    bool tag = e.hex != l; /* GNU lines start with the digest */
    char *again = print_line(e.alg, tag, hex, path);
    if (!again) goto out;
    FUZZ_CHECK(strcmp(again, l) == 0, "parse+print changes the line:\n  '%s'\n  '%s'", l, again);
    struct tp__sum_line e2;
    FUZZ_CHECK(tp__sum_parse_line(again, &e2), "printed line rejected: '%s'", again);
    FUZZ_CHECK(e2.alg == e.alg && e2.path_len == e.path_len && e2.hex_len == e.hex_len &&
                   memcmp(e2.path, path, e.path_len) == 0 && memcmp(e2.hex, hex, e.hex_len) == 0,
               "reparse differs: '%s'", again);
    free(again);
out:
    free(path);
    free(hex);
}

/* Anything tripool prints for a file named path reads back. */
static void check_print(const char *path) {
    static const char digits[] = "0123456789abcdef0123456789ABCDEF";
    if (!*path) return; /* no file has an empty name */
    for (int a = TP_HASH_XXH3; a <= TP_HASH_CRC32C; a++) {
        for (int tag = 0; tag < 2; tag++) {
            char hex[33];
            size_t hl = hex_len((tp_hash_alg)a);
            memcpy(hex, digits, hl);
            hex[hl] = 0;
            char *l = print_line((tp_hash_alg)a, tag, hex, path);
            if (!l) return;
            struct tp__sum_line e;
            FUZZ_CHECK(tp__sum_parse_line(l, &e), "tripool's own line rejected: '%s'", l);
            FUZZ_CHECK(e.alg == (tp_hash_alg)a, "alg %d read back as %d: '%s'", a, (int)e.alg, l);
            FUZZ_CHECK(e.hex_len == hl && memcmp(e.hex, hex, hl) == 0, "digest changed: '%s'", l);
            FUZZ_CHECK(e.path_len == strlen(path) && memcmp(e.path, path, e.path_len) == 0,
                       "path changed: '%s'", l);
            free(l);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    size_t lines = 0;
    for (char *l = buf; l < buf + size && lines < 64;) {
        char *nl = memchr(l, '\n', (size_t)(buf + size - l));
        char *end = nl ? nl : buf + size;
        size_t n = (size_t)(end - l);
        char *copy = malloc(n + 1); /* exact size: reads past the line are caught */
        if (!copy) break;
        memcpy(copy, l, n);
        copy[n] = 0;
        /* As read_sumfile: strip by length (getline keeps NULs; the
         * parser then stops at the first). */
        while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == '\r'))
            copy[--n] = 0;
        check_line(copy);
        if (lines < 4) check_print(copy);
        free(copy);
        lines++;
        l = end + 1;
    }
    free(buf);
    return 0;
}
