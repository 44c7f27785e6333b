/*
 * decode - turns each consumed message into a struct pr_declaration, or
 * dead-letters it: EMPTY, TOO_LARGE (over input.max_message_bytes),
 * DECODE_ERROR, TRAILING_BYTES, INVALID_UTF8. The decoder (pipeline/codec/codec.c)
 * checks every length against the bytes left before reading or allocating.
 *
 * A declaration that decodes is dead-lettered INVALID_ID when its
 * declaration_id cannot key a decision and the idempotent state (DOMAIN.md
 * section 5): empty, only spaces, longer than PR_ID_MAX_BYTES, or holding a
 * control byte (below 0x20, or 0x7F; NUL included: ids are compared by
 * length, but a NUL would still make two different ids print alike). This
 * runs here, first in the chain, so that no later operator counts such a
 * record anywhere; route sends every dead letter to the DLQ and no decision
 * is made for it. The detail gives the length and the reason, never the id.
 *
 * Country codes are then put in the form the reference data uses
 * (pr_country_canon).
 */
#include "codec.h"
#include "operator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PR_ID_MAX_BYTES 128

/* Why id cannot key a decision, written into why; false when it can. */
static bool pr_id_invalid(struct pr_str id, char *why, size_t why_size) {
    if (id.len == 0) {
        snprintf(why, why_size, "declaration_id is empty");
        return true;
    }
    /* The common id, printable ASCII without a space, in one compare per
     * byte (c - 0x21 wraps for bytes up to a space); anything else takes
     * the full account below. */
    if (id.len <= PR_ID_MAX_BYTES) {
        uint32_t i = 0;
        while (i < id.len && (unsigned char)((unsigned char)id.ptr[i] - 0x21) < 0x5e) i++;
        if (i == id.len) return false;
    }
    const char *bytes = id.len == 1 ? "byte" : "bytes";
    uint32_t spaces = 0, controls = 0, first_control = 0;
    for (uint32_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.ptr[i];
        if (c == ' ') spaces++;
        if (c < 0x20 || c == 0x7f) {
            if (controls++ == 0) first_control = i;
        }
    }
    if (controls) {
        snprintf(why, why_size,
                 "declaration_id of %u %s holds %u control byte%s (first: 0x%02X at byte %u)",
                 (unsigned)id.len, bytes, (unsigned)controls, controls == 1 ? "" : "s",
                 (unsigned)(unsigned char)id.ptr[first_control], (unsigned)first_control + 1);
        return true;
    }
    if (id.len > PR_ID_MAX_BYTES) {
        snprintf(why, why_size, "declaration_id of %u bytes is longer than %d bytes", (unsigned)id.len,
                 PR_ID_MAX_BYTES);
        return true;
    }
    if (spaces == id.len) {
        snprintf(why, why_size, "declaration_id of %u %s is only spaces", (unsigned)id.len, bytes);
        return true;
    }
    return false;
}

/* A country code as the reference data and the policy spell it: ISO 3166
 * alpha-2 in capitals. A hub that sends " cn" or "kp" means CN and KP; taken
 * byte for byte it would escape the CN/HK suspension row and
 * HIGH_RISK_ORIGIN without a word. Surrounding spaces are dropped and ASCII
 * letters upper-cased (a copy in the arena; the common code costs two
 * compares). Anything else stays as sent. */
static void pr_country_canon(struct pr_batch *batch, struct pr_str *code) {
    if (code->len == 2 && code->ptr[0] >= 'A' && code->ptr[0] <= 'Z' && code->ptr[1] >= 'A' &&
        code->ptr[1] <= 'Z')
        return;
    uint32_t start = 0, end = code->len;
    while (start < end && code->ptr[start] == ' ') start++;
    while (end > start && code->ptr[end - 1] == ' ') end--;
    bool changed = start > 0 || end < code->len;
    for (uint32_t i = start; i < end && !changed; i++)
        if (code->ptr[i] >= 'a' && code->ptr[i] <= 'z') changed = true;
    if (!changed) return;
    char *copy = pr_arena_alloc(&batch->arena, end - start + 1);
    for (uint32_t i = start; i < end; i++) {
        char c = code->ptr[i];
        copy[i - start] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    copy[end - start] = '\0';
    *code = (struct pr_str){copy, end - start};
}

static void pr_declaration_countries_canon(struct pr_batch *batch, struct pr_declaration *d) {
    pr_country_canon(batch, &d->shipper.country);
    pr_country_canon(batch, &d->consignee.country);
    if (d->has_seller) pr_country_canon(batch, &d->seller.country);
    for (uint32_t i = 0; i < d->line_count; i++) pr_country_canon(batch, &d->lines[i].origin_country);
}

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
        if (code != PR_DLQ_NONE) {
            pr_record_dead_letter(rec, code, "%s", err);
            continue;
        }
        if (pr_id_invalid(rec->decl.declaration_id, err, sizeof(err))) {
            pr_record_dead_letter(rec, PR_DLQ_INVALID_ID, "%s", err);
            continue;
        }
        pr_declaration_countries_canon(batch, &rec->decl);
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
