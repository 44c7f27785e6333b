/*
 * encode - writes the Avro-binary Decision or DeadLetter of each record into
 * the batch arena, ready for the engine to produce.
 *
 * When the batch carries output ids (batch->frame: a schema registry is
 * configured), every value is framed: magic byte 0 and the 4-byte id of
 * its schema, then the same Avro binary (pipeline/codec/wire.h). A decision goes
 * to the decisions and (YELLOW, RED) the alerts topic as one buffer framed
 * with the decisions subject's id; the engine re-frames the alert copy in
 * the rare registry that gives the alerts subject another id. Without a
 * registry the bytes are exactly those of before.
 */
#include "codec.h"
#include "rules.h"
#include "wire.h"
#include "operator.h"

#include <stdlib.h>
#include <string.h>

struct pr_encode_ctx {
    struct pr_buf scratch;
    size_t dlq_keep_bytes;
};

static int pr_encode_init(struct pr_operator *op, const struct pr_operator_env *env) {
    struct pr_encode_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    pr_buf_init(&ctx->scratch);
    ctx->dlq_keep_bytes = (size_t)env->cfg->dlq_keep_bytes;
    op->ctx = ctx;
    return PR_OK;
}

static struct pr_str pr_encode_keep(struct pr_batch *batch, const struct pr_buf *buf) {
    char *copy = pr_arena_alloc(&batch->arena, buf->len);
    memcpy(copy, buf->data, buf->len);
    return (struct pr_str){copy, (uint32_t)buf->len};
}

/* pr_encode_keep behind the Confluent header of schema id. */
static struct pr_str pr_encode_keep_framed(struct pr_batch *batch, const struct pr_buf *buf,
                                           uint32_t id) {
    char *copy = pr_arena_alloc(&batch->arena, buf->len + PR_WIRE_HEADER_BYTES);
    pr_wire_header(id, (uint8_t *)copy);
    memcpy(copy + PR_WIRE_HEADER_BYTES, buf->data, buf->len);
    return (struct pr_str){copy, (uint32_t)(buf->len + PR_WIRE_HEADER_BYTES)};
}

/* The house bills of a consignee-day ("," separated, sorted), bounded: at
 * most PR_ALERT_BILLS_MAX bills and PR_ALERT_BILLS_BYTES bytes are listed,
 * a bill longer than PR_ALERT_BILL_BYTES shows its first bytes and its
 * length, and the rest is counted (" ... and N more"). */
#define PR_ALERT_BILLS_MAX 50
#define PR_ALERT_BILLS_BYTES 2048
#define PR_ALERT_BILL_BYTES 64

static void pr_encode_house_bills(struct pr_buf *out, struct pr_str bills) {
    uint32_t listed = 0, omitted = 0;
    size_t start = out->len;
    const char *p = bills.ptr, *end = bills.ptr + bills.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);
        size_t shown = len > PR_ALERT_BILL_BYTES ? (size_t)pr_utf8_prefix(p, len, 48) : len;
        if (listed >= PR_ALERT_BILLS_MAX || out->len - start + shown + 32 > PR_ALERT_BILLS_BYTES) {
            omitted++;
        } else {
            if (listed) pr_buf_append(out, ",", 1);
            pr_buf_append(out, p, shown);
            if (shown < len) pr_buf_appendf(out, "...(%zu bytes)", len);
            listed++;
        }
        p += len + 1;
    }
    if (omitted) pr_buf_appendf(out, " ... and %u more", omitted);
}

/* The aggregate alert of DOMAIN.md section 5: declaration_id
 * AGG:<consignee_key>:<day>, the crossing declaration's house bill and
 * source, INELIGIBLE_AGGREGATE, its lane but at least YELLOW, and one
 * reason (SPLIT_SHIPMENT if it fired, else AGGREGATE_OVER_THRESHOLD) whose
 * detail lists the house bills of the day (bounded, above). */
static void pr_encode_aggregate_alert(struct pr_encode_ctx *ctx, struct pr_batch *batch,
                                      struct pr_record *rec) {
    int code = pr_record_has(rec, PR_R_SPLIT_SHIPMENT) ? PR_R_SPLIT_SHIPMENT
                                                       : PR_R_AGGREGATE_OVER_THRESHOLD;
    const struct pr_reason *fired = &rec->reasons[code];
    struct pr_buf detail;
    pr_buf_init(&detail);
    pr_buf_append(&detail, fired->detail, fired->detail_len);
    pr_buf_append(&detail, "; house bills: ", 15);
    pr_encode_house_bills(&detail, rec->day_house_bills);
    struct pr_reason reason = {
        .points = fired->points,
        .detail = pr_arena_strndup(&batch->arena, (const char *)detail.data, detail.len),
        .detail_len = (uint32_t)detail.len};
    pr_buf_free(&detail);
    struct pr_decision_view view = {
        .declaration_id = rec->aggregate_alert_id,
        .house_bill = rec->decl.house_bill,
        .consignee_key = {rec->consignee_key, (uint32_t)strlen(rec->consignee_key)},
        .decided_at = rec->decided_at,
        .lane = rec->lane > PR_LANE_YELLOW ? rec->lane : PR_LANE_YELLOW,
        .score = reason.points,
        .de_minimis = PR_DM_INELIGIBLE_AGGREGATE,
        .reason_count = 1,
        .reason_codes = &code,
        .reasons = &reason,
        .random_selection = false,
        .ruleset_version = pr_rules_version(batch->rules),
        .refdata_version = rec->has_origin ? rec->origin_refdata_version : batch->refdata_version,
        .refdata_degraded = batch->degraded || rec->origin_degraded,
        .source_topic = rec->has_origin ? rec->origin_topic : batch->source_topic,
        .source_partition = rec->has_origin ? rec->origin_partition : rec->partition,
        .source_offset = rec->has_origin ? rec->origin_offset : rec->offset,
    };
    pr_buf_reset(&ctx->scratch);
    pr_decision_view_encode(&view, &ctx->scratch);
    rec->out_aggregate_alert =
        batch->frame ? pr_encode_keep_framed(batch, &ctx->scratch, batch->frame->alert)
                     : pr_encode_keep(batch, &ctx->scratch);
}

static int pr_encode_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_encode_ctx *ctx = op->ctx;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (rec->outputs & PR_OUT_DLQ) {
            /* A TOO_LARGE payload keeps its first dlq_keep_bytes; any other
             * dead letter keeps the whole message (it is under the cap). */
            size_t keep =
                rec->dlq_code == PR_DLQ_TOO_LARGE ? ctx->dlq_keep_bytes : rec->payload_len;
            pr_buf_reset(&ctx->scratch);
            pr_deadletter_encode(batch, rec, keep, &ctx->scratch);
            rec->out_dlq =
                batch->frame ? pr_encode_keep_framed(batch, &ctx->scratch, batch->frame->deadletter)
                             : pr_encode_keep(batch, &ctx->scratch);
        }
        if (rec->outputs & (PR_OUT_DECISION | PR_OUT_ALERT)) {
            pr_buf_reset(&ctx->scratch);
            pr_decision_encode(batch, rec, &ctx->scratch);
            rec->out_decision =
                batch->frame ? pr_encode_keep_framed(batch, &ctx->scratch, batch->frame->decision)
                             : pr_encode_keep(batch, &ctx->scratch);
        }
        if (rec->outputs & PR_OUT_AGGREGATE_ALERT) pr_encode_aggregate_alert(ctx, batch, rec);
    }
    return PR_OP_DONE;
}

static void pr_encode_destroy(struct pr_operator *op) {
    struct pr_encode_ctx *ctx = op->ctx;
    pr_buf_free(&ctx->scratch);
    free(ctx);
}

const struct pr_operator_ops pr_op_encode = {
    .name = "encode",
    .description = "Avro-binary Decision / DeadLetter",
    .init = pr_encode_init,
    .process = pr_encode_process,
    .destroy = pr_encode_destroy,
};
