/*
 * engine.c - the batch loop.
 *
 * Delivery (at-least-once):
 *
 *   A batch is up to batch.size messages taken from the consumer. The chain
 *   turns it into output records (decisions, alerts, dead letters) that live
 *   in the batch's arena; the engine produces them without copying, each
 *   tagged with its batch. The delivery report callback counts down the
 *   batch's outstanding messages. Batches sit in a FIFO ring of
 *   batch.max_inflight slots; only the oldest batch may commit, and only when
 *   every message it produced is acknowledged (acks=all, idempotent
 *   producer). So a committed offset never covers an output that is not
 *   durably written. A failed delivery (only a fatal producer error, since
 *   message.timeout.ms is infinite) stops the engine with exit status 1 and
 *   nothing after the failed batch is committed.
 *
 * Rebalance: on revoke the engine drops the messages it has polled but not
 *   yet processed from the revoked partitions (the new owner reads them again
 *   from the committed offset), waits for every in-flight batch to be
 *   acknowledged, commits synchronously, then lets the partitions go. No
 *   output is produced for a revoked partition after its final commit, so a
 *   rebalance loses nothing and duplicates nothing.
 *
 * Stop (SIGTERM/SIGINT): stop fetching, process what was polled, wait for
 *   acknowledgement, commit synchronously, close the consumer, exit 0. A
 *   clean stop therefore produces no duplicates on restart.
 *
 * Exactly-once (processing.guarantee: exactly_once): a transactional
 *   producer. A transaction covers the decisions, alerts and dead letters of
 *   one or more batches and their input offsets
 *   (rd_kafka_send_offsets_to_transaction with the consumer group metadata);
 *   it commits after processing.transaction_interval_ms or
 *   transaction_max_records, when every slot is in use, when the input goes
 *   idle, on revoke and on stop. An abortable error aborts it and rewinds the
 *   consumer to the committed offsets, so the batches are processed again in
 *   a new transaction; a fatal error (e.g. fenced by a newer instance with the
 *   same instance_id) stops with exit status 1. Readers with
 *   isolation.level=read_committed see each decision once.
 */
#include "engine.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../operators/operator.h"
#include "histogram.h"
#include "kafka.h"
#include "rules.h"

struct pr_engine;

/* One batch from poll to commit. */
struct pr_slot {
    struct pr_engine *engine;
    struct pr_batch batch;
    rd_kafka_message_t **messages; /* polled, destroyed after encode */
    size_t message_count;
    size_t outstanding; /* produced, not yet acknowledged */
    bool failed;
    /* Next offset to commit per partition of the input topic. */
    size_t offset_count;
    int32_t *partitions;
    int64_t *next_offsets;
};

struct pr_engine {
    const struct pr_config *cfg;
    const struct pr_engine_options *options;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *topic_decisions, *topic_alerts, *topic_dlq;
    struct pr_chain chain;
    struct pr_rules *rules;
    size_t slot_count;
    struct pr_slot *slots;
    size_t head;  /* oldest in-flight slot */
    size_t inflight;
    struct pr_slot *filling; /* slot being filled by poll, or NULL */
    bool fatal;
    bool assigned_once;
    int64_t last_message_us;
    struct pr_engine_totals totals;
    uint64_t produce_retries;
    uint64_t commits;
    int64_t first_message_us, last_commit_us;
    bool eos;          /* exactly_once */
    bool txn_open;
    int64_t txn_started_us;
    size_t txn_records;
    uint64_t txn_commits, txn_aborts;
    uint64_t txn_decisions, txn_alerts, txn_dead_letters; /* counted, not yet committed */
    /* event_time -> acknowledgement of the decision, ms. */
    struct pr_histogram latency;
};

/* ---------------------------------------------------------------- delivery */

static void pr_engine_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    (void)opaque;
    struct pr_slot *slot = msg->_private;
    if (!slot) return;
    if (msg->err) {
        pr_error("delivery to %s failed: %s", rd_kafka_topic_name(msg->rkt), rd_kafka_err2str(msg->err));
        slot->failed = true;
    } else if (msg->rkt == slot->engine->topic_decisions) {
        /* Decisions carry the declaration's event_time as their timestamp,
         * so this is the end-to-end latency up to the broker's ack. */
        rd_kafka_timestamp_type_t type;
        int64_t ts = rd_kafka_message_timestamp(msg, &type);
        int64_t now = pr_now_ms();
        if (ts > 0 && now >= ts) pr_histogram_record(&slot->engine->latency, (uint64_t)(now - ts));
    }
    slot->outstanding--;
}

static void pr_slot_track_offset(struct pr_slot *slot, int32_t partition, int64_t offset) {
    for (size_t i = 0; i < slot->offset_count; i++) {
        if (slot->partitions[i] == partition) {
            if (offset + 1 > slot->next_offsets[i]) slot->next_offsets[i] = offset + 1;
            return;
        }
    }
    slot->partitions = pr_realloc(slot->partitions, (slot->offset_count + 1) * sizeof(int32_t));
    slot->next_offsets = pr_realloc(slot->next_offsets, (slot->offset_count + 1) * sizeof(int64_t));
    slot->partitions[slot->offset_count] = partition;
    slot->next_offsets[slot->offset_count] = offset + 1;
    slot->offset_count++;
}

static void pr_engine_commit(struct pr_engine *engine, struct pr_slot *slot, bool sync) {
    if (slot->offset_count == 0) return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)slot->offset_count);
    for (size_t i = 0; i < slot->offset_count; i++)
        rd_kafka_topic_partition_list_add(list, engine->cfg->topic_declarations, slot->partitions[i])
            ->offset = slot->next_offsets[i];
    rd_kafka_resp_err_t err = rd_kafka_commit(engine->consumer, list, sync ? 0 : 1);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        pr_warn("offset commit failed: %s (the batch will be processed again after a restart)",
                rd_kafka_err2str(err));
    engine->commits++;
    rd_kafka_topic_partition_list_destroy(list);
}

static void pr_slot_release(struct pr_slot *slot) {
    pr_batch_reset(&slot->batch);
    slot->offset_count = 0;
    slot->failed = false;
}

/* Commits every leading batch whose outputs are all acknowledged. */
static void pr_engine_complete(struct pr_engine *engine, bool sync) {
    if (engine->eos) return; /* slots are released when their transaction commits */
    while (engine->inflight > 0) {
        struct pr_slot *slot = &engine->slots[engine->head];
        if (slot->outstanding > 0) break;
        if (slot->failed) {
            if (!engine->fatal)
                pr_error("a batch could not be delivered; stopping without committing it "
                         "(it is processed again on restart)");
            engine->fatal = true;
            return;
        }
        pr_engine_commit(engine, slot, sync);
        engine->last_commit_us = pr_monotonic_us();
        pr_slot_release(slot);
        engine->head = (engine->head + 1) % engine->slot_count;
        engine->inflight--;
    }
}

/* ------------------------------------------------------- transactions */

static bool pr_engine_txn_error(struct pr_engine *engine, rd_kafka_error_t *error, const char *what,
                                bool *abort_needed) {
    if (!error) return true;
    pr_warn("transaction %s: %s", what, rd_kafka_error_string(error));
    if (rd_kafka_error_is_fatal(error)) {
        pr_error("fatal transactional error (%s): stopping; a supervisor should restart", what);
        engine->fatal = true;
    } else if (rd_kafka_error_txn_requires_abort(error)) {
        *abort_needed = true;
    }
    rd_kafka_error_destroy(error);
    return false;
}

static void pr_engine_release_all(struct pr_engine *engine) {
    for (size_t i = 0; i < engine->inflight; i++)
        pr_slot_release(&engine->slots[(engine->head + i) % engine->slot_count]);
    /* The next slot stays where it was: this can run inside the rebalance
     * callback while the main loop is filling slot (head + inflight). */
    engine->head = (engine->head + engine->inflight) % engine->slot_count;
    engine->inflight = 0;
    engine->txn_records = 0;
    engine->txn_open = false;
}

/* After an abort: seek every assigned partition back to its committed
 * offset, so the aborted batches are consumed again. */
static void pr_engine_rewind(struct pr_engine *engine) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(engine->consumer, &parts) || !parts) return;
    if (parts->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_committed(engine->consumer, parts, 30000);
        if (err) pr_warn("rewind: reading committed offsets: %s", rd_kafka_err2str(err));
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset < 0) parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *error = rd_kafka_seek_partitions(engine->consumer, parts, 30000);
        if (error) {
            pr_error("rewind: seek failed: %s; stopping so that a restart resumes from the "
                     "committed offsets",
                     rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
            engine->fatal = true;
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

static void pr_engine_txn_abort(struct pr_engine *engine) {
    pr_warn("aborting the transaction of %zu declarations; they are processed again", engine->txn_records);
    rd_kafka_error_t *error = rd_kafka_abort_transaction(engine->producer, -1);
    if (error) {
        pr_error("abort failed: %s", rd_kafka_error_string(error));
        if (rd_kafka_error_is_fatal(error)) engine->fatal = true;
        rd_kafka_error_destroy(error);
    }
    engine->txn_aborts++;
    engine->totals.decisions -= engine->txn_decisions;
    engine->totals.alerts -= engine->txn_alerts;
    engine->totals.dead_letters -= engine->txn_dead_letters;
    pr_engine_release_all(engine);
    if (!engine->fatal) pr_engine_rewind(engine);
}

/* Commits the open transaction: the outputs of every in-flight batch and
 * their input offsets. */
static void pr_engine_txn_commit(struct pr_engine *engine) {
    if (!engine->txn_open || engine->fatal) return;
    bool abort_needed = false;
    for (size_t i = 0; i < engine->inflight; i++)
        if (engine->slots[(engine->head + i) % engine->slot_count].failed) abort_needed = true;
    if (!abort_needed) {
        rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
        for (size_t i = 0; i < engine->inflight; i++) {
            const struct pr_slot *slot = &engine->slots[(engine->head + i) % engine->slot_count];
            for (size_t k = 0; k < slot->offset_count; k++) {
                rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
                    offsets, engine->cfg->topic_declarations, slot->partitions[k]);
                if (!tp)
                    tp = rd_kafka_topic_partition_list_add(offsets, engine->cfg->topic_declarations,
                                                           slot->partitions[k]);
                if (slot->next_offsets[k] > tp->offset) tp->offset = slot->next_offsets[k];
            }
        }
        rd_kafka_consumer_group_metadata_t *meta = rd_kafka_consumer_group_metadata(engine->consumer);
        bool ok = pr_engine_txn_error(
            engine, rd_kafka_send_offsets_to_transaction(engine->producer, offsets, meta, -1),
            "send_offsets", &abort_needed);
        rd_kafka_consumer_group_metadata_destroy(meta);
        rd_kafka_topic_partition_list_destroy(offsets);
        if (ok) {
            for (int attempt = 0; attempt < 10 && !engine->fatal && !abort_needed; attempt++) {
                rd_kafka_error_t *error = rd_kafka_commit_transaction(engine->producer, -1);
                if (!error) {
                    engine->txn_commits++;
                    engine->commits++;
                    engine->last_commit_us = pr_monotonic_us();
                    pr_engine_release_all(engine);
                    engine->txn_decisions = engine->txn_alerts = engine->txn_dead_letters = 0;
                    return;
                }
                bool retriable = rd_kafka_error_is_retriable(error);
                pr_engine_txn_error(engine, error, "commit", &abort_needed);
                if (!retriable) break;
            }
        }
    }
    if (engine->fatal) return;
    pr_engine_txn_abort(engine);
    engine->txn_decisions = engine->txn_alerts = engine->txn_dead_letters = 0;
}

static void pr_engine_txn_begin(struct pr_engine *engine) {
    if (engine->txn_open) return;
    bool abort_needed = false;
    if (!pr_engine_txn_error(engine, rd_kafka_begin_transaction(engine->producer), "begin", &abort_needed))
        return;
    engine->txn_open = true;
    engine->txn_started_us = pr_monotonic_us();
    engine->txn_records = 0;
}

/* Waits until every in-flight batch is acknowledged, committing as they
 * complete. Bounded only by the broker: librdkafka retries until delivered. */
static void pr_engine_drain(struct pr_engine *engine, bool sync) {
    if (engine->eos) {
        pr_engine_txn_commit(engine);
        return;
    }
    int64_t last_log = pr_monotonic_us();
    while (engine->inflight > 0 && !engine->fatal) {
        rd_kafka_poll(engine->producer, 100);
        pr_engine_complete(engine, sync);
        if (pr_monotonic_us() - last_log > 5000000) {
            pr_warn("waiting for %zu batches to be acknowledged by Kafka", engine->inflight);
            last_log = pr_monotonic_us();
        }
    }
    if (rd_kafka_fatal_error(engine->producer, NULL, 0)) engine->fatal = true;
}

/* --------------------------------------------------------------- rebalance */

static void pr_engine_drop_revoked(struct pr_engine *engine,
                                   const rd_kafka_topic_partition_list_t *revoked) {
    struct pr_slot *slot = engine->filling;
    if (!slot) return;
    size_t kept = 0;
    for (size_t i = 0; i < slot->message_count; i++) {
        rd_kafka_message_t *m = slot->messages[i];
        bool gone = false;
        for (int k = 0; k < revoked->cnt; k++)
            if (revoked->elems[k].partition == m->partition &&
                strcmp(revoked->elems[k].topic, rd_kafka_topic_name(m->rkt)) == 0)
                gone = true;
        if (gone)
            rd_kafka_message_destroy(m);
        else
            slot->messages[kept++] = m;
    }
    if (kept != slot->message_count)
        pr_info("rebalance: dropped %zu polled, unprocessed messages of revoked partitions",
                slot->message_count - kept);
    slot->message_count = kept;
}

static void pr_engine_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t *partitions, void *opaque) {
    struct pr_engine *engine = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pr_info("rebalance: assigned %d partitions", partitions->cnt);
        engine->assigned_once = true;
        engine->last_message_us = pr_monotonic_us();
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, partitions);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, partitions);
        }
        return;
    }
    pr_info("rebalance: %d partitions revoked; finishing batches in flight", partitions->cnt);
    pr_engine_drop_revoked(engine, partitions);
    pr_engine_drain(engine, true);
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, partitions);
        if (e) rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* ------------------------------------------------------------------ setup */

static int pr_engine_setup(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    char err[512];
    rd_kafka_conf_t *pconf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!pconf) return 2;
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
        if (rd_kafka_conf_set(pconf, "transactional.id", txn_id, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(pconf, "transaction.timeout.ms", timeout, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
            /* A transaction needs a bounded delivery timeout. */
            rd_kafka_conf_set(pconf, "message.timeout.ms", timeout, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            pr_error("exactly_once: %s", err);
            rd_kafka_conf_destroy(pconf);
            return 2;
        }
        pr_info("exactly_once: transactional.id %s", txn_id);
    }
    engine->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    if (!engine->producer) {
        pr_error("cannot create the Kafka producer: %s", err);
        return 2;
    }
    rd_kafka_conf_t *cconf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!cconf) return 2;
    rd_kafka_conf_set_opaque(cconf, engine);
    rd_kafka_conf_set_rebalance_cb(cconf, pr_engine_rebalance_cb);
    engine->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    if (!engine->consumer) {
        pr_error("cannot create the Kafka consumer: %s", err);
        return 2;
    }
    rd_kafka_poll_set_consumer(engine->consumer);
    if (engine->eos) {
        /* Fences an earlier instance with the same transactional.id and
         * aborts what it left open. Retried while Kafka is unreachable. */
        for (;;) {
            rd_kafka_error_t *error = rd_kafka_init_transactions(engine->producer, 30000);
            if (!error) break;
            bool retriable = rd_kafka_error_is_retriable(error);
            pr_warn("init_transactions: %s%s", rd_kafka_error_string(error), retriable ? "; retrying" : "");
            rd_kafka_error_destroy(error);
            if (!retriable || *engine->options->stop) return 1;
        }
    }
    engine->topic_decisions = rd_kafka_topic_new(engine->producer, cfg->topic_decisions, NULL);
    engine->topic_alerts = rd_kafka_topic_new(engine->producer, cfg->topic_alerts, NULL);
    engine->topic_dlq = rd_kafka_topic_new(engine->producer, cfg->topic_dlq, NULL);

    rd_kafka_topic_partition_list_t *subscription = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subscription, cfg->topic_declarations, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(engine->consumer, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    if (e) {
        pr_error("cannot subscribe to %s: %s", cfg->topic_declarations, rd_kafka_err2str(e));
        return 1;
    }

    engine->slot_count = (size_t)cfg->max_inflight_batches;
    engine->slots = pr_calloc(engine->slot_count, sizeof(*engine->slots));
    for (size_t i = 0; i < engine->slot_count; i++) {
        struct pr_slot *slot = &engine->slots[i];
        slot->engine = engine;
        pr_batch_init(&slot->batch, (size_t)cfg->batch_size);
        slot->batch.source_topic = cfg->topic_declarations;
        slot->messages = pr_calloc((size_t)cfg->batch_size, sizeof(*slot->messages));
    }
    return 0;
}

/* ---------------------------------------------------------------- produce */

static void pr_engine_produce(struct pr_engine *engine, struct pr_slot *slot, rd_kafka_topic_t *topic,
                              const void *key, size_t key_len, struct pr_str value, int64_t timestamp) {
    for (;;) {
        /* Zero copy: the value lives in the batch arena until the slot is
         * released, which happens only after its delivery reports. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            engine->producer, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(0),
            RD_KAFKA_V_VALUE((void *)value.ptr, value.len), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_TIMESTAMP(timestamp), RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            slot->outstanding++;
            return;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            pr_error("produce to %s failed: %s", rd_kafka_topic_name(topic), rd_kafka_err2str(err));
            slot->failed = true;
            return;
        }
        /* Back-pressure: the local queue is full; serve delivery reports. */
        engine->produce_retries++;
        rd_kafka_poll(engine->producer, 50);
        pr_engine_complete(engine, false);
    }
}

static void pr_engine_emit(struct pr_engine *engine, struct pr_slot *slot) {
    struct pr_batch *batch = &slot->batch;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        pr_slot_track_offset(slot, rec->partition, rec->offset);
        if (rec->outputs & PR_OUT_DLQ) {
            pr_engine_produce(engine, slot, engine->topic_dlq, rec->key, rec->key_len, rec->out_dlq,
                              batch->now_ms);
            engine->totals.dead_letters++;
            engine->txn_dead_letters++;
        }
        if (rec->outputs & PR_OUT_DECISION) {
            pr_engine_produce(engine, slot, engine->topic_decisions, rec->decl.declaration_id.ptr,
                              rec->decl.declaration_id.len, rec->out_decision, rec->decl.event_time);
            engine->totals.decisions++;
            engine->txn_decisions++;
        }
        if (rec->outputs & PR_OUT_ALERT) {
            pr_engine_produce(engine, slot, engine->topic_alerts, rec->decl.house_bill.ptr,
                              rec->decl.house_bill.len, rec->out_decision, rec->decl.event_time);
            engine->totals.alerts++;
            engine->txn_alerts++;
        }
        if (rec->outputs & PR_OUT_AGGREGATE_ALERT) {
            pr_engine_produce(engine, slot, engine->topic_alerts, rec->decl.house_bill.ptr,
                              rec->decl.house_bill.len, rec->out_aggregate_alert, rec->decl.event_time);
            engine->totals.aggregate_alerts++;
        }
    }
}

/* ------------------------------------------------------------------- loop */

/* Fills engine->filling with up to batch.size messages. Once the first
 * message is in, the batch waits batch.linger_ms for more; after that it is
 * processed as soon as the consumer's queue has nothing waiting, and at the
 * latest batch.timeout_ms after its first message. Under load the queue is
 * never empty and batches are full (few Redis round trips per declaration);
 * at a low rate a batch is small and leaves within about batch.linger_ms
 * (low latency). */
static void pr_engine_fill(struct pr_engine *engine, struct pr_slot *slot) {
    const struct pr_config *cfg = engine->cfg;
    int64_t deadline = 0, linger_end = 0;
    while (slot->message_count < (size_t)cfg->batch_size && !*engine->options->stop) {
        int64_t now = pr_monotonic_us();
        int timeout_ms = 100;
        if (slot->message_count > 0) {
            if (now >= deadline) break;
            /* After the linger, take only what is already queued. */
            int64_t until = linger_end < deadline ? linger_end : deadline;
            timeout_ms = now >= linger_end ? 0 : (int)((until - now) / 1000) + 1;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(engine->consumer, timeout_ms);
        /* Serve delivery reports while waiting, so earlier batches commit. */
        rd_kafka_poll(engine->producer, 0);
        pr_engine_complete(engine, false);
        if (!m) {
            if (slot->message_count == 0) break; /* nothing yet: let the caller check idle/stop */
            if (timeout_ms == 0) break;          /* lingered, and the queue is empty */
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                pr_warn("consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (slot->message_count == 0) {
            int64_t first = pr_monotonic_us();
            deadline = first + cfg->batch_timeout_ms * 1000LL;
            linger_end = first + cfg->batch_linger_ms * 1000LL;
        }
        if (!engine->first_message_us) engine->first_message_us = pr_monotonic_us();
        slot->messages[slot->message_count++] = m;
        engine->last_message_us = pr_monotonic_us();
    }
}

/* Runs the chain on a filled slot, retrying with back-off while an operator
 * asks for it (a dependency is down). Returns false on a fatal error. */
static bool pr_engine_process(struct pr_engine *engine, struct pr_slot *slot) {
    struct pr_batch *batch = &slot->batch;
    for (size_t i = 0; i < slot->message_count; i++) {
        rd_kafka_message_t *m = slot->messages[i];
        struct pr_record *rec = pr_batch_push(batch);
        rec->payload = m->payload;
        rec->payload_len = m->len;
        rec->key = m->key;
        rec->key_len = m->key_len;
        rec->partition = m->partition;
        rec->offset = m->offset;
    }
    batch->now_ms = pr_now_ms();
    batch->rules = engine->rules;
    batch->refdata_version = "none"; /* enrich sets the version it used */
    size_t start = 0, failed_at = 0;
    int backoff_ms = 100;
    for (;;) {
        int rc = pr_chain_process(&engine->chain, batch, start, &failed_at);
        if (rc == PR_OP_DONE) break;
        if (rc < 0) {
            pr_error("operator %s failed; stopping without committing the batch",
                     engine->chain.ops[failed_at].ops->name);
            return false;
        }
        if (*engine->options->stop) {
            pr_warn("operator %s unavailable at shutdown; the batch is left uncommitted",
                    engine->chain.ops[failed_at].ops->name);
            return false;
        }
        pr_warn("operator %s: dependency unavailable, retrying in %d ms",
                engine->chain.ops[failed_at].ops->name, backoff_ms);
        for (int waited = 0; waited < backoff_ms; waited += 100) {
            rd_kafka_poll(engine->producer, 100);
            pr_engine_complete(engine, false);
        }
        backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
        start = failed_at;
    }
    return true;
}

static void pr_engine_release_messages(struct pr_slot *slot) {
    for (size_t i = 0; i < slot->message_count; i++) rd_kafka_message_destroy(slot->messages[i]);
    slot->message_count = 0;
}

/* --exit-when-idle: this instance is idle, but the input is done only when
 * the whole group is. Partitions assigned here are caught up (nothing was
 * polled for the idle time); every other partition of the input topic must
 * have a committed offset at its high watermark. Otherwise another member,
 * possibly one that died and has not yet been expired by the coordinator,
 * still owes work, and exiting would leave it undecided until the next run.
 * Returns the number of messages the rest of the group has not committed,
 * or -1 if it could not be read. */
static int64_t pr_engine_group_backlog(struct pr_engine *engine) {
    const char *topic = engine->cfg->topic_declarations;
    const struct rd_kafka_metadata *md;
    if (pr_kafka_topic_metadata(engine->consumer, topic, 5000, &md)) return -1;
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (rd_kafka_assignment(engine->consumer, &mine)) {
        rd_kafka_metadata_destroy(md);
        return -1;
    }
    rd_kafka_topic_partition_list_t *others = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        if (!rd_kafka_topic_partition_list_find(mine, topic, p))
            rd_kafka_topic_partition_list_add(others, topic, p);
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_destroy(mine);
    int64_t backlog = 0;
    if (others->cnt > 0 && rd_kafka_committed(engine->consumer, others, 5000)) backlog = -1;
    for (int i = 0; backlog >= 0 && i < others->cnt; i++) {
        int64_t low = 0, high = 0;
        if (rd_kafka_query_watermark_offsets(engine->consumer, topic, others->elems[i].partition, &low,
                                             &high, 5000)) {
            backlog = -1;
            break;
        }
        int64_t committed = others->elems[i].offset >= 0 ? others->elems[i].offset : low;
        if (high > committed) backlog += high - committed;
    }
    rd_kafka_topic_partition_list_destroy(others);
    return backlog;
}

static void pr_engine_log_stats(struct pr_engine *engine, const char *prefix) {
    struct pr_engine_totals *t = &engine->totals;
    pr_info("%s: consumed=%llu decisions=%llu alerts=%llu dlq=%llu batches=%llu inflight=%zu "
            "commits=%llu queue_full_waits=%llu transactions=%llu aborted=%llu",
            prefix, (unsigned long long)t->consumed, (unsigned long long)t->decisions,
            (unsigned long long)t->alerts, (unsigned long long)t->dead_letters,
            (unsigned long long)t->batches, engine->inflight, (unsigned long long)engine->commits,
            (unsigned long long)engine->produce_retries, (unsigned long long)engine->txn_commits,
            (unsigned long long)engine->txn_aborts);
}

static double pr_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int pr_engine_run(const struct pr_config *cfg, const struct pr_engine_options *options,
                  struct pr_engine_totals *totals) {
    struct pr_engine engine_storage;
    struct pr_engine *engine = &engine_storage;
    memset(engine, 0, sizeof(*engine));
    engine->cfg = cfg;
    engine->options = options;
    engine->eos = strcmp(cfg->guarantee, "exactly_once") == 0;
    char err[512];
    engine->rules = pr_rules_load(cfg->rules_file, cfg->policy_file, err, sizeof(err));
    if (!engine->rules) {
        pr_error("rules: %s", err);
        if (totals) memset(totals, 0, sizeof(*totals));
        return 2;
    }
    pr_info("rules: ruleset_version %s", engine->rules->version);
    int rc = 0;
    if (pr_chain_init(&engine->chain, cfg) != PR_OK) {
        rc = 2;
        goto out;
    }
    rc = pr_engine_setup(engine);
    if (rc) goto out;
    pr_info("running: group=%s input=%s decisions=%s alerts=%s dlq=%s batch.size=%d chain of %zu "
            "operators",
            cfg->group_id, cfg->topic_declarations, cfg->topic_decisions, cfg->topic_alerts,
            cfg->topic_dlq, cfg->batch_size, engine->chain.count);

    double cpu0 = pr_cpu_seconds();
    int64_t wall0 = pr_monotonic_us(), last_stats = wall0;
    int64_t last_backlog_check = 0, last_backlog_log = 0;
    engine->last_message_us = wall0;
    while (!engine->fatal) {
        if (engine->inflight == engine->slot_count) {
            if (engine->eos) {
                pr_engine_txn_commit(engine); /* releases every slot */
                continue;
            }
            /* Every slot is waiting for acknowledgements: back-pressure. */
            rd_kafka_poll(engine->producer, 50);
            pr_engine_complete(engine, false);
            continue;
        }
        struct pr_slot *slot = &engine->slots[(engine->head + engine->inflight) % engine->slot_count];
        engine->filling = slot;
        pr_engine_fill(engine, slot);
        engine->filling = NULL;
        size_t polled = slot->message_count;
        if (polled > 0) {
            if (!pr_engine_process(engine, slot)) {
                pr_engine_release_messages(slot);
                pr_batch_reset(&slot->batch);
                engine->fatal = true;
                break;
            }
            if (engine->eos) {
                pr_engine_txn_begin(engine);
                if (engine->fatal) {
                    pr_engine_release_messages(slot);
                    pr_batch_reset(&slot->batch);
                    break;
                }
                engine->txn_records += slot->message_count;
            }
            engine->totals.consumed += slot->message_count;
            engine->totals.batches++;
            pr_engine_emit(engine, slot);
            /* In flight only once every output is produced: a full producer
             * queue serves delivery reports in the middle of emitting, and
             * a slot counted in flight then could commit with outputs still
             * to come. */
            engine->inflight++;
            /* Outputs and dead-letter payloads are in the arena now. */
            pr_engine_release_messages(slot);
            rd_kafka_poll(engine->producer, 0);
            pr_engine_complete(engine, false);
        }
        if (engine->eos && engine->txn_open &&
            (polled == 0 /* input idle */ ||
             engine->txn_records >= (size_t)cfg->transaction_max_records ||
             pr_monotonic_us() - engine->txn_started_us >= cfg->transaction_interval_ms * 1000LL))
            pr_engine_txn_commit(engine);
        int64_t now = pr_monotonic_us();
        if (cfg->stats_interval_ms > 0 && now - last_stats >= cfg->stats_interval_ms * 1000LL) {
            pr_engine_log_stats(engine, "stats");
            last_stats = now;
        }
        if (*options->stop) break;
        if (options->reload && *options->reload) {
            /* SIGHUP: between batches, so one batch sees one rule set. */
            *options->reload = 0;
            struct pr_rules *fresh = pr_rules_load(cfg->rules_file, cfg->policy_file, err, sizeof(err));
            if (!fresh) {
                pr_error("rules reload refused, %s stays in force: %s", engine->rules->version, err);
            } else {
                pr_info("rules reloaded: ruleset_version %s (was %s)", fresh->version, engine->rules->version);
                pr_rules_free(engine->rules);
                engine->rules = fresh;
            }
        }
        if (options->exit_when_idle_ms > 0 && engine->assigned_once && engine->inflight == 0 &&
            now - engine->last_message_us > options->exit_when_idle_ms * 1000LL &&
            now - last_backlog_check >= 1000000) {
            last_backlog_check = now;
            int64_t backlog = pr_engine_group_backlog(engine);
            if (backlog == 0) {
                pr_info("idle for %d ms and the group has committed all of %s: stopping",
                        options->exit_when_idle_ms, cfg->topic_declarations);
                break;
            }
            if (now - last_backlog_log >= 10000000) {
                last_backlog_log = now;
                if (backlog < 0)
                    pr_info("idle, but the group's committed offsets cannot be read yet; waiting");
                else
                    pr_info("idle, but %lld declarations on partitions assigned elsewhere are not "
                            "committed yet; waiting for the group",
                            (long long)backlog);
            }
        }
    }
    if (!engine->fatal) {
        pr_info("stopping: finishing %zu batches in flight", engine->inflight);
        pr_engine_drain(engine, true);
    }
    engine->totals.cpu_seconds = pr_cpu_seconds() - cpu0;
    engine->totals.wall_seconds = (double)(pr_monotonic_us() - wall0) / 1e6;
    if (engine->first_message_us && engine->last_commit_us > engine->first_message_us)
        engine->totals.active_seconds = (double)(engine->last_commit_us - engine->first_message_us) / 1e6;
    engine->totals.latency_count = engine->latency.count;
    engine->totals.latency_p50_ms = pr_histogram_quantile(&engine->latency, 0.50);
    engine->totals.latency_p99_ms = pr_histogram_quantile(&engine->latency, 0.99);
    engine->totals.latency_p999_ms = pr_histogram_quantile(&engine->latency, 0.999);
    engine->totals.latency_max_ms = engine->latency.max;
    pr_engine_log_stats(engine, engine->fatal ? "stopped after a fatal error" : "stopped");
    for (size_t i = 0; i < engine->chain.count && i < PR_MAX_OPERATOR_STATS; i++) {
        const struct pr_operator *op = &engine->chain.ops[i];
        struct pr_engine_operator_stats *st = &engine->totals.operators[i];
        snprintf(st->name, sizeof(st->name), "%s", op->ops->name);
        st->batches = op->stats.batches;
        st->records = op->stats.records;
        st->busy_us = op->stats.busy_us;
        st->round_trips = op->stats.round_trips;
        st->cache_hits = op->stats.cache_hits;
        st->cache_misses = op->stats.cache_misses;
        engine->totals.operator_count = i + 1;
        pr_debug("operator %-10s batches=%llu records=%llu busy=%.3f s round_trips=%llu", op->ops->name,
                 (unsigned long long)op->stats.batches, (unsigned long long)op->stats.records,
                 (double)op->stats.busy_us / 1e6, (unsigned long long)op->stats.round_trips);
    }
    rc = engine->fatal ? 1 : 0;

out:
    if (engine->consumer) {
        if (!engine->fatal) rd_kafka_consumer_close(engine->consumer);
        rd_kafka_destroy(engine->consumer);
    }
    if (engine->producer) {
        if (engine->topic_decisions) rd_kafka_topic_destroy(engine->topic_decisions);
        if (engine->topic_alerts) rd_kafka_topic_destroy(engine->topic_alerts);
        if (engine->topic_dlq) rd_kafka_topic_destroy(engine->topic_dlq);
        if (!engine->fatal) rd_kafka_flush(engine->producer, 10000);
        rd_kafka_destroy(engine->producer);
    }
    for (size_t i = 0; i < engine->slot_count; i++) {
        pr_batch_destroy(&engine->slots[i].batch);
        free(engine->slots[i].messages);
        free(engine->slots[i].partitions);
        free(engine->slots[i].next_offsets);
    }
    free(engine->slots);
    pr_chain_destroy(&engine->chain);
    pr_rules_free(engine->rules);
    if (totals) *totals = engine->totals;
    return rc;
}
