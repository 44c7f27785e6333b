/*
 * state.c - the in-process consignee-day and address-day store (state.h).
 *
 * Layout: two chained hash tables. Entries (one per consignee-day or
 * address-day key) hold the key's running numbers; members (one per
 * declaration id counted under a key, and for address-days one per distinct
 * name) hold what was remembered for it. A member is found by hashing its
 * entry's identity with its own bytes, so a lookup is one probe whatever the
 * number of declarations under the key. Every entry is on an LRU list
 * ordered by last update: expiry and the memory bound both pop from its
 * tail, so pr_state_expire costs what it drops.
 *
 * Chained tables rather than open addressing because entries are deleted
 * all the time (TTL) and a chain unlinks without tombstones; each table
 * doubles when it holds as many items as buckets.
 */
#include "state.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

enum { PR_ENTRY_DAY = 0, PR_ENTRY_ADDRESS = 1 };
enum { PR_MEMBER_ID = 0, PR_MEMBER_NAME = 1 };

struct pr_state_entry;

struct pr_state_member {
    struct pr_state_member *bucket_next;
    struct pr_state_member *entry_next; /* the entry's members */
    struct pr_state_entry *entry;
    uint64_t hash;
    int64_t total;  /* day: the total as first counted; address: the names then */
    uint32_t overs; /* day: over count as first counted */
    uint8_t kind;   /* PR_MEMBER_ID or PR_MEMBER_NAME */
    uint32_t id_len, bill_len;
    char bytes[]; /* id (or name), then the house bill */
};

struct pr_state_entry {
    struct pr_state_entry *bucket_next;
    struct pr_state_entry *lru_prev, *lru_next; /* prev: more recent */
    struct pr_state_member *members;
    struct pr_state_member *owner; /* day: the alert owner */
    uint64_t hash;
    int64_t total; /* day: running total; address: distinct names */
    uint32_t overs;
    uint8_t kind;
    int64_t updated_ms;
    size_t bytes; /* this entry and its members */
    uint32_t key_len;
    char key[];
};

struct pr_state {
    struct pr_state_options options;
    struct pr_state_entry **entries;
    size_t entry_buckets, entry_count;
    struct pr_state_member **members;
    size_t member_buckets, member_count;
    struct pr_state_entry *lru_head, *lru_tail;
    size_t bytes; /* entries and members; tables are added in stats */
    uint64_t expired, evicted;
};

#define PR_STATE_INITIAL_BUCKETS 1024

struct pr_state *pr_state_new(const struct pr_state_options *options) {
    struct pr_state *st = pr_calloc(1, sizeof(*st));
    st->options = *options;
    if (st->options.total_cap <= 0) st->options.total_cap = INT64_MAX;
    st->entry_buckets = st->member_buckets = PR_STATE_INITIAL_BUCKETS;
    st->entries = pr_calloc(st->entry_buckets, sizeof(*st->entries));
    st->members = pr_calloc(st->member_buckets, sizeof(*st->members));
    return st;
}

void pr_state_free(struct pr_state *st) {
    if (!st) return;
    for (struct pr_state_entry *e = st->lru_head, *next; e; e = next) {
        next = e->lru_next;
        for (struct pr_state_member *m = e->members, *mn; m; m = mn) {
            mn = m->entry_next;
            free(m);
        }
        free(e);
    }
    free(st->entries);
    free(st->members);
    free(st);
}

/* ------------------------------------------------------------- hashing */

static uint64_t pr_entry_hash(uint8_t kind, struct pr_str key) {
    return pr_hash64(key.ptr, key.len) ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ULL);
}

static uint64_t pr_member_hash(const struct pr_state_entry *e, uint8_t kind, struct pr_str bytes) {
    uint64_t h = pr_hash64(bytes.ptr, bytes.len);
    h ^= e->hash + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h ^ kind;
}

static void pr_entries_grow(struct pr_state *st) {
    size_t buckets = st->entry_buckets * 2;
    struct pr_state_entry **table = pr_calloc(buckets, sizeof(*table));
    for (size_t b = 0; b < st->entry_buckets; b++)
        for (struct pr_state_entry *e = st->entries[b], *next; e; e = next) {
            next = e->bucket_next;
            size_t i = e->hash & (buckets - 1);
            e->bucket_next = table[i];
            table[i] = e;
        }
    free(st->entries);
    st->entries = table;
    st->entry_buckets = buckets;
}

static void pr_members_grow(struct pr_state *st) {
    size_t buckets = st->member_buckets * 2;
    struct pr_state_member **table = pr_calloc(buckets, sizeof(*table));
    for (size_t b = 0; b < st->member_buckets; b++)
        for (struct pr_state_member *m = st->members[b], *next; m; m = next) {
            next = m->bucket_next;
            size_t i = m->hash & (buckets - 1);
            m->bucket_next = table[i];
            table[i] = m;
        }
    free(st->members);
    st->members = table;
    st->member_buckets = buckets;
}

/* -------------------------------------------------------------- entries */

static struct pr_state_entry *pr_entry_find(const struct pr_state *st, uint8_t kind, struct pr_str key,
                                            uint64_t hash) {
    for (struct pr_state_entry *e = st->entries[hash & (st->entry_buckets - 1)]; e; e = e->bucket_next)
        if (e->hash == hash && e->kind == kind && e->key_len == key.len && memcmp(e->key, key.ptr, key.len) == 0)
            return e;
    return NULL;
}

static void pr_lru_unlink(struct pr_state *st, struct pr_state_entry *e) {
    if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
    else st->lru_head = e->lru_next;
    if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
    else st->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void pr_lru_push_head(struct pr_state *st, struct pr_state_entry *e) {
    e->lru_prev = NULL;
    e->lru_next = st->lru_head;
    if (st->lru_head) st->lru_head->lru_prev = e;
    st->lru_head = e;
    if (!st->lru_tail) st->lru_tail = e;
}

/* Marks e updated at now: it moves to the head of the LRU list. */
static void pr_entry_touch(struct pr_state *st, struct pr_state_entry *e, int64_t now_ms) {
    e->updated_ms = now_ms;
    if (st->lru_head == e) return;
    pr_lru_unlink(st, e);
    pr_lru_push_head(st, e);
}

static struct pr_state_entry *pr_entry_get(struct pr_state *st, uint8_t kind, struct pr_str key,
                                           int64_t now_ms) {
    uint64_t hash = pr_entry_hash(kind, key);
    struct pr_state_entry *e = pr_entry_find(st, kind, key, hash);
    if (e) return e;
    if (st->entry_count >= st->entry_buckets) pr_entries_grow(st);
    e = pr_calloc(1, sizeof(*e) + key.len);
    e->hash = hash;
    e->kind = kind;
    e->key_len = key.len;
    memcpy(e->key, key.ptr, key.len);
    e->updated_ms = now_ms;
    e->bytes = sizeof(*e) + key.len;
    size_t i = hash & (st->entry_buckets - 1);
    e->bucket_next = st->entries[i];
    st->entries[i] = e;
    st->entry_count++;
    st->bytes += e->bytes;
    pr_lru_push_head(st, e);
    return e;
}

static void pr_entry_drop(struct pr_state *st, struct pr_state_entry *e) {
    for (struct pr_state_member *m = e->members, *next; m; m = next) {
        next = m->entry_next;
        struct pr_state_member **link = &st->members[m->hash & (st->member_buckets - 1)];
        while (*link != m) link = &(*link)->bucket_next;
        *link = m->bucket_next;
        st->member_count--;
        free(m);
    }
    struct pr_state_entry **link = &st->entries[e->hash & (st->entry_buckets - 1)];
    while (*link != e) link = &(*link)->bucket_next;
    *link = e->bucket_next;
    pr_lru_unlink(st, e);
    st->entry_count--;
    st->bytes -= e->bytes;
    free(e);
}

/* -------------------------------------------------------------- members */

static struct pr_state_member *pr_member_find(const struct pr_state *st, const struct pr_state_entry *e,
                                              uint8_t kind, struct pr_str bytes) {
    uint64_t hash = pr_member_hash(e, kind, bytes);
    for (struct pr_state_member *m = st->members[hash & (st->member_buckets - 1)]; m; m = m->bucket_next)
        if (m->hash == hash && m->entry == e && m->kind == kind && m->id_len == bytes.len &&
            memcmp(m->bytes, bytes.ptr, bytes.len) == 0)
            return m;
    return NULL;
}

static struct pr_state_member *pr_member_add(struct pr_state *st, struct pr_state_entry *e, uint8_t kind,
                                             struct pr_str bytes, struct pr_str bill) {
    if (st->member_count >= st->member_buckets) pr_members_grow(st);
    struct pr_state_member *m = pr_calloc(1, sizeof(*m) + bytes.len + bill.len);
    m->entry = e;
    m->kind = kind;
    m->hash = pr_member_hash(e, kind, bytes);
    m->id_len = bytes.len;
    m->bill_len = bill.len;
    memcpy(m->bytes, bytes.ptr, bytes.len);
    if (bill.len) memcpy(m->bytes + bytes.len, bill.ptr, bill.len);
    size_t i = m->hash & (st->member_buckets - 1);
    m->bucket_next = st->members[i];
    st->members[i] = m;
    m->entry_next = e->members;
    e->members = m;
    st->member_count++;
    size_t size = sizeof(*m) + bytes.len + bill.len;
    e->bytes += size;
    st->bytes += size;
    return m;
}

/* ---------------------------------------------------------- consignee-day */

static void pr_day_result(const struct pr_state_entry *e, const struct pr_state_member *m, bool first,
                          struct pr_state_day *out) {
    out->total = m->total;
    out->overs = m->overs;
    out->first = first;
    out->crossing = e->owner == m;
}

void pr_state_day_count(struct pr_state *st, struct pr_str key, struct pr_str id, int64_t value, bool over,
                        bool candidate, int64_t threshold, struct pr_str house_bill, int64_t now_ms,
                        struct pr_state_day *out) {
    struct pr_state_entry *e = pr_entry_get(st, PR_ENTRY_DAY, key, now_ms);
    struct pr_state_member *m = pr_member_find(st, e, PR_MEMBER_ID, id);
    bool first = m == NULL;
    if (first) {
        if (value < 0) value = 0;
        int64_t cap = st->options.total_cap;
        e->total = value > cap - e->total ? cap : e->total + value;
        if (over) e->overs++;
        m = pr_member_add(st, e, PR_MEMBER_ID, id, house_bill);
        m->total = e->total;
        m->overs = e->overs;
    }
    /* As the script: the owner is judged on every call, a replay included,
     * with the numbers as first counted. */
    bool wrote = first;
    if (candidate && m->total > threshold && !e->owner) {
        e->owner = m;
        wrote = true;
    }
    if (wrote) pr_entry_touch(st, e, now_ms);
    pr_day_result(e, m, first, out);
}

bool pr_state_day_lookup(const struct pr_state *st, struct pr_str key, struct pr_str id,
                         struct pr_state_day *out) {
    const struct pr_state_entry *e = pr_entry_find(st, PR_ENTRY_DAY, key, pr_entry_hash(PR_ENTRY_DAY, key));
    if (!e) return false;
    const struct pr_state_member *m = pr_member_find(st, e, PR_MEMBER_ID, id);
    if (!m) return false;
    pr_day_result(e, m, false, out);
    return true;
}

static int pr_bill_cmp(const void *a, const void *b) {
    const struct pr_state_member *ma = *(const struct pr_state_member *const *)a;
    const struct pr_state_member *mb = *(const struct pr_state_member *const *)b;
    uint32_t n = ma->bill_len < mb->bill_len ? ma->bill_len : mb->bill_len;
    int c = memcmp(ma->bytes + ma->id_len, mb->bytes + mb->id_len, n);
    if (c) return c;
    return ma->bill_len < mb->bill_len ? -1 : ma->bill_len > mb->bill_len;
}

void pr_state_day_house_bills(const struct pr_state *st, struct pr_str key, struct pr_buf *out) {
    const struct pr_state_entry *e = pr_entry_find(st, PR_ENTRY_DAY, key, pr_entry_hash(PR_ENTRY_DAY, key));
    if (!e) return;
    size_t n = 0;
    for (const struct pr_state_member *m = e->members; m; m = m->entry_next) n++;
    const struct pr_state_member **list = pr_malloc((n ? n : 1) * sizeof(*list));
    n = 0;
    for (const struct pr_state_member *m = e->members; m; m = m->entry_next) list[n++] = m;
    qsort(list, n, sizeof(*list), pr_bill_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i) pr_buf_append(out, ",", 1);
        pr_buf_append(out, list[i]->bytes + list[i]->id_len, list[i]->bill_len);
    }
    free(list);
}

/* ----------------------------------------------------------- address-day */

int32_t pr_state_address_count(struct pr_state *st, struct pr_str key, struct pr_str id, struct pr_str name,
                               int64_t now_ms) {
    struct pr_state_entry *e = pr_entry_get(st, PR_ENTRY_ADDRESS, key, now_ms);
    struct pr_state_member *m = pr_member_find(st, e, PR_MEMBER_ID, id);
    if (m) return (int32_t)m->total;
    if (!pr_member_find(st, e, PR_MEMBER_NAME, name)) {
        pr_member_add(st, e, PR_MEMBER_NAME, name, (struct pr_str){NULL, 0});
        e->total++;
    }
    m = pr_member_add(st, e, PR_MEMBER_ID, id, (struct pr_str){NULL, 0});
    m->total = e->total;
    pr_entry_touch(st, e, now_ms);
    return (int32_t)m->total;
}

/* ---------------------------------------------------------------- expiry */

static size_t pr_state_table_bytes(const struct pr_state *st) {
    return sizeof(*st) + st->entry_buckets * sizeof(*st->entries) + st->member_buckets * sizeof(*st->members);
}

size_t pr_state_expire(struct pr_state *st, int64_t now_ms) {
    size_t dropped = 0;
    int64_t ttl = st->options.ttl_ms;
    /* The LRU tail is the least recently updated entry. The caller's clock
     * may step back a little (records merged from several partitions), so
     * the walk stops at the first entry still alive. */
    while (ttl > 0 && st->lru_tail && now_ms - st->lru_tail->updated_ms >= ttl) {
        pr_entry_drop(st, st->lru_tail);
        st->expired++;
        dropped++;
    }
    size_t max = st->options.max_bytes;
    while (max > 0 && st->lru_tail && st->bytes + pr_state_table_bytes(st) > max) {
        pr_entry_drop(st, st->lru_tail);
        st->evicted++;
        dropped++;
    }
    return dropped;
}

void pr_state_get_stats(const struct pr_state *st, struct pr_state_stats *out) {
    out->keys = st->entry_count;
    out->members = st->member_count;
    out->bytes = st->bytes + pr_state_table_bytes(st);
    out->expired = st->expired;
    out->evicted = st->evicted;
}
