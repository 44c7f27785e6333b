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
 *                        violator_rows, country_rows, source files, and
 *                        manifest: "<table>:<type>:<rows>" items joined by ","
 *                        ("hts:hash:13,vio:hash:4,cty:hash:4"), one per table
 *                        of the version with the exact size it was written
 *                        with (HLEN for a hash); written before the switch
 *   pr:ref:versions zset version -> loaded_at ms (every version still present)
 *   pr:ref:current  string the version readers use
 */
#ifndef PR_REFDATA_H
#define PR_REFDATA_H

#include "common.h"

#define PR_REF_CURRENT "pr:ref:current"
#define PR_REF_VERSIONS "pr:ref:versions"

/*
 * A version is usable only when its manifest checks out: every table it
 * lists exists with the type and size listed, and it lists every table a
 * reader needs. A version without a manifest (loaded by a parcelrisk older
 * than the manifest) or with any mismatch is "unavailable" to readers, like
 * a Redis outage (redis.on_unavailable), so a deleted or truncated table can
 * never be read as "nothing listed".
 *
 * PR_REFDATA_VERIFY_LUA defines, for a Lua script, the function
 * pr_ref_verify(version, required, manifest): checks the tables of version
 * against manifest, or when manifest is nil against the one in its meta
 * hash, and that it lists every table named in the Lua list required.
 * Returns nil and the manifest checked when it checks out, else why not (a
 * phrase naming keys and counts, never data). O(1) per table: TYPE and
 * HLEN/SCARD/ZCARD/LLEN. The enrich lookup script and `refdata status` both
 * use it, so they agree.
 */
#define PR_REFDATA_TABLES_LUA "{'hts', 'vio', 'cty'}"
#define PR_REFDATA_VERIFY_LUA                                                                      \
    "local function pr_ref_verify(version, required, manifest)\n"                                  \
    "  local base = 'pr:ref:' .. version .. ':'\n"                                                 \
    "  manifest = manifest or redis.call('HGET', base .. 'meta', 'manifest')\n"                    \
    "  if not manifest then\n"                                                                     \
    "    if redis.call('EXISTS', base .. 'meta') == 0 then\n"                                      \
    "      return 'it has no manifest (' .. base .. 'meta is missing)'\n"                          \
    "    end\n"                                                                                    \
    "    return 'it has no manifest (loaded by an older parcelrisk?)'\n"                           \
    "  end\n"                                                                                      \
    "  local sizes = {hash = 'HLEN', set = 'SCARD', zset = 'ZCARD', list = 'LLEN'}\n"              \
    "  local listed = {}\n"                                                                        \
    "  for item in string.gmatch(manifest, '[^,]+') do\n"                                          \
    "    local name, kind, rows = string.match(item, '^([%w_]+):(%a+):(%d+)$')\n"                  \
    "    if not name or not sizes[kind] then return 'its manifest is malformed' end\n"             \
    "    listed[name] = true\n"                                                                    \
    "    local key = base .. name\n"                                                               \
    "    local want = tonumber(rows)\n"                                                            \
    "    local t = redis.call('TYPE', key)['ok']\n"                                                \
    "    if t == 'none' then\n"                                                                    \
    "      if want > 0 then\n"                                                                     \
    "        return key .. ' is missing (the manifest lists ' .. rows .. ' rows)'\n"               \
    "      end\n"                                                                                  \
    "    elseif t ~= kind then\n"                                                                  \
    "      return key .. ' is a ' .. t .. ' (the manifest lists a ' .. kind .. ')'\n"              \
    "    else\n"                                                                                   \
    "      local n = redis.call(sizes[kind], key)\n"                                               \
    "      if n ~= want then\n"                                                                    \
    "        return key .. ' has ' .. n .. ' rows (the manifest lists ' .. rows .. ')'\n"          \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  for _, name in ipairs(required) do\n"                                                       \
    "    if not listed[name] then return 'its manifest does not list table ' .. name end\n"        \
    "  end\n"                                                                                      \
    "  return nil, manifest\n"                                                                     \
    "end\n"

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
