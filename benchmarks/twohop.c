/*
 * twohop.c - the ceiling of a two-stage topology (issue 12): what raw
 * librdkafka allows when every record crosses the broker twice, as the
 * repartitioned `parcelrisk run` makes it do. One process, one consumer
 * subscribed to both the input topic and a repartition topic, one producer:
 *
 *   input --consume--> produce (same bytes, keyed by the record key) --> repartition
 *   repartition --consume--> produce (same bytes, same key) --> output
 *
 * The client settings and the delivery discipline are those of the one-hop
 * passthrough.c (pr_kafka_conf_new: idempotent producer, acks=all, lz4, the
 * same linger and batch sizes, the same consumer defaults; zero-copy
 * produce; a consumed message's offset is stored only once the broker
 * acknowledged its copy, and librdkafka commits stored offsets every 1 s),
 * so the ratio of the two rows of benchmarks/run is the price of the second
 * hop alone. No decoding, no operators. One consumer for both topics is the
 * shape of issue 12 ("one consumer in the group may subscribe to both").
 *
 * The one-hop passthrough has no exactly-once variant; neither has this.
 *
 *   twohop --brokers B --input TOPIC --repartition TOPIC --output TOPIC
 *          --group G --count N [--summary FILE.json]
 * Exits when N messages reached the output topic (acknowledged), 1 when a
 * copy was refused by the broker, 2 on bad usage.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "kafka.h"

enum pr_hop { PR_HOP_UNKNOWN, PR_HOP_INPUT, PR_HOP_REPARTITION };

struct pr_twohop {
    const char *input, *repartition;
    /* The consumer's topic handles, learned by name on first sight: a
     * message's hop is then one pointer compare. */
    rd_kafka_topic_t *rkt_input, *rkt_repartition;
    uint64_t consumed_input, consumed_repartition;
    uint64_t delivered_repartition, delivered_output, failed;
};

static enum pr_hop pr_twohop_hop(struct pr_twohop *th, rd_kafka_topic_t *rkt) {
    if (rkt == th->rkt_input) return PR_HOP_INPUT;
    if (rkt == th->rkt_repartition) return PR_HOP_REPARTITION;
    const char *name = rd_kafka_topic_name(rkt);
    if (strcmp(name, th->input) == 0) {
        th->rkt_input = rkt;
        return PR_HOP_INPUT;
    }
    if (strcmp(name, th->repartition) == 0) {
        th->rkt_repartition = rkt;
        return PR_HOP_REPARTITION;
    }
    return PR_HOP_UNKNOWN;
}

/* Delivery report of either hop: the consumed message it copied is the
 * opaque, kept alive until now (zero-copy); its offset is stored for the
 * next auto-commit only when its copy is acknowledged. */
static void pr_twohop_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    struct pr_twohop *th = opaque;
    rd_kafka_message_t *in = msg->_private;
    if (msg->err) {
        th->failed++;
        fprintf(stderr, "twohop: a copy to %s was refused: %s\n", rd_kafka_topic_name(msg->rkt),
                rd_kafka_err2str(msg->err));
    } else {
        if (pr_twohop_hop(th, in->rkt) == PR_HOP_INPUT)
            th->delivered_repartition++;
        else
            th->delivered_output++;
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

static int pr_twohop_usage(void) {
    fprintf(stderr, "usage: twohop --brokers B --input T --repartition T --output T --group G "
                    "--count N [--summary F]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *brokers = "127.0.0.1:19092", *output = NULL, *group = "twohop", *summary = NULL;
    struct pr_twohop th = {0};
    uint64_t count = 0;
    if (argc % 2 != 1) return pr_twohop_usage();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--brokers") == 0)
            brokers = argv[i + 1];
        else if (strcmp(argv[i], "--input") == 0)
            th.input = argv[i + 1];
        else if (strcmp(argv[i], "--repartition") == 0)
            th.repartition = argv[i + 1];
        else if (strcmp(argv[i], "--output") == 0)
            output = argv[i + 1];
        else if (strcmp(argv[i], "--group") == 0)
            group = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0)
            count = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--summary") == 0)
            summary = argv[i + 1];
        else {
            fprintf(stderr, "twohop: unknown option '%s'\n", argv[i]);
            return pr_twohop_usage();
        }
    }
    if (!th.input || !th.repartition || !output || !count) return pr_twohop_usage();
    if (strcmp(th.input, th.repartition) == 0 || strcmp(th.repartition, output) == 0) {
        fprintf(stderr, "twohop: the repartition topic must differ from the input and the "
                        "output topics\n");
        return 2;
    }
    struct pr_config *cfg = pr_config_default();
    pr_config_set(cfg, "kafka.bootstrap.servers", brokers, "args", 0);
    pr_config_set(cfg, "group", group, "args", 0);
    char err[512];
    rd_kafka_conf_t *pconf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    rd_kafka_conf_set_opaque(pconf, &th);
    rd_kafka_conf_set_dr_msg_cb(pconf, pr_twohop_dr);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    if (!producer) {
        fprintf(stderr, "twohop: cannot create the producer: %s\n", err);
        return 1;
    }
    rd_kafka_conf_t *cconf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    /* Stored offsets (after delivery) are committed by librdkafka every 1 s,
     * as in the one-hop passthrough. */
    rd_kafka_conf_set(cconf, "enable.auto.commit", "true", err, sizeof(err));
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    if (!consumer) {
        fprintf(stderr, "twohop: cannot create the consumer: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(sub, th.input, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(sub, th.repartition, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (serr) {
        fprintf(stderr, "twohop: cannot subscribe to %s and %s: %s\n", th.input, th.repartition,
                rd_kafka_err2str(serr));
        return 1;
    }
    rd_kafka_topic_t *rkt_repartition = rd_kafka_topic_new(producer, th.repartition, NULL);
    rd_kafka_topic_t *rkt_output = rd_kafka_topic_new(producer, output, NULL);

    int64_t first_us = 0;
    double cpu0 = pr_cpu();
    while (th.delivered_output + th.failed < count) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (m && m->err) {
            rd_kafka_message_destroy(m);
            m = NULL;
        }
        if (m) {
            enum pr_hop hop = pr_twohop_hop(&th, m->rkt);
            rd_kafka_topic_t *to = hop == PR_HOP_INPUT ? rkt_repartition : rkt_output;
            if (hop == PR_HOP_INPUT) {
                if (!first_us) first_us = pr_monotonic_us();
                th.consumed_input++;
            } else {
                th.consumed_repartition++;
            }
            for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                    producer, RD_KAFKA_V_RKT(to), RD_KAFKA_V_MSGFLAGS(0),
                    RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_KEY(m->key, m->key_len),
                    RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
                rd_kafka_poll(producer, 10);
            }
        }
        rd_kafka_poll(producer, 0);
    }
    double secs = first_us ? (double)(pr_monotonic_us() - first_us) / 1e6 : 0.0;
    double cpu = pr_cpu() - cpu0;
    rd_kafka_commit(consumer, NULL, 0);
    printf("twohop: %llu messages through 2 hops in %.3f s = %.0f msg/s, %.3f us CPU per message, "
           "%llu failed\n",
           (unsigned long long)th.delivered_output, secs,
           secs > 0 ? (double)th.delivered_output / secs : 0.0,
           th.delivered_output ? cpu * 1e6 / (double)th.delivered_output : 0.0,
           (unsigned long long)th.failed);
    int rc = th.failed ? 1 : 0;
    if (summary) {
        FILE *fp = fopen(summary, "w");
        if (!fp ||
            fprintf(fp,
                    "{\"consumed\": %llu, \"consumed_repartition\": %llu, "
                    "\"delivered_repartition\": %llu, \"delivered\": %llu, \"failed\": %llu, "
                    "\"active_seconds\": %.6f, \"cpu_seconds\": %.6f}\n",
                    (unsigned long long)th.consumed_input,
                    (unsigned long long)th.consumed_repartition,
                    (unsigned long long)th.delivered_repartition,
                    (unsigned long long)th.delivered_output, (unsigned long long)th.failed, secs,
                    cpu) < 0) {
            fprintf(stderr, "twohop: cannot write the summary to %s\n", summary);
            rc = 1;
        }
        if (fp && fclose(fp) != 0) {
            fprintf(stderr, "twohop: cannot write the summary to %s\n", summary);
            rc = 1;
        }
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(rkt_repartition);
    rd_kafka_topic_destroy(rkt_output);
    rd_kafka_destroy(producer);
    pr_config_free(cfg);
    return rc;
}
