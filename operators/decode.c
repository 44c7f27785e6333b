/*
 * decode - turns each consumed message into a struct pr_declaration, or
 * dead-letters it: EMPTY, TOO_LARGE (over input.max_message_bytes),
 * DECODE_ERROR, TRAILING_BYTES, INVALID_UTF8. The decoder (pipeline/codec.c)
 * checks every length against the bytes left before reading or allocating.
 */
#include "../pipeline/codec.h"
#include "operator.h"

#include <stdlib.h>
#include <string.h>

struct pr_decode_ctx {
    size_t max_message_bytes;
};

static int pr_decode_init(struct pr_operator *op, const struct pr_operator_env *env) {
    struct pr_decode_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    ctx->max_message_bytes = (size_t)env->cfg->max_message_bytes;
    op->ctx = ctx;
    return PR_OK;
}

static int pr_decode_process(struct pr_operator *op, struct pr_batch *batch) {
    const struct pr_decode_ctx *ctx = op->ctx;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (rec->payload_len == 0 || rec->payload == NULL) {
            pr_record_dead_letter(rec, PR_DLQ_EMPTY, "empty message (no value bytes)");
            continue;
        }
        if (rec->payload_len > ctx->max_message_bytes) {
            pr_record_dead_letter(rec, PR_DLQ_TOO_LARGE, "message of %zu bytes exceeds the cap of %zu",
                                  rec->payload_len, ctx->max_message_bytes);
            continue;
        }
        char err[sizeof(rec->dlq_detail)];
        enum pr_dlq_code code = pr_declaration_decode(rec->payload, rec->payload_len, &rec->decl,
                                                      &batch->arena, err, sizeof(err));
        if (code != PR_DLQ_NONE) pr_record_dead_letter(rec, code, "%s", err);
    }
    return PR_OP_DONE;
}

static void pr_decode_destroy(struct pr_operator *op) { free(op->ctx); }

const struct pr_operator_ops pr_op_decode = {
    .name = "decode",
    .description = "Avro-binary Declaration to struct; bad input to the DLQ",
    .init = pr_decode_init,
    .process = pr_decode_process,
    .destroy = pr_decode_destroy,
};
