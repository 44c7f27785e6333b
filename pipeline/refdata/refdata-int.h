/*
 * refdata-int.h - helpers private to the reference-data module: the value
 * formats (refdata_format.c) and the loader (refdata.c) both use them. Not
 * for use outside those two files.
 *
 * They are static inline so that each file keeps its own inlined copy, as
 * when they were static in refdata.c, and no global symbol is added.
 *
 * @locality any thread; no state.
 */
#ifndef PR_REFDATA_INT_H
#define PR_REFDATA_INT_H

#include <stdarg.h>
#include <stdio.h>

#include "common.h"

/* vsnprintf to err, unless err is NULL or err_size 0. */
static inline void pr_set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void pr_set_err(char *err, size_t err_size, const char *fmt, ...) {
    if (!err || !err_size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static inline bool pr_is_blank_byte(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parses a non-empty run of decimal digits no greater than max. */
static inline bool pr_parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *value) {
    if (len == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10) return false;
        v = v * 10 + d;
    }
    *value = v;
    return true;
}

#endif
