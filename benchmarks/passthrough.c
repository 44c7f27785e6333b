/*
 * passthrough.c - the ceiling of benchmarks/run: consume a topic and produce
 * every message unchanged to another, with exactly the client settings of
 * parcelrisk (pr_kafka_conf_new: idempotent producer, acks=all, lz4, the same
 * linger and batch sizes, the same consumer defaults) and the same delivery
 * discipline (zero-copy produce, offsets stored only after the broker
 * acknowledged the copy). No decoding, no operators: what librdkafka and
 * the broker allow on this machine.
 *
 *   passthrough --brokers B --input TOPIC --output TOPIC --group G --count N
 *               [--summary FILE.json]
 * Exits when N messages are consumed and acknowledged.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "kafka.h"

struct pr_pass {
    rd_kafka_t *consumer;
    uint64_t delivered, failed;
};

static void pr_pass_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    struct pr_pass *pass = opaque;
    rd_kafka_message_t *in = msg->_private; /* the consumed message, kept alive until now */
    if (msg->err) {
        pass->failed++;
    } else {
        pass->delivered++;
        rd_kafka_offset_store(in->rkt, in->partition, in->offset);
    }
    rd_kafka_message_destroy(in);
}

static double pr_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    const char *brokers = "127.0.0.1:19092", *input = NULL, *output = NULL, *group = "passthrough",
               *summary = NULL;
    uint64_t count = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--brokers") == 0)
            brokers = argv[i + 1];
        else if (strcmp(argv[i], "--input") == 0)
            input = argv[i + 1];
        else if (strcmp(argv[i], "--output") == 0)
            output = argv[i + 1];
        else if (strcmp(argv[i], "--group") == 0)
            group = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0)
            count = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--summary") == 0)
            summary = argv[i + 1];
    }
    if (!input || !output || !count) {
        fprintf(stderr, "usage: passthrough --brokers B --input T --output T --group G --count N "
                        "[--summary F]\n");
        return 2;
    }
    struct pr_config *cfg = pr_config_default();
    pr_config_set(cfg, "kafka.bootstrap.servers", brokers, "args", 0);
    pr_config_set(cfg, "group", group, "args", 0);
    struct pr_pass pass = {0};
    char err[512];
    rd_kafka_conf_t *pconf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    rd_kafka_conf_set_opaque(pconf, &pass);
    rd_kafka_conf_set_dr_msg_cb(pconf, pr_pass_dr);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    rd_kafka_conf_t *cconf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    /* Stored offsets (after delivery) are committed by librdkafka every 1 s. */
    rd_kafka_conf_set(cconf, "enable.auto.commit", "true", err, sizeof(err));
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    if (!producer || !consumer) {
        fprintf(stderr, "passthrough: %s\n", err);
        return 1;
    }
    pass.consumer = consumer;
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, input, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    rd_kafka_topic_t *out = rd_kafka_topic_new(producer, output, NULL);

    uint64_t consumed = 0;
    int64_t first_us = 0;
    double cpu0 = pr_cpu();
    while (pass.delivered + pass.failed < count) {
        if (consumed < count) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
            if (m && m->err) {
                rd_kafka_message_destroy(m);
                m = NULL;
            }
            if (m) {
                if (!first_us) first_us = pr_monotonic_us();
                consumed++;
                for (;;) {
                    rd_kafka_resp_err_t e = rd_kafka_producev(
                        producer, RD_KAFKA_V_RKT(out), RD_KAFKA_V_MSGFLAGS(0),
                        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_KEY(m->key, m->key_len),
                        RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
                    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
                    rd_kafka_poll(producer, 10);
                }
            }
            rd_kafka_poll(producer, 0);
        } else {
            rd_kafka_poll(producer, 50);
        }
    }
    double secs = (double)(pr_monotonic_us() - first_us) / 1e6;
    double cpu = pr_cpu() - cpu0;
    rd_kafka_commit(consumer, NULL, 0);
    printf(
        "passthrough: %llu messages in %.3f s = %.0f msg/s, %.3f us CPU per message, %llu failed\n",
        (unsigned long long)pass.delivered, secs, (double)pass.delivered / secs,
        cpu * 1e6 / (double)pass.delivered, (unsigned long long)pass.failed);
    if (summary) {
        FILE *fp = fopen(summary, "w");
        if (fp) {
            fprintf(fp,
                    "{\"consumed\": %llu, \"delivered\": %llu, \"failed\": %llu, "
                    "\"active_seconds\": %.6f, \"cpu_seconds\": %.6f}\n",
                    (unsigned long long)consumed, (unsigned long long)pass.delivered,
                    (unsigned long long)pass.failed, secs, cpu);
            fclose(fp);
        }
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(out);
    rd_kafka_destroy(producer);
    pr_config_free(cfg);
    return pass.failed ? 1 : 0;
}
