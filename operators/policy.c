/*
 * policy - the de minimis policy in force at each declaration's arrival_time
 * (DOMAIN.md sections 1, 5 and 8). DATE_IMPLAUSIBLE when arrival_time is more
 * than the rule file's arrival_window_days before or after event_time; the
 * policy row is then the one in force at event_time instead, so a backdated
 * (or far-future) arrival cannot claim another regime. Then
 * DE_MINIMIS_SUSPENDED when the row in force
 * suspends (or has repealed) de minimis for any line's origin_country, else
 * VALUE_OVER_THRESHOLD when value_usd_cents alone is above the threshold.
 * With the tariff reference (enrich before policy in the chain):
 * EXCLUDED_GOODS when a line's HTS flags include ADCVD, QUOTA or EXCISE,
 * PGA_REGULATED when they include a PGA_ flag.
 */
#include "refdata.h"
#include "rules.h"
#include "operator.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* "2025-05-02T04:01:00.000Z" for any int64 instant: floor division (negative
 * instants and INT64_MIN included), years past 9999 or before 0 in full, the
 * raw milliseconds when the C library cannot represent it. */
static void pr_policy_format_ms(int64_t ms, char *buf, size_t size) {
    int64_t rem = ms % 1000;
    time_t secs = (time_t)(ms / 1000 - (rem < 0 ? 1 : 0));
    if (rem < 0) rem += 1000;
    struct tm tm;
    char date[64];
    if (!gmtime_r(&secs, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "%lld ms", (long long)ms);
        return;
    }
    if (snprintf(buf, size, "%s.%03dZ", date, (int)rem) < 0)
        snprintf(buf, size, "%lld ms", (long long)ms);
}

/* "line 1: ADCVD|EXCISE, line 3: QUOTA" for the lines whose flags meet mask. */
static void pr_policy_flags(struct pr_batch *batch, struct pr_record *rec, uint32_t mask,
                            enum pr_reason_code code) {
    char evidence[512], flags[96];
    size_t n = 0;
    for (uint32_t i = 0; i < rec->decl.line_count; i++) {
        uint32_t hit = rec->line_refs[i].flags & mask;
        if (!hit || n >= sizeof(evidence) - 120) continue;
        pr_hts_flags_format(hit, flags, sizeof(flags));
        int w = snprintf(evidence + n, sizeof(evidence) - n, "%sline %u: %s", n ? ", " : "", i + 1,
                         flags);
        if (w > 0) n += (size_t)w;
    }
    if (n) pr_record_fire(batch, rec, code, batch->rules->points[code], evidence, n);
}

static void pr_policy_record(struct pr_batch *batch, struct pr_record *rec) {
    if (rec->line_refs) {
        pr_policy_flags(batch, rec, PR_HTS_EXCLUDED, PR_R_EXCLUDED_GOODS);
        pr_policy_flags(batch, rec, PR_HTS_PGA, PR_R_PGA_REGULATED);
    }
    const struct pr_rules *rules = batch->rules;
    const struct pr_declaration *d = &rec->decl;
    if (pr_rules_arrival_implausible(rules, d)) {
        char arrival[64], event[64];
        pr_policy_format_ms(d->arrival_time, arrival, sizeof(arrival));
        pr_policy_format_ms(d->event_time, event, sizeof(event));
        pr_record_firef(
            batch, rec, PR_R_DATE_IMPLAUSIBLE, rules->points[PR_R_DATE_IMPLAUSIBLE],
            "arrival_time %s is more than %d days %s event_time %s: de minimis taken at "
            "event_time",
            arrival, rules->arrival_window_days,
            d->arrival_time < d->event_time ? "before" : "after", event);
    }
    const struct pr_policy_row *row =
        pr_policy_at(&rules->policy, pr_rules_policy_instant(rules, d));
    char evidence[256];
    size_t n = 0;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line *line = &d->lines[i];
        if (!pr_policy_row_suspends(row, line->origin_country)) continue;
        rec->suspended = true;
        if (n < sizeof(evidence) - 48) {
            int w = snprintf(evidence + n, sizeof(evidence) - n, "%sline %u origin %.*s",
                             n ? ", " : "", i + 1,
                             pr_utf8_prefix(line->origin_country.ptr, line->origin_country.len, 8),
                             line->origin_country.ptr);
            if (w > 0) n += (size_t)w;
        }
    }
    char since[32];
    if (rec->suspended) {
        pr_format_utc(row->from_ms, since, sizeof(since));
        pr_record_firef(batch, rec, PR_R_DE_MINIMIS_SUSPENDED,
                        rules->points[PR_R_DE_MINIMIS_SUSPENDED], "%.*s: %s since %s", (int)n,
                        evidence, row->repealed ? "de minimis repealed" : "de minimis suspended",
                        since);
        return;
    }
    if (d->value_usd_cents > row->threshold_cents) {
        rec->value_over_threshold = true;
        if (row->from_ms != INT64_MIN) pr_format_utc(row->from_ms, since, sizeof(since));
        pr_record_firef(batch, rec, PR_R_VALUE_OVER_THRESHOLD,
                        rules->points[PR_R_VALUE_OVER_THRESHOLD],
                        "value %lld cents above threshold %lld cents (in force since %s)",
                        (long long)d->value_usd_cents, (long long)row->threshold_cents,
                        row->from_ms == INT64_MIN ? "the beginning" : since);
    }
}

static int pr_policy_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!pr_record_dead(rec)) pr_policy_record(batch, rec);
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_policy = {
    .name = "policy",
    .description = "de minimis: DATE_IMPLAUSIBLE, DE_MINIMIS_SUSPENDED, VALUE_OVER_THRESHOLD, "
                   "EXCLUDED_GOODS, PGA_REGULATED",
    .process = pr_policy_process,
};
