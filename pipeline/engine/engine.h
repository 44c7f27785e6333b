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
    uint64_t output_rejected; /* OUTPUT_REJECTED dead letters (also in dead_letters) */
    double cpu_seconds, wall_seconds;
    double active_seconds; /* first message consumed to last batch committed */
    uint64_t latency_count, latency_p50_ms, latency_p99_ms, latency_p999_ms, latency_max_ms;
};

/* Runs until stopped or idle. Returns the process exit status: 0 after a
 * clean stop, 1 after a fatal error (offsets of unfinished batches are not
 * committed, so a restart processes them again), 2 for bad configuration. */
int pr_engine_run(const struct pr_config *cfg, const struct pr_engine_options *options,
                  struct pr_engine_totals *totals);

#endif
