/*
 * fuzz_decode.c - libFuzzer target over the decode and validate path.
 *
 * Each input is one Kafka message value. It goes:
 *
 *   1. through pr_declaration_decode on its own (arena reset per input);
 *      when that succeeds, the declaration is encoded, decoded and encoded
 *      again: both decodes must succeed, give the same fields, and the two
 *      encodings must be the same bytes (the encoder is idempotent on what
 *      the decoder accepts);
 *   2. through the default operator chain of pr_config_default() as the
 *      only record of a batch, minus the operators that talk to Redis
 *      (pr_fuzz_remote_ops: enrich, aggregate). In enrich's place a stand-in
 *      answers from a hash of the declaration's own bytes (so the fuzzer
 *      steers the reference data too and screen and the policy flags run).
 *      The chain's decode must agree with step 1, routing must match the
 *      lane, and the Decision or DeadLetter it encodes must be read back by
 *      Avro-C (the reference implementation) with every byte consumed, every
 *      string valid UTF-8 and the fields consistent with the record;
 *   3. through the resolved path of the registry (pipeline/codec/wire.c) as written
 *      by another schema version, ours plus one optional field at the end:
 *      it must not crash (Avro-C reads these bytes after our walk); a v1
 *      Declaration followed by a null must be accepted, and whatever it
 *      accepts must be a complete v1 Declaration (to the fast decoder)
 *      followed by the new field's bytes, with the same fields (the same
 *      bytes when encoded again).
 *
 * Any violation aborts, which libFuzzer reports as a crash. The same entry
 * point is driven by replay_corpus.c in builds without libFuzzer.
 */
#include <avro.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "operator.h"
#include "refdata.h"
#include "rules.h"
#include "schemas.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct pr_fuzz_avro {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
};

/* Everything that lives across inputs; built on the first one. */
struct pr_fuzz_state {
    struct pr_arena arena;
    struct pr_buf first, second;
    struct pr_config *cfg;
    struct pr_rules *rules;
    struct pr_chain before, after; /* the default chain around enrich */
    bool fake_enrich;
    struct pr_batch batch;
    struct pr_fuzz_avro decision, deadletter;
    int64_t offset;
    struct pr_decl_reader *v2; /* ours plus an optional field at the end */
};

static void pr_fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void pr_fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_decode: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void pr_fuzz_avro_init(struct pr_fuzz_avro *t, const char *json) {
    if (avro_schema_from_json_length(json, strlen(json), &t->schema) != 0)
        pr_fuzz_fail("schema: %s", avro_strerror());
    t->iface = avro_generic_class_from_schema(t->schema);
    if (!t->iface || avro_generic_value_new(t->iface, &t->value) != 0)
        pr_fuzz_fail("generic value: %s", avro_strerror());
}

/* Operators of the default chain that need a Redis; left out. A new one
 * makes pr_chain_process return PR_OP_RETRY, and the target says which. */
static const char *const pr_fuzz_remote_ops[] = {"enrich", "aggregate"};

static bool pr_fuzz_is_remote(const char *name) {
    for (size_t i = 0; i < sizeof(pr_fuzz_remote_ops) / sizeof(pr_fuzz_remote_ops[0]); i++)
        if (strcmp(name, pr_fuzz_remote_ops[i]) == 0) return true;
    return false;
}

/* Builds the part of the default chain before (or after) enrich. */
static void pr_fuzz_chain_init(struct pr_config *cfg, char **names, size_t count, bool after,
                               struct pr_chain *chain) {
    char list[512] = "";
    size_t len = 0;
    bool past_enrich = false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], "enrich") == 0) past_enrich = true;
        if (past_enrich != after || pr_fuzz_is_remote(names[i])) continue;
        int w = snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= sizeof(list) - len) pr_fuzz_fail("chain too long");
        len += (size_t)w;
    }
    chain->count = 0;
    chain->ops = NULL;
    if (!len) return;
    if (pr_config_set(cfg, "chain", list, "fuzz_decode", 0) != PR_OK ||
        pr_chain_init(chain, cfg) != PR_OK)
        pr_fuzz_fail("cannot build the chain %s", list);
}

static void pr_fuzz_avro_free(struct pr_fuzz_avro *t) {
    avro_value_decref(&t->value);
    avro_value_iface_decref(t->iface);
    avro_schema_decref(t->schema);
}

static struct pr_fuzz_state *pr_fuzz_state;

/* Runs at exit, before LeakSanitizer's own check (registered earlier, so it
 * runs later). Avro-C's generic values are reachable until then, but in a
 * way LeakSanitizer does not see: without this, every run ends in a false
 * "memory leak" report. */
static void pr_fuzz_state_free(void) {
    struct pr_fuzz_state *state = pr_fuzz_state;
    if (!state) return;
    pr_fuzz_avro_free(&state->decision);
    pr_fuzz_avro_free(&state->deadletter);
    pr_decl_reader_free(state->v2);
    pr_batch_destroy(&state->batch);
    pr_chain_destroy(&state->before);
    pr_chain_destroy(&state->after);
    pr_rules_free(state->rules);
    pr_config_free(state->cfg);
    pr_buf_free(&state->first);
    pr_buf_free(&state->second);
    pr_arena_destroy(&state->arena);
    free(state);
    pr_fuzz_state = NULL;
}

static struct pr_fuzz_state *pr_fuzz_state_get(void) {
    if (pr_fuzz_state) return pr_fuzz_state;
    struct pr_fuzz_state *state;
    pr_log_set_level(PR_LOG_WARN);
    state = pr_calloc(1, sizeof(*state));
    pr_arena_init(&state->arena, 1 << 16);
    pr_buf_init(&state->first);
    pr_buf_init(&state->second);
    state->cfg = pr_config_default();
    if (!state->cfg) pr_fuzz_fail("pr_config_default failed");
    {
        struct pr_buf v2;
        pr_buf_init(&v2);
        const char *close = strrchr(pr_schema_declaration, ']');
        pr_buf_append(&v2, pr_schema_declaration, (size_t)(close - pr_schema_declaration));
        pr_buf_appendf(&v2,
                       ", {\"name\": \"hub_reference\", \"type\": [\"null\", \"string\"], "
                       "\"default\": null}%s",
                       close);
        state->v2 = pr_decl_reader_new((const char *)v2.data, v2.len);
        if (pr_decl_reader_kind(state->v2) != PR_WRITER_RESOLVED)
            pr_fuzz_fail("v2 writer schema not resolved: %s", pr_decl_reader_why(state->v2));
        pr_buf_free(&v2);
    }
    state->rules = pr_rules_new_default();
    if (!state->rules) pr_fuzz_fail("pr_rules_new_default failed");
    /* Copy the default names: pr_config_set replaces the list. */
    size_t count = state->cfg->chain_len;
    char **names = pr_calloc(count ? count : 1, sizeof(*names));
    for (size_t i = 0; i < count; i++) {
        names[i] = pr_strdup(state->cfg->chain[i]);
        if (strcmp(names[i], "enrich") == 0) state->fake_enrich = true;
    }
    pr_fuzz_chain_init(state->cfg, names, count, false, &state->before);
    pr_fuzz_chain_init(state->cfg, names, count, true, &state->after);
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    pr_batch_init(&state->batch, 1);
    state->batch.rules = state->rules;
    state->batch.source_topic = "declarations";
    state->batch.refdata_version = "fuzz-refdata-1";
    state->batch.now_ms = 1764201600000LL; /* 2025-11-27T00:00:00Z */
    pr_fuzz_avro_init(&state->decision, pr_schema_decision);
    pr_fuzz_avro_init(&state->deadletter, pr_schema_deadletter);
    pr_fuzz_state = state;
    atexit(pr_fuzz_state_free);
    return state;
}

/* ------------------------------------------------ decode/encode idempotence */

static bool pr_fuzz_str_eq(struct pr_str a, struct pr_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool pr_fuzz_party_eq(const struct pr_party *a, const struct pr_party *b) {
    return pr_fuzz_str_eq(a->name, b->name) && pr_fuzz_str_eq(a->address, b->address) &&
           pr_fuzz_str_eq(a->city, b->city) && pr_fuzz_str_eq(a->postal_code, b->postal_code) &&
           pr_fuzz_str_eq(a->country, b->country);
}

/* Field-by-field equality; absent optionals are not compared. */
static const char *pr_fuzz_declaration_diff(const struct pr_declaration *a,
                                            const struct pr_declaration *b) {
    if (!pr_fuzz_str_eq(a->declaration_id, b->declaration_id)) return "declaration_id";
    if (!pr_fuzz_str_eq(a->filer_code, b->filer_code)) return "filer_code";
    if (!pr_fuzz_str_eq(a->entry_type, b->entry_type)) return "entry_type";
    if (!pr_fuzz_str_eq(a->house_bill, b->house_bill)) return "house_bill";
    if (a->has_master_bill != b->has_master_bill ||
        (a->has_master_bill && !pr_fuzz_str_eq(a->master_bill, b->master_bill)))
        return "master_bill";
    if (a->transport_mode != b->transport_mode) return "transport_mode";
    if (!pr_fuzz_str_eq(a->port_of_entry, b->port_of_entry)) return "port_of_entry";
    if (a->arrival_time != b->arrival_time) return "arrival_time";
    if (a->event_time != b->event_time) return "event_time";
    if (!pr_fuzz_party_eq(&a->shipper, &b->shipper)) return "shipper";
    if (!pr_fuzz_party_eq(&a->consignee, &b->consignee)) return "consignee";
    if (a->has_seller != b->has_seller ||
        (a->has_seller && !pr_fuzz_party_eq(&a->seller, &b->seller)))
        return "seller";
    if (a->has_marketplace != b->has_marketplace ||
        (a->has_marketplace && !pr_fuzz_str_eq(a->marketplace, b->marketplace)))
        return "marketplace";
    if (a->value_usd_cents != b->value_usd_cents) return "value_usd_cents";
    if (a->has_freight != b->has_freight ||
        (a->has_freight && a->freight_usd_cents != b->freight_usd_cents))
        return "freight_usd_cents";
    if (a->gross_weight_grams != b->gross_weight_grams) return "gross_weight_grams";
    if (a->line_count != b->line_count) return "line count";
    for (uint32_t i = 0; i < a->line_count; i++) {
        const struct pr_line *x = &a->lines[i], *y = &b->lines[i];
        if (!pr_fuzz_str_eq(x->hts, y->hts) || !pr_fuzz_str_eq(x->description, y->description) ||
            !pr_fuzz_str_eq(x->origin_country, y->origin_country) || x->quantity != y->quantity ||
            x->value_usd_cents != y->value_usd_cents)
            return "lines";
    }
    return NULL;
}

static void pr_fuzz_roundtrip(struct pr_fuzz_state *s, const struct pr_declaration *decl) {
    char err[256];
    struct pr_declaration again, third;
    pr_buf_reset(&s->first);
    pr_declaration_encode(decl, &s->first);
    enum pr_dlq_code code =
        pr_declaration_decode(s->first.data, s->first.len, &again, &s->arena, err, sizeof(err));
    if (code != PR_DLQ_NONE)
        pr_fuzz_fail("our encoding of an accepted declaration does not decode: %s: %s",
                     pr_dlq_names[code], err);
    const char *diff = pr_fuzz_declaration_diff(decl, &again);
    if (diff) pr_fuzz_fail("decode(encode(d)) differs from d in %s", diff);
    pr_buf_reset(&s->second);
    pr_declaration_encode(&again, &s->second);
    if (s->second.len != s->first.len || memcmp(s->second.data, s->first.data, s->first.len) != 0)
        pr_fuzz_fail("encode(decode(encode(d))) != encode(d) (%zu vs %zu bytes)", s->second.len,
                     s->first.len);
    code =
        pr_declaration_decode(s->second.data, s->second.len, &third, &s->arena, err, sizeof(err));
    if (code != PR_DLQ_NONE) pr_fuzz_fail("second re-decode failed: %s", err);
}

/* ------------------------------------------------ the stand-in for enrich */

static uint64_t pr_fuzz_hash(struct pr_str s, uint64_t salt) {
    uint64_t h = 0xcbf29ce484222325ULL ^ salt; /* FNV-1a */
    for (uint32_t i = 0; i < s.len; i++) h = (h ^ (uint8_t)s.ptr[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

static int8_t pr_fuzz_severity(struct pr_str name) {
    uint64_t h = pr_fuzz_hash(name, 1);
    return (int8_t)(h % 4 == 0 ? 1 + (h >> 8) % 3 : 0);
}

/* What enrich would set, from the declaration's own bytes: violator
 * severities 0-3 per party, and per line HTS flags, floor, WATCH points and
 * origin points in the ranges enrich gives. */
static void pr_fuzz_fake_enrich(struct pr_batch *batch) {
    for (size_t r = 0; r < batch->count; r++) {
        struct pr_record *rec = &batch->records[r];
        if (pr_record_dead(rec)) continue;
        const struct pr_declaration *d = &rec->decl;
        rec->party_severity[PR_PARTY_SHIPPER] = pr_fuzz_severity(d->shipper.name);
        if (d->has_seller) rec->party_severity[PR_PARTY_SELLER] = pr_fuzz_severity(d->seller.name);
        rec->party_severity[PR_PARTY_CONSIGNEE] = pr_fuzz_severity(d->consignee.name);
        rec->party_severity[PR_PARTY_ADDRESS] = pr_fuzz_severity(d->consignee.address);
        for (int p = 0; p < PR_PARTY_COUNT; p++)
            if (rec->party_severity[p] > rec->violator_severity)
                rec->violator_severity = rec->party_severity[p];
        rec->line_refs = pr_arena_alloc(&batch->arena, (d->line_count ? d->line_count : 1) *
                                                           sizeof(struct pr_line_ref));
        for (uint32_t i = 0; i < d->line_count; i++) {
            const struct pr_line *line = &d->lines[i];
            uint64_t h = pr_fuzz_hash(line->hts, 2);
            bool digits = line->hts.len > 0;
            for (uint32_t k = 0; k < line->hts.len; k++)
                if (line->hts.ptr[k] < '0' || line->hts.ptr[k] > '9') digits = false;
            struct pr_line_ref *ref = &rec->line_refs[i];
            *ref =
                (struct pr_line_ref){.floor_cents = -1, .watch_points = -1, .all_digits = digits};
            /* enrich looks up the 10/8/6/4/2-digit prefixes of all-digit codes only */
            if (digits && line->hts.len >= 2) {
                if (h & 1) ref->flags = (uint32_t)(h >> 1) & 0xff;
                ref->known = line->hts.len == 10 && ((h >> 9) & 3) != 0;
                if ((h >> 11) & 1) ref->floor_cents = (int64_t)((h >> 12) % 200000);
                if (ref->flags & PR_HTS_WATCH) ref->watch_points = (int32_t)((h >> 30) % 600);
            }
            uint64_t o = pr_fuzz_hash(line->origin_country, 3);
            ref->origin_points = o % 3 == 0 ? (int32_t)((o >> 8) % 400) : 0;
        }
    }
}

/* ----------------------------------------------- outputs read by Avro-C */

static void pr_fuzz_avro_read(struct pr_fuzz_avro *t, struct pr_str bytes, const char *what) {
    avro_value_reset(&t->value);
    avro_reader_t reader = avro_reader_memory(bytes.ptr, (int64_t)bytes.len);
    if (!reader) pr_fuzz_fail("avro_reader_memory");
    if (avro_value_read(reader, &t->value) != 0)
        pr_fuzz_fail("Avro-C cannot read our %s (%u bytes): %s", what, bytes.len, avro_strerror());
    char extra;
    if (avro_read(reader, &extra, 1) != ENOSPC)
        pr_fuzz_fail("our %s has bytes after the record (%u bytes)", what, bytes.len);
    avro_reader_free(reader);
}

static avro_value_t pr_fuzz_field(avro_value_t *rec, const char *name) {
    avro_value_t child = {NULL, NULL};
    if (avro_value_get_by_name(rec, name, &child, NULL) != 0) pr_fuzz_fail("no field %s", name);
    return child;
}

/* A string field: valid UTF-8 (Avro strings are UTF-8), returned as a view. */
static struct pr_str pr_fuzz_string(avro_value_t *rec, const char *name, const char *what) {
    avro_value_t v = pr_fuzz_field(rec, name);
    const char *p = NULL;
    size_t size = 0;
    if (avro_value_get_string(&v, &p, &size) != 0 || size == 0)
        pr_fuzz_fail("%s.%s is not a string", what, name);
    if (!pr_utf8_valid((const uint8_t *)p, size - 1))
        pr_fuzz_fail("%s.%s is not valid UTF-8", what, name);
    return (struct pr_str){p, (uint32_t)(size - 1)};
}

static int64_t pr_fuzz_number(avro_value_t *rec, const char *name) {
    avro_value_t v = pr_fuzz_field(rec, name);
    int64_t l = 0;
    int32_t i = 0;
    if (avro_value_get_long(&v, &l) == 0) return l;
    if (avro_value_get_int(&v, &i) == 0) return i;
    if (avro_value_get_enum(&v, &i) == 0) return i;
    pr_fuzz_fail("%s is not a number", name);
}

static void pr_fuzz_check_decision(struct pr_fuzz_state *s, const struct pr_record *rec) {
    pr_fuzz_avro_read(&s->decision, rec->out_decision, "Decision");
    avro_value_t *v = &s->decision.value;
    if (!pr_fuzz_str_eq(pr_fuzz_string(v, "declaration_id", "Decision"), rec->decl.declaration_id))
        pr_fuzz_fail("Decision.declaration_id differs from the input");
    if (!pr_fuzz_str_eq(pr_fuzz_string(v, "house_bill", "Decision"), rec->decl.house_bill))
        pr_fuzz_fail("Decision.house_bill differs from the input");
    struct pr_str key = pr_fuzz_string(v, "consignee_key", "Decision");
    if (key.len != 64 || strspn(key.ptr, "0123456789abcdef") != 64)
        pr_fuzz_fail("Decision.consignee_key is not 64 lower-case hex digits");
    pr_fuzz_string(v, "ruleset_version", "Decision");
    pr_fuzz_string(v, "refdata_version", "Decision");
    pr_fuzz_string(v, "source_topic", "Decision");
    if (pr_fuzz_number(v, "decided_at") != s->batch.now_ms) pr_fuzz_fail("Decision.decided_at");
    if (pr_fuzz_number(v, "source_offset") != rec->offset) pr_fuzz_fail("Decision.source_offset");
    int64_t lane = pr_fuzz_number(v, "lane"), score = pr_fuzz_number(v, "score");
    if (lane != rec->lane || score != rec->score)
        pr_fuzz_fail("Decision lane/score differ from the record");
    if (score < 0 || score > s->rules->score_cap)
        pr_fuzz_fail("Decision.score %lld out of range", (long long)score);
    if (score >= s->rules->lane_red_score && lane != PR_LANE_RED)
        pr_fuzz_fail("score %lld but lane %lld", (long long)score, (long long)lane);

    avro_value_t reasons = pr_fuzz_field(v, "reasons");
    size_t count = 0;
    if (avro_value_get_size(&reasons, &count) != 0) pr_fuzz_fail("Decision.reasons");
    int64_t sum = 0;
    int previous = -1;
    bool random_reason = false;
    for (size_t i = 0; i < count; i++) {
        avro_value_t reason = {NULL, NULL};
        if (avro_value_get_by_index(&reasons, i, &reason, NULL) != 0)
            pr_fuzz_fail("reasons[%zu]", i);
        struct pr_str name = pr_fuzz_string(&reason, "code", "Reason");
        int code = pr_reason_from_name(name.ptr, name.len);
        if (code < 0) pr_fuzz_fail("unknown reason code %.*s", (int)name.len, name.ptr);
        pr_fuzz_string(&reason, "detail", pr_reason_names[code]);
        if (code <= previous)
            pr_fuzz_fail("reasons out of order or repeated at %.*s", (int)name.len, name.ptr);
        previous = code;
        sum += pr_fuzz_number(&reason, "points");
        if (code == PR_R_RANDOM_COMPLIANCE) random_reason = true;
    }
    if (sum > s->rules->score_cap) sum = s->rules->score_cap;
    if (sum < 0) sum = 0;
    if (sum != score)
        pr_fuzz_fail("score %lld is not the capped sum %lld of the points", (long long)score,
                     (long long)sum);
    int64_t de_minimis = pr_fuzz_number(v, "de_minimis");
    if ((de_minimis == PR_DM_SUSPENDED) != pr_record_has(rec, PR_R_DE_MINIMIS_SUSPENDED))
        pr_fuzz_fail("de_minimis %lld but DE_MINIMIS_SUSPENDED %s", (long long)de_minimis,
                     pr_record_has(rec, PR_R_DE_MINIMIS_SUSPENDED) ? "fired" : "did not fire");
    if (de_minimis == PR_DM_INELIGIBLE_GOODS && !pr_record_has(rec, PR_R_EXCLUDED_GOODS))
        pr_fuzz_fail("INELIGIBLE_GOODS without EXCLUDED_GOODS");
    avro_value_t flag = pr_fuzz_field(v, "random_selection");
    int random_selection = -1;
    if (avro_value_get_boolean(&flag, &random_selection) != 0) pr_fuzz_fail("random_selection");
    if ((random_selection != 0) != random_reason)
        pr_fuzz_fail("random_selection %d but RANDOM_COMPLIANCE %s", random_selection,
                     random_reason ? "fired" : "did not fire");
}

static void pr_fuzz_check_deadletter(struct pr_fuzz_state *s, const struct pr_record *rec,
                                     const uint8_t *data, size_t size) {
    pr_fuzz_avro_read(&s->deadletter, rec->out_dlq, "DeadLetter");
    avro_value_t *v = &s->deadletter.value;
    struct pr_str code = pr_fuzz_string(v, "error_code", "DeadLetter");
    if (!pr_fuzz_str_eq(code, (struct pr_str){pr_dlq_names[rec->dlq_code],
                                              (uint32_t)strlen(pr_dlq_names[rec->dlq_code])}))
        pr_fuzz_fail("DeadLetter.error_code differs from the record");
    pr_fuzz_string(v, "error_detail", "DeadLetter");
    pr_fuzz_string(v, "source_topic", "DeadLetter");
    if (pr_fuzz_number(v, "source_offset") != rec->offset) pr_fuzz_fail("DeadLetter.source_offset");
    if (pr_fuzz_number(v, "received_at") != s->batch.now_ms) pr_fuzz_fail("DeadLetter.received_at");
    avro_value_t payload = pr_fuzz_field(v, "payload");
    const void *bytes = NULL;
    size_t n = 0;
    if (avro_value_get_bytes(&payload, &bytes, &n) != 0) pr_fuzz_fail("DeadLetter.payload");
    size_t want = size;
    if (rec->dlq_code == PR_DLQ_TOO_LARGE && want > (size_t)s->cfg->dlq_keep_bytes)
        want = (size_t)s->cfg->dlq_keep_bytes;
    if (n != want || (n && memcmp(bytes, data, n) != 0))
        pr_fuzz_fail("DeadLetter.payload is not the message as received (%zu vs %zu bytes)", n,
                     want);
}

/* ------------------------------------------------------------- the target */

/* DOMAIN.md section 5, written again here as the oracle of the decode
 * operator's INVALID_ID: empty, only spaces, over 128 bytes, a control byte. */
static bool pr_fuzz_id_invalid(struct pr_str id) {
    if (id.len == 0 || id.len > 128) return true;
    bool blank = true;
    for (uint32_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.ptr[i];
        if (c < 0x20 || c == 0x7f) return true;
        if (c != ' ') blank = false;
    }
    return blank;
}

static void pr_fuzz_resolved(struct pr_fuzz_state *s, const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct pr_fuzz_state *s = pr_fuzz_state_get();

    /* 1. The decoder alone. */
    pr_arena_reset(&s->arena);
    struct pr_declaration decl;
    char err[256];
    enum pr_dlq_code code = pr_declaration_decode(data, size, &decl, &s->arena, err, sizeof(err));
    if ((int)code < PR_DLQ_NONE || code > PR_DLQ_UNKNOWN_SCHEMA) pr_fuzz_fail("bad code %d", code);
    if (code != PR_DLQ_NONE && (err[0] == '\0' || strlen(err) >= sizeof(err)))
        pr_fuzz_fail("%s without an error text", pr_dlq_names[code]);
    if (code == PR_DLQ_EMPTY || code == PR_DLQ_TOO_LARGE || code == PR_DLQ_UNKNOWN_SCHEMA)
        pr_fuzz_fail("the decoder returned %s, which only the operators may", pr_dlq_names[code]);
    if (code == PR_DLQ_NONE) pr_fuzz_roundtrip(s, &decl);

    /* 2. The operator chain, with the message as the only record. */
    struct pr_batch *batch = &s->batch;
    pr_batch_reset(batch);
    struct pr_record *rec = pr_batch_push(batch);
    if (!rec) pr_fuzz_fail("pr_batch_push on an empty batch");
    rec->payload = data;
    rec->payload_len = size;
    rec->partition = 0;
    rec->offset = s->offset++;
    size_t failed_at = 0;
    int rc = pr_chain_process(&s->before, batch, 0, &failed_at);
    if (rc != PR_OP_DONE)
        pr_fuzz_fail("operator %s returned %d", s->before.ops[failed_at].ops->name, rc);
    if (s->fake_enrich) pr_fuzz_fake_enrich(batch);
    rc = pr_chain_process(&s->after, batch, 0, &failed_at);
    if (rc != PR_OP_DONE)
        pr_fuzz_fail("operator %s returned %d", s->after.ops[failed_at].ops->name, rc);

    enum pr_dlq_code want = code;
    if (code == PR_DLQ_NONE && pr_fuzz_id_invalid(decl.declaration_id)) want = PR_DLQ_INVALID_ID;
    if (size == 0)
        want = PR_DLQ_EMPTY;
    else if (size > (size_t)s->cfg->max_message_bytes)
        want = PR_DLQ_TOO_LARGE;
    if (rec->dlq_code != want)
        pr_fuzz_fail("the chain says %s, the decoder %s", pr_dlq_names[rec->dlq_code],
                     pr_dlq_names[want]);
    if (pr_record_dead(rec)) {
        if (rec->outputs != PR_OUT_DLQ || rec->out_dlq.len == 0)
            pr_fuzz_fail("a dead letter routed to %#x", rec->outputs);
        pr_fuzz_check_deadletter(s, rec, data, size);
    } else {
        uint32_t expect = PR_OUT_DECISION | (rec->lane >= PR_LANE_YELLOW ? PR_OUT_ALERT : 0);
        if (rec->outputs != expect || rec->out_decision.len == 0)
            pr_fuzz_fail("lane %d routed to %#x", rec->lane, rec->outputs);
        pr_fuzz_check_decision(s, rec);
    }

    /* 3. The resolved path of another schema version, on the input and on
     * the input with a null field appended (so that every input the fast
     * decoder accepts reaches Avro-C too). */
    uint8_t *appended = pr_malloc(size + 1);
    if (size) memcpy(appended, data, size);
    appended[size] = 0;
    for (int pass = 0; pass < 2; pass++) {
        pr_fuzz_resolved(s, pass ? appended : data, pass ? size + 1 : size);
    }
    free(appended);
    return 0;
}

static void pr_fuzz_resolved(struct pr_fuzz_state *s, const uint8_t *data, size_t size) {
    char err[256];
    pr_arena_reset(&s->arena);
    struct pr_declaration resolved, plain;
    enum pr_dlq_code rcode =
        pr_decl_reader_decode(s->v2, data, size, &resolved, &s->arena, err, sizeof(err));
    if ((int)rcode < PR_DLQ_NONE || rcode > PR_DLQ_UNKNOWN_SCHEMA)
        pr_fuzz_fail("resolved: bad code %d", rcode);
    if (rcode != PR_DLQ_NONE && err[0] == '\0')
        pr_fuzz_fail("resolved: %s without an error text", pr_dlq_names[rcode]);
    /* A v1 Declaration followed by a null is a valid v2 record. */
    bool plain_null =
        size > 0 && data[size - 1] == 0 &&
        pr_declaration_decode(data, size - 1, &plain, &s->arena, err, sizeof(err)) == PR_DLQ_NONE;
    if (plain_null && rcode != PR_DLQ_NONE)
        pr_fuzz_fail("resolved path says %s for a v1 Declaration followed by a null",
                     pr_dlq_names[rcode]);
    if (rcode != PR_DLQ_NONE) return;
    /* A valid v2 record is a complete v1 Declaration followed by the new
     * field (null, or a string): the fast decoder says TRAILING_BYTES, and
     * the Declaration before those bytes has the same fields. */
    size_t extra = 0, v1_len = 0;
    if (pr_declaration_decode(data, size, &plain, &s->arena, err, sizeof(err)) !=
            PR_DLQ_TRAILING_BYTES ||
        sscanf(err, "%zu bytes after a complete Declaration of %zu bytes", &extra, &v1_len) != 2 ||
        v1_len + extra != size ||
        pr_declaration_decode(data, v1_len, &plain, &s->arena, err, sizeof(err)) != PR_DLQ_NONE)
        pr_fuzz_fail(
            "resolved path accepts what is not a v1 Declaration followed by one more field");
    pr_buf_reset(&s->first);
    pr_buf_reset(&s->second);
    pr_declaration_encode(&resolved, &s->first);
    pr_declaration_encode(&plain, &s->second);
    if (s->first.len != s->second.len || memcmp(s->first.data, s->second.data, s->first.len) != 0)
        pr_fuzz_fail("resolved and fast decoder disagree on the fields");
}
