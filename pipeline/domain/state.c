/*
 * state.c - the in-process consignee-day and address-day store (state.h).
 *
 * Layout: entries (one per consignee-day or address-day key) hold the
 * key's running numbers; members (one per declaration id counted under a
 * key, and for address-days one per distinct name) hold what was
 * remembered for it and hang off their entry. Entries are found through one
 * open-addressing table of (hash, pointer) slots, linear probing, at most
 * half full, with backward-shift deletion (no tombstones, although entries
 * are deleted all the time by TTL): a miss, the common case for a new
 * consignee-day, costs one cache line. Members are found by a walk of their
 * entry's list while it is short (most consignee-days hold one or two
 * declarations), and through a small per-entry index of the same kind once
 * it holds more than PR_STATE_LIST_MAX. Every entry is on an LRU list
 * ordered by last update: expiry and the memory bound both pop from its
 * tail, so pr_state_expire costs what it drops.
 */
#include "state.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

enum { PR_ENTRY_DAY = 0, PR_ENTRY_ADDRESS = 1 };
enum { PR_MEMBER_ID = 0, PR_MEMBER_NAME = 1 };

/* Members of an entry walked as a list up to this many; an index beyond. */
#define PR_STATE_LIST_MAX 8

struct pr_state_member {
    struct pr_state_member *next; /* the entry's members, newest first */
    uint64_t hash;
    int64_t total;  /* day: the total as first counted; address: the names then */
    uint32_t overs; /* day: over count as first counted */
    uint32_t id_len;
    uint32_t bill_len;
    uint8_t kind; /* PR_MEMBER_ID or PR_MEMBER_NAME */
    char bytes[]; /* id (or name), then the house bill */
};

struct pr_state_slot {
    uint64_t hash; /* 0: empty */
    void *item;
};

/* Open addressing, linear probing, at most half full. */
struct pr_state_table {
    struct pr_state_slot *slots;
    size_t cap, count;
};

struct pr_state_entry {
    struct pr_state_entry *lru_prev, *lru_next; /* prev: more recent */
    struct pr_state_member *members;
    struct pr_state_member *owner; /* day: the alert owner */
    struct pr_state_table *index;  /* members, once more than PR_STATE_LIST_MAX */
    uint64_t hash;
    int64_t total; /* day: running total; address: distinct names */
    int64_t updated_ms;
    size_t bytes; /* this entry and its members */
    uint32_t overs;
    uint32_t member_count;
    uint32_t key_len;
    uint8_t kind;
    char key[];
};

struct pr_state {
    struct pr_state_options options;
    struct pr_state_table entries;
    size_t member_count;
    struct pr_state_entry *lru_head, *lru_tail;
    size_t bytes; /* entries, members and member indexes */
    uint64_t expired, evicted;
};

#define PR_STATE_INITIAL_SLOTS 1024

/* ---------------------------------------------------------------- tables */

static uint64_t pr_state_nonzero(uint64_t h) {
    return h ? h : 0x9e3779b97f4a7c15ULL;
}

static void pr_table_init(struct pr_state_table *t, size_t cap) {
    t->cap = cap;
    t->count = 0;
    t->slots = pr_calloc(cap, sizeof(*t->slots));
}

static void pr_table_put(struct pr_state_table *t, uint64_t hash, void *item);

static void pr_table_grow(struct pr_state_table *t) {
    struct pr_state_slot *old = t->slots;
    size_t old_cap = t->cap;
    pr_table_init(t, old_cap * 2);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].hash) pr_table_put(t, old[i].hash, old[i].item);
    free(old);
}

static void pr_table_put(struct pr_state_table *t, uint64_t hash, void *item) {
    if ((t->count + 1) * 2 > t->cap) pr_table_grow(t);
    size_t mask = t->cap - 1, i = hash & mask;
    while (t->slots[i].hash) i = (i + 1) & mask;
    t->slots[i] = (struct pr_state_slot){hash, item};
    t->count++;
}

/* Removes item (which is in t) and shifts back the run after it, so that
 * every remaining item stays reachable from its home slot. */
static void pr_table_remove(struct pr_state_table *t, uint64_t hash, const void *item) {
    size_t mask = t->cap - 1, i = hash & mask;
    while (t->slots[i].item != item) i = (i + 1) & mask;
    size_t hole = i;
    for (size_t j = (hole + 1) & mask; t->slots[j].hash; j = (j + 1) & mask) {
        size_t home = t->slots[j].hash & mask;
        /* j's item may fill the hole when its home is not in (hole, j]. */
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole] = (struct pr_state_slot){0, NULL};
    t->count--;
}

static size_t pr_table_bytes(const struct pr_state_table *t) {
    return t->cap * sizeof(*t->slots);
}

/* ------------------------------------------------------------- lifetime */

struct pr_state *pr_state_new(const struct pr_state_options *options) {
    struct pr_state *st = pr_calloc(1, sizeof(*st));
    st->options = *options;
    if (st->options.total_cap <= 0) st->options.total_cap = INT64_MAX;
    pr_table_init(&st->entries, PR_STATE_INITIAL_SLOTS);
    return st;
}

static void pr_entry_free(struct pr_state_entry *e) {
    for (struct pr_state_member *m = e->members, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    if (e->index) {
        free(e->index->slots);
        free(e->index);
    }
    free(e);
}

void pr_state_free(struct pr_state *st) {
    if (!st) return;
    for (struct pr_state_entry *e = st->lru_head, *next; e; e = next) {
        next = e->lru_next;
        pr_entry_free(e);
    }
    free(st->entries.slots);
    free(st);
}

/* -------------------------------------------------------------- entries */

static uint64_t pr_entry_hash(uint8_t kind, struct pr_str key) {
    return pr_state_nonzero(pr_hash64(key.ptr, key.len) ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ULL));
}

static struct pr_state_entry *pr_entry_find(const struct pr_state *st, uint8_t kind,
                                            struct pr_str key, uint64_t hash) {
    const struct pr_state_table *t = &st->entries;
    size_t mask = t->cap - 1;
    for (size_t i = hash & mask; t->slots[i].hash; i = (i + 1) & mask) {
        if (t->slots[i].hash != hash) continue;
        struct pr_state_entry *e = t->slots[i].item;
        if (e->kind == kind && e->key_len == key.len && memcmp(e->key, key.ptr, key.len) == 0)
            return e;
    }
    return NULL;
}

static void pr_lru_unlink(struct pr_state *st, struct pr_state_entry *e) {
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        st->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        st->lru_tail = e->lru_prev;
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
    e = pr_calloc(1, sizeof(*e) + key.len);
    e->hash = hash;
    e->kind = kind;
    e->key_len = key.len;
    memcpy(e->key, key.ptr, key.len);
    e->updated_ms = now_ms;
    e->bytes = sizeof(*e) + key.len;
    size_t before = pr_table_bytes(&st->entries);
    pr_table_put(&st->entries, hash, e);
    st->bytes += e->bytes + pr_table_bytes(&st->entries) - before;
    pr_lru_push_head(st, e);
    return e;
}

static void pr_entry_drop(struct pr_state *st, struct pr_state_entry *e) {
    pr_table_remove(&st->entries, e->hash, e);
    pr_lru_unlink(st, e);
    st->member_count -= e->member_count;
    st->bytes -= e->bytes;
    pr_entry_free(e);
}

/* -------------------------------------------------------------- members */

static uint64_t pr_member_hash(uint8_t kind, struct pr_str bytes) {
    return pr_state_nonzero(pr_hash64(bytes.ptr, bytes.len) + kind);
}

static bool pr_member_is(const struct pr_state_member *m, uint64_t hash, uint8_t kind,
                         struct pr_str bytes) {
    return m->hash == hash && m->kind == kind && m->id_len == bytes.len &&
           memcmp(m->bytes, bytes.ptr, bytes.len) == 0;
}

static struct pr_state_member *pr_member_find(const struct pr_state_entry *e, uint8_t kind,
                                              struct pr_str bytes) {
    if (!e->members) return NULL;
    uint64_t hash = pr_member_hash(kind, bytes);
    if (!e->index) {
        for (struct pr_state_member *m = e->members; m; m = m->next)
            if (pr_member_is(m, hash, kind, bytes)) return m;
        return NULL;
    }
    const struct pr_state_table *t = e->index;
    size_t mask = t->cap - 1;
    for (size_t i = hash & mask; t->slots[i].hash; i = (i + 1) & mask) {
        struct pr_state_member *m = t->slots[i].item;
        if (t->slots[i].hash == hash && pr_member_is(m, hash, kind, bytes)) return m;
    }
    return NULL;
}

static struct pr_state_member *pr_member_add(struct pr_state *st, struct pr_state_entry *e,
                                             uint8_t kind, struct pr_str bytes,
                                             struct pr_str bill) {
    struct pr_state_member *m = pr_calloc(1, sizeof(*m) + bytes.len + bill.len);
    m->kind = kind;
    m->hash = pr_member_hash(kind, bytes);
    m->id_len = bytes.len;
    m->bill_len = bill.len;
    memcpy(m->bytes, bytes.ptr, bytes.len);
    if (bill.len) memcpy(m->bytes + bytes.len, bill.ptr, bill.len);
    m->next = e->members;
    e->members = m;
    e->member_count++;
    st->member_count++;
    size_t size = sizeof(*m) + bytes.len + bill.len;
    size_t index_before = e->index ? sizeof(*e->index) + pr_table_bytes(e->index) : 0;
    if (e->index) {
        pr_table_put(e->index, m->hash, m);
    } else if (e->member_count > PR_STATE_LIST_MAX) {
        e->index = pr_malloc(sizeof(*e->index));
        pr_table_init(e->index, 4 * PR_STATE_LIST_MAX);
        for (struct pr_state_member *x = e->members; x; x = x->next)
            pr_table_put(e->index, x->hash, x);
    }
    size_t index_after = e->index ? sizeof(*e->index) + pr_table_bytes(e->index) : 0;
    size += index_after - index_before;
    e->bytes += size;
    st->bytes += size;
    return m;
}

/* ---------------------------------------------------------- consignee-day */

static void pr_day_result(const struct pr_state_entry *e, const struct pr_state_member *m,
                          bool first, struct pr_state_day *out) {
    out->total = m->total;
    out->overs = m->overs;
    out->first = first;
    out->crossing = e->owner == m;
}

void pr_state_day_count(struct pr_state *st, struct pr_str key, struct pr_str id, int64_t value,
                        bool over, bool candidate, int64_t threshold, struct pr_str house_bill,
                        int64_t now_ms, struct pr_state_day *out) {
    struct pr_state_entry *e = pr_entry_get(st, PR_ENTRY_DAY, key, now_ms);
    struct pr_state_member *m = pr_member_find(e, PR_MEMBER_ID, id);
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
    const struct pr_state_entry *e =
        pr_entry_find(st, PR_ENTRY_DAY, key, pr_entry_hash(PR_ENTRY_DAY, key));
    if (!e) return false;
    const struct pr_state_member *m = pr_member_find(e, PR_MEMBER_ID, id);
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
    const struct pr_state_entry *e =
        pr_entry_find(st, PR_ENTRY_DAY, key, pr_entry_hash(PR_ENTRY_DAY, key));
    if (!e) return;
    size_t n = e->member_count;
    const struct pr_state_member **list = pr_malloc((n ? n : 1) * sizeof(*list));
    n = 0;
    for (const struct pr_state_member *m = e->members; m; m = m->next)
        if (m->kind == PR_MEMBER_ID) list[n++] = m;
    qsort(list, n, sizeof(*list), pr_bill_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i) pr_buf_append(out, ",", 1);
        pr_buf_append(out, list[i]->bytes + list[i]->id_len, list[i]->bill_len);
    }
    free(list);
}

/* ----------------------------------------------------------- address-day */

int32_t pr_state_address_count(struct pr_state *st, struct pr_str key, struct pr_str id,
                               struct pr_str name, int64_t now_ms) {
    struct pr_state_entry *e = pr_entry_get(st, PR_ENTRY_ADDRESS, key, now_ms);
    struct pr_state_member *m = pr_member_find(e, PR_MEMBER_ID, id);
    if (m) return (int32_t)m->total;
    if (!pr_member_find(e, PR_MEMBER_NAME, name)) {
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
    return sizeof(*st);
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
    out->keys = st->entries.count;
    out->members = st->member_count;
    out->bytes = st->bytes + pr_state_table_bytes(st);
    out->expired = st->expired;
    out->evicted = st->evicted;
}
