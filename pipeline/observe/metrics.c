/*
 * metrics.c - the snapshot shared by the engine and the HTTP thread, and its
 * rendering as Prometheus text (exposition format 0.0.4) and as the /ready
 * answer. See metrics.h for who calls what from which thread.
 *
 * Names follow the Prometheus conventions: the parcelrisk_ prefix, base
 * units (seconds, bytes), _total for counters, _info gauges of value 1 for
 * versions. Every lane and every dead-letter code is shown from the start
 * (at 0), so a dashboard or an alert rule never meets a missing series.
 */
#include "metrics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decision latency is measured from the hub's event_time, so it includes
 * the hub's and the broker's time: buckets from 5 ms to an hour. */
const double pr_metrics_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                             2.5,   5,    10,    30,   60,  300,  3600};
const size_t pr_metrics_latency_bucket_count = PR_ARRAY_LEN(pr_metrics_latency_buckets);

struct pr_metrics *pr_metrics_new(int stall_ms, const char *build_version) {
    struct pr_metrics *metrics = pr_calloc(1, sizeof(*metrics));
    pthread_mutex_init(&metrics->lock, NULL);
    metrics->stall_us = (int64_t)stall_ms * 1000;
    atomic_store(&metrics->heartbeat_us, pr_monotonic_us());
    snprintf(metrics->shared.build_version, sizeof(metrics->shared.build_version), "%s",
             build_version ? build_version : "unknown");
    return metrics;
}

void pr_metrics_free(struct pr_metrics *metrics) {
    if (!metrics) return;
    pthread_mutex_destroy(&metrics->lock);
    free(metrics);
}

bool pr_metrics_publish(struct pr_metrics *metrics, const struct pr_metrics_snapshot *snap) {
    if (pthread_mutex_trylock(&metrics->lock) != 0) return false;
    struct pr_metrics_probe probe = metrics->shared.probe;
    metrics->shared = *snap;
    metrics->shared.probe = probe;
    pthread_mutex_unlock(&metrics->lock);
    return true;
}

void pr_metrics_read(struct pr_metrics *metrics, struct pr_metrics_snapshot *out) {
    pthread_mutex_lock(&metrics->lock);
    *out = metrics->shared;
    pthread_mutex_unlock(&metrics->lock);
}

void pr_metrics_set_probe(struct pr_metrics *metrics, const struct pr_metrics_probe *probe) {
    pthread_mutex_lock(&metrics->lock);
    metrics->shared.probe = *probe;
    pthread_mutex_unlock(&metrics->lock);
}

/* ---------------------------------------------------------------- render */

void pr_metrics_escape_label(struct pr_buf *out, const char *value) {
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            pr_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            pr_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            pr_buf_append(out, "\\n", 2);
        else
            pr_buf_append(out, p, 1);
    }
}

static void pr_metric_header(struct pr_buf *out, const char *name, const char *type,
                             const char *help) {
    pr_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} count */
static void pr_metric_labelled(struct pr_buf *out, const char *name, const char *label,
                               const char *value, uint64_t count) {
    pr_buf_appendf(out, "%s{%s=\"", name, label);
    pr_metrics_escape_label(out, value);
    pr_buf_appendf(out, "\"} %llu\n", (unsigned long long)count);
}

static void pr_metric_counter(struct pr_buf *out, const char *name, const char *help,
                              uint64_t count) {
    pr_metric_header(out, name, "counter", help);
    pr_buf_appendf(out, "%s %llu\n", name, (unsigned long long)count);
}

static void pr_metric_info(struct pr_buf *out, const char *name, const char *help,
                           const char *version) {
    pr_metric_header(out, name, "gauge", help);
    pr_metric_labelled(out, name, "version", version, 1);
}

/* A cache metric for every cache of the snapshot; field is an offset into
 * struct pr_metrics_cache. */
static void pr_metric_caches(struct pr_buf *out, const struct pr_metrics_snapshot *s,
                             const char *name, const char *type, const char *help, size_t field) {
    pr_metric_header(out, name, type, help);
    for (size_t i = 0; i < s->cache_count; i++) {
        const uint64_t *value = (const uint64_t *)((const char *)&s->caches[i] + field);
        pr_metric_labelled(out, name, "cache", s->caches[i].name, *value);
    }
}

void pr_metrics_render(const struct pr_metrics_snapshot *s, struct pr_buf *out) {
    pr_metric_counter(
        out, "parcelrisk_declarations_total",
        "Declarations read from the input topic and committed (decided or dead-lettered).",
        s->declarations);

    pr_metric_header(out, "parcelrisk_decisions_total", "counter", "Decisions committed, by lane.");
    for (int lane = 0; lane < 4; lane++)
        pr_metric_labelled(out, "parcelrisk_decisions_total", "lane", pr_lane_names[lane],
                           s->decisions[lane]);

    pr_metric_header(out, "parcelrisk_dead_letters_total", "counter",
                     "Dead letters committed, by error_code.");
    for (int code = 1; code < PR_DLQ_COUNT; code++)
        pr_metric_labelled(out, "parcelrisk_dead_letters_total", "code", pr_dlq_names[code],
                           s->dead_letters[code]);

    pr_metric_counter(out, "parcelrisk_alerts_total",
                      "Alerts committed (YELLOW and RED decisions).", s->alerts);
    pr_metric_counter(out, "parcelrisk_aggregate_alerts_total", "Aggregate alerts committed.",
                      s->aggregate_alerts);
    pr_metric_counter(out, "parcelrisk_batches_total", "Batches committed.", s->batches);

    pr_metric_header(out, "parcelrisk_operator_busy_seconds_total", "counter",
                     "Wall time spent inside each operator of the chain.");
    for (size_t i = 0; i < s->operator_count; i++) {
        pr_buf_appendf(out, "parcelrisk_operator_busy_seconds_total{operator=\"");
        pr_metrics_escape_label(out, s->operators[i].name);
        pr_buf_appendf(out, "\"} %llu.%06llu\n",
                       (unsigned long long)(s->operators[i].busy_us / 1000000),
                       (unsigned long long)(s->operators[i].busy_us % 1000000));
    }

    pr_metric_counter(out, "parcelrisk_redis_round_trips_total",
                      "Round trips to Redis made by the chain.", s->redis_round_trips);
    pr_metric_caches(out, s, "parcelrisk_cache_hits_total", "counter",
                     "Lookups answered by the cache.", offsetof(struct pr_metrics_cache, hits));
    pr_metric_caches(out, s, "parcelrisk_cache_misses_total", "counter",
                     "Lookups the cache could not answer.",
                     offsetof(struct pr_metrics_cache, misses));
    pr_metric_caches(out, s, "parcelrisk_cache_entries", "gauge", "Entries held by the cache.",
                     offsetof(struct pr_metrics_cache, entries));
    pr_metric_caches(out, s, "parcelrisk_cache_bytes", "gauge",
                     "Memory held by the cache, in bytes.",
                     offsetof(struct pr_metrics_cache, bytes));

    pr_metric_counter(out, "parcelrisk_transactions_committed_total",
                      "Kafka transactions committed (processing.guarantee: exactly_once).",
                      s->transactions_committed);
    pr_metric_counter(out, "parcelrisk_transactions_aborted_total",
                      "Kafka transactions aborted (their batches are processed again).",
                      s->transactions_aborted);

    if (s->keyed) {
        pr_metric_header(
            out, "parcelrisk_state_keys", "gauge",
            "Consignee-days and address-days held by the keyed state of this process.");
        pr_buf_appendf(out, "parcelrisk_state_keys %llu\n", (unsigned long long)s->state_keys);
        pr_metric_header(out, "parcelrisk_state_bytes", "gauge",
                         "Memory held by the keyed state of this process, in bytes.");
        pr_buf_appendf(out, "parcelrisk_state_bytes %llu\n", (unsigned long long)s->state_bytes);
        pr_metric_counter(out, "parcelrisk_state_expired_total",
                          "Keyed-state days dropped state.ttl_hours after their last update.",
                          s->state_expired);
        pr_metric_counter(out, "parcelrisk_state_evicted_total",
                          "Keyed-state days dropped by the state.max_mb bound (decisions may "
                          "differ: raise it).",
                          s->state_evicted);
        pr_metric_counter(out, "parcelrisk_changelog_records_total",
                          "Keyed-state changes written to the changelog (tombstones included).",
                          s->changelog_records);
        pr_metric_counter(out, "parcelrisk_state_restored_records_total",
                          "Changelog records read back on assignment.", s->restored_records);
        pr_metric_header(out, "parcelrisk_state_restore_seconds_total", "counter",
                         "Time spent restoring the keyed state from the changelog.");
        pr_buf_appendf(out, "parcelrisk_state_restore_seconds_total %llu.%06llu\n",
                       (unsigned long long)(s->restore_us / 1000000),
                       (unsigned long long)(s->restore_us % 1000000));
    }

    pr_metric_header(out, "parcelrisk_producer_queue_messages", "gauge",
                     "Messages in the producer's queue, not yet acknowledged (rd_kafka_outq_len).");
    pr_buf_appendf(out, "parcelrisk_producer_queue_messages %lld\n",
                   (long long)s->producer_queue_messages);

    pr_metric_header(
        out, "parcelrisk_consumer_lag_messages", "gauge",
        "Messages of each assigned input partition not yet committed (librdkafka statistics).");
    for (size_t i = 0; i < s->lag_count; i++) {
        pr_buf_appendf(out, "parcelrisk_consumer_lag_messages{topic=\"");
        pr_metrics_escape_label(out, s->lag_topic);
        pr_buf_appendf(out, "\",partition=\"%d\"} %lld\n", (int)s->lag[i].partition,
                       (long long)s->lag[i].messages);
    }

    pr_metric_header(out, "parcelrisk_paused", "gauge",
                     "1 while the pipeline is paused on a Redis or reference-data outage.");
    pr_buf_appendf(out, "parcelrisk_paused %d\n", s->paused ? 1 : 0);
    pr_metric_header(out, "parcelrisk_ready", "gauge", "1 when /ready answers 200.");
    pr_buf_appendf(out, "parcelrisk_ready %d\n", pr_metrics_ready(s, NULL) ? 1 : 0);

    pr_metric_info(out, "parcelrisk_refdata_info",
                   "The reference-data version of the last decided batch.",
                   s->refdata_version[0] ? s->refdata_version : "none");
    pr_metric_info(out, "parcelrisk_ruleset_info", "The ruleset_version in force (rules/policy).",
                   s->ruleset_version[0] ? s->ruleset_version : "none");
    pr_metric_info(out, "parcelrisk_build_info", "The parcelrisk version.",
                   s->build_version[0] ? s->build_version : "unknown");

    const struct pr_histogram *h = &s->latency_ms;
    pr_metric_header(
        out, "parcelrisk_decision_latency_seconds", "histogram",
        "From a declaration's event_time to the broker's acknowledgement of its decision.");
    for (size_t i = 0; i < pr_metrics_latency_bucket_count; i++) {
        double le = pr_metrics_latency_buckets[i];
        uint64_t bound_ms = (uint64_t)(le * 1000.0 + 0.5);
        pr_buf_appendf(out, "parcelrisk_decision_latency_seconds_bucket{le=\"%g\"} %llu\n", le,
                       (unsigned long long)pr_histogram_count_at_most(h, bound_ms));
    }
    pr_buf_appendf(out, "parcelrisk_decision_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)h->count);
    pr_buf_appendf(out, "parcelrisk_decision_latency_seconds_sum %llu.%03llu\n",
                   (unsigned long long)(h->sum / 1000), (unsigned long long)(h->sum % 1000));
    pr_buf_appendf(out, "parcelrisk_decision_latency_seconds_count %llu\n",
                   (unsigned long long)h->count);
}

/* ----------------------------------------------------------------- ready */

static const char *pr_ready_state_name(enum pr_ready_state state) {
    switch (state) {
    case PR_READY_OK: return "ok";
    case PR_READY_FAILED: return "failed";
    case PR_READY_NOT_NEEDED: return "not needed";
    default: return "unknown";
    }
}

static bool pr_ready_state_passes(enum pr_ready_state state) {
    return state == PR_READY_OK || state == PR_READY_NOT_NEEDED;
}

bool pr_metrics_ready(const struct pr_metrics_snapshot *s, struct pr_buf *body) {
    bool assignment = s->joined && !s->stopping;
    bool ready = assignment && s->kafka == PR_READY_OK && pr_ready_state_passes(s->probe.redis) &&
                 pr_ready_state_passes(s->probe.refdata);
    if (!body) return ready;
    json_t *failing = json_array();
    if (s->stopping)
        json_array_append_new(failing, json_string("stopping"));
    else if (!s->joined)
        json_array_append_new(failing, json_string("assignment"));
    if (s->kafka != PR_READY_OK) json_array_append_new(failing, json_string("kafka"));
    if (!pr_ready_state_passes(s->probe.redis))
        json_array_append_new(failing, json_string("redis"));
    /* Unknown because Redis is down: Redis is the condition that fails. */
    if (s->probe.refdata == PR_READY_FAILED ||
        (s->probe.refdata == PR_READY_UNKNOWN && s->probe.redis == PR_READY_OK))
        json_array_append_new(failing, json_string("refdata"));
    json_t *checks = json_object();
    json_object_set_new(checks, "assignment",
                        json_string(s->stopping ? "stopping"
                                    : s->joined ? "ok"
                                                : "not joined"));
    json_object_set_new(checks, "assigned_partitions", json_integer(s->assigned_partitions));
    json_object_set_new(checks, "kafka",
                        json_string(s->kafka == PR_READY_OK       ? "ok"
                                    : s->kafka == PR_READY_FAILED ? "no broker reachable"
                                                                  : "unknown"));
    json_object_set_new(checks, "redis", json_string(pr_ready_state_name(s->probe.redis)));
    if (s->probe.redis == PR_READY_FAILED && s->probe.redis_detail[0])
        json_object_set_new(checks, "redis_detail", json_string(s->probe.redis_detail));
    json_object_set_new(checks, "refdata", json_string(pr_ready_state_name(s->probe.refdata)));
    if (s->probe.refdata == PR_READY_FAILED && s->probe.refdata_detail[0])
        json_object_set_new(checks, "refdata_detail", json_string(s->probe.refdata_detail));
    json_t *root =
        json_pack("{s:b, s:o, s:o}", "ready", ready, "failing", failing, "checks", checks);
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
        pr_buf_append(body, text, strlen(text));
        pr_buf_append(body, "\n", 1);
        free(text);
    }
    json_decref(root);
    return ready;
}
