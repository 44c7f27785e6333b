/*
 * refdata_snapshot.c - the current reference-data version, read once from
 * Redis into memory (refdata_snapshot.h).
 */
#include "refdata_snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "redis.h"
#include "refdata.h"

struct pr_refdata_snapshot_slot {
    uint64_t hash; /* 0: empty */
    size_t key_off, value_off;
    uint32_t key_len, value_len;
};

/* KEYS[1] = pr:ref:current. Replies {false} with no version loaded; {cur,
 * why} when it does not check out; else {cur, 'ok', manifest, hts, vio,
 * cty} with each table as HGETALL gives it. Reads only. */
static const char pr_snapshot_lua[] = PR_REFDATA_VERIFY_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return {false} end\n"
    "local why, manifest = pr_ref_verify(cur, " PR_REFDATA_TABLES_LUA ", nil)\n"
    "if why then return {cur, why} end\n"
    "local base = 'pr:ref:' .. cur .. ':'\n"
    "return {cur, 'ok', manifest, redis.call('HGETALL', base .. 'hts'),\n"
    "        redis.call('HGETALL', base .. 'vio'), redis.call('HGETALL', base .. 'cty')}\n";

static uint64_t pr_snapshot_hash(const char *key, size_t len) {
    uint64_t h = pr_hash64(key, len);
    return h ? h : 1;
}

static size_t pr_snapshot_store(struct pr_refdata_snapshot *snap, const char *s, size_t len) {
    if (snap->data_len + len > snap->data_cap) {
        while (snap->data_len + len > snap->data_cap)
            snap->data_cap = snap->data_cap ? snap->data_cap * 2 : 1 << 16;
        snap->data = pr_realloc(snap->data, snap->data_cap);
    }
    size_t off = snap->data_len;
    if (len) memcpy(snap->data + off, s, len);
    snap->data_len += len;
    return off;
}

static void pr_snapshot_put(struct pr_refdata_snapshot *snap, char kind, const char *field,
                            size_t field_len, const char *value, size_t value_len) {
    char prefix[2] = {kind, ':'};
    size_t key_off = pr_snapshot_store(snap, prefix, 2);
    pr_snapshot_store(snap, field, field_len);
    size_t key_len = field_len + 2;
    size_t value_off = pr_snapshot_store(snap, value, value_len);
    uint64_t h = pr_snapshot_hash(snap->data + key_off, key_len);
    size_t mask = snap->capacity - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct pr_refdata_snapshot_slot *slot = &snap->slots[i];
        if (slot->hash == 0) {
            *slot = (struct pr_refdata_snapshot_slot){h, key_off, value_off, (uint32_t)key_len,
                                                      (uint32_t)value_len};
            snap->count++;
            return;
        }
    }
}

bool pr_refdata_snapshot_get(const struct pr_refdata_snapshot *snap, const char *key, size_t len,
                             const char **value, size_t *value_len) {
    uint64_t h = pr_snapshot_hash(key, len);
    size_t mask = snap->capacity - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct pr_refdata_snapshot_slot *slot = &snap->slots[i];
        if (slot->hash == 0) return false;
        if (slot->hash == h && slot->key_len == len &&
            memcmp(snap->data + slot->key_off, key, len) == 0) {
            *value = snap->data + slot->value_off;
            *value_len = slot->value_len;
            return true;
        }
    }
}

void pr_refdata_snapshot_free(struct pr_refdata_snapshot *snap) {
    if (!snap) return;
    free(snap->slots);
    free(snap->data);
    free(snap);
}

static bool pr_is_table(const redisReply *r) {
    return r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0;
}

struct pr_refdata_snapshot *pr_refdata_snapshot_load(const char *address, const char *user,
                                                     const char *password, int timeout_ms,
                                                     char *err, size_t err_size) {
    struct pr_redis redis;
    struct pr_redis_auth auth = {user, password};
    if (pr_redis_init(&redis, address, timeout_ms, &auth) != PR_OK) {
        snprintf(err, err_size, "redis address '%s' is malformed", address);
        return NULL;
    }
    if (pr_redis_connect(&redis) != PR_OK) {
        snprintf(err, err_size, "cannot reach Redis %s%s%s", address, redis.refused ? ": " : "",
                 redis.refused ? redis.refusal : "");
        pr_redis_close(&redis);
        return NULL;
    }
    struct pr_script script = {.name = "refdata snapshot", .body = pr_snapshot_lua};
    const char *argv[] = {"1", PR_REF_CURRENT};
    size_t argvlen[] = {1, strlen(PR_REF_CURRENT)};
    redisReply *reply = pr_redis_eval(&redis, &script, 2, argv, argvlen);
    pr_redis_close(&redis);
    if (!reply) {
        snprintf(err, err_size, "Redis %s did not answer the reference-data snapshot script",
                 address);
        return NULL;
    }
    struct pr_refdata_snapshot *snap = NULL;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        snprintf(err, err_size,
                 "no reference data in Redis %s (%s is not set): run `parcelrisk refdata load`",
                 address, PR_REF_CURRENT);
        goto done;
    }
    const redisReply *cur = reply->element[0];
    if (reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[1]->str, "ok") != 0) {
        snprintf(err, err_size, "reference data version %.*s is unavailable: %s", (int)cur->len,
                 cur->str,
                 reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_STRING
                     ? reply->element[1]->str
                     : "unexpected reply");
        goto done;
    }
    if (reply->elements != 6 || reply->element[2]->type != REDIS_REPLY_STRING ||
        !pr_is_table(reply->element[3]) || !pr_is_table(reply->element[4]) ||
        !pr_is_table(reply->element[5]) || cur->len >= sizeof(snap->version) ||
        reply->element[2]->len >= sizeof(snap->manifest)) {
        snprintf(err, err_size, "unexpected reply from the reference-data snapshot script");
        goto done;
    }
    snap = pr_calloc(1, sizeof(*snap));
    snprintf(snap->version, sizeof(snap->version), "%.*s", (int)cur->len, cur->str);
    snprintf(snap->manifest, sizeof(snap->manifest), "%s", reply->element[2]->str);
    size_t rows =
        (reply->element[3]->elements + reply->element[4]->elements + reply->element[5]->elements) /
        2;
    snap->capacity = 64;
    while (snap->capacity < rows * 2 + 2) snap->capacity *= 2;
    snap->slots = pr_calloc(snap->capacity, sizeof(*snap->slots));
    static const char kinds[3] = {'h', 'v', 'c'};
    uint64_t *counts[3] = {&snap->hts_rows, &snap->violator_keys, &snap->country_rows};
    for (int t = 0; t < 3; t++) {
        const redisReply *table = reply->element[3 + t];
        for (size_t i = 0; i + 1 < table->elements; i += 2) {
            const redisReply *f = table->element[i], *v = table->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            pr_snapshot_put(snap, kinds[t], f->str, f->len, v->str, v->len);
            (*counts[t])++;
        }
    }
    snap->bytes = sizeof(*snap) + snap->capacity * sizeof(*snap->slots) + snap->data_cap;
done:
    freeReplyObject(reply);
    return snap;
}
