/*
 * exchange - the two ends of the repartition topic between the stages of
 * `run` (issue 12). The engine puts them in the chain itself, around the
 * first keyed operator; they are not for a configuration's `chain`.
 *
 *   repartition         (end of stage 1) routes each live record to the
 *                       repartition partition of its state key and writes
 *                       its intermediate record (codec/exchange.h); a dead
 *                       record goes to the DLQ (the encode operator after it
 *                       writes the dead letter, as at the end of a chain).
 *   repartition-source  (start of stage 2) reads the intermediate record
 *                       back into the record; one that does not parse is
 *                       dead-lettered DECODE_ERROR (only a foreign writer on
 *                       the internal topic can make one).
 *
 * The routing key is the 128-bit digest of the consignee's normalized
 * address (DOMAIN.md section 6): the consignee identity contains it, and
 * the delivery address starts with it, so every declaration of one
 * consignee-day and of one address-day reaches the same partition. A blank
 * address has no address-day, so those declarations are routed by their
 * consignee_key instead: many blank addresses spread over the partitions
 * like any other consignees instead of all landing on one (a hot key).
 * The partition is the digest's first 64 bits modulo the repartition
 * topic's partition count, chosen here rather than by the client's
 * partitioner so that the changelog (the same count) is co-partitioned by
 * construction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "normalize.h"
#include "operator.h"

struct pr_repartition_ctx {
    int32_t partitions;
    struct pr_buf scratch;
};

static int pr_repartition_init(struct pr_operator *op, const struct pr_operator_env *env) {
    if (env->repartition_partitions <= 0) {
        pr_error("operator repartition: the engine gives it the repartition topic's partitions");
        return PR_ERR;
    }
    struct pr_repartition_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    ctx->partitions = env->repartition_partitions;
    pr_buf_init(&ctx->scratch);
    op->ctx = ctx;
    return PR_OK;
}

static void pr_repartition_destroy(struct pr_operator *op) {
    struct pr_repartition_ctx *ctx = op->ctx;
    pr_buf_free(&ctx->scratch);
    free(ctx);
}

static int pr_hex_value(char c) {
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int pr_repartition_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_repartition_ctx *ctx = op->ctx;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) {
            rec->outputs = PR_OUT_DLQ;
            continue;
        }
        pr_record_state_digests(batch, rec);
        uint8_t digest[16];
        if (rec->norms.consignee_address.len > 0) {
            pr_state_digest(rec->norms.consignee_address.ptr, rec->norms.consignee_address.len,
                            digest);
        } else {
            for (int b = 0; b < 16; b++)
                digest[b] = (uint8_t)(pr_hex_value(rec->consignee_key[2 * b]) << 4 |
                                      pr_hex_value(rec->consignee_key[2 * b + 1]));
        }
        char *key = pr_arena_alloc(&batch->arena, 33);
        for (int b = 0; b < 16; b++) {
            key[2 * b] = hex[digest[b] >> 4];
            key[2 * b + 1] = hex[digest[b] & 15];
        }
        key[32] = '\0';
        uint64_t route;
        memcpy(&route, digest, sizeof(route));
        rec->out_repartition_key = (struct pr_str){key, 32};
        rec->out_partition = (int32_t)(route % (uint64_t)ctx->partitions);
        pr_buf_reset(&ctx->scratch);
        pr_exchange_encode(rec, batch->refdata_version, batch->degraded, batch->source_topic,
                           &ctx->scratch);
        rec->out_repartition =
            (struct pr_str){pr_arena_strndup(&batch->arena, (const char *)ctx->scratch.data,
                                             ctx->scratch.len),
                            (uint32_t)ctx->scratch.len};
        rec->outputs = PR_OUT_REPARTITION;
    }
    return PR_OP_DONE;
}

static int pr_repartition_source_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        char err[160];
        if (pr_exchange_decode(batch, rec, err, sizeof(err)) != PR_OK)
            pr_record_dead_letter(rec, PR_DLQ_DECODE_ERROR, "%s", err);
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_repartition = {
    .name = "repartition",
    .description = "end of stage 1: the intermediate record to the repartition topic (internal)",
    .internal = true,
    .init = pr_repartition_init,
    .process = pr_repartition_process,
    .destroy = pr_repartition_destroy,
};

const struct pr_operator_ops pr_op_repartition_source = {
    .name = "repartition-source",
    .description = "start of stage 2: the intermediate record read back (internal)",
    .internal = true,
    .process = pr_repartition_source_process,
};
