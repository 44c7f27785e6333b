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
 *
 * In process: given a state store at init (struct pr_operator_env, as
 * `parcelrisk whatif` does), the same counting is done by pipeline/domain/state.c
 * instead of the script, with no Redis at all; both paths decide through
 * pr_aggregate_decide, so the rules exist once.
 *
 * Values and totals (DOMAIN.md section 8): a negative value counts as 0, and
 * totals saturate instead of overflowing. Lua numbers are doubles, exact for
 * every integer up to 2^53 (PR_AGG_SATURATED, $90 trillion): C hands the
 * script each value already clamped to [0, 2^53], and the script adds as
 * min(total + value, 2^53). Both operands are at most 2^53, so when the true
 * sum is below 2^53 the double sum is exact, and when it is not the rounded
 * sum is still >= 2^53 (rounding is monotonic and 2^53 is a double): the
 * saturating sum is exact. Totals are printed with %d only within that range.
 * A total of 2^53 means "saturated": C reports it as INT64_MAX, and the
 * comparison with the threshold (which C clamps the same way) stays exact.
 *
 * Strings are passed and kept by length: ids and house bills may hold any
 * byte, NUL included, so the script builds the per-declaration record by
 * concatenation (Lua 5.1's string.format('%s') stops at a NUL for short
 * strings) and every argument goes with its length (redisCommandArgv).
 *
 * Cost: Redis runs every script single-threaded, so the script is built to
 * call Redis as little as possible: the batch's declarations are grouped by
 * key in C, and each distinct key costs one HMGET (state and every id of the
 * group at once) and, when something is new, one HSET and one PEXPIRE,
 * whatever the number of declarations in the group; a replay only reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "normalize.h"
#include "redis.h"
#include "rules.h"
#include "state.h"
#include "operator.h"

static const char pr_aggregate_lua[] =
    "local ttl, i, out = ARGV[1], 3, {}\n"
    "local SAT = 9007199254740992\n" /* 2^53: PR_AGG_SATURATED */
    "local function num(s) return tonumber(s) end\n"
    /* a total read back from the state: within [0, 2^53] whatever an older
     * version of this script stored */
    "local function total_of(s)\n"
    "  local t = tonumber(s) or 0\n"
    "  if t ~= t or t < 0 then return 0 end\n"
    "  if t > SAT then return SAT end\n"
    "  return t\n"
    "end\n"
    /* consignee-day groups: key, n, then n x ("d:"id, value, flags, house_bill, threshold);
     * ids and names come with their field prefix so Lua concatenates nothing. */
    "for g = 1, num(ARGV[2]) do\n"
    "  local key, n = ARGV[i], num(ARGV[i + 1]); i = i + 2\n"
    "  local fields = {'s', 'a'}\n"
    "  for k = 0, n - 1 do fields[#fields + 1] = ARGV[i + k * 5] end\n"
    "  local vals = redis.call('HMGET', key, unpack(fields))\n"
    "  local total, overs, owner, seen, writes, crossings = 0, 0, vals[2], {}, {}, {}\n"
    "  if vals[1] then local t, o = string.match(vals[1], '^(%-?%d+)|(%d+)$'); total, overs = "
    "total_of(t), num(o) or 0 end\n"
    "  for k = 0, n - 1 do\n"
    "    local b = i + k * 5\n"
    "    local id, flags, thr = ARGV[b], ARGV[b + 2], num(ARGV[b + 4])\n"
    "    local rec = vals[3 + k] or seen[id]\n"
    "    local t_at, o_at\n"
    "    if rec then\n"
    "      local t, o = string.match(rec, '^(%-?%d+)|(%d+)|'); t_at, o_at = total_of(t), num(o) or "
    "0\n"
    "    else\n"
    "      total = total + num(ARGV[b + 1]); if total > SAT then total = SAT end\n"
    "      if string.byte(flags, 2) == 49 then overs = overs + 1 end\n"
    "      t_at, o_at = total, overs\n"
    "      rec = string.format('%d|%d|', t_at, o_at) .. ARGV[b + 3]\n"
    "      seen[id] = rec; writes[#writes + 1] = id; writes[#writes + 1] = rec\n"
    "    end\n"
    "    local crossing = 0\n"
    "    if string.byte(flags, 1) == 49 and t_at > thr then\n"
    "      if not owner then owner = id; writes[#writes + 1] = 'a'; writes[#writes + 1] = id end\n"
    "      if owner == id then crossing = 1; crossings[#crossings + 1] = #out + 4 end\n"
    "    end\n"
    "    out[#out + 1] = string.format('%d', t_at); out[#out + 1] = o_at\n"
    "    out[#out + 1] = crossing; out[#out + 1] = ''\n"
    "  end\n"
    "  if #writes > 0 then\n"
    "    writes[#writes + 1] = 's'; writes[#writes + 1] = string.format('%d|%d', total, overs)\n"
    "    redis.call('HSET', key, unpack(writes))\n"
    "    redis.call('PEXPIRE', key, ttl)\n"
    "  end\n"
    "  if #crossings > 0 then\n"
    "    local all, list = redis.call('HGETALL', key), {}\n"
    "    for j = 1, #all, 2 do\n"
    "      if string.sub(all[j], 1, 2) == 'd:' then\n"
    "        list[#list + 1] = string.match(all[j + 1], '^[^|]*|[^|]*|(.*)$')\n"
    "      end\n"
    "    end\n"
    "    table.sort(list)\n"
    "    local bills = table.concat(list, ',')\n"
    "    for _, slot in ipairs(crossings) do out[slot] = bills end\n"
    "  end\n"
    "  i = i + n * 5\n"
    "end\n"
    /* address-day groups: key, n, then n x ("d:"id, "n:"name digest) */
    "local groups = num(ARGV[i]); i = i + 1\n"
    "for g = 1, groups do\n"
    "  local key, n = ARGV[i], num(ARGV[i + 1]); i = i + 2\n"
    "  local fields = {'c'}\n"
    "  for k = 0, n - 1 do\n"
    "    fields[#fields + 1] = ARGV[i + k * 2]; fields[#fields + 1] = ARGV[i + k * 2 + 1]\n"
    "  end\n"
    "  local vals = redis.call('HMGET', key, unpack(fields))\n"
    "  local count, seen, named, writes = num(vals[1] or '0'), {}, {}, {}\n"
    "  for k = 0, n - 1 do\n"
    "    local id, name = ARGV[i + k * 2], ARGV[i + k * 2 + 1]\n"
    "    local c = vals[2 + k * 2] or seen[id]\n"
    "    if not c then\n"
    "      if not vals[3 + k * 2] and not named[name] then\n"
    "        count = count + 1; named[name] = true\n"
    "        writes[#writes + 1] = name; writes[#writes + 1] = '1'\n"
    "      end\n"
    "      c = tostring(count); seen[id] = c\n"
    "      writes[#writes + 1] = id; writes[#writes + 1] = c\n"
    "    end\n"
    "    out[#out + 1] = num(c)\n"
    "  end\n"
    "  if #writes > 0 then\n"
    "    writes[#writes + 1] = 'c'; writes[#writes + 1] = tostring(count)\n"
    "    redis.call('HSET', key, unpack(writes))\n"
    "    redis.call('PEXPIRE', key, ttl)\n"
    "  end\n"
    "  i = i + n * 2\n"
    "end\n"
    "return out\n";

/* 2^53: the largest total the script keeps (see the top of the file). */
#define PR_AGG_SATURATED PR_STATE_SCRIPT_TOTAL_CAP

/* What the script adds for a value: negative counts as 0 (DOMAIN.md section
 * 8), and anything above 2^53 as 2^53 (it saturates the day by itself). */
static int64_t pr_agg_counted(int64_t value_cents) {
    if (value_cents < 0) return 0;
    return value_cents > PR_AGG_SATURATED ? PR_AGG_SATURATED : value_cents;
}

/* A key of the batch and the records that share it, in batch order. */
struct pr_agg_group {
    struct pr_str key;
    uint32_t first, last, count; /* record indexes, linked through next[] */
};

struct pr_agg_groups {
    struct pr_agg_group *groups;
    size_t count, cap;
    uint32_t *index; /* open addressing over groups */
    size_t index_cap;
    uint32_t *next; /* per record: next record of the same group */
};

struct pr_aggregate_ctx {
    struct pr_state *state; /* in process (whatif): no Redis */
    struct pr_buf bills;    /* house bills of a crossing, in-process path */
    struct pr_redis redis;
    struct pr_script script;
    bool degrade;
    char ttl_ms[24];
    struct pr_sha256 sha;
    struct pr_agg_groups day_groups, address_groups;
    uint32_t *day_slot;     /* per record: its position in the reply, or UINT32_MAX */
    uint32_t *address_slot; /* per record: its position in the reply, or UINT32_MAX */
    size_t record_cap;
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
};

static int pr_aggregate_init(struct pr_operator *op, const struct pr_operator_env *env) {
    const struct pr_config *cfg = env->cfg;
    struct pr_aggregate_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    pr_sha256_init(&ctx->sha);
    pr_buf_init(&ctx->bills);
    if (env->state) {
        ctx->state = env->state;
        op->ctx = ctx;
        return PR_OK;
    }
    struct pr_redis_auth auth = {cfg->redis_user, cfg->redis_password};
    if (pr_redis_init(&ctx->redis, cfg->redis_address, cfg->redis_timeout_ms, &auth) != PR_OK ||
        pr_redis_check_access(&ctx->redis) != PR_OK) {
        pr_redis_close(&ctx->redis);
        pr_sha256_free(&ctx->sha);
        pr_buf_free(&ctx->bills);
        free(ctx);
        return PR_ERR;
    }
    ctx->script = (struct pr_script){.name = "consignee-day", .body = pr_aggregate_lua};
    ctx->degrade = strcmp(cfg->on_redis_unavailable, "degrade") == 0;
    snprintf(ctx->ttl_ms, sizeof(ctx->ttl_ms), "%lld", (long long)cfg->state_ttl_hours * 3600000LL);
    op->ctx = ctx;
    return PR_OK;
}

static void pr_groups_free(struct pr_agg_groups *g) {
    free(g->groups);
    free(g->index);
    free(g->next);
}

static void pr_aggregate_destroy(struct pr_operator *op) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    if (!ctx->state) pr_redis_close(&ctx->redis);
    pr_sha256_free(&ctx->sha);
    pr_buf_free(&ctx->bills);
    pr_groups_free(&ctx->day_groups);
    pr_groups_free(&ctx->address_groups);
    free(ctx->day_slot);
    free(ctx->address_slot);
    free(ctx->argv);
    free(ctx->argvlen);
    free(ctx);
}

static void pr_groups_reset(struct pr_agg_groups *g, size_t records) {
    g->count = 0;
    size_t want = 64;
    while (want < records * 2) want *= 2;
    if (want > g->index_cap) {
        free(g->index);
        g->index = pr_malloc(want * sizeof(*g->index));
        g->index_cap = want;
        free(g->next);
        g->next = pr_malloc(want * sizeof(*g->next));
    }
    if (records > g->cap) {
        g->cap = records;
        g->groups = pr_realloc(g->groups, g->cap * sizeof(*g->groups));
    }
    memset(g->index, 0xff, g->index_cap * sizeof(*g->index));
}

static void pr_groups_add(struct pr_agg_groups *g, struct pr_str key, uint32_t record) {
    size_t mask = g->index_cap - 1;
    size_t i = pr_hash64(key.ptr, key.len) & mask;
    g->next[record] = UINT32_MAX;
    while (g->index[i] != UINT32_MAX) {
        struct pr_agg_group *grp = &g->groups[g->index[i]];
        if (grp->key.len == key.len && memcmp(grp->key.ptr, key.ptr, key.len) == 0) {
            g->next[grp->last] = record;
            grp->last = record;
            grp->count++;
            return;
        }
        i = (i + 1) & mask;
    }
    g->index[i] = (uint32_t)g->count;
    g->groups[g->count++] = (struct pr_agg_group){key, record, record, 1};
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

static struct pr_str pr_prefixed(struct pr_batch *batch, const char prefix[3], struct pr_str s) {
    char *k = pr_arena_alloc(&batch->arena, (size_t)s.len + 3);
    k[0] = prefix[0];
    k[1] = prefix[1];
    memcpy(k + 2, s.ptr, s.len);
    k[s.len + 2] = '\0';
    return (struct pr_str){k, s.len + 2};
}

static struct pr_str pr_decimal(struct pr_batch *batch, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    return (struct pr_str){pr_arena_strndup(&batch->arena, tmp, (size_t)n), (uint32_t)n};
}

static void pr_agg_arg(struct pr_aggregate_ctx *ctx, size_t *n, const char *ptr, size_t len) {
    ctx->argv[*n] = ptr;
    ctx->argvlen[*n] = len;
    (*n)++;
}

static int pr_aggregate_degraded(struct pr_aggregate_ctx *ctx, struct pr_batch *batch) {
    if (!ctx->degrade) return PR_OP_RETRY;
    batch->degraded = true; /* degrade: decide without the day's state, and say so */
    return PR_OP_DONE;
}

/*
 * The same decisions with the state in process (pipeline/domain/state.c, given by
 * whatif): the consignee-day and the address-day of each record are counted
 * in batch order, as the script counts them, then every record is decided
 * through pr_aggregate_decide; a crossing lists the house bills of its day
 * as they stand after the whole batch is counted, as the script's HGETALL
 * does. The state's clock is batch->now_ms. The consignee-day key is the
 * consignee_key as raw bytes plus the day; the address-day key and the name
 * are 128-bit digests (pr_local_key).
 */
/* An in-process key: a 128-bit digest of data (two SipHash-2-4 under fixed,
 * distinct keys) followed by the day text, 26 bytes in the arena. In this
 * process's memory only, so it needs equality, not secrecy: 128 bits make a
 * collision between two addresses or names as unlikely as one of SHA-256's
 * (1e-20 with a billion keys), at a tenth of its cost, and hold no raw
 * name or address. */
static const uint8_t pr_local_keys[2][16] = {
    {0x70, 0x72, 0x2d, 0x73, 0x74, 0x61, 0x74, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30,
     0x31},
    {0x70, 0x72, 0x2d, 0x73, 0x74, 0x61, 0x74, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30,
     0x32},
};

static struct pr_str pr_local_key(struct pr_batch *batch, const void *data, size_t len,
                                  const char day[11]) {
    char *k = pr_arena_alloc(&batch->arena, 16 + 10);
    uint64_t h[2] = {pr_siphash24(pr_local_keys[0], data, len),
                     pr_siphash24(pr_local_keys[1], data, len)};
    memcpy(k, h, 16);
    memcpy(k + 16, day, 10);
    return (struct pr_str){k, 26};
}

static int pr_hex_nibble(char c) {
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int pr_aggregate_process_local(struct pr_aggregate_ctx *ctx, struct pr_batch *batch) {
    const struct pr_rules *rules = batch->rules;
    size_t n = batch->count ? batch->count : 1;
    char(*days)[11] = pr_arena_alloc(&batch->arena, n * 11);
    struct pr_str *day_keys = pr_arena_alloc(&batch->arena, n * sizeof(struct pr_str));
    struct pr_state_day *counted = pr_arena_alloc(&batch->arena, n * sizeof(struct pr_state_day));
    int32_t *names = pr_arena_alloc(&batch->arena, n * sizeof(int32_t));
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
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
        pr_state_day_count(ctx->state, day_keys[i], d->declaration_id,
                           pr_agg_counted(d->value_usd_cents), !within && !row->repealed,
                           applies && within, thr, d->house_bill, batch->now_ms, &counted[i]);
        names[i] = 0;
        pr_record_norms(batch, rec);
        struct pr_str delivery = rec->norms.delivery_address;
        if (delivery.len > 0) {
            struct pr_str address_key = pr_local_key(batch, delivery.ptr, delivery.len, days[i]);
            struct pr_str name_key = pr_local_key(batch, rec->norms.consignee_name.ptr,
                                                  rec->norms.consignee_name.len, days[i]);
            name_key.len =
                16; /* the name's 128 bits, as the Redis path keeps 128 bits of its digest */
            names[i] = pr_state_address_count(ctx->state, address_key, d->declaration_id, name_key,
                                              batch->now_ms);
        }
    }
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        const struct pr_state_day *c = &counted[i];
        pr_buf_reset(&ctx->bills);
        if (c->crossing) pr_state_day_house_bills(ctx->state, day_keys[i], &ctx->bills);
        int64_t kept = c->total > PR_AGG_SATURATED ? PR_AGG_SATURATED : c->total;
        pr_aggregate_decide(batch, rec, days[i], kept, c->overs, c->crossing,
                            c->crossing ? (ctx->bills.data ? (const char *)ctx->bills.data : "")
                                        : NULL,
                            ctx->bills.len, names[i]);
    }
    pr_state_expire(ctx->state, batch->now_ms);
    return PR_OP_DONE;
}

static int pr_aggregate_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_aggregate_ctx *ctx = op->ctx;
    if (ctx->state) return pr_aggregate_process_local(ctx, batch);
    const struct pr_rules *rules = batch->rules;
    if (batch->count > ctx->record_cap) {
        ctx->record_cap = batch->count;
        ctx->day_slot = pr_realloc(ctx->day_slot, batch->count * sizeof(uint32_t));
        ctx->address_slot = pr_realloc(ctx->address_slot, batch->count * sizeof(uint32_t));
    }
    pr_groups_reset(&ctx->day_groups, batch->count);
    pr_groups_reset(&ctx->address_groups, batch->count);
    /* Per record: the day, its consignee-day key, its address-day key. */
    char(*days)[11] = pr_arena_alloc(&batch->arena, (batch->count ? batch->count : 1) * 11);
    struct pr_str *names =
        pr_arena_alloc(&batch->arena, (batch->count ? batch->count : 1) * sizeof(struct pr_str));
    size_t live = 0, with_address = 0;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        ctx->day_slot[i] = ctx->address_slot[i] = UINT32_MAX;
        if (pr_record_dead(rec)) continue;
        live++;
        pr_day_text(rec->decl.arrival_time, rules->day_offset_minutes, days[i]);
        pr_groups_add(&ctx->day_groups,
                      pr_key3(batch, "pr:cd:", rec->consignee_key, 64, days[i], 10), (uint32_t)i);
        pr_record_norms(batch, rec);
        struct pr_str delivery = rec->norms.delivery_address;
        if (delivery.len > 0) {
            char digest[65];
            pr_sha256_hex_with(&ctx->sha, delivery.ptr, delivery.len, digest);
            pr_groups_add(&ctx->address_groups, pr_key3(batch, "pr:ac:", digest, 64, days[i], 10),
                          (uint32_t)i);
            pr_sha256_hex_with(&ctx->sha, rec->norms.consignee_name.ptr,
                               rec->norms.consignee_name.len, digest);
            names[i] = pr_prefixed(batch, "n:", (struct pr_str){digest, 32});
            with_address++;
        }
    }
    if (live == 0) return PR_OP_DONE;

    size_t argc =
        4 + 2 * (ctx->day_groups.count + ctx->address_groups.count) + 5 * live + 2 * with_address;
    if (argc > ctx->argv_cap) {
        ctx->argv_cap = argc;
        ctx->argv = pr_realloc(ctx->argv, argc * sizeof(*ctx->argv));
        ctx->argvlen = pr_realloc(ctx->argvlen, argc * sizeof(*ctx->argvlen));
    }
    size_t n = 0;
    pr_agg_arg(ctx, &n, "0", 1); /* numkeys: one Redis, no cluster slots */
    pr_agg_arg(ctx, &n, ctx->ttl_ms, strlen(ctx->ttl_ms));
    struct pr_str group_count = pr_decimal(batch, (int64_t)ctx->day_groups.count);
    pr_agg_arg(ctx, &n, group_count.ptr, group_count.len);
    uint32_t slot = 0;
    for (size_t g = 0; g < ctx->day_groups.count; g++) {
        const struct pr_agg_group *grp = &ctx->day_groups.groups[g];
        struct pr_str count = pr_decimal(batch, grp->count);
        pr_agg_arg(ctx, &n, grp->key.ptr, grp->key.len);
        pr_agg_arg(ctx, &n, count.ptr, count.len);
        for (uint32_t r = grp->first; r != UINT32_MAX; r = ctx->day_groups.next[r]) {
            struct pr_record *rec = &batch->records[r];
            const struct pr_declaration *d = &rec->decl;
            const struct pr_policy_row *row =
                pr_policy_at(&rules->policy, pr_rules_policy_instant(rules, d));
            bool applies = !row->repealed && !rec->suspended;
            bool within = d->value_usd_cents <= row->threshold_cents;
            /* flags: [0] a candidate for AGGREGATE (threshold applies, this one
             * within), [1] individually over the threshold */
            static const char *const flag_text[4] = {"00", "01", "10", "11"};
            int flags = ((applies && within) ? 2 : 0) | ((!within && !row->repealed) ? 1 : 0);
            struct pr_str value = pr_decimal(batch, pr_agg_counted(d->value_usd_cents));
            /* The script compares with the total as it keeps it (at most
             * 2^53), so the threshold is clamped the same way. */
            struct pr_str thr =
                pr_decimal(batch, row->threshold_cents > PR_AGG_SATURATED ? PR_AGG_SATURATED
                                                                          : row->threshold_cents);
            struct pr_str id = pr_prefixed(batch, "d:", d->declaration_id);
            pr_agg_arg(ctx, &n, id.ptr, id.len);
            pr_agg_arg(ctx, &n, value.ptr, value.len);
            pr_agg_arg(ctx, &n, flag_text[flags], 2);
            pr_agg_arg(ctx, &n, d->house_bill.ptr, d->house_bill.len);
            pr_agg_arg(ctx, &n, thr.ptr, thr.len);
            ctx->day_slot[r] = slot;
            slot += 4;
        }
    }
    group_count = pr_decimal(batch, (int64_t)ctx->address_groups.count);
    pr_agg_arg(ctx, &n, group_count.ptr, group_count.len);
    for (size_t g = 0; g < ctx->address_groups.count; g++) {
        const struct pr_agg_group *grp = &ctx->address_groups.groups[g];
        struct pr_str count = pr_decimal(batch, grp->count);
        pr_agg_arg(ctx, &n, grp->key.ptr, grp->key.len);
        pr_agg_arg(ctx, &n, count.ptr, count.len);
        for (uint32_t r = grp->first; r != UINT32_MAX; r = ctx->address_groups.next[r]) {
            const struct pr_record *rec = &batch->records[r];
            struct pr_str id = pr_prefixed(batch, "d:", rec->decl.declaration_id);
            pr_agg_arg(ctx, &n, id.ptr, id.len);
            pr_agg_arg(ctx, &n, names[r].ptr, names[r].len);
            ctx->address_slot[r] = slot++;
        }
    }

    op->stats.round_trips++;
    redisReply *reply = pr_redis_eval(&ctx->redis, &ctx->script, (int)n, ctx->argv, ctx->argvlen);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != slot) {
        if (reply) {
            pr_error("aggregate: unexpected reply from the consignee-day script");
            freeReplyObject(reply);
        }
        return pr_aggregate_degraded(ctx, batch);
    }
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) continue;
        redisReply **r = reply->element + ctx->day_slot[i];
        /* The total as the script keeps it, within [0, 2^53]. */
        int64_t kept =
            r[0]->type == REDIS_REPLY_STRING ? strtoll(r[0]->str, NULL, 10) : r[0]->integer;
        long long names_at_address =
            ctx->address_slot[i] != UINT32_MAX ? reply->element[ctx->address_slot[i]]->integer : 0;
        bool has_bills = r[2]->integer == 1 && r[3]->type == REDIS_REPLY_STRING;
        pr_aggregate_decide(batch, rec, days[i], kept, r[1]->integer, r[2]->integer == 1,
                            has_bills ? r[3]->str : NULL, has_bills ? (size_t)r[3]->len : 0,
                            names_at_address);
    }
    freeReplyObject(reply);
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_aggregate = {
    .name = "aggregate",
    .description = "one person one day (AGGREGATE_OVER_THRESHOLD, SPLIT_SHIPMENT), "
                   "ADDRESS_CLUSTER; state in Redis",
    .init = pr_aggregate_init,
    .process = pr_aggregate_process,
    .destroy = pr_aggregate_destroy,
};
