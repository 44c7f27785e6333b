/*
 * pr_changelog_fill - writes the changelog of COUNT consignee-days into a
 * group's changelog topic, as stage 2 of `run` would have written it: one
 * store per partition (pipeline/domain/state.c), each day counted once (one
 * declaration of $100, a distinct consignee each), every journal record
 * produced to its store's partition. For the restore test and benchmark
 * (tests/integration/test_state_restore.py): a `run` of that group then
 * restores them all on assignment.
 *
 *   pr_changelog_fill BROKERS TOPIC PARTITIONS COUNT
 *
 * Prints "records N bytes B seconds S" on stdout; exit 1 on a Kafka error.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "state.h"

struct pr_fill {
    rd_kafka_t *producer;
    rd_kafka_topic_t *topic;
    int32_t partition;
    uint64_t records, bytes;
};

static void pr_fill_write(void *ctx, struct pr_str key, struct pr_str value) {
    struct pr_fill *f = ctx;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            f->producer, RD_KAFKA_V_RKT(f->topic), RD_KAFKA_V_PARTITION(f->partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY((void *)key.ptr, key.len),
            RD_KAFKA_V_VALUE((void *)value.ptr, value.len), RD_KAFKA_V_END);
        if (!err) break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "pr_changelog_fill: %s\n", rd_kafka_err2str(err));
            exit(1);
        }
        rd_kafka_poll(f->producer, 50);
    }
    f->records++;
    f->bytes += key.len + value.len;
}

static int pr_fill_failed;

static void pr_fill_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) pr_fill_failed = 1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: pr_changelog_fill BROKERS TOPIC PARTITIONS COUNT\n");
        return 2;
    }
    int32_t partitions = (int32_t)atoi(argv[3]);
    long long count = atoll(argv[4]);
    if (partitions < 1 || count < 0) return 2;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "compression.codec", "lz4", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err))) {
        fprintf(stderr, "pr_changelog_fill: %s\n", err);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, pr_fill_dr);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!producer) {
        fprintf(stderr, "pr_changelog_fill: %s\n", err);
        return 1;
    }
    rd_kafka_topic_t *topic = rd_kafka_topic_new(producer, argv[2], NULL);
    struct pr_state_options so = {.ttl_ms = 72 * 3600000LL, .total_cap = PR_STATE_SCRIPT_TOTAL_CAP};
    struct pr_state **stores = calloc((size_t)partitions, sizeof(*stores));
    struct pr_fill *fills = calloc((size_t)partitions, sizeof(*fills));
    for (int32_t p = 0; p < partitions; p++) {
        stores[p] = pr_state_new(&so);
        fills[p] = (struct pr_fill){producer, topic, p, 0, 0};
        struct pr_state_journal j = {pr_fill_write, &fills[p]};
        pr_state_set_journal(stores[p], &j);
    }
    int64_t t0 = pr_monotonic_us(), now = pr_now_ms();
    char day[11];
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    for (long long i = 0; i < count; i++) {
        /* A consignee-day key as the aggregate operator makes it: 32 bytes
         * of consignee key (here: i and a constant), then the day. */
        char key[42], id[32], bill[32];
        memset(key, 0xa5, 32);
        memcpy(key, &i, sizeof(i));
        memcpy(key + 32, day, 10);
        int id_len = snprintf(id, sizeof(id), "FILL-%lld", i);
        int bill_len = snprintf(bill, sizeof(bill), "HB-FILL-%lld", i);
        struct pr_state_day out;
        int32_t p = (int32_t)(i % partitions);
        pr_state_day_count(stores[p], (struct pr_str){key, 42},
                           (struct pr_str){id, (uint32_t)id_len}, 10000, false, true, 80000,
                           (struct pr_str){bill, (uint32_t)bill_len}, now, &out);
        if (i % 10000 == 0) rd_kafka_poll(producer, 0);
    }
    if (rd_kafka_flush(producer, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR || pr_fill_failed) {
        fprintf(stderr, "pr_changelog_fill: not every record was delivered\n");
        return 1;
    }
    uint64_t records = 0, bytes = 0;
    for (int32_t p = 0; p < partitions; p++) {
        records += fills[p].records;
        bytes += fills[p].bytes;
        pr_state_free(stores[p]);
    }
    printf("records %llu bytes %llu seconds %.2f\n", (unsigned long long)records,
           (unsigned long long)bytes, (double)(pr_monotonic_us() - t0) / 1e6);
    free(stores);
    free(fills);
    rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(producer);
    return 0;
}
