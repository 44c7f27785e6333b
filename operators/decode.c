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
 *
 * With schema_registry.url set, a value that starts with the magic byte 0
 * is Confluent-framed (pipeline/codec/wire.h): its writer schema is fetched by id
 * once and kept in a bounded cache (schema_registry.cache_max_ids, least
 * recently used evicted; the ids one batch uses are never evicted while it
 * is decoded). Ids are fetched before any record of the batch is touched,
 * so a registry that does not answer makes process() return PR_OP_RETRY
 * with the batch as it came: the engine pauses as for a Redis outage, and
 * no record is decided or dead-lettered on a guess. Only a definite answer
 * dead-letters: an id the registry does not know (asked again after
 * PR_UNKNOWN_ID_RETRY_MS), a writer schema that does not resolve against
 * ours, a framed value shorter than its header: UNKNOWN_SCHEMA, the id in
 * the detail. Unframed values are read as without a registry.
 */
#include "codec.h"
#include "schema_registry.h"
#include "wire.h"
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
        snprintf(why, why_size, "declaration_id of %u bytes is longer than %d bytes",
                 (unsigned)id.len, PR_ID_MAX_BYTES);
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
    for (uint32_t i = 0; i < d->line_count; i++)
        pr_country_canon(batch, &d->lines[i].origin_country);
}

/* An id the registry did not know is asked again after this long (it may
 * be registered since; a flood of one bad id costs one call per period). */
#define PR_UNKNOWN_ID_RETRY_MS 10000

/* One writer schema id: its reader, or (reader NULL) why it is unknown. */
struct pr_writer_entry {
    uint32_t id;
    struct pr_decl_reader *reader;
    char why[160];
    int64_t fetched_ms;
    uint64_t used; /* the batch stamp that last used it (LRU) */
};

struct pr_decode_ctx {
    size_t max_message_bytes;
    struct pr_schema_registry *registry; /* NULL: no framing */
    struct pr_writer_entry *entries;
    size_t entry_count, entry_max;
    size_t last_hit;
    uint64_t stamp; /* batches seen */
    int64_t last_unavailable_log_us;
    /* Unknown ids are logged at most once per 10 s with a count: garbage
     * framed values can carry any id, one line each would flood the log. */
    int64_t last_unknown_log_us;
    uint64_t unknown_unlogged;
};

static int pr_decode_init(struct pr_operator *op, const struct pr_operator_env *env) {
    struct pr_decode_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    ctx->max_message_bytes = (size_t)env->cfg->max_message_bytes;
    if (env->cfg->schema_registry_url && *env->cfg->schema_registry_url) {
        ctx->registry = pr_schema_registry_new(env->cfg);
        if (!ctx->registry) {
            free(ctx);
            return PR_ERR;
        }
        ctx->entry_max = (size_t)env->cfg->schema_registry_cache_max_ids;
        pr_info("decode: Confluent-framed values resolved through the schema registry at %s",
                pr_schema_registry_url(ctx->registry));
    }
    op->ctx = ctx;
    return PR_OK;
}

static struct pr_writer_entry *pr_decode_find(struct pr_decode_ctx *ctx, uint32_t id) {
    if (ctx->last_hit < ctx->entry_count && ctx->entries[ctx->last_hit].id == id)
        return &ctx->entries[ctx->last_hit];
    for (size_t i = 0; i < ctx->entry_count; i++) {
        if (ctx->entries[i].id == id) {
            ctx->last_hit = i;
            return &ctx->entries[i];
        }
    }
    return NULL;
}

/* A slot for a new entry: a free one, else the least recently used one
 * that this batch has not used (the cache then grows past entry_max only
 * while one batch holds more distinct ids than that). */
static struct pr_writer_entry *pr_decode_slot(struct pr_decode_ctx *ctx) {
    if (ctx->entry_count >= ctx->entry_max) {
        size_t victim = ctx->entry_count;
        for (size_t i = 0; i < ctx->entry_count; i++)
            if (ctx->entries[i].used != ctx->stamp &&
                (victim == ctx->entry_count || ctx->entries[i].used < ctx->entries[victim].used))
                victim = i;
        if (victim < ctx->entry_count) {
            pr_decl_reader_free(ctx->entries[victim].reader);
            memset(&ctx->entries[victim], 0, sizeof(ctx->entries[victim]));
            return &ctx->entries[victim];
        }
    }
    ctx->entries = pr_realloc(ctx->entries, (ctx->entry_count + 1) * sizeof(*ctx->entries));
    memset(&ctx->entries[ctx->entry_count], 0, sizeof(ctx->entries[0]));
    return &ctx->entries[ctx->entry_count++];
}

/* Makes every schema id of the batch known before a record is touched.
 * PR_OP_RETRY when the registry gives no usable answer. */
static int pr_decode_fetch_ids(struct pr_operator *op, struct pr_decode_ctx *ctx,
                               struct pr_batch *batch) {
    ctx->stamp++;
    int64_t now = pr_now_ms();
    for (size_t i = 0; i < batch->count; i++) {
        const struct pr_record *rec = &batch->records[i];
        uint32_t id;
        if (rec->payload_len > ctx->max_message_bytes ||
            pr_wire_parse(rec->payload, rec->payload_len, &id) != PR_WIRE_FRAMED)
            continue;
        struct pr_writer_entry *entry = pr_decode_find(ctx, id);
        if (entry && (entry->reader || now - entry->fetched_ms < PR_UNKNOWN_ID_RETRY_MS)) {
            entry->used = ctx->stamp;
            op->stats.cache_hits++;
            continue;
        }
        op->stats.cache_misses++;
        op->stats.round_trips++;
        char *schema = NULL, why[256];
        enum pr_reg_result res =
            pr_schema_registry_get(ctx->registry, id, &schema, why, sizeof(why));
        if (res == PR_REG_UNAVAILABLE) {
            int64_t now_us = pr_monotonic_us();
            if (!ctx->last_unavailable_log_us ||
                now_us - ctx->last_unavailable_log_us >= 10000000) {
                ctx->last_unavailable_log_us = now_us;
                pr_warn(
                    "decode: schema registry unavailable, cannot read writer schema id %u (%s); "
                    "pausing: nothing is decided or dead-lettered until it answers",
                    id, why);
            }
            return PR_OP_RETRY;
        }
        if (!entry) entry = pr_decode_slot(ctx);
        entry->id = id;
        entry->fetched_ms = now;
        entry->used = ctx->stamp;
        if (res == PR_REG_REFUSED) {
            snprintf(entry->why, sizeof(entry->why), "not known to the schema registry (%.120s)",
                     why);
            ctx->unknown_unlogged++;
            int64_t now_us = pr_monotonic_us();
            if (!ctx->last_unknown_log_us || now_us - ctx->last_unknown_log_us >= 10000000) {
                pr_warn("decode: writer schema id %u is not in the registry (%llu unknown id(s) "
                        "since the last report); their records are dead-lettered UNKNOWN_SCHEMA",
                        id, (unsigned long long)ctx->unknown_unlogged);
                ctx->last_unknown_log_us = now_us;
                ctx->unknown_unlogged = 0;
            }
            continue;
        }
        entry->reader = pr_decl_reader_new(schema, strlen(schema));
        free(schema);
        switch (pr_decl_reader_kind(entry->reader)) {
        case PR_WRITER_SAME:
            pr_info("decode: writer schema id %u equals ours: fast decoder", id);
            break;
        case PR_WRITER_RESOLVED:
            pr_info("decode: writer schema id %u is another version: read through Avro schema "
                    "resolution",
                    id);
            break;
        case PR_WRITER_UNRESOLVABLE:
            pr_warn("decode: writer schema id %u cannot be read as ours (%s); its records are "
                    "dead-lettered "
                    "UNKNOWN_SCHEMA",
                    id, pr_decl_reader_why(entry->reader));
            break;
        }
    }
    ctx->last_unavailable_log_us = 0;
    op->stats.cache_entries = ctx->entry_count;
    return PR_OP_DONE;
}

/* Decodes a value when a registry is configured: framed or not. */
static enum pr_dlq_code pr_decode_framed(struct pr_decode_ctx *ctx, struct pr_batch *batch,
                                         struct pr_record *rec, char *err, size_t err_size) {
    uint32_t id = 0;
    switch (pr_wire_parse(rec->payload, rec->payload_len, &id)) {
    case PR_WIRE_UNFRAMED:
        return pr_declaration_decode(rec->payload, rec->payload_len, &rec->decl, &batch->arena, err,
                                     err_size);
    case PR_WIRE_TRUNCATED:
        snprintf(err, err_size,
                 "framed value of %zu bytes: truncated header (magic byte 0 and a 4-byte schema id "
                 "need 5)",
                 rec->payload_len);
        return PR_DLQ_UNKNOWN_SCHEMA;
    case PR_WIRE_FRAMED: break;
    }
    const struct pr_writer_entry *entry = pr_decode_find(ctx, id);
    if (!entry || !entry->reader) {
        snprintf(err, err_size, "schema id %u: %s", id, entry ? entry->why : "not fetched");
        return PR_DLQ_UNKNOWN_SCHEMA;
    }
    char why[sizeof(rec->dlq_detail)];
    enum pr_dlq_code code = pr_decl_reader_decode(
        entry->reader, rec->payload + PR_WIRE_HEADER_BYTES, rec->payload_len - PR_WIRE_HEADER_BYTES,
        &rec->decl, &batch->arena, why, sizeof(why));
    if (code != PR_DLQ_NONE) snprintf(err, err_size, "schema id %u: %.170s", id, why);
    return code;
}

static int pr_decode_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_decode_ctx *ctx = op->ctx;
    if (ctx->registry) {
        int rc = pr_decode_fetch_ids(op, ctx, batch);
        if (rc != PR_OP_DONE) return rc;
    }
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (rec->payload_len == 0 || rec->payload == NULL) {
            pr_record_dead_letter(rec, PR_DLQ_EMPTY, "empty message (no value bytes)");
            continue;
        }
        if (rec->payload_len > ctx->max_message_bytes) {
            pr_record_dead_letter(rec, PR_DLQ_TOO_LARGE,
                                  "message of %zu bytes exceeds the cap of %zu", rec->payload_len,
                                  ctx->max_message_bytes);
            continue;
        }
        char err[sizeof(rec->dlq_detail)];
        enum pr_dlq_code code =
            ctx->registry ? pr_decode_framed(ctx, batch, rec, err, sizeof(err))
                          : pr_declaration_decode(rec->payload, rec->payload_len, &rec->decl,
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

static void pr_decode_destroy(struct pr_operator *op) {
    struct pr_decode_ctx *ctx = op->ctx;
    for (size_t i = 0; i < ctx->entry_count; i++) pr_decl_reader_free(ctx->entries[i].reader);
    free(ctx->entries);
    pr_schema_registry_free(ctx->registry);
    free(ctx);
}

const struct pr_operator_ops pr_op_decode = {
    .name = "decode",
    .description = "Avro-binary (or registry-framed) Declaration to struct; bad input to the DLQ",
    .init = pr_decode_init,
    .process = pr_decode_process,
    .destroy = pr_decode_destroy,
};
