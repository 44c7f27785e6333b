/*
 * utf8.h - UTF-8 validation (RFC 3629), shared by the decoder (every string
 * field of a declaration) and the reference-data loader (every value it
 * writes to Redis).
 */
#ifndef PR_UTF8_H
#define PR_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..len) is valid UTF-8: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
bool pr_utf8_valid(const uint8_t *s, size_t len);

#endif
