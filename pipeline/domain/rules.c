#include "rules.h"

#include <stdlib.h>
#include <string.h>

static const char *const pr_default_stop_words[] = {
    "GIFT",
    "GIFTS",
    "SAMPLE",
    "SAMPLES",
    "PARTS",
    "PART",
    "ACCESSORIES",
    "ACCESSORY",
    "GOODS",
    "ITEM",
    "ITEMS",
    "MERCHANDISE",
    "PRODUCT",
    "PRODUCTS",
    "STUFF",
    "MISC",
    "MISCELLANEOUS",
    "GENERAL",
    "CARGO",
    "CONSOLIDATED",
    "CLOTHING",
    "CLOTHES",
    "ELECTRONICS",
    "AS",
    "ORDERED",
    "PERSONAL",
    "EFFECTS",
    "OTHER",
    "OTHERS",
    "VARIOUS",
    "NA",
    "N",
    "A",
    "NONE",
    "UNKNOWN",
    "SET",
    "SETS",
};

int pr_rules_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct pr_rules *pr_rules_new_default(void) {
    struct pr_rules *r = pr_calloc(1, sizeof(*r));
    strcpy(r->version, "builtin-1/us-builtin-1");
    static const int32_t points[PR_R_COUNT] = {
        [PR_R_DE_MINIMIS_SUSPENDED] = 0,
        [PR_R_VALUE_OVER_THRESHOLD] = 0,
        [PR_R_AGGREGATE_OVER_THRESHOLD] = 200,
        [PR_R_SPLIT_SHIPMENT] = 300,
        [PR_R_EXCLUDED_GOODS] = 300,
        [PR_R_PGA_REGULATED] = 100,
        [PR_R_KNOWN_VIOLATOR] = 0,
        [PR_R_HTS_INVALID] = 150,
        [PR_R_WATCHED_COMMODITY] = 250,
        [PR_R_UNDERVALUED] = 200,
        [PR_R_VAGUE_DESCRIPTION] = 150,
        [PR_R_MISSING_DATA] = 200,
        [PR_R_FREIGHT_VALUE_MISMATCH] = 150,
        [PR_R_HIGH_RISK_ORIGIN] = 0,
        [PR_R_ADDRESS_CLUSTER] = 300,
        [PR_R_DATE_IMPLAUSIBLE] = 300,
        [PR_R_RANDOM_COMPLIANCE] = 0,
    };
    memcpy(r->points, points, sizeof(points));
    r->violator_points[1] = 200;
    r->violator_points[2] = 400;
    r->violator_points[3] = 700;
    r->lane_red_score = 600;
    r->lane_yellow_score = 300;
    r->red_violator_severity = 3;
    r->score_cap = 1000;
    r->undervalue_factor = 0.5;
    r->freight_factor = 3.0;
    r->min_description_letters = 3;
    r->cluster_size = 5;
    r->arrival_window_days = 30;
    r->sample_rate = 0.01;
    memcpy(r->sample_key, "parcelrisk-rc-01", 16);
    r->day_offset_minutes = 0;
    r->stop_word_count = PR_ARRAY_LEN(pr_default_stop_words);
    r->stop_words = pr_calloc(r->stop_word_count, sizeof(char *));
    for (size_t i = 0; i < r->stop_word_count; i++)
        r->stop_words[i] = pr_strdup(pr_default_stop_words[i]);
    qsort(r->stop_words, r->stop_word_count, sizeof(char *), pr_rules_cmp_str);

    /* The US timeline of DOMAIN.md section 8. */
    struct pr_policy *p = &r->policy;
    p->count = 5;
    p->rows[0] = (struct pr_policy_row){.from_ms = INT64_MIN, .threshold_cents = 20000};
    p->rows[1] = (struct pr_policy_row){.from_ms = 1457586000000LL, .threshold_cents = 80000};
    p->rows[2] = (struct pr_policy_row){
        .from_ms = 1746158460000LL, .threshold_cents = 80000, .suspended_count = 2};
    memcpy(p->rows[2].suspended[0], "CN", 3);
    memcpy(p->rows[2].suspended[1], "HK", 3);
    p->rows[3] = (struct pr_policy_row){
        .from_ms = 1756440060000LL, .threshold_cents = 80000, .suspend_all = true};
    p->rows[4] =
        (struct pr_policy_row){.from_ms = 1814414400000LL, .repealed = true, .suspend_all = true};
    return r;
}

void pr_rules_free(struct pr_rules *rules) {
    if (!rules) return;
    for (size_t i = 0; i < rules->stop_word_count; i++) free(rules->stop_words[i]);
    free(rules->stop_words);
    free(rules);
}

const char *pr_rules_version(const struct pr_rules *rules) {
    return rules ? rules->version : "";
}

bool pr_rules_is_stop_word(const struct pr_rules *rules, const char *token, size_t len) {
    if (len == 0) return false;
    size_t lo = 0, hi = rules->stop_word_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *w = rules->stop_words[mid];
        /* Most probes differ in the first letter: decide those without a call. */
        int c = (unsigned char)w[0] - (unsigned char)token[0];
        if (c == 0) {
            c = strncmp(w, token, len);
            if (c == 0) c = w[len] == '\0' ? 0 : 1;
        }
        if (c == 0) return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

const struct pr_policy_row *pr_policy_at(const struct pr_policy *policy, int64_t ms) {
    const struct pr_policy_row *found = &policy->rows[0];
    for (int i = 0; i < policy->count; i++) {
        if (policy->rows[i].from_ms <= ms)
            found = &policy->rows[i];
        else
            break;
    }
    return found;
}

bool pr_policy_row_suspends(const struct pr_policy_row *row, struct pr_str origin) {
    if (row->suspend_all || row->repealed) return true;
    for (int i = 0; i < row->suspended_count; i++)
        if (pr_str_eq(origin, row->suspended[i], strlen(row->suspended[i]))) return true;
    return false;
}

bool pr_rules_arrival_implausible(const struct pr_rules *rules, const struct pr_declaration *d) {
    /* |arrival - event| in uint64_t: the true distance of two int64 values is
     * below 2^64, and unsigned subtraction of the larger minus the smaller
     * gives it exactly (INT64_MAX - INT64_MIN included). */
    uint64_t a = (uint64_t)d->arrival_time, e = (uint64_t)d->event_time;
    uint64_t distance = d->arrival_time >= d->event_time ? a - e : e - a;
    uint64_t window =
        (uint64_t)(rules->arrival_window_days > 0 ? rules->arrival_window_days : 0) * 86400000u;
    return distance > window;
}

int64_t pr_rules_policy_instant(const struct pr_rules *rules, const struct pr_declaration *d) {
    return pr_rules_arrival_implausible(rules, d) ? d->event_time : d->arrival_time;
}
