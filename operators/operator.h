/*
 * operator.h - the contract between the engine and an operator.
 *
 * An operator does one job on a whole batch. It never calls Kafka or another
 * operator: the engine owns polling, retries, commits and back-pressure.
 * Operators are declared as a const struct of callbacks with designated
 * initializers (as Fluent Bit declares its filter plugins) and listed in
 * pr_operator_registry (operators/registry.c).
 *
 * Callbacks:
 *
 *   init(op, env)      once, before the first batch. May set op->ctx.
 *                      Returns PR_OK, or PR_ERR with a logged reason; the
 *                      engine then refuses to start (exit 2).
 *
 *   process(op, batch) once per batch, on the engine thread. Reads and writes
 *                      batch->records. Records whose dlq_code is set are
 *                      dead-lettered: operators after decode skip them.
 *                      Returns:
 *                        PR_OP_DONE  (0)  the batch is processed;
 *                        PR_OP_RETRY (>0) a dependency is unavailable: the
 *                                   engine pauses fetching, backs off and
 *                                   calls process() again on the same batch
 *                                   (so process must be idempotent);
 *                        PR_OP_FATAL (<0) the engine stops without committing
 *                                   the batch; it is processed again after a
 *                                   restart (at-least-once).
 *
 *   destroy(op)        once, at shutdown; frees op->ctx.
 */
#ifndef PR_OPERATOR_H
#define PR_OPERATOR_H

#include "config.h"
#include "record-t.h"

#define PR_OP_DONE 0
#define PR_OP_RETRY 1
#define PR_OP_FATAL -1

/* Per-operator counters, reported in the stats line. */
struct pr_operator_stats {
    uint64_t batches;
    uint64_t records;
    uint64_t busy_us;     /* wall time inside process() */
    uint64_t round_trips; /* calls to an outside service (Redis) */
    uint64_t cache_hits, cache_misses;
    uint64_t cache_entries, cache_bytes; /* size of the operator's cache after the last batch */
};

struct pr_state;
struct pr_refdata_snapshot;

/* What an operator may see at init. */
struct pr_operator_env {
    const struct pr_config *cfg;
    /* In-process sources instead of Redis, for `parcelrisk whatif` (NULL for
     * `run`): enrich answers from the snapshot of one reference-data
     * version, aggregate keeps one person one day in the state store. The
     * rules are the same code either way. Both outlive the chain. */
    const struct pr_refdata_snapshot *refdata;
    struct pr_state *state;
    /* `run`, stage 2: the keyed state of each repartition partition this
     * process owns (NULL outside stage 2). */
    const struct pr_state_router *states;
    /* `run`, stage 1: the repartition topic's partition count. */
    int32_t repartition_partitions;
};

/* The state store of a record's partition (the engine's, for `run`). NULL
 * when the partition is not assigned here. */
struct pr_state_router {
    struct pr_state *(*get)(void *ctx, int32_t partition);
    void *ctx;
};

struct pr_operator;

struct pr_operator_ops {
    const char *name;
    const char *description;
    /* Keeps state by key: `run` repartitions the records by their key
     * before the first keyed operator of the chain (stage 2 starts there). */
    bool keyed;
    /* Put in the chain by the engine, never named in a configuration. */
    bool internal;
    int (*init)(struct pr_operator *op, const struct pr_operator_env *env);
    int (*process)(struct pr_operator *op, struct pr_batch *batch);
    void (*destroy)(struct pr_operator *op);
};

struct pr_operator {
    const struct pr_operator_ops *ops;
    void *ctx;
    struct pr_operator_stats stats;
};

/* All operators known to the engine, NULL-terminated. */
extern const struct pr_operator_ops *const pr_operator_registry[];
const struct pr_operator_ops *pr_operator_lookup(const char *name);
/* Tells the configuration layer which operator names key 'chain' may hold,
 * so that a bad name is refused where it was written (file line, --set). */
void pr_operators_register(void);

/* A chain: the operators a config names, in order. */
struct pr_chain {
    size_t count;
    struct pr_operator *ops;
};

/* Builds the chain cfg->chain names; PR_ERR (logged) on an unknown name or a
 * failed init. */
int pr_chain_init(struct pr_chain *chain, const struct pr_config *cfg);
/* `run`'s two stages (issue 12): cfg->chain split before its first keyed
 * operator. stages[0] is the operators before it, then repartition and
 * encode (the dead letters of stage 1); stages[1] is repartition-source,
 * then the keyed operator and the rest. A chain without a keyed operator is
 * one stage: stages[1] stays empty (count 0). Each stage is given its env. */
int pr_chain_init_stages(struct pr_chain stages[2], const struct pr_config *cfg,
                         const struct pr_operator_env *env1, const struct pr_operator_env *env2);

/* Builds the chain of the count operators named, each given env. */
int pr_chain_init_env(struct pr_chain *chain, const char *const *names, size_t count,
                      const struct pr_operator_env *env);
/* Runs every operator on batch in order. Returns the first non-DONE result
 * and, in *failed_at, the index of the operator that gave it. */
int pr_chain_process(struct pr_chain *chain, struct pr_batch *batch, size_t start,
                     size_t *failed_at);
void pr_chain_destroy(struct pr_chain *chain);

#endif
