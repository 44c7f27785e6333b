/*
 * pr_test_kafka - what the integration tests need of Kafka that parcelrisk
 * itself does not offer: topics with their own configuration, deleting a
 * topic, producing a message of arbitrary key and value sizes, and reading
 * every record's Kafka timestamp. A test tool, not part of the product.
 *
 *   pr_test_kafka create  BROKERS TOPIC PARTITIONS [key=value]...
 *   pr_test_kafka delete  BROKERS TOPIC
 *   pr_test_kafka partitions BROKERS TOPIC TOTAL     (CreatePartitions: grow to TOTAL)
 *   pr_test_kafka alter   BROKERS TOPIC key=value...   (AlterConfigs: the rest back to defaults)
 *   pr_test_kafka produce BROKERS TOPIC KEY_BYTES VALUE_BYTES [TIMESTAMP_MS]
 *   pr_test_kafka records BROKERS TOPIC      one JSON line per record:
 *       {"partition": P, "offset": O, "timestamp": MS, "key_len": K, "value_len": V}
 *
 * Exit status 0 on success, 1 on a Kafka error (printed), 2 on bad usage.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_kafka_t *pr_client(rd_kafka_type_t type, const char *brokers, const char *group) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        (group &&
         (rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err)) !=
              RD_KAFKA_CONF_OK))) {
        fprintf(stderr, "pr_test_kafka: %s\n", err);
        exit(2);
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set(conf, "message.max.bytes", "10000000", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "pr_test_kafka: %s\n", err);
        exit(1);
    }
    return rk;
}

static int pr_admin_result(rd_kafka_queue_t *queue, int is_create) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 60000);
    if (!ev) {
        fprintf(stderr, "pr_test_kafka: no answer\n");
        return 1;
    }
    int rc = 0;
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "pr_test_kafka: %s\n", rd_kafka_event_error_string(ev));
        rc = 1;
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            is_create
                ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
                : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            if (rd_kafka_topic_result_error(res[i])) {
                fprintf(stderr, "pr_test_kafka: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                        rd_kafka_topic_result_error_string(res[i]));
                rc = 1;
            }
        }
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

static int pr_create(const char *brokers, const char *topic, int partitions, int argc,
                     char **argv) {
    char err[512];
    rd_kafka_t *rk = pr_client(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    if (!nt) {
        fprintf(stderr, "pr_test_kafka: %s\n", err);
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) return 2;
        *eq = '\0';
        rd_kafka_NewTopic_set_config(nt, argv[i], eq + 1);
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, queue);
    int rc = pr_admin_result(queue, 1);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return rc;
}

static int pr_alter(const char *brokers, const char *topic, int argc, char **argv) {
    rd_kafka_t *rk = pr_client(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) return 2;
        *eq = '\0';
        rd_kafka_ConfigResource_set_config(res, argv[i], eq + 1);
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AlterConfigs(rk, &res, 1, NULL, queue);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 60000);
    int rc = 0;
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "pr_test_kafka: alter: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "no answer");
        rc = 1;
    } else {
        size_t n;
        const rd_kafka_ConfigResource_t **out =
            rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_ConfigResource_error(out[i])) {
                fprintf(stderr, "pr_test_kafka: alter: %s\n",
                        rd_kafka_ConfigResource_error_string(out[i]));
                rc = 1;
            }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return rc;
}

static int pr_partitions(const char *brokers, const char *topic, int total) {
    char err[512];
    rd_kafka_t *rk = pr_client(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_NewPartitions_t *np =
        rd_kafka_NewPartitions_new(topic, (size_t)total, err, sizeof(err));
    if (!np) {
        fprintf(stderr, "pr_test_kafka: %s\n", err);
        return 2;
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_CreatePartitions(rk, &np, 1, NULL, queue);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 60000);
    int rc = 0;
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "pr_test_kafka: partitions: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "no answer");
        rc = 1;
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_topic_result_error(res[i])) {
                fprintf(stderr, "pr_test_kafka: partitions: %s\n",
                        rd_kafka_topic_result_error_string(res[i]));
                rc = 1;
            }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return rc;
}

static int pr_delete(const char *brokers, const char *topic) {
    rd_kafka_t *rk = pr_client(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, queue);
    int rc = pr_admin_result(queue, 0);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return rc;
}

static int pr_produce(const char *brokers, const char *topic, size_t key_len, size_t value_len,
                      long long timestamp) {
    rd_kafka_t *rk = pr_client(RD_KAFKA_PRODUCER, brokers, NULL);
    char *key = malloc(key_len + 1), *value = malloc(value_len + 1);
    memset(key, 'k', key_len);
    for (size_t i = 0; i < value_len; i++) value[i] = (char)(0x80 | (i % 0x7f)); /* not Avro */
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(timestamp), RD_KAFKA_V_END);
    int rc = 0;
    if (err) {
        fprintf(stderr, "pr_test_kafka: produce: %s\n", rd_kafka_err2str(err));
        rc = 1;
    } else if (rd_kafka_flush(rk, 60000)) {
        fprintf(stderr, "pr_test_kafka: flush timed out\n");
        rc = 1;
    }
    free(key);
    free(value);
    rd_kafka_destroy(rk);
    return rc;
}

static int pr_records(const char *brokers, const char *topic) {
    char group[64];
    snprintf(group, sizeof(group), "pr-test-records-%d", (int)rand());
    rd_kafka_t *rk = pr_client(RD_KAFKA_CONSUMER, brokers, group);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "pr_test_kafka: no metadata for %s\n", topic);
        return 1;
    }
    int partitions = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    int eof = 0, idle = 0;
    while (eof < partitions && idle < 100) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err) {
            fprintf(stderr, "pr_test_kafka: %s\n", rd_kafka_message_errstr(m));
        } else {
            printf("{\"partition\": %d, \"offset\": %lld, \"timestamp\": %lld, \"key_len\": %zu, "
                   "\"value_len\": %zu}\n",
                   m->partition, (long long)m->offset,
                   (long long)rd_kafka_message_timestamp(m, NULL), m->key_len, m->len);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "create") == 0)
        return pr_create(argv[2], argv[3], atoi(argv[4]), argc - 5, argv + 5);
    if (argc == 4 && strcmp(argv[1], "delete") == 0) return pr_delete(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "partitions") == 0)
        return pr_partitions(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 5 && strcmp(argv[1], "alter") == 0)
        return pr_alter(argv[2], argv[3], argc - 4, argv + 4);
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "produce") == 0)
        return pr_produce(argv[2], argv[3], strtoul(argv[4], NULL, 10), strtoul(argv[5], NULL, 10),
                          argc == 7 ? strtoll(argv[6], NULL, 10) : 0);
    if (argc == 4 && strcmp(argv[1], "records") == 0) return pr_records(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of tests/pr_test_kafka.c\n");
    return 2;
}
