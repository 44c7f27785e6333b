/*
 * refdata_format.c - the value formats of refdata.h shared by the loader and
 * the enrich operator: HTS flag sets and the encoded HTS hash value.
 * (The loader itself lives in refdata.c.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refdata.h"

const char *const pr_hts_flag_names[8] = {"ADCVD",    "QUOTA",    "EXCISE",  "PGA_FDA",
                                          "PGA_USDA", "PGA_CPSC", "PGA_FCC", "WATCH"};

int pr_hts_flags_parse(const char *s, size_t len, uint32_t *flags, char *err, size_t err_size) {
    *flags = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != '|') end++;
        size_t tlen = end - i;
        /* tolerate spaces around tokens */
        const char *tok = s + i;
        while (tlen && *tok == ' ') tok++, tlen--;
        while (tlen && tok[tlen - 1] == ' ') tlen--;
        if (tlen) {
            int found = -1;
            for (int f = 0; f < 8; f++)
                if (strlen(pr_hts_flag_names[f]) == tlen && memcmp(pr_hts_flag_names[f], tok, tlen) == 0)
                    found = f;
            if (found < 0) {
                snprintf(err, err_size, "unknown flag '%.*s'", (int)(tlen > 32 ? 32 : tlen), tok);
                return PR_ERR;
            }
            *flags |= 1u << found;
        }
        i = end + 1;
    }
    return PR_OK;
}

void pr_hts_flags_format(uint32_t flags, char *out, size_t size) {
    size_t n = 0;
    out[0] = '\0';
    for (int f = 0; f < 8; f++) {
        if (!(flags & (1u << f))) continue;
        int w = snprintf(out + n, size - n, "%s%s", n ? "|" : "", pr_hts_flag_names[f]);
        if (w < 0 || (size_t)w >= size - n) return;
        n += (size_t)w;
    }
}

/* "<flags>,<floor>,<points>,<known>" with floor and points possibly empty. */
int pr_hts_entry_parse(const char *s, size_t len, struct pr_hts_entry *entry) {
    const char *end = s + len;
    int64_t fields[4];
    bool present[4];
    for (int f = 0; f < 4; f++) {
        fields[f] = 0;
        present[f] = false;
        if (s > end) return PR_ERR;
        while (s < end && *s != ',') {
            if (*s < '0' || *s > '9') return PR_ERR;
            fields[f] = fields[f] * 10 + (*s - '0');
            present[f] = true;
            s++;
        }
        s++; /* the comma, or one past the end */
    }
    entry->flags = (uint32_t)fields[0];
    entry->floor_cents = present[1] ? fields[1] : -1;
    entry->points = present[2] ? (int32_t)fields[2] : -1;
    entry->known = fields[3] == 1;
    return PR_OK;
}

void pr_refdata_key(char *buf, size_t size, const char *version, const char *suffix) {
    snprintf(buf, size, "pr:ref:%s:%s", version, suffix);
}
