/*
 * state.h - keyed one-person-one-day state in process (DOMAIN.md section 8):
 * the consignee-day and the address-day, with exactly the semantics the
 * aggregate operator's Redis script keeps, but in this process's memory.
 *
 * Why: `parcelrisk whatif` replays a window twice (baseline and candidate)
 * and must build each side's state from the replayed window alone, without
 * touching Redis; issue 12 (keyed state on Kafka partitions) will use the
 * same store as the engine's state. So it knows nothing about Kafka, Redis,
 * rules or whatif: keys, declaration ids, numbers, a clock given by the
 * caller.
 *
 * Semantics (the same as the script in operators/aggregate.c):
 *
 *   consignee-day  pr_state_day_count(key, id, value, ...) counts id once
 *                  per key: the first time, value is added to the key's
 *                  total (saturating at total_cap) and "over" adds one to the
 *                  key's count of declarations individually over the
 *                  threshold; the total and the over count as they stood then
 *                  are remembered for id. Counting the same id again (a
 *                  replay) changes nothing and gives back the remembered
 *                  numbers. The first id that is a candidate (the threshold
 *                  applies and it is itself within) and whose remembered
 *                  total is above its threshold becomes the key's alert
 *                  owner; crossing is true for the owner, every time.
 *   address-day    pr_state_address_count(key, id, name) counts name once
 *                  per key and id once: the first time id is seen, the
 *                  number of distinct names (counting this one) is
 *                  remembered for id and returned, then and on every replay.
 *   TTL            an entry (one key with everything under it) lives ttl_ms
 *                  after its last update, measured on the caller's clock
 *                  (now_ms); pr_state_expire drops what is older. An update
 *                  that only reads (a replay) does not extend it, as in
 *                  Redis (PEXPIRE only after a write).
 *   Bounds         max_bytes caps the memory: past it, pr_state_expire drops
 *                  the least recently updated entries first and counts them
 *                  as evicted (a result then may differ from Redis's; the
 *                  count says whether it happened).
 *
 * Keys, ids, names and house bills are byte strings taken by length (any
 * byte, NUL included) and copied. Callers pass digests, never raw names or
 * addresses (the aggregate operator passes SHA-256 hex).
 *
 * @locality one thread per struct pr_state; no global state.
 */
#ifndef PR_STATE_H
#define PR_STATE_H

#include "common.h"

struct pr_state;

/* The total cap of the aggregate operator's Redis script (2^53, the largest
 * integer Lua's doubles hold exactly): a store given it as total_cap answers
 * exactly as Redis does, saturated days included. */
#define PR_STATE_SCRIPT_TOTAL_CAP 9007199254740992LL

struct pr_state_options {
    int64_t ttl_ms;    /* life of an entry after its last update; <= 0: never expires */
    size_t max_bytes;  /* memory bound; 0: unbounded */
    int64_t total_cap; /* totals saturate here; <= 0: INT64_MAX */
};

/* What the consignee-day state says about one declaration. */
struct pr_state_day {
    int64_t total;  /* the day's total as it stood when id was first counted */
    uint32_t overs; /* declarations individually over the threshold, then */
    bool first;     /* counted by this call (false: counted before) */
    bool crossing;  /* id owns the day's aggregate alert */
};

struct pr_state_stats {
    size_t keys;      /* consignee-days plus address-days held */
    size_t members;   /* declarations and names held under them */
    size_t bytes;     /* memory held, tables included */
    uint64_t expired; /* keys dropped by TTL */
    uint64_t evicted; /* keys dropped by max_bytes */
};

struct pr_state *pr_state_new(const struct pr_state_options *options);
void pr_state_free(struct pr_state *state);

/**
 * @brief Counts declaration id in consignee-day key (once; see the top).
 * @param value     what the declaration adds (the caller clamps it: a
 *                  negative value counts as 0)
 * @param over      the declaration is individually over the threshold
 * @param candidate the threshold applies and the declaration is within it
 * @param threshold the threshold the remembered total is compared with
 * @param house_bill kept for pr_state_day_house_bills
 */
void pr_state_day_count(struct pr_state *state, struct pr_str key, struct pr_str id, int64_t value,
                        bool over, bool candidate, int64_t threshold, struct pr_str house_bill,
                        int64_t now_ms, struct pr_state_day *out);

/* What pr_state_day_count remembered for id, without counting it; false
 * when id is not counted in key. crossing is set for the owner. */
bool pr_state_day_lookup(const struct pr_state *state, struct pr_str key, struct pr_str id,
                         struct pr_state_day *out);

/* Every house bill counted in key, sorted bytewise, joined by ","; appended
 * to out (nothing when key is unknown). */
void pr_state_day_house_bills(const struct pr_state *state, struct pr_str key, struct pr_buf *out);

/* Counts id and name in address-day key; returns the distinct names at the
 * key as they stood when id was first counted (this one included). */
int32_t pr_state_address_count(struct pr_state *state, struct pr_str key, struct pr_str id,
                               struct pr_str name, int64_t now_ms);

/* Drops the keys whose last update is ttl_ms or more before now_ms, then,
 * while over max_bytes, the least recently updated ones. Returns the keys
 * dropped. */
size_t pr_state_expire(struct pr_state *state, int64_t now_ms);

void pr_state_get_stats(const struct pr_state *state, struct pr_state_stats *out);

/*
 * The changelog (issue 12): a store reports each change as one (key, value)
 * record, and a fresh store rebuilt from the records a compacted topic keeps
 * answers as the original did. One record per member, never per entry (a
 * compacted topic keeps the last record per key, and an entry of n
 * declarations must not rewrite O(n) bytes per update):
 *
 *   key    kind byte (1 consignee-day id, 2 address-day id, 3 address-day
 *          name: version 1 only), the entry key as a LEB128 length and its
 *          bytes, then the id or name (the rest of the key)
 *   value  format version byte (2; version 1 is still read), then
 *            kind 1: flags byte (bit 0: the day's alert owner), LEB128
 *                    remembered total, LEB128 remembered overs, zigzag
 *                    LEB128 update time now_ms, the house bill (the rest)
 *            kind 2: LEB128 remembered distinct names (at least 1), zigzag
 *                    LEB128 now_ms, the name the id was counted with (the
 *                    rest: the bytes passed as name, maybe empty)
 *          or no value at all (ptr NULL): a tombstone.
 *   version 1 (written before 2026-12-02, main 950a1be): kind 1 as above;
 *          kind 2 without the name; kind 3, a name record, of zigzag LEB128
 *          now_ms alone, written before the id record of the id that first
 *          counted that name at the entry.
 *
 * When: the first count of an id writes its record (one record per
 * declaration, address-days included); a replay that makes the id the day's
 * alert owner rewrites it (owner bit set); nothing else is ever rewritten.
 * pr_state_expire writes a tombstone for every member record of every entry
 * it drops (every id, and every name that came from a version-1 name
 * record), all of one entry together, before it drops the entry (so before
 * any record of a later incarnation of the same key). pr_state_free writes
 * nothing (a revoked partition keeps its changelog).
 *
 * Rebuilding applies the surviving records in log order, either version or
 * both (a changelog written by the previous build restores, and new records
 * follow it). An entry's total and overs are the largest remembered among
 * its members (both only grow, and each new member remembers them as they
 * stood after its own count); its distinct names are the distinct names of
 * its kind-2 records (and its version-1 name records): an address-day id
 * record is written once and never rewritten, and a tombstone drops the
 * whole entry, so every id record of an incarnation survives compaction and
 * every name was counted with one of them; an id's remembered count is what
 * its record says. Its owner is the member whose
 * last record has the owner bit; its last update is the update time of its
 * last record in log order, and its place in the least-recently-updated
 * order is that record's place in the log: the same as the original's, so
 * TTL expiry afterwards drops the same entries at the same times. A
 * tombstone drops its whole entry (every record of that incarnation is
 * tombstoned with it). The store's total_cap must be the writer's.
 */

/* Where a store reports its changes, as changelog records: key and value are byte strings valid
 * during the call only; value.ptr == NULL is a tombstone (delete key). */
struct pr_state_journal {
    void (*write)(void *ctx, struct pr_str key, struct pr_str value);
    void *ctx;
};
/* NULL: report nothing (the default). The struct is copied. write is called
 * from inside the counts and pr_state_expire and must not call back into the
 * same store; it cannot fail (a sink that can queues or stops the caller). */
void pr_state_set_journal(struct pr_state *state, const struct pr_state_journal *journal);

/* Applies one changelog record (as written by a journal; value.ptr NULL = tombstone) to the store,
 * in log order. Returns 0, or -1 for a record it cannot parse (the store unchanged). Writes nothing
 * to the journal. A tombstone of a key the store does not hold is a no-op (0). */
int pr_state_restore(struct pr_state *state, struct pr_str key, struct pr_str value);

#endif
