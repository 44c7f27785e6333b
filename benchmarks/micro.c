/*
 * micro.c - the operator chain in process, no Kafka: prepared Avro-binary
 * declarations go through decode, every operator and encode, batch by batch,
 * exactly as `parcelrisk run` calls them.
 *
 *   pr_micro [--count N] [--distinct D] [--batch B] [--redis HOST:PORT] [--chain LIST]
 *            [--consignees N] [--cache-entries N] [--cache-mb N] [--cold] [--framed] [--digest]
 *
 * With --redis the full default chain runs (enrich with its cache warmed by
 * one untimed pass over the distinct declarations); without it, the chain
 * of the operators that need no Redis. A chain with a keyed operator
 * (aggregate) runs as `run` runs it, in two stages: each batch through
 * stage 1 (up to repartition: the intermediate records), then those records
 * as one stage-2 batch (repartition-source, aggregate with one state store
 * per repartition partition and its changelog records written into the
 * batch, ..., encode); only Kafka is left out. The stores are made fresh
 * before the timed pass, so it counts every declaration anew (the write
 * path).
 * --framed: outputs framed as with a schema registry (batch.frame set, as
 * the engine does; the input stays plain: framed input is pr_wire_bench's).
 * Prints declarations/s on one core, CPU microseconds per declaration, and
 * each operator's share. For instruction counts run it under
 * `valgrind --tool=callgrind --toggle-collect=pr_micro_timed` (benchmarks/micro).
 *
 * --digest: after the timed pass, one more untimed pass over the distinct
 * declarations prints the SHA-256 of every output it encodes (decision,
 * dead letter, aggregate alert, in order; the processing time is fixed), so
 * that two builds can be shown to decide byte for byte the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/evp.h>

#include "codec.h"
#include "config.h"
#include "gen.h"
#include "hash.h"
#include "operator.h"
#include "rules.h"
#include "state.h"

/* The repartition partitions of the two-stage run (as topics.*_partitions). */
#define PR_MICRO_PARTITIONS 8

/* Stage 2's keyed state: a store per partition, their changelog records
 * written into the stage-2 batch as the engine's keyed state does. */
struct pr_micro_store {
    struct pr_state *state;
    struct pr_batch **batch;
    int32_t partition;
};

static struct pr_micro_store pr_stores[PR_MICRO_PARTITIONS];
static struct pr_batch *pr_stage2_batch;

static void pr_micro_journal(void *ctx, struct pr_str key, struct pr_str value) {
    struct pr_micro_store *st = ctx;
    pr_batch_add_output(*st->batch, NULL, st->partition, key, value);
}

static struct pr_state *pr_micro_store_of(void *ctx, int32_t partition) {
    (void)ctx;
    return partition >= 0 && partition < PR_MICRO_PARTITIONS ? pr_stores[partition].state : NULL;
}

static void pr_micro_stores_reset(void) {
    static const struct pr_state_options so = {.ttl_ms = 72 * 3600000LL,
                                               .total_cap = PR_STATE_SCRIPT_TOTAL_CAP};
    for (int32_t p = 0; p < PR_MICRO_PARTITIONS; p++) {
        pr_state_free(pr_stores[p].state);
        pr_stores[p] = (struct pr_micro_store){pr_state_new(&so), &pr_stage2_batch, p};
        struct pr_state_journal j = {pr_micro_journal, &pr_stores[p]};
        pr_state_set_journal(pr_stores[p].state, &j);
    }
}

/* One stage or two (chains[1].count > 0), and the stage-2 batch. */
struct pr_micro_chain {
    struct pr_chain chains[2];
    struct pr_batch stage2;
    uint64_t changelog_records;
};

static double pr_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

struct pr_prepared {
    struct pr_buf data;
    size_t *offsets; /* count + 1 */
    size_t count;
};

static void pr_prepare(struct pr_prepared *p, size_t distinct, uint32_t consignees) {
    pr_buf_init(&p->data);
    p->offsets = pr_malloc((distinct + 1) * sizeof(size_t));
    p->count = distinct;
    struct pr_gen gen;
    int64_t start;
    pr_parse_utc("2025-03-01", &start); /* before the suspensions: every rule can fire */
    pr_gen_init(&gen, 42, start, 3);
    if (consignees) gen.consignee_pool = consignees;
    for (size_t i = 0; i < distinct; i++) {
        struct pr_declaration d;
        pr_gen_next(&gen, &d);
        d.event_time = start;
        p->offsets[i] = p->data.len;
        pr_declaration_encode(&d, &p->data);
    }
    p->offsets[distinct] = p->data.len;
}

static void pr_run_chain(struct pr_chain *chain, struct pr_batch *batch) {
    size_t failed_at;
    int rc = pr_chain_process(chain, batch, 0, &failed_at);
    if (rc != PR_OP_DONE) {
        fprintf(stderr, "micro: operator %s returned %d\n", chain->ops[failed_at].ops->name, rc);
        exit(1);
    }
}

/* Stage 2 of batch: its intermediate records as one batch, in order (so
 * the i-th live record of batch is the i-th of stage2). */
static void pr_run_stage2(struct pr_micro_chain *mc, const struct pr_batch *batch) {
    struct pr_batch *b2 = &mc->stage2;
    pr_batch_reset(b2);
    b2->rules = batch->rules;
    b2->source_topic = "repartition";
    b2->refdata_version = "none";
    b2->now_ms = batch->now_ms;
    b2->frame = batch->frame;
    for (size_t i = 0; i < batch->count; i++) {
        const struct pr_record *rec = &batch->records[i];
        if (!(rec->outputs & PR_OUT_REPARTITION)) continue;
        struct pr_record *r = pr_batch_push(b2);
        r->payload = (const uint8_t *)rec->out_repartition.ptr;
        r->payload_len = rec->out_repartition.len;
        r->key = rec->out_repartition_key.ptr;
        r->key_len = rec->out_repartition_key.len;
        r->partition = rec->out_partition;
        r->offset = (int64_t)i;
    }
    pr_stage2_batch = b2;
    pr_run_chain(&mc->chains[1], b2);
    for (int32_t p = 0; p < PR_MICRO_PARTITIONS; p++)
        pr_state_expire(pr_stores[p].state, b2->now_ms);
    pr_stage2_batch = NULL;
    mc->changelog_records += b2->extra_count;
}

static uint64_t pr_run_batches(struct pr_micro_chain *mc, struct pr_batch *batch,
                               const struct pr_prepared *p, size_t count, size_t batch_size,
                               const struct pr_rules *rules, size_t *cursor,
                               const struct pr_output_ids *frame, EVP_MD_CTX *digest) {
    uint64_t encoded_bytes = 0;
    size_t done = 0;
    while (done < count) {
        pr_batch_reset(batch);
        batch->rules = rules;
        batch->source_topic = "declarations";
        batch->refdata_version = "none";
        batch->now_ms = 1740830400000;
        batch->frame = frame;
        size_t n = count - done < batch_size ? count - done : batch_size;
        for (size_t i = 0; i < n; i++) {
            size_t k = (*cursor)++ % p->count;
            struct pr_record *rec = pr_batch_push(batch);
            rec->payload = p->data.data + p->offsets[k];
            rec->payload_len = p->offsets[k + 1] - p->offsets[k];
            rec->partition = (int32_t)(k % 8);
            rec->offset = (int64_t)k;
        }
        pr_run_chain(&mc->chains[0], batch);
        bool two = mc->chains[1].count > 0;
        if (two) pr_run_stage2(mc, batch);
        const struct pr_batch *b2 = &mc->stage2;
        for (size_t i = 0, next = 0; i < batch->count; i++) {
            const struct pr_record *rec = &batch->records[i];
            /* A live record's decision is made by stage 2 (in order). */
            const struct pr_record *dec =
                two && (rec->outputs & PR_OUT_REPARTITION) ? &b2->records[next++] : rec;
            encoded_bytes += dec->out_decision.len + rec->out_dlq.len;
            if (!digest) continue;
            const struct pr_str outs[3] = {dec->out_decision,
                                           dec != rec ? dec->out_dlq : rec->out_dlq,
                                           dec->out_aggregate_alert};
            for (int k = 0; k < 3; k++) {
                uint64_t len = outs[k].len;
                EVP_DigestUpdate(digest, &len, sizeof(len));
                if (outs[k].len) EVP_DigestUpdate(digest, outs[k].ptr, outs[k].len);
            }
        }
        done += n;
    }
    return encoded_bytes;
}

/* The timed part, by name, for callgrind's --toggle-collect. */
uint64_t pr_micro_timed(struct pr_micro_chain *chain, struct pr_batch *batch,
                        const struct pr_prepared *p, size_t count, size_t batch_size,
                        const struct pr_rules *rules, size_t *cursor,
                        const struct pr_output_ids *frame);
__attribute__((noinline)) uint64_t
pr_micro_timed(struct pr_micro_chain *chain, struct pr_batch *batch, const struct pr_prepared *p,
               size_t count, size_t batch_size, const struct pr_rules *rules, size_t *cursor,
               const struct pr_output_ids *frame) {
    return pr_run_batches(chain, batch, p, count, batch_size, rules, cursor, frame, NULL);
}

int main(int argc, char **argv) {
    size_t count = 1000000, distinct = 100000, batch_size = 1000;
    uint32_t consignees = 0;
    bool cold = false, framed = false, digest = false;
    long cache_entries = 0, cache_mb = 0;
    const char *redis = NULL, *chain_list = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--cold") == 0)
            cold = true;
        else if (strcmp(argv[i], "--framed") == 0)
            framed = true;
        else if (strcmp(argv[i], "--digest") == 0)
            digest = true;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cold") == 0 || strcmp(argv[i], "--framed") == 0 ||
            strcmp(argv[i], "--digest") == 0) {
            i--; /* a flag without a value */
            continue;
        }
        if (strcmp(argv[i], "--count") == 0)
            count = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--distinct") == 0)
            distinct = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0)
            batch_size = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--redis") == 0)
            redis = argv[i + 1];
        else if (strcmp(argv[i], "--chain") == 0)
            chain_list = argv[i + 1];
        else if (strcmp(argv[i], "--consignees") == 0)
            consignees = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--cache-entries") == 0)
            cache_entries = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--cache-mb") == 0)
            cache_mb = atol(argv[i + 1]);
    }
    if (distinct > count) distinct = count;
    struct pr_config *cfg = pr_config_default();
    pr_log_set_level(PR_LOG_WARN);
    if (redis) pr_config_set(cfg, "redis.address", redis, "args", 0);
    if (!chain_list && !redis)
        chain_list = "decode,validate,policy,screen,sample,score,route,encode";
    if (chain_list) pr_config_set(cfg, "chain", chain_list, "args", 0);
    char number[32];
    if (cache_entries) {
        snprintf(number, sizeof(number), "%ld", cache_entries);
        pr_config_set(cfg, "cache.max_entries", number, "args", 0);
    }
    if (cache_mb) {
        snprintf(number, sizeof(number), "%ld", cache_mb);
        pr_config_set(cfg, "cache.max_mb", number, "args", 0);
    }
    struct pr_micro_chain mc;
    memset(&mc, 0, sizeof(mc));
    static const struct pr_state_router router = {pr_micro_store_of, NULL};
    struct pr_operator_env env1 = {.cfg = cfg, .repartition_partitions = PR_MICRO_PARTITIONS};
    struct pr_operator_env env2 = {.cfg = cfg, .states = &router};
    if (pr_chain_init_stages(mc.chains, cfg, &env1, &env2) != PR_OK) return 2;
    pr_micro_stores_reset();
    struct pr_rules *rules = pr_rules_new_default();
    struct pr_prepared prepared;
    pr_prepare(&prepared, distinct, consignees);
    struct pr_batch batch;
    pr_batch_init(&batch, batch_size);
    pr_batch_init(&mc.stage2, batch_size);

    size_t cursor = 0;
    /* Warm-up: one pass over the distinct declarations (fills the cache);
     * --cold skips it, so enrich starts with an empty cache. */
    static const struct pr_output_ids ids = {.decision = 1, .alert = 1, .deadletter = 2};
    const struct pr_output_ids *frame = framed ? &ids : NULL;
    if (!cold)
        pr_run_batches(&mc, &batch, &prepared, distinct, batch_size, rules, &cursor, frame, NULL);
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < mc.chains[s].count; i++)
            memset(&mc.chains[s].ops[i].stats, 0, sizeof(mc.chains[s].ops[i].stats));
    pr_micro_stores_reset(); /* the timed pass counts every declaration anew */
    mc.changelog_records = 0;

    double cpu0 = pr_cpu();
    int64_t t0 = pr_monotonic_us();
    uint64_t bytes =
        pr_micro_timed(&mc, &batch, &prepared, count, batch_size, rules, &cursor, frame);
    double wall = (double)(pr_monotonic_us() - t0) / 1e6;
    double cpu = pr_cpu() - cpu0;

    printf("micro: %zu declarations (%zu distinct, %.0f bytes avg), batch %zu, chain:", count,
           distinct, (double)prepared.data.len / (double)distinct, batch_size);
    for (int s = 0; s < 2; s++) {
        if (s == 1 && mc.chains[1].count) printf(" |");
        for (size_t i = 0; i < mc.chains[s].count; i++)
            printf(" %s", mc.chains[s].ops[i].ops->name);
    }
    printf("\nmicro: %.0f declarations/s on one core (wall), %.3f us CPU per declaration, %.1f MB "
           "encoded\n",
           (double)count / wall, cpu * 1e6 / (double)count, (double)bytes / 1e6);
    uint64_t busy = 0;
    size_t op_count = mc.chains[0].count + mc.chains[1].count;
#define PR_MICRO_OP(i)                                                                             \
    ((i) < mc.chains[0].count ? &mc.chains[0].ops[(i)] : &mc.chains[1].ops[(i)-mc.chains[0].count])
    for (size_t i = 0; i < op_count; i++) busy += PR_MICRO_OP(i)->stats.busy_us;
    for (size_t i = 0; i < op_count; i++) {
        const struct pr_operator *op = PR_MICRO_OP(i);
        printf("  %-10s %6.3f us/declaration  %5.1f%%", op->ops->name,
               (double)op->stats.busy_us / (double)count,
               100.0 * (double)op->stats.busy_us / (double)(busy ? busy : 1));
        if (op->stats.round_trips)
            printf("  round trips/batch %.2f",
                   (double)op->stats.round_trips / (double)op->stats.batches);
        if (op->stats.cache_hits + op->stats.cache_misses)
            printf("  cache hit ratio %.4f, %llu entries, %.1f MB",
                   (double)op->stats.cache_hits /
                       (double)(op->stats.cache_hits + op->stats.cache_misses),
                   (unsigned long long)op->stats.cache_entries,
                   (double)op->stats.cache_bytes / 1048576.0);
        printf("\n");
    }
    if (mc.chains[1].count) {
        size_t keys = 0, held = 0;
        for (int32_t p = 0; p < PR_MICRO_PARTITIONS; p++) {
            struct pr_state_stats st;
            pr_state_get_stats(pr_stores[p].state, &st);
            keys += st.keys;
            held += st.bytes;
        }
        printf("micro: keyed state: %zu keys in %d stores, %.1f MB, %.0f bytes per key; %.2f "
               "changelog records per declaration\n",
               keys, PR_MICRO_PARTITIONS, (double)held / 1048576.0,
               keys ? (double)held / (double)keys : 0.0,
               (double)mc.changelog_records / (double)count);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("micro: peak RSS %.1f MB (prepared declarations %.1f MB of it)\n",
           (double)ru.ru_maxrss / 1024.0, (double)prepared.data.len / 1048576.0);
    printf("{\"count\": %zu, \"declarations_per_second\": %.0f, \"cpu_us_per_declaration\": %.4f, "
           "\"peak_rss_mb\": %.1f}\n",
           count, (double)count / wall, cpu * 1e6 / (double)count, (double)ru.ru_maxrss / 1024.0);
    if (digest) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        size_t at = 0;
        pr_run_batches(&mc, &batch, &prepared, distinct, batch_size, rules, &at, frame, ctx);
        unsigned char md[32];
        unsigned int md_len = 0;
        EVP_DigestFinal_ex(ctx, md, &md_len);
        EVP_MD_CTX_free(ctx);
        char hex[65];
        pr_sha256_to_hex(md, hex);
        printf("micro: outputs of the %zu distinct declarations: sha256 %s\n", distinct, hex);
    }
    pr_batch_destroy(&batch);
    pr_buf_free(&prepared.data);
    free(prepared.offsets);
    pr_rules_free(rules);
    pr_batch_destroy(&mc.stage2);
    pr_chain_destroy(&mc.chains[0]);
    pr_chain_destroy(&mc.chains[1]);
    for (int32_t p = 0; p < PR_MICRO_PARTITIONS; p++) pr_state_free(pr_stores[p].state);
    pr_config_free(cfg);
    return 0;
}
