/*
 * rules.h - the rule set (points, lane thresholds, stop words, factors,
 * sampling) and the de minimis policy timeline (DOMAIN.md sections 1, 5, 8).
 *
 * A pr_rules is immutable once built: the engine swaps a whole new one in
 * between batches, so an operator sees one version for a whole batch.
 */
#ifndef PR_RULES_H
#define PR_RULES_H

#include "record-t.h"

#define PR_POLICY_MAX_ROWS 64
#define PR_POLICY_MAX_ORIGINS 64

struct pr_policy_row {
    int64_t from_ms;         /* effective instant, inclusive */
    bool repealed;           /* de minimis no longer exists */
    int64_t threshold_cents; /* a value is within when <= threshold */
    bool suspend_all;
    int suspended_count;
    char suspended[PR_POLICY_MAX_ORIGINS][3];
};

struct pr_policy {
    int count;
    struct pr_policy_row rows[PR_POLICY_MAX_ROWS]; /* sorted by from_ms */
};

struct pr_rules {
    char version[100]; /* "<rules version>/<policy version>" */
    int32_t points[PR_R_COUNT];
    int32_t violator_points[4]; /* by severity 1..3 */
    int32_t lane_red_score, lane_yellow_score;
    int32_t red_violator_severity; /* a violator of this severity forces RED (3) */
    int32_t score_cap;
    double undervalue_factor;
    double freight_factor;
    int min_description_letters;
    int cluster_size;
    int arrival_window_days; /* DATE_IMPLAUSIBLE beyond this distance of arrival_time from
                                event_time */
    double sample_rate;
    uint8_t sample_key[16];
    int day_offset_minutes; /* arrival day = UTC day of arrival_time + offset */
    size_t stop_word_count;
    char **stop_words; /* upper-case, sorted */
    struct pr_policy policy;
};

/* Builds the shipped defaults of DOMAIN.md sections 5 and 8. */
struct pr_rules *pr_rules_new_default(void);
/* The defaults with the rule file and the policy file (either may be NULL or
 * empty: defaults) applied. NULL with "file:line: reason" in err on any
 * error; nothing is half-applied. ruleset_version is "<rules>/<policy>". */
struct pr_rules *pr_rules_load(const char *rules_path, const char *policy_path, char *err,
                               size_t err_size);
int pr_rules_cmp_str(const void *a, const void *b);
void pr_rules_free(struct pr_rules *rules);
const char *pr_rules_version(const struct pr_rules *rules);

bool pr_rules_is_stop_word(const struct pr_rules *rules, const char *token, size_t len);

/* The policy row in force at instant ms (the last row with from_ms <= ms). */
const struct pr_policy_row *pr_policy_at(const struct pr_policy *policy, int64_t ms);
bool pr_policy_row_suspends(const struct pr_policy_row *row, struct pr_str origin);

/* DATE_IMPLAUSIBLE (DOMAIN.md section 5): arrival_time is more than
 * arrival_window_days before or after event_time. Exact for every pair of
 * int64 values (the distance is taken without signed overflow). */
bool pr_rules_arrival_implausible(const struct pr_rules *rules, const struct pr_declaration *d);
/* The instant whose policy row decides de minimis: arrival_time, or
 * event_time when the arrival is implausible (so a backdated arrival cannot
 * claim an older regime). Every operator that reads the policy for a
 * declaration takes the row at this instant. */
int64_t pr_rules_policy_instant(const struct pr_rules *rules, const struct pr_declaration *d);

#endif
