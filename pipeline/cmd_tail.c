/*
 * cmd_tail.c - `parcelrisk tail decisions|alerts|dlq`: prints records as
 * JSON lines (Avro's JSON encoding, decoded with Avro-C's generic API, the
 * reference implementation), one per line, with the Kafka coordinates added.
 */
#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_json.h"
#include "cli.h"
#include "kafka.h"
#include "schemas.h"

static void pr_tail_usage(void) {
    fprintf(stderr, "usage: parcelrisk tail decisions|alerts|dlq|raw [--config FILE] [--brokers LIST]\n"
                    "                       [--follow] [--max N] [--topic NAME]\n"
                    "Prints every record from the beginning; exits at the end unless --follow.\n"
                    "raw (with --topic) prints key and value bytes as hex.\n");
}

int pr_cmd_tail(int argc, char **argv) {
    struct pr_config *cfg = pr_cli_config(&argc, argv);
    if (!cfg) return 2;
    if (argc < 2) {
        pr_tail_usage();
        return 2;
    }
    const char *which = argv[1], *topic_name = NULL, *schema_json = pr_schema_decision;
    if (strcmp(which, "decisions") == 0)
        topic_name = cfg->topic_decisions;
    else if (strcmp(which, "alerts") == 0)
        topic_name = cfg->topic_alerts;
    else if (strcmp(which, "dlq") == 0) {
        topic_name = cfg->topic_dlq;
        schema_json = pr_schema_deadletter;
    } else if (strcmp(which, "raw") == 0) {
        topic_name = NULL; /* --topic required: prints key and value bytes as hex */
        schema_json = NULL;
    } else {
        pr_tail_usage();
        return 2;
    }
    bool follow = false;
    long long max = -1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0)
            follow = true;
        else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max = atoll(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            topic_name = argv[++i];
        else {
            pr_tail_usage();
            return 2;
        }
    }

    if (!topic_name) {
        pr_tail_usage();
        return 2;
    }
    avro_schema_t schema;
    if (!schema_json) schema_json = pr_schema_deadletter; /* unused for raw */
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema)) {
        pr_error("tail: bad embedded schema: %s", avro_strerror());
        return 1;
    }
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t value;
    avro_generic_value_new(iface, &value);

    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!conf) return 2;
    char err[512];
    rd_kafka_conf_set(conf, "group.id", "parcelrisk-tail", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("tail: %s", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = pr_kafka_topic_metadata(rk, topic_name, 30000, &md);
    if (e) {
        pr_error("tail: cannot read metadata of topic %s: %s", topic_name, rd_kafka_err2str(e));
        return 1;
    }
    int partitions = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic_name, md->topics[0].partitions[p].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);

    bool *eof = pr_calloc((size_t)partitions + 1, sizeof(bool));
    int at_end = 0;
    struct pr_buf json;
    pr_buf_init(&json);
    long long printed = 0;
    int rc = 0;
    while ((follow || at_end < partitions) && (max < 0 || printed < max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < partitions && !eof[m->partition]) {
                eof[m->partition] = true;
                at_end++;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            pr_warn("tail: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (strcmp(which, "raw") == 0) {
            printf("{\"_partition\": %d, \"_offset\": %lld, \"_key_hex\": \"", m->partition,
                   (long long)m->offset);
            for (size_t i = 0; i < m->key_len; i++) printf("%02x", ((const unsigned char *)m->key)[i]);
            printf("\", \"value_hex\": \"");
            for (size_t i = 0; i < m->len; i++) printf("%02x", ((const unsigned char *)m->payload)[i]);
            printf("\"}\n");
            printed++;
            rd_kafka_message_destroy(m);
            continue;
        }
        avro_reader_t reader = avro_reader_memory(m->payload, (int64_t)m->len);
        avro_value_reset(&value);
        pr_buf_reset(&json);
        if (avro_value_read(reader, &value) == 0 && pr_avro_to_json(&value, &json) == PR_OK) {
            /* Splice the Kafka coordinates into the object. */
            printf("{\"_partition\": %d, \"_offset\": %lld, \"_key\": \"", m->partition,
                   (long long)m->offset);
            for (size_t i = 0; i < m->key_len; i++) {
                unsigned char c = ((const unsigned char *)m->key)[i];
                if (c < 0x20 || c == '"' || c == '\\')
                    printf("\\u%04x", c);
                else
                    putchar(c);
            }
            printf("\", %.*s\n", (int)json.len - 1, (const char *)json.data + 1);
            printed++;
        } else {
            pr_warn("tail: record at %s[%d]@%lld is not a valid %s: %s", topic_name, m->partition,
                    (long long)m->offset, which, avro_strerror());
            rc = 1;
        }
        avro_reader_free(reader);
        rd_kafka_message_destroy(m);
    }
    fflush(stdout);
    free(eof);
    pr_buf_free(&json);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    pr_config_free(cfg);
    return rc;
}
