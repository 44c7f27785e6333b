/*
 * topic_stats.c - two numbers of issue 12 that benchmarks/run reads from the
 * broker rather than from the processes it measures: how evenly a topic's
 * records are spread over its partitions (a hot repartition key sinks the
 * one instance that owns its partition), and what the input data would do
 * to a repartitioning by consignee address (every blank address is one and
 * the same key).
 *
 *   pr_topic_stats offsets BROKERS TOPIC
 *       low and high watermark of every partition (ListOffsets through
 *       rd_kafka_query_watermark_offsets), the records written to each
 *       partition (its high watermark: the topics here are made fresh, and
 *       `run` purges its repartition topic below the committed offsets, so
 *       high - low would count only what is left) and the largest
 *       partition's share of them. A
 *       transactional topic's control records (one per partition and
 *       commit) are counted as records: a small overstatement.
 *   pr_topic_stats consignees BROKERS TOPIC
 *       reads every record from the low to the high watermark (assign, no
 *       group, no commit), decodes it as a Declaration and counts: consignee
 *       addresses that are blank (empty or only spaces) and missing (blank,
 *       or normalized to nothing or to N A, NA, NONE, UNKNOWN: DOMAIN.md
 *       section 5), distinct normalized consignee addresses and the share of
 *       the most frequent one (the hottest repartition key, whatever the
 *       partitioner does with it), and distinct consignee identities
 *       (DOMAIN.md section 6; the RSS target is stated for 1,000,000 of
 *       them).
 *
 * Both print one JSON object on stdout. Only counts are printed, never a
 * name or an address. Exit status 0, 1 on a Kafka error (printed), 2 on bad
 * usage. A benchmark tool, not part of the product.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "common.h"
#include "hash.h"
#include "normalize.h"

#define PR_STATS_TIMEOUT_MS 30000

static rd_kafka_t *pr_stats_client(rd_kafka_type_t type, const char *brokers) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        (type == RD_KAFKA_CONSUMER &&
         (rd_kafka_conf_set(conf, "group.id", "pr_topic_stats", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK))) {
        fprintf(stderr, "pr_topic_stats: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) fprintf(stderr, "pr_topic_stats: cannot create a Kafka client: %s\n", err);
    return rk;
}

/* The partitions of topic with their watermarks; NULL after printing why. */
static rd_kafka_topic_partition_list_t *pr_stats_watermarks(rd_kafka_t *rk, const char *topic,
                                                            int64_t **low_out) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, PR_STATS_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "pr_topic_stats: no metadata for topic %s: %s\n", topic,
                rd_kafka_err2str(e                    ? e
                                 : md->topic_cnt != 1 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                                                      : md->topics[0].err));
        if (md) rd_kafka_metadata_destroy(md);
        return NULL;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    int64_t *low = calloc((size_t)n + 1, sizeof(*low));
    for (int i = 0; i < n; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, PR_STATS_TIMEOUT_MS);
        if (e) {
            fprintf(stderr, "pr_topic_stats: no watermarks for %s [%d]: %s\n", topic, p,
                    rd_kafka_err2str(e));
            rd_kafka_metadata_destroy(md);
            rd_kafka_topic_partition_list_destroy(parts);
            free(low);
            return NULL;
        }
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
        low[i] = lo;
    }
    rd_kafka_metadata_destroy(md);
    *low_out = low;
    return parts;
}

static int pr_stats_offsets(const char *brokers, const char *topic) {
    rd_kafka_t *rk = pr_stats_client(RD_KAFKA_PRODUCER, brokers);
    if (!rk) return 1;
    int64_t *low = NULL;
    rd_kafka_topic_partition_list_t *parts = pr_stats_watermarks(rk, topic, &low);
    if (!parts) {
        rd_kafka_destroy(rk);
        return 1;
    }
    int64_t total = 0, largest = -1;
    int32_t largest_partition = -1;
    printf("{\"topic\": \"%s\", \"partitions\": [", topic);
    for (int i = 0; i < parts->cnt; i++) {
        int64_t records = parts->elems[i].offset;
        total += records;
        if (records > largest) {
            largest = records;
            largest_partition = parts->elems[i].partition;
        }
        printf("%s{\"partition\": %d, \"low\": %lld, \"high\": %lld, \"records\": %lld}",
               i ? ", " : "", parts->elems[i].partition, (long long)low[i],
               (long long)parts->elems[i].offset, (long long)records);
    }
    printf("], \"records\": %lld, \"largest_partition\": %d, \"largest_records\": %lld, "
           "\"largest_share\": %.6f, \"even_share\": %.6f}\n",
           (long long)total, largest_partition, (long long)largest,
           total ? (double)largest / (double)total : 0.0, parts->cnt ? 1.0 / parts->cnt : 0.0);
    rd_kafka_topic_partition_list_destroy(parts);
    free(low);
    rd_kafka_destroy(rk);
    return 0;
}

/* ------------------------------------------------ counting keys in memory */

/* Open addressing over 64-bit hashes of the keys (never the keys: nothing
 * personal is kept), with a count each. 0 marks an empty slot. */
struct pr_stats_table {
    uint64_t *hashes;
    uint32_t *counts;
    size_t cap, used;
};

static void pr_stats_table_add(struct pr_stats_table *t, uint64_t h, uint32_t *count_out) {
    if (!h) h = 1;
    if (2 * (t->used + 1) > t->cap) {
        struct pr_stats_table bigger = {calloc(t->cap ? t->cap * 2 : 1024, sizeof(uint64_t)),
                                        calloc(t->cap ? t->cap * 2 : 1024, sizeof(uint32_t)),
                                        t->cap ? t->cap * 2 : 1024, 0};
        if (!bigger.hashes || !bigger.counts) {
            fprintf(stderr, "pr_topic_stats: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->hashes[i]) continue;
            size_t j = t->hashes[i] & (bigger.cap - 1);
            while (bigger.hashes[j]) j = (j + 1) & (bigger.cap - 1);
            bigger.hashes[j] = t->hashes[i];
            bigger.counts[j] = t->counts[i];
            bigger.used++;
        }
        free(t->hashes);
        free(t->counts);
        *t = bigger;
    }
    size_t j = h & (t->cap - 1);
    while (t->hashes[j] && t->hashes[j] != h) j = (j + 1) & (t->cap - 1);
    if (!t->hashes[j]) {
        t->hashes[j] = h;
        t->used++;
    }
    *count_out = ++t->counts[j];
}

struct pr_stats_counts {
    uint64_t records, undecodable, blank, missing;
    uint32_t hottest;
    struct pr_stats_table addresses, identities;
};

static void pr_stats_count(struct pr_stats_counts *c, const struct pr_declaration *d,
                           struct pr_buf *scratch) {
    const struct pr_party *p = &d->consignee;
    char *norm = malloc((size_t)p->address.len + 1);
    if (!norm) {
        fprintf(stderr, "pr_topic_stats: out of memory\n");
        exit(1);
    }
    size_t n = pr_norm_address(p->address.ptr, p->address.len, norm);
    bool blank = pr_str_blank(p->address);
    c->blank += blank;
    c->missing += blank || n == 0 || pr_norm_is_placeholder(norm, n);
    uint32_t count;
    pr_stats_table_add(&c->addresses, pr_hash64(norm, n), &count);
    if (count > c->hottest) c->hottest = count;
    free(norm);
    pr_consignee_identity(p, scratch);
    pr_stats_table_add(&c->identities, pr_hash64(scratch->data, scratch->len), &count);
}

static int pr_stats_consignees(const char *brokers, const char *topic) {
    rd_kafka_t *rk = pr_stats_client(RD_KAFKA_CONSUMER, brokers);
    if (!rk) return 1;
    int64_t *low = NULL;
    rd_kafka_topic_partition_list_t *ends = pr_stats_watermarks(rk, topic, &low);
    if (!ends) {
        rd_kafka_destroy(rk);
        return 1;
    }
    rd_kafka_topic_partition_list_t *start = rd_kafka_topic_partition_list_copy(ends);
    int64_t expected = 0;
    int open = 0;
    bool *done = calloc((size_t)start->cnt + 1, sizeof(*done));
    for (int i = 0; i < start->cnt; i++) {
        start->elems[i].offset = low[i];
        expected += ends->elems[i].offset - low[i];
        done[i] = ends->elems[i].offset <= low[i];
        open += !done[i];
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, start);
    rd_kafka_topic_partition_list_destroy(start);
    if (e) {
        fprintf(stderr, "pr_topic_stats: cannot assign %s: %s\n", topic, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(ends);
        free(low);
        rd_kafka_destroy(rk);
        return 1;
    }
    struct pr_stats_counts c = {0};
    struct pr_arena arena;
    pr_arena_init(&arena, 64 * 1024);
    struct pr_buf scratch;
    pr_buf_init(&scratch);
    char err[256];
    int idle_polls = 0, rc = 0;
    /* Done when every partition reached its high watermark as read at the
     * start (its last record, or its end: a transaction marker can be the
     * last offset); 30 s without a message means the broker stopped
     * answering. */
    while (open > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) {
            if (++idle_polls * 1000 >= PR_STATS_TIMEOUT_MS) {
                fprintf(stderr, "pr_topic_stats: no record from %s for 30 s; %llu of %lld read\n",
                        topic, (unsigned long long)c.records, (long long)expected);
                rc = 1;
                break;
            }
            continue;
        }
        idle_polls = 0;
        for (int i = 0; i < ends->cnt; i++) {
            if (!done[i] && ends->elems[i].partition == m->partition &&
                (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                 (!m->err && m->offset + 1 >= ends->elems[i].offset))) {
                done[i] = true;
                open--;
            }
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "pr_topic_stats: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        c.records++;
        struct pr_declaration d;
        pr_arena_reset(&arena);
        if (pr_declaration_decode(m->payload, m->len, &d, &arena, err, sizeof(err)) == PR_DLQ_NONE)
            pr_stats_count(&c, &d, &scratch);
        else
            c.undecodable++;
        rd_kafka_message_destroy(m);
    }
    uint64_t decoded = c.records - c.undecodable;
    printf("{\"topic\": \"%s\", \"records\": %llu, \"expected\": %lld, \"undecodable\": %llu, "
           "\"blank_address\": %llu, \"blank_address_share\": %.6f, \"missing_address\": %llu, "
           "\"missing_address_share\": %.6f, \"distinct_addresses\": %zu, "
           "\"hottest_address_records\": %u, \"hottest_address_share\": %.6f, "
           "\"distinct_consignees\": %zu}\n",
           topic, (unsigned long long)c.records, (long long)expected,
           (unsigned long long)c.undecodable, (unsigned long long)c.blank,
           decoded ? (double)c.blank / (double)decoded : 0.0, (unsigned long long)c.missing,
           decoded ? (double)c.missing / (double)decoded : 0.0, c.addresses.used, c.hottest,
           decoded ? (double)c.hottest / (double)decoded : 0.0, c.identities.used);
    free(c.addresses.hashes);
    free(c.addresses.counts);
    free(c.identities.hashes);
    free(c.identities.counts);
    pr_buf_free(&scratch);
    pr_arena_destroy(&arena);
    free(done);
    rd_kafka_topic_partition_list_destroy(ends);
    free(low);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "offsets") == 0) return pr_stats_offsets(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "consignees") == 0)
        return pr_stats_consignees(argv[2], argv[3]);
    fprintf(stderr, "usage: pr_topic_stats offsets BROKERS TOPIC\n"
                    "       pr_topic_stats consignees BROKERS TOPIC\n");
    return 2;
}
