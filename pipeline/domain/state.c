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
 *
 * The changelog (state.h) is written from here too: each call that changes
 * a member reports that member's record to the journal, when one is set (a
 * single predictable branch otherwise), encoded into two buffers the store
 * keeps, so the hot path allocates nothing in the steady state.
 * pr_state_restore parses a record whole before it touches the store, and
 * applies it with the same entry and member functions the counts use.
 *
 * An address-day keeps its distinct names as members in memory, but since
 * format version 2 they have no records of their own: the id record that
 * first counts a name carries it (every id record carries its name), and a
 * restore rebuilds the names from the id records. A name member restored
 * from a version-1 name record (a changelog written before) is marked, so
 * that its key still gets its tombstone when the entry goes.
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
    uint8_t kind;        /* PR_MEMBER_ID or PR_MEMBER_NAME */
    uint8_t name_record; /* a name with a record of its own (version 1): tombstoned */
    char bytes[];        /* id (or name), then the house bill */
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
    struct pr_state_journal journal;        /* write NULL: none */
    struct pr_buf record_key, record_value; /* the record being reported */
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
    pr_buf_init(&st->record_key);
    pr_buf_init(&st->record_value);
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
    pr_buf_free(&st->record_key);
    pr_buf_free(&st->record_value);
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

/* ------------------------------------------------------ journal (write) */

/* Record kinds: the first byte of a changelog key. */
enum { PR_RECORD_DAY_ID = 1, PR_RECORD_ADDRESS_ID = 2, PR_RECORD_ADDRESS_NAME = 3 };
#define PR_RECORD_VERSION 2   /* what is written: address-day id records carry the name */
#define PR_RECORD_VERSION_1 1 /* still read: separate name records, ids without names */
#define PR_RECORD_OWNER 0x01  /* day id flags: the day's alert owner */

static uint8_t pr_record_kind(const struct pr_state_entry *e, const struct pr_state_member *m) {
    if (e->kind == PR_ENTRY_DAY) return PR_RECORD_DAY_ID;
    return m->kind == PR_MEMBER_ID ? PR_RECORD_ADDRESS_ID : PR_RECORD_ADDRESS_NAME;
}

/* LEB128 into b, whose room the caller reserved (10 bytes at most). */
static void pr_record_put_varint(struct pr_buf *b, uint64_t v) {
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
}

static uint64_t pr_zigzag(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static void pr_record_put(struct pr_buf *b, const void *bytes, size_t len) {
    if (len) memcpy(b->data + b->len, bytes, len);
    b->len += len;
}

static struct pr_str pr_record_str(const struct pr_buf *b) {
    return (struct pr_str){(const char *)b->data, (uint32_t)b->len};
}

/* The changelog key of member m of entry e, into st->record_key. */
static void pr_record_key(struct pr_state *st, const struct pr_state_entry *e,
                          const struct pr_state_member *m) {
    struct pr_buf *k = &st->record_key;
    k->len = 0;
    pr_buf_reserve(k, 1 + 10 + (size_t)e->key_len + m->id_len);
    k->data[k->len++] = pr_record_kind(e, m);
    pr_record_put_varint(k, e->key_len);
    pr_record_put(k, e->key, e->key_len);
    pr_record_put(k, m->bytes, m->id_len);
}

/* Reports id member m of entry e as it stands, updated at now_ms; name is
 * the name an address-day id was counted with (unused for a day). */
static __attribute__((noinline)) void pr_journal_member(struct pr_state *st,
                                                        const struct pr_state_entry *e,
                                                        const struct pr_state_member *m,
                                                        struct pr_str name, int64_t now_ms) {
    pr_record_key(st, e, m);
    struct pr_buf *v = &st->record_value;
    v->len = 0;
    pr_buf_reserve(v, 2 + 3 * 10 + (size_t)m->bill_len + name.len);
    v->data[v->len++] = PR_RECORD_VERSION;
    switch (pr_record_kind(e, m)) {
    case PR_RECORD_DAY_ID:
        v->data[v->len++] = e->owner == m ? PR_RECORD_OWNER : 0;
        pr_record_put_varint(v, (uint64_t)m->total);
        pr_record_put_varint(v, m->overs);
        pr_record_put_varint(v, pr_zigzag(now_ms));
        pr_record_put(v, m->bytes + m->id_len, m->bill_len);
        break;
    default: /* PR_RECORD_ADDRESS_ID (names have no records of their own) */
        pr_record_put_varint(v, (uint64_t)m->total);
        pr_record_put_varint(v, pr_zigzag(now_ms));
        pr_record_put(v, name.ptr, name.len);
        break;
    }
    st->journal.write(st->journal.ctx, pr_record_str(&st->record_key), pr_record_str(v));
}

/* Reports a tombstone for every member of e that has a record (e is about
 * to be dropped): every id, and the names restored from version-1 name
 * records. */
static void pr_journal_tombstones(struct pr_state *st, const struct pr_state_entry *e) {
    for (const struct pr_state_member *m = e->members; m; m = m->next) {
        if (m->kind == PR_MEMBER_NAME && !m->name_record) continue;
        pr_record_key(st, e, m);
        st->journal.write(st->journal.ctx, pr_record_str(&st->record_key),
                          (struct pr_str){NULL, 0});
    }
}

void pr_state_set_journal(struct pr_state *st, const struct pr_state_journal *journal) {
    if (journal && journal->write)
        st->journal = *journal;
    else
        st->journal = (struct pr_state_journal){NULL, NULL};
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
    if (wrote) {
        pr_entry_touch(st, e, now_ms);
        if (st->journal.write) pr_journal_member(st, e, m, (struct pr_str){NULL, 0}, now_ms);
    }
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
    if (st->journal.write) pr_journal_member(st, e, m, name, now_ms); /* the id carries the name */
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
        if (st->journal.write) pr_journal_tombstones(st, st->lru_tail);
        pr_entry_drop(st, st->lru_tail);
        st->expired++;
        dropped++;
    }
    size_t max = st->options.max_bytes;
    while (max > 0 && st->lru_tail && st->bytes + pr_state_table_bytes(st) > max) {
        if (st->journal.write) pr_journal_tombstones(st, st->lru_tail);
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

/* -------------------------------------------------------- journal (read) */

struct pr_record_reader {
    const uint8_t *p, *end;
};

static bool pr_record_get_byte(struct pr_record_reader *r, uint8_t *out) {
    if (r->p == r->end) return false;
    *out = *r->p++;
    return true;
}

/* LEB128 of at most 10 bytes whose value fits 64 bits. */
static bool pr_record_get_varint(struct pr_record_reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (!pr_record_get_byte(r, &b)) return false;
        if (shift == 63 && b > 1) return false; /* past 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool pr_record_get_time(struct pr_record_reader *r, int64_t *out) {
    uint64_t z;
    if (!pr_record_get_varint(r, &z)) return false;
    *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return true;
}

/* One changelog record, parsed; the strings point into the record. */
struct pr_record {
    uint8_t kind, version;
    bool tombstone, owner;
    bool has_name; /* an address-day id of version 2: name is its name */
    struct pr_str key, member, bill, name;
    int64_t total, now_ms;
    uint32_t overs;
};

static bool pr_record_parse_key(struct pr_str key, struct pr_record *out) {
    struct pr_record_reader r = {(const uint8_t *)key.ptr, (const uint8_t *)key.ptr + key.len};
    uint64_t key_len;
    if (!key.ptr || !pr_record_get_byte(&r, &out->kind)) return false;
    if (out->kind < PR_RECORD_DAY_ID || out->kind > PR_RECORD_ADDRESS_NAME) return false;
    if (!pr_record_get_varint(&r, &key_len) || key_len > (uint64_t)(r.end - r.p)) return false;
    out->key = (struct pr_str){(const char *)r.p, (uint32_t)key_len};
    r.p += key_len;
    out->member = (struct pr_str){(const char *)r.p, (uint32_t)(r.end - r.p)};
    return true;
}

static bool pr_record_parse_value(struct pr_str value, struct pr_record *out) {
    struct pr_record_reader r = {(const uint8_t *)value.ptr,
                                 (const uint8_t *)value.ptr + value.len};
    uint8_t version, flags = 0;
    uint64_t total = 0, overs = 0;
    if (!pr_record_get_byte(&r, &version)) return false;
    if (version != PR_RECORD_VERSION && version != PR_RECORD_VERSION_1) return false;
    /* Version 2 has no name records: an address-day id carries its name. */
    if (version == PR_RECORD_VERSION && out->kind == PR_RECORD_ADDRESS_NAME) return false;
    out->version = version;
    switch (out->kind) {
    case PR_RECORD_DAY_ID:
        if (!pr_record_get_byte(&r, &flags) || (flags & ~PR_RECORD_OWNER)) return false;
        if (!pr_record_get_varint(&r, &total) || total > INT64_MAX) return false;
        if (!pr_record_get_varint(&r, &overs) || overs > UINT32_MAX) return false;
        if (!pr_record_get_time(&r, &out->now_ms)) return false;
        out->bill = (struct pr_str){(const char *)r.p, (uint32_t)(r.end - r.p)};
        r.p = r.end;
        break;
    case PR_RECORD_ADDRESS_ID:
        if (!pr_record_get_varint(&r, &total) || total > INT32_MAX) return false;
        if (!pr_record_get_time(&r, &out->now_ms)) return false;
        if (version == PR_RECORD_VERSION) { /* the name: the rest, maybe empty */
            if (total < 1) return false;    /* its own name counts */
            out->has_name = true;
            out->name = (struct pr_str){(const char *)r.p, (uint32_t)(r.end - r.p)};
            r.p = r.end;
        }
        break;
    default: /* PR_RECORD_ADDRESS_NAME */
        if (!pr_record_get_time(&r, &out->now_ms)) return false;
        break;
    }
    out->owner = flags & PR_RECORD_OWNER;
    out->total = (int64_t)total;
    out->overs = (uint32_t)overs;
    return r.p == r.end; /* nothing after the last field */
}

/* Applies a parsed record. A member seen again (its last record wins: the
 * owner bit) keeps the house bill it was first restored with; a valid log
 * never changes a member's bill.
 *
 * An address-day's names: a version-2 id record adds its name when the
 * entry does not hold it yet, before the id (the order the count added
 * them in), so the entry's distinct count is the number of distinct names
 * of its surviving id records. That is the original's: an id record is
 * written once per incarnation and never rewritten, and a tombstone drops
 * the whole entry, so every id record of the incarnation survives
 * compaction, and every name of the entry was counted with one of them. A
 * version-1 name record adds its name, marked as having a record. */
static void pr_record_apply(struct pr_state *st, const struct pr_record *rec) {
    uint8_t entry_kind = rec->kind == PR_RECORD_DAY_ID ? PR_ENTRY_DAY : PR_ENTRY_ADDRESS;
    if (rec->tombstone) {
        struct pr_state_entry *e =
            pr_entry_find(st, entry_kind, rec->key, pr_entry_hash(entry_kind, rec->key));
        if (e) pr_entry_drop(st, e);
        return;
    }
    uint8_t member_kind = rec->kind == PR_RECORD_ADDRESS_NAME ? PR_MEMBER_NAME : PR_MEMBER_ID;
    struct pr_state_entry *e = pr_entry_get(st, entry_kind, rec->key, rec->now_ms);
    struct pr_state_member *m = pr_member_find(e, member_kind, rec->member);
    switch (rec->kind) {
    case PR_RECORD_DAY_ID:
        if (!m) m = pr_member_add(st, e, PR_MEMBER_ID, rec->member, rec->bill);
        m->total = rec->total;
        m->overs = rec->overs;
        if (rec->total > e->total) e->total = rec->total;
        if (rec->overs > e->overs) e->overs = rec->overs;
        if (rec->owner)
            e->owner = m;
        else if (e->owner == m)
            e->owner = NULL;
        break;
    case PR_RECORD_ADDRESS_ID:
        if (rec->has_name && !pr_member_find(e, PR_MEMBER_NAME, rec->name)) {
            pr_member_add(st, e, PR_MEMBER_NAME, rec->name, (struct pr_str){NULL, 0});
            e->total++;
        }
        if (!m) m = pr_member_add(st, e, PR_MEMBER_ID, rec->member, (struct pr_str){NULL, 0});
        m->total = rec->total;
        break;
    default: /* PR_RECORD_ADDRESS_NAME, version 1 */
        if (!m) {
            m = pr_member_add(st, e, PR_MEMBER_NAME, rec->member, (struct pr_str){NULL, 0});
            e->total++;
        }
        m->name_record = 1;
        break;
    }
    pr_entry_touch(st, e, rec->now_ms);
}

int pr_state_restore(struct pr_state *st, struct pr_str key, struct pr_str value) {
    struct pr_record rec = {0};
    if (!pr_record_parse_key(key, &rec)) return -1;
    rec.tombstone = value.ptr == NULL;
    if (!rec.tombstone && !pr_record_parse_value(value, &rec)) return -1;
    pr_record_apply(st, &rec);
    return 0;
}
