/* Unit tests: configuration parsing, validation and errors (pipeline/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kafka.h"

static char *write_temp(const char *text) {
    static char path[64];
    strcpy(path, "/tmp/pr-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Captures what pr_config_load prints to stderr. */
static struct pr_config *load_capture(const char *text, char *errbuf, size_t size) {
    char *path = write_temp(text);
    fflush(stderr);
    FILE *saved = stderr;
    FILE *mem = fmemopen(errbuf, size, "w");
    stderr = mem;
    struct pr_config *cfg = pr_config_load(path);
    fclose(mem);
    stderr = saved;
    unlink(path);
    return cfg;
}

static void test_defaults(void **state) {
    (void)state;
    struct pr_config *cfg = pr_config_default();
    assert_string_equal(cfg->topic_declarations, "declarations");
    assert_string_equal(cfg->topic_decisions, "decisions");
    assert_string_equal(cfg->topic_alerts, "alerts");
    assert_string_equal(cfg->topic_dlq, "declarations.dlq");
    assert_int_equal(cfg->batch_size, 1000);
    assert_int_equal(cfg->max_message_bytes, 262144);
    assert_int_equal(cfg->dlq_keep_bytes, 65536);
    assert_int_equal(cfg->declarations_partitions, 8);
    assert_string_equal(cfg->on_redis_unavailable, "pause");
    assert_int_equal(cfg->chain_len, 10);
    assert_string_equal(cfg->chain[0], "decode");
    assert_string_equal(cfg->chain[2], "enrich");
    assert_string_equal(cfg->chain[9], "encode");
    pr_config_free(cfg);
}

static void test_full_file(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("# a comment\n"
                                         "group: hub-east\n"
                                         "topics:\n"
                                         "  declarations: in.decl\n"
                                         "  dlq: in.decl.dlq\n"
                                         "redis:\n"
                                         "  address: 10.0.0.5:6380\n"
                                         "  on_unavailable: degrade\n"
                                         "batch:\n"
                                         "  size: 250\n"
                                         "chain: [decode, validate, score, route, encode]\n"
                                         "kafka:\n"
                                         "  bootstrap.servers: b1:9092,b2:9092\n"
                                         "  security.protocol: SASL_SSL\n"
                                         "  consumer:\n"
                                         "    fetch.min.bytes: 1024\n",
                                         err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->group_id, "hub-east");
    assert_string_equal(cfg->topic_declarations, "in.decl");
    assert_string_equal(cfg->topic_dlq, "in.decl.dlq");
    assert_string_equal(cfg->topic_decisions, "decisions");
    assert_string_equal(cfg->redis_address, "10.0.0.5:6380");
    assert_string_equal(cfg->on_redis_unavailable, "degrade");
    assert_int_equal(cfg->batch_size, 250);
    assert_int_equal(cfg->chain_len, 5);
    assert_string_equal(cfg->chain[2], "score");
    assert_int_equal(cfg->kafka_count, 3);
    assert_string_equal(cfg->kafka[0].key, "bootstrap.servers");
    assert_string_equal(cfg->kafka[0].value, "b1:9092,b2:9092");
    assert_int_equal(cfg->kafka[0].line, 13);
    assert_string_equal(cfg->kafka[2].key, "consumer.fetch.min.bytes");
    pr_config_free(cfg);
}

static void test_unknown_key_names_key_and_line(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("group: g\nbatch:\n  sise: 10\n", err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, ":3:"));
    assert_non_null(strstr(err, "batch.sise"));
}

static void test_bad_integer(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("batch:\n  size: lots\n", err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, ":2:"));
    assert_non_null(strstr(err, "batch.size"));
    assert_non_null(strstr(err, "lots"));
    cfg = load_capture("batch:\n  size: 0\n", err, sizeof(err));
    assert_null(cfg);
}

static void test_bad_enum(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("redis:\n  on_unavailable: ignore\n", err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "redis.on_unavailable"));
    assert_non_null(strstr(err, "pause|degrade"));
}

static void test_yaml_syntax_error(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("group: g\n  bad: [\n", err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "YAML syntax"));
}

static void test_kafka_passthrough_refused_property(void **state) {
    (void)state;
    char err[1024] = "";
    struct pr_config *cfg = load_capture("kafka:\n  no.such.property: 1\n", err, sizeof(err));
    assert_non_null(cfg); /* the file parses; librdkafka judges the property */
    fflush(stderr);
    FILE *saved = stderr;
    FILE *mem = fmemopen(err, sizeof(err), "w");
    stderr = mem;
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    fclose(mem);
    stderr = saved;
    assert_null(conf);
    assert_non_null(strstr(err, "kafka.no.such.property"));
    assert_non_null(strstr(err, ":2:"));
    pr_config_free(cfg);
}

static void test_set_override(void **state) {
    (void)state;
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(pr_config_set(cfg, "batch.size", "42", "--set", 0), PR_OK);
    assert_int_equal(cfg->batch_size, 42);
    assert_int_equal(pr_config_set(cfg, "kafka.bootstrap.servers", "x:1", "--set", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "kafka.bootstrap.servers", "y:2", "--set", 0), PR_OK);
    assert_int_equal(cfg->kafka_count, 1);
    assert_string_equal(cfg->kafka[0].value, "y:2");
    fflush(stderr);
    FILE *saved = stderr;
    char err[256];
    stderr = fmemopen(err, sizeof(err), "w");
    assert_int_equal(pr_config_set(cfg, "chain", "", "--set", 0), PR_ERR);
    fclose(stderr);
    stderr = saved;
    pr_config_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_unknown_key_names_key_and_line),
        cmocka_unit_test(test_bad_integer),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_kafka_passthrough_refused_property),
        cmocka_unit_test(test_set_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
