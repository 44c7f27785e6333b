#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int pr_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                       const char *origin, int line) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        /* librdkafka may quote the value in its message: never a secret's. */
        char shown[512];
        const char *why =
            pr_config_key_is_secret(key) ? pr_redact(err, value, shown, sizeof(shown)) : err;
        if (line > 0)
            fprintf(stderr, "parcelrisk: config error: %s:%d: key 'kafka.%s': %s\n", origin, line,
                    key, why);
        else
            fprintf(stderr, "parcelrisk: config error: %s: key 'kafka.%s': %s\n", origin, key, why);
        return PR_ERR;
    }
    return PR_OK;
}

enum pr_log_level pr_kafka_log_level(int syslog_level) {
    if (syslog_level <= 3) return PR_LOG_ERROR;
    if (syslog_level == 4) return PR_LOG_WARN;
    if (syslog_level <= 6) return PR_LOG_INFO;
    return PR_LOG_DEBUG;
}

void pr_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    enum pr_log_level ours = pr_kafka_log_level(level);
    if (ours > pr_log_get_level()) return;
    char line[2048];
    snprintf(line, sizeof(line), "%s [%s]: %s", fac ? fac : "", rk ? rd_kafka_name(rk) : "-",
             buf ? buf : "");
    pr_log_emit(ours, "librdkafka", line);
}

void pr_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)opaque;
    static __thread char last[256];
    static __thread int64_t last_ms;
    int64_t now = pr_now_ms();
    if (strncmp(last, reason, sizeof(last) - 1) == 0 && now - last_ms < 10000) return;
    snprintf(last, sizeof(last), "%s", reason);
    last_ms = now;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT)
        pr_warn("Kafka unreachable (%s): %s; librdkafka keeps retrying", rd_kafka_name(rk), reason);
    else
        pr_warn("Kafka client %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

rd_kafka_conf_t *pr_kafka_conf_new(const struct pr_config *cfg, enum pr_kafka_side side) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Defaults that the delivery guarantee depends on come first; the user's
     * kafka.* keys may override tuning, not these semantics (checked after). */
    static const char *const common[][2] = {
        {"bootstrap.servers", "127.0.0.1:9092"}, {"client.id", "parcelrisk"},
        {"socket.keepalive.enable", "true"},     {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", "5000"},
    };
    static const char *const consumer[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"isolation.level", "read_committed"},
        {"fetch.wait.max.ms", "100"},
        /* Prefetch up to 64 MB (librdkafka's default). The one consumer
         * carries both stages' input (declarations and the repartition
         * topic): with 16 MB its queue ran empty every other second and the
         * engine waited for input half the time; 64 MB gave 66-69k decl/s
         * against 41-45k, for about 60 MB more resident memory
         * (benchmarks/README.md, "Issue 12: what limits each missed
         * target"). */
        {"queued.max.messages.kbytes", "65536"},
        /* Partitions added to the input topic are seen at the next metadata
         * refresh (librdkafka: every 300 s); 10 s makes a new partition
         * assigned within about 15 s, for one small request per 10 s. */
        {"topic.metadata.refresh.interval.ms", "10000"},
    };
    static const char *const producer[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"compression.codec", "lz4"},
        {"partitioner", "murmur2_random"}, /* same partition for a key as Java clients */
        {"message.timeout.ms", "0"},       /* never give up on a decision: retry until delivered */
        {"queue.buffering.max.messages", "500000"},
    };
    for (size_t i = 0; i < PR_ARRAY_LEN(common); i++)
        pr_conf_set(conf, common[i][0], common[i][1], "defaults", 0);
    /* librdkafka's own lines go through pr_log (same level, same format);
     * its log_level follows log.level so that it does not even produce what
     * would be dropped (error 3, warn 4, info 6, debug 7). A kafka.log_level
     * key may still lower it. */
    static const char *const syslog_levels[] = {"3", "4", "6", "7"};
    pr_conf_set(conf, "log_level", syslog_levels[pr_log_get_level()], "defaults", 0);
    rd_kafka_conf_set_log_cb(conf, pr_kafka_log_cb);
    if (side == PR_KAFKA_CONSUMER) {
        for (size_t i = 0; i < PR_ARRAY_LEN(consumer); i++)
            pr_conf_set(conf, consumer[i][0], consumer[i][1], "defaults", 0);
        pr_conf_set(conf, "group.id", cfg->group_id, cfg->path, 0);
    } else {
        for (size_t i = 0; i < PR_ARRAY_LEN(producer); i++)
            pr_conf_set(conf, producer[i][0], producer[i][1], "defaults", 0);
    }
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        const char *key = cfg->kafka[i].key;
        if (strncmp(key, "consumer.", 9) == 0) {
            if (side != PR_KAFKA_CONSUMER) continue;
            key += 9;
        } else if (strncmp(key, "producer.", 9) == 0) {
            if (side != PR_KAFKA_PRODUCER) continue;
            key += 9;
        }
        if (pr_conf_set(conf, key, cfg->kafka[i].value, cfg->kafka[i].origin, cfg->kafka[i].line) !=
            PR_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (side == PR_KAFKA_CONSUMER) {
        /* Offsets are committed by the engine only after delivery. */
        pr_conf_set(conf, "enable.auto.commit", "false", "parcelrisk", 0);
        pr_conf_set(conf, "enable.auto.offset.store", "false", "parcelrisk", 0);
    } else {
        pr_conf_set(conf, "enable.idempotence", "true", "parcelrisk", 0);
    }
    rd_kafka_conf_set_error_cb(conf, pr_kafka_error_cb);
    return conf;
}

rd_kafka_resp_err_t pr_kafka_topic_metadata(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                            const struct rd_kafka_metadata **md) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (!err && ((*md)->topic_cnt != 1 || (*md)->topics[0].err))
        err = (*md)->topic_cnt != 1 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC : (*md)->topics[0].err;
    if (err && *md) {
        rd_kafka_metadata_destroy(*md);
        *md = NULL;
    }
    return err;
}

/* Waits until the broker's metadata shows every topic with all its
 * partitions led, three times in a row 200 ms apart. A topic that has just
 * been created can be reported missing by a metadata response or two; an
 * idempotent producer that sees its partitions vanish and come back starts
 * their sequence numbers again, and the broker then takes the next messages
 * for duplicates: acknowledged, never written (seen here: 3 declarations of
 * a freshly created topic lost by `parcelrisk gen`, librdkafka 2.0.2). So
 * topic creation ends only when the topics are stably visible. */
static int pr_kafka_wait_topics(rd_kafka_t *rk, const char *const *names, int count,
                                int timeout_ms) {
    int64_t deadline = pr_monotonic_us() + (int64_t)timeout_ms * 1000;
    int stable = 0;
    while (stable < 3) {
        bool ready = true;
        for (int i = 0; i < count && ready; i++) {
            const struct rd_kafka_metadata *md;
            if (pr_kafka_topic_metadata(rk, names[i], 5000, &md) ||
                md->topics[0].partition_cnt == 0) {
                ready = false;
            } else {
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                    if (md->topics[0].partitions[p].err || md->topics[0].partitions[p].leader < 0)
                        ready = false;
            }
            if (md) rd_kafka_metadata_destroy(md);
        }
        stable = ready ? stable + 1 : 0;
        if (stable < 3) {
            if (pr_monotonic_us() > deadline) {
                pr_error("creating topics: not all partitions have a leader after %d ms",
                         timeout_ms);
                return PR_ERR;
            }
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return PR_OK;
}

int pr_kafka_create(rd_kafka_t *rk, const struct pr_topic_spec *specs, int count, int timeout_ms) {
    char err[512];
    rd_kafka_NewTopic_t **topics = pr_calloc((size_t)count, sizeof(*topics));
    const char **names = pr_calloc((size_t)count, sizeof(*names));
    for (int i = 0; i < count; i++) {
        names[i] = specs[i].name;
        topics[i] = rd_kafka_NewTopic_new(specs[i].name, specs[i].partitions, 1, err, sizeof(err));
        if (specs[i].compact) rd_kafka_NewTopic_set_config(topics[i], "cleanup.policy", "compact");
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, err, sizeof(err));
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, err, sizeof(err));
    rd_kafka_CreateTopics(rk, topics, (size_t)count, options, queue);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, timeout_ms + 5000);
    int rc = PR_OK;
    if (!ev) {
        pr_error("creating topics: no answer from Kafka within %d ms", timeout_ms + 5000);
        rc = PR_ERR;
    } else if (rd_kafka_event_error(ev)) {
        pr_error("creating topics: %s", rd_kafka_event_error_string(ev));
        rc = PR_ERR;
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n;
        const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(res, &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
            const char *name = rd_kafka_topic_result_name(results[i]);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                pr_info("created topic %s", name);
            else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                pr_info("topic %s exists", name);
            else {
                pr_error("creating topic %s: %s", name,
                         rd_kafka_topic_result_error_string(results[i]));
                rc = PR_ERR;
            }
        }
    }
    if (rc == PR_OK) rc = pr_kafka_wait_topics(rk, names, count, timeout_ms);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    for (int i = 0; i < count; i++) rd_kafka_NewTopic_destroy(topics[i]);
    free(topics);
    free(names);
    return rc;
}

int pr_kafka_create_topics(const struct pr_config *cfg, int timeout_ms) {
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!conf) return PR_ERR;
    char err[512], repartition[512], changelog[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("cannot create Kafka client: %s", err);
        return PR_ERR;
    }
    int internal = cfg->repartition_partitions > 0 ? cfg->repartition_partitions
                                                   : cfg->declarations_partitions;
    const struct pr_topic_spec specs[6] = {
        {cfg->topic_declarations, cfg->declarations_partitions, false},
        {cfg->topic_decisions, cfg->output_partitions, false},
        {cfg->topic_alerts, cfg->output_partitions, false},
        {cfg->topic_dlq, cfg->output_partitions, false},
        {pr_config_internal_topic(cfg, PR_TOPIC_REPARTITION, repartition, sizeof(repartition)),
         internal, false},
        {pr_config_internal_topic(cfg, PR_TOPIC_CHANGELOG, changelog, sizeof(changelog)), internal,
         true},
    };
    int rc = pr_kafka_create(rk, specs, 6, timeout_ms);
    rd_kafka_destroy(rk);
    return rc;
}

rd_kafka_message_t *pr_kafka_fetch_one(rd_kafka_t *consumer, const char *topic, int32_t partition,
                                       int64_t offset, int timeout_ms) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = offset;
    rd_kafka_resp_err_t err = rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) return NULL;
    rd_kafka_message_t *found = NULL;
    int64_t deadline = pr_monotonic_us() + (int64_t)timeout_ms * 1000;
    while (!found && pr_monotonic_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (!m) continue;
        if (!m->err && m->partition == partition && m->offset == offset &&
            strcmp(rd_kafka_topic_name(m->rkt), topic) == 0) {
            found = m;
            break;
        }
        bool past = !m->err && m->partition == partition && m->offset > offset;
        bool gone = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                    m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;
        rd_kafka_message_destroy(m);
        if (past || gone) break; /* deleted by retention or compaction */
    }
    rd_kafka_assign(consumer, NULL);
    return found;
}

bool pr_kafka_err_refuses_record(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:    /* broker, or the client's message.max.bytes */
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:     /* log.message.timestamp.*.max.ms */
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE: /* segment.bytes */
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:        /* e.g. a compacted topic and no key */
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__BAD_MSG: return true;
    default: return false;
    }
}

bool pr_kafka_err_topic_missing(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

int pr_kafka_topic_max_bytes(rd_kafka_t *rk, const char *const *topics, size_t count,
                             int64_t *max_bytes, int timeout_ms) {
    char err[256];
    for (size_t i = 0; i < count; i++) max_bytes[i] = -1;
    rd_kafka_ConfigResource_t **res = pr_calloc(count, sizeof(*res));
    for (size_t i = 0; i < count; i++)
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i]);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, err, sizeof(err));
    rd_kafka_DescribeConfigs(rk, res, count, options, queue);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, timeout_ms + 2000);
    int rc = PR_OK;
    if (!ev || rd_kafka_event_error(ev)) {
        pr_warn("reading the output topics' max.message.bytes: %s",
                ev ? rd_kafka_event_error_string(ev) : "no answer");
        rc = PR_ERR;
    } else {
        const rd_kafka_DescribeConfigs_result_t *result = rd_kafka_event_DescribeConfigs_result(ev);
        size_t n;
        const rd_kafka_ConfigResource_t **described =
            rd_kafka_DescribeConfigs_result_resources(result, &n);
        for (size_t r = 0; r < n; r++) {
            const char *name = rd_kafka_ConfigResource_name(described[r]);
            if (rd_kafka_ConfigResource_error(described[r])) {
                pr_warn("reading the configuration of topic %s: %s", name,
                        rd_kafka_ConfigResource_error_string(described[r]));
                rc = PR_ERR;
                continue;
            }
            size_t entries;
            const rd_kafka_ConfigEntry_t **configs =
                rd_kafka_ConfigResource_configs(described[r], &entries);
            for (size_t e = 0; e < entries; e++) {
                if (strcmp(rd_kafka_ConfigEntry_name(configs[e]), "max.message.bytes") != 0)
                    continue;
                const char *value = rd_kafka_ConfigEntry_value(configs[e]);
                for (size_t i = 0; i < count; i++)
                    if (value && strcmp(topics[i], name) == 0)
                        max_bytes[i] = strtoll(value, NULL, 10);
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    for (size_t i = 0; i < count; i++) rd_kafka_ConfigResource_destroy(res[i]);
    free(res);
    return rc;
}
