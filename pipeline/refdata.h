/*
 * refdata.h - reference data in Redis (DOMAIN.md sections 6-7): the layout
 * shared by the loader (`parcelrisk refdata load`) and the enrich operator.
 *
 * Every load writes a complete new version, then switches to it with one SET
 * of PR_REF_CURRENT; readers look up through a Lua script that reads
 * PR_REF_CURRENT and the version's hashes atomically, so a reader sees the
 * old set or the new one, never a mix. Old versions expire after a grace
 * period. Keys of version V:
 *
 *   pr:ref:V:hts   hash  code (2/4/6/8/10 digits) -> "<flags>,<floor>,<points>,<known>"
 *                        flags: decimal bitmask of enum pr_hts_flag;
 *                        floor: unit_value_floor_cents or empty; points: or empty;
 *                        known: 1 for a 10-digit row (a statistical line), else 0
 *   pr:ref:V:vio   hash  "<KIND>|<normalized name>" (SHIPPER, SELLER, CONSIGNEE; name
 *                        normalized with pr_norm_name) or "ADDRESS|<normalized address>"
 *                        (pr_norm_address) -> ";"-joined "<country>:<severity>" entries,
 *                        country empty when the row has none
 *   pr:ref:V:cty   hash  country (ISO alpha-2, upper case) -> points
 *   pr:ref:V:meta  hash  version, loaded_at (ms), loaded_at_utc, hts_rows,
 *                        violator_rows, country_rows, source files
 *   pr:ref:versions zset version -> loaded_at ms (every version still present)
 *   pr:ref:current  string the version readers use
 */
#ifndef PR_REFDATA_H
#define PR_REFDATA_H

#include "common.h"

#define PR_REF_CURRENT "pr:ref:current"
#define PR_REF_VERSIONS "pr:ref:versions"

enum pr_hts_flag {
    PR_HTS_ADCVD = 1 << 0,
    PR_HTS_QUOTA = 1 << 1,
    PR_HTS_EXCISE = 1 << 2,
    PR_HTS_PGA_FDA = 1 << 3,
    PR_HTS_PGA_USDA = 1 << 4,
    PR_HTS_PGA_CPSC = 1 << 5,
    PR_HTS_PGA_FCC = 1 << 6,
    PR_HTS_WATCH = 1 << 7,
};
#define PR_HTS_EXCLUDED (PR_HTS_ADCVD | PR_HTS_QUOTA | PR_HTS_EXCISE)
#define PR_HTS_PGA (PR_HTS_PGA_FDA | PR_HTS_PGA_USDA | PR_HTS_PGA_CPSC | PR_HTS_PGA_FCC)

/* Flag names in bit order, for parsing and for reason details. */
extern const char *const pr_hts_flag_names[8];
/* Parses a "|"-separated flag set (empty for none). PR_ERR names the bad
 * token in err. */
int pr_hts_flags_parse(const char *s, size_t len, uint32_t *flags, char *err, size_t err_size);
/* Writes "ADCVD|PGA_FDA" style text of flags. */
void pr_hts_flags_format(uint32_t flags, char *out, size_t size);

/* One parsed HTS hash value. floor/points < 0 when empty. */
struct pr_hts_entry {
    uint32_t flags;
    int64_t floor_cents;
    int32_t points;
    bool known;
};
int pr_hts_entry_parse(const char *s, size_t len, struct pr_hts_entry *entry);

/* Key names of a version: buf receives "pr:ref:<version>:<suffix>". */
void pr_refdata_key(char *buf, size_t size, const char *version, const char *suffix);

#endif
