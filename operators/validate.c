/*
 * validate - the checks that need no reference data: MISSING_DATA (the Type 86
 * fields of DOMAIN.md section 5), HTS_INVALID by format, VAGUE_DESCRIPTION,
 * FREIGHT_VALUE_MISMATCH; and the consignee_key of every decision.
 *
 * Details name fields and line numbers, never the text of a name or address.
 */
#include "hash.h"
#include "normalize.h"
#include "rules.h"
#include "operator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pr_validate_ctx {
    struct pr_buf scratch;  /* normalized text */
    struct pr_buf missing;  /* MISSING_DATA evidence */
    struct pr_buf evidence; /* HTS_INVALID, then MISSING_DATA evidence */
    struct pr_buf vague;    /* VAGUE_DESCRIPTION evidence */
    struct pr_sha256 sha;   /* consignee_key */
};

static int pr_validate_init(struct pr_operator *op, const struct pr_operator_env *env) {
    (void)env;
    struct pr_validate_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    pr_buf_init(&ctx->scratch);
    pr_buf_init(&ctx->missing);
    pr_buf_init(&ctx->evidence);
    pr_buf_init(&ctx->vague);
    pr_sha256_init(&ctx->sha);
    op->ctx = ctx;
    return PR_OK;
}

static void pr_note(struct pr_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pr_note(struct pr_buf *buf, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if (buf->len) pr_buf_append(buf, ", ", 2);
    pr_buf_append(buf, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A party name or address is missing when blank or when its full normal
 * form is a placeholder (N A, NA, NONE, UNKNOWN). */
static bool pr_party_field_missing(struct pr_str raw, struct pr_str norm) {
    return pr_str_blank(raw) || pr_norm_is_placeholder(norm.ptr, norm.len);
}

static bool pr_hts_format_ok(struct pr_str hts) {
    if (hts.len != 10) return false;
    for (uint32_t i = 0; i < 10; i++)
        if (hts.ptr[i] < '0' || hts.ptr[i] > '9') return false;
    return true;
}

/* Letters are A-Z after upper-casing and every non-ASCII character (counted
 * once per UTF-8 sequence). Digit-only tokens are neither stop words nor
 * content. Returns the reason text or NULL. */
static const char *pr_description_vague(const struct pr_rules *rules, struct pr_buf *scratch,
                                        struct pr_str d) {
    pr_buf_reset(scratch);
    pr_buf_reserve(scratch, (size_t)d.len + 1);
    char *norm = (char *)scratch->data;
    size_t n = pr_norm_text(d.ptr, d.len, norm);
    int letters = 0;
    bool content = false, any_stop = false;
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        bool digits_only = true;
        while (end < n && norm[end] != ' ') {
            unsigned char c = (unsigned char)norm[end];
            if (c >= 'A' && c <= 'Z')
                letters++, digits_only = false;
            else if (c >= 0xc0)
                letters++, digits_only = false;
            else if (c >= 0x80)
                digits_only = false;
            end++;
        }
        if (!digits_only) {
            if (pr_rules_is_stop_word(rules, norm + i, end - i))
                any_stop = true;
            else
                content = true;
        }
        i = end + 1;
    }
    if (letters < rules->min_description_letters) return "fewer letters than the minimum";
    if (any_stop && !content) return "only stop words";
    return NULL;
}

static void pr_validate_record(struct pr_validate_ctx *ctx, struct pr_batch *batch,
                               struct pr_record *rec) {
    const struct pr_rules *rules = batch->rules;
    const struct pr_declaration *d = &rec->decl;
    struct pr_buf *missing = &ctx->missing, *ev = &ctx->evidence;
    pr_buf_reset(missing);

    pr_record_norms(batch, rec);
    if (pr_str_blank(d->house_bill)) pr_note(missing, "house_bill");
    if (pr_party_field_missing(d->shipper.name, rec->norms.shipper_name))
        pr_note(missing, "shipper.name");
    if (pr_party_field_missing(d->shipper.address, rec->norms.shipper_address))
        pr_note(missing, "shipper.address");
    if (pr_str_blank(d->shipper.country)) pr_note(missing, "shipper.country");
    if (pr_party_field_missing(d->consignee.name, rec->norms.consignee_name))
        pr_note(missing, "consignee.name");
    if (pr_party_field_missing(d->consignee.address, rec->norms.consignee_address))
        pr_note(missing, "consignee.address");
    if (d->value_usd_cents <= 0) pr_note(missing, "value_usd_cents");
    if (d->line_count == 0) pr_note(missing, "lines");

    pr_buf_reset(ev);
    struct pr_buf *vague = &ctx->vague;
    pr_buf_reset(vague);
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line *line = &d->lines[i];
        unsigned no = i + 1;
        if (pr_str_blank(line->hts))
            pr_note(missing, "line %u hts", no);
        else if (!pr_hts_format_ok(line->hts))
            pr_note(ev, "line %u: not 10 digits", no);
        if (pr_str_blank(line->description)) {
            pr_note(missing, "line %u description", no);
        } else {
            const char *why = pr_description_vague(rules, &ctx->scratch, line->description);
            if (why) pr_note(vague, "line %u: %s", no, why);
        }
        if (pr_str_blank(line->origin_country)) pr_note(missing, "line %u origin_country", no);
        if (line->quantity <= 0) pr_note(missing, "line %u quantity", no);
    }
    if (ev->len)
        pr_record_fire(batch, rec, PR_R_HTS_INVALID, rules->points[PR_R_HTS_INVALID],
                       (const char *)ev->data, ev->len);
    if (vague->len)
        pr_record_fire(batch, rec, PR_R_VAGUE_DESCRIPTION, rules->points[PR_R_VAGUE_DESCRIPTION],
                       (const char *)vague->data, vague->len);
    if (missing->len) {
        pr_buf_reset(ev);
        pr_buf_append(ev, "missing: ", 9);
        pr_buf_append(ev, missing->data, missing->len);
        pr_record_fire(batch, rec, PR_R_MISSING_DATA, rules->points[PR_R_MISSING_DATA],
                       (const char *)ev->data, ev->len);
    }
    if (d->has_freight &&
        (double)d->freight_usd_cents > rules->freight_factor * (double)d->value_usd_cents)
        pr_record_firef(
            batch, rec, PR_R_FREIGHT_VALUE_MISMATCH, rules->points[PR_R_FREIGHT_VALUE_MISMATCH],
            "freight %lld cents above %g x value %lld cents", (long long)d->freight_usd_cents,
            rules->freight_factor, (long long)d->value_usd_cents);
    pr_record_consignee_key(&ctx->sha, rec);
}

static int pr_validate_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_validate_ctx *ctx = op->ctx;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!pr_record_dead(rec)) pr_validate_record(ctx, batch, rec);
    }
    return PR_OP_DONE;
}

static void pr_validate_destroy(struct pr_operator *op) {
    struct pr_validate_ctx *ctx = op->ctx;
    pr_buf_free(&ctx->scratch);
    pr_buf_free(&ctx->missing);
    pr_buf_free(&ctx->evidence);
    pr_buf_free(&ctx->vague);
    pr_sha256_free(&ctx->sha);
    free(ctx);
}

const struct pr_operator_ops pr_op_validate = {
    .name = "validate",
    .description = "MISSING_DATA, HTS_INVALID (format), VAGUE_DESCRIPTION, FREIGHT_VALUE_MISMATCH",
    .init = pr_validate_init,
    .process = pr_validate_process,
    .destroy = pr_validate_destroy,
};
