/*
 * refdata_format.c - the value formats of refdata.h, shared by the loader
 * (refdata.c) and the operators (enrich reads HTS hash values, policy writes
 * flag names into reason details): HTS flag sets, the encoded HTS hash value
 * and the key names of a version. The one definition of each; the loader
 * itself lives in refdata.c.
 */
#include "refdata.h"

#include <stdio.h>
#include <string.h>

#include "refdata-int.h"

const char *const pr_hts_flag_names[8] = {"ADCVD",    "QUOTA",    "EXCISE",  "PGA_FDA",
                                          "PGA_USDA", "PGA_CPSC", "PGA_FCC", "WATCH"};

int pr_hts_flags_parse(const char *s, size_t len, uint32_t *flags, char *err, size_t err_size) {
    size_t i = 0;
    while (i < len && pr_is_blank_byte(s[i])) i++;
    if (i == len) {
        *flags = 0;
        return PR_OK;
    }
    uint32_t result = 0;
    size_t pos = 0;
    for (;;) {
        size_t start = pos;
        while (pos < len && s[pos] != '|') pos++;
        size_t a = start, b = pos;
        while (a < b && pr_is_blank_byte(s[a])) a++;
        while (b > a && pr_is_blank_byte(s[b - 1])) b--;
        if (a == b) {
            pr_set_err(err, err_size, "empty flag in the '|'-separated list");
            return PR_ERR;
        }
        size_t k = 0;
        for (; k < PR_ARRAY_LEN(pr_hts_flag_names); k++)
            if (strlen(pr_hts_flag_names[k]) == b - a &&
                memcmp(pr_hts_flag_names[k], s + a, b - a) == 0)
                break;
        if (k == PR_ARRAY_LEN(pr_hts_flag_names)) {
            /* Show the token (flags are not personal data), cut and with
             * non-printable bytes replaced. */
            char tok[33];
            size_t n = b - a < sizeof(tok) - 1 ? b - a : sizeof(tok) - 1;
            for (size_t j = 0; j < n; j++) {
                unsigned char c = (unsigned char)s[a + j];
                tok[j] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
            }
            tok[n] = '\0';
            pr_set_err(err, err_size,
                       "unknown flag '%s%s' (expected ADCVD, QUOTA, EXCISE, "
                       "PGA_FDA, PGA_USDA, PGA_CPSC, PGA_FCC or WATCH)",
                       tok, b - a > n ? "..." : "");
            return PR_ERR;
        }
        result |= 1u << k;
        if (pos >= len) break;
        pos++; /* the '|' */
    }
    *flags = result;
    return PR_OK;
}

void pr_hts_flags_format(uint32_t flags, char *out, size_t size) {
    if (!size) return;
    out[0] = '\0';
    size_t n = 0;
    for (size_t k = 0; k < PR_ARRAY_LEN(pr_hts_flag_names); k++) {
        if (!(flags & (1u << k))) continue;
        int w = snprintf(out + n, size - n, "%s%s", n ? "|" : "", pr_hts_flag_names[k]);
        if (w < 0 || (size_t)w >= size - n) return; /* truncated, still terminated */
        n += (size_t)w;
    }
}

/* "<flags>,<floor>,<points>,<known>": flags a decimal bitmask that fits 32 bits, floor
 * and points empty or decimal without overflow, known exactly 0 or 1. */
int pr_hts_entry_parse(const char *s, size_t len, struct pr_hts_entry *entry) {
    const char *part[4];
    size_t part_len[4];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == ',') {
            if (count == 4) return PR_ERR;
            part[count] = s + start;
            part_len[count] = i - start;
            count++;
            start = i + 1;
        }
    }
    if (count != 4) return PR_ERR;
    uint64_t v;
    if (!pr_parse_decimal(part[0], part_len[0], UINT32_MAX, &v)) return PR_ERR;
    entry->flags = (uint32_t)v;
    if (part_len[1] == 0)
        entry->floor_cents = -1;
    else if (pr_parse_decimal(part[1], part_len[1], INT64_MAX, &v))
        entry->floor_cents = (int64_t)v;
    else
        return PR_ERR;
    if (part_len[2] == 0)
        entry->points = -1;
    else if (pr_parse_decimal(part[2], part_len[2], INT32_MAX, &v))
        entry->points = (int32_t)v;
    else
        return PR_ERR;
    if (part_len[3] != 1 || (part[3][0] != '0' && part[3][0] != '1')) return PR_ERR;
    entry->known = part[3][0] == '1';
    return PR_OK;
}

void pr_refdata_key(char *buf, size_t size, const char *version, const char *suffix) {
    snprintf(buf, size, "pr:ref:%s:%s", version, suffix);
}
