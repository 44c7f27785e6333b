/*
 * metrics.h - what `parcelrisk run` shows on its HTTP endpoint (http.c):
 * the counters of /metrics, the alive check of /health and the conditions
 * of /ready.
 *
 * Three threads meet here and none waits on another:
 *
 *   the engine thread  builds a struct pr_metrics_snapshot from its own
 *                      counters (no lock: they are its own) and publishes it
 *                      about once a second and at state changes
 *                      (pr_metrics_publish). Publishing only tries the lock:
 *                      when the HTTP thread holds it, the engine goes on and
 *                      publishes at its next turn. It also stamps a heartbeat
 *                      (an atomic store) at every turn of its loops.
 *   the HTTP thread    copies the last snapshot under the lock (a memcpy)
 *                      and renders from the copy (pr_metrics_read,
 *                      pr_metrics_render, pr_metrics_ready).
 *   the probe thread   (probe.c) checks Redis and the reference data once a
 *                      second and writes its findings under the same lock.
 *
 * The rendering functions are pure (a snapshot in, text out) so that the
 * unit test checks them line by line.
 *
 * Counters are monotonic for the process lifetime: decisions, alerts and
 * dead letters are counted when their batch commits (its offsets committed
 * at-least-once, or its transaction committed exactly-once), never taken
 * back. Labels carry only codes, lanes, operator names, a topic and a
 * partition, versions: never a name, an address or any declaration content.
 */
#ifndef PR_METRICS_H
#define PR_METRICS_H

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"
#include "histogram.h"
#include "record-t.h"

#define PR_METRICS_MAX_OPERATORS 32
#define PR_METRICS_MAX_CACHES 4
#define PR_METRICS_MAX_PARTITIONS 1024

/* One condition of /ready. */
enum pr_ready_state {
    PR_READY_UNKNOWN = 0, /* not checked yet */
    PR_READY_OK,
    PR_READY_FAILED,
    PR_READY_NOT_NEEDED, /* the chain does not use it (no enrich: no reference data) */
};

struct pr_metrics_operator {
    char name[32];
    uint64_t busy_us;
};

struct pr_metrics_cache {
    char name[32];
    uint64_t hits, misses, entries, bytes;
};

struct pr_metrics_lag {
    int32_t partition;
    int64_t messages;
};

/* What the probe thread finds (probe.c). */
struct pr_metrics_probe {
    enum pr_ready_state redis, refdata;
    char redis_detail[160];   /* hiredis's error ("Connection refused"), never a secret */
    char refdata_detail[320]; /* why the current version is unusable: keys and counts */
};

struct pr_metrics_snapshot {
    /* Committed work. */
    uint64_t declarations;
    uint64_t decisions[4];               /* by enum pr_lane */
    uint64_t dead_letters[PR_DLQ_COUNT]; /* by enum pr_dlq_code; [PR_DLQ_NONE] unused */
    uint64_t alerts, aggregate_alerts, batches;
    uint64_t transactions_committed, transactions_aborted;
    /* The keyed state of stage 2 (issue 12; all 0 without a keyed operator). */
    bool keyed;
    uint64_t state_keys, state_bytes, state_expired, state_evicted;
    uint64_t changelog_records, restored_records;
    uint64_t restore_us;
    /* The chain. */
    size_t operator_count;
    struct pr_metrics_operator operators[PR_METRICS_MAX_OPERATORS];
    uint64_t redis_round_trips;
    size_t cache_count;
    struct pr_metrics_cache caches[PR_METRICS_MAX_CACHES];
    /* Kafka. */
    int64_t producer_queue_messages; /* rd_kafka_outq_len */
    char lag_topic[256];
    size_t lag_count;
    struct pr_metrics_lag lag[PR_METRICS_MAX_PARTITIONS];
    /* State. */
    bool paused; /* paused on a Redis or reference-data outage */
    bool joined; /* the consumer holds an assignment of the group (maybe empty) */
    int assigned_partitions;
    bool stopping;             /* SIGTERM/SIGINT received, or stopped: draining */
    enum pr_ready_state kafka; /* some broker connection UP (librdkafka statistics) */
    char refdata_version[128]; /* of the last decided batch; "" before the first */
    char ruleset_version[256];
    char build_version[64];
    /* event_time -> acknowledgement of the decision, ms. */
    struct pr_histogram latency_ms;
    /* Written by the probe thread, kept by pr_metrics_publish. */
    struct pr_metrics_probe probe;
};

/* The meeting point of the threads. */
struct pr_metrics {
    pthread_mutex_t lock;
    struct pr_metrics_snapshot shared; /* under lock */
    _Atomic int64_t heartbeat_us;      /* pr_monotonic_us of the engine's last turn */
    int64_t stall_us;                  /* /health fails after this long without a turn */
};

/* @locality any thread, before the others start / after they stopped. */
struct pr_metrics *pr_metrics_new(int stall_ms, const char *build_version);
void pr_metrics_free(struct pr_metrics *metrics);

/* Publishes snap (its probe part is ignored). Returns false, having done
 * nothing, when another thread holds the lock: call again later.
 * @locality the engine thread. */
bool pr_metrics_publish(struct pr_metrics *metrics, const struct pr_metrics_snapshot *snap);
/* The engine is turning. @locality the engine thread. */
static inline void pr_metrics_heartbeat(struct pr_metrics *metrics, int64_t now_us) {
    atomic_store_explicit(&metrics->heartbeat_us, now_us, memory_order_relaxed);
}
/* Copies the last published snapshot. @locality the HTTP thread. */
void pr_metrics_read(struct pr_metrics *metrics, struct pr_metrics_snapshot *out);
/* Writes the probe's findings. @locality the probe thread. */
void pr_metrics_set_probe(struct pr_metrics *metrics, const struct pr_metrics_probe *probe);

/* The Prometheus text exposition format, version 0.0.4, of snap. */
void pr_metrics_render(const struct pr_metrics_snapshot *snap, struct pr_buf *out);
/* Whether snap is ready (/ready); body receives a short JSON object:
 * {"ready":true|false,"failing":[...],"checks":{"assignment":...,"kafka":...,
 * "redis":...,"refdata":...}} with the failing conditions named. */
bool pr_metrics_ready(const struct pr_metrics_snapshot *snap, struct pr_buf *body);
/* Appends value to out escaped as a label value of the text format
 * (backslash, double quote and newline escaped). */
void pr_metrics_escape_label(struct pr_buf *out, const char *value);

/* The buckets (le, in seconds) of parcelrisk_decision_latency_seconds. */
extern const double pr_metrics_latency_buckets[];
extern const size_t pr_metrics_latency_bucket_count;

#endif
