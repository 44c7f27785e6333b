#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

struct pr_cache_entry {
    uint64_t hash;
    int64_t expires_ms;
    uint32_t key_len;
    uint32_t value_len;
    uint8_t referenced;
    uint8_t negative;
    char data[]; /* key then value */
};

static size_t pr_entry_size(size_t key_len, size_t value_len) {
    return sizeof(struct pr_cache_entry) + key_len + value_len;
}

void pr_cache_init(struct pr_cache *cache, size_t max_entries, size_t max_bytes, int64_t ttl_ms) {
    memset(cache, 0, sizeof(*cache));
    if (max_entries < 16) max_entries = 16;
    size_t capacity = 16;
    while (capacity * 35 / 100 < max_entries) capacity *= 2; /* see cache.h */
    cache->capacity = capacity;
    cache->slots = pr_calloc(capacity, sizeof(*cache->slots));
    cache->max_entries = max_entries;
    cache->max_bytes = max_bytes;
    cache->ttl_ms = ttl_ms;
}

void pr_cache_clear(struct pr_cache *cache) {
    for (size_t i = 0; i < cache->capacity; i++) {
        free(cache->slots[i]);
        cache->slots[i] = NULL;
    }
    cache->count = 0;
    cache->bytes = 0;
    cache->hand = 0;
}

void pr_cache_destroy(struct pr_cache *cache) {
    if (!cache->slots) return;
    pr_cache_clear(cache);
    free(cache->slots);
    cache->slots = NULL;
}

static size_t pr_cache_find(struct pr_cache *cache, const char *key, size_t key_len, uint64_t hash,
                            bool *found) {
    size_t mask = cache->capacity - 1;
    size_t i = hash & mask;
    for (;;) {
        cache->stats.probes++;
        struct pr_cache_entry *e = cache->slots[i];
        if (!e) {
            *found = false;
            return i;
        }
        if (e->hash == hash && e->key_len == key_len && memcmp(e->data, key, key_len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void pr_cache_remove_at(struct pr_cache *cache, size_t i) {
    size_t mask = cache->capacity - 1;
    struct pr_cache_entry *e = cache->slots[i];
    cache->bytes -= pr_entry_size(e->key_len, e->value_len);
    cache->count--;
    free(e);
    cache->slots[i] = NULL;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        cache->stats.probes++;
        struct pr_cache_entry *next = cache->slots[j];
        if (!next) return;
        size_t ideal = next->hash & mask;
        /* Move next back to i when its ideal slot is not in (i, j]. */
        bool in_between = i <= j ? (ideal > i && ideal <= j) : (ideal > i || ideal <= j);
        if (!in_between) {
            cache->slots[i] = next;
            cache->slots[j] = NULL;
            i = j;
        }
    }
}

bool pr_cache_get(struct pr_cache *cache, const char *key, size_t key_len, int64_t now_ms,
                  const char **value, size_t *value_len, bool *negative) {
    bool found;
    size_t i = pr_cache_find(cache, key, key_len, pr_hash64(key, key_len), &found);
    if (!found) {
        cache->stats.misses++;
        return false;
    }
    struct pr_cache_entry *e = cache->slots[i];
    if (e->expires_ms <= now_ms) {
        cache->stats.expired++;
        cache->stats.misses++;
        pr_cache_remove_at(cache, i);
        return false;
    }
    e->referenced = 1;
    cache->stats.hits++;
    *negative = e->negative;
    *value = e->negative ? NULL : e->data + e->key_len;
    *value_len = e->negative ? 0 : e->value_len;
    return true;
}

/* CLOCK: advance the hand; a referenced entry gets a second chance, an
 * unreferenced one is evicted. Bounded by two full sweeps. */
static void pr_cache_evict_one(struct pr_cache *cache) {
    for (size_t steps = 0; steps < 2 * cache->capacity + 1; steps++) {
        size_t i = cache->hand;
        cache->hand = (cache->hand + 1) & (cache->capacity - 1);
        struct pr_cache_entry *e = cache->slots[i];
        if (!e) continue;
        if (e->referenced) {
            e->referenced = 0;
            continue;
        }
        pr_cache_remove_at(cache, i);
        cache->stats.evictions++;
        /* The hand moves on even if the backward shift has pulled an entry
         * into slot i: that entry is looked at on the next sweep. Staying
         * at i would evict a whole probe run through one slot, shifting the
         * rest of the run each time (quadratic: at 1,000,000 entries the
         * cache slowed from 0.5 us per insert to milliseconds). */
        return;
    }
}

void pr_cache_put(struct pr_cache *cache, const char *key, size_t key_len, const char *value,
                  size_t value_len, bool negative, int64_t now_ms) {
    if (negative) value_len = 0;
    size_t size = pr_entry_size(key_len, value_len);
    if (size > cache->max_bytes) return;
    uint64_t hash = pr_hash64(key, key_len);
    bool found;
    size_t i = pr_cache_find(cache, key, key_len, hash, &found);
    if (found) pr_cache_remove_at(cache, i);
    while (cache->count > 0 &&
           (cache->count + 1 > cache->max_entries || cache->bytes + size > cache->max_bytes))
        pr_cache_evict_one(cache);
    struct pr_cache_entry *e = pr_malloc(size);
    e->hash = hash;
    e->expires_ms = now_ms + cache->ttl_ms;
    e->key_len = (uint32_t)key_len;
    e->value_len = (uint32_t)value_len;
    e->referenced = 0;
    e->negative = negative;
    memcpy(e->data, key, key_len);
    if (value_len) memcpy(e->data + key_len, value, value_len);
    i = pr_cache_find(cache, key, key_len, hash, &found);
    cache->slots[i] = e;
    cache->count++;
    cache->bytes += size;
    cache->stats.inserts++;
}
