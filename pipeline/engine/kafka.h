/*
 * kafka.h - librdkafka client set-up shared by every subcommand: the
 * defaults parcelrisk relies on plus the kafka.* passthrough of the config.
 */
#ifndef PR_KAFKA_H
#define PR_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"
#include "record-t.h"

enum pr_kafka_side { PR_KAFKA_CONSUMER, PR_KAFKA_PRODUCER };

/* A conf with parcelrisk's defaults for the side, then every kafka.* key of
 * cfg applied on top. Returns NULL after printing "file:line: key ..." for a
 * property librdkafka refuses (the caller exits 2). */
rd_kafka_conf_t *pr_kafka_conf_new(const struct pr_config *cfg, enum pr_kafka_side side);

/* Creates the topics of cfg: declarations with
 * topics.declarations_partitions, the outputs with topics.output_partitions,
 * and the internal repartition and (compacted) changelog topics with
 * topics.repartition_partitions (0: topics.declarations_partitions); topics
 * that exist already are left as they are. */
int pr_kafka_create_topics(const struct pr_config *cfg, int timeout_ms);

/* A topic to create: name, partitions, and whether it is compacted
 * (cleanup.policy=compact: the keyed state's changelog). */
struct pr_topic_spec {
    const char *name;
    int partitions;
    bool compact;
};

/* Creates the topics that do not exist (one existing is fine) and waits
 * until all are stably visible with every partition led. PR_OK or PR_ERR
 * (logged). */
int pr_kafka_create(rd_kafka_t *rk, const struct pr_topic_spec *specs, int count, int timeout_ms);

/* The metadata of one topic, as the broker reports it now. Returns 0 and
 * sets *md (free it with rd_kafka_metadata_destroy) or the error of the
 * request or of the topic, with *md NULL. */
rd_kafka_resp_err_t pr_kafka_topic_metadata(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                            const struct rd_kafka_metadata **md);

/* A delivery error that belongs to the one record and that retrying cannot
 * fix (too large, a timestamp out of the broker's window, an invalid
 * record, a policy refusal): the record is dead-lettered as
 * OUTPUT_REJECTED and the pipeline goes on. */
bool pr_kafka_err_refuses_record(rd_kafka_resp_err_t err);

/* The output topic or partition does not exist: not the record's fault;
 * the engine stops (fail closed). */
bool pr_kafka_err_topic_missing(rd_kafka_resp_err_t err);

/* max.message.bytes of each topic (the broker's effective value), by
 * DescribeConfigs; -1 for a topic whose value could not be read. Returns
 * PR_ERR (logged) when any could not. */
int pr_kafka_topic_max_bytes(rd_kafka_t *rk, const char *const *topics, size_t count,
                             int64_t *max_bytes, int timeout_ms);

/* librdkafka's syslog level as ours: 0-3 error, 4 warn, 5-6 info, 7 debug. */
enum pr_log_level pr_kafka_log_level(int syslog_level);
/* The log_cb of every client (set by pr_kafka_conf_new): the line goes
 * through pr_log_emit with source "librdkafka" as "FAC [client]: message",
 * dropped when its level is above log.level. Called from librdkafka's
 * threads. */
void pr_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Logs client errors once per distinct message per 10 s (no log storms
 * while the broker is down). */
void pr_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* Claims the next record of batch for a consumed message: the payload and
 * key borrowed from m (which must outlive the batch), its partition and
 * offset. Inline: once per message in run and in whatif. */
static inline struct pr_record *pr_kafka_batch_push(struct pr_batch *batch,
                                                    const rd_kafka_message_t *m) {
    struct pr_record *rec = pr_batch_push(batch);
    rec->payload = m->payload;
    rec->payload_len = m->len;
    rec->key = m->key;
    rec->key_len = m->key_len;
    rec->partition = m->partition;
    rec->offset = m->offset;
    return rec;
}

#endif
