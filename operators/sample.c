/*
 * sample - the random compliance sample: RANDOM_COMPLIANCE fires when the
 * keyed SipHash-2-4 of declaration_id is below rate x 2^64. Keyed and
 * deterministic, so a replay decides the same and filers cannot predict it
 * without the key.
 */
#include "hash.h"
#include "rules.h"
#include "operator.h"

#include <math.h>

static uint64_t pr_sample_cutoff(double rate) {
    if (rate <= 0) return 0;
    if (rate >= 1) return UINT64_MAX;
    return (uint64_t)ldexp(rate, 64);
}

static int pr_sample_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    const struct pr_rules *rules = batch->rules;
    uint64_t cutoff = pr_sample_cutoff(rules->sample_rate);
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        struct pr_str id = rec->decl.declaration_id;
        uint64_t h = pr_siphash24(rules->sample_key, id.ptr, id.len);
        if (h < cutoff || (cutoff == UINT64_MAX)) {
            rec->random_selection = true;
            pr_record_firef(
                batch, rec, PR_R_RANDOM_COMPLIANCE, rules->points[PR_R_RANDOM_COMPLIANCE],
                "selected by the random compliance sample at rate %g", rules->sample_rate);
        }
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_sample = {
    .name = "sample",
    .description = "RANDOM_COMPLIANCE by keyed hash of declaration_id",
    .process = pr_sample_process,
};
