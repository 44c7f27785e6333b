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
#include "engine.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "operator.h"
#include "codec.h"
#include "histogram.h"
#include "http.h"
#include "kafka.h"
#include "keyed.h"
#include "metrics.h"
#include "probe.h"
#include "rules.h"
#include "schema_registry.h"
#include "schemas.h"
#include "wire.h"

/* Record batch header (61 bytes) and one record's framing, rounded up: what
 * a record needs beyond its key and value to fit max.message.bytes. */
#define PR_RECORD_OVERHEAD 128
/* A dead letter's fields besides key and payload: code, detail (at most
 * ~600 bytes), source topic (at most 249), partition, offset, time. */
#define PR_DEADLETTER_OVERHEAD 1024

/* The outputs the chain makes of a decided record, in the order produced. */
static const uint32_t pr_decided_outputs[] = {PR_OUT_DECISION, PR_OUT_ALERT, PR_OUT_AGGREGATE_ALERT,
                                              PR_OUT_REPARTITION};
#define PR_OUT_DECIDED                                                                             \
    (PR_OUT_DECISION | PR_OUT_ALERT | PR_OUT_AGGREGATE_ALERT | PR_OUT_REPARTITION)

/* The two stages of the topology (issue 12): stage 1 reads declarations and
 * writes the repartition topic, stage 2 reads that and writes decisions. */
enum { PR_STAGE_DECLARATIONS = 0, PR_STAGE_KEYED = 1 };

struct pr_engine;

/* One produced message: its opaque, so that a delivery report finds the
 * record it came from. Lives in the batch arena. */
struct pr_delivery {
    struct pr_slot *slot;
    struct pr_record *rec; /* NULL: an output of no record (the changelog) */
    uint32_t output;       /* enum pr_output */
};

/* A refusal remembered across an aborted transaction (exactly-once), by
 * the input record's partition and offset. */
struct pr_refusal {
    int stage; /* the input topic: PR_STAGE_* */
    int32_t partition;
    int64_t offset;
    uint32_t retried, rejected;
    bool dlq_cut;
    int32_t err;
    const char *topic;
};

/* What a batch's records became, counted as they are produced and added to
 * the metrics only when the batch commits (so the counters never go back
 * when a transaction aborts). */
struct pr_slot_counts {
    uint64_t lanes[4];
    uint64_t dead_letters[PR_DLQ_COUNT];
    uint64_t alerts, aggregate_alerts;
};

/* One batch from poll to commit. */
struct pr_slot {
    struct pr_engine *engine;
    int stage;         /* PR_STAGE_*: which input its messages come from */
    const char *topic; /* and that topic's name */
    struct pr_batch batch;
    rd_kafka_message_t **messages; /* polled, destroyed when the slot is released */
    size_t message_count;
    /* Stage 2: the declarations read back for dead letters (the original
     * message whole, key and all); destroyed with the slot. */
    rd_kafka_message_t **originals;
    size_t original_count;
    size_t outstanding; /* produced, not yet acknowledged */
    bool failed;
    bool refused; /* a record's output was refused: settle before commit */
    /* Next offset to commit per partition of the input topic. */
    size_t offset_count;
    int32_t *partitions;
    int64_t *next_offsets;
    struct pr_slot_counts counts;
};

struct pr_engine {
    const struct pr_config *cfg;
    const struct pr_engine_options *options;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *topic_decisions, *topic_alerts, *topic_dlq;
    rd_kafka_topic_t *topic_repartition, *topic_changelog;
    /* chains[PR_STAGE_*]; chains[1].count == 0: one stage, no keyed state. */
    struct pr_chain chains[2];
    bool two_stages;
    char repartition_topic[256], changelog_topic[256];
    int32_t repartition_partitions;
    struct pr_keyed *keyed;
    /* Messages polled for the other stage while a slot was filling: they
     * start the next slot (a slot holds one stage's messages). */
    rd_kafka_message_t **deferred;
    size_t deferred_count;
    const rd_kafka_topic_t *last_rkt; /* the topic of the last message polled */
    int last_stage;                   /* and its stage */
    rd_kafka_t *fetcher;              /* reads a declaration back for a stage-2 dead letter */
    struct pr_rules *rules;
    size_t slot_count;
    struct pr_slot *slots;
    size_t head; /* oldest in-flight slot */
    size_t inflight;
    struct pr_slot *filling; /* slot being filled by poll, or NULL */
    bool fatal;
    bool assigned_once;
    int64_t last_message_us;
    struct pr_engine_totals totals;
    uint64_t produce_retries;
    uint64_t commits;
    int64_t first_message_us, last_commit_us;
    bool eos; /* exactly_once */
    bool txn_open;
    /* The open transaction hit an abortable error (a refused record): the
     * client takes nothing more in it (RD_KAFKA_RESP_ERR__STATE), so the
     * batches stop emitting and it is aborted at once. */
    bool txn_doomed;
    int64_t txn_started_us;
    size_t txn_records;
    uint64_t txn_commits, txn_aborts;
    uint64_t txn_decisions, txn_alerts, txn_dead_letters; /* counted, not yet committed */
    uint64_t txn_output_rejected;
    /* event_time -> acknowledgement of the decision, ms. */
    struct pr_histogram latency;
    size_t dlq_keep_bytes;
    struct pr_buf scratch;       /* dead letters written by the engine */
    struct pr_refusal *refusals; /* exactly-once: refusals of aborted transactions */
    size_t refusal_count;
    bool settling;
    int64_t client_max_bytes, producer_batch_size;
    rd_kafka_conf_t *producer_conf; /* a copy of it makes each producer */
    int64_t last_produce_error_log_us, last_consumer_error_log_us, last_refusal_log_us;
    size_t refusals_unlogged;
    bool topic_missing_logged;
    /* The HTTP endpoint (http.listen; all NULL when off). snap is the
     * engine's own working copy: the rebalance and statistics callbacks
     * (engine thread) write its state, pr_engine_publish its counters. */
    struct pr_metrics *metrics;
    struct pr_http *http;
    struct pr_probe *probe;
    struct pr_metrics_snapshot *snap;
    struct pr_slot_counts committed;
    uint64_t committed_declarations, committed_batches, committed_changelog_records;
    int64_t last_publish_us;
    bool publish_pending; /* a state changed: publish at the next turn */
    /* Exactly-once: the offsets committed with transactions, by input
     * partition (-1: none since the partition was assigned). The consumer
     * never commits itself then, so librdkafka's consumer_lag stays at the
     * offset it fetched at assignment; the lag is the end offset minus
     * these instead. */
    int64_t *txn_offsets;
    size_t txn_offset_count;
    bool read_committed; /* the consumer's isolation.level: ls_offset is its end */
    /* schema_registry.url set: the ids our outputs are framed with. */
    bool framed;
    struct pr_output_ids frame_ids;
};

static struct pr_refusal *pr_engine_find_refusal(struct pr_engine *engine, int stage,
                                                 int32_t partition, int64_t offset);
static void pr_engine_refresh_limits(struct pr_engine *engine, const struct pr_batch *batch);

/* The operators of both stages, in order: stage 1's, then stage 2's. */
static size_t pr_engine_op_count(const struct pr_engine *engine) {
    return engine->chains[0].count + engine->chains[1].count;
}

static const struct pr_operator *pr_engine_op(const struct pr_engine *engine, size_t i) {
    return i < engine->chains[0].count ? &engine->chains[0].ops[i]
                                       : &engine->chains[1].ops[i - engine->chains[0].count];
}

/* The name of a slot's input topic. */
static const char *pr_engine_input(const struct pr_engine *engine, int stage) {
    return stage == PR_STAGE_KEYED ? engine->repartition_topic : engine->cfg->topic_declarations;
}

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
static void pr_engine_tick(struct pr_engine *engine) {
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
static void pr_engine_note_txn_offsets(struct pr_engine *engine,
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
static void pr_engine_forget_txn_offsets(struct pr_engine *engine,
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
static int pr_engine_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
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
static void pr_engine_dlq_fault(struct pr_engine *engine, const struct pr_record *rec) {
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
static void pr_engine_log_refusals(struct pr_engine *engine, const struct pr_batch *batch,
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

static void pr_engine_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
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

static void pr_engine_release_messages(struct pr_slot *slot) {
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

static void pr_engine_settle(struct pr_engine *engine, struct pr_slot *slot);

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
static void pr_engine_complete(struct pr_engine *engine, bool sync) {
    if (engine->eos) return; /* slots are released when their transaction commits */
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
static void pr_engine_drop_deferred(struct pr_engine *engine) {
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
static void pr_engine_txn_commit(struct pr_engine *engine) {
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

static void pr_engine_txn_begin(struct pr_engine *engine) {
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
static void pr_engine_drain(struct pr_engine *engine, bool sync) {
    if (engine->eos) {
        pr_engine_txn_commit(engine);
        return;
    }
    int64_t last_log = pr_monotonic_us();
    while (engine->inflight > 0 && !engine->fatal) {
        rd_kafka_poll(engine->producer, 100);
        pr_engine_complete(engine, sync);
        pr_engine_tick(engine);
        if (pr_monotonic_us() - last_log > 5000000) {
            pr_warn("waiting for %zu batches to be acknowledged by Kafka", engine->inflight);
            last_log = pr_monotonic_us();
        }
    }
    if (rd_kafka_fatal_error(engine->producer, NULL, 0)) engine->fatal = true;
}

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

static void pr_engine_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
    pr_engine_drain(engine, true);
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
static void pr_engine_refresh_limits(struct pr_engine *engine, const struct pr_batch *batch) {
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
static enum pr_engine_result pr_engine_output_limits(struct pr_engine *engine,
                                                     rd_kafka_conf_t *pconf) {
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

static enum pr_engine_result pr_engine_setup(struct pr_engine *engine) {
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
        pr_engine_complete(engine, false);
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
static void pr_engine_settle(struct pr_engine *engine, struct pr_slot *slot) {
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

static struct pr_refusal *pr_engine_find_refusal(struct pr_engine *engine, int stage,
                                                 int32_t partition, int64_t offset) {
    for (size_t i = 0; i < engine->refusal_count; i++)
        if (engine->refusals[i].stage == stage && engine->refusals[i].partition == partition &&
            engine->refusals[i].offset == offset)
            return &engine->refusals[i];
    return NULL;
}

static void pr_engine_emit(struct pr_engine *engine, struct pr_slot *slot) {
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
        pr_engine_complete(engine, false);
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
            pr_engine_complete(engine, false);
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

enum pr_engine_result pr_engine_run(const struct pr_config *cfg,
                                    const struct pr_engine_options *options,
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
        return PR_ENGINE_REFUSED;
    }
    pr_info("rules: ruleset_version %s", engine->rules->version);
    enum pr_engine_result rc = PR_ENGINE_DONE;
    for (size_t i = 0; i < cfg->chain_len; i++) {
        const struct pr_operator_ops *ops = pr_operator_lookup(cfg->chain[i]);
        if (ops && ops->keyed) engine->two_stages = true;
    }
    pr_config_internal_topic(cfg, PR_TOPIC_REPARTITION, engine->repartition_topic,
                             sizeof(engine->repartition_topic));
    pr_config_internal_topic(cfg, PR_TOPIC_CHANGELOG, engine->changelog_topic,
                             sizeof(engine->changelog_topic));
    pr_buf_init(&engine->scratch);
    if (cfg->http_listen && cfg->http_listen[0]) {
        engine->metrics = pr_metrics_new(cfg->http_stall_ms, options->build_version);
        engine->snap = pr_calloc(1, sizeof(*engine->snap));
        *engine->snap = engine->metrics->shared;
        snprintf(engine->snap->lag_topic, sizeof(engine->snap->lag_topic), "%s",
                 cfg->topic_declarations);
        pr_engine_tick(engine);
        engine->probe = pr_probe_start(cfg, engine->metrics);
        engine->http = engine->probe ? pr_http_start(cfg->http_listen, engine->metrics) : NULL;
        if (!engine->http) {
            rc = PR_ENGINE_FAILED;
            goto out;
        }
    }
    rc = pr_engine_setup(engine);
    if (rc == PR_ENGINE_STOPPED_WAITING) {
        pr_info("stopped while waiting for the output topics or the schema registry");
        rc = PR_ENGINE_DONE;
        goto out;
    }
    if (rc) goto out;
    pr_info("running: group=%s input=%s decisions=%s alerts=%s dlq=%s batch.size=%d chain of %zu "
            "operators",
            cfg->group_id, cfg->topic_declarations, cfg->topic_decisions, cfg->topic_alerts,
            cfg->topic_dlq, cfg->batch_size, pr_engine_op_count(engine));
    if (engine->two_stages)
        pr_info("two stages: %zu operators, then %s (%d partitions, keyed by the consignee "
                "address), then %zu operators with their state in changelog %s",
                engine->chains[0].count, engine->repartition_topic, engine->repartition_partitions,
                engine->chains[1].count, engine->changelog_topic);

    double cpu0 = pr_cpu_seconds();
    int64_t wall0 = pr_monotonic_us(), last_stats = wall0;
    int64_t last_backlog_check = 0, last_backlog_log = 0;
    engine->last_message_us = wall0;
    while (!engine->fatal) {
        pr_engine_tick(engine);
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
        struct pr_slot *slot =
            &engine->slots[(engine->head + engine->inflight) % engine->slot_count];
        engine->filling = slot;
        pr_engine_fill(engine, slot);
        engine->filling = NULL;
        size_t polled = slot->message_count;
        if (polled > 0) {
            enum pr_process_result processed = pr_engine_process(engine, slot);
            if (processed != PR_PROCESSED) {
                pr_engine_release_messages(slot);
                pr_batch_reset(&slot->batch);
                if (processed == PR_PROCESS_FATAL) engine->fatal = true;
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
            if (slot->stage == PR_STAGE_DECLARATIONS)
                engine->totals.consumed += slot->message_count;
            else
                engine->totals.repartitioned += slot->message_count;
            engine->totals.batches++;
            pr_engine_emit(engine, slot);
            /* In flight only once every output is produced: a full producer
             * queue serves delivery reports in the middle of emitting, and
             * a slot counted in flight then could commit with outputs still
             * to come. */
            engine->inflight++;
            rd_kafka_poll(engine->producer, 0);
            pr_engine_complete(engine, false);
        }
        if (engine->eos && engine->txn_open &&
            (polled == 0 /* input idle */ || engine->txn_doomed ||
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
            struct pr_rules *fresh =
                pr_rules_load(cfg->rules_file, cfg->policy_file, err, sizeof(err));
            if (!fresh) {
                pr_error("rules reload refused, %s stays in force: %s", engine->rules->version,
                         err);
            } else {
                pr_info("rules reloaded: ruleset_version %s (was %s)", fresh->version,
                        engine->rules->version);
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
    if (engine->snap) {
        engine->snap->stopping = true; /* /ready: 503 from now on */
        engine->publish_pending = true;
        pr_engine_tick(engine);
    }
    if (!engine->fatal) {
        pr_info("stopping: finishing %zu batches in flight", engine->inflight);
        pr_engine_drain(engine, true);
    }
    engine->totals.cpu_seconds = pr_cpu_seconds() - cpu0;
    if (engine->keyed) {
        struct pr_keyed_stats ks;
        pr_keyed_get_stats(engine->keyed, &ks);
        engine->totals.state_keys = ks.keys;
        engine->totals.state_bytes = ks.bytes;
        engine->totals.state_expired = ks.expired;
        engine->totals.state_evicted = ks.evicted;
        engine->totals.restored_records = ks.restored_records;
        engine->totals.restore_seconds = ks.restore_seconds;
        pr_info("keyed state: %zu keys (consignee-days and address-days), %.1f MB in %zu stores; "
                "%llu changelog records restored in %.2f s, %llu written",
                ks.keys, (double)ks.bytes / 1048576.0, ks.stores,
                (unsigned long long)ks.restored_records, ks.restore_seconds,
                (unsigned long long)engine->totals.changelog_records);
    }
    {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        engine->totals.peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    }
    engine->totals.wall_seconds = (double)(pr_monotonic_us() - wall0) / 1e6;
    if (engine->first_message_us && engine->last_commit_us > engine->first_message_us)
        engine->totals.active_seconds =
            (double)(engine->last_commit_us - engine->first_message_us) / 1e6;
    engine->totals.latency_count = engine->latency.count;
    engine->totals.latency_p50_ms = pr_histogram_quantile(&engine->latency, 0.50);
    engine->totals.latency_p99_ms = pr_histogram_quantile(&engine->latency, 0.99);
    engine->totals.latency_p999_ms = pr_histogram_quantile(&engine->latency, 0.999);
    engine->totals.latency_max_ms = engine->latency.max;
    pr_engine_log_stats(engine, engine->fatal ? "stopped after a fatal error" : "stopped");
    for (size_t i = 0; i < pr_engine_op_count(engine) && i < PR_MAX_OPERATOR_STATS; i++) {
        const struct pr_operator *op = pr_engine_op(engine, i);
        struct pr_engine_operator_stats *st = &engine->totals.operators[i];
        snprintf(st->name, sizeof(st->name), "%s", op->ops->name);
        st->batches = op->stats.batches;
        st->records = op->stats.records;
        st->busy_us = op->stats.busy_us;
        st->round_trips = op->stats.round_trips;
        st->cache_hits = op->stats.cache_hits;
        st->cache_misses = op->stats.cache_misses;
        engine->totals.operator_count = i + 1;
        pr_debug("operator %-10s batches=%llu records=%llu busy=%.3f s round_trips=%llu",
                 op->ops->name, (unsigned long long)op->stats.batches,
                 (unsigned long long)op->stats.records, (double)op->stats.busy_us / 1e6,
                 (unsigned long long)op->stats.round_trips);
    }
    rc = engine->fatal ? PR_ENGINE_FAILED : PR_ENGINE_DONE;

out:
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
        if (engine->topic_decisions) rd_kafka_topic_destroy(engine->topic_decisions);
        if (engine->topic_alerts) rd_kafka_topic_destroy(engine->topic_alerts);
        if (engine->topic_dlq) rd_kafka_topic_destroy(engine->topic_dlq);
        if (engine->topic_repartition) rd_kafka_topic_destroy(engine->topic_repartition);
        if (engine->topic_changelog) rd_kafka_topic_destroy(engine->topic_changelog);
        if (!engine->fatal) rd_kafka_flush(engine->producer, 10000);
        rd_kafka_destroy(engine->producer);
    }
    /* After the clients: closing the consumer still calls the rebalance
     * callback, which writes into the snapshot. */
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
    if (totals) *totals = engine->totals;
    return rc;
}
