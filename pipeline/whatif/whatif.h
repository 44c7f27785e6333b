/*
 * whatif.h - `parcelrisk whatif`: replay a window of the input topic under
 * the rules and policy in force (baseline) and under candidate files, and
 * report what would have changed (issue 15).
 *
 * Nothing is written to Kafka, to Redis or to the state keys: the consumer
 * never commits (partitions are read with explicit start offsets, no group
 * membership), no producer exists, the reference data is snapshotted once
 * from Redis with a read-only script, and each side keeps its
 * one-person-one-day state in process (pipeline/domain/state.c), built from the
 * replayed window. Both sides decide through the operators of `run`
 * (decode, validate, enrich, policy, screen, aggregate, sample, score).
 */
#ifndef PR_WHATIF_H
#define PR_WHATIF_H

#include "config.h"

struct pr_whatif_options {
    int64_t from_ms, to_ms; /* the window, [from, to) */
    bool by_timestamp;      /* window by the Kafka timestamp, not arrival_time */
    int64_t scan_from_ms; /* arrival_time mode: start reading at this Kafka timestamp; < 0: the log
                             start */
    const char *rules_path, *policy_path;                   /* candidate (NULL: the baseline's) */
    const char *baseline_rules_path, *baseline_policy_path; /* NULL: the configuration's */
    const char *out_dir;
    const char *all_path; /* --all: every decided declaration as a JSON line; NULL: none */
    int listed_max;       /* changed declarations listed in report.md */
    size_t batch_size;    /* records decided per side per step */
    size_t state_max_mb;  /* per side; 0: unbounded */
    bool quiet;           /* no progress line */
    bool charts;          /* PNG charts with gnuplot when it is installed */
};

/* Returns the exit status: 0 done (report written), 1 a runtime failure
 * (Kafka, Redis, a file), 2 a rule or policy file refused. */
int pr_whatif_run(const struct pr_config *cfg, const struct pr_whatif_options *options);

#endif
