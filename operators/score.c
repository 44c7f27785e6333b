/*
 * score - adds up the points of the reasons that fired (capped), then sets
 * de_minimis and the lane by the first rule that holds (DOMAIN.md section 5).
 */
#include "rules.h"
#include "operator.h"

void pr_score_record(const struct pr_rules *rules, struct pr_record *rec, int64_t now_ms);

void pr_score_record(const struct pr_rules *rules, struct pr_record *rec, int64_t now_ms) {
    int64_t score = 0;
    for (int code = 0; code < PR_R_COUNT; code++)
        if (pr_record_has(rec, (enum pr_reason_code)code)) score += rec->reasons[code].points;
    if (score > rules->score_cap) score = rules->score_cap;
    if (score < 0) score = 0;
    rec->score = (int32_t)score;

    if (rec->suspended)
        rec->de_minimis = PR_DM_SUSPENDED;
    else if (pr_record_has(rec, PR_R_EXCLUDED_GOODS))
        rec->de_minimis = PR_DM_INELIGIBLE_GOODS;
    else if (rec->value_over_threshold)
        rec->de_minimis = PR_DM_INELIGIBLE_VALUE;
    else if (rec->aggregate_over_threshold)
        rec->de_minimis = PR_DM_INELIGIBLE_AGGREGATE;
    else
        rec->de_minimis = PR_DM_ELIGIBLE;

    if (rec->score >= rules->lane_red_score ||
        (rules->red_violator_severity > 0 &&
         rec->violator_severity >= rules->red_violator_severity))
        rec->lane = PR_LANE_RED;
    else if (rec->score >= rules->lane_yellow_score || rec->random_selection)
        rec->lane = PR_LANE_YELLOW;
    else if (rec->de_minimis != PR_DM_ELIGIBLE)
        rec->lane = PR_LANE_BLUE;
    else
        rec->lane = PR_LANE_GREEN;
    rec->decided_at = now_ms;
}

static int pr_score_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!pr_record_dead(rec)) pr_score_record(batch->rules, rec, batch->now_ms);
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_score = {
    .name = "score",
    .description = "score, de_minimis status and lane",
    .process = pr_score_process,
};
