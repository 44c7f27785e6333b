/*
 * route - decides where each record goes: dead letters to the DLQ topic,
 * every decision to the decisions topic, YELLOW and RED decisions also to
 * the alerts topic; the declaration that first takes a consignee-day over
 * the threshold also yields one aggregate alert (alerts only).
 */
#include "operator.h"

static int pr_route_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) {
            rec->outputs = PR_OUT_DLQ;
            continue;
        }
        rec->outputs = PR_OUT_DECISION;
        if (rec->lane >= PR_LANE_YELLOW) rec->outputs |= PR_OUT_ALERT;
        if (rec->aggregate_crossing) rec->outputs |= PR_OUT_AGGREGATE_ALERT;
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_route = {
    .name = "route",
    .description = "decisions, alerts (YELLOW/RED) or DLQ",
    .process = pr_route_process,
};
