/* Unit tests: the in-process one-person-one-day state (pipeline/domain/state.c),
 * against the semantics of DOMAIN.md section 8 that the aggregate
 * operator's Redis script keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"
#include "state.h"

static struct pr_str S(const char *s) {
    return (struct pr_str){s, (uint32_t)strlen(s)};
}

#define THR 80000 /* $800 */

static struct pr_state_day
day_count(struct pr_state *st, const char *key, const char *id, int64_t value, int64_t now) {
    struct pr_state_day out;
    bool over = value > THR;
    pr_state_day_count(st, S(key), S(id), value, over, !over, THR, S(id), now, &out);
    return out;
}

/* Each id counted once; a replay gets the total as it stood then. */
static void test_day_counts_once_and_replays(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 1000};
    struct pr_state *st = pr_state_new(&o);
    struct pr_state_day r = day_count(st, "c1:2025-05-01", "D1", 30000, 0);
    assert_true(r.first);
    assert_int_equal(r.total, 30000);
    assert_false(r.crossing);
    r = day_count(st, "c1:2025-05-01", "D2", 40000, 1);
    assert_int_equal(r.total, 70000);
    r = day_count(st, "c1:2025-05-01", "D3", 20000, 2); /* 90000 > 80000: crosses, owns the alert */
    assert_int_equal(r.total, 90000);
    assert_true(r.crossing);
    assert_int_equal(r.overs, 0);
    r = day_count(st, "c1:2025-05-01", "D4", 10000, 3); /* above too, but not the owner */
    assert_int_equal(r.total, 100000);
    assert_false(r.crossing);
    /* Replays: same numbers, nothing added, the owner stays the owner. */
    r = day_count(st, "c1:2025-05-01", "D2", 40000, 4);
    assert_false(r.first);
    assert_int_equal(r.total, 70000);
    r = day_count(st, "c1:2025-05-01", "D3", 999999, 5); /* a different value changes nothing */
    assert_int_equal(r.total, 90000);
    assert_true(r.crossing);
    assert_true(pr_state_day_lookup(st, S("c1:2025-05-01"), S("D4"), &r));
    assert_int_equal(r.total, 100000);
    assert_false(pr_state_day_lookup(st, S("c1:2025-05-01"), S("D9"), &r));
    assert_false(pr_state_day_lookup(st, S("c1:2025-05-02"), S("D1"), &r));
    /* Another day and another consignee are other keys. */
    r = day_count(st, "c1:2025-05-02", "D5", 30000, 6);
    assert_int_equal(r.total, 30000);
    r = day_count(st, "c2:2025-05-01", "D6", 30000, 6);
    assert_int_equal(r.total, 30000);
    struct pr_buf bills;
    pr_buf_init(&bills);
    pr_state_day_house_bills(st, S("c1:2025-05-01"), &bills);
    assert_int_equal(bills.len, strlen("D1,D2,D3,D4"));
    assert_memory_equal(bills.data, "D1,D2,D3,D4", bills.len);
    pr_buf_free(&bills);
    pr_state_free(st);
}

/* Over count as it stood; negative values count 0; totals saturate. */
static void test_day_overs_negative_saturation(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 0, .total_cap = 1000000};
    struct pr_state *st = pr_state_new(&o);
    struct pr_state_day r = day_count(st, "k", "A", 90000, 0); /* over by itself */
    assert_int_equal(r.overs, 1);
    assert_false(r.crossing); /* not a candidate */
    r = day_count(st, "k", "B", -500, 0);
    assert_int_equal(r.total, 90000);
    assert_int_equal(r.overs, 1);
    assert_true(r.crossing); /* within, and the day above: owner */
    r = day_count(st, "k", "C", 999999999, 0);
    assert_int_equal(r.total, 1000000);
    assert_int_equal(r.overs, 2);
    r = day_count(st, "k", "D", 5, 0);
    assert_int_equal(r.total, 1000000);
    /* INT64 values near the top do not overflow without a cap either. */
    struct pr_state_options o2 = {0};
    struct pr_state *st2 = pr_state_new(&o2);
    pr_state_day_count(st2, S("k"), S("A"), INT64_MAX - 1, true, false, THR, S("h"), 0, &r);
    pr_state_day_count(st2, S("k"), S("B"), INT64_MAX - 1, true, false, THR, S("h"), 0, &r);
    assert_true(r.total == INT64_MAX);
    pr_state_free(st2);
    pr_state_free(st);
}

/* Distinct names per address-day, remembered per id. */
static void test_address_names(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 1000};
    struct pr_state *st = pr_state_new(&o);
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("1"), S("n1"), 0), 1);
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("2"), S("n1"), 0), 1); /* same name */
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("3"), S("n2"), 0), 2);
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("4"), S("n3"), 0), 3);
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("2"), S("n9"), 0), 1); /* replay */
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("5"), S("n2"), 0), 3);
    /* The same bytes as an id and as a name are different things. */
    assert_int_equal(pr_state_address_count(st, S("a:d"), S("n4"), S("1"), 0), 4);
    /* A day-key of the same text is another table. */
    struct pr_state_day r;
    assert_false(pr_state_day_lookup(st, S("a:d"), S("1"), &r));
    pr_state_free(st);
}

/* TTL from the last update on the caller's clock; a replay does not extend
 * it; max_bytes evicts the least recently updated. */
static void test_ttl_and_bounds(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 100};
    struct pr_state *st = pr_state_new(&o);
    day_count(st, "old", "A", 100, 0);
    day_count(st, "new", "B", 100, 50);
    day_count(st, "old", "A", 100, 90); /* replay: no update */
    assert_int_equal(pr_state_expire(st, 99), 0);
    assert_int_equal(pr_state_expire(st, 100), 1); /* "old" updated at 0 */
    struct pr_state_day r;
    assert_false(pr_state_day_lookup(st, S("old"), S("A"), &r));
    assert_true(pr_state_day_lookup(st, S("new"), S("B"), &r));
    r = day_count(st, "old", "A", 100, 120); /* counted afresh after expiry */
    assert_true(r.first);
    struct pr_state_stats s;
    pr_state_get_stats(st, &s);
    assert_int_equal(s.keys, 2);
    assert_int_equal(s.members, 2);
    assert_int_equal(s.expired, 1);
    pr_state_free(st);

    /* Memory bound: 20,000 keys into a 1 MiB store. */
    struct pr_state_options b = {.ttl_ms = 0, .max_bytes = 1 << 20};
    st = pr_state_new(&b);
    char key[32], id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(id, sizeof(id), "id%d", i);
        day_count(st, key, id, 1, i);
        pr_state_expire(st, i);
    }
    pr_state_get_stats(st, &s);
    assert_true(s.bytes <= (size_t)1 << 20);
    assert_true(s.evicted > 0);
    assert_int_equal(s.keys + s.evicted, 20000);
    /* Oldest first: exactly the newest s.keys remain, every one reachable
     * after the deletions shifted the table's runs back. */
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(id, sizeof(id), "id%d", i);
        assert_int_equal(pr_state_day_lookup(st, S(key), S(id), &r), i >= (int)s.evicted);
    }
    assert_true(pr_state_day_lookup(st, S("k19999"), S("id19999"), &r)); /* newest kept */
    assert_false(pr_state_day_lookup(st, S("k0"), S("id0"), &r));        /* oldest gone */
    pr_state_free(st);
}

/* Many ids under one key and many keys: lookups stay exact across growth. */
static void test_growth(void **unused) {
    (void)unused;
    struct pr_state_options o = {0};
    struct pr_state *st = pr_state_new(&o);
    char id[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(id, sizeof(id), "D%d", i);
        struct pr_state_day r = day_count(st, "big", id, 1, 0);
        assert_int_equal(r.total, i + 1);
    }
    for (int i = 0; i < 50000; i += 997) {
        snprintf(id, sizeof(id), "D%d", i);
        struct pr_state_day r;
        assert_true(pr_state_day_lookup(st, S("big"), S(id), &r));
        assert_int_equal(r.total, i + 1);
    }
    pr_state_free(st);
}

/* ------------------------------------------------------------ changelog */

/* A changelog in memory: every record a journal reports, in order. */
struct rec {
    char *key, *value; /* value NULL: tombstone */
    uint32_t key_len, value_len;
};
struct rec_log {
    struct rec *recs;
    size_t count, cap;
};

static char *dup_bytes(struct pr_str s) {
    char *p = malloc(s.len ? s.len : 1);
    assert_non_null(p);
    if (s.len) memcpy(p, s.ptr, s.len);
    return p;
}

static void log_write(void *ctx, struct pr_str key, struct pr_str value) {
    struct rec_log *log = ctx;
    if (log->count == log->cap) {
        log->cap = log->cap ? log->cap * 2 : 1024;
        log->recs = realloc(log->recs, log->cap * sizeof(*log->recs));
        assert_non_null(log->recs);
    }
    struct rec *r = &log->recs[log->count++];
    r->key = dup_bytes(key);
    r->key_len = key.len;
    r->value = value.ptr ? dup_bytes(value) : NULL;
    r->value_len = value.len;
}

static void log_free(struct rec_log *log) {
    for (size_t i = 0; i < log->count; i++) {
        free(log->recs[i].key);
        free(log->recs[i].value);
    }
    free(log->recs);
    *log = (struct rec_log){0};
}

static struct pr_str rec_key(const struct rec *r) {
    return (struct pr_str){r->key, r->key_len};
}
static struct pr_str rec_value(const struct rec *r) {
    return (struct pr_str){r->value, r->value_len};
}
static bool rec_same_key(const struct rec *a, const struct rec *b) {
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* A store rebuilt from the records of log whose keep[] is true, in order. */
static struct pr_state *restore_from(const struct pr_state_options *o, const struct rec_log *log,
                                     const bool *keep) {
    struct pr_state *st = pr_state_new(o);
    struct rec_log echo = {0}; /* restore must write nothing */
    struct pr_state_journal j = {log_write, &echo};
    pr_state_set_journal(st, &j);
    for (size_t i = 0; i < log->count; i++)
        if (!keep || keep[i])
            assert_int_equal(pr_state_restore(st, rec_key(&log->recs[i]), rec_value(&log->recs[i])),
                             0);
    assert_int_equal(echo.count, 0);
    pr_state_set_journal(st, NULL);
    return st;
}

/* Compaction of the records before offset end (Kafka's cleaner): a record
 * is removed when a later record of its key exists before end; with
 * drop_tombstones a tombstone left last is removed too (delete.retention.ms
 * passed: every older record of its key is gone already). Records from end
 * on are kept. Quadratic-free: one hash set of keys, walked backwards. */
static bool *compact(const struct rec_log *log, size_t end, bool drop_tombstones) {
    bool *keep = calloc(log->count ? log->count : 1, 1);
    assert_non_null(keep);
    size_t cap = 1;
    while (cap < 2 * end + 2) cap *= 2;
    const struct rec **seen = calloc(cap, sizeof(*seen));
    assert_non_null(seen);
    for (size_t i = end; i < log->count; i++) keep[i] = true;
    for (size_t i = end; i-- > 0;) {
        const struct rec *r = &log->recs[i];
        size_t h = pr_hash64(r->key, r->key_len) & (cap - 1);
        bool later = false;
        for (; seen[h]; h = (h + 1) & (cap - 1))
            if (rec_same_key(seen[h], r)) {
                later = true;
                break;
            }
        if (later) continue;
        seen[h] = r;
        keep[i] = !(drop_tombstones && r->value == NULL);
    }
    free(seen);
    return keep;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Byte strings with NUL bytes in them, of 1 to 6 bytes, from a number. */
static struct pr_str bytes_of(char *buf, char tag, uint32_t n) {
    uint32_t len = 1 + n % 6;
    buf[0] = tag;
    for (uint32_t i = 1; i < len; i++) buf[i] = (char)((n >> (4 * i)) & 0x0f ? (n >> (4 * i)) : 0);
    buf[len] = (char)(n & 0xff); /* tag, mixed bytes (some NUL), last byte */
    return (struct pr_str){buf, len + 1};
}

#define W_DAY_KEYS 1500
#define W_DAY_IDS 12000
#define W_ADDR_KEYS 300
#define W_NAMES 9
#define W_CAP 2000000 /* small cap: days saturate */

/* One step of the workload on the store, the same for every store given the
 * same rng state. Returns a digest of the answer, to compare two stores. */
static uint64_t workload_step(struct pr_state *st, uint64_t *rng, int64_t *now, uint64_t *owners) {
    char kb[16], ib[16], nb[16], hb[16];
    uint64_t r = rng_next(rng);
    *now += (int64_t)(r % 20);
    if (r % 97 == 0) *now -= 7; /* the clock steps back a little */
    if (r % 251 == 0) return pr_state_expire(st, *now) * 1000003ULL;
    uint64_t pick = rng_next(rng);
    if (r % 5 == 0) { /* address-day */
        struct pr_str key = bytes_of(kb, 'a', (uint32_t)(pick % W_ADDR_KEYS));
        struct pr_str id = bytes_of(ib, 'i', (uint32_t)((pick >> 16) % W_DAY_IDS));
        struct pr_str name = bytes_of(nb, 'n', (uint32_t)((pick >> 32) % W_NAMES));
        return (uint64_t)pr_state_address_count(st, key, id, name, *now);
    }
    struct pr_str key = bytes_of(kb, 'k', (uint32_t)(pick % W_DAY_KEYS));
    /* Ids per key from a small pool: replays are common. */
    struct pr_str id = bytes_of(ib, 'i', (uint32_t)((pick >> 16) % 12));
    struct pr_str bill = bytes_of(hb, 'h', (uint32_t)(pick >> 40));
    uint64_t v = rng_next(rng);
    int64_t value = v % 13 == 0 ? (int64_t)(v >> 20) : (int64_t)(v % 60000) - 5000;
    int64_t threshold = v % 3 ? THR : 20000;
    bool over = value > threshold, candidate = !over && (v >> 8) % 4 != 0;
    struct pr_state_day d;
    pr_state_day_count(st, key, id, value, over, candidate, threshold, bill, *now, &d);
    if (d.crossing && owners) (*owners)++;
    return (uint64_t)d.total * 31 + d.overs * 7 + d.first * 3 + d.crossing;
}

/* Every answer of a and b equal: lookups of every day id of the pool,
 * house bills, address replays (which change nothing), stats; then the same
 * continuation on both (new counts, replays, expiry) gives the same answers. */
static void assert_same_stores(struct pr_state *a, struct pr_state *b, int64_t now, int64_t ttl,
                               uint64_t seed) {
    char kb[16], ib[16];
    struct pr_buf ba, bb;
    pr_buf_init(&ba);
    pr_buf_init(&bb);
    for (uint32_t k = 0; k < W_DAY_KEYS; k++) {
        struct pr_str key = bytes_of(kb, 'k', k);
        for (uint32_t i = 0; i < 12; i++) {
            struct pr_str id = bytes_of(ib, 'i', i);
            struct pr_state_day da, db;
            bool fa = pr_state_day_lookup(a, key, id, &da);
            bool fb = pr_state_day_lookup(b, key, id, &db);
            assert_int_equal(fa, fb);
            if (!fa) continue;
            assert_true(da.total == db.total);
            assert_int_equal(da.overs, db.overs);
            assert_int_equal(da.crossing, db.crossing);
        }
        ba.len = bb.len = 0;
        pr_state_day_house_bills(a, key, &ba);
        pr_state_day_house_bills(b, key, &bb);
        assert_int_equal(ba.len, bb.len);
        if (ba.len) assert_memory_equal(ba.data, bb.data, ba.len);
    }
    pr_buf_free(&ba);
    pr_buf_free(&bb);
    struct pr_state_stats sa, sb;
    pr_state_get_stats(a, &sa);
    pr_state_get_stats(b, &sb);
    assert_int_equal(sa.keys, sb.keys);
    assert_int_equal(sa.members, sb.members);
    /* The continuation: counts on top (totals, overs, owners, clusters),
     * replays, and expiry at the same times dropping the same keys. */
    uint64_t ra = seed, rb = seed;
    int64_t na = now, nb = now;
    for (int i = 0; i < 20000; i++)
        assert_true(workload_step(a, &ra, &na, NULL) == workload_step(b, &rb, &nb, NULL));
    /* Long after: everything expires, the same count from both. */
    if (ttl > 0) assert_int_equal(pr_state_expire(a, na + ttl), pr_state_expire(b, nb + ttl));
    pr_state_get_stats(a, &sa);
    pr_state_get_stats(b, &sb);
    assert_int_equal(sa.keys, sb.keys);
    assert_int_equal(sa.members, sb.members);
}

/* A randomized workload journaled, then rebuilt from the whole log, from
 * fully compacted logs (with and without tombstones) and from partly
 * compacted ones: every store answers as the original, and keeps doing so. */
static void test_journal_round_trip(void **unused) {
    (void)unused;
    const int64_t ttl = 3000;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct pr_state_options o = {.ttl_ms = ttl, .total_cap = W_CAP};
        struct rec_log log = {0};
        struct pr_state_journal j = {log_write, &log};
        struct pr_state *orig = pr_state_new(&o);
        pr_state_set_journal(orig, &j);
        uint64_t rng = seed * 7919, owners = 0;
        int64_t now = 1000;
        for (int i = 0; i < 60000; i++) workload_step(orig, &rng, &now, &owners);
        pr_state_set_journal(orig, NULL);

        /* The workload did exercise what it is meant to. */
        size_t tombstones = 0, owner_records = 0, recreated = 0, saturated = 0;
        size_t set_cap = 1;
        while (set_cap < 2 * log.count) set_cap *= 2;
        const struct rec **dead = calloc(set_cap, sizeof(*dead)); /* keys tombstoned so far */
        assert_non_null(dead);
        for (size_t i = 0; i < log.count; i++) {
            const struct rec *r = &log.recs[i];
            size_t h = pr_hash64(r->key, r->key_len) & (set_cap - 1);
            while (dead[h] && !rec_same_key(dead[h], r)) h = (h + 1) & (set_cap - 1);
            if (!r->value) {
                tombstones++;
                dead[h] = r;
                continue;
            }
            if (dead[h]) recreated++; /* a record of a key tombstoned before */
            if (r->key[0] == 1 && (r->value[1] & 1)) owner_records++;
            /* total == W_CAP: LEB128 of 2000000 is 80 89 7a */
            if (r->key[0] == 1 && r->value_len >= 5 && (uint8_t)r->value[2] == 0x80 &&
                (uint8_t)r->value[3] == 0x89 && (uint8_t)r->value[4] == 0x7a)
                saturated++;
        }
        free(dead);
        printf("seed %llu: %zu records, %zu tombstones, %zu after a tombstone of their key, %zu "
               "owner records, %zu saturated\n",
               (unsigned long long)seed, log.count, tombstones, recreated, owner_records,
               saturated);
        assert_true(tombstones > 1000);
        assert_true(recreated > 100);
        assert_true(owner_records > 100);
        assert_true(owners > 100);
        assert_true(saturated > 10);
        struct pr_state_stats s;
        pr_state_get_stats(orig, &s);
        assert_true(s.keys > 100);
        assert_true(s.expired > 100);

        uint64_t cont = seed * 104729;
        bool *keep[6];
        keep[0] = NULL; /* the whole log */
        keep[1] = compact(&log, log.count, false);
        keep[2] = compact(&log, log.count, true);
        keep[3] = compact(&log, log.count / 3, true);
        keep[4] = compact(&log, log.count * 2 / 3, false);
        keep[5] = compact(&log, log.count - 17, true);
        size_t kept = 0;
        for (size_t i = 0; i < log.count; i++) kept += keep[2][i];
        assert_true(kept < log.count / 2); /* compaction did remove records */
        for (int v = 0; v < 6; v++) {
            /* The original goes on in the comparison: a fresh one each time. */
            struct pr_state *twin = restore_from(&o, &log, NULL);
            struct pr_state *rebuilt = restore_from(&o, &log, keep[v]);
            assert_same_stores(twin, rebuilt, now, ttl, cont + (uint64_t)v);
            pr_state_free(twin);
            pr_state_free(rebuilt);
            free(keep[v]);
        }
        /* And the whole log gives the original itself. */
        struct pr_state *rebuilt = restore_from(&o, &log, NULL);
        assert_same_stores(orig, rebuilt, now, ttl, cont);
        pr_state_free(rebuilt);
        pr_state_free(orig);
        log_free(&log);
    }
}

/* Expiry writes a tombstone for every member; the key counted again later
 * is a new incarnation, before and after compaction. */
static void test_journal_expiry_and_recreation(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 100};
    struct rec_log log = {0};
    struct pr_state_journal j = {log_write, &log};
    struct pr_state *st = pr_state_new(&o);
    pr_state_set_journal(st, &j);
    const char id_a[] = {'A', 0, 'x'}, id_b[] = {'B', 0, 0};
    struct pr_str key = {"c\0d", 3}, a = {id_a, 3}, b = {id_b, 3};
    struct pr_state_day r;
    pr_state_day_count(st, key, a, 50000, false, true, THR, S("H1"), 0, &r);
    pr_state_day_count(st, key, b, 40000, false, true, THR, S("H2"), 10, &r);
    assert_true(r.crossing);
    assert_int_equal(pr_state_address_count(st, S("addr"), a, S("n1"), 20), 1);
    assert_int_equal(pr_state_address_count(st, S("addr"), b, S("n2"), 20), 2);
    assert_int_equal(log.count, 4); /* day A, B, address A (n1), B (n2): no name records */
    /* The address-day id records (version 2) carry the name as counted. */
    assert_int_equal(log.recs[2].key[0], 2);
    assert_int_equal(log.recs[2].value_len, 5);
    assert_memory_equal(log.recs[2].value, "\x02\x01\x28n1", 5); /* 1 name, time 20 */
    assert_memory_equal(log.recs[3].value, "\x02\x02\x28n2", 5); /* 2 names */
    assert_int_equal(pr_state_expire(st, 115), 1);               /* the day: updated at 10 */
    assert_int_equal(log.count, 6);
    assert_null(log.recs[4].value);
    assert_null(log.recs[5].value);
    assert_int_equal(pr_state_expire(st, 125), 1); /* the address-day: its two ids */
    assert_int_equal(log.count, 8);
    for (size_t i = 6; i < 8; i++) {
        assert_null(log.recs[i].value);
        assert_int_equal(log.recs[i].key[0], 2);
    }
    /* A later incarnation: A again (a new total), no B, no owner yet. */
    pr_state_day_count(st, key, a, 1000, false, true, THR, S("H3"), 200, &r);
    assert_true(r.first);
    assert_int_equal(r.total, 1000);
    assert_int_equal(pr_state_address_count(st, S("addr"), b, S("n3"), 200), 1);
    pr_state_set_journal(st, NULL);

    /* Compacted: A's first record and tombstone are gone; B's tombstone
     * comes before A's new record. Whole, compacted, tombstones dropped. */
    bool *keeps[3] = {NULL, compact(&log, log.count, false), compact(&log, log.count, true)};
    for (int v = 0; v < 3; v++) {
        struct pr_state *re = restore_from(&o, &log, keeps[v]);
        assert_true(pr_state_day_lookup(re, key, a, &r));
        assert_int_equal(r.total, 1000);
        assert_false(r.crossing);
        assert_false(pr_state_day_lookup(re, key, b, &r));
        struct pr_buf bills;
        pr_buf_init(&bills);
        pr_state_day_house_bills(re, key, &bills);
        assert_int_equal(bills.len, 2);
        assert_memory_equal(bills.data, "H3", 2);
        pr_buf_free(&bills);
        /* n3 is the only name of the new incarnation: a new name makes 2. */
        assert_int_equal(pr_state_address_count(re, S("addr"), b, S("zz"), 210), 1);
        assert_int_equal(pr_state_address_count(re, S("addr"), a, S("n1"), 210), 2);
        struct pr_state_stats s;
        pr_state_get_stats(re, &s);
        assert_int_equal(s.keys, 2);
        /* TTL: the day updated at 200, expires at 300, not before. */
        assert_int_equal(pr_state_expire(re, 299), 0);
        assert_int_equal(pr_state_expire(re, 300), 1);
        assert_false(pr_state_day_lookup(re, key, a, &r));
        pr_state_free(re);
        free(keeps[v]);
    }
    /* The clock stepped back: an entry's last update is its last record's
     * time (95), not the largest (100), as in the original store. */
    struct rec_log log2 = {0};
    struct pr_state_journal j2 = {log_write, &log2};
    struct pr_state *back = pr_state_new(&o);
    pr_state_set_journal(back, &j2);
    pr_state_address_count(back, S("x"), S("1"), S("n1"), 100);
    pr_state_address_count(back, S("x"), S("2"), S("n2"), 95);
    pr_state_set_journal(back, NULL);
    struct pr_state *back_re = restore_from(&o, &log2, NULL);
    assert_int_equal(pr_state_expire(back, 194), 0);
    assert_int_equal(pr_state_expire(back_re, 194), 0);
    assert_int_equal(pr_state_expire(back, 195), 1);
    assert_int_equal(pr_state_expire(back_re, 195), 1);
    pr_state_free(back);
    pr_state_free(back_re);
    log_free(&log2);

    /* A tombstone of a key not held is a no-op. */
    struct pr_state *empty = pr_state_new(&o);
    assert_int_equal(pr_state_restore(empty, rec_key(&log.recs[4]), (struct pr_str){NULL, 0}), 0);
    struct pr_state_stats s;
    pr_state_get_stats(empty, &s);
    assert_int_equal(s.keys, 0);
    pr_state_free(empty);
    pr_state_free(st);
    log_free(&log);
}

/* A replay that makes an id the owner rewrites its record (owner bit), and
 * eviction by max_bytes writes tombstones as expiry does. */
static void test_journal_owner_rewrite_and_eviction(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 0};
    struct rec_log log = {0};
    struct pr_state_journal j = {log_write, &log};
    struct pr_state *st = pr_state_new(&o);
    pr_state_set_journal(st, &j);
    struct pr_state_day r;
    pr_state_day_count(st, S("k"), S("A"), 90000, false, false, THR, S("HA"), 0, &r);
    assert_false(r.crossing);
    assert_int_equal(log.count, 1);
    pr_state_day_count(st, S("k"), S("A"), 90000, false, false, THR, S("HA"), 1, &r);
    assert_int_equal(log.count, 1); /* a plain replay writes nothing */
    pr_state_day_count(st, S("k"), S("A"), 1, false, true, THR, S("other"), 2, &r);
    assert_true(r.crossing); /* now a candidate: it owns the day */
    assert_int_equal(log.count, 2);
    assert_true(rec_same_key(&log.recs[0], &log.recs[1]));
    assert_int_equal(log.recs[1].value[1], 1);
    pr_state_set_journal(st, NULL);
    bool *keep = compact(&log, log.count, false);
    assert_false(keep[0]);
    struct pr_state *re = restore_from(&o, &log, keep);
    assert_true(pr_state_day_lookup(re, S("k"), S("A"), &r));
    assert_true(r.crossing);
    assert_int_equal(r.total, 90000);
    struct pr_buf bills;
    pr_buf_init(&bills);
    pr_state_day_house_bills(re, S("k"), &bills);
    assert_int_equal(bills.len, 2);
    assert_memory_equal(bills.data, "HA", 2); /* the bill as first counted */
    pr_buf_free(&bills);
    /* A later candidate above the threshold does not take the ownership. */
    pr_state_day_count(re, S("k"), S("B"), 1, false, true, THR, S("HB"), 3, &r);
    assert_false(r.crossing);
    pr_state_free(re);
    free(keep);
    pr_state_free(st);
    log_free(&log);

    /* Eviction: each evicted key's members get tombstones. */
    struct pr_state_options b = {.max_bytes = 256 << 10};
    st = pr_state_new(&b);
    pr_state_set_journal(st, &j);
    char key[32], id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i / 2);
        snprintf(id, sizeof(id), "id%d", i);
        pr_state_day_count(st, S(key), S(id), 1, false, true, THR, S("h"), i, &r);
        pr_state_expire(st, i);
    }
    struct pr_state_stats s;
    pr_state_get_stats(st, &s);
    assert_true(s.evicted > 0);
    size_t tombstones = 0;
    for (size_t i = 0; i < log.count; i++) tombstones += log.recs[i].value == NULL;
    assert_int_equal(log.count, 5000 + tombstones);
    assert_int_equal(tombstones + s.members, 5000);
    pr_state_set_journal(st, NULL);
    bool *keep2 = compact(&log, log.count, true);
    re = restore_from(&b, &log, keep2);
    struct pr_state_stats s2;
    pr_state_get_stats(re, &s2);
    assert_int_equal(s2.keys, s.keys);
    assert_int_equal(s2.members, s.members);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i / 2);
        snprintf(id, sizeof(id), "id%d", i);
        struct pr_state_day r2;
        bool f = pr_state_day_lookup(st, S(key), S(id), &r);
        assert_int_equal(pr_state_day_lookup(re, S(key), S(id), &r2), f);
        if (f) assert_true(r.total == r2.total);
    }
    free(keep2);
    pr_state_free(re);
    pr_state_free(st);
    log_free(&log);
}

/* ------------------------------------------------- format version 1 */

/* tests/data/state-changelog-v1.bin: the changelog that main 950a1be's state.c
 * (format version 1: kind-3 name records, kind-2 records without a name)
 * wrote for V1_STEPS steps of workload_step from rng state V1_SEED, clock 1000,
 * ttl 3000 ms, total_cap W_CAP. Records one after another, each as two
 * little-endian uint32 (key length, value length; UINT32_MAX: tombstone), the
 * key, the value. Made once with the test's own workload_step linked against
 * that state.c; a changelog of the previous build must restore to the same
 * answers. */
#define V1_SEED 20261202
#define V1_STEPS 4000
#define V1_NOW 38511 /* the clock after V1_STEPS steps, as the writer printed it */

static void load_v1_log(struct rec_log *log) {
    FILE *f = fopen(PR_SOURCE_DIR "/tests/data/state-changelog-v1.bin", "rb");
    assert_non_null(f);
    uint32_t lens[2];
    char key[256], value[256];
    while (fread(lens, sizeof(lens), 1, f) == 1) {
        assert_true(lens[0] <= sizeof(key));
        assert_true(lens[1] == UINT32_MAX || lens[1] <= sizeof(value));
        assert_int_equal(fread(key, 1, lens[0], f), lens[0]);
        bool tombstone = lens[1] == UINT32_MAX;
        if (!tombstone) assert_int_equal(fread(value, 1, lens[1], f), lens[1]);
        log_write(log, (struct pr_str){key, lens[0]},
                  tombstone ? (struct pr_str){NULL, 0} : (struct pr_str){value, lens[1]});
    }
    assert_true(feof(f));
    fclose(f);
}

/* The store the version-1 log was written by, rebuilt by running its
 * workload again (this build's code, no journal), steps steps on. */
static struct pr_state *v1_original(const struct pr_state_options *o, int steps, uint64_t *rng,
                                    int64_t *now) {
    struct pr_state *st = pr_state_new(o);
    *rng = V1_SEED;
    *now = 1000;
    for (int i = 0; i < steps; i++) workload_step(st, rng, now, NULL);
    return st;
}

static void log_append(struct rec_log *to, const struct rec_log *from) {
    for (size_t i = 0; i < from->count; i++)
        log_write(to, rec_key(&from->recs[i]),
                  from->recs[i].value ? rec_value(&from->recs[i]) : (struct pr_str){NULL, 0});
}

/* A changelog written by the previous build (version 1) restores to the
 * same answers, whole and compacted; and a store restored from it goes on
 * writing version 2 on top (an upgrade): the mixed log, whole and
 * compacted, restores to the same answers as a store that never stopped. */
static void test_journal_version_1(void **unused) {
    (void)unused;
    const int64_t ttl = 3000;
    struct pr_state_options o = {.ttl_ms = ttl, .total_cap = W_CAP};
    struct rec_log v1 = {0};
    load_v1_log(&v1);
    /* The fixture is what it says: version 1, every kind, tombstones of each. */
    size_t kinds[4] = {0}, kind_tombstones[4] = {0};
    for (size_t i = 0; i < v1.count; i++) {
        const struct rec *r = &v1.recs[i];
        assert_true(r->key_len > 0 && r->key[0] >= 1 && r->key[0] <= 3);
        if (!r->value) {
            kind_tombstones[(int)r->key[0]]++;
            continue;
        }
        assert_int_equal(r->value[0], 1);
        kinds[(int)r->key[0]]++;
    }
    for (int k = 1; k <= 3; k++) {
        assert_true(kinds[k] > 500);
        assert_true(kind_tombstones[k] > 500);
    }

    uint64_t rng;
    int64_t now;
    bool *keeps[3] = {NULL, compact(&v1, v1.count, false), compact(&v1, v1.count, true)};
    for (int v = 0; v < 3; v++) {
        struct pr_state *orig = v1_original(&o, V1_STEPS, &rng, &now);
        assert_int_equal(now, V1_NOW);
        struct pr_state *rebuilt = restore_from(&o, &v1, keeps[v]);
        assert_same_stores(orig, rebuilt, now, ttl, 4242 + (uint64_t)v);
        pr_state_free(orig);
        pr_state_free(rebuilt);
        free(keeps[v]);
    }

    /* The upgrade: restored from version 1, then V1_STEPS more steps with a
     * journal (version 2). */
    struct rec_log v2 = {0};
    struct pr_state_journal j = {log_write, &v2};
    struct pr_state *upgraded = restore_from(&o, &v1, NULL);
    pr_state_set_journal(upgraded, &j);
    rng = 0;
    struct pr_state *scratch = v1_original(&o, V1_STEPS, &rng, &now); /* the rng state after */
    pr_state_free(scratch);
    for (int i = 0; i < V1_STEPS; i++) workload_step(upgraded, &rng, &now, NULL);
    pr_state_set_journal(upgraded, NULL);
    int64_t upgraded_now = now;
    /* What it wrote is version 2 only, no name record; the names restored
     * from version-1 records still get their tombstones, and only they. */
    size_t name_tombstones = 0, address_records = 0;
    for (size_t i = 0; i < v2.count; i++) {
        const struct rec *r = &v2.recs[i];
        if (r->value) {
            assert_int_equal(r->value[0], 2);
            assert_true(r->key[0] == 1 || r->key[0] == 2);
            address_records += r->key[0] == 2;
            continue;
        }
        if (r->key[0] != 3) continue;
        name_tombstones++;
        bool written = false;
        for (size_t k = 0; k < v1.count && !written; k++)
            written = v1.recs[k].value && rec_same_key(&v1.recs[k], r);
        assert_true(written);
    }
    printf("version 1: %zu records; then version 2: %zu records, %zu address-day ids, %zu "
           "tombstones of version-1 names\n",
           v1.count, v2.count, address_records, name_tombstones);
    assert_true(name_tombstones > 50);
    assert_true(address_records > 500);

    struct rec_log mixed = {0};
    log_append(&mixed, &v1);
    log_append(&mixed, &v2);
    bool *mixed_keeps[4] = {NULL, compact(&mixed, mixed.count, false),
                            compact(&mixed, mixed.count, true),
                            compact(&mixed, v1.count + v2.count / 2, true)};
    for (int v = 0; v < 4; v++) {
        struct pr_state *orig = v1_original(&o, 2 * V1_STEPS, &rng, &now);
        assert_int_equal(now, upgraded_now);
        struct pr_state *rebuilt = restore_from(&o, &mixed, mixed_keeps[v]);
        assert_same_stores(orig, rebuilt, now, ttl, 4343 + (uint64_t)v);
        pr_state_free(orig);
        pr_state_free(rebuilt);
        free(mixed_keeps[v]);
    }
    /* And the upgraded store itself answers as one that never stopped. */
    struct pr_state *orig = v1_original(&o, 2 * V1_STEPS, &rng, &now);
    assert_same_stores(orig, upgraded, now, ttl, 4444);
    pr_state_free(orig);
    pr_state_free(upgraded);
    log_free(&mixed);
    log_free(&v2);
    log_free(&v1);
}

static int restore_bytes(struct pr_state *st, const char *key, size_t key_len, const char *value,
                         size_t value_len) {
    return pr_state_restore(st, (struct pr_str){key, (uint32_t)key_len},
                            (struct pr_str){value, (uint32_t)value_len});
}
#define RESTORE(st, k, v) restore_bytes(st, k, sizeof(k) - 1, v, sizeof(v) - 1)

/* Malformed records are refused and leave the store unchanged; random and
 * mutated bytes never crash it (the ASan build runs this too). */
static void test_journal_malformed(void **unused) {
    (void)unused;
    struct pr_state_options o = {.ttl_ms = 1000};
    struct pr_state *st = pr_state_new(&o);
    /* A valid record of each kind first: version 1 (the previous build's), then version 2. */
    assert_int_equal(RESTORE(st, "\x01\x01kA", "\x01\x01\x90\x03\x00\x02HB"), 0);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aI",
                             "\x01\x01\x02"),
                     0);
    assert_int_equal(RESTORE(st,
                             "\x03\x01"
                             "aN",
                             "\x01\x02"),
                     0);
    assert_int_equal(RESTORE(st, "\x01\x01kC", "\x02\x00\x05\x00\x02HC"), 0);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aJ",
                             "\x02\x02\x02N"),
                     0); /* N is held already (its version-1 record): no new name */
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aK",
                             "\x02\x02\x02M"),
                     0); /* M is new */
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aL",
                             "\x02\x01\x02"),
                     0); /* an empty name is a name */
    struct pr_state_day r;
    assert_true(pr_state_day_lookup(st, S("k"), S("A"), &r));
    assert_int_equal(r.total, 400);
    assert_true(r.crossing);
    assert_true(pr_state_day_lookup(st, S("k"), S("C"), &r));
    assert_int_equal(r.total, 5);
    assert_false(r.crossing);
    assert_int_equal(pr_state_address_count(st, S("a"), S("J"), S("X"), 1), 2); /* a replay */
    assert_int_equal(pr_state_address_count(st, S("a"), S("O"), S("M"), 1), 3); /* N, M, "" */
    struct pr_state_stats before, after;
    pr_state_get_stats(st, &before);
    assert_int_equal(before.keys, 2);
    assert_int_equal(before.members, 10); /* day A, C; address I, J, K, L, O; names N, M, "" */

    /* Keys: empty, unknown kinds, truncated or huge or overlong lengths. */
    assert_int_equal(RESTORE(st, "", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(pr_state_restore(st, (struct pr_str){NULL, 0}, (struct pr_str){NULL, 0}), -1);
    assert_int_equal(RESTORE(st, "\x00\x01kA", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x04\x01kA", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x05kA", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\xff\xff\xff\xff\x0fkA", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(
        RESTORE(st, "\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01k", "\x01\x00\x01\x00\x00"),
        -1);
    assert_int_equal(RESTORE(st, "\x01\x80", "\x01\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\xff\xff\xff\xff\x0f", ""), -1); /* huge, tombstone-less */
    assert_int_equal(restore_bytes(st, "\x01\xff\xff\xff\xff\x0f", 6, NULL, 0),
                     -1); /* a tombstone too */
    /* Values: empty, wrong versions, bad flags, truncated, out of range,
     * bytes after the last field. */
    assert_int_equal(RESTORE(st, "\x01\x01kB", ""), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x00\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x03\x00\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x02\x01\x00\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x00\x01"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x00\x01\x00"), -1);
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x00\x81"), -1);
    assert_int_equal(
        RESTORE(st, "\x01\x01kB", "\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x00"),
        -1); /* 2^64-1 */
    assert_int_equal(
        RESTORE(st, "\x01\x01kB", "\x01\x00\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02\x00\x00"),
        -1); /* past 64 bits */
    assert_int_equal(RESTORE(st, "\x01\x01kB", "\x01\x00\x01\x80\x80\x80\x80\x10\x00"),
                     -1); /* overs 2^32 */
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aJ",
                             "\x01\x80\x80\x80\x80\x08\x00"),
                     -1); /* names 2^31 */
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aJ",
                             "\x01\x01"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aJ",
                             "\x01\x01\x02\x00"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x03\x01"
                             "aM",
                             "\x01\x02\x00"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x03\x01"
                             "aM",
                             "\x01"),
                     -1);
    /* Version 2: no name records; an address-day id names at least its own name. */
    assert_int_equal(RESTORE(st,
                             "\x03\x01"
                             "aP",
                             "\x02\x02"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aQ",
                             "\x02\x00\x02N"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aQ",
                             "\x02\x01"),
                     -1);
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aQ",
                             "\x01\x01\x02N"),
                     -1); /* version 1 has no name */
    assert_int_equal(RESTORE(st,
                             "\x02\x01"
                             "aQ",
                             "\x03\x01\x02N"),
                     -1);
    pr_state_get_stats(st, &after);
    assert_int_equal(after.keys, before.keys);
    assert_int_equal(after.members, before.members);
    assert_true(after.bytes == before.bytes);
    assert_false(pr_state_day_lookup(st, S("k"), S("B"), &r));

    /* Fuzz-ish: random bytes and valid records with bytes changed, cut or
     * added; then the store must still answer and expire consistently. */
    uint64_t rng = 12345;
    char key[64], value[64];
    const char *valid_keys[] = {"\x01\x01kA",
                                "\x02\x01"
                                "aI",
                                "\x03\x01"
                                "aN",
                                "\x01\x01kC",
                                "\x02\x01"
                                "aK"};
    const char *valid_values[] = {"\x01\x01\x90\x03\x00\x02HB", "\x01\x01\x02", "\x01\x02",
                                  "\x02\x00\x05\x00\x02HC", "\x02\x02\x02M"};
    const size_t valid_lens[][2] = {{4, 8}, {4, 3}, {4, 2}, {4, 7}, {4, 4}};
    size_t accepted = 0, refused = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t x = rng_next(&rng);
        size_t kl, vl;
        if (x % 3 == 0) {
            kl = 1 + x % 12;
            vl = (x >> 8) % 16;
            for (size_t k = 0; k < kl; k++) key[k] = (char)(rng_next(&rng) % 7);
            for (size_t k = 0; k < vl; k++) value[k] = (char)rng_next(&rng);
            key[0] = (char)(1 + (x >> 16) % 4);
        } else {
            int v = (int)((x >> 4) % 5);
            kl = valid_lens[v][0];
            vl = valid_lens[v][1];
            memcpy(key, valid_keys[v], kl);
            memcpy(value, valid_values[v], vl);
            uint64_t y = rng_next(&rng);
            if (y & 1) key[(y >> 8) % kl] = (char)(y >> 16);
            if (y & 2) value[(y >> 24) % vl] = (char)(y >> 32);
            if (y & 4) vl = (y >> 40) % (vl + 1);
            if (y & 8) kl = 1 + (y >> 44) % kl;
            if (y & 16) value[vl++] = (char)(y >> 48);
        }
        bool tombstone = (x >> 60) == 0;
        int rc =
            tombstone ? restore_bytes(st, key, kl, NULL, 0) : restore_bytes(st, key, kl, value, vl);
        assert_true(rc == 0 || rc == -1);
        rc == 0 ? accepted++ : refused++;
        if (i % 1000 == 0) {
            struct pr_buf bills;
            pr_buf_init(&bills);
            pr_state_day_house_bills(st, S("k"), &bills);
            pr_buf_free(&bills);
            pr_state_day_lookup(st, S("k"), S("A"), &r);
            pr_state_address_count(st, S("a"), S("I"), S("N"), i);
            pr_state_expire(st, (int64_t)(x % 3000));
        }
    }
    assert_true(accepted > 1000);
    assert_true(refused > 1000);
    pr_state_expire(st, INT64_MAX / 2);
    pr_state_get_stats(st, &after);
    assert_int_equal(after.keys, 0);
    assert_int_equal(after.members, 0);
    pr_state_free(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day_counts_once_and_replays),
        cmocka_unit_test(test_day_overs_negative_saturation),
        cmocka_unit_test(test_address_names),
        cmocka_unit_test(test_ttl_and_bounds),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_journal_round_trip),
        cmocka_unit_test(test_journal_expiry_and_recreation),
        cmocka_unit_test(test_journal_owner_rewrite_and_eviction),
        cmocka_unit_test(test_journal_malformed),
        cmocka_unit_test(test_journal_version_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
