/*
 * keyed.h - the keyed state of `run`'s stage 2 (issue 12): one state store
 * (pipeline/domain/state.h) per repartition partition this process owns,
 * each made durable in the same partition of the compacted changelog topic.
 *
 *   assign   before any record of a partition is processed, its store is
 *            rebuilt from its changelog partition (read to its end; with
 *            exactly-once, read_committed, so an aborted transaction's
 *            changes never count), and the restore is logged with its
 *            size and time;
 *   batches  while a stage-2 batch is processed, every change a store makes
 *            is written into the batch as a changelog output (partition =
 *            the store's), so the engine produces it with the batch's
 *            decisions and commits the repartition offsets only after it
 *            is acknowledged (at-least-once) or in the same transaction
 *            (exactly-once); after the batch, the stores are expired by
 *            processing time and the tombstones go with the batch too;
 *   revoke   the partition's store is dropped (its changelog has it all),
 *            or, in an eager rebalance, kept aside until the assignment
 *            says whether it comes back (then it needs no restore);
 *   abort    (exactly-once) the stores hold changes of the aborted
 *            transaction: every owned store is rebuilt from its changelog.
 *
 * @locality the engine thread only.
 */
#ifndef PR_KEYED_H
#define PR_KEYED_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "operator.h"

struct pr_keyed;

/* changelog: the topic's name (outlives the struct); partitions: the
 * repartition topic's count; read_committed: restore with
 * isolation.level=read_committed (exactly-once). NULL when the restore
 * consumer cannot be made (logged). */
struct pr_keyed *pr_keyed_new(const struct pr_config *cfg, const char *changelog,
                              int32_t partitions, bool read_committed);
void pr_keyed_free(struct pr_keyed *keyed);

/* What the aggregate operator asks for the store of a record's partition. */
const struct pr_state_router *pr_keyed_router(struct pr_keyed *keyed);

/* Restores the stores of the partitions of parts that belong to topic
 * (the repartition topic; others are ignored). PR_ERR (logged) when a
 * changelog partition cannot be read: the engine must not process them. */
int pr_keyed_assign(struct pr_keyed *keyed, const rd_kafka_topic_partition_list_t *parts,
                    const char *topic);
/* Drops the stores of the partitions of parts that belong to topic; keep
 * (an eager rebalance whose assignment was not lost) keeps them aside
 * instead, and the next pr_keyed_assign reuses those it gets back without a
 * restore and drops the others. */
void pr_keyed_revoke(struct pr_keyed *keyed, const rd_kafka_topic_partition_list_t *parts,
                     const char *topic, bool keep);
/* Rebuilds every owned store from its changelog (after an abort). */
int pr_keyed_reload(struct pr_keyed *keyed);

/* Around the processing of one stage-2 batch: changes go to batch->extra
 * for sink (the engine's changelog handle); end expires the stores at
 * batch->now_ms, tombstones into the batch as well. */
void pr_keyed_begin(struct pr_keyed *keyed, struct pr_batch *batch, const void *sink);
void pr_keyed_end(struct pr_keyed *keyed);

struct pr_keyed_stats {
    size_t stores, keys, bytes; /* of the stores owned now */
    uint64_t expired, evicted;  /* since start, dropped stores included */
    uint64_t restored_records;
    double restore_seconds; /* spent restoring, all assignments */
};
void pr_keyed_get_stats(const struct pr_keyed *keyed, struct pr_keyed_stats *out);

#endif
