/*
 * Unit tests: the operator chain on hand-made declarations, in process (no
 * Kafka): each case gives the exact set of reasons, the score, de_minimis and
 * the lane that DOMAIN.md section 5 says. The declaration goes through the
 * real decode operator (it is encoded first), so this is the chain as `run`
 * executes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "config.h"
#include "hash.h"
#include "operator.h"
#include "rules.h"

#define S(lit) ((struct pr_str){(lit), (uint32_t)(sizeof(lit) - 1)})
#define BIT(code) (1u << (code))

static struct pr_line base_lines[3];

/* A clean declaration: two lines from VN, $120 total, arriving before any
 * suspension. Cases change what they test. */
static void base_declaration(struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    d->declaration_id = S("T-0001");
    d->filer_code = S("DHLX");
    d->entry_type = S("86");
    d->house_bill = S("HB123456789");
    d->transport_mode = PR_MODE_AIR;
    d->port_of_entry = S("4701");
    pr_parse_utc("2025-03-01T12:00:00Z", &d->arrival_time);
    d->event_time = d->arrival_time - 3600000;
    d->shipper = (struct pr_party){S("Hanoi Lotus Export Co., Ltd."), S("12 Tran Phu Street"),
                                   S("Hanoi"), S("100000"), S("VN")};
    d->consignee = (struct pr_party){S("Jane O'Neil"), S("1234 Elm Street, Apt. 5B"),
                                     S("Springfield"), S("62701"), S("US")};
    d->value_usd_cents = 12000;
    base_lines[0] = (struct pr_line){S("6109100012"), S("Men's cotton t-shirt"), S("VN"), 2, 4000};
    base_lines[1] = (struct pr_line){S("4202920807"), S("Textile backpack"), S("VN"), 1, 8000};
    d->lines = base_lines;
    d->line_count = 2;
}

/* Arrival at iso, filed by the hub an hour before: a plausible date. */
static void arrive(struct pr_declaration *d, const char *iso) {
    assert_int_equal(pr_parse_utc(iso, &d->arrival_time), PR_OK);
    d->event_time = d->arrival_time - 3600000;
}

struct chain_fixture {
    struct pr_config *cfg;
    struct pr_chain chain;
    struct pr_rules *rules;
    struct pr_batch batch;
    struct pr_buf encoded;
};

static int setup(void **state) {
    struct chain_fixture *f = calloc(1, sizeof(*f));
    f->cfg = pr_config_default();
    /* The operators that need no Redis; those that do are tested against a
     * real Redis in tests/integration/test_rules_scenarios.py. */
    assert_int_equal(pr_config_set(f->cfg, "chain",
                                   "decode,validate,policy,sample,score,route,encode", "test", 0),
                     PR_OK);
    assert_int_equal(pr_chain_init(&f->chain, f->cfg), PR_OK);
    f->rules = pr_rules_new_default();
    pr_batch_init(&f->batch, 4);
    pr_buf_init(&f->encoded);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct chain_fixture *f = *state;
    pr_chain_destroy(&f->chain);
    pr_rules_free(f->rules);
    pr_batch_destroy(&f->batch);
    pr_buf_free(&f->encoded);
    pr_config_free(f->cfg);
    free(f);
    return 0;
}

static struct pr_record *decide(struct chain_fixture *f, const struct pr_declaration *d) {
    pr_batch_reset(&f->batch);
    pr_buf_reset(&f->encoded);
    pr_declaration_encode(d, &f->encoded);
    struct pr_record *rec = pr_batch_push(&f->batch);
    rec->payload = f->encoded.data;
    rec->payload_len = f->encoded.len;
    f->batch.rules = f->rules;
    f->batch.source_topic = "declarations";
    f->batch.refdata_version = "none";
    f->batch.now_ms = 1700000000000;
    size_t failed_at;
    assert_int_equal(pr_chain_process(&f->chain, &f->batch, 0, &failed_at), PR_OP_DONE);
    assert_int_equal(rec->dlq_code, PR_DLQ_NONE);
    return rec;
}

static void expect(struct pr_record *rec, uint32_t reasons, int score, enum pr_de_minimis dm,
                   enum pr_lane lane) {
    if (rec->fired != reasons) {
        for (int i = 0; i < PR_R_COUNT; i++)
            if (((rec->fired ^ reasons) >> i) & 1)
                print_error("reason %s: got %s, expected %s\n", pr_reason_names[i],
                            (rec->fired >> i) & 1 ? "fired" : "absent",
                            (reasons >> i) & 1 ? "fired" : "absent");
    }
    assert_int_equal(rec->fired, reasons);
    assert_int_equal(rec->score, score);
    assert_string_equal(pr_de_minimis_names[rec->de_minimis], pr_de_minimis_names[dm]);
    assert_string_equal(pr_lane_names[rec->lane], pr_lane_names[lane]);
    assert_int_equal(rec->outputs & PR_OUT_DECISION, PR_OUT_DECISION);
    assert_int_equal(!!(rec->outputs & PR_OUT_ALERT), lane >= PR_LANE_YELLOW);
    assert_true(rec->out_decision.len > 0);
}

static const char *detail(struct pr_record *rec, enum pr_reason_code code) {
    assert_true(pr_record_has(rec, code));
    return rec->reasons[code].detail;
}

static void test_clean_is_green(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    struct pr_record *rec = decide(f, &d);
    expect(rec, 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    assert_int_equal(strlen(rec->consignee_key), 64);
}

static void test_missing_data(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    d.house_bill = S("   ");
    d.consignee.name = S("N/A");
    d.shipper.address = S("unknown");
    base_lines[1].quantity = 0;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_MISSING_DATA), 200, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    const char *det = detail(rec, PR_R_MISSING_DATA);
    assert_non_null(strstr(det, "house_bill"));
    assert_non_null(strstr(det, "consignee.name"));
    assert_non_null(strstr(det, "shipper.address"));
    assert_non_null(strstr(det, "line 2 quantity"));
    /* Never the raw text. */
    assert_null(strstr(det, "unknown"));
}

static void test_missing_lines_and_value(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    d.line_count = 0;
    d.value_usd_cents = 0;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_MISSING_DATA), 200, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    assert_non_null(strstr(detail(rec, PR_R_MISSING_DATA), "lines"));
    assert_non_null(strstr(detail(rec, PR_R_MISSING_DATA), "value_usd_cents"));
}

static void test_blank_hts_and_description_are_missing_only(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    base_lines[0].hts = S(" ");
    base_lines[1].description = S("");
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_MISSING_DATA), 200, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    assert_non_null(strstr(detail(rec, PR_R_MISSING_DATA), "line 1 hts"));
    assert_non_null(strstr(detail(rec, PR_R_MISSING_DATA), "line 2 description"));
}

static void test_hts_format(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    base_lines[0].hts = S("6109.10.00");
    base_lines[1].hts = S("42029208070");
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_HTS_INVALID), 150, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    assert_string_equal(detail(rec, PR_R_HTS_INVALID),
                        "line 1: not 10 digits, line 2: not 10 digits");
}

static void test_vague_descriptions(void **state) {
    struct chain_fixture *f = *state;
    static const struct {
        const char *text;
        bool vague;
    } cases[] = {
        {"Gift", true},
        {"N/A", true},
        {"gifts, samples", true},
        {"GIFT 2", true},
        {"12", true},
        {"AB", true},
        {"as ordered", true},
        {"Personal effects", true},
        {"Gift set for kids", false},
        {"t-shirt", false},
        {"Phone case", false},
        {"茶叶", true}, /* 2 letters */
        {"绿茶叶", false},
        {"Misc. parts & accessories", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pr_declaration d;
        base_declaration(&d);
        base_lines[1].description = (struct pr_str){cases[i].text, (uint32_t)strlen(cases[i].text)};
        struct pr_record *rec = decide(f, &d);
        if (cases[i].vague) {
            expect(rec, BIT(PR_R_VAGUE_DESCRIPTION), 150, PR_DM_ELIGIBLE, PR_LANE_GREEN);
            assert_non_null(strstr(detail(rec, PR_R_VAGUE_DESCRIPTION), "line 2"));
        } else {
            expect(rec, 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
        }
    }
}

static void test_freight_mismatch(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    d.has_freight = true;
    d.freight_usd_cents = 36000; /* exactly 3 x value: not above */
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    d.freight_usd_cents = 36001;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_FREIGHT_VALUE_MISMATCH), 150, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    assert_non_null(strstr(detail(rec, PR_R_FREIGHT_VALUE_MISMATCH), "36001"));
}

static void test_value_threshold(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    d.value_usd_cents = 80000; /* within: less than or equal */
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    d.value_usd_cents = 80001;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_VALUE_OVER_THRESHOLD), 0, PR_DM_INELIGIBLE_VALUE, PR_LANE_BLUE);
    assert_non_null(strstr(detail(rec, PR_R_VALUE_OVER_THRESHOLD), "80000"));
    /* Before 2016-03-10T05:00:00Z the threshold was $200. */
    d.value_usd_cents = 30000;
    arrive(&d, "2016-03-10T04:59:59Z");
    expect(decide(f, &d), BIT(PR_R_VALUE_OVER_THRESHOLD), 0, PR_DM_INELIGIBLE_VALUE, PR_LANE_BLUE);
    arrive(&d, "2016-03-10T05:00:00Z");
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
}

static void test_policy_boundaries(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    base_lines[1].origin_country = S("CN");
    arrive(&d, "2025-05-02T04:00:59Z");
    d.arrival_time += 999; /* the last millisecond before the instant */
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    arrive(&d, "2025-05-02T04:01:00Z");
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);
    assert_string_equal(detail(rec, PR_R_DE_MINIMIS_SUSPENDED),
                        "line 2 origin CN: de minimis suspended since 2025-05-02T04:01:00Z");
    /* A suspended parcel is not also judged on value. */
    d.value_usd_cents = 90000;
    expect(decide(f, &d), BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);

    /* DE either side of 2025-08-29T04:01:00Z. */
    base_declaration(&d);
    base_lines[0].origin_country = S("DE");
    base_lines[1].origin_country = S("DE");
    arrive(&d, "2025-08-29T04:00:59Z");
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    arrive(&d, "2025-08-29T04:01:00Z");
    expect(decide(f, &d), BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);

    /* 2027-07-01: repealed. */
    arrive(&d, "2027-07-01T04:00:00Z");
    rec = decide(f, &d);
    expect(rec, BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);
    assert_non_null(strstr(detail(rec, PR_R_DE_MINIMIS_SUSPENDED), "repealed since 2027-07-01"));
}

/* Country codes are matched in the form the policy and reference data use:
 * " cn" and "hk" are CN and HK, so they cannot slip past the CN/HK row. */
static void test_country_codes_canonical(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    arrive(&d, "2025-06-01T12:00:00Z");
    base_lines[0].origin_country = S(" cn");
    base_lines[1].origin_country = S("hk ");
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);
    assert_string_equal(
        detail(rec, PR_R_DE_MINIMIS_SUSPENDED),
        "line 1 origin CN, line 2 origin HK: de minimis suspended since 2025-05-02T04:01:00Z");
    /* What is not a code in another case or spacing stays as sent. */
    base_declaration(&d);
    arrive(&d, "2025-06-01T12:00:00Z");
    base_lines[1].origin_country = S("C N");
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
}

static void test_combinations_and_lanes(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    base_lines[0].hts = S("61091000");     /* HTS_INVALID 150 */
    base_lines[1].description = S("gift"); /* VAGUE 150 */
    expect(decide(f, &d), BIT(PR_R_HTS_INVALID) | BIT(PR_R_VAGUE_DESCRIPTION), 300, PR_DM_ELIGIBLE,
           PR_LANE_YELLOW);
    d.consignee.address = S("N.A."); /* MISSING 200 -> 500 */
    expect(decide(f, &d),
           BIT(PR_R_HTS_INVALID) | BIT(PR_R_VAGUE_DESCRIPTION) | BIT(PR_R_MISSING_DATA), 500,
           PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    d.has_freight = true; /* FREIGHT 150 -> 650 */
    d.freight_usd_cents = 300000;
    d.value_usd_cents = 90000; /* and over the threshold: BLUE alone, RED by score */
    struct pr_record *rec = decide(f, &d);
    expect(rec,
           BIT(PR_R_HTS_INVALID) | BIT(PR_R_VAGUE_DESCRIPTION) | BIT(PR_R_MISSING_DATA) |
               BIT(PR_R_FREIGHT_VALUE_MISMATCH) | BIT(PR_R_VALUE_OVER_THRESHOLD),
           650, PR_DM_INELIGIBLE_VALUE, PR_LANE_RED);
}

/* The shipped rule and policy files in place of the builtin rules. */
static void use_shipped_rules(struct chain_fixture *f) {
    char err[512] = "";
    struct pr_rules *shipped =
        pr_rules_load(PR_SOURCE_DIR "/schemas/rules.yaml", PR_SOURCE_DIR "/schemas/policy-us.yaml",
                      err, sizeof(err));
    if (!shipped) print_error("%s\n", err);
    assert_non_null(shipped);
    pr_rules_free(f->rules);
    f->rules = shipped;
}

#define DAY_MS 86400000LL

static void test_date_implausible_extremes(void **state) {
    struct chain_fixture *f = *state;
    use_shipped_rules(f);
    static const struct {
        const char *name;
        int64_t arrival;
        const char *text;
    } cases[] = {
        {"1900", -2208988800000LL, "1900-01-01T00:00:00.000Z"},
        {"1970", 0, "1970-01-01T00:00:00.000Z"},
        {"INT64_MIN", INT64_MIN, "-292275055-05-16T16:47:04.192Z"},
        {"INT64_MAX", INT64_MAX, "292278994-08-17T07:12:55.807Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pr_declaration d;
        base_declaration(&d);
        /* Filed now (2026-01-15: every origin suspended since 2025-08-29). The
         * same parcel with a plausible arrival is BLUE SUSPENDED; under the
         * arrival's own row it would be GREEN ELIGIBLE ($200 "beginning") for
         * the past ones. */
        assert_int_equal(pr_parse_utc("2026-01-15T00:00:00Z", &d.event_time), PR_OK);
        d.arrival_time = cases[i].arrival;
        print_message("arrival %s\n", cases[i].name);
        struct pr_record *rec = decide(f, &d);
        expect(rec, BIT(PR_R_DATE_IMPLAUSIBLE) | BIT(PR_R_DE_MINIMIS_SUSPENDED), 300,
               PR_DM_SUSPENDED, PR_LANE_YELLOW);
        char want[256];
        snprintf(want, sizeof(want),
                 "arrival_time %s is more than 30 days %s event_time 2026-01-15T00:00:00.000Z: "
                 "de minimis taken at event_time",
                 cases[i].text, cases[i].arrival < d.event_time ? "before" : "after");
        assert_string_equal(detail(rec, PR_R_DATE_IMPLAUSIBLE), want);
        assert_int_equal(rec->reasons[PR_R_DATE_IMPLAUSIBLE].points, 300);
        assert_string_equal(
            detail(rec, PR_R_DE_MINIMIS_SUSPENDED),
            "line 1 origin VN, line 2 origin VN: de minimis suspended since 2025-08-29T04:01:00Z");
    }
    /* The control: arriving a day after filing, plausible, the same row. */
    struct pr_declaration d;
    base_declaration(&d);
    assert_int_equal(pr_parse_utc("2026-01-15T00:00:00Z", &d.event_time), PR_OK);
    d.arrival_time = d.event_time + DAY_MS;
    expect(decide(f, &d), BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);

    /* Both instants at opposite ends: the distance (2^64 - 1 ms) is taken
     * without overflow; the row is event_time's, here the beginning ($200). */
    base_declaration(&d);
    d.arrival_time = INT64_MAX;
    d.event_time = INT64_MIN;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_DATE_IMPLAUSIBLE), 300, PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    assert_string_equal(
        detail(rec, PR_R_DATE_IMPLAUSIBLE),
        "arrival_time 292278994-08-17T07:12:55.807Z is more than 30 days after event_time "
        "-292275055-05-16T16:47:04.192Z: de minimis taken at event_time");
    d.arrival_time = INT64_MIN;
    d.event_time = INT64_MAX; /* the repeal row */
    expect(decide(f, &d), BIT(PR_R_DATE_IMPLAUSIBLE) | BIT(PR_R_DE_MINIMIS_SUSPENDED), 300,
           PR_DM_SUSPENDED, PR_LANE_YELLOW);
    d.arrival_time = INT64_MIN;
    d.event_time = INT64_MIN; /* equal: plausible, whatever the instant */
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
}

static void test_date_implausible_window_boundary(void **state) {
    struct chain_fixture *f = *state;
    use_shipped_rules(f);
    struct pr_declaration d;
    /* Filed 2016-03-20 ($800 since 2016-03-10), arriving 30 days earlier
     * (2016-02-19: $200). A $300 parcel. */
    base_declaration(&d);
    d.value_usd_cents = 30000;
    base_lines[1].value_usd_cents = 26000;
    assert_int_equal(pr_parse_utc("2016-03-20T00:00:00Z", &d.event_time), PR_OK);
    d.arrival_time = d.event_time - 30 * DAY_MS; /* exactly 30 days: plausible */
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_VALUE_OVER_THRESHOLD), 0, PR_DM_INELIGIBLE_VALUE, PR_LANE_BLUE);
    assert_string_equal(
        detail(rec, PR_R_VALUE_OVER_THRESHOLD),
        "value 30000 cents above threshold 20000 cents (in force since the beginning)");
    d.arrival_time -= 1; /* 30 days and 1 ms: implausible, the $800 row of event_time */
    rec = decide(f, &d);
    expect(rec, BIT(PR_R_DATE_IMPLAUSIBLE), 300, PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    assert_string_equal(
        detail(rec, PR_R_DATE_IMPLAUSIBLE),
        "arrival_time 2016-02-18T23:59:59.999Z is more than 30 days before event_time "
        "2016-03-20T00:00:00.000Z: de minimis taken at event_time");

    /* After: filed 2025-08-01 (CN and HK suspended), arriving 30 days later
     * (2025-08-31: every origin suspended). */
    base_declaration(&d);
    assert_int_equal(pr_parse_utc("2025-08-01T00:00:00Z", &d.event_time), PR_OK);
    d.arrival_time = d.event_time + 30 * DAY_MS;
    expect(decide(f, &d), BIT(PR_R_DE_MINIMIS_SUSPENDED), 0, PR_DM_SUSPENDED, PR_LANE_BLUE);
    d.arrival_time += 1;
    rec = decide(f, &d);
    expect(rec, BIT(PR_R_DATE_IMPLAUSIBLE), 300, PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    assert_string_equal(
        detail(rec, PR_R_DATE_IMPLAUSIBLE),
        "arrival_time 2025-08-31T00:00:00.001Z is more than 30 days after event_time "
        "2025-08-01T00:00:00.000Z: de minimis taken at event_time");
}

static char *write_file(const char *text);

static void test_date_implausible_from_the_rule_file(void **state) {
    struct chain_fixture *f = *state;
    char err[512] = "";
    char *path =
        write_file("version: w2\npoints:\n  DATE_IMPLAUSIBLE: 450\narrival_window_days: 2\n");
    struct pr_rules *r = pr_rules_load(path, NULL, err, sizeof(err));
    if (!r) print_error("%s\n", err);
    assert_non_null(r);
    unlink(path);
    assert_int_equal(r->points[PR_R_DATE_IMPLAUSIBLE], 450);
    assert_int_equal(r->arrival_window_days, 2);
    pr_rules_free(f->rules);
    f->rules = r;
    struct pr_declaration d;
    base_declaration(&d);
    d.arrival_time = d.event_time + 2 * DAY_MS;
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    d.arrival_time += 1;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_DATE_IMPLAUSIBLE), 450, PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    assert_string_equal(
        detail(rec, PR_R_DATE_IMPLAUSIBLE),
        "arrival_time 2025-03-03T11:00:00.001Z is more than 2 days after event_time "
        "2025-03-01T11:00:00.000Z: de minimis taken at event_time");
}

static void test_random_compliance(void **state) {
    struct chain_fixture *f = *state;
    struct pr_declaration d;
    base_declaration(&d);
    f->rules->sample_rate = 1.0;
    struct pr_record *rec = decide(f, &d);
    expect(rec, BIT(PR_R_RANDOM_COMPLIANCE), 0, PR_DM_ELIGIBLE, PR_LANE_YELLOW);
    assert_true(rec->random_selection);
    f->rules->sample_rate = 0.0;
    expect(decide(f, &d), 0, 0, PR_DM_ELIGIBLE, PR_LANE_GREEN);
    /* At the default 1% rate, about 1% of ids are chosen, always the same. */
    f->rules->sample_rate = 0.01;
    int chosen = 0, again = 0;
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "D%08d", i);
        d.declaration_id = (struct pr_str){id, (uint32_t)strlen(id)};
        bool first = decide(f, &d)->random_selection;
        chosen += first;
        again += decide(f, &d)->random_selection == first;
    }
    assert_int_equal(again, 20000);
    assert_in_range(chosen, 150, 250);
}

static void test_siphash_reference_vector(void **state) {
    (void)state;
    /* SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e. */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++) msg[i] = (uint8_t)i;
    assert_true(pr_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
    assert_true(pr_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
}

static char *write_file(const char *text) {
    static char path[64];
    strcpy(path, "/tmp/pr-test-rules-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void test_shipped_files_are_the_defaults(void **state) {
    (void)state;
    char err[512] = "";
    struct pr_rules *shipped =
        pr_rules_load(PR_SOURCE_DIR "/schemas/rules.yaml", PR_SOURCE_DIR "/schemas/policy-us.yaml",
                      err, sizeof(err));
    if (!shipped) print_error("%s\n", err);
    assert_non_null(shipped);
    struct pr_rules *builtin = pr_rules_new_default();
    assert_string_equal(shipped->version, "default-1/us-2025-08");
    assert_memory_equal(shipped->points, builtin->points, sizeof(builtin->points));
    assert_memory_equal(shipped->violator_points, builtin->violator_points,
                        sizeof(builtin->violator_points));
    assert_int_equal(shipped->lane_red_score, builtin->lane_red_score);
    assert_int_equal(shipped->lane_yellow_score, builtin->lane_yellow_score);
    assert_int_equal(shipped->red_violator_severity, 3);
    assert_true(shipped->undervalue_factor == builtin->undervalue_factor);
    assert_true(shipped->freight_factor == builtin->freight_factor);
    assert_true(shipped->sample_rate == builtin->sample_rate);
    assert_memory_equal(shipped->sample_key, builtin->sample_key, 16);
    assert_int_equal(shipped->cluster_size, 5);
    assert_int_equal(shipped->arrival_window_days, 30);
    assert_int_equal(builtin->arrival_window_days, 30);
    assert_int_equal(shipped->points[PR_R_DATE_IMPLAUSIBLE], 300);
    assert_int_equal(shipped->score_cap, builtin->score_cap);
    assert_int_equal(shipped->min_description_letters, builtin->min_description_letters);
    assert_int_equal(shipped->day_offset_minutes, 0);
    assert_int_equal(shipped->stop_word_count, builtin->stop_word_count);
    for (size_t i = 0; i < builtin->stop_word_count; i++)
        assert_string_equal(shipped->stop_words[i], builtin->stop_words[i]);
    assert_int_equal(shipped->policy.count, builtin->policy.count);
    for (int i = 0; i < builtin->policy.count; i++) {
        const struct pr_policy_row *a = &shipped->policy.rows[i], *b = &builtin->policy.rows[i];
        assert_true(a->from_ms == b->from_ms);
        assert_int_equal(a->repealed, b->repealed);
        assert_int_equal(a->suspend_all, b->suspend_all);
        assert_int_equal(a->suspended_count, b->suspended_count);
        if (!a->repealed) assert_int_equal(a->threshold_cents, b->threshold_cents);
    }
    pr_rules_free(shipped);
    pr_rules_free(builtin);
}

static void test_rule_file_errors_name_file_and_line(void **state) {
    (void)state;
    char err[512];
    char *path = write_file("version: x1\npoints:\n  MISSING_DATA: 250\n  NOT_A_CODE: 3\n");
    assert_null(pr_rules_load(path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, ":4:"));
    assert_non_null(strstr(err, "NOT_A_CODE"));
    unlink(path);
    path = write_file("version: x1\nlanes:\n  red_score: lots\n");
    assert_null(pr_rules_load(path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, ":3:"));
    unlink(path);
    path = write_file("points: {MISSING_DATA: 10}\n");
    assert_null(pr_rules_load(path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "version"));
    unlink(path);
    path = write_file("version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: 100\n"
                      "  - from: 2020-01-01\n    threshold_usd_cents: 200\n");
    assert_null(pr_rules_load(NULL, path, err, sizeof(err)));
    assert_non_null(strstr(err, ":5:"));
    unlink(path);
    /* A good override changes what it names and the version. */
    path = write_file("version: strict-2\npoints:\n  MISSING_DATA: 350\nsample_rate: 0\n");
    struct pr_rules *r = pr_rules_load(path, NULL, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(r->points[PR_R_MISSING_DATA], 350);
    assert_int_equal(r->points[PR_R_HTS_INVALID], 150);
    assert_string_equal(r->version, "strict-2/us-builtin-1");
    pr_rules_free(r);
    unlink(path);
}

/* The file is refused with exactly "<path>:<want>". policy: the text is a
 * policy file, else a rule file. */
static void expect_refused(const char *text, bool policy, const char *want) {
    char path[64], err[512] = "", full[640];
    snprintf(path, sizeof(path), "%s", write_file(text));
    struct pr_rules *r = policy ? pr_rules_load(NULL, path, err, sizeof(err))
                                : pr_rules_load(path, NULL, err, sizeof(err));
    unlink(path);
    if (r) print_error("accepted: %s\n", text);
    assert_null(r);
    snprintf(full, sizeof(full), "%s:%s", path, want);
    assert_string_equal(err, full);
}

static void test_rule_file_semantic_refusals(void **state) {
    (void)state;
    /* The reproduction of issue 10: every decision RED with score 0. */
    expect_refused("version: x1\nlanes:\n  yellow_score: 900\n  red_score: 0\n", false,
                   "4: key 'lanes.red_score': expected an integer from 1 to 1000: at 0 every "
                   "declaration, with or without a reason, would be in that lane");
    expect_refused(
        "version: x1\nlanes:\n  yellow_score: 900\n  red_score: 500\n", false,
        "4: lanes: yellow_score 900 (line 3) must be below red_score 500 (line 4): otherwise "
        "no score is YELLOW, and scores from red_score on are RED");
    expect_refused(
        "version: x1\nlanes:\n  red_score: 500\n  yellow_score: 500\n", false,
        "4: lanes: yellow_score 500 (line 4) must be below red_score 500 (line 3): otherwise "
        "no score is YELLOW, and scores from red_score on are RED");
    expect_refused("version: x1\nlanes: {yellow_score: 600}\n", false,
                   "2: lanes: yellow_score 600 (line 2) must be below red_score 600 (the default): "
                   "otherwise no score is YELLOW, and scores from red_score on are RED");
    expect_refused("version: x1\nlanes:\n  yellow_score: 0\n", false,
                   "3: key 'lanes.yellow_score': expected an integer from 1 to 1000: at 0 every "
                   "declaration, with or without a reason, would be in that lane");
    expect_refused("version: x1\nlanes:\n  score_cap: 500\n", false,
                   "3: lanes: score_cap 500 (line 3) must be at least red_score 600 (the default): "
                   "otherwise no score reaches RED");
    expect_refused("version: x1\nlanes:\n  score_cap: 700\n  red_score: 800\n", false,
                   "4: lanes: score_cap 700 (line 3) must be at least red_score 800 (line 4): "
                   "otherwise no score reaches RED");
    expect_refused(
        "version: x1\nlanes:\n  score_cap: 1001\n", false,
        "3: key 'lanes.score_cap': expected an integer from 0 to 1000: the decision's score "
        "is 0 to 1000");
    expect_refused(
        "version: x1\nlanes:\n  red_violator_severity: 4\n", false,
        "3: key 'lanes.red_violator_severity': expected an integer from 0 to 3: 0 is never, "
        "violators.csv severities are 1 to 3");
    expect_refused(
        "version: x1\npoints:\n  MISSING_DATA: 200\n  DATE_IMPLAUSIBLE: -300\n", false,
        "4: key 'points.DATE_IMPLAUSIBLE': expected an integer from 0 to 1000: points only "
        "add to the score; a negative value would cancel other reasons");
    expect_refused(
        "version: x1\nviolator_points: {1: 200, 2: 400, 3: -700}\n", false,
        "2: key 'violator_points.3': expected an integer from 0 to 1000: points only add to "
        "the score; a negative value would cancel other reasons");
    expect_refused(
        "version: x1\nviolator_points:\n  4: 900\n", false,
        "3: key 'violator_points severity': expected an integer from 1 to 3: violators.csv "
        "severities are 1 to 3");
    expect_refused(
        "version: x1\npoints:\n  KNOWN_VIOLATOR: 500\n", false,
        "3: key 'points.KNOWN_VIOLATOR': its points are set by severity, in 'violator_points'");
    expect_refused("version: x1\npoints:\n  HIGH_RISK_ORIGIN: 500\n", false,
                   "3: key 'points.HIGH_RISK_ORIGIN': its points come from countries.csv");
    expect_refused(
        "version: x1\nsample_rate: 1.5\n", false,
        "2: key 'sample_rate': expected a number from 0 and at most 1: a rate is a fraction");
    expect_refused(
        "version: x1\nsample_rate: -0.01\n", false,
        "2: key 'sample_rate': expected a number from 0 and at most 1: a rate is a fraction");
    expect_refused(
        "version: x1\nsample_rate: nan\n", false,
        "2: key 'sample_rate': expected a number from 0 and at most 1: a rate is a fraction");
    expect_refused("version: x1\nundervalue_factor: 0\n", false,
                   "2: key 'undervalue_factor': expected a number above 0 and at most 100: at 0 "
                   "UNDERVALUED could never fire");
    expect_refused("version: x1\n\nfreight_factor: -3\n", false,
                   "3: key 'freight_factor': expected a number above 0 and at most 1000: at 0 "
                   "FREIGHT_VALUE_MISMATCH would fire on every freight charge");
    expect_refused("version: x1\nmin_description_letters: -1\n", false,
                   "2: key 'min_description_letters': expected an integer from 0 to 100");
    expect_refused("version: x1\narrival_window_days: 0\n", false,
                   "2: key 'arrival_window_days': expected an integer from 1 to 36500: at 0 an "
                   "arrival_time off event_time by 1 ms would be DATE_IMPLAUSIBLE");
    expect_refused(
        "version: x1\ncluster_size: 1\n", false,
        "2: key 'cluster_size': expected an integer from 2 to 10000: the count includes the "
        "declaration itself, so 1 would make every consignee a cluster");
    expect_refused("version: x1\nsample_key: 0x617263656c7269736b2d72632d3031\n", false,
                   "2: key 'sample_key': expected 32 hex digits");
    /* A key twice: YAML forbids it, libyaml loads it and the later one would win. */
    expect_refused("version: x1\nlanes:\n  red_score: 600\n  yellow_score: 300\n  red_score: 0\n",
                   false, "5: key 'lanes.red_score' appears twice (first on line 3)");
    expect_refused("version: x1\npoints: {MISSING_DATA: 200}\npoints: {MISSING_DATA: 0}\n", false,
                   "3: key 'points' appears twice (first on line 2)");
    expect_refused("version: x1\npoints:\n  MISSING_DATA: 200\n  MISSING_DATA: 0\n", false,
                   "4: key 'points.MISSING_DATA' appears twice (first on line 3)");
    expect_refused("version: x1\nviolator_points: {3: 700, 03: 0}\n", false,
                   "2: key 'violator_points.3' appears twice (first on line 2)");

    /* The policy file. */
    expect_refused(
        "version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: 20000\n"
        "  - from: 2025-05-02T04:01:00Z\n    threshold_usd_cents: 80000\n"
        "  - from: 2016-03-10T05:00:00Z\n    threshold_usd_cents: 80000\n",
        true,
        "7: rows must be in increasing order of 'from': 2016-03-10T05:00:00Z is not after "
        "2025-05-02T04:01:00Z (line 5); the row in force at an instant is the last one from "
        "before it");
    expect_refused(
        "version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: 20000\n"
        "  - threshold_usd_cents: 80000\n    from: beginning\n",
        true,
        "6: rows must be in increasing order of 'from': beginning is not after beginning "
        "(line 3); the row in force at an instant is the last one from before it");
    expect_refused(
        "version: p2\nrows:\n  - from: 2016-03-10T05:00:00Z\n    threshold_usd_cents: 80000\n",
        true, "3: the first row must be 'from: beginning' (every instant needs a row)");
    expect_refused(
        "version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: -1\n", true,
        "4: key 'threshold_usd_cents': expected an integer from 0 to 100000000: a threshold is "
        "a value in cents, $0 to $1,000,000");
    expect_refused("version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: 20000\n"
                   "    threshold_usd_cents: 0\n",
                   true, "5: key 'rows.threshold_usd_cents' appears twice (first on line 4)");
    expect_refused(
        "version: p2\nrows:\n  - from: beginning\n    threshold_usd_cents: 20000\nversion: p3\n",
        true, "5: key 'version' appears twice (first on line 1)");

    /* Edges that are meaningful are accepted: rate 0 and 1, zero points,
     * a cap equal to red_score, min_description_letters 0, no stop words. */
    char err[512] = "";
    char *path = write_file("version: edge-1\nsample_rate: 1\npoints: {MISSING_DATA: 0}\n"
                            "lanes: {yellow_score: 1, red_score: 2, score_cap: 2}\n"
                            "min_description_letters: 0\nstop_words: []\narrival_window_days: 1\n"
                            "sample_key: 000102030405060708090A0B0C0D0E0F\n");
    struct pr_rules *r = pr_rules_load(path, NULL, err, sizeof(err));
    if (!r) print_error("%s\n", err);
    assert_non_null(r);
    assert_true(r->sample_rate == 1.0);
    assert_int_equal(r->points[PR_R_MISSING_DATA], 0);
    assert_int_equal(r->lane_yellow_score, 1);
    assert_int_equal(r->lane_red_score, 2);
    assert_int_equal(r->score_cap, 2);
    assert_int_equal(r->stop_word_count, 0);
    assert_int_equal(r->arrival_window_days, 1);
    assert_int_equal(r->sample_key[10], 10);
    assert_int_equal(r->sample_key[15], 15);
    pr_rules_free(r);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_is_green, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_lines_and_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blank_hts_and_description_are_missing_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hts_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vague_descriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freight_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_country_codes_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_combinations_and_lanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_compliance, setup, teardown),
        cmocka_unit_test(test_siphash_reference_vector),
        cmocka_unit_test(test_shipped_files_are_the_defaults),
        cmocka_unit_test(test_rule_file_errors_name_file_and_line),
        cmocka_unit_test(test_rule_file_semantic_refusals),
        cmocka_unit_test_setup_teardown(test_date_implausible_extremes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_date_implausible_window_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_date_implausible_from_the_rule_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
