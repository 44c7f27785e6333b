/*
 * micro.c - the operator chain in process, no Kafka: prepared Avro-binary
 * declarations go through decode, every operator and encode, batch by batch,
 * exactly as `parcelrisk run` calls them.
 *
 *   pr_micro [--count N] [--distinct D] [--batch B] [--redis HOST:PORT] [--chain LIST]
 *            [--consignees N] [--cache-entries N] [--cache-mb N] [--cold] [--framed] [--digest]
 *
 * With --redis the full default chain runs (enrich with its cache warmed by
 * one untimed pass over the distinct declarations; the aggregate state is
 * then deleted, so the timed pass counts every declaration anew, the write
 * path); without it, the chain of the operators that need no Redis.
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

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "codec.h"
#include "config.h"
#include "gen.h"
#include "hash.h"
#include "operator.h"
#include "rules.h"

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

/* Deletes the one-person-one-day and address-cluster state, so the timed
 * pass counts every declaration for the first time (the write path) while
 * the enrich cache stays warm. */
static void pr_forget_state(const char *address) {
    char host[256];
    const char *colon = strrchr(address, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
    redisContext *c = redisConnect(host, atoi(colon + 1));
    if (!c || c->err) {
        fprintf(stderr, "micro: cannot reach Redis %s\n", address);
        exit(1);
    }
    static const char *const patterns[] = {"pr:cd:*", "pr:ac:*"};
    size_t deleted = 0;
    for (int p = 0; p < 2; p++) {
        char cursor[32] = "0";
        do {
            redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 10000", cursor, patterns[p]);
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) exit(1);
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++) {
                redisReply *d = redisCommand(c, "UNLINK %s", r->element[1]->element[i]->str);
                freeReplyObject(d);
                deleted++;
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }
    redisFree(c);
    fprintf(stderr, "micro: removed %zu consignee-day and address-day keys before the timed pass\n",
            deleted);
}

static uint64_t pr_run_batches(struct pr_chain *chain, struct pr_batch *batch,
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
        size_t failed_at;
        int rc = pr_chain_process(chain, batch, 0, &failed_at);
        if (rc != PR_OP_DONE) {
            fprintf(stderr, "micro: operator %s returned %d\n", chain->ops[failed_at].ops->name,
                    rc);
            exit(1);
        }
        for (size_t i = 0; i < batch->count; i++)
            encoded_bytes += batch->records[i].out_decision.len + batch->records[i].out_dlq.len;
        for (size_t i = 0; digest && i < batch->count; i++) {
            const struct pr_record *rec = &batch->records[i];
            const struct pr_str outs[3] = {rec->out_decision, rec->out_dlq,
                                           rec->out_aggregate_alert};
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
uint64_t pr_micro_timed(struct pr_chain *chain, struct pr_batch *batch, const struct pr_prepared *p,
                        size_t count, size_t batch_size, const struct pr_rules *rules,
                        size_t *cursor, const struct pr_output_ids *frame);
__attribute__((noinline)) uint64_t pr_micro_timed(struct pr_chain *chain, struct pr_batch *batch,
                                                  const struct pr_prepared *p, size_t count,
                                                  size_t batch_size, const struct pr_rules *rules,
                                                  size_t *cursor,
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
    struct pr_chain chain;
    if (pr_chain_init(&chain, cfg) != PR_OK) return 2;
    struct pr_rules *rules = pr_rules_new_default();
    struct pr_prepared prepared;
    pr_prepare(&prepared, distinct, consignees);
    struct pr_batch batch;
    pr_batch_init(&batch, batch_size);

    size_t cursor = 0;
    /* Warm-up: one pass over the distinct declarations (fills the cache);
     * --cold skips it, so enrich starts with an empty cache. */
    static const struct pr_output_ids ids = {.decision = 1, .alert = 1, .deadletter = 2};
    const struct pr_output_ids *frame = framed ? &ids : NULL;
    if (!cold)
        pr_run_batches(&chain, &batch, &prepared, distinct, batch_size, rules, &cursor, frame,
                       NULL);
    for (size_t i = 0; i < chain.count; i++)
        memset(&chain.ops[i].stats, 0, sizeof(chain.ops[i].stats));
    if (redis) pr_forget_state(redis);

    double cpu0 = pr_cpu();
    int64_t t0 = pr_monotonic_us();
    uint64_t bytes =
        pr_micro_timed(&chain, &batch, &prepared, count, batch_size, rules, &cursor, frame);
    double wall = (double)(pr_monotonic_us() - t0) / 1e6;
    double cpu = pr_cpu() - cpu0;

    printf("micro: %zu declarations (%zu distinct, %.0f bytes avg), batch %zu, chain:", count,
           distinct, (double)prepared.data.len / (double)distinct, batch_size);
    for (size_t i = 0; i < chain.count; i++) printf(" %s", chain.ops[i].ops->name);
    printf("\nmicro: %.0f declarations/s on one core (wall), %.3f us CPU per declaration, %.1f MB "
           "encoded\n",
           (double)count / wall, cpu * 1e6 / (double)count, (double)bytes / 1e6);
    uint64_t busy = 0;
    for (size_t i = 0; i < chain.count; i++) busy += chain.ops[i].stats.busy_us;
    for (size_t i = 0; i < chain.count; i++) {
        const struct pr_operator *op = &chain.ops[i];
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
        pr_run_batches(&chain, &batch, &prepared, distinct, batch_size, rules, &at, frame, ctx);
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
    pr_chain_destroy(&chain);
    pr_config_free(cfg);
    return 0;
}
