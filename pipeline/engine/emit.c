/*
 * emit.c - producing what a slot's records became (decisions, alerts, dead
 * letters, intermediate records, the changelog), the delivery reports, and
 * what a refusal by the broker turns into (engine.c explains the rules).
 */
#include "engine-int.h"

const uint32_t pr_decided_outputs[4] = {PR_OUT_DECISION, PR_OUT_ALERT, PR_OUT_AGGREGATE_ALERT,
                                        PR_OUT_REPARTITION};

/* ---------------------------------------------------------------- delivery */

/* The configured name of an output topic handle: it outlives the handle
 * (a refusal remembered across a producer restart names it). */
static const char *pr_engine_topic_label(const struct pr_engine *engine,
                                         const rd_kafka_topic_t *rkt) {
    if (rkt == engine->topic_decisions) return engine->cfg->topic_decisions;
    if (rkt == engine->topic_alerts) return engine->cfg->topic_alerts;
    if (rkt == engine->topic_dlq) return engine->cfg->topic_dlq;
    if (rkt == engine->topic_repartition) return engine->repartition_topic;
    if (rkt == engine->topic_changelog) return engine->changelog_topic;
    return "(an unknown topic)";
}

/* A dead letter refused although cut to input.dlq_keep_bytes: the DLQ
 * topic cannot take what the configuration says it must. Exit 1. */
void pr_engine_dlq_fault(struct pr_engine *engine, const struct pr_record *rec) {
    pr_error("the DLQ topic %s refuses a dead letter even with its key and payload cut to "
             "input.dlq_keep_bytes=%zu (%s): lower input.dlq_keep_bytes or raise the topic's "
             "max.message.bytes; stopping without committing",
             engine->cfg->topic_dlq, engine->dlq_keep_bytes,
             rd_kafka_err2str((rd_kafka_resp_err_t)rec->refused_err));
    engine->fatal = true;
}

/* One line for the refusals of a batch, at most once per 10 s (a topic
 * that refuses everything must not flood the log); the dead letters carry
 * each record's own detail. */
void pr_engine_log_refusals(struct pr_engine *engine, const struct pr_batch *batch,
                            const char *then) {
    const struct pr_record *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < batch->count; i++)
        if (batch->records[i].refused && count++ == 0) first = &batch->records[i];
    engine->refusals_unlogged += count;
    if (!first || pr_monotonic_us() - engine->last_refusal_log_us < 10000000) return;
    engine->last_refusal_log_us = pr_monotonic_us();
    pr_warn("%zu record(s) refused by the broker since the last report (this batch: partition %d "
            "offset %lld and %zu more, topic %s: %s); %s",
            engine->refusals_unlogged, first->partition, (long long)first->offset, count - 1,
            first->refused_topic ? first->refused_topic : "?",
            rd_kafka_err2str((rd_kafka_resp_err_t)first->refused_err), then);
    engine->refusals_unlogged = 0;
}

/* Notes the first refusal of one of rec's outputs (for the dead letter's
 * detail). */
static void pr_record_note_refusal(struct pr_record *rec, rd_kafka_resp_err_t err,
                                   const char *topic) {
    if (rec->refused_err) return;
    rec->refused_err = err;
    rec->refused_topic = topic;
}

/* Whether err says that the open transaction takes no more records because
 * an earlier one failed (an abortable error, not a fatal one): it is
 * aborted and processed again, never a reason to stop. */
static bool pr_engine_txn_refuses_more(const struct pr_engine *engine, rd_kafka_resp_err_t err) {
    return engine->eos && err == RD_KAFKA_RESP_ERR__STATE &&
           !rd_kafka_fatal_error(engine->producer, NULL, 0);
}

/* A delivery that failed. A refusal of the record is settled before the
 * batch commits; a missing topic or a fatal error stops the engine. */
static void pr_engine_delivery_failed(struct pr_engine *engine, struct pr_delivery *dv,
                                      rd_kafka_resp_err_t err, const char *topic) {
    if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* Purged by an abort: the transaction is processed again. */
        dv->slot->failed = true;
        return;
    }
    if (pr_engine_txn_refuses_more(engine, err)) {
        /* Produced into a transaction that must abort: it aborts at once
         * and is processed again. */
        engine->txn_doomed = true;
        dv->slot->failed = true;
        return;
    }
    if (pr_kafka_err_refuses_record(err) && !dv->rec) {
        /* A changelog record is the state of a batch already decided: it
         * cannot be dead-lettered, and losing it would change decisions
         * after a restore. The topic's limits are a configuration fault. */
        pr_error("the changelog topic %s refuses a state record (%s): it must take records of a "
                 "few hundred bytes; stopping without committing",
                 topic, rd_kafka_err2str(err));
        engine->fatal = true;
        dv->slot->failed = true;
        return;
    }
    if (pr_kafka_err_refuses_record(err)) {
        pr_record_note_refusal(dv->rec, err, topic);
        dv->rec->refused |= dv->output;
        dv->slot->refused = true;
        return;
    }
    if (pr_kafka_err_topic_missing(err)) {
        if (!engine->topic_missing_logged)
            pr_error("output topic %s is gone (%s): stopping without committing the batches in "
                     "flight; they are processed again once the topic exists",
                     topic, rd_kafka_err2str(err));
        engine->topic_missing_logged = true;
        engine->fatal = true;
    } else if (pr_monotonic_us() - engine->last_produce_error_log_us > 10000000) {
        engine->last_produce_error_log_us = pr_monotonic_us();
        pr_error("delivery to %s failed: %s", topic, rd_kafka_err2str(err));
    }
    dv->slot->failed = true;
}

void pr_engine_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    (void)opaque;
    struct pr_delivery *dv = msg->_private;
    if (!dv) return;
    struct pr_slot *slot = dv->slot;
    if (msg->err) {
        pr_engine_delivery_failed(slot->engine, dv, msg->err,
                                  pr_engine_topic_label(slot->engine, msg->rkt));
    } else if (dv->output == PR_OUT_DECISION) {
        /* End-to-end latency: the hub's event_time to the broker's ack. */
        int64_t event_time = dv->rec->decl.event_time, now = pr_now_ms();
        if (event_time > 0 && now >= event_time)
            pr_histogram_record(&slot->engine->latency, (uint64_t)(now - event_time));
    }
    slot->outstanding--;
}

/* The producer batch.size that keeps a batch of several records under a
 * topic's max.message.bytes: the batch framing, and lz4's worst-case
 * expansion of incompressible data (1/255 plus a header). */
static int64_t pr_batch_bytes_under(int64_t max_message_bytes) {
    return max_message_bytes - PR_RECORD_OVERHEAD - max_message_bytes / 200;
}

/* Reads the output topics' max.message.bytes into the engine's limits
 * (decisions, alerts, dlq), each at most the producer's message.max.bytes;
 * returns the smallest. */
static int64_t pr_engine_read_limits(struct pr_engine *engine, int64_t limits[5]) {
    const struct pr_config *cfg = engine->cfg;
    const char *names[5] = {cfg->topic_decisions, cfg->topic_alerts, cfg->topic_dlq,
                            engine->repartition_topic, engine->changelog_topic};
    int count = engine->two_stages ? 5 : 3;
    int64_t topic_max[5] = {0};
    if (pr_kafka_topic_max_bytes(engine->consumer, names, (size_t)count, topic_max, 10000) != PR_OK)
        pr_warn("output size limits unknown for some topics; a record they refuse is dead-lettered "
                "when the broker reports it");
    int64_t smallest = engine->client_max_bytes;
    for (int i = 0; i < 5; i++) {
        if (i >= count) {
            limits[i] = engine->client_max_bytes;
            continue;
        }
        limits[i] = topic_max[i] > 0 && topic_max[i] < engine->client_max_bytes
                        ? topic_max[i]
                        : engine->client_max_bytes;
        if (limits[i] < smallest) smallest = limits[i];
    }
    return smallest;
}

/* A refusal for size while running: a topic's max.message.bytes may have
 * been lowered. The limits are read again, so that the retry is checked
 * against them (the record too large is dead-lettered at once, its
 * batch-mates go through). A limit now under the producer's batch.size
 * would refuse whole batches of innocent records: stop (exit 1, nothing
 * uncommitted is lost), and the restart sizes batches for it. */
void pr_engine_refresh_limits(struct pr_engine *engine, const struct pr_batch *batch) {
    bool size = false;
    for (size_t i = 0; i < batch->count && !size; i++)
        size = batch->records[i].refused &&
               (batch->records[i].refused_err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                batch->records[i].refused_err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE);
    if (!size) return;
    int64_t limits[5];
    int64_t smallest = pr_engine_read_limits(engine, limits);
    pr_warn("a record refused for its size: output limits read again (decisions %lld, alerts %lld, "
            "dlq %lld bytes)",
            (long long)limits[0], (long long)limits[1], (long long)limits[2]);
    if (pr_batch_bytes_under(smallest) < engine->producer_batch_size) {
        pr_error("an output topic's max.message.bytes was lowered to %lld while running, under the "
                 "producer's batch.size %lld: stopping without committing; a restart sizes batches "
                 "for it",
                 (long long)smallest, (long long)engine->producer_batch_size);
        engine->fatal = true;
    }
}

/* The largest record each output topic takes, from the topics'
 * max.message.bytes and the producer's message.max.bytes; the producer's
 * batch.size is kept under the smallest, so that one produce request never
 * exceeds what a topic takes. Refuses (exit 2) an input.dlq_keep_bytes
 * that a cut dead letter could not fit. */
enum pr_engine_result pr_engine_output_limits(struct pr_engine *engine, rd_kafka_conf_t *pconf) {
    const struct pr_config *cfg = engine->cfg;
    char value[64];
    size_t size = sizeof(value);
    int64_t client_max = 1000000;
    if (rd_kafka_conf_get(pconf, "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK)
        client_max = strtoll(value, NULL, 10);
    engine->client_max_bytes = client_max;
    int64_t limits[5];
    int64_t smallest = pr_engine_read_limits(engine, limits);
    engine->dlq_keep_bytes = (size_t)cfg->dlq_keep_bytes;
    int64_t dlq_need = (int64_t)cfg->dlq_keep_bytes + PR_DEADLETTER_OVERHEAD + PR_RECORD_OVERHEAD;
    if (dlq_need > limits[2]) {
        pr_error(
            "config: input.dlq_keep_bytes=%d cannot fit the DLQ topic %s: a dead letter cut to it "
            "needs up to %lld bytes, and the topic takes %lld (its max.message.bytes and the "
            "producer's message.max.bytes); lower input.dlq_keep_bytes to at most %lld",
            cfg->dlq_keep_bytes, cfg->topic_dlq, (long long)dlq_need, (long long)limits[2],
            (long long)(limits[2] - PR_DEADLETTER_OVERHEAD - PR_RECORD_OVERHEAD));
        return PR_ENGINE_REFUSED;
    }
    size = sizeof(value);
    int64_t batch_size = 1000000;
    if (rd_kafka_conf_get(pconf, "batch.size", value, &size) == RD_KAFKA_CONF_OK)
        batch_size = strtoll(value, NULL, 10);
    if (pr_batch_bytes_under(smallest) < batch_size) {
        char err[256];
        snprintf(value, sizeof(value), "%lld", (long long)pr_batch_bytes_under(smallest));
        if (rd_kafka_conf_set(pconf, "batch.size", value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            pr_error("producer batch.size %s: %s", value, err);
            return PR_ENGINE_REFUSED;
        }
        pr_info("producer batch.size %s: under the smallest max.message.bytes of the output topics",
                value);
        batch_size = pr_batch_bytes_under(smallest);
    }
    engine->producer_batch_size = batch_size;
    return PR_ENGINE_DONE;
}

/* ---------------------------------------------------------------- produce */

enum pr_produce_result { PR_PRODUCED, PR_REFUSED_NOW, PR_PRODUCE_FAILED };

/* Produces one output of rec. A record over the producer's
 * message.max.bytes, or one the client refuses at once
 * (pr_kafka_err_refuses_record), is not produced: PR_REFUSED_NOW, with the
 * refusal noted on rec. A topic's own max.message.bytes is not checked
 * here: the broker checks the compressed batch, which may fit when the
 * record does not; the producer's batch.size is kept under it instead
 * (pr_engine_output_limits), so a record too large for it is refused
 * alone, never with innocent batch-mates. */
static enum pr_produce_result pr_engine_produce(struct pr_engine *engine, struct pr_slot *slot,
                                                struct pr_record *rec, uint32_t output,
                                                rd_kafka_topic_t *topic, int32_t partition,
                                                const void *key, size_t key_len,
                                                struct pr_str value) {
    if ((int64_t)(key_len + value.len) > engine->client_max_bytes) {
        if (!rec) goto refused_extra;
        pr_record_note_refusal(rec, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                               pr_engine_topic_label(engine, topic));
        return PR_REFUSED_NOW;
    }
    struct pr_delivery *dv = pr_arena_alloc(&slot->batch.arena, sizeof(*dv));
    *dv = (struct pr_delivery){.slot = slot, .rec = rec, .output = output};
    for (;;) {
        /* Zero copy: the value lives in the batch arena until the slot is
         * released, which happens only after its delivery reports. The
         * timestamp is the processing time (decided_at / received_at). */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            engine->producer, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_VALUE((void *)value.ptr, value.len),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(slot->batch.now_ms),
            RD_KAFKA_V_OPAQUE(dv), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            slot->outstanding++;
            return PR_PRODUCED;
        }
        if (pr_kafka_err_refuses_record(err)) {
            if (!rec) goto refused_extra;
            pr_record_note_refusal(rec, err, pr_engine_topic_label(engine, topic));
            return PR_REFUSED_NOW;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            pr_engine_delivery_failed(engine, dv, err, pr_engine_topic_label(engine, topic));
            if (!engine->txn_doomed) engine->fatal = true;
            return PR_PRODUCE_FAILED;
        }
        /* Back-pressure: the local queue is full; serve delivery reports. */
        engine->produce_retries++;
        rd_kafka_poll(engine->producer, 50);
        engine->commit->complete(engine, false);
        pr_engine_tick(engine);
    }
refused_extra:
    pr_error("the topic %s refuses a keyed-state record of %zu bytes: it must take records of a "
             "few hundred bytes; stopping without committing",
             pr_engine_topic_label(engine, topic), key_len + value.len);
    engine->fatal = true;
    return PR_PRODUCE_FAILED;
}

static const char *pr_output_name(uint32_t output) {
    switch (output) {
    case PR_OUT_DECISION: return "decision";
    case PR_OUT_ALERT: return "alert";
    case PR_OUT_AGGREGATE_ALERT: return "aggregate alert";
    case PR_OUT_REPARTITION: return "intermediate record";
    default: return "dead letter";
    }
}

/* Stage 2: a dead letter carries the declaration as the hub sent it (the
 * original key and message whole, as a stage-1 dead letter does), not the
 * intermediate record: read back from the declarations topic at its origin
 * (rare: only a decision the broker refuses for good gets here). rec's key
 * and payload then point into that message, kept with the slot. False when
 * it cannot be read (deleted by retention): the intermediate record stays. */
static bool pr_engine_read_back(struct pr_engine *engine, struct pr_slot *slot,
                                struct pr_record *rec) {
    if (rec->origin_read) return true;
    if (!engine->fetcher) {
        rd_kafka_conf_t *conf = pr_kafka_conf_new(engine->cfg, PR_KAFKA_CONSUMER);
        char err[512];
        if (conf) engine->fetcher = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!engine->fetcher) return false;
        rd_kafka_poll_set_consumer(engine->fetcher);
    }
    rd_kafka_message_t *m = pr_kafka_fetch_one(engine->fetcher, rec->origin_topic,
                                               rec->origin_partition, rec->origin_offset, 10000);
    if (!m) {
        pr_warn("the declaration at %s/%d/%lld cannot be read back for its dead letter (gone by "
                "retention?): the dead letter carries its intermediate record",
                rec->origin_topic, rec->origin_partition, (long long)rec->origin_offset);
        return false;
    }
    slot->originals = pr_realloc(slot->originals, (slot->original_count + 1) * sizeof(m));
    slot->originals[slot->original_count++] = m;
    rec->payload = m->payload;
    rec->payload_len = m->len;
    rec->key = m->key;
    rec->key_len = m->key_len;
    rec->origin_read = true;
    return true;
}

/* The dead letter of rec: its own (a dead record) or OUTPUT_REJECTED (a
 * decided record whose outputs were given up). With rec->dlq_cut, key and
 * payload are cut to input.dlq_keep_bytes together. */
static enum pr_produce_result pr_engine_produce_dead_letter(struct pr_engine *engine,
                                                            struct pr_slot *slot,
                                                            struct pr_record *rec) {
    struct pr_batch *batch = &slot->batch;
    bool own = pr_record_dead(rec);
    bool unread = rec->has_origin && !pr_engine_read_back(engine, slot, rec);
    for (;;) {
        size_t key_len = rec->key_len, payload_len = rec->payload_len;
        char detail[640];
        int n;
        if (own) {
            n = snprintf(detail, sizeof(detail), "%s", rec->dlq_detail);
            if (rec->dlq_code == PR_DLQ_TOO_LARGE && payload_len > engine->dlq_keep_bytes)
                payload_len = engine->dlq_keep_bytes;
        } else {
            char outputs[96] = "";
            for (size_t k = 0; k < PR_ARRAY_LEN(pr_decided_outputs); k++)
                if (rec->rejected & pr_decided_outputs[k])
                    snprintf(outputs + strlen(outputs), sizeof(outputs) - strlen(outputs), "%s%s",
                             outputs[0] ? " and " : "", pr_output_name(pr_decided_outputs[k]));
            n = snprintf(detail, sizeof(detail),
                         "the %s of this declaration refused for good by topic %s: %s", outputs,
                         rec->refused_topic ? rec->refused_topic : "?",
                         rd_kafka_err2str((rd_kafka_resp_err_t)rec->refused_err));
            /* Stage 2, the declaration gone from its topic: the payload is
             * its intermediate record; say so. */
            if (unread && n >= 0 && (size_t)n < sizeof(detail))
                n += snprintf(detail + n, sizeof(detail) - (size_t)n,
                              " (the declaration could no longer be read from %s: this payload "
                              "is its intermediate record)",
                              rec->origin_topic);
        }
        if (rec->dlq_cut) {
            size_t keep = engine->dlq_keep_bytes;
            key_len = key_len < keep ? key_len : keep;
            payload_len = payload_len < keep - key_len ? payload_len : keep - key_len;
            if (n >= 0 && (size_t)n < sizeof(detail))
                snprintf(
                    detail + n, sizeof(detail) - (size_t)n,
                    " (cut to input.dlq_keep_bytes=%zu: key %zu of %zu bytes, payload %zu of %zu)",
                    keep, key_len, rec->key_len, payload_len, rec->payload_len);
        }
        bool origin = rec->has_origin && !unread;
        struct pr_deadletter_view view = {
            .error_code = pr_dlq_names[own ? rec->dlq_code : PR_DLQ_OUTPUT_REJECTED],
            .error_detail = detail,
            .source_topic = origin ? rec->origin_topic : batch->source_topic,
            .source_partition = origin ? rec->origin_partition : rec->partition,
            .source_offset = origin ? rec->origin_offset : rec->offset,
            .received_at = batch->now_ms,
            .payload = rec->payload,
            .payload_len = payload_len,
        };
        pr_buf_reset(&engine->scratch);
        if (engine->framed) {
            uint8_t header[PR_WIRE_HEADER_BYTES];
            pr_wire_header(engine->frame_ids.deadletter, header);
            pr_buf_append(&engine->scratch, header, sizeof(header));
        }
        pr_deadletter_view_encode(&view, &engine->scratch);
        struct pr_str value = {pr_arena_strndup(&batch->arena, (const char *)engine->scratch.data,
                                                engine->scratch.len),
                               (uint32_t)engine->scratch.len};
        enum pr_produce_result res =
            pr_engine_produce(engine, slot, rec, PR_OUT_DLQ, engine->topic_dlq,
                              RD_KAFKA_PARTITION_UA, rec->key, key_len, value);
        if (res != PR_REFUSED_NOW) return res;
        if (rec->dlq_cut) {
            pr_engine_dlq_fault(engine, rec);
            return PR_PRODUCE_FAILED;
        }
        rec->dlq_cut = true;
    }
}

static void pr_engine_count_rejected(struct pr_engine *engine, struct pr_slot *slot) {
    slot->counts.dead_letters[PR_DLQ_OUTPUT_REJECTED]++;
    engine->totals.dead_letters++;
    engine->txn_dead_letters++;
    engine->totals.output_rejected++;
    engine->txn_output_rejected++;
}

/* Produces one of rec's outputs (the encoded value the chain made); a
 * refusal at once gives it up in favour of the OUTPUT_REJECTED dead letter. */
static void pr_engine_emit_output(struct pr_engine *engine, struct pr_slot *slot,
                                  struct pr_record *rec, uint32_t output) {
    if (output == PR_OUT_REPARTITION) {
        if (pr_engine_produce(engine, slot, rec, output, engine->topic_repartition,
                              rec->out_partition, rec->out_repartition_key.ptr,
                              rec->out_repartition_key.len, rec->out_repartition) == PR_REFUSED_NOW)
            rec->rejected |= output;
        return;
    }
    rd_kafka_topic_t *topic =
        output == PR_OUT_DECISION ? engine->topic_decisions : engine->topic_alerts;
    struct pr_str key = output == PR_OUT_DECISION ? rec->decl.declaration_id : rec->decl.house_bill;
    struct pr_str value =
        output == PR_OUT_AGGREGATE_ALERT ? rec->out_aggregate_alert : rec->out_decision;
    if (output == PR_OUT_ALERT && engine->framed &&
        engine->frame_ids.alert != engine->frame_ids.decision &&
        value.len >= PR_WIRE_HEADER_BYTES) {
        /* The alerts subject has its own id for the Decision schema. */
        char *copy = pr_arena_alloc(&slot->batch.arena, value.len);
        memcpy(copy, value.ptr, value.len);
        pr_wire_header(engine->frame_ids.alert, (uint8_t *)copy);
        value.ptr = copy;
    }
    if (pr_engine_produce(engine, slot, rec, output, topic, RD_KAFKA_PARTITION_UA, key.ptr, key.len,
                          value) == PR_REFUSED_NOW)
        rec->rejected |= output;
}

static void pr_engine_emit_rejected(struct pr_engine *engine, struct pr_slot *slot,
                                    struct pr_record *rec) {
    if (!(rec->rejected & PR_OUT_DECIDED) || rec->rejected_sent) return;
    rec->rejected_sent = true;
    if (pr_engine_produce_dead_letter(engine, slot, rec) == PR_PRODUCED)
        pr_engine_count_rejected(engine, slot);
}

/* After every delivery report of slot: what the broker refused is produced
 * once more (it may have been refused for a batch-mate), or, refused a
 * second time, given up for an OUTPUT_REJECTED dead letter; a refused dead
 * letter is written again cut to input.dlq_keep_bytes. At-least-once only:
 * in a transaction a refusal aborts (pr_engine_txn_commit). */
void pr_engine_settle(struct pr_engine *engine, struct pr_slot *slot) {
    engine->settling = true;
    slot->refused = false;
    struct pr_batch *batch = &slot->batch;
    pr_engine_log_refusals(engine, batch,
                           "each is produced once more, then dead-lettered as OUTPUT_REJECTED");
    pr_engine_refresh_limits(engine, batch);
    for (size_t i = 0; i < batch->count && !engine->fatal; i++) {
        struct pr_record *rec = &batch->records[i];
        uint32_t refused = rec->refused, rejected_before = rec->rejected;
        if (!refused) continue;
        rec->refused = 0;
        if (refused & PR_OUT_DLQ) {
            if (rec->dlq_cut) {
                pr_engine_dlq_fault(engine, rec);
                break;
            }
            rec->dlq_cut = true;
            pr_engine_produce_dead_letter(engine, slot, rec);
        }
        uint32_t again = refused & PR_OUT_DECIDED & ~rec->retried;
        rec->retried |= again;
        for (size_t k = 0; k < PR_ARRAY_LEN(pr_decided_outputs); k++)
            if (again & pr_decided_outputs[k])
                pr_engine_emit_output(engine, slot, rec, pr_decided_outputs[k]);
        rec->rejected |= refused & PR_OUT_DECIDED & ~again;
        /* Counted as produced by pr_engine_emit; they are dead letters now. */
        uint32_t given_up = rec->rejected & ~rejected_before;
        if (given_up & PR_OUT_DECISION) {
            engine->totals.decisions--;
            slot->counts.lanes[rec->lane]--;
        }
        if (given_up & PR_OUT_ALERT) {
            engine->totals.alerts--;
            slot->counts.alerts--;
        }
        if (given_up & PR_OUT_AGGREGATE_ALERT) {
            engine->totals.aggregate_alerts--;
            slot->counts.aggregate_alerts--;
        }
        pr_engine_emit_rejected(engine, slot, rec);
    }
    engine->settling = false;
}

struct pr_refusal *pr_engine_find_refusal(struct pr_engine *engine, int stage, int32_t partition,
                                          int64_t offset) {
    for (size_t i = 0; i < engine->refusal_count; i++)
        if (engine->refusals[i].stage == stage && engine->refusals[i].partition == partition &&
            engine->refusals[i].offset == offset)
            return &engine->refusals[i];
    return NULL;
}

void pr_engine_emit(struct pr_engine *engine, struct pr_slot *slot) {
    struct pr_batch *batch = &slot->batch;
    /* A doomed transaction stops emitting: it is aborted and processed again. */
    for (size_t i = 0; i < batch->count && !engine->fatal && !engine->txn_doomed; i++) {
        struct pr_record *rec = &batch->records[i];
        pr_slot_track_offset(slot, rec->partition, rec->offset);
        if (engine->refusal_count) {
            /* Processed again after a transaction aborted on its refusal. */
            const struct pr_refusal *r =
                pr_engine_find_refusal(engine, slot->stage, rec->partition, rec->offset);
            if (r) {
                rec->retried = r->retried;
                rec->rejected = r->rejected;
                rec->dlq_cut = r->dlq_cut;
                rec->refused_err = r->err;
                rec->refused_topic = r->topic;
            }
        }
        if (rec->outputs & PR_OUT_DLQ) {
            /* The encode operator's dead letter, unless it must be cut. */
            enum pr_produce_result res =
                rec->dlq_cut ? pr_engine_produce_dead_letter(engine, slot, rec)
                             : pr_engine_produce(engine, slot, rec, PR_OUT_DLQ, engine->topic_dlq,
                                                 RD_KAFKA_PARTITION_UA, rec->key, rec->key_len,
                                                 rec->out_dlq);
            if (res == PR_REFUSED_NOW) {
                rec->dlq_cut = true;
                res = pr_engine_produce_dead_letter(engine, slot, rec);
            }
            engine->totals.dead_letters++;
            engine->txn_dead_letters++;
            slot->counts.dead_letters[rec->dlq_code]++;
        }
        for (size_t k = 0; k < PR_ARRAY_LEN(pr_decided_outputs); k++) {
            uint32_t bit = pr_decided_outputs[k];
            if ((rec->outputs & bit) && !(rec->rejected & bit))
                pr_engine_emit_output(engine, slot, rec, bit);
        }
        pr_engine_emit_rejected(engine, slot, rec);
        /* Counted as produced; what is rejected is counted as a dead letter. */
        if ((rec->outputs & PR_OUT_DECISION) && !(rec->rejected & PR_OUT_DECISION)) {
            engine->totals.decisions++;
            engine->txn_decisions++;
            slot->counts.lanes[rec->lane]++;
        }
        if ((rec->outputs & PR_OUT_ALERT) && !(rec->rejected & PR_OUT_ALERT)) {
            engine->totals.alerts++;
            engine->txn_alerts++;
            slot->counts.alerts++;
        }
        if ((rec->outputs & PR_OUT_AGGREGATE_ALERT) && !(rec->rejected & PR_OUT_AGGREGATE_ALERT)) {
            engine->totals.aggregate_alerts++;
            slot->counts.aggregate_alerts++;
        }
    }
    /* The keyed state's changes (stage 2): after the decisions they belong
     * to, committed with them. */
    for (size_t i = 0; i < batch->extra_count && !engine->fatal && !engine->txn_doomed; i++) {
        const struct pr_batch_output *o = &batch->extra[i];
        pr_engine_produce(engine, slot, NULL, 0, (rd_kafka_topic_t *)o->sink, o->partition,
                          o->key.ptr, o->key.len, o->value);
    }
    engine->totals.changelog_records += batch->extra_count;
}
