/*
 * engine-int.h - what the files of the engine share (private to
 * pipeline/engine/): the engine and its slot ring, and the functions one
 * file of the engine calls in another.
 *
 *   engine.c   the loop: fill a slot, process it through its stage's chain,
 *              emit it; metrics; --exit-when-idle; pr_engine_run
 *   emit.c     producing a slot's outputs, delivery reports, refusals and
 *              their dead letters, the output topics' size limits
 *   commit.c   the slot ring's commit: at-least-once (offsets) and
 *              exactly-once (transactions), rewind, rebalance
 *   setup.c    clients, topics (the internal ones made here), chains, schemas
 *   keyed.c    the keyed state of stage 2 (keyed.h)
 */
#ifndef PR_ENGINE_INT_H
#define PR_ENGINE_INT_H

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
extern const uint32_t pr_decided_outputs[4];
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

/*
 * How the slot ring commits: two implementations of one interface
 * (commit.c). At-least-once commits each leading batch's offsets once all
 * its outputs are acknowledged; exactly-once commits transactions over the
 * batches in flight. The loop (engine.c) calls, in order:
 *
 *   begin(engine, slot)    a processed slot is about to emit; false: stop
 *                          (a fatal error, logged)
 *   complete(engine, sync) commit what is complete, without waiting; called
 *                          between batches and in every wait for room
 *   full(engine)           every slot is in flight: make room (may wait)
 *   turn(engine, polled)   the end of a loop turn that polled `polled`
 *                          messages (0: the input is idle)
 *   drain(engine, sync)    commit everything in flight, waiting for it
 *                          (revoke, stop)
 */
struct pr_commit_ops {
    const char *name;
    bool (*begin)(struct pr_engine *engine, struct pr_slot *slot);
    void (*complete)(struct pr_engine *engine, bool sync);
    void (*full)(struct pr_engine *engine);
    void (*turn)(struct pr_engine *engine, size_t polled);
    void (*drain)(struct pr_engine *engine, bool sync);
};

extern const struct pr_commit_ops pr_commit_at_least_once, pr_commit_exactly_once;

struct pr_engine {
    const struct pr_config *cfg;
    const struct pr_commit_ops *commit; /* processing.guarantee */
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
    const rd_kafka_topic_t *last_rkt;                   /* the topic of the last message polled */
    int last_stage;                                     /* and its stage */
    int64_t last_backlog_check_us, last_backlog_log_us; /* --exit-when-idle */
    int64_t last_purge_us; /* the repartition topic's purge (engine.c) */
    rd_kafka_t *fetcher;   /* reads a declaration back for a stage-2 dead letter */
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

/* The operators of both stages, in order: stage 1's, then stage 2's. */
static inline size_t pr_engine_op_count(const struct pr_engine *engine) {
    return engine->chains[0].count + engine->chains[1].count;
}

static inline const struct pr_operator *pr_engine_op(const struct pr_engine *engine, size_t i) {
    return i < engine->chains[0].count ? &engine->chains[0].ops[i]
                                       : &engine->chains[1].ops[i - engine->chains[0].count];
}

/* The name of a slot's input topic. */
static inline const char *pr_engine_input(const struct pr_engine *engine, int stage) {
    return stage == PR_STAGE_KEYED ? engine->repartition_topic : engine->cfg->topic_declarations;
}

/* commit.c */
void pr_engine_drop_deferred(struct pr_engine *engine);
void pr_engine_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *partitions, void *opaque);
void pr_engine_release_messages(struct pr_slot *slot);
void pr_engine_txn_begin(struct pr_engine *engine);
void pr_engine_txn_commit(struct pr_engine *engine);
void pr_slot_track_offset(struct pr_slot *slot, int32_t partition, int64_t offset);

/* emit.c */
void pr_engine_dlq_fault(struct pr_engine *engine, const struct pr_record *rec);
void pr_engine_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);
void pr_engine_emit(struct pr_engine *engine, struct pr_slot *slot);
struct pr_refusal *pr_engine_find_refusal(struct pr_engine *engine, int stage, int32_t partition,
                                          int64_t offset);
void pr_engine_log_refusals(struct pr_engine *engine, const struct pr_batch *batch,
                            const char *then);
enum pr_engine_result pr_engine_output_limits(struct pr_engine *engine, rd_kafka_conf_t *pconf);
void pr_engine_refresh_limits(struct pr_engine *engine, const struct pr_batch *batch);
void pr_engine_settle(struct pr_engine *engine, struct pr_slot *slot);

/* engine.c */
void pr_engine_forget_txn_offsets(struct pr_engine *engine,
                                  const rd_kafka_topic_partition_list_t *parts);
void pr_engine_note_txn_offsets(struct pr_engine *engine,
                                const rd_kafka_topic_partition_list_t *offsets);
int pr_engine_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
void pr_engine_tick(struct pr_engine *engine);

/* setup.c */
enum pr_engine_result pr_engine_setup(struct pr_engine *engine);

#endif
