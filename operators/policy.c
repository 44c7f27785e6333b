/*
 * policy - the de minimis policy in force at each declaration's arrival_time
 * (DOMAIN.md sections 1 and 8): DE_MINIMIS_SUSPENDED when the row in force
 * suspends (or has repealed) de minimis for any line's origin_country, else
 * VALUE_OVER_THRESHOLD when value_usd_cents alone is above the threshold.
 * EXCLUDED_GOODS and PGA_REGULATED need the tariff reference and come with
 * the enrich operator.
 */
#include "../pipeline/rules.h"
#include "operator.h"

#include <stdio.h>
#include <string.h>

static void pr_policy_record(struct pr_batch *batch, struct pr_record *rec) {
    const struct pr_rules *rules = batch->rules;
    const struct pr_declaration *d = &rec->decl;
    const struct pr_policy_row *row = pr_policy_at(&rules->policy, d->arrival_time);
    char evidence[256];
    size_t n = 0;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line *line = &d->lines[i];
        if (!pr_policy_row_suspends(row, line->origin_country)) continue;
        rec->suspended = true;
        if (n < sizeof(evidence) - 48) {
            int w = snprintf(evidence + n, sizeof(evidence) - n, "%sline %u origin %.*s",
                             n ? ", " : "", i + 1, (int)(line->origin_country.len > 8 ? 8 : line->origin_country.len),
                             line->origin_country.ptr);
            if (w > 0) n += (size_t)w;
        }
    }
    char since[32];
    pr_format_utc(row->from_ms, since, sizeof(since));
    if (rec->suspended) {
        pr_record_firef(batch, rec, PR_R_DE_MINIMIS_SUSPENDED,
                        rules->points[PR_R_DE_MINIMIS_SUSPENDED], "%.*s: %s since %s", (int)n,
                        evidence, row->repealed ? "de minimis repealed" : "de minimis suspended",
                        since);
        return;
    }
    if (d->value_usd_cents > row->threshold_cents) {
        rec->value_over_threshold = true;
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
    .description = "de minimis timeline: DE_MINIMIS_SUSPENDED, VALUE_OVER_THRESHOLD",
    .process = pr_policy_process,
};
