/*
 * enrich - looks up, for a whole batch at once, the reference data its
 * declarations need (DOMAIN.md sections 6-7): each line's HTS code and its
 * 8/6/4/2-digit prefixes, each line's origin country, the normalized
 * shipper, seller and consignee names and the consignee's delivery address.
 *
 * Distinct keys of the batch are answered from an in-process cache (bounded,
 * TTL, CLOCK eviction; "not on any list" is cached too); all misses go to
 * Redis in ONE round trip: a Lua script that reads pr:ref:current and the
 * version's hashes atomically. The script is also the version check: it is
 * given the version the cache holds and, when the current version differs,
 * answers only the new version; the cache is then cleared and the batch's
 * keys are asked again (a second round trip, only on a switch), so a batch
 * never mixes two versions. On first contact (no version known, cache empty)
 * it answers with whatever version is current.
 *
 * The same script checks the version against its manifest (refdata.h:
 * every table present with the type and size it was loaded with). The
 * manifest itself is read from the version's meta hash only on first
 * contact, at a switch and after a failed check; every other batch passes
 * the manifest learned then and the script compares the tables' sizes with
 * it (TYPE and HLEN of three keys: O(1), inside the round trip the batch
 * makes anyway), so a table deleted or cut short while its version is
 * current is found at the next batch, not minutes later. A version that
 * does not check out (or has no manifest: loaded by an older parcelrisk) is
 * unavailable, exactly like Redis down, and never adopted: the cache keeps
 * the last good version's answers. The reason (keys and counts, never data)
 * is logged at most once per 10 s, and at once when it changes.
 *
 * Redis or its current version unavailable (redis.on_unavailable):
 *   pause   (default) return PR_OP_RETRY: the engine stops fetching, backs off
 *           and retries the batch; nothing is decided on missing data.
 *   degrade decide from the cache alone; misses count as "not listed"; the
 *           batch's refdata_version is the cache's version and the batch is
 *           marked degraded (batch->degraded: its decisions say
 *           "<version>+degraded"). With nothing cached yet (no version ever
 *           checked out) it pauses as above.
 *
 * Results go to rec->line_refs and rec->party_severity for the policy and
 * screen operators.
 *
 * From a snapshot (struct pr_operator_env.refdata, `parcelrisk whatif`):
 * every key of the batch is answered from that one version in memory; no
 * Redis, no cache, never unavailable. Collecting the keys and turning the
 * answers into line_refs and party severities is the same code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "hash.h"
#include "normalize.h"
#include "redis.h"
#include "refdata.h"
#include "refdata_snapshot.h"
#include "operator.h"

/* Per record: 5 party keys, then 6 keys per line (10, 8, 6, 4, 2 digits,
 * origin country). */
#define PR_PARTY_KEYS 5
#define PR_LINE_KEYS 6
#define PR_NO_KEY UINT32_MAX

/* KEYS[1] = pr:ref:current; ARGV[1] = the version the caller holds ('' when
 * none yet: answer for whatever is current); ARGV[2] = 'meta' to check the
 * version against the manifest in its meta hash, or the manifest text the
 * caller learned from that check, to check the tables' sizes against it;
 * ARGV[3..] = the keys to look up. Replies {cur} alone when cur is not
 * ARGV[1]; {cur, why} when the version does not check out; else
 * {cur, 'ok', manifest checked, values...}. */
static const char pr_lookup_lua[] = PR_REFDATA_VERIFY_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return {false} end\n"
    "if ARGV[1] ~= '' and cur ~= ARGV[1] then return {cur} end\n"
    "local given = nil\n"
    "if ARGV[2] ~= 'meta' then given = ARGV[2] end\n"
    "local why, manifest = pr_ref_verify(cur, " PR_REFDATA_TABLES_LUA ", given)\n"
    "if why then return {cur, why} end\n"
    "local base = 'pr:ref:' .. cur .. ':'\n"
    "local hashes = {h = base .. 'hts', v = base .. 'vio', c = base .. 'cty'}\n"
    "local out = {cur, 'ok', manifest}\n"
    "for i = 3, #ARGV do\n"
    "  local k = ARGV[i]\n"
    "  local v = redis.call('HGET', hashes[string.sub(k, 1, 1)], string.sub(k, 3))\n"
    "  out[i + 1] = v or ''\n"
    "end\n"
    "return out\n";

#define PR_ENRICH_LOG_INTERVAL_MS 10000

enum pr_key_state { PR_KEY_PENDING = 0, PR_KEY_FOUND, PR_KEY_ABSENT };

struct pr_enrich_key {
    const char *key; /* arena */
    uint32_t len;
    uint8_t state;
    const char *value; /* arena, when FOUND */
    uint32_t value_len;
};

struct pr_enrich_ctx {
    const struct pr_refdata_snapshot *snapshot; /* whatif: answers without Redis */
    struct pr_redis redis;
    struct pr_script script;
    struct pr_cache cache;
    bool degrade;
    char version[128];            /* the version the cache holds; "" before first contact */
    char verified[128];           /* version whose manifest last checked out; "" after a failure */
    char manifest[256];           /* that manifest: every batch checks the table sizes against it */
    char unavailable[512];        /* why the last batch could not use Redis ("" when not
                                   * a manifest problem) */
    char unavailable_logged[512]; /* the reason last logged; "" once a version checks out */
    int64_t unavailable_log_ms;   /* monotonic: when it was logged */
    int64_t nodata_log_ms;        /* monotonic: last "no reference data" line */
    struct pr_buf scratch;
    /* The batch's distinct keys, with an open-addressing index. */
    struct pr_enrich_key *keys;
    size_t key_count, key_cap;
    uint32_t *index;
    size_t index_cap;
    /* Key ids of each record: rec_keys[rec_offset[i] ...]. */
    uint32_t *rec_keys;
    size_t rec_keys_cap;
    size_t *rec_offset;
    size_t rec_offset_cap;
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
};

static int pr_enrich_init(struct pr_operator *op, const struct pr_operator_env *env) {
    const struct pr_config *cfg = env->cfg;
    struct pr_enrich_ctx *ctx = pr_calloc(1, sizeof(*ctx));
    pr_buf_init(&ctx->scratch);
    if (env->refdata) {
        ctx->snapshot = env->refdata;
        snprintf(ctx->version, sizeof(ctx->version), "%s", env->refdata->version);
        op->ctx = ctx;
        return PR_OK;
    }
    struct pr_redis_auth auth = {cfg->redis_user, cfg->redis_password};
    if (pr_redis_init(&ctx->redis, cfg->redis_address, cfg->redis_timeout_ms, &auth) != PR_OK ||
        pr_redis_check_access(&ctx->redis) != PR_OK) {
        pr_redis_close(&ctx->redis);
        free(ctx);
        return PR_ERR;
    }
    ctx->script = (struct pr_script){.name = "refdata lookup", .body = pr_lookup_lua};
    pr_cache_init(&ctx->cache, (size_t)cfg->cache_max_entries, (size_t)cfg->cache_max_mb << 20,
                  cfg->cache_ttl_ms);
    ctx->degrade = strcmp(cfg->on_redis_unavailable, "degrade") == 0;
    op->ctx = ctx;
    return PR_OK;
}

static void pr_enrich_destroy(struct pr_operator *op) {
    struct pr_enrich_ctx *ctx = op->ctx;
    if (!ctx->snapshot) {
        pr_redis_close(&ctx->redis);
        pr_cache_destroy(&ctx->cache);
    }
    pr_buf_free(&ctx->scratch);
    free(ctx->keys);
    free(ctx->index);
    free(ctx->rec_keys);
    free(ctx->rec_offset);
    free(ctx->argv);
    free(ctx->argvlen);
    free(ctx);
}

/* ------------------------------------------------------------ key table */

static void pr_keys_reset(struct pr_enrich_ctx *ctx, size_t expected) {
    ctx->key_count = 0;
    size_t want = 64;
    while (want < expected * 2) want *= 2;
    if (want > ctx->index_cap) {
        free(ctx->index);
        ctx->index = pr_malloc(want * sizeof(*ctx->index));
        ctx->index_cap = want;
    }
    memset(ctx->index, 0xff, ctx->index_cap * sizeof(*ctx->index));
}

/* Interns key (copied into the arena when new); returns its id. */
static uint32_t pr_keys_intern(struct pr_enrich_ctx *ctx, struct pr_batch *batch, const char *key,
                               size_t len) {
    if ((ctx->key_count + 1) * 2 > ctx->index_cap) {
        /* Grow the index and re-insert (rare: sized from the batch up front). */
        size_t cap = ctx->index_cap * 2;
        free(ctx->index);
        ctx->index = pr_malloc(cap * sizeof(*ctx->index));
        ctx->index_cap = cap;
        memset(ctx->index, 0xff, cap * sizeof(*ctx->index));
        for (uint32_t id = 0; id < ctx->key_count; id++) {
            size_t i = pr_hash64(ctx->keys[id].key, ctx->keys[id].len) & (cap - 1);
            while (ctx->index[i] != PR_NO_KEY) i = (i + 1) & (cap - 1);
            ctx->index[i] = id;
        }
    }
    size_t mask = ctx->index_cap - 1;
    size_t i = pr_hash64(key, len) & mask;
    while (ctx->index[i] != PR_NO_KEY) {
        struct pr_enrich_key *k = &ctx->keys[ctx->index[i]];
        if (k->len == len && memcmp(k->key, key, len) == 0) return ctx->index[i];
        i = (i + 1) & mask;
    }
    if (ctx->key_count == ctx->key_cap) {
        ctx->key_cap = ctx->key_cap ? ctx->key_cap * 2 : 1024;
        ctx->keys = pr_realloc(ctx->keys, ctx->key_cap * sizeof(*ctx->keys));
    }
    uint32_t id = (uint32_t)ctx->key_count++;
    ctx->keys[id] = (struct pr_enrich_key){.key = pr_arena_strndup(&batch->arena, key, len),
                                           .len = (uint32_t)len};
    ctx->index[i] = id;
    return id;
}

/* Interns "<prefix><normal form>"; PR_NO_KEY for an empty normal form. */
static uint32_t pr_party_key(struct pr_enrich_ctx *ctx, struct pr_batch *batch, const char *prefix,
                             struct pr_str norm) {
    if (norm.len == 0) return PR_NO_KEY;
    size_t plen = strlen(prefix);
    pr_buf_reset(&ctx->scratch);
    pr_buf_append(&ctx->scratch, prefix, plen);
    pr_buf_append(&ctx->scratch, norm.ptr, norm.len);
    return pr_keys_intern(ctx, batch, (const char *)ctx->scratch.data, ctx->scratch.len);
}

static bool pr_all_digits(struct pr_str s) {
    if (s.len == 0) return false;
    for (uint32_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return false;
    return true;
}

static void pr_enrich_collect(struct pr_enrich_ctx *ctx, struct pr_batch *batch,
                              struct pr_record *rec, uint32_t *ids) {
    const struct pr_declaration *d = &rec->decl;
    for (int i = 0; i < PR_PARTY_KEYS; i++) ids[i] = PR_NO_KEY;
    pr_record_norms(batch, rec);
    ids[0] = pr_party_key(ctx, batch, "v:SHIPPER|", rec->norms.shipper_name);
    if (d->has_seller) ids[1] = pr_party_key(ctx, batch, "v:SELLER|", rec->norms.seller_name);
    ids[2] = pr_party_key(ctx, batch, "v:CONSIGNEE|", rec->norms.consignee_name);
    ids[3] = pr_party_key(ctx, batch, "v:ADDRESS|", rec->norms.consignee_address);
    if (ids[3] != PR_NO_KEY) {
        uint32_t id = pr_party_key(ctx, batch, "v:ADDRESS|", rec->norms.delivery_address);
        if (id != ids[3]) ids[4] = id;
    }
    char key[16];
    for (uint32_t l = 0; l < d->line_count; l++) {
        uint32_t *line_ids = ids + PR_PARTY_KEYS + l * PR_LINE_KEYS;
        const struct pr_line *line = &d->lines[l];
        static const uint32_t lengths[5] = {10, 8, 6, 4, 2};
        bool digits = pr_all_digits(line->hts);
        for (int k = 0; k < 5; k++) {
            line_ids[k] = PR_NO_KEY;
            uint32_t want = lengths[k];
            /* Prefix rows apply to any all-digit code at least that long;
             * a 10-digit row only to its own code. */
            if (!digits || line->hts.len < want || (want == 10 && line->hts.len != 10)) continue;
            key[0] = 'h';
            key[1] = ':';
            memcpy(key + 2, line->hts.ptr, want);
            line_ids[k] = pr_keys_intern(ctx, batch, key, 2 + want);
        }
        line_ids[5] = PR_NO_KEY;
        if (line->origin_country.len > 0 && line->origin_country.len <= 8) {
            key[0] = 'c';
            key[1] = ':';
            memcpy(key + 2, line->origin_country.ptr, line->origin_country.len);
            line_ids[5] = pr_keys_intern(ctx, batch, key, 2 + line->origin_country.len);
        }
    }
}

/* ------------------------------------------------------------- lookups */

static void pr_enrich_store(struct pr_batch *batch, struct pr_enrich_key *k, const char *value,
                            size_t len, bool found) {
    k->state = found ? PR_KEY_FOUND : PR_KEY_ABSENT;
    k->value = found ? pr_arena_strndup(&batch->arena, value, len) : NULL;
    k->value_len = found ? (uint32_t)len : 0;
}

static int64_t pr_enrich_clock_ms(void) {
    return pr_monotonic_us() / 1000;
}

static bool pr_reply_equals(const redisReply *reply, const char *s) {
    size_t len = strlen(s);
    return reply->type == REDIS_REPLY_STRING && (size_t)reply->len == len &&
           memcmp(reply->str, s, len) == 0;
}

/* One round trip for every PENDING key (every key after a switch), with the
 * version check, the manifest check and the lookups, atomically in one
 * script. The manifest is read from the version's meta hash on first
 * contact, at a switch and after a failed check; otherwise the sizes of the
 * tables are checked against the manifest learned then (O(1) per table, so
 * a table deleted or cut short while its version is current is found at the
 * next batch). A new version is adopted (cache cleared) only once it checks
 * out; until then the cache keeps the old version's answers. Returns PR_OK,
 * or PR_ERR when Redis is unavailable, holds no reference data, or its
 * current version does not check out (then ctx->unavailable says why). */
static int pr_enrich_fetch(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_enrich_ctx *ctx = op->ctx;
    char asked[sizeof(ctx->version)];
    snprintf(asked, sizeof(asked), "%s", ctx->version);
    bool all = false; /* ask every key: the answers will be of a new version */
    ctx->unavailable[0] = '\0';
    for (int attempt = 0; attempt < 3; attempt++) {
        /* The manifest learned can be trusted only for the version it came
         * from (asked is "" on first contact: it is never verified). */
        bool read_manifest = !ctx->verified[0] || strcmp(asked, ctx->verified) != 0;
        size_t sent = 0;
        for (size_t i = 0; i < ctx->key_count; i++)
            if (all || ctx->keys[i].state == PR_KEY_PENDING) sent++;
        size_t argc = 4 + sent;
        if (argc > ctx->argv_cap) {
            ctx->argv_cap = argc * 2;
            ctx->argv = pr_realloc(ctx->argv, ctx->argv_cap * sizeof(*ctx->argv));
            ctx->argvlen = pr_realloc(ctx->argvlen, ctx->argv_cap * sizeof(*ctx->argvlen));
        }
        ctx->argv[0] = "1";
        ctx->argvlen[0] = 1;
        ctx->argv[1] = PR_REF_CURRENT;
        ctx->argvlen[1] = strlen(PR_REF_CURRENT);
        ctx->argv[2] = asked;
        ctx->argvlen[2] = strlen(asked);
        ctx->argv[3] = read_manifest ? "meta" : ctx->manifest;
        ctx->argvlen[3] = strlen(ctx->argv[3]);
        size_t n = 4;
        for (size_t i = 0; i < ctx->key_count; i++) {
            if (!all && ctx->keys[i].state != PR_KEY_PENDING) continue;
            ctx->argv[n] = ctx->keys[i].key;
            ctx->argvlen[n++] = ctx->keys[i].len;
        }
        op->stats.round_trips++;
        redisReply *reply =
            pr_redis_eval(&ctx->redis, &ctx->script, (int)argc, ctx->argv, ctx->argvlen);
        if (!reply) return PR_ERR;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
            reply->element[0]->type != REDIS_REPLY_STRING) {
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
                reply->element[0]->type == REDIS_REPLY_NIL) {
                if (pr_enrich_clock_ms() - ctx->nodata_log_ms > PR_ENRICH_LOG_INTERVAL_MS) {
                    pr_warn("enrich: no reference data in Redis (%s is not set): run `parcelrisk "
                            "refdata load`",
                            PR_REF_CURRENT);
                    ctx->nodata_log_ms = pr_enrich_clock_ms();
                }
            } else {
                pr_error("enrich: unexpected reply from the lookup script");
            }
            freeReplyObject(reply);
            return PR_ERR;
        }
        const redisReply *cur = reply->element[0];
        if (asked[0] && !pr_reply_equals(cur, asked)) {
            /* Another version is current: ask again, for every key of the
             * batch, checking the new version's manifest. */
            snprintf(asked, sizeof(asked), "%.*s", (int)cur->len, cur->str);
            all = true;
            freeReplyObject(reply);
            continue;
        }
        if (reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_STRING) {
            pr_error("enrich: unexpected reply from the lookup script");
            freeReplyObject(reply);
            return PR_ERR;
        }
        const redisReply *check = reply->element[1];
        if (!pr_reply_equals(check, "ok")) {
            snprintf(ctx->unavailable, sizeof(ctx->unavailable),
                     "reference data version %.*s is unavailable: %.*s", (int)cur->len, cur->str,
                     (int)check->len, check->str);
            ctx->verified[0] = '\0';
            freeReplyObject(reply);
            return PR_ERR;
        }
        if (reply->elements != 3 + sent || reply->element[2]->type != REDIS_REPLY_STRING ||
            (size_t)reply->element[2]->len >= sizeof(ctx->manifest)) {
            pr_error("enrich: lookup script answered %zu values for %zu keys",
                     reply->elements >= 3 ? reply->elements - 3 : 0, sent);
            freeReplyObject(reply);
            return PR_ERR;
        }
        if (read_manifest) {
            if (ctx->unavailable_logged[0])
                pr_info("enrich: reference data version %.*s checks out against its manifest: "
                        "deciding from it",
                        (int)cur->len, cur->str);
            ctx->unavailable_logged[0] = '\0';
            snprintf(ctx->verified, sizeof(ctx->verified), "%.*s", (int)cur->len, cur->str);
            snprintf(ctx->manifest, sizeof(ctx->manifest), "%.*s", (int)reply->element[2]->len,
                     reply->element[2]->str);
        }
        if (!pr_reply_equals(cur, ctx->version)) {
            /* A new version (or the first): forget the old one's answers. */
            if (ctx->version[0])
                pr_info("enrich: reference data switched to version %.*s", (int)cur->len, cur->str);
            else
                pr_info("enrich: reference data version %.*s", (int)cur->len, cur->str);
            snprintf(ctx->version, sizeof(ctx->version), "%.*s", (int)cur->len, cur->str);
            pr_cache_clear(&ctx->cache);
        }
        size_t e = 3;
        for (size_t i = 0; i < ctx->key_count; i++) {
            struct pr_enrich_key *k = &ctx->keys[i];
            if (!all && k->state != PR_KEY_PENDING) continue;
            const redisReply *v = reply->element[e++];
            bool found = v->type == REDIS_REPLY_STRING && v->len > 0;
            pr_enrich_store(batch, k, found ? v->str : NULL, found ? (size_t)v->len : 0, found);
            pr_cache_put(&ctx->cache, k->key, k->len, k->value, k->value_len, !found,
                         batch->now_ms);
        }
        freeReplyObject(reply);
        return PR_OK;
    }
    pr_error("enrich: reference data version keeps changing; retrying later");
    return PR_ERR;
}

/* Logs ctx->unavailable at most once per PR_ENRICH_LOG_INTERVAL_MS (at once
 * when the reason changes), with what happens meanwhile. */
static void pr_enrich_log_unavailable(struct pr_enrich_ctx *ctx, bool from_cache) {
    int64_t now = pr_enrich_clock_ms();
    if (strcmp(ctx->unavailable, ctx->unavailable_logged) == 0 &&
        now - ctx->unavailable_log_ms < PR_ENRICH_LOG_INTERVAL_MS)
        return;
    ctx->unavailable_log_ms = now;
    snprintf(ctx->unavailable_logged, sizeof(ctx->unavailable_logged), "%s", ctx->unavailable);
    if (from_cache)
        pr_warn("enrich: %s; deciding from the cache of version %s, marked %s+degraded "
                "(redis.on_unavailable: degrade); load the reference data again",
                ctx->unavailable, ctx->version, ctx->version);
    else
        pr_warn("enrich: %s; not deciding until it checks out; load the reference data again",
                ctx->unavailable);
}

/* ------------------------------------------------------------ results */

static const struct pr_enrich_key *pr_key(const struct pr_enrich_ctx *ctx, uint32_t id) {
    if (id == PR_NO_KEY) return NULL;
    const struct pr_enrich_key *k = &ctx->keys[id];
    return k->state == PR_KEY_FOUND ? k : NULL;
}

/* Highest severity among "<country>:<severity>" entries whose country is
 * empty or equals the party's. */
static int pr_violator_severity(const struct pr_enrich_key *k, struct pr_str country) {
    if (!k) return 0;
    int best = 0;
    const char *p = k->value, *end = k->value + k->value_len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *entry_end = semi ? semi : end;
        const char *colon = memchr(p, ':', (size_t)(entry_end - p));
        if (colon && colon + 1 < entry_end) {
            size_t clen = (size_t)(colon - p);
            int severity = colon[1] - '0';
            if ((clen == 0 || (clen == country.len && memcmp(p, country.ptr, clen) == 0)) &&
                severity > best)
                best = severity;
        }
        p = entry_end + 1;
    }
    return best;
}

static void pr_enrich_apply(struct pr_enrich_ctx *ctx, struct pr_batch *batch,
                            struct pr_record *rec, const uint32_t *ids) {
    const struct pr_declaration *d = &rec->decl;
    rec->party_severity[PR_PARTY_SHIPPER] =
        (int8_t)pr_violator_severity(pr_key(ctx, ids[0]), d->shipper.country);
    if (d->has_seller)
        rec->party_severity[PR_PARTY_SELLER] =
            (int8_t)pr_violator_severity(pr_key(ctx, ids[1]), d->seller.country);
    rec->party_severity[PR_PARTY_CONSIGNEE] =
        (int8_t)pr_violator_severity(pr_key(ctx, ids[2]), d->consignee.country);
    int addr = pr_violator_severity(pr_key(ctx, ids[3]), d->consignee.country);
    int deliv = pr_violator_severity(pr_key(ctx, ids[4]), d->consignee.country);
    rec->party_severity[PR_PARTY_ADDRESS] = (int8_t)(addr > deliv ? addr : deliv);
    for (int p = 0; p < PR_PARTY_COUNT; p++)
        if (rec->party_severity[p] > rec->violator_severity)
            rec->violator_severity = rec->party_severity[p];

    rec->line_refs = pr_arena_alloc(&batch->arena, (d->line_count ? d->line_count : 1) *
                                                       sizeof(struct pr_line_ref));
    for (uint32_t l = 0; l < d->line_count; l++) {
        const uint32_t *line_ids = ids + PR_PARTY_KEYS + l * PR_LINE_KEYS;
        struct pr_line_ref *ref = &rec->line_refs[l];
        *ref = (struct pr_line_ref){
            .floor_cents = -1, .watch_points = -1, .all_digits = pr_all_digits(d->lines[l].hts)};
        bool floor_set = false;
        /* Most specific first: 10, 8, 6, 4, 2 digits. */
        for (int k = 0; k < 5; k++) {
            const struct pr_enrich_key *key = pr_key(ctx, line_ids[k]);
            if (!key) continue;
            struct pr_hts_entry entry;
            if (pr_hts_entry_parse(key->value, key->value_len, &entry) != PR_OK) continue;
            ref->flags |= entry.flags;
            if (k == 0 && entry.known) ref->known = true;
            if (!floor_set && entry.floor_cents >= 0) {
                ref->floor_cents = entry.floor_cents;
                floor_set = true;
            }
            if (entry.flags & PR_HTS_WATCH) {
                int32_t pts = entry.points > 0 ? entry.points : 0;
                if (pts > ref->watch_points) ref->watch_points = pts;
            }
        }
        const struct pr_enrich_key *cty = pr_key(ctx, line_ids[5]);
        if (cty) ref->origin_points = atoi(cty->value);
    }
}

static int pr_enrich_process(struct pr_operator *op, struct pr_batch *batch) {
    struct pr_enrich_ctx *ctx = op->ctx;
    size_t expected = 0;
    for (size_t i = 0; i < batch->count; i++)
        if (!pr_record_dead(&batch->records[i]))
            expected += PR_PARTY_KEYS + batch->records[i].decl.line_count * PR_LINE_KEYS;
    pr_keys_reset(ctx, expected);
    if (expected > ctx->rec_keys_cap) {
        ctx->rec_keys_cap = expected * 2;
        ctx->rec_keys = pr_realloc(ctx->rec_keys, ctx->rec_keys_cap * sizeof(*ctx->rec_keys));
    }
    if (batch->count > ctx->rec_offset_cap) {
        ctx->rec_offset_cap = batch->count;
        ctx->rec_offset =
            pr_realloc(ctx->rec_offset, ctx->rec_offset_cap * sizeof(*ctx->rec_offset));
    }
    size_t offset = 0;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        ctx->rec_offset[i] = offset;
        if (pr_record_dead(rec)) continue;
        pr_enrich_collect(ctx, batch, rec, ctx->rec_keys + offset);
        offset += PR_PARTY_KEYS + rec->decl.line_count * PR_LINE_KEYS;
    }
    if (ctx->snapshot) {
        for (size_t i = 0; i < ctx->key_count; i++) {
            struct pr_enrich_key *k = &ctx->keys[i];
            const char *value;
            size_t len;
            bool found =
                pr_refdata_snapshot_get(ctx->snapshot, k->key, k->len, &value, &len) && len > 0;
            /* The value lives as long as the snapshot: no copy. */
            k->state = found ? PR_KEY_FOUND : PR_KEY_ABSENT;
            k->value = found ? value : NULL;
            k->value_len = found ? (uint32_t)len : 0;
        }
        batch->refdata_version = ctx->snapshot->version;
        for (size_t i = 0; i < batch->count; i++) {
            struct pr_record *rec = &batch->records[i];
            if (!pr_record_dead(rec))
                pr_enrich_apply(ctx, batch, rec, ctx->rec_keys + ctx->rec_offset[i]);
        }
        return PR_OP_DONE;
    }
    /* Answer what the cache can. */
    for (size_t i = 0; i < ctx->key_count; i++) {
        struct pr_enrich_key *k = &ctx->keys[i];
        const char *value;
        size_t len;
        bool negative;
        if (ctx->version[0] &&
            pr_cache_get(&ctx->cache, k->key, k->len, batch->now_ms, &value, &len, &negative)) {
            pr_enrich_store(batch, k, value, len, !negative);
            op->stats.cache_hits++;
        } else {
            op->stats.cache_misses++;
        }
    }
    /* One round trip: the version check plus every miss. */
    if (pr_enrich_fetch(op, batch) != PR_OK) {
        bool from_cache = ctx->degrade && ctx->version[0];
        if (ctx->unavailable[0]) pr_enrich_log_unavailable(ctx, from_cache);
        if (!from_cache) return PR_OP_RETRY;
        batch->degraded = true; /* decide from the cache; misses count as unlisted */
        for (size_t i = 0; i < ctx->key_count; i++)
            if (ctx->keys[i].state == PR_KEY_PENDING) ctx->keys[i].state = PR_KEY_ABSENT;
    }
    batch->refdata_version = pr_arena_strndup(&batch->arena, ctx->version, strlen(ctx->version));
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!pr_record_dead(rec))
            pr_enrich_apply(ctx, batch, rec, ctx->rec_keys + ctx->rec_offset[i]);
    }
    op->stats.cache_entries = ctx->cache.count;
    op->stats.cache_bytes = ctx->cache.bytes + ctx->cache.capacity * sizeof(*ctx->cache.slots);
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_enrich = {
    .name = "enrich",
    .description = "reference data (HTS, violators, countries) from Redis, batched and cached",
    .init = pr_enrich_init,
    .process = pr_enrich_process,
    .destroy = pr_enrich_destroy,
};
