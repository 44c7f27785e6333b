/*
 * cache.h - a bounded in-process cache of reference-data answers, with a
 * TTL and CLOCK (second-chance) eviction.
 *
 * Keys and values are byte strings; a value may be "negative" (the key is on
 * no list), which is cached too. Bounded both in entries and in bytes; an
 * insert past either bound evicts entries the clock hand finds unreferenced
 * since its last pass. Open addressing with linear probing and
 * backward-shift deletion (no tombstones). The hand sweeps the table in slot
 * order, so the slots just ahead of it are the fullest; the table is kept at
 * most about a third full so that those runs stay short (test_cache counts
 * the slots examined per operation).
 *
 * @locality one thread (the engine thread); not synchronised.
 */
#ifndef PR_CACHE_H
#define PR_CACHE_H

#include "common.h"

struct pr_cache_entry;

struct pr_cache_stats {
    uint64_t hits, misses, expired, evictions, inserts;
    uint64_t probes; /* slots examined by lookups and by deletions: stays a few per operation */
};

struct pr_cache {
    struct pr_cache_entry **slots;
    size_t capacity; /* power of two, >= max_entries / 0.35 (8 bytes a slot) */
    size_t count;
    size_t max_entries;
    size_t max_bytes;
    size_t bytes; /* entry memory, headers included */
    size_t hand;
    int64_t ttl_ms;
    struct pr_cache_stats stats;
};

void pr_cache_init(struct pr_cache *cache, size_t max_entries, size_t max_bytes, int64_t ttl_ms);
void pr_cache_destroy(struct pr_cache *cache);
void pr_cache_clear(struct pr_cache *cache);

/* Looks key up at now_ms. Returns true on a hit and sets value and value_len
 * (NULL and 0, and negative set, for a cached "not found"). The pointers are
 * valid until the next put or clear. */
bool pr_cache_get(struct pr_cache *cache, const char *key, size_t key_len, int64_t now_ms,
                  const char **value, size_t *value_len, bool *negative);
/* Stores key -> value (negative: value ignored). Replaces an existing entry. */
void pr_cache_put(struct pr_cache *cache, const char *key, size_t key_len, const char *value,
                  size_t value_len, bool negative, int64_t now_ms);

#endif
