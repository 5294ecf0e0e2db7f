/* SPDX-License-Identifier: MIT */
/* Checksum lines (see sumfile.h). */
#include "sumfile.h"

#include <string.h>

static bool all_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

bool tp__sum_parse_line(const char *l, struct tp__sum_line *out) {
    static const struct {
        const char *tag;
        tp_hash_alg a;
        size_t hex;
    } tags[] = {{"XXH3 (", TP_HASH_XXH3, 16},
                {"XXH128 (", TP_HASH_XXH128, 32},
                {"XXH64 (", TP_HASH_XXH64, 16},
                {"XXH32 (", TP_HASH_XXH32, 8},
                {"CRC32C (", TP_HASH_CRC32C, 8}};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        size_t tl = strlen(tags[i].tag);
        if (strncmp(l, tags[i].tag, tl) != 0) continue;
        const char *eq = strrchr(l, '=');
        size_t n = strlen(l);
        if (!eq || eq < l + tl + 2 || eq[-1] != ' ' || eq[-2] != ')' || eq[1] != ' ') return false;
        const char *h = eq + 2;
        size_t hl = (size_t)(l + n - h);
        if (hl != tags[i].hex || !all_hex(h, hl)) return false;
        out->path = l + tl;
        out->path_len = (size_t)(eq - 2 - out->path);
        out->hex = h;
        out->hex_len = hl;
        out->alg = tags[i].a;
        return out->path_len > 0;
    }
    const char *sp = strstr(l, "  ");
    if (!sp) return false;
    size_t hl = (size_t)(sp - l);
    if (!all_hex(l, hl) || !sp[2]) return false;
    if (hl == 8)
        out->alg = TP_HASH_XXH32;
    else if (hl == 16)
        out->alg = TP_HASH_XXH64;
    else if (hl == 32)
        out->alg = TP_HASH_XXH128;
    else
        return false;
    out->hex = l;
    out->hex_len = hl;
    out->path = sp + 2;
    out->path_len = strlen(sp + 2);
    return true;
}

const char *tp__sum_alg_tag(tp_hash_alg a) {
    switch (a) {
    case TP_HASH_XXH3:
        return "XXH3";
    case TP_HASH_XXH128:
        return "XXH128";
    case TP_HASH_XXH64:
        return "XXH64";
    case TP_HASH_XXH32:
        return "XXH32";
    case TP_HASH_CRC32C:
        return "CRC32C";
    }
    return "?";
}

void tp__sum_print(FILE *f, tp_hash_alg a, bool tag, const char *hex, const char *path) {
    if (tag || a == TP_HASH_XXH3 || a == TP_HASH_CRC32C)
        fprintf(f, "%s (%s) = %s\n", tp__sum_alg_tag(a), path, hex);
    else
        fprintf(f, "%s  %s\n", hex, path);
}
