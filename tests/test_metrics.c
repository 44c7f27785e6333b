/* Unit tests: the Prometheus text of /metrics and the /ready answer
 * (pipeline/observe/metrics.c), checked line by line against the expected text;
 * label escaping; histogram buckets cumulative with +Inf equal to _count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static const char *const expected_lines[] = {
    "# HELP parcelrisk_declarations_total Declarations read from the input topic and committed "
    "(decided or dead-lettered).",
    "# TYPE parcelrisk_declarations_total counter",
    "parcelrisk_declarations_total 1234",
    "# HELP parcelrisk_decisions_total Decisions committed, by lane.",
    "# TYPE parcelrisk_decisions_total counter",
    "parcelrisk_decisions_total{lane=\"GREEN\"} 1000",
    "parcelrisk_decisions_total{lane=\"BLUE\"} 200",
    "parcelrisk_decisions_total{lane=\"YELLOW\"} 20",
    "parcelrisk_decisions_total{lane=\"RED\"} 4",
    "# HELP parcelrisk_dead_letters_total Dead letters committed, by error_code.",
    "# TYPE parcelrisk_dead_letters_total counter",
    "parcelrisk_dead_letters_total{code=\"EMPTY\"} 1",
    "parcelrisk_dead_letters_total{code=\"TOO_LARGE\"} 0",
    "parcelrisk_dead_letters_total{code=\"DECODE_ERROR\"} 7",
    "parcelrisk_dead_letters_total{code=\"TRAILING_BYTES\"} 0",
    "parcelrisk_dead_letters_total{code=\"INVALID_UTF8\"} 0",
    "parcelrisk_dead_letters_total{code=\"UNKNOWN_SCHEMA\"} 0",
    "parcelrisk_dead_letters_total{code=\"INVALID_ID\"} 0",
    "parcelrisk_dead_letters_total{code=\"OUTPUT_REJECTED\"} 2",
    "# HELP parcelrisk_alerts_total Alerts committed (YELLOW and RED decisions).",
    "# TYPE parcelrisk_alerts_total counter",
    "parcelrisk_alerts_total 24",
    "# HELP parcelrisk_aggregate_alerts_total Aggregate alerts committed.",
    "# TYPE parcelrisk_aggregate_alerts_total counter",
    "parcelrisk_aggregate_alerts_total 3",
    "# HELP parcelrisk_batches_total Batches committed.",
    "# TYPE parcelrisk_batches_total counter",
    "parcelrisk_batches_total 5",
    "# HELP parcelrisk_operator_busy_seconds_total Wall time spent inside each operator of the "
    "chain.",
    "# TYPE parcelrisk_operator_busy_seconds_total counter",
    "parcelrisk_operator_busy_seconds_total{operator=\"decode\"} 1.500000",
    "parcelrisk_operator_busy_seconds_total{operator=\"we\\\"ird\\\\op\\nx\"} 0.000042",
    "# HELP parcelrisk_redis_round_trips_total Round trips to Redis made by the chain.",
    "# TYPE parcelrisk_redis_round_trips_total counter",
    "parcelrisk_redis_round_trips_total 10",
    "# HELP parcelrisk_cache_hits_total Lookups answered by the cache.",
    "# TYPE parcelrisk_cache_hits_total counter",
    "parcelrisk_cache_hits_total{cache=\"refdata\"} 90",
    "# HELP parcelrisk_cache_misses_total Lookups the cache could not answer.",
    "# TYPE parcelrisk_cache_misses_total counter",
    "parcelrisk_cache_misses_total{cache=\"refdata\"} 11",
    "# HELP parcelrisk_cache_entries Entries held by the cache.",
    "# TYPE parcelrisk_cache_entries gauge",
    "parcelrisk_cache_entries{cache=\"refdata\"} 11",
    "# HELP parcelrisk_cache_bytes Memory held by the cache, in bytes.",
    "# TYPE parcelrisk_cache_bytes gauge",
    "parcelrisk_cache_bytes{cache=\"refdata\"} 4096",
    "# HELP parcelrisk_transactions_committed_total Kafka transactions committed "
    "(processing.guarantee: exactly_once).",
    "# TYPE parcelrisk_transactions_committed_total counter",
    "parcelrisk_transactions_committed_total 6",
    "# HELP parcelrisk_transactions_aborted_total Kafka transactions aborted (their batches are "
    "processed again).",
    "# TYPE parcelrisk_transactions_aborted_total counter",
    "parcelrisk_transactions_aborted_total 1",
    "# HELP parcelrisk_producer_queue_messages Messages in the producer's queue, not yet "
    "acknowledged (rd_kafka_outq_len).",
    "# TYPE parcelrisk_producer_queue_messages gauge",
    "parcelrisk_producer_queue_messages 17",
    "# HELP parcelrisk_consumer_lag_messages Messages of each assigned input partition not yet "
    "committed (librdkafka statistics).",
    "# TYPE parcelrisk_consumer_lag_messages gauge",
    "parcelrisk_consumer_lag_messages{topic=\"in.declarations\",partition=\"0\"} 0",
    "parcelrisk_consumer_lag_messages{topic=\"in.declarations\",partition=\"5\"} 12345",
    "# HELP parcelrisk_paused 1 while the pipeline is paused on a Redis or reference-data outage.",
    "# TYPE parcelrisk_paused gauge",
    "parcelrisk_paused 1",
    "# HELP parcelrisk_ready 1 when /ready answers 200.",
    "# TYPE parcelrisk_ready gauge",
    "parcelrisk_ready 0",
    "# HELP parcelrisk_refdata_info The reference-data version of the last decided batch.",
    "# TYPE parcelrisk_refdata_info gauge",
    "parcelrisk_refdata_info{version=\"v\\\"1\\\\2+degraded\"} 1",
    "# HELP parcelrisk_ruleset_info The ruleset_version in force (rules/policy).",
    "# TYPE parcelrisk_ruleset_info gauge",
    "parcelrisk_ruleset_info{version=\"r7/p3\"} 1",
    "# HELP parcelrisk_build_info The parcelrisk version.",
    "# TYPE parcelrisk_build_info gauge",
    "parcelrisk_build_info{version=\"0.1.0\"} 1",
    "# HELP parcelrisk_decision_latency_seconds From a declaration's event_time to the broker's "
    "acknowledgement of its decision.",
    "# TYPE parcelrisk_decision_latency_seconds histogram",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.005\"} 1",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.01\"} 2",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.025\"} 2",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.05\"} 2",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.1\"} 3",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.25\"} 3",
    "parcelrisk_decision_latency_seconds_bucket{le=\"0.5\"} 3",
    "parcelrisk_decision_latency_seconds_bucket{le=\"1\"} 3",
    "parcelrisk_decision_latency_seconds_bucket{le=\"2.5\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"5\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"10\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"30\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"60\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"300\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"3600\"} 4",
    "parcelrisk_decision_latency_seconds_bucket{le=\"+Inf\"} 5",
    "parcelrisk_decision_latency_seconds_sum 5002.110",
    "parcelrisk_decision_latency_seconds_count 5",
};

static struct pr_metrics_snapshot *example_snapshot(void) {
    struct pr_metrics_snapshot *s = calloc(1, sizeof(*s));
    s->declarations = 1234;
    s->decisions[PR_LANE_GREEN] = 1000;
    s->decisions[PR_LANE_BLUE] = 200;
    s->decisions[PR_LANE_YELLOW] = 20;
    s->decisions[PR_LANE_RED] = 4;
    s->dead_letters[PR_DLQ_EMPTY] = 1;
    s->dead_letters[PR_DLQ_DECODE_ERROR] = 7;
    s->dead_letters[PR_DLQ_OUTPUT_REJECTED] = 2;
    s->alerts = 24;
    s->aggregate_alerts = 3;
    s->batches = 5;
    s->operator_count = 2;
    snprintf(s->operators[0].name, sizeof(s->operators[0].name), "decode");
    s->operators[0].busy_us = 1500000;
    /* Not a name the registry has: it only shows the escaping. */
    snprintf(s->operators[1].name, sizeof(s->operators[1].name), "we\"ird\\op\nx");
    s->operators[1].busy_us = 42;
    s->redis_round_trips = 10;
    s->cache_count = 1;
    snprintf(s->caches[0].name, sizeof(s->caches[0].name), "refdata");
    s->caches[0].hits = 90;
    s->caches[0].misses = 11;
    s->caches[0].entries = 11;
    s->caches[0].bytes = 4096;
    s->transactions_committed = 6;
    s->transactions_aborted = 1;
    s->producer_queue_messages = 17;
    snprintf(s->lag_topic, sizeof(s->lag_topic), "in.declarations");
    s->lag_count = 2;
    s->lag[0] = (struct pr_metrics_lag){0, 0};
    s->lag[1] = (struct pr_metrics_lag){5, 12345};
    s->paused = true;
    s->joined = true;
    s->assigned_partitions = 2;
    s->kafka = PR_READY_OK;
    s->probe.redis = PR_READY_FAILED;
    snprintf(s->probe.redis_detail, sizeof(s->probe.redis_detail), "Connection refused");
    snprintf(s->refdata_version, sizeof(s->refdata_version), "v\"1\\2+degraded");
    snprintf(s->ruleset_version, sizeof(s->ruleset_version), "r7/p3");
    snprintf(s->build_version, sizeof(s->build_version), "0.1.0");
    /* 3 ms, 7 ms, 100 ms (exact buckets below 128), 2 s (bucket 2000-2015),
     * 5000 s (beyond the last bound: +Inf only). */
    uint64_t values[] = {3, 7, 100, 2000, 5000000};
    for (size_t i = 0; i < PR_ARRAY_LEN(values); i++)
        pr_histogram_record(&s->latency_ms, values[i]);
    return s;
}

static void test_render_line_by_line(void **state) {
    (void)state;
    struct pr_metrics_snapshot *s = example_snapshot();
    struct pr_buf out;
    pr_buf_init(&out);
    pr_metrics_render(s, &out);
    pr_buf_append(&out, "", 1);
    char *text = (char *)out.data;
    assert_true(out.len > 1 && text[out.len - 2] == '\n'); /* the format ends every line */
    size_t line_no = 0;
    for (char *line = text, *next; *line; line = next, line_no++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        next = nl + 1;
        if (line_no >= PR_ARRAY_LEN(expected_lines))
            fail_msg("extra line %zu: %s", line_no + 1, line);
        if (strcmp(line, expected_lines[line_no]) != 0)
            fail_msg("line %zu:\n  got  %s\n  want %s", line_no + 1, line, expected_lines[line_no]);
    }
    assert_int_equal(line_no, PR_ARRAY_LEN(expected_lines));
    pr_buf_free(&out);
    free(s);
}

static void test_escape_label(void **state) {
    (void)state;
    struct pr_buf out;
    pr_buf_init(&out);
    pr_metrics_escape_label(&out, "a\\b\"c\nd\te");
    pr_buf_append(&out, "", 1);
    assert_string_equal((char *)out.data, "a\\\\b\\\"c\\nd\te");
    pr_buf_free(&out);
}

/* Buckets cumulative, +Inf equal to _count, on many values of every size. */
static void test_histogram_buckets_cumulative(void **state) {
    (void)state;
    struct pr_metrics_snapshot *s = calloc(1, sizeof(*s));
    uint64_t x = 88172645463325252ULL, sum = 0;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = (x % 4 == 0)   ? x % 100
                     : (x % 4 == 1) ? x % 5000
                     : (x % 4 == 2) ? x % 200000
                                    : x % 7200000;
        pr_histogram_record(&s->latency_ms, v);
        sum += v;
    }
    struct pr_buf out;
    pr_buf_init(&out);
    pr_metrics_render(s, &out);
    pr_buf_append(&out, "", 1);
    const char *p = (const char *)out.data;
    uint64_t last = 0, inf = 0, count = 0;
    size_t buckets = 0;
    for (const char *line = p; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned long long value;
        char le[32];
        if (sscanf(line, "parcelrisk_decision_latency_seconds_bucket{le=\"%31[^\"]\"} %llu", le,
                   &value) == 2) {
            assert_true(value >= last);
            last = value;
            buckets++;
            if (strcmp(le, "+Inf") == 0) inf = value;
        } else if (sscanf(line, "parcelrisk_decision_latency_seconds_count %llu", &value) == 1) {
            count = value;
        }
    }
    assert_int_equal(buckets, pr_metrics_latency_bucket_count + 1);
    assert_int_equal(count, 100000);
    assert_int_equal(inf, count);
    assert_int_equal(s->latency_ms.sum, sum);
    /* Exact below 64 ms; at a bound, never more than what is really under it. */
    uint64_t exact = 0;
    for (uint64_t v = 0; v <= 50; v++) exact += s->latency_ms.buckets[v];
    assert_int_equal(pr_histogram_count_at_most(&s->latency_ms, 50), exact);
    pr_buf_free(&out);
    free(s);
}

static void test_ready_body(void **state) {
    (void)state;
    struct pr_metrics_snapshot *s = example_snapshot();
    struct pr_buf body;
    pr_buf_init(&body);
    assert_false(pr_metrics_ready(s, &body));
    pr_buf_append(&body, "", 1);
    assert_string_equal(
        (char *)body.data,
        "{\"ready\":false,\"failing\":[\"redis\"],\"checks\":{\"assignment\":\"ok\","
        "\"assigned_partitions\":2,\"kafka\":\"ok\",\"redis\":\"failed\",\"redis_detail\":"
        "\"Connection refused\",\"refdata\":\"unknown\"}}\n");
    s->probe.redis = PR_READY_OK;
    s->probe.refdata = PR_READY_OK;
    pr_buf_reset(&body);
    assert_true(pr_metrics_ready(s, &body));
    pr_buf_append(&body, "", 1);
    assert_string_equal((char *)body.data,
                        "{\"ready\":true,\"failing\":[],\"checks\":{\"assignment\":\"ok\","
                        "\"assigned_partitions\":2,"
                        "\"kafka\":\"ok\",\"redis\":\"ok\",\"refdata\":\"ok\"}}\n");
    /* Joined with nothing to own is ready; not joined, Kafka down, reference
     * data unusable and stopping each fail, and are named. */
    s->assigned_partitions = 0;
    assert_true(pr_metrics_ready(s, NULL));
    s->joined = false;
    s->kafka = PR_READY_FAILED;
    s->probe.refdata = PR_READY_FAILED;
    snprintf(s->probe.refdata_detail, sizeof(s->probe.refdata_detail),
             "version v1: pr:ref:v1:hts is missing");
    pr_buf_reset(&body);
    assert_false(pr_metrics_ready(s, &body));
    pr_buf_append(&body, "", 1);
    assert_non_null(
        strstr((char *)body.data, "\"failing\":[\"assignment\",\"kafka\",\"refdata\"]"));
    assert_non_null(
        strstr((char *)body.data, "\"refdata_detail\":\"version v1: pr:ref:v1:hts is missing\""));
    s->joined = true;
    s->kafka = PR_READY_OK;
    s->probe.refdata = PR_READY_NOT_NEEDED;
    assert_true(pr_metrics_ready(s, NULL));
    s->stopping = true;
    pr_buf_reset(&body);
    assert_false(pr_metrics_ready(s, &body));
    pr_buf_append(&body, "", 1);
    assert_non_null(strstr((char *)body.data, "\"failing\":[\"stopping\"]"));
    pr_buf_free(&body);
    free(s);
}

/* The engine publishes with trylock; the HTTP thread reads a copy; the
 * probe's part survives a publish. */
static void test_publish_read_keeps_probe(void **state) {
    (void)state;
    struct pr_metrics *m = pr_metrics_new(60000, "9.9.9");
    struct pr_metrics_probe probe = {.redis = PR_READY_OK, .refdata = PR_READY_FAILED};
    pr_metrics_set_probe(m, &probe);
    struct pr_metrics_snapshot *s = example_snapshot();
    assert_true(pr_metrics_publish(m, s));
    struct pr_metrics_snapshot *copy = calloc(1, sizeof(*copy));
    pr_metrics_read(m, copy);
    assert_int_equal(copy->declarations, 1234);
    assert_int_equal(copy->probe.redis, PR_READY_OK);
    assert_int_equal(copy->probe.refdata, PR_READY_FAILED);
    pthread_mutex_lock(&m->lock); /* the HTTP thread holds it: the engine does not wait */
    assert_false(pr_metrics_publish(m, s));
    pthread_mutex_unlock(&m->lock);
    free(copy);
    free(s);
    pr_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_line_by_line),          cmocka_unit_test(test_escape_label),
        cmocka_unit_test(test_histogram_buckets_cumulative), cmocka_unit_test(test_ready_body),
        cmocka_unit_test(test_publish_read_keeps_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
