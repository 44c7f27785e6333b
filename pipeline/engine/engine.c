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
 *   durably written. Every output carries the batch's processing time
 *   (decided_at / received_at) as its Kafka timestamp, never the
 *   declaration's own clock: the broker's timestamp window and time-based
 *   retention then apply to when we decided.
 *
 * Refused records: a record the broker refuses for a reason that retrying
 *   cannot fix (pr_kafka_err_refuses_record: too large, invalid timestamp,
 *   invalid record, policy) is that record's problem, not the pipeline's.
 *   The producer's batch.size is kept under the smallest max.message.bytes
 *   of the output topics (read at start, and again after a refusal for
 *   size), so a record too large for its topic is refused alone, never with
 *   innocent batch-mates. A refusal reported by the broker is retried once
 *   (it may have been a batch-mate's fault); refused again, the output is
 *   given up and an OUTPUT_REJECTED dead letter with the original message
 *   takes its place. A dead letter the DLQ topic
 *   refuses is written again with its key and payload cut to
 *   input.dlq_keep_bytes; refused again, that is a configuration fault: exit
 *   1. A batch commits only when each of its records has a delivered
 *   decision or dead letter. A missing output topic is not a record's
 *   fault: exit 1 (at start, the engine waits for it instead, one line per
 *   10 s). Any other delivery failure (a fatal producer error, since
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
 *   isolation.level=read_committed see each decision once. A refused record
 *   aborts the transaction (it never commits a record without its decision
 *   or dead letter); the refusal is remembered by partition and offset, and
 *   the batches are processed again with the same retry-once-then-dead-
 *   letter rule as above. Once a refusal has made the transaction abortable
 *   the client refuses every later record of it (Local: Erroneous state);
 *   the batches then stop emitting and the transaction aborts at once.
 *
 * Metrics (http.listen, metrics.h): each slot counts what its records became
 *   (lanes, dead-letter codes, alerts) as they are produced; the counts join
 *   the engine's committed totals when the batch commits, or vanish with an
 *   aborted transaction, so the counters HTTP shows never go back. Every
 *   loop of the engine, including each wait, calls pr_engine_tick: the
 *   heartbeat of /health, and about once a second a snapshot for the HTTP
 *   thread (a trylock: the engine never waits on a scrape).
 */
#include "engine-int.h"

/* ----------------------------------------------------------------- metrics */

/* Fills the engine's snapshot with its counters and publishes it; a
 * publish that finds the HTTP thread holding the lock is left for the next
 * turn. Once a second (and at a state change) only: it copies the latency
 * histogram (20 KiB). */
static void pr_engine_publish(struct pr_engine *engine, int64_t now) {
    struct pr_metrics_snapshot *snap = engine->snap;
    snap->declarations = engine->committed_declarations;
    memcpy(snap->decisions, engine->committed.lanes, sizeof(snap->decisions));
    memcpy(snap->dead_letters, engine->committed.dead_letters, sizeof(snap->dead_letters));
    snap->alerts = engine->committed.alerts;
    snap->aggregate_alerts = engine->committed.aggregate_alerts;
    snap->batches = engine->committed_batches;
    snap->transactions_committed = engine->txn_commits;
    snap->transactions_aborted = engine->txn_aborts;
    if (engine->keyed) {
        /* Once a second: a walk over the partitions' stores, O(partitions). */
        struct pr_keyed_stats ks;
        pr_keyed_get_stats(engine->keyed, &ks);
        snap->keyed = true;
        snap->state_keys = ks.keys;
        snap->state_bytes = ks.bytes;
        snap->state_expired = ks.expired;
        snap->state_evicted = ks.evicted;
        snap->changelog_records = engine->committed_changelog_records;
        snap->restored_records = ks.restored_records;
        snap->restore_us = (uint64_t)(ks.restore_seconds * 1e6);
    }
    snap->operator_count = 0;
    snap->cache_count = 0;
    snap->redis_round_trips = 0;
    for (size_t i = 0; i < pr_engine_op_count(engine); i++) {
        const struct pr_operator *op = pr_engine_op(engine, i);
        /* One series per operator name: both stages end with encode. */
        struct pr_metrics_operator *m = NULL;
        for (size_t k = 0; k < snap->operator_count && !m; k++)
            if (strcmp(snap->operators[k].name, op->ops->name) == 0) m = &snap->operators[k];
        if (!m) {
            if (snap->operator_count == PR_METRICS_MAX_OPERATORS) continue;
            m = &snap->operators[snap->operator_count++];
            snprintf(m->name, sizeof(m->name), "%s", op->ops->name);
            m->busy_us = 0;
        }
        m->busy_us += op->stats.busy_us;
        snap->redis_round_trips += op->stats.round_trips;
        /* enrich holds the one cache: reference-data answers. */
        if (strcmp(op->ops->name, "enrich") == 0 && snap->cache_count < PR_METRICS_MAX_CACHES) {
            struct pr_metrics_cache *c = &snap->caches[snap->cache_count++];
            snprintf(c->name, sizeof(c->name), "refdata");
            c->hits = op->stats.cache_hits;
            c->misses = op->stats.cache_misses;
            c->entries = op->stats.cache_entries;
            c->bytes = op->stats.cache_bytes;
        }
    }
    snap->producer_queue_messages = engine->producer ? rd_kafka_outq_len(engine->producer) : 0;
    snprintf(snap->ruleset_version, sizeof(snap->ruleset_version), "%s", engine->rules->version);
    snap->latency_ms = engine->latency;
    if (pr_metrics_publish(engine->metrics, snap)) {
        engine->last_publish_us = now;
        engine->publish_pending = false;
    }
}

/* One turn of an engine loop: the heartbeat of /health, and the snapshot
 * about once a second or after a state change. Called once per batch and
 * in every wait loop, never per record. */
void pr_engine_tick(struct pr_engine *engine) {
    if (!engine->metrics) return;
    int64_t now = pr_monotonic_us();
    pr_metrics_heartbeat(engine->metrics, now);
    if (engine->publish_pending || now - engine->last_publish_us >= 1000000)
        pr_engine_publish(engine, now);
}

static void pr_engine_set_paused(struct pr_engine *engine, bool paused) {
    if (!engine->snap || engine->snap->paused == paused) return;
    engine->snap->paused = paused;
    engine->publish_pending = true;
}

/* Exactly-once: remembers the offsets a transaction committed (for the lag). */
void pr_engine_note_txn_offsets(struct pr_engine *engine,
                                const rd_kafka_topic_partition_list_t *offsets) {
    for (int i = 0; i < offsets->cnt; i++) {
        int32_t partition = offsets->elems[i].partition;
        if (partition < 0 || partition >= PR_METRICS_MAX_PARTITIONS) continue;
        if (strcmp(offsets->elems[i].topic, engine->cfg->topic_declarations) != 0) continue;
        if ((size_t)partition >= engine->txn_offset_count) {
            size_t count = (size_t)partition + 1;
            engine->txn_offsets =
                pr_realloc(engine->txn_offsets, count * sizeof(*engine->txn_offsets));
            for (size_t k = engine->txn_offset_count; k < count; k++) engine->txn_offsets[k] = -1;
            engine->txn_offset_count = count;
        }
        engine->txn_offsets[partition] = offsets->elems[i].offset;
    }
}

/* A partition assigned (again): what it had committed before may be
 * another member's past; librdkafka's fetched offset is right again. */
void pr_engine_forget_txn_offsets(struct pr_engine *engine,
                                  const rd_kafka_topic_partition_list_t *parts) {
    for (int i = 0; i < parts->cnt; i++)
        if (strcmp(parts->elems[i].topic, engine->cfg->topic_declarations) == 0 &&
            parts->elems[i].partition >= 0 &&
            (size_t)parts->elems[i].partition < engine->txn_offset_count)
            engine->txn_offsets[parts->elems[i].partition] = -1;
}

/* The lag of one partition from its statistics: librdkafka's consumer_lag
 * (end offset minus the committed offset it knows), or, exactly-once, the
 * end offset minus the offset our last transaction committed. -1: unknown. */
static int64_t pr_engine_partition_lag(const struct pr_engine *engine, int32_t partition,
                                       json_t *stats) {
    int64_t mine =
        (size_t)partition < engine->txn_offset_count ? engine->txn_offsets[partition] : -1;
    json_t *end = json_object_get(stats, engine->read_committed ? "ls_offset" : "hi_offset");
    if (mine >= 0 && json_is_integer(end) && json_integer_value(end) >= 0) {
        int64_t lag = (int64_t)json_integer_value(end) - mine;
        return lag > 0 ? lag : 0;
    }
    json_t *lag = json_object_get(stats, "consumer_lag");
    return json_is_integer(lag) && json_integer_value(lag) >= 0 ? (int64_t)json_integer_value(lag)
                                                                : -1;
}

static int pr_lag_compare(const void *a, const void *b) {
    const struct pr_metrics_lag *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* librdkafka's statistics (statistics.interval.ms, 5 s by default here,
 * served by the consumer's poll on the engine thread): whether some broker
 * connection is UP (the "kafka" condition of /ready), and consumer_lag of
 * every assigned input partition (-1, unknown, omitted). */
int pr_engine_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    struct pr_engine *engine = opaque;
    struct pr_metrics_snapshot *snap = engine->snap;
    if (!snap) return 0;
    json_error_t error;
    json_t *root = json_loadb(json, json_len, 0, &error);
    if (!root) {
        pr_debug("librdkafka statistics not parsed: %s", error.text);
        return 0;
    }
    bool up = false;
    const char *name;
    json_t *item;
    json_object_foreach(json_object_get(root, "brokers"), name, item) {
        const char *state = json_string_value(json_object_get(item, "state"));
        if (state && strcmp(state, "UP") == 0) up = true;
    }
    enum pr_ready_state kafka = up ? PR_READY_OK : PR_READY_FAILED;
    if (snap->kafka != kafka) {
        snap->kafka = kafka;
        engine->publish_pending = true;
    }
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(rk, &assigned)) assigned = NULL;
    const char *topic = engine->cfg->topic_declarations;
    json_t *partitions =
        json_object_get(json_object_get(json_object_get(root, "topics"), topic), "partitions");
    size_t count = 0;
    json_object_foreach(partitions, name, item) {
        long long id;
        if (pr_parse_integer(name, 0, INT32_MAX, &id) != PR_OK)
            continue; /* "-1": unassigned messages */
        if (!assigned || !rd_kafka_topic_partition_list_find(assigned, topic, (int32_t)id))
            continue;
        int64_t lag = pr_engine_partition_lag(engine, (int32_t)id, item);
        if (lag < 0) continue;
        if (count == PR_METRICS_MAX_PARTITIONS) break;
        snap->lag[count++] = (struct pr_metrics_lag){(int32_t)id, lag};
    }
    qsort(snap->lag, count, sizeof(snap->lag[0]), pr_lag_compare);
    snap->lag_count = count;
    if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
    json_decref(root);
    return 0; /* librdkafka frees json */
}

/* ------------------------------------------------------------------- loop */

/* Fills engine->filling with up to batch.size messages. Once the first
 * message is in, the batch waits batch.linger_ms for more; after that it is
 * processed as soon as the consumer's queue has nothing waiting, and at the
 * latest batch.timeout_ms after its first message. Under load the queue is
 * never empty and batches are full (few Redis round trips per declaration);
 * at a low rate a batch is small and leaves within about batch.linger_ms
 * (low latency). */
static int pr_engine_stage_of(struct pr_engine *engine, const rd_kafka_message_t *m) {
    if (m->rkt == engine->last_rkt) return engine->last_stage;
    int stage =
        engine->two_stages && strcmp(rd_kafka_topic_name(m->rkt), engine->repartition_topic) == 0
            ? PR_STAGE_KEYED
            : PR_STAGE_DECLARATIONS;
    engine->last_rkt = m->rkt;
    engine->last_stage = stage;
    return stage;
}

/* Moves the deferred messages of the first one's stage into slot, in
 * order; the others stay deferred. */
static void pr_engine_take_deferred(struct pr_engine *engine, struct pr_slot *slot) {
    size_t kept = 0;
    for (size_t i = 0; i < engine->deferred_count; i++) {
        rd_kafka_message_t *m = engine->deferred[i];
        if (slot->message_count < (size_t)engine->cfg->batch_size &&
            pr_engine_stage_of(engine, m) == slot->stage)
            slot->messages[slot->message_count++] = m;
        else
            engine->deferred[kept++] = m;
    }
    engine->deferred_count = kept;
}

static void pr_engine_fill(struct pr_engine *engine, struct pr_slot *slot) {
    const struct pr_config *cfg = engine->cfg;
    int64_t deadline = 0, linger_end = 0;
    slot->stage = PR_STAGE_DECLARATIONS;
    if (engine->deferred_count > 0) {
        slot->stage = pr_engine_stage_of(engine, engine->deferred[0]);
        pr_engine_take_deferred(engine, slot);
        int64_t first = pr_monotonic_us();
        deadline = first + cfg->batch_timeout_ms * 1000LL;
        linger_end = first + cfg->batch_linger_ms * 1000LL;
    }
    while (slot->message_count < (size_t)cfg->batch_size && !*engine->options->stop &&
           engine->deferred_count < (size_t)cfg->batch_size) {
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
        engine->commit->complete(engine, false);
        if (!m) {
            if (slot->message_count == 0) break; /* nothing yet: let the caller check idle/stop */
            if (timeout_ms == 0) break;          /* lingered, and the queue is empty */
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                pr_monotonic_us() - engine->last_consumer_error_log_us > 10000000) {
                engine->last_consumer_error_log_us = pr_monotonic_us();
                pr_warn("consumer: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        int stage = pr_engine_stage_of(engine, m);
        if (slot->message_count == 0) {
            slot->stage = stage;
            int64_t first = pr_monotonic_us();
            deadline = first + cfg->batch_timeout_ms * 1000LL;
            linger_end = first + cfg->batch_linger_ms * 1000LL;
        }
        if (!engine->first_message_us) engine->first_message_us = pr_monotonic_us();
        engine->last_message_us = pr_monotonic_us();
        if (stage != slot->stage) {
            engine->deferred[engine->deferred_count++] = m; /* starts the next slot */
            continue;
        }
        slot->messages[slot->message_count++] = m;
    }
    slot->topic = pr_engine_input(engine, slot->stage);
    slot->batch.source_topic = slot->topic;
}

enum pr_process_result { PR_PROCESSED, PR_PROCESS_STOPPED, PR_PROCESS_FATAL };

/* Runs the chain on a filled slot, retrying with back-off while an operator
 * asks for it (a dependency is down). A stop asked for while waiting leaves
 * the batch unprocessed and uncommitted (PR_PROCESS_STOPPED: a clean stop,
 * the batch is processed again after a restart). */
static enum pr_process_result pr_engine_process(struct pr_engine *engine, struct pr_slot *slot) {
    struct pr_batch *batch = &slot->batch;
    for (size_t i = 0; i < slot->message_count; i++) pr_kafka_batch_push(batch, slot->messages[i]);
    batch->now_ms = pr_now_ms();
    batch->rules = engine->rules;
    batch->frame = engine->framed ? &engine->frame_ids : NULL;
    batch->refdata_version = "none"; /* enrich sets the version it used */
    struct pr_chain *chain = &engine->chains[slot->stage];
    bool keyed = slot->stage == PR_STAGE_KEYED;
    if (keyed) pr_keyed_begin(engine->keyed, batch, engine->topic_changelog);
    size_t start = 0, failed_at = 0;
    int backoff_ms = 100;
    for (;;) {
        int rc = pr_chain_process(chain, batch, start, &failed_at);
        if (rc == PR_OP_DONE) break;
        pr_engine_set_paused(engine, rc > 0);
        if (rc < 0) {
            pr_error("operator %s failed; stopping without committing the batch",
                     chain->ops[failed_at].ops->name);
            if (keyed) pr_keyed_begin(engine->keyed, NULL, NULL);
            return PR_PROCESS_FATAL;
        }
        if (*engine->options->stop) {
            pr_warn("operator %s unavailable at shutdown; the batch is left uncommitted and is "
                    "processed again after a restart",
                    chain->ops[failed_at].ops->name);
            if (keyed) pr_keyed_begin(engine->keyed, NULL, NULL);
            return PR_PROCESS_STOPPED;
        }
        pr_warn("operator %s: dependency unavailable, retrying in %d ms",
                chain->ops[failed_at].ops->name, backoff_ms);
        for (int waited = 0; waited < backoff_ms; waited += 100) {
            rd_kafka_poll(engine->producer, 100);
            engine->commit->complete(engine, false);
            pr_engine_tick(engine);
        }
        backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
        start = failed_at;
    }
    if (keyed) pr_keyed_end(engine->keyed); /* expiry: its tombstones go with the batch */
    pr_engine_set_paused(engine, false);
    if (engine->snap && slot->stage == PR_STAGE_DECLARATIONS &&
        strcmp(batch->refdata_version, engine->snap->refdata_version) != 0) {
        snprintf(engine->snap->refdata_version, sizeof(engine->snap->refdata_version), "%s",
                 batch->refdata_version);
        engine->publish_pending = true;
    }
    return PR_PROCESSED;
}

/* --exit-when-idle: this instance is idle, but the input is done only when
 * the whole group is. Partitions assigned here are caught up (nothing was
 * polled for the idle time); every other partition of the input topic must
 * have a committed offset at its high watermark. Otherwise another member,
 * possibly one that died and has not yet been expired by the coordinator,
 * still owes work, and exiting would leave it undecided until the next run.
 * Returns the number of messages the rest of the group has not committed,
 * or -1 if it could not be read. */
/* The messages of topic on partitions assigned elsewhere that the group has
 * not committed; slack: offsets per partition that may be a transaction's
 * control record (the marker after the last records of a transaction
 * takes an offset no consumer ever commits past). */
static int64_t pr_engine_topic_backlog(struct pr_engine *engine, const char *topic, int64_t slack) {
    const struct rd_kafka_metadata *md;
    if (pr_kafka_topic_metadata(engine->consumer, topic, 5000, &md)) return -1;
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (rd_kafka_assignment(engine->consumer, &mine)) {
        rd_kafka_metadata_destroy(md);
        return -1;
    }
    rd_kafka_topic_partition_list_t *others =
        rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
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
        if (rd_kafka_query_watermark_offsets(engine->consumer, topic, others->elems[i].partition,
                                             &low, &high, 5000)) {
            backlog = -1;
            break;
        }
        int64_t committed = others->elems[i].offset >= 0 ? others->elems[i].offset : low;
        if (high > committed + slack) backlog += high - committed;
    }
    rd_kafka_topic_partition_list_destroy(others);
    return backlog;
}

/* Both inputs: the declarations, and (two stages) the repartition topic,
 * which stage 1 of any member may still be writing. */
static int64_t pr_engine_group_backlog(struct pr_engine *engine) {
    int64_t backlog = pr_engine_topic_backlog(engine, engine->cfg->topic_declarations, 0);
    if (backlog < 0 || !engine->two_stages) return backlog;
    /* Written in transactions (exactly-once): one marker may follow the
     * last committed record; an unprocessed transaction is at least a
     * record and its marker. */
    int64_t keyed = pr_engine_topic_backlog(engine, engine->repartition_topic, engine->eos ? 1 : 0);
    return keyed < 0 ? -1 : backlog + keyed;
}

static void pr_engine_log_stats(struct pr_engine *engine, const char *prefix) {
    struct pr_engine_totals *t = &engine->totals;
    pr_info(
        "%s: consumed=%llu decisions=%llu alerts=%llu dlq=%llu output_rejected=%llu batches=%llu "
        "inflight=%zu commits=%llu queue_full_waits=%llu transactions=%llu aborted=%llu",
        prefix, (unsigned long long)t->consumed, (unsigned long long)t->decisions,
        (unsigned long long)t->alerts, (unsigned long long)t->dead_letters,
        (unsigned long long)t->output_rejected, (unsigned long long)t->batches, engine->inflight,
        (unsigned long long)engine->commits, (unsigned long long)engine->produce_retries,
        (unsigned long long)engine->txn_commits, (unsigned long long)engine->txn_aborts);
}

static double pr_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* SIGHUP: between batches, so one batch sees one rule set. An invalid
 * file is refused and the rules in force stay. */
static void pr_engine_reload_rules(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    char err[512];
    struct pr_rules *fresh = pr_rules_load(cfg->rules_file, cfg->policy_file, err, sizeof(err));
    if (!fresh) {
        pr_error("rules reload refused, %s stays in force: %s", engine->rules->version, err);
        return;
    }
    pr_info("rules reloaded: ruleset_version %s (was %s)", fresh->version, engine->rules->version);
    pr_rules_free(engine->rules);
    engine->rules = fresh;
}

/* --exit-when-idle: whether this instance may stop now (idle for the time
 * asked, nothing in flight, and the whole group done; checked at most once
 * a second, and said at most once per 10 s while the group is not). */
static bool pr_engine_idle_done(struct pr_engine *engine, int64_t now) {
    const struct pr_engine_options *options = engine->options;
    if (options->exit_when_idle_ms <= 0 || !engine->assigned_once || engine->inflight != 0 ||
        now - engine->last_message_us <= options->exit_when_idle_ms * 1000LL ||
        now - engine->last_backlog_check_us < 1000000)
        return false;
    engine->last_backlog_check_us = now;
    int64_t backlog = pr_engine_group_backlog(engine);
    if (backlog == 0) {
        pr_info("idle for %d ms and the group has committed all of %s: stopping",
                options->exit_when_idle_ms, engine->cfg->topic_declarations);
        return true;
    }
    if (now - engine->last_backlog_log_us >= 10000000) {
        engine->last_backlog_log_us = now;
        if (backlog < 0)
            pr_info("idle, but the group's committed offsets cannot be read yet; waiting");
        else
            pr_info("idle, but %lld declarations on partitions assigned elsewhere are not "
                    "committed yet; waiting for the group",
                    (long long)backlog);
    }
    return false;
}

/* One slot: filled, processed by its stage's chain, emitted, in flight.
 * Returns the messages it polled (0: the input is idle), or -1 to stop
 * (fatal, or a stop asked for while a dependency was down). */
static long pr_engine_turn(struct pr_engine *engine) {
    struct pr_slot *slot = &engine->slots[(engine->head + engine->inflight) % engine->slot_count];
    engine->filling = slot;
    pr_engine_fill(engine, slot);
    engine->filling = NULL;
    size_t polled = slot->message_count;
    if (polled == 0) return 0;
    enum pr_process_result processed = pr_engine_process(engine, slot);
    if (processed != PR_PROCESSED || !engine->commit->begin(engine, slot)) {
        pr_engine_release_messages(slot);
        pr_batch_reset(&slot->batch);
        if (processed == PR_PROCESS_FATAL) engine->fatal = true;
        return -1;
    }
    if (slot->stage == PR_STAGE_DECLARATIONS)
        engine->totals.consumed += slot->message_count;
    else
        engine->totals.repartitioned += slot->message_count;
    engine->totals.batches++;
    pr_engine_emit(engine, slot);
    /* In flight only once every output is produced: a full producer queue
     * serves delivery reports in the middle of emitting, and a slot counted
     * in flight then could commit with outputs still to come. */
    engine->inflight++;
    rd_kafka_poll(engine->producer, 0);
    engine->commit->complete(engine, false);
    return (long)polled;
}

/*
 * Two stages: the records of the repartition topic below the group's
 * committed offsets are done with (a new owner starts at the committed
 * offset, an abort rewinds to it), so they are deleted (DeleteRecords), as
 * Kafka Streams purges its repartition topics: the topic holds what stage 2
 * has not yet committed, not a week of intermediate records. Every
 * topics.repartition_purge_ms (0: never), for the partitions assigned here;
 * a failure is logged and tried again at the next.
 */
static void pr_engine_purge(struct pr_engine *engine, int64_t now) {
    int64_t interval_us = engine->cfg->repartition_purge_ms * 1000LL;
    if (!engine->two_stages || interval_us <= 0 || now - engine->last_purge_us < interval_us)
        return;
    engine->last_purge_us = now;
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (rd_kafka_assignment(engine->consumer, &mine) || !mine) return;
    rd_kafka_topic_partition_list_t *owned = rd_kafka_topic_partition_list_new(mine->cnt);
    for (int i = 0; i < mine->cnt; i++)
        if (strcmp(mine->elems[i].topic, engine->repartition_topic) == 0)
            rd_kafka_topic_partition_list_add(owned, mine->elems[i].topic,
                                              mine->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(mine);
    rd_kafka_topic_partition_list_t *below = rd_kafka_topic_partition_list_new(owned->cnt);
    if (owned->cnt > 0 && rd_kafka_committed(engine->consumer, owned, 5000) == 0)
        for (int i = 0; i < owned->cnt; i++)
            if (owned->elems[i].offset > 0)
                rd_kafka_topic_partition_list_add(below, owned->elems[i].topic,
                                                  owned->elems[i].partition)
                    ->offset = owned->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(owned);
    if (below->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(below);
        return;
    }
    rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(below);
    rd_kafka_topic_partition_list_destroy(below);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(engine->producer);
    /* The request times out before the wait does, so its result always
     * comes back to this queue (an answer left pending would outlive it). */
    char err[256];
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(engine->producer, RD_KAFKA_ADMIN_OP_DELETERECORDS);
    rd_kafka_AdminOptions_set_request_timeout(options, 3000, err, sizeof(err));
    rd_kafka_AdminOptions_set_operation_timeout(options, 3000, err, sizeof(err));
    rd_kafka_DeleteRecords(engine->producer, &del, 1, options, queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_DeleteRecords_destroy(del);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 10000);
    const char *why = !ev ? "no answer within 10 s" : rd_kafka_event_error_string(ev);
    if (!ev || rd_kafka_event_error(ev)) {
        pr_warn("purging %s below the committed offsets: %s (tried again in %lld s)",
                engine->repartition_topic, why,
                (long long)engine->cfg->repartition_purge_ms / 1000);
    } else {
        const rd_kafka_topic_partition_list_t *done =
            rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        for (int i = 0; done && i < done->cnt; i++)
            if (done->elems[i].err)
                pr_debug("purging %s partition %d: %s", engine->repartition_topic,
                         done->elems[i].partition, rd_kafka_err2str(done->elems[i].err));
        engine->totals.purges++;
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(queue);
}

/* The loop, until stopped, idle with the group done, or fatal. */
static void pr_engine_loop(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    const struct pr_engine_options *options = engine->options;
    int64_t last_stats = pr_monotonic_us();
    engine->last_message_us = last_stats;
    while (!engine->fatal) {
        pr_engine_tick(engine);
        if (engine->inflight == engine->slot_count) {
            engine->commit->full(engine); /* back-pressure: every slot waits */
            continue;
        }
        long polled = pr_engine_turn(engine);
        if (polled < 0) break;
        engine->commit->turn(engine, (size_t)polled);
        int64_t now = pr_monotonic_us();
        if (cfg->stats_interval_ms > 0 && now - last_stats >= cfg->stats_interval_ms * 1000LL) {
            pr_engine_log_stats(engine, "stats");
            last_stats = now;
        }
        if (*options->stop) break;
        if (options->reload && *options->reload) {
            *options->reload = 0;
            pr_engine_reload_rules(engine);
        }
        pr_engine_purge(engine, now);
        if (pr_engine_idle_done(engine, now)) break;
    }
}

/* The endpoint (http.listen): metrics, probe thread, HTTP server. */
static enum pr_engine_result pr_engine_start_http(struct pr_engine *engine) {
    const struct pr_config *cfg = engine->cfg;
    if (!cfg->http_listen || !cfg->http_listen[0]) return PR_ENGINE_DONE;
    engine->metrics = pr_metrics_new(cfg->http_stall_ms, engine->options->build_version);
    engine->snap = pr_calloc(1, sizeof(*engine->snap));
    *engine->snap = engine->metrics->shared;
    snprintf(engine->snap->lag_topic, sizeof(engine->snap->lag_topic), "%s",
             cfg->topic_declarations);
    pr_engine_tick(engine);
    engine->probe = pr_probe_start(cfg, engine->metrics);
    engine->http = engine->probe ? pr_http_start(cfg->http_listen, engine->metrics) : NULL;
    return engine->http ? PR_ENGINE_DONE : PR_ENGINE_FAILED;
}

/* The totals of the run (its summary), after the last commit. */
static void pr_engine_sum_up(struct pr_engine *engine, double cpu0, int64_t wall0) {
    struct pr_engine_totals *t = &engine->totals;
    t->cpu_seconds = pr_cpu_seconds() - cpu0;
    if (engine->keyed) {
        struct pr_keyed_stats ks;
        pr_keyed_get_stats(engine->keyed, &ks);
        t->state_keys = ks.keys;
        t->state_bytes = ks.bytes;
        t->state_expired = ks.expired;
        t->state_evicted = ks.evicted;
        t->restored_records = ks.restored_records;
        t->restore_seconds = ks.restore_seconds;
        pr_info("keyed state: %zu keys (consignee-days and address-days), %.1f MB in %zu stores; "
                "%llu changelog records restored in %.2f s, %llu written",
                ks.keys, (double)ks.bytes / 1048576.0, ks.stores,
                (unsigned long long)ks.restored_records, ks.restore_seconds,
                (unsigned long long)t->changelog_records);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    t->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    t->wall_seconds = (double)(pr_monotonic_us() - wall0) / 1e6;
    if (engine->first_message_us && engine->last_commit_us > engine->first_message_us)
        t->active_seconds = (double)(engine->last_commit_us - engine->first_message_us) / 1e6;
    t->latency_count = engine->latency.count;
    t->latency_p50_ms = pr_histogram_quantile(&engine->latency, 0.50);
    t->latency_p99_ms = pr_histogram_quantile(&engine->latency, 0.99);
    t->latency_p999_ms = pr_histogram_quantile(&engine->latency, 0.999);
    t->latency_max_ms = engine->latency.max;
    pr_engine_log_stats(engine, engine->fatal ? "stopped after a fatal error" : "stopped");
    for (size_t i = 0; i < pr_engine_op_count(engine) && i < PR_MAX_OPERATOR_STATS; i++) {
        const struct pr_operator *op = pr_engine_op(engine, i);
        struct pr_engine_operator_stats *st = &t->operators[i];
        snprintf(st->name, sizeof(st->name), "%s", op->ops->name);
        st->batches = op->stats.batches;
        st->records = op->stats.records;
        st->busy_us = op->stats.busy_us;
        st->round_trips = op->stats.round_trips;
        st->cache_hits = op->stats.cache_hits;
        st->cache_misses = op->stats.cache_misses;
        t->operator_count = i + 1;
        pr_debug("operator %-10s batches=%llu records=%llu busy=%.3f s round_trips=%llu",
                 op->ops->name, (unsigned long long)op->stats.batches,
                 (unsigned long long)op->stats.records, (double)op->stats.busy_us / 1e6,
                 (unsigned long long)op->stats.round_trips);
    }
}

/* Everything the engine holds, clients first (their callbacks still write
 * into the snapshot), then the endpoint. */
static void pr_engine_free(struct pr_engine *engine) {
    if (engine->snap) {
        /* The last counts, before the endpoint goes (a scrape during the
         * drain saw them already, unless the lock was busy then). */
        engine->snap->stopping = true;
        engine->publish_pending = true;
        for (int attempt = 0; attempt < 100 && engine->publish_pending; attempt++) {
            if (attempt)
                nanosleep(&(struct timespec){0, 1000000}, NULL); /* a scrape holds the lock */
            pr_engine_tick(engine);
        }
    }
    /* Polled messages hold references that rd_kafka_destroy waits for. */
    for (size_t i = 0; i < engine->slot_count; i++) pr_engine_release_messages(&engine->slots[i]);
    pr_engine_drop_deferred(engine);
    if (engine->fetcher) {
        rd_kafka_consumer_close(engine->fetcher);
        rd_kafka_destroy(engine->fetcher);
    }
    if (engine->consumer) {
        if (!engine->fatal) rd_kafka_consumer_close(engine->consumer);
        rd_kafka_destroy(engine->consumer);
    }
    if (engine->producer) {
        rd_kafka_topic_t *topics[] = {engine->topic_decisions, engine->topic_alerts,
                                      engine->topic_dlq, engine->topic_repartition,
                                      engine->topic_changelog};
        for (size_t i = 0; i < PR_ARRAY_LEN(topics); i++)
            if (topics[i]) rd_kafka_topic_destroy(topics[i]);
        if (!engine->fatal) rd_kafka_flush(engine->producer, 10000);
        rd_kafka_destroy(engine->producer);
    }
    pr_http_stop(engine->http);
    pr_probe_stop(engine->probe);
    pr_metrics_free(engine->metrics);
    free(engine->snap);
    free(engine->txn_offsets);
    for (size_t i = 0; i < engine->slot_count; i++) {
        pr_batch_destroy(&engine->slots[i].batch);
        free(engine->slots[i].messages);
        free(engine->slots[i].originals);
        free(engine->slots[i].partitions);
        free(engine->slots[i].next_offsets);
    }
    free(engine->slots);
    free(engine->refusals);
    if (engine->producer_conf) rd_kafka_conf_destroy(engine->producer_conf);
    pr_buf_free(&engine->scratch);
    pr_chain_destroy(&engine->chains[0]);
    pr_chain_destroy(&engine->chains[1]);
    pr_keyed_free(engine->keyed);
    free(engine->deferred);
    pr_rules_free(engine->rules);
}

enum pr_engine_result pr_engine_run(const struct pr_config *cfg,
                                    const struct pr_engine_options *options,
                                    struct pr_engine_totals *totals) {
    struct pr_engine engine_storage;
    struct pr_engine *engine = &engine_storage;
    memset(engine, 0, sizeof(*engine));
    engine->cfg = cfg;
    engine->options = options;
    engine->eos = strcmp(cfg->guarantee, "exactly_once") == 0;
    engine->commit = engine->eos ? &pr_commit_exactly_once : &pr_commit_at_least_once;
    char err[512];
    engine->rules = pr_rules_load(cfg->rules_file, cfg->policy_file, err, sizeof(err));
    if (!engine->rules) {
        pr_error("rules: %s", err);
        if (totals) memset(totals, 0, sizeof(*totals));
        return PR_ENGINE_REFUSED;
    }
    pr_info("rules: ruleset_version %s", engine->rules->version);
    for (size_t i = 0; i < cfg->chain_len; i++) {
        const struct pr_operator_ops *ops = pr_operator_lookup(cfg->chain[i]);
        if (ops && ops->keyed) engine->two_stages = true;
    }
    pr_config_internal_topic(cfg, PR_TOPIC_REPARTITION, engine->repartition_topic,
                             sizeof(engine->repartition_topic));
    pr_config_internal_topic(cfg, PR_TOPIC_CHANGELOG, engine->changelog_topic,
                             sizeof(engine->changelog_topic));
    pr_buf_init(&engine->scratch);
    enum pr_engine_result rc = pr_engine_start_http(engine);
    if (rc == PR_ENGINE_DONE) rc = pr_engine_setup(engine);
    if (rc == PR_ENGINE_STOPPED_WAITING) {
        pr_info("stopped while waiting for the output topics or the schema registry");
        rc = PR_ENGINE_DONE;
    } else if (rc == PR_ENGINE_DONE) {
        pr_info("running: group=%s input=%s decisions=%s alerts=%s dlq=%s batch.size=%d chain of "
                "%zu operators",
                cfg->group_id, cfg->topic_declarations, cfg->topic_decisions, cfg->topic_alerts,
                cfg->topic_dlq, cfg->batch_size, pr_engine_op_count(engine));
        if (engine->two_stages)
            pr_info("two stages: %zu operators, then %s (%d partitions, keyed by the consignee "
                    "address), then %zu operators with their state in changelog %s",
                    engine->chains[0].count, engine->repartition_topic,
                    engine->repartition_partitions, engine->chains[1].count,
                    engine->changelog_topic);
        double cpu0 = pr_cpu_seconds();
        int64_t wall0 = pr_monotonic_us();
        pr_engine_loop(engine);
        if (engine->snap) {
            engine->snap->stopping = true; /* /ready: 503 from now on */
            engine->publish_pending = true;
            pr_engine_tick(engine);
        }
        if (!engine->fatal) {
            pr_info("stopping: finishing %zu batches in flight", engine->inflight);
            engine->commit->drain(engine, true);
            /* What this instance committed last is purged too. */
            if (!engine->fatal)
                pr_engine_purge(engine,
                                engine->last_purge_us + engine->cfg->repartition_purge_ms * 1000LL);
        }
        pr_engine_sum_up(engine, cpu0, wall0);
        rc = engine->fatal ? PR_ENGINE_FAILED : PR_ENGINE_DONE;
    }
    pr_engine_free(engine);
    if (totals) *totals = engine->totals;
    return rc;
}
