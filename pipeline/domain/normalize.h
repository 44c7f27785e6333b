/*
 * normalize.h - identity normalization of DOMAIN.md section 6, shared by the
 * reference-data loader and the operators so that both sides normalize the
 * same way.
 *
 * Every function writes to out, which must hold at least len + 1 bytes (the
 * normal form is never longer than the input), NUL-terminates it and returns
 * its length.
 */
#ifndef PR_NORMALIZE_H
#define PR_NORMALIZE_H

#include "hash.h" /* struct pr_sha256 */
#include "record-t.h"

/* Upper-case ASCII letters, keep bytes >= 0x80, delete . and ', turn every
 * other non-alphanumeric byte into a space, collapse spaces, trim. */
size_t pr_norm_text(const char *in, size_t len, char *out);
/* pr_norm_text, then drop trailing legal-form tokens (CO, LTD, LLC, ...). */
size_t pr_norm_name(const char *in, size_t len, char *out);
/* pr_norm_text, then abbreviate whole words (STREET -> ST, ...). */
size_t pr_norm_address(const char *in, size_t len, char *out);

/* True for the normalized placeholders N A, NA, NONE, UNKNOWN. */
bool pr_norm_is_placeholder(const char *norm, size_t len);

/* True when s is empty or only white space. */
bool pr_str_blank(struct pr_str s);

/* Consignee identity: norm name | norm address | postal code upper-cased
 * without spaces and hyphens. Written to out (reset first). */
void pr_consignee_identity(const struct pr_party *party, struct pr_buf *out);
/* Lower-case hex SHA-256 of the consignee identity (65 bytes with NUL). */
void pr_consignee_key(const struct pr_party *party, char hex[65]);

/* Delivery address: norm address + " " + norm city, or norm address alone
 * when the city normalizes to nothing. Written to out (reset first). */
void pr_delivery_address(const struct pr_party *party, struct pr_buf *out);

/* Fills rec->norms (once; later calls return at once) in the batch arena:
 * normalized shipper, seller and consignee names, shipper and consignee
 * addresses, and the delivery address. */
void pr_record_norms(struct pr_batch *batch, struct pr_record *rec);
/* The consignee_key of a record whose norms are filled. */
void pr_record_consignee_key(struct pr_sha256 *sha, struct pr_record *rec);

/* A 128-bit digest of data (two SipHash-2-4 under fixed, distinct keys):
 * the keyed state's name for an address or a name. In this process's
 * memory and our internal topics only, so it needs equality, not secrecy:
 * 128 bits make a collision between two addresses or names as unlikely as
 * one of SHA-256's (1e-20 with a billion keys), at a tenth of its cost, and
 * hold no raw name or address. */
void pr_state_digest(const void *data, size_t len, uint8_t out[16]);

/* Sets rec's address_digest and name_digest (has_state_digests) from its
 * normal forms, when its delivery address is not blank; calls
 * pr_record_norms. */
void pr_record_state_digests(struct pr_batch *batch, struct pr_record *rec);

#endif
