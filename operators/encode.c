/*
 * encode - writes the Avro-binary Decision or DeadLetter of each record into
 * the batch arena, ready for the engine to produce.
 */
#include "../pipeline/codec.h"
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

static int pr_encode_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_encode_ctx *ctx = op->ctx;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (rec->outputs & PR_OUT_DLQ) {
            /* A TOO_LARGE payload keeps its first dlq_keep_bytes; any other
             * dead letter keeps the whole message (it is under the cap). */
            size_t keep = rec->dlq_code == PR_DLQ_TOO_LARGE ? ctx->dlq_keep_bytes : rec->payload_len;
            pr_buf_reset(&ctx->scratch);
            pr_deadletter_encode(batch, rec, keep, &ctx->scratch);
            rec->out_dlq = pr_encode_keep(batch, &ctx->scratch);
        }
        if (rec->outputs & (PR_OUT_DECISION | PR_OUT_ALERT)) {
            pr_buf_reset(&ctx->scratch);
            pr_decision_encode(batch, rec, &ctx->scratch);
            rec->out_decision = pr_encode_keep(batch, &ctx->scratch);
        }
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
