/*
 * aggregate - one person, one day (DOMAIN.md sections 5 and 8), and the
 * address cluster, with the state in this process: keyed state on Kafka
 * partitions (issue 12).
 *
 * The consignee-day of a declaration is (consignee_key, UTC day of
 * arrival_time plus the configured offset); the address-day is (the
 * delivery address's digest, the same day). `run` repartitions the
 * declarations by the consignee's normalized address before this operator
 * (stage 2 of the engine), so every declaration of one consignee-day and of
 * one address-day reaches the one process that owns its repartition
 * partition, and the state of that partition lives here
 * (pipeline/domain/state.c), made durable by the engine in a compacted
 * changelog topic. `whatif` gives one store for its whole replay.
 *
 * The store counts each declaration_id once: the first time, it adds the
 * value to the day's total and remembers the total, and the number of
 * declarations individually over the threshold, as they stood then; a
 * declaration seen again (a crash, a replay) gets back the same numbers and
 * so the same decision. Fires:
 *
 *   AGGREGATE_OVER_THRESHOLD  not suspended, this declaration alone within the
 *                             threshold, the day's total including it above
 *   SPLIT_SHIPMENT            AGGREGATE_OVER_THRESHOLD and every declaration
 *                             counted that day individually within
 *   ADDRESS_CLUSTER           cluster_size or more distinct consignee names at
 *                             one delivery address that day, counting this one
 *
 * The first declaration to cross a consignee-day is recorded in the state; it
 * (and it again on a replay) gets the aggregate alert listing every house
 * bill of the day. Keys hold digests, never raw names or addresses.
 *
 * Values and totals (DOMAIN.md section 8): a negative value counts as 0, and
 * totals saturate instead of overflowing, at 2^53 (PR_AGG_SATURATED, $90
 * trillion), the cap the shared-Redis script of earlier versions kept, so
 * that a saturated day is decided exactly as before; C reports it as
 * INT64_MAX ("saturated").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normalize.h"
#include "rules.h"
#include "state.h"
#include "operator.h"

/* 2^53: the largest total the script keeps (see the top of the file). */
#define PR_AGG_SATURATED PR_STATE_SCRIPT_TOTAL_CAP

/* What the script adds for a value: negative counts as 0 (DOMAIN.md section
 * 8), and anything above 2^53 as 2^53 (it saturates the day by itself). */
static int64_t pr_agg_counted(int64_t value_cents) {
    if (value_cents < 0) return 0;
    return value_cents > PR_AGG_SATURATED ? PR_AGG_SATURATED : value_cents;
}

struct pr_aggregate_ctx {
    struct pr_state *state;               /* whatif: one store, expired here */
    const struct pr_state_router *router; /* run: the store of each record's partition */
    struct pr_buf bills;                  /* house bills of a crossing */
};

static int pr_aggregate_init(struct pr_operator *op, const struct pr_operator_env *env) {
    if (!env->state && !env->states) {
        pr_error("operator aggregate keeps keyed state: it runs in stage 2 of `run` (after the "
                 "repartition topic) or in `whatif`, which give it its state store");
        return PR_ERR;
    }
    struct pr_aggregate_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    pr_buf_init(&ctx->bills);
    ctx->state = env->state;
    ctx->router = env->states;
    op->ctx = ctx;
    return PR_OK;
}

static void pr_aggregate_destroy(struct pr_operator *op) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    pr_buf_free(&ctx->bills);
    free(ctx);
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm): the
 * arrival day without gmtime_r and strftime on the hot path. */
static void pr_day_text(int64_t arrival_ms, int offset_minutes, char day[11]) {
    int64_t shifted;
    if (__builtin_add_overflow(arrival_ms, (int64_t)offset_minutes * 60000, &shifted))
        shifted = arrival_ms;
    int64_t z = shifted / 86400000 - (shifted % 86400000 < 0 ? 1 : 0);
    if (z < -719468 || z > 2932896) z = 0; /* outside years 0000-9999: 1970-01-01 */
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    day[0] = (char)('0' + y / 1000 % 10);
    day[1] = (char)('0' + y / 100 % 10);
    day[2] = (char)('0' + y / 10 % 10);
    day[3] = (char)('0' + y % 10);
    day[4] = '-';
    day[5] = (char)('0' + m / 10);
    day[6] = (char)('0' + m % 10);
    day[7] = '-';
    day[8] = (char)('0' + d / 10);
    day[9] = (char)('0' + d % 10);
    day[10] = '\0';
}

/* prefix + a + ":" + b, in the arena. */
static struct pr_str pr_key3(struct pr_batch *batch, const char *prefix, const char *a, size_t alen,
                             const char *b, size_t blen) {
    size_t plen = strlen(prefix), len = plen + alen + 1 + blen;
    char *k = pr_arena_alloc(&batch->arena, len + 1);
    memcpy(k, prefix, plen);
    memcpy(k + plen, a, alen);
    k[plen + alen] = ':';
    memcpy(k + plen + alen + 1, b, blen);
    k[len] = '\0';
    return (struct pr_str){k, (uint32_t)len};
}

/*
 * The rules of one person one day, given what the state says about a
 * declaration: kept is the consignee-day total as first counted (within
 * [0, 2^53]; 2^53 is a saturated day, reported as INT64_MAX), overs the
 * declarations individually over the threshold then, crossing whether it
 * owns the day's aggregate alert (bills: every house bill of the day, when
 * it does), names the distinct consignee names at its delivery address as
 * first counted. The one function both state stores (Redis for `run`,
 * pipeline/domain/state.c for `whatif`) decide through.
 */
static void pr_aggregate_decide(struct pr_batch *batch, struct pr_record *rec, const char day[11],
                                int64_t kept, long long overs, bool crossing, const char *bills,
                                size_t bills_len, long long names_at_address) {
    const struct pr_rules *rules = batch->rules;
    const struct pr_declaration *d = &rec->decl;
    if (kept < 0) kept = 0;
    bool saturated = kept >= PR_AGG_SATURATED;
    int64_t total = saturated ? INT64_MAX : kept;
    const char *note = saturated ? " (saturated)" : "";
    rec->day_total_cents = total;
    rec->cluster_names = (int32_t)names_at_address;
    const struct pr_policy_row *row =
        pr_policy_at(&rules->policy, pr_rules_policy_instant(rules, d));
    bool applies = !row->repealed && !rec->suspended;
    if (applies && d->value_usd_cents <= row->threshold_cents && kept > row->threshold_cents) {
        rec->aggregate_over_threshold = true;
        pr_record_firef(batch, rec, PR_R_AGGREGATE_OVER_THRESHOLD,
                        rules->points[PR_R_AGGREGATE_OVER_THRESHOLD],
                        "consignee-day %s total %lld cents%s above threshold %lld cents", day,
                        (long long)total, note, (long long)row->threshold_cents);
        if (overs == 0)
            pr_record_firef(
                batch, rec, PR_R_SPLIT_SHIPMENT, rules->points[PR_R_SPLIT_SHIPMENT],
                "every declaration of consignee-day %s within %lld cents, total %lld cents%s", day,
                (long long)row->threshold_cents, (long long)total, note);
        if (crossing && bills) {
            rec->aggregate_crossing = true;
            rec->day_house_bills.ptr = pr_arena_strndup(&batch->arena, bills, bills_len);
            rec->day_house_bills.len = (uint32_t)bills_len;
            rec->aggregate_alert_id = pr_key3(batch, "AGG:", rec->consignee_key, 64, day, 10);
        }
    }
    if (names_at_address >= rules->cluster_size)
        pr_record_firef(
            batch, rec, PR_R_ADDRESS_CLUSTER, rules->points[PR_R_ADDRESS_CLUSTER],
            "%lld distinct consignee names at the delivery address on %s (cluster size %d)",
            names_at_address, day, rules->cluster_size);
}

/* An address-day key: the 128-bit digest of the delivery address, then
 * the day text; 26 bytes in the arena. */
static struct pr_str pr_address_day_key(struct pr_batch *batch, const uint8_t digest[16],
                                        const char day[11]) {
    char *k = pr_arena_alloc(&batch->arena, 16 + 10);
    memcpy(k, digest, 16);
    memcpy(k + 16, day, 10);
    return (struct pr_str){k, 26};
}

static int pr_hex_nibble(char c) {
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/*
 * The consignee-day and the address-day of each record are counted in batch
 * order, then every record is decided through pr_aggregate_decide; a
 * crossing lists the house bills of its day as they stand after the whole
 * batch is counted. The store's clock is batch->now_ms (processing time).
 * The consignee-day key is the consignee_key as raw bytes plus the day; the
 * address-day key and the name are 128-bit digests (pr_state_digest, set by
 * stage 1 or here).
 */
static int pr_aggregate_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    const struct pr_rules *rules = batch->rules;
    size_t n = batch->count ? batch->count : 1;
    char(*days)[11] = pr_arena_alloc(&batch->arena, n * 11);
    struct pr_str *day_keys = pr_arena_alloc(&batch->arena, n * sizeof(struct pr_str));
    struct pr_state **stores = pr_arena_alloc(&batch->arena, n * sizeof(struct pr_state *));
    struct pr_state_day *counted = pr_arena_alloc(&batch->arena, n * sizeof(struct pr_state_day));
    int32_t *names = pr_arena_alloc(&batch->arena, n * sizeof(int32_t));
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        stores[i] = NULL;
        if (pr_record_dead(rec)) continue;
        struct pr_state *state =
            ctx->state ? ctx->state : ctx->router->get(ctx->router->ctx, rec->partition);
        if (!state) {
            pr_error("aggregate: no state store for partition %d (not assigned here)",
                     rec->partition);
            return PR_OP_FATAL;
        }
        stores[i] = state;
        const struct pr_declaration *d = &rec->decl;
        pr_day_text(d->arrival_time, rules->day_offset_minutes, days[i]);
        /* consignee_key (64 hex digits) as its 32 bytes, then the day. */
        char *key = pr_arena_alloc(&batch->arena, 42);
        for (int b = 0; b < 32; b++)
            key[b] = (char)(pr_hex_nibble(rec->consignee_key[2 * b]) << 4 |
                            pr_hex_nibble(rec->consignee_key[2 * b + 1]));
        memcpy(key + 32, days[i], 10);
        day_keys[i] = (struct pr_str){key, 42};
        const struct pr_policy_row *row =
            pr_policy_at(&rules->policy, pr_rules_policy_instant(rules, d));
        bool applies = !row->repealed && !rec->suspended;
        bool within = d->value_usd_cents <= row->threshold_cents;
        int64_t thr =
            row->threshold_cents > PR_AGG_SATURATED ? PR_AGG_SATURATED : row->threshold_cents;
        pr_state_day_count(state, day_keys[i], d->declaration_id,
                           pr_agg_counted(d->value_usd_cents), !within && !row->repealed,
                           applies && within, thr, d->house_bill, batch->now_ms, &counted[i]);
        names[i] = 0;
        if (!rec->has_origin) pr_record_state_digests(batch, rec);
        if (rec->has_state_digests) {
            struct pr_str address_key = pr_address_day_key(batch, rec->address_digest, days[i]);
            struct pr_str name_key = {(const char *)rec->name_digest, 16};
            names[i] = pr_state_address_count(state, address_key, d->declaration_id, name_key,
                                              batch->now_ms);
        }
    }
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!stores[i]) continue;
        const struct pr_state_day *c = &counted[i];
        pr_buf_reset(&ctx->bills);
        if (c->crossing) pr_state_day_house_bills(stores[i], day_keys[i], &ctx->bills);
        int64_t kept = c->total > PR_AGG_SATURATED ? PR_AGG_SATURATED : c->total;
        pr_aggregate_decide(batch, rec, days[i], kept, c->overs, c->crossing,
                            c->crossing ? (ctx->bills.data ? (const char *)ctx->bills.data : "")
                                        : NULL,
                            ctx->bills.len, names[i]);
    }
    /* run: the engine expires each partition's store (it owns their changelog). */
    if (ctx->state) pr_state_expire(ctx->state, batch->now_ms);
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_aggregate = {
    .name = "aggregate",
    .description = "one person one day (AGGREGATE_OVER_THRESHOLD, SPLIT_SHIPMENT), "
                   "ADDRESS_CLUSTER; keyed state in process, by repartition partition",
    .keyed = true,
    .init = pr_aggregate_init,
    .process = pr_aggregate_process,
    .destroy = pr_aggregate_destroy,
};
