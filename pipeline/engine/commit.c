/*
 * commit.c - committing the slot ring: at-least-once (each leading batch's
 * offsets once all its outputs are acknowledged) and exactly-once
 * (transactions over one or more batches), the rewind after an abort, and
 * the rebalance callback (engine.c explains the rules).
 */
#include "engine-int.h"

void pr_slot_track_offset(struct pr_slot *slot, int32_t partition, int64_t offset) {
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
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new((int)slot->offset_count);
    for (size_t i = 0; i < slot->offset_count; i++)
        rd_kafka_topic_partition_list_add(list, slot->topic, slot->partitions[i])->offset =
            slot->next_offsets[i];
    rd_kafka_resp_err_t err = rd_kafka_commit(engine->consumer, list, sync ? 0 : 1);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        pr_warn("offset commit failed: %s (the batch will be processed again after a restart)",
                rd_kafka_err2str(err));
    engine->commits++;
    rd_kafka_topic_partition_list_destroy(list);
}

void pr_engine_release_messages(struct pr_slot *slot) {
    for (size_t i = 0; i < slot->message_count; i++) rd_kafka_message_destroy(slot->messages[i]);
    slot->message_count = 0;
    for (size_t i = 0; i < slot->original_count; i++) rd_kafka_message_destroy(slot->originals[i]);
    slot->original_count = 0;
}

/* The messages stay until here: a refused output needs the original
 * message for its dead letter, and keys borrow from it. */
static void pr_slot_release(struct pr_slot *slot) {
    pr_engine_release_messages(slot);
    pr_batch_reset(&slot->batch);
    slot->offset_count = 0;
    slot->failed = false;
    slot->refused = false;
    memset(&slot->counts, 0, sizeof(slot->counts));
}

/* A batch's outputs are durable (its offsets or its transaction committed):
 * they count in the metrics from now on. O(1) per batch. */
static void pr_engine_count_committed(struct pr_engine *engine, const struct pr_slot *slot) {
    struct pr_slot_counts *to = &engine->committed;
    const struct pr_slot_counts *from = &slot->counts;
    for (size_t i = 0; i < PR_ARRAY_LEN(to->lanes); i++) to->lanes[i] += from->lanes[i];
    for (size_t i = 0; i < PR_ARRAY_LEN(to->dead_letters); i++)
        to->dead_letters[i] += from->dead_letters[i];
    to->alerts += from->alerts;
    to->aggregate_alerts += from->aggregate_alerts;
    if (slot->stage == PR_STAGE_DECLARATIONS) engine->committed_declarations += slot->batch.count;
    engine->committed_changelog_records += slot->batch.extra_count;
    engine->committed_batches++;
}

/* Commits every leading batch whose outputs are all acknowledged. */
static void pr_alo_complete(struct pr_engine *engine, bool sync) {
    while (engine->inflight > 0) {
        struct pr_slot *slot = &engine->slots[engine->head];
        if (slot->outstanding > 0) break;
        if (slot->refused && !slot->failed) {
            /* Produces retries and dead letters; commits after their reports. */
            if (!engine->settling) pr_engine_settle(engine, slot);
            if (slot->outstanding > 0 || slot->refused || engine->fatal) break;
        }
        if (slot->failed) {
            if (!engine->fatal)
                pr_error("a batch could not be delivered; stopping without committing it "
                         "(it is processed again on restart)");
            engine->fatal = true;
            return;
        }
        pr_engine_commit(engine, slot, sync);
        engine->last_commit_us = pr_monotonic_us();
        pr_engine_count_committed(engine, slot);
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

/* Messages polled for the next slot; after an abort (a rewind) or at the
 * end they are fetched again, so they go. */
void pr_engine_drop_deferred(struct pr_engine *engine) {
    for (size_t i = 0; i < engine->deferred_count; i++)
        rd_kafka_message_destroy(engine->deferred[i]);
    engine->deferred_count = 0;
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
    engine->txn_doomed = false;
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

static void pr_engine_txn_counters_reset(struct pr_engine *engine) {
    engine->txn_decisions = engine->txn_alerts = engine->txn_dead_letters = 0;
    engine->txn_output_rejected = 0;
}

/* Before an abort: every refusal of the transaction's records, so that the
 * batches processed again retry or dead-letter them (see the top of the
 * file). Returns false on a configuration fault (a cut dead letter
 * refused). */
static bool pr_engine_remember_refusals(struct pr_engine *engine) {
    for (size_t k = 0; k < engine->inflight; k++) {
        struct pr_slot *slot = &engine->slots[(engine->head + k) % engine->slot_count];
        if (!slot->refused) continue;
        pr_engine_log_refusals(
            engine, &slot->batch,
            "the transaction is aborted and processed again; each is produced once "
            "more, then dead-lettered as OUTPUT_REJECTED");
        pr_engine_refresh_limits(engine, &slot->batch);
        if (engine->fatal) return false;
        for (size_t i = 0; i < slot->batch.count; i++) {
            struct pr_record *rec = &slot->batch.records[i];
            if (!rec->refused) continue;
            if ((rec->refused & PR_OUT_DLQ) && rec->dlq_cut) {
                pr_engine_dlq_fault(engine, rec);
                return false;
            }
            struct pr_refusal *r =
                pr_engine_find_refusal(engine, slot->stage, rec->partition, rec->offset);
            if (!r) {
                engine->refusals = pr_realloc(engine->refusals, (engine->refusal_count + 1) *
                                                                    sizeof(*engine->refusals));
                r = &engine->refusals[engine->refusal_count++];
                *r = (struct pr_refusal){.stage = slot->stage,
                                         .partition = rec->partition,
                                         .offset = rec->offset,
                                         .err = rec->refused_err,
                                         .topic = rec->refused_topic};
            }
            uint32_t outputs = rec->refused & PR_OUT_DECIDED;
            r->rejected |= rec->rejected | (outputs & rec->retried);
            r->retried |= rec->retried | outputs;
            if (rec->refused & PR_OUT_DLQ) r->dlq_cut = true;
        }
    }
    return true;
}

/* After a commit: refusals at offsets now committed are done. */
static void pr_engine_forget_refusals(struct pr_engine *engine,
                                      const rd_kafka_topic_partition_list_t *committed) {
    size_t kept = 0;
    for (size_t i = 0; i < engine->refusal_count; i++) {
        const struct pr_refusal *r = &engine->refusals[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find((rd_kafka_topic_partition_list_t *)committed,
                                               pr_engine_input(engine, r->stage), r->partition);
        if (!tp || r->offset >= tp->offset) engine->refusals[kept++] = *r;
    }
    engine->refusal_count = kept;
}

static void pr_engine_txn_abort(struct pr_engine *engine) {
    pr_warn("aborting the transaction of %zu declarations; they are processed again",
            engine->txn_records);
    rd_kafka_error_t *error = rd_kafka_abort_transaction(engine->producer, -1);
    if (error) {
        pr_error("abort failed: %s", rd_kafka_error_string(error));
        if (rd_kafka_error_is_fatal(error)) engine->fatal = true;
        rd_kafka_error_destroy(error);
    }
    /* Delivery reports of purged messages point into the slots: serve them
     * before the slots are reused. */
    rd_kafka_poll(engine->producer, 0);
    engine->txn_aborts++;
    engine->totals.decisions -= engine->txn_decisions;
    engine->totals.alerts -= engine->txn_alerts;
    engine->totals.dead_letters -= engine->txn_dead_letters;
    engine->totals.output_rejected -= engine->txn_output_rejected;
    pr_engine_release_all(engine);
    pr_engine_drop_deferred(engine);
    if (!engine->fatal) pr_engine_rewind(engine);
    /* The stores counted what the transaction held: back to the changelog's
     * committed state, which is what the rewound records are counted on. */
    if (!engine->fatal && engine->keyed && pr_keyed_reload(engine->keyed) != PR_OK) {
        pr_error("keyed state: cannot restore after the abort; stopping so that a restart "
                 "restores it");
        engine->fatal = true;
    }
    /* The rewound input is work again (--exit-when-idle must not stop). */
    engine->last_message_us = pr_monotonic_us();
}

/* Serves delivery reports until every output of the transaction is
 * acknowledged, or one is refused or failed (the transaction is lost then:
 * librdkafka sends nothing more in it, and the rest would only time out).
 * Returns false when the reports did not all come within the transaction
 * timeout. */
static bool pr_engine_txn_wait_reports(struct pr_engine *engine) {
    int64_t deadline = pr_monotonic_us() + (engine->cfg->transaction_timeout_ms + 5000) * 1000LL;
    for (;;) {
        size_t outstanding = 0;
        for (size_t i = 0; i < engine->inflight; i++) {
            const struct pr_slot *slot = &engine->slots[(engine->head + i) % engine->slot_count];
            if (slot->refused || slot->failed) return true;
            outstanding += slot->outstanding;
        }
        if (outstanding == 0) return true;
        if (pr_monotonic_us() > deadline) return false;
        rd_kafka_poll(engine->producer, 50);
        pr_engine_tick(engine);
    }
}

/* Commits the open transaction: the outputs of every in-flight batch and
 * their input offsets. */
void pr_engine_txn_commit(struct pr_engine *engine) {
    if (!engine->txn_open || engine->fatal) return;
    bool abort_needed = false, refused = false;
    /* Every delivery report first: a refused record must abort the
     * transaction, whatever the client would make of it at commit. */
    if (!pr_engine_txn_wait_reports(engine)) abort_needed = true;
    for (size_t i = 0; i < engine->inflight; i++) {
        const struct pr_slot *slot = &engine->slots[(engine->head + i) % engine->slot_count];
        if (slot->failed) abort_needed = true;
        if (slot->refused) refused = true;
    }
    if (refused) {
        abort_needed = true;
        if (!pr_engine_remember_refusals(engine)) {
            engine->fatal = true;
            return;
        }
    }
    if (!abort_needed) {
        rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
        for (size_t i = 0; i < engine->inflight; i++) {
            const struct pr_slot *slot = &engine->slots[(engine->head + i) % engine->slot_count];
            for (size_t k = 0; k < slot->offset_count; k++) {
                rd_kafka_topic_partition_t *tp =
                    rd_kafka_topic_partition_list_find(offsets, slot->topic, slot->partitions[k]);
                if (!tp)
                    tp = rd_kafka_topic_partition_list_add(offsets, slot->topic,
                                                           slot->partitions[k]);
                if (slot->next_offsets[k] > tp->offset) tp->offset = slot->next_offsets[k];
            }
        }
        rd_kafka_consumer_group_metadata_t *meta =
            rd_kafka_consumer_group_metadata(engine->consumer);
        bool ok = pr_engine_txn_error(
            engine, rd_kafka_send_offsets_to_transaction(engine->producer, offsets, meta, -1),
            "send_offsets", &abort_needed);
        rd_kafka_consumer_group_metadata_destroy(meta);
        if (ok) {
            for (int attempt = 0; attempt < 10 && !engine->fatal && !abort_needed; attempt++) {
                rd_kafka_error_t *error = rd_kafka_commit_transaction(engine->producer, -1);
                if (!error) {
                    engine->txn_commits++;
                    engine->commits++;
                    engine->last_commit_us = pr_monotonic_us();
                    for (size_t i = 0; i < engine->inflight; i++)
                        pr_engine_count_committed(
                            engine, &engine->slots[(engine->head + i) % engine->slot_count]);
                    pr_engine_release_all(engine);
                    pr_engine_txn_counters_reset(engine);
                    if (engine->refusal_count) pr_engine_forget_refusals(engine, offsets);
                    if (engine->snap) pr_engine_note_txn_offsets(engine, offsets);
                    rd_kafka_topic_partition_list_destroy(offsets);
                    return;
                }
                bool retriable = rd_kafka_error_is_retriable(error);
                pr_engine_txn_error(engine, error, "commit", &abort_needed);
                if (!retriable) break;
            }
        }
        rd_kafka_topic_partition_list_destroy(offsets);
    }
    if (engine->fatal) return;
    pr_engine_txn_abort(engine);
    pr_engine_txn_counters_reset(engine);
}

void pr_engine_txn_begin(struct pr_engine *engine) {
    if (engine->txn_open) return;
    bool abort_needed = false;
    if (!pr_engine_txn_error(engine, rd_kafka_begin_transaction(engine->producer), "begin",
                             &abort_needed))
        return;
    engine->txn_open = true;
    engine->txn_started_us = pr_monotonic_us();
    engine->txn_records = 0;
}

/* Waits until every in-flight batch is acknowledged, committing as they
 * complete. Bounded only by the broker: librdkafka retries until delivered. */
static void pr_alo_drain(struct pr_engine *engine, bool sync) {
    int64_t last_log = pr_monotonic_us();
    while (engine->inflight > 0 && !engine->fatal) {
        rd_kafka_poll(engine->producer, 100);
        pr_alo_complete(engine, sync);
        pr_engine_tick(engine);
        if (pr_monotonic_us() - last_log > 5000000) {
            pr_warn("waiting for %zu batches to be acknowledged by Kafka", engine->inflight);
            last_log = pr_monotonic_us();
        }
    }
    if (rd_kafka_fatal_error(engine->producer, NULL, 0)) engine->fatal = true;
}

/* Every slot waits for acknowledgements: serve delivery reports. */
static void pr_alo_full(struct pr_engine *engine) {
    rd_kafka_poll(engine->producer, 50);
    pr_alo_complete(engine, false);
}

static bool pr_alo_begin(struct pr_engine *engine, struct pr_slot *slot) {
    (void)engine;
    (void)slot;
    return true;
}

static void pr_alo_turn(struct pr_engine *engine, size_t polled) {
    (void)engine;
    (void)polled;
}

/* At-least-once: each leading batch commits its offsets once every output
 * it made is acknowledged (engine.c, "Delivery"). */
const struct pr_commit_ops pr_commit_at_least_once = {
    .name = "at_least_once",
    .begin = pr_alo_begin,
    .complete = pr_alo_complete,
    .full = pr_alo_full,
    .turn = pr_alo_turn,
    .drain = pr_alo_drain,
};

/* Exactly-once: a slot joins the open transaction (begun if none). */
static bool pr_eos_begin(struct pr_engine *engine, struct pr_slot *slot) {
    pr_engine_txn_begin(engine);
    if (engine->fatal) return false;
    engine->txn_records += slot->message_count;
    return true;
}

/* Slots are released when their transaction commits, never one by one. */
static void pr_eos_complete(struct pr_engine *engine, bool sync) {
    (void)engine;
    (void)sync;
}

/* Every slot is in the open transaction: commit it (releases them all). */
static void pr_eos_full(struct pr_engine *engine) {
    pr_engine_txn_commit(engine);
}

/* Commits the open transaction when it is due: the input went idle, it
 * must abort (a refused record), it holds transaction_max_records, or it is
 * transaction_interval_ms old. */
static void pr_eos_turn(struct pr_engine *engine, size_t polled) {
    const struct pr_config *cfg = engine->cfg;
    if (engine->txn_open &&
        (polled == 0 || engine->txn_doomed ||
         engine->txn_records >= (size_t)cfg->transaction_max_records ||
         pr_monotonic_us() - engine->txn_started_us >= cfg->transaction_interval_ms * 1000LL))
        pr_engine_txn_commit(engine);
}

static void pr_eos_drain(struct pr_engine *engine, bool sync) {
    (void)sync; /* a transaction's commit is synchronous */
    pr_engine_txn_commit(engine);
}

const struct pr_commit_ops pr_commit_exactly_once = {
    .name = "exactly_once",
    .begin = pr_eos_begin,
    .complete = pr_eos_complete,
    .full = pr_eos_full,
    .turn = pr_eos_turn,
    .drain = pr_eos_drain,
};

/* --------------------------------------------------------------- rebalance */

/* Keeps the messages of messages[0..*count) that are not of a revoked
 * partition; returns how many went. */
static size_t pr_engine_drop_revoked_from(rd_kafka_message_t **messages, size_t *count,
                                          const rd_kafka_topic_partition_list_t *revoked) {
    size_t kept = 0, before = *count;
    for (size_t i = 0; i < before; i++) {
        rd_kafka_message_t *m = messages[i];
        bool gone = false;
        for (int k = 0; k < revoked->cnt; k++)
            if (revoked->elems[k].partition == m->partition &&
                strcmp(revoked->elems[k].topic, rd_kafka_topic_name(m->rkt)) == 0)
                gone = true;
        if (gone)
            rd_kafka_message_destroy(m);
        else
            messages[kept++] = m;
    }
    *count = kept;
    return before - kept;
}

static void pr_engine_drop_revoked(struct pr_engine *engine,
                                   const rd_kafka_topic_partition_list_t *revoked) {
    size_t dropped =
        pr_engine_drop_revoked_from(engine->deferred, &engine->deferred_count, revoked);
    if (engine->filling)
        dropped += pr_engine_drop_revoked_from(engine->filling->messages,
                                               &engine->filling->message_count, revoked);
    if (dropped)
        pr_info("rebalance: dropped %zu polled, unprocessed messages of revoked partitions",
                dropped);
}

void pr_engine_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *partitions, void *opaque) {
    struct pr_engine *engine = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pr_info("rebalance: assigned %d partitions", partitions->cnt);
        engine->assigned_once = true;
        if (engine->snap) {
            /* Joined, even with nothing to own (more members than partitions). */
            engine->snap->assigned_partitions =
                cooperative ? engine->snap->assigned_partitions + partitions->cnt : partitions->cnt;
            engine->snap->joined = true;
            /* An assignment comes from the group coordinator: Kafka is
             * reachable now, whatever the last statistics said. */
            engine->snap->kafka = PR_READY_OK;
            engine->publish_pending = true;
            pr_engine_forget_txn_offsets(engine, partitions);
        }
        engine->last_message_us = pr_monotonic_us();
        /* The keyed state of the repartition partitions first: none of
         * their records is processed before it is back. */
        if (engine->keyed &&
            pr_keyed_assign(engine->keyed, partitions, engine->repartition_topic) != PR_OK) {
            pr_error("keyed state: a changelog partition cannot be restored; stopping (a "
                     "restart tries again, and the group gives the partitions to another "
                     "member meanwhile)");
            engine->fatal = true;
        }
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, partitions);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, partitions);
        }
        return;
    }
    pr_info("rebalance: %d partitions revoked; finishing batches in flight", partitions->cnt);
    if (engine->snap) {
        /* Eager: everything goes, and the member is between generations
         * until the next assignment. Cooperative: only these partitions. */
        engine->snap->assigned_partitions =
            cooperative ? engine->snap->assigned_partitions - partitions->cnt : 0;
        if (engine->snap->assigned_partitions < 0) engine->snap->assigned_partitions = 0;
        if (!cooperative || rd_kafka_assignment_lost(rk)) engine->snap->joined = false;
        engine->publish_pending = true;
    }
    pr_engine_drop_revoked(engine, partitions);
    engine->commit->drain(engine, true);
    if (engine->keyed)
        pr_keyed_revoke(engine->keyed, partitions, engine->repartition_topic,
                        !cooperative && !rd_kafka_assignment_lost(rk));
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, partitions);
        if (e) rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}
