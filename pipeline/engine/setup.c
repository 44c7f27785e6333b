/*
 * setup.c - the engine's set-up: the consumer and producer, the output and
 * internal topics (the internal ones made here when missing), the output
 * size limits, the chains of both stages, the schema registry.
 */
#include "engine-int.h"

/* ------------------------------------------------------------------ setup */

/* Waits until every output topic exists: a missing one is reported once
 * per 10 s (not once per record), and nothing is consumed meanwhile.
 * Returns false when a stop was asked for while waiting. */
static bool pr_engine_wait_output_topics(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    const char *names[3] = {cfg->topic_decisions, cfg->topic_alerts, cfg->topic_dlq};
    int64_t last_log = 0;
    for (;;) {
        const char *missing = NULL;
        rd_kafka_resp_err_t why = RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int i = 0; i < 3 && !missing; i++) {
            const struct rd_kafka_metadata *md;
            why = pr_kafka_topic_metadata(engine->consumer, names[i], 5000, &md);
            if (why)
                missing = names[i];
            else
                rd_kafka_metadata_destroy(md);
        }
        if (!missing) return true;
        int64_t now = pr_monotonic_us();
        if (!last_log || now - last_log >= 10000000) {
            last_log = now;
            pr_error("output topic %s is not available (%s); waiting for it before consuming "
                     "(create it with `parcelrisk topics create`)",
                     missing, rd_kafka_err2str(why));
        }
        for (int i = 0; i < 10; i++) {
            if (*engine->options->stop) return false;
            pr_engine_tick(engine);
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Creates the producer from engine->producer_conf (kept for a restart),
 * its transactions when exactly-once, and the output topic handles. */
static enum pr_engine_result pr_engine_producer_start(struct pr_engine *engine) {
    char err[512];
    engine->producer =
        rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_dup(engine->producer_conf), err, sizeof(err));
    if (!engine->producer) {
        pr_error("cannot create the Kafka producer: %s", err);
        return PR_ENGINE_REFUSED;
    }
    if (engine->eos) {
        /* Fences an earlier instance with the same transactional.id and
         * aborts what it left open. Retried while Kafka is unreachable. */
        for (;;) {
            rd_kafka_error_t *error = rd_kafka_init_transactions(engine->producer, 30000);
            if (!error) break;
            bool retriable = rd_kafka_error_is_retriable(error);
            pr_warn("init_transactions: %s%s", rd_kafka_error_string(error),
                    retriable ? "; retrying" : "");
            rd_kafka_error_destroy(error);
            if (!retriable || *engine->options->stop) return PR_ENGINE_FAILED;
            pr_engine_tick(engine);
        }
    }
    const struct pr_config *cfg = engine->cfg;
    engine->topic_decisions = rd_kafka_topic_new(engine->producer, cfg->topic_decisions, NULL);
    engine->topic_alerts = rd_kafka_topic_new(engine->producer, cfg->topic_alerts, NULL);
    engine->topic_dlq = rd_kafka_topic_new(engine->producer, cfg->topic_dlq, NULL);
    if (engine->two_stages) {
        engine->topic_repartition =
            rd_kafka_topic_new(engine->producer, engine->repartition_topic, NULL);
        engine->topic_changelog =
            rd_kafka_topic_new(engine->producer, engine->changelog_topic, NULL);
    }
    return PR_ENGINE_DONE;
}

/* Returns 0 when ready, -1 when stopped while waiting for the output
 * topics, else the process exit status. */
/* With a schema registry: registers (or finds) the Decision schema under
 * the subjects of the decisions and alerts topics and the DeadLetter schema
 * under the DLQ topic's, for the framing of every output. A registry that
 * does not answer is waited for (one line per 10 s), like a missing output
 * topic; one that refuses a schema (incompatible with what the subject
 * holds) is a configuration fault: exit 2. -1: stopped while waiting. */
static enum pr_engine_result pr_engine_register_schemas(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    struct pr_schema_registry *reg = pr_schema_registry_new(cfg);
    if (!reg) return *cfg->schema_registry_url ? PR_ENGINE_REFUSED : PR_ENGINE_DONE;
    const struct {
        const char *topic, *schema, *record;
        uint32_t *id;
    } outputs[3] = {
        {cfg->topic_decisions, pr_schema_decision, "parcelrisk.Decision",
         &engine->frame_ids.decision},
        {cfg->topic_alerts, pr_schema_decision, "parcelrisk.Decision", &engine->frame_ids.alert},
        {cfg->topic_dlq, pr_schema_deadletter, "parcelrisk.DeadLetter",
         &engine->frame_ids.deadletter},
    };
    int64_t last_log = 0;
    enum pr_engine_result rc = PR_ENGINE_DONE;
    for (int i = 0; i < 3 && rc == PR_ENGINE_DONE;) {
        char subject[512], why[512];
        pr_schema_registry_subject(cfg->schema_registry_subject_strategy, outputs[i].topic,
                                   outputs[i].record, subject, sizeof(subject));
        enum pr_reg_result res = pr_schema_registry_register(reg, subject, outputs[i].schema,
                                                             outputs[i].id, why, sizeof(why));
        if (res == PR_REG_OK) {
            pr_info("schema registry: %s records on %s are framed with schema id %u (subject %s)",
                    outputs[i].record, outputs[i].topic, *outputs[i].id, subject);
            i++;
            continue;
        }
        if (res == PR_REG_REFUSED) {
            pr_error("schema registry refuses our %s schema under subject %s: %s",
                     outputs[i].record, subject, why);
            rc = PR_ENGINE_REFUSED;
            break;
        }
        int64_t now = pr_monotonic_us();
        if (!last_log || now - last_log >= 10000000) {
            last_log = now;
            pr_error("schema registry unavailable (%s); waiting for it before consuming", why);
        }
        for (int k = 0; k < 10 && rc == PR_ENGINE_DONE; k++) {
            if (*engine->options->stop) rc = PR_ENGINE_STOPPED_WAITING;
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    pr_schema_registry_free(reg);
    if (rc == PR_ENGINE_DONE) engine->framed = true;
    return rc;
}

/* The partitions of topic, or -1 when it does not exist (or cannot be
 * read). */
static int pr_engine_partition_count(struct pr_engine *engine, const char *topic) {
    const struct rd_kafka_metadata *md;
    if (pr_kafka_topic_metadata(engine->consumer, topic, 5000, &md)) return -1;
    int count = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return count;
}

/* Two stages: the repartition and changelog topics exist, made here when
 * missing (as Kafka Streams makes its internal topics), with one partition
 * count, which is the unit of the keyed state. Refused (exit 2) when the
 * counts differ: state restored from changelog partition P must be the
 * state of repartition partition P. */
static enum pr_engine_result pr_engine_internal_topics(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    const char *names[2] = {engine->repartition_topic, engine->changelog_topic};
    int counts[2];
    for (int i = 0; i < 2; i++) counts[i] = pr_engine_partition_count(engine, names[i]);
    if (counts[0] < 0 || counts[1] < 0) {
        int want = counts[0] >= 0 ? counts[0] : counts[1];
        if (want < 0) want = cfg->repartition_partitions;
        if (want <= 0) want = pr_engine_partition_count(engine, cfg->topic_declarations);
        if (want <= 0) want = cfg->declarations_partitions;
        struct pr_topic_spec specs[2] = {{names[0], want, false}, {names[1], want, true}};
        pr_info("keyed state: making the internal topics %s and %s (compacted), %d partitions",
                names[0], names[1], want);
        if (pr_kafka_create(engine->consumer, specs, 2, 30000) != PR_OK) return PR_ENGINE_FAILED;
        for (int i = 0; i < 2; i++) counts[i] = pr_engine_partition_count(engine, names[i]);
    }
    if (counts[0] != counts[1]) {
        pr_error("the repartition topic %s has %d partitions and the changelog topic %s has %d: "
                 "they must be equal (the state of repartition partition P is restored from "
                 "changelog partition P); recreate the changelog with %d partitions",
                 names[0], counts[0], names[1], counts[1], counts[0]);
        return PR_ENGINE_REFUSED;
    }
    if (cfg->repartition_partitions > 0 && counts[0] != cfg->repartition_partitions) {
        pr_error("the internal topics %s and %s have %d partitions, but "
                 "topics.repartition_partitions says %d: set it to %d (or 0), or recreate both "
                 "topics (which drops the keyed state)",
                 names[0], names[1], counts[0], cfg->repartition_partitions, counts[0]);
        return PR_ENGINE_REFUSED;
    }
    engine->repartition_partitions = counts[0];
    return PR_ENGINE_DONE;
}

/* The chains of both stages, and the keyed state of stage 2. */
static enum pr_engine_result pr_engine_chains(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    struct pr_operator_env env1 = {.cfg = cfg,
                                   .repartition_partitions = engine->repartition_partitions};
    struct pr_operator_env env2 = {.cfg = cfg};
    if (engine->two_stages) {
        engine->keyed =
            pr_keyed_new(cfg, engine->changelog_topic, engine->repartition_partitions, engine->eos);
        if (!engine->keyed) return PR_ENGINE_REFUSED;
        env2.states = pr_keyed_router(engine->keyed);
    }
    if (pr_chain_init_stages(engine->chains, cfg, &env1, &env2) != PR_OK) return PR_ENGINE_REFUSED;
    return PR_ENGINE_DONE;
}

enum pr_engine_result pr_engine_setup(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    char err[512];
    rd_kafka_conf_t *cconf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!cconf) return PR_ENGINE_REFUSED;
    rd_kafka_conf_set_opaque(cconf, engine);
    rd_kafka_conf_set_rebalance_cb(cconf, pr_engine_rebalance_cb);
    if (engine->metrics) {
        /* Lag and broker state for the HTTP endpoint, every 5 s unless
         * kafka.statistics.interval.ms says otherwise: librdkafka's JSON
         * for one consumer is large, and making and parsing it costs about
         * 10 million instructions (3-4 ms of CPU) each time (callgrind,
         * benchmarks/README.md), too much to do every second. */
        char value[32];
        size_t size = sizeof(value);
        if (rd_kafka_conf_get(cconf, "statistics.interval.ms", value, &size) == RD_KAFKA_CONF_OK &&
            strcmp(value, "0") == 0 &&
            rd_kafka_conf_set(cconf, "statistics.interval.ms", "5000", err, sizeof(err)) !=
                RD_KAFKA_CONF_OK) {
            pr_error("statistics.interval.ms: %s", err);
            rd_kafka_conf_destroy(cconf);
            return PR_ENGINE_REFUSED;
        }
        rd_kafka_conf_set_stats_cb(cconf, pr_engine_stats_cb);
        size = sizeof(value);
        engine->read_committed =
            rd_kafka_conf_get(cconf, "isolation.level", value, &size) != RD_KAFKA_CONF_OK ||
            strcmp(value, "read_uncommitted") != 0;
    }
    engine->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    if (!engine->consumer) {
        pr_error("cannot create the Kafka consumer: %s", err);
        return PR_ENGINE_REFUSED;
    }
    rd_kafka_poll_set_consumer(engine->consumer);
    if (!pr_engine_wait_output_topics(engine)) return PR_ENGINE_STOPPED_WAITING;
    enum pr_engine_result rc;
    if (engine->two_stages && (rc = pr_engine_internal_topics(engine)) != PR_ENGINE_DONE) return rc;
    if ((rc = pr_engine_chains(engine)) != PR_ENGINE_DONE) return rc;

    rc = pr_engine_register_schemas(engine);
    if (rc) return rc;

    rd_kafka_conf_t *pconf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!pconf) return PR_ENGINE_REFUSED;
    rc = pr_engine_output_limits(engine, pconf);
    if (rc) {
        rd_kafka_conf_destroy(pconf);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(pconf, pr_engine_dr_cb);
    if (engine->eos) {
        char txn_id[256], host[128] = "host", timeout[32];
        if (cfg->instance_id[0]) {
            snprintf(txn_id, sizeof(txn_id), "%s-%s", cfg->group_id, cfg->instance_id);
        } else {
            gethostname(host, sizeof(host) - 1);
            snprintf(txn_id, sizeof(txn_id), "%s-%s-%d", cfg->group_id, host, (int)getpid());
        }
        snprintf(timeout, sizeof(timeout), "%d", cfg->transaction_timeout_ms);
        if (rd_kafka_conf_set(pconf, "transactional.id", txn_id, err, sizeof(err)) !=
                RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(pconf, "transaction.timeout.ms", timeout, err, sizeof(err)) !=
                RD_KAFKA_CONF_OK ||
            /* A transaction needs a bounded delivery timeout. */
            rd_kafka_conf_set(pconf, "message.timeout.ms", timeout, err, sizeof(err)) !=
                RD_KAFKA_CONF_OK) {
            pr_error("exactly_once: %s", err);
            rd_kafka_conf_destroy(pconf);
            return PR_ENGINE_REFUSED;
        }
        pr_info("exactly_once: transactional.id %s", txn_id);
    }
    engine->producer_conf = pconf;
    rc = pr_engine_producer_start(engine);
    if (rc) return rc;

    /* One consumer for both stages (as a Kafka Streams thread reads every
     * source topic of its sub-topologies): one group, one assignment, one
     * transaction for both inputs' offsets. */
    rd_kafka_topic_partition_list_t *subscription = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(subscription, cfg->topic_declarations, RD_KAFKA_PARTITION_UA);
    if (engine->two_stages)
        rd_kafka_topic_partition_list_add(subscription, engine->repartition_topic,
                                          RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(engine->consumer, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    if (e) {
        pr_error("cannot subscribe to %s: %s", cfg->topic_declarations, rd_kafka_err2str(e));
        return PR_ENGINE_FAILED;
    }

    engine->slot_count = (size_t)cfg->max_inflight_batches;
    engine->slots = pr_calloc(engine->slot_count, sizeof(*engine->slots));
    for (size_t i = 0; i < engine->slot_count; i++) {
        struct pr_slot *slot = &engine->slots[i];
        slot->engine = engine;
        pr_batch_init(&slot->batch, (size_t)cfg->batch_size);
        slot->topic = cfg->topic_declarations;
        slot->batch.source_topic = cfg->topic_declarations;
        slot->messages = pr_calloc((size_t)cfg->batch_size, sizeof(*slot->messages));
    }
    engine->deferred = pr_calloc((size_t)cfg->batch_size, sizeof(*engine->deferred));
    return PR_ENGINE_DONE;
}
