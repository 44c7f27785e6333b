/* Unit tests: the in-process one-person-one-day state (pipeline/domain/state.c),
 * against the semantics of DOMAIN.md section 8 that the aggregate
 * operator's Redis script keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day_counts_once_and_replays),
        cmocka_unit_test(test_day_overs_negative_saturation),
        cmocka_unit_test(test_address_names),
        cmocka_unit_test(test_ttl_and_bounds),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
