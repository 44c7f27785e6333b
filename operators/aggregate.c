/*
 * aggregate - one person, one day (DOMAIN.md sections 5 and 8), and the
 * address cluster, with the state in Redis so that every instance of the
 * consumer group shares it.
 *
 * The consignee-day of a declaration is (consignee_key, UTC day of
 * arrival_time plus the configured offset). A Lua script, run once per batch
 * for all its declarations (one round trip), counts each declaration_id once:
 * the first time, it adds the value to the day's total and remembers the
 * total, and the number of declarations individually over the threshold, as
 * they stood then; a declaration seen again (a crash, a replay) gets back the
 * same numbers and so the same decision. Fires:
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
 * bill of the day. Keys hold digests, never raw names or addresses:
 *   pr:cd:<consignee_key>:<YYYY-MM-DD>     hash t (total), o (over count),
 *                                          a (alert owner), d:<id> -> total|over|house_bill
 *   pr:ac:<sha256(address)>:<YYYY-MM-DD>   hash c (names), n:<name digest>, d:<id> -> count
 * Both expire state.ttl_hours after their last update.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pipeline/normalize.h"
#include "../pipeline/redis.h"
#include "../pipeline/rules.h"
#include "operator.h"

#define PR_AGG_FIELDS 9

static const char pr_aggregate_lua[] =
    "local ttl = ARGV[1]\n"
    "local out = {}\n"
    "for b = 1, #ARGV - 1, 9 do\n"
    "  local cd, id, value, cand = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n"
    "  local over, hb, thr, ac, nm = ARGV[b+5], ARGV[b+6], tonumber(ARGV[b+7]), ARGV[b+8], ARGV[b+9]\n"
    "  local total, overs\n"
    "  local seen = redis.call('HGET', cd, 'd:' .. id)\n"
    "  if seen then\n"
    "    local t, o = string.match(seen, '^(%-?%d+)|(%d+)|')\n"
    "    total, overs = tonumber(t), tonumber(o)\n"
    "  else\n"
    "    total = redis.call('HINCRBY', cd, 't', value)\n"
    "    if over == '1' then overs = redis.call('HINCRBY', cd, 'o', 1)\n"
    "    else overs = tonumber(redis.call('HGET', cd, 'o') or '0') end\n"
    "    redis.call('HSET', cd, 'd:' .. id, string.format('%d|%d|%s', total, overs, hb))\n"
    "  end\n"
    "  redis.call('PEXPIRE', cd, ttl)\n"
    "  local crossing, bills = 0, ''\n"
    "  if cand == '1' and total > thr then\n"
    "    local owner = redis.call('HGET', cd, 'a')\n"
    "    if not owner then redis.call('HSET', cd, 'a', id); owner = id end\n"
    "    if owner == id then\n"
    "      crossing = 1\n"
    "      local all, list = redis.call('HGETALL', cd), {}\n"
    "      for j = 1, #all, 2 do\n"
    "        if string.sub(all[j], 1, 2) == 'd:' then\n"
    "          list[#list + 1] = string.match(all[j + 1], '^[^|]*|[^|]*|(.*)$')\n"
    "        end\n"
    "      end\n"
    "      table.sort(list)\n"
    "      bills = table.concat(list, ',')\n"
    "    end\n"
    "  end\n"
    "  local count = 0\n"
    "  if ac ~= '' then\n"
    "    local c = redis.call('HGET', ac, 'd:' .. id)\n"
    "    if c then count = tonumber(c)\n"
    "    else\n"
    "      if redis.call('HSETNX', ac, 'n:' .. nm, 1) == 1 then count = redis.call('HINCRBY', ac, 'c', 1)\n"
    "      else count = tonumber(redis.call('HGET', ac, 'c') or '0') end\n"
    "      redis.call('HSET', ac, 'd:' .. id, count)\n"
    "    end\n"
    "    redis.call('PEXPIRE', ac, ttl)\n"
    "  end\n"
    "  out[#out + 1] = string.format('%d', total)\n"
    "  out[#out + 1] = overs\n"
    "  out[#out + 1] = crossing\n"
    "  out[#out + 1] = bills\n"
    "  out[#out + 1] = count\n"
    "end\n"
    "return out\n";

struct pr_aggregate_ctx {
    struct pr_redis redis;
    struct pr_script script;
    bool degrade;
    char ttl_ms[24];
    struct pr_buf scratch;
    struct pr_sha256 sha;
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
};

static int pr_aggregate_init(struct pr_operator *op, const struct pr_operator_env *env) {
    const struct pr_config *cfg = env->cfg;
    struct pr_aggregate_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    if (pr_redis_init(&ctx->redis, cfg->redis_address, cfg->redis_timeout_ms) != PR_OK) {
        free(ctx);
        return PR_ERR;
    }
    ctx->script = (struct pr_script){.name = "consignee-day", .body = pr_aggregate_lua};
    ctx->degrade = strcmp(cfg->on_redis_unavailable, "degrade") == 0;
    snprintf(ctx->ttl_ms, sizeof(ctx->ttl_ms), "%lld", (long long)cfg->state_ttl_hours * 3600000LL);
    pr_buf_init(&ctx->scratch);
    pr_sha256_init(&ctx->sha);
    op->ctx = ctx;
    return PR_OK;
}

static void pr_aggregate_destroy(struct pr_operator *op) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    pr_redis_close(&ctx->redis);
    pr_buf_free(&ctx->scratch);
    pr_sha256_free(&ctx->sha);
    free(ctx->argv);
    free(ctx->argvlen);
    free(ctx);
}

/* YYYY-MM-DD of the arrival day. */
static void pr_arrival_day(const struct pr_rules *rules, int64_t arrival_ms, char day[11]) {
    char full[32];
    int64_t offset = (int64_t)rules->day_offset_minutes * 60000, shifted;
    if (__builtin_add_overflow(arrival_ms, offset, &shifted)) shifted = arrival_ms;
    pr_format_utc(shifted, full, sizeof(full));
    memcpy(day, full, 10);
    day[10] = '\0';
}

static char *pr_arena_printf(struct pr_batch *batch, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *pr_arena_printf(struct pr_batch *batch, size_t *len, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(tmp)) n = sizeof(tmp) - 1;
    *len = (size_t)n;
    return pr_arena_strndup(&batch->arena, tmp, (size_t)n);
}

static int pr_aggregate_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    const struct pr_rules *rules = batch->rules;
    size_t live = 0;
    for (size_t i = 0; i < batch->count; i++) live += !pr_record_dead(&batch->records[i]);
    if (live == 0) return PR_OP_DONE;
    size_t argc = 3 + live * PR_AGG_FIELDS;
    if (argc > ctx->argv_cap) {
        ctx->argv_cap = argc;
        ctx->argv = pr_realloc(ctx->argv, argc * sizeof(*ctx->argv));
        ctx->argvlen = pr_realloc(ctx->argvlen, argc * sizeof(*ctx->argvlen));
    }
    size_t n = 0;
#define PR_ARG(ptr, len)                                                                     \
    do {                                                                                     \
        ctx->argv[n] = (ptr);                                                                \
        ctx->argvlen[n++] = (len);                                                           \
    } while (0)
    PR_ARG("0", 1); /* numkeys: keys are built inside; one Redis, no cluster slots */
    PR_ARG(ctx->ttl_ms, strlen(ctx->ttl_ms));
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        const struct pr_declaration *d = &rec->decl;
        const struct pr_policy_row *row = pr_policy_at(&rules->policy, d->arrival_time);
        char day[11];
        pr_arrival_day(rules, d->arrival_time, day);
        size_t len;
        char *cd = pr_arena_printf(batch, &len, "pr:cd:%s:%s", rec->consignee_key, day);
        PR_ARG(cd, len);
        PR_ARG(d->declaration_id.ptr, d->declaration_id.len);
        char *value = pr_arena_printf(batch, &len, "%lld", (long long)d->value_usd_cents);
        PR_ARG(value, len);
        bool threshold_applies = !row->repealed && !rec->suspended;
        bool within = d->value_usd_cents <= row->threshold_cents;
        PR_ARG(threshold_applies && within ? "1" : "0", 1);
        PR_ARG(within || row->repealed ? "0" : "1", 1);
        PR_ARG(d->house_bill.ptr, d->house_bill.len);
        char *thr = pr_arena_printf(batch, &len, "%lld", (long long)row->threshold_cents);
        PR_ARG(thr, len);
        /* Address cluster: digests of the delivery address and the name. */
        pr_record_norms(batch, rec);
        struct pr_str delivery = rec->norms.delivery_address;
        if (delivery.len > 0) {
            char digest[65];
            pr_sha256_hex_with(&ctx->sha, delivery.ptr, delivery.len, digest);
            char *ac = pr_arena_printf(batch, &len, "pr:ac:%s:%s", digest, day);
            PR_ARG(ac, len);
            pr_sha256_hex_with(&ctx->sha, rec->norms.consignee_name.ptr, rec->norms.consignee_name.len, digest);
            PR_ARG(pr_arena_strndup(&batch->arena, digest, 32), 32);
        } else {
            PR_ARG("", 0);
            PR_ARG("", 0);
        }
    }
#undef PR_ARG
    op->stats.round_trips++;
    redisReply *reply = pr_redis_eval(&ctx->redis, &ctx->script, (int)n, ctx->argv, ctx->argvlen);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != live * 5) {
        if (reply) {
            pr_error("aggregate: unexpected reply from the consignee-day script");
            freeReplyObject(reply);
        }
        if (!ctx->degrade) return PR_OP_RETRY;
        /* degrade: decide without the day's state, and say so. */
        size_t vlen = strlen(batch->refdata_version);
        if (vlen < 9 || strcmp(batch->refdata_version + vlen - 9, "+degraded") != 0) {
            char *v = pr_arena_alloc(&batch->arena, vlen + 10);
            memcpy(v, batch->refdata_version, vlen);
            memcpy(v + vlen, "+degraded", 10);
            batch->refdata_version = v;
        }
        return PR_OP_DONE;
    }
    size_t e = 0;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        const struct pr_declaration *d = &rec->decl;
        redisReply **r = reply->element + e;
        e += 5;
        int64_t total = r[0]->type == REDIS_REPLY_STRING ? atoll(r[0]->str) : r[0]->integer;
        long long overs = r[1]->integer;
        bool crossing = r[2]->integer == 1;
        long long names = r[4]->integer;
        rec->day_total_cents = total;
        rec->cluster_names = (int32_t)names;
        const struct pr_policy_row *row = pr_policy_at(&rules->policy, d->arrival_time);
        char day[11];
        pr_arrival_day(rules, d->arrival_time, day);
        bool threshold_applies = !row->repealed && !rec->suspended;
        if (threshold_applies && d->value_usd_cents <= row->threshold_cents && total > row->threshold_cents) {
            rec->aggregate_over_threshold = true;
            pr_record_firef(batch, rec, PR_R_AGGREGATE_OVER_THRESHOLD,
                            rules->points[PR_R_AGGREGATE_OVER_THRESHOLD],
                            "consignee-day %s total %lld cents above threshold %lld cents", day,
                            (long long)total, (long long)row->threshold_cents);
            if (overs == 0)
                pr_record_firef(batch, rec, PR_R_SPLIT_SHIPMENT, rules->points[PR_R_SPLIT_SHIPMENT],
                                "every declaration of consignee-day %s within %lld cents, total %lld cents",
                                day, (long long)row->threshold_cents, (long long)total);
            if (crossing && r[3]->type == REDIS_REPLY_STRING) {
                rec->aggregate_crossing = true;
                rec->day_house_bills.ptr = pr_arena_strndup(&batch->arena, r[3]->str, r[3]->len);
                rec->day_house_bills.len = (uint32_t)r[3]->len;
                size_t len;
                char *id = pr_arena_printf(batch, &len, "AGG:%s:%s", rec->consignee_key, day);
                rec->aggregate_alert_id = (struct pr_str){id, (uint32_t)len};
            }
        }
        if (names >= rules->cluster_size)
            pr_record_firef(batch, rec, PR_R_ADDRESS_CLUSTER, rules->points[PR_R_ADDRESS_CLUSTER],
                            "%lld distinct consignee names at the delivery address on %s (cluster size %d)",
                            names, day, rules->cluster_size);
    }
    freeReplyObject(reply);
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_aggregate = {
    .name = "aggregate",
    .description = "one person one day (AGGREGATE_OVER_THRESHOLD, SPLIT_SHIPMENT), ADDRESS_CLUSTER; state in Redis",
    .init = pr_aggregate_init,
    .process = pr_aggregate_process,
    .destroy = pr_aggregate_destroy,
};
