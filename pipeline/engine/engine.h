/*
 * engine.h - the batch loop of `parcelrisk run`: consume, run the operator
 * chain, produce, and commit offsets only after everything produced for
 * them is acknowledged by the broker.
 */
#ifndef PR_ENGINE_H
#define PR_ENGINE_H

#include <signal.h>

#include "config.h"

struct pr_engine_options {
    /* Exit 0 once no message has arrived for this long after the first
     * assignment (0: run until signalled). For tests, demos, benchmarks. */
    int exit_when_idle_ms;
    /* Set to nonzero by SIGTERM/SIGINT handlers: stop fetching, finish and
     * flush the batch in flight, commit, exit 0. */
    volatile sig_atomic_t *stop;
    /* Set to nonzero by SIGHUP: reload the rule and policy files between
     * batches; an invalid file is refused and the old rules stay. */
    volatile sig_atomic_t *reload;
    /* The parcelrisk version, for parcelrisk_build_info (http.listen). */
    const char *build_version;
};

#define PR_MAX_OPERATOR_STATS 32

struct pr_engine_operator_stats {
    char name[32];
    uint64_t batches, records, busy_us, round_trips, cache_hits, cache_misses;
};

struct pr_engine_totals {
    size_t operator_count;
    struct pr_engine_operator_stats operators[PR_MAX_OPERATOR_STATS];
    uint64_t consumed, decisions, alerts, aggregate_alerts, dead_letters, batches;
    uint64_t output_rejected;   /* OUTPUT_REJECTED dead letters (also in dead_letters) */
    uint64_t repartitioned;     /* intermediate records consumed by stage 2 */
    uint64_t changelog_records; /* keyed-state changes produced (tombstones included) */
    uint64_t purges;            /* the repartition topic purged below the committed offsets */
    /* The keyed state at the end (before the final revoke) and its restores. */
    uint64_t state_keys, state_bytes, state_expired, state_evicted, restored_records;
    double restore_seconds;
    double peak_rss_mb;
    double cpu_seconds, wall_seconds;
    double active_seconds; /* first message consumed to last batch committed */
    uint64_t latency_count, latency_p50_ms, latency_p99_ms, latency_p999_ms, latency_max_ms;
};

/* How the engine ended. The command line maps it to the process exit
 * status (cmd_run.c); the engine itself knows no exit codes. */
enum pr_engine_result {
    PR_ENGINE_DONE = 0,        /* a clean stop, or idle with the input done */
    PR_ENGINE_FAILED,          /* a fatal runtime error: offsets of unfinished batches are not
                                  committed, so a restart processes them again */
    PR_ENGINE_REFUSED,         /* the configuration or the set-up refused (rules, chain, topics'
                                  limits, the registry refusing our schemas) */
    PR_ENGINE_STOPPED_WAITING, /* set-up only: a stop asked for while waiting for a
                                  dependency; pr_engine_run reports it as DONE */
};

/* Runs until stopped or idle. */
enum pr_engine_result pr_engine_run(const struct pr_config *cfg,
                                    const struct pr_engine_options *options,
                                    struct pr_engine_totals *totals);

#endif
