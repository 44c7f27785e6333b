/*
 * refdata_snapshot.h - one reference-data version copied from Redis into
 * this process's memory, for `parcelrisk whatif`.
 *
 * Why: a replay decides hundreds of thousands of declarations a second; a
 * Redis round trip per batch (plus the enrich cache's misses) would cost
 * more than the rules. The version current at start is read once, in one
 * read-only Lua script that also checks it against its manifest
 * (PR_REFDATA_VERIFY_LUA, the check enrich makes), so the snapshot is one
 * whole version, never a mix, and the report names it. Redis is not written.
 *
 * Keys are those the enrich operator asks the lookup script for: "h:" + a
 * 2/4/6/8/10-digit code, "v:" + "<KIND>|<normal form>", "c:" + a country;
 * values are the hash values of refdata.h, unchanged, so enrich parses them
 * with the same code whichever the source.
 *
 * @locality built on one thread; read-only afterwards, so any number of
 *           threads may look up at once.
 */
#ifndef PR_REFDATA_SNAPSHOT_H
#define PR_REFDATA_SNAPSHOT_H

#include "common.h"

struct pr_refdata_snapshot_slot;

struct pr_refdata_snapshot {
    char version[128];
    char manifest[256];
    uint64_t hts_rows, violator_keys, country_rows;
    size_t bytes; /* memory held */
    /* open addressing over the entries */
    struct pr_refdata_snapshot_slot *slots;
    size_t capacity, count;
    char *data; /* every key and value */
    size_t data_len, data_cap;
};

/**
 * @brief Reads the current reference-data version from Redis at address
 *        (AUTH with user/password when a password is given).
 * @returns the snapshot, or NULL with the reason in err (Redis unreachable
 *          or refusing, no version loaded, or the version does not check
 *          out against its manifest).
 */
struct pr_refdata_snapshot *pr_refdata_snapshot_load(const char *address, const char *user,
                                                     const char *password, int timeout_ms,
                                                     char *err, size_t err_size);

/* The value of key; false when the version has no such row. */
bool pr_refdata_snapshot_get(const struct pr_refdata_snapshot *snap, const char *key, size_t len,
                             const char **value, size_t *value_len);

void pr_refdata_snapshot_free(struct pr_refdata_snapshot *snap);

#endif
