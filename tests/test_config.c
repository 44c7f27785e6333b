/* Unit tests: configuration parsing, validation and errors (pipeline/config/config.c). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"
#include "kafka.h"
#include "operator.h"

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

/* stderr into buf while a block runs: capture_begin ... capture_end. */
static FILE *capture_saved;
static void capture_begin(char *buf, size_t size) {
    memset(buf, 0, size);
    fflush(stderr);
    capture_saved = stderr;
    stderr = fmemopen(buf, size, "w");
    assert_non_null(stderr);
}
static void capture_end(void) {
    fclose(stderr);
    stderr = capture_saved;
}

static struct pr_config *load_opts_capture(const char *text, bool allow_defaults, char *errbuf,
                                           size_t size, char *path_out) {
    char *path = write_temp(text);
    strcpy(path_out, path);
    capture_begin(errbuf, size);
    struct pr_config *cfg = pr_config_load_opts(path, allow_defaults);
    capture_end();
    unlink(path);
    return cfg;
}

static void test_kafka_passthrough_refused_property(void **state) {
    (void)state;
    /* librdkafka judges the property as the file is read, so the refusal
     * names the file and line (and the load fails: exit 2). */
    char err[1024] = "", path[64], want[512];
    struct pr_config *cfg = load_opts_capture("group: g\nkafka:\n  no.such.property: 1\n", false,
                                              err, sizeof(err), path);
    assert_null(cfg);
    snprintf(want, sizeof(want),
             "parcelrisk: config error: %s:3: key 'kafka.no.such.property': No such configuration "
             "property: \"no.such.property\"\n",
             path);
    assert_string_equal(err, want);
    /* A bad value of a real property, from --set: the origin is --set. */
    cfg = pr_config_default();
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "kafka.consumer.fetch.min.bytes", "lots", "--set", 0),
                     PR_ERR);
    capture_end();
    assert_non_null(strstr(err, "parcelrisk: config error: --set: key "
                                "'kafka.consumer.fetch.min.bytes': "));
    assert_null(strstr(err, "(defaults)"));
    assert_int_equal(cfg->kafka_count, 0);
    /* Accepted ones keep their own origin, which pr_kafka_conf_new reports. */
    assert_int_equal(pr_config_set(cfg, "kafka.linger.ms", "7", "--set", 0), PR_OK);
    assert_int_equal(cfg->kafka_count, 1);
    assert_string_equal(cfg->kafka[0].origin, "--set");
    assert_int_equal(cfg->kafka[0].line, 0);
    pr_config_free(cfg);
}

static void test_required_keys_refused_empty(void **state) {
    (void)state;
    static const char *const keys[] = {"group",         "topics.declarations", "topics.decisions",
                                       "topics.alerts", "topics.dlq",          "redis.address"};
    struct pr_config *cfg = pr_config_default();
    char err[512], want[512];
    for (size_t i = 0; i < PR_ARRAY_LEN(keys); i++) {
        for (int blank = 0; blank < 2; blank++) {
            capture_begin(err, sizeof(err));
            assert_int_equal(pr_config_set(cfg, keys[i], blank ? "  " : "", "--set", 0), PR_ERR);
            capture_end();
            snprintf(want, sizeof(want),
                     "parcelrisk: config error: --set: key '%s' must not be empty", keys[i]);
            assert_memory_equal(err, want, strlen(want));
        }
    }
    /* The refused values did not replace the defaults. */
    assert_string_equal(cfg->group_id, "parcelrisk");
    assert_string_equal(cfg->topic_decisions, "decisions");
    assert_string_equal(cfg->redis_address, "127.0.0.1:6379");
    /* Brokers: no usable default once emptied, whichever side and origin. */
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "kafka.bootstrap.servers", "", "--brokers", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --brokers: key 'kafka.bootstrap.servers' "
                             "must not be empty (the Kafka brokers, host:port,...)\n");
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "kafka.producer.bootstrap.servers", " ", "--set", 0),
                     PR_ERR);
    capture_end();
    assert_non_null(strstr(err, "--set: key 'kafka.producer.bootstrap.servers' must not be empty"));
    assert_int_equal(cfg->kafka_count, 0);
    /* Optional strings may be empty: they have a meaning (shipped defaults). */
    assert_int_equal(pr_config_set(cfg, "rules.file", "", "--set", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "processing.instance_id", "", "--set", 0), PR_OK);
    pr_config_free(cfg);
}

static void test_required_key_empty_in_file_names_line(void **state) {
    (void)state;
    char err[1024], path[64], want[512];
    struct pr_config *cfg = load_opts_capture("group: g\ntopics:\n  decisions:\n  alerts: \"\"\n",
                                              false, err, sizeof(err), path);
    assert_null(cfg);
    snprintf(want, sizeof(want),
             "parcelrisk: config error: %s:3: key 'topics.decisions' must not be empty (one "
             "Decision per declaration, key declaration_id)\n"
             "parcelrisk: config error: %s:4: key 'topics.alerts' must not be empty (YELLOW and "
             "RED decisions, key house_bill)\n",
             path, path);
    assert_string_equal(err, want);
}

static void test_empty_file_refused_unless_allowed(void **state) {
    (void)state;
    static const char *const empties[] = {"", "# only\n  # comments\n\n", "---\n", "{}\n",
                                          "--- # a document with nothing\n..."};
    char err[1024], path[64], want[512];
    for (size_t i = 0; i < PR_ARRAY_LEN(empties); i++) {
        struct pr_config *cfg = load_opts_capture(empties[i], false, err, sizeof(err), path);
        assert_null(cfg);
        snprintf(want, sizeof(want),
                 "parcelrisk: config error: %s: the file sets nothing (empty or only comments): "
                 "every key would take its default (Kafka on 127.0.0.1:9092, Redis on "
                 "127.0.0.1:6379); set the keys, or give --allow-defaults to run on the defaults "
                 "on purpose\n",
                 path);
        assert_string_equal(err, want);
        cfg = load_opts_capture(empties[i], true, err, sizeof(err), path);
        assert_non_null(cfg);
        assert_string_equal(err, "");
        assert_string_equal(cfg->group_id, "parcelrisk");
        assert_int_equal(cfg->file_keys, 0);
        pr_config_free(cfg);
    }
    /* pr_config_load is the strict form. */
    char *tmp = write_temp("# nothing\n");
    capture_begin(err, sizeof(err));
    assert_null(pr_config_load(tmp));
    capture_end();
    unlink(tmp);
    assert_non_null(strstr(err, "the file sets nothing"));
    /* One key is enough. */
    struct pr_config *cfg = load_opts_capture("batch:\n  size: 5\n", false, err, sizeof(err), path);
    assert_non_null(cfg);
    assert_int_equal(cfg->file_keys, 1);
    pr_config_free(cfg);
}

static void test_origins(void **state) {
    (void)state;
    char err[1024], path[64], where[256], want[256];
    struct pr_config *cfg = load_opts_capture(
        "group: g\nbatch:\n  size: 10\nkafka:\n  linger.ms: 3\n", false, err, sizeof(err), path);
    assert_non_null(cfg);
    snprintf(want, sizeof(want), "%s:3", path);
    assert_string_equal(pr_config_origin(cfg, "batch.size", where, sizeof(where)), want);
    snprintf(want, sizeof(want), "%s:5", path);
    assert_string_equal(pr_config_origin(cfg, "kafka.linger.ms", where, sizeof(where)), want);
    assert_string_equal(pr_config_origin(cfg, "topics.dlq", where, sizeof(where)), "(defaults)");
    assert_int_equal(pr_config_set(cfg, "batch.size", "20", "--set", 0), PR_OK);
    assert_string_equal(pr_config_origin(cfg, "batch.size", where, sizeof(where)), "--set");
    assert_int_equal(pr_config_set(cfg, "kafka.linger.ms", "4", "--set", 0), PR_OK);
    assert_string_equal(pr_config_origin(cfg, "kafka.linger.ms", where, sizeof(where)), "--set");
    assert_string_equal(cfg->kafka[0].origin, "--set");
    /* An error in a --set value names --set, never the file or the defaults. */
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "batch.size", "lots", "--set", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --set: key 'batch.size': expected an "
                             "integer from 1 to 100000, got 'lots'\n");
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "chain", "decode,bogus,encode", "--set", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --set: key 'chain': unknown operator "
                             "'bogus'\n");
    assert_int_equal(cfg->chain_len, 10); /* unchanged */
    /* Before the operators layer registers its check, the names are taken as
     * written (pr_chain_init refuses an unknown one at start); after, refused. */
    pr_config_set_operator_check(NULL);
    assert_int_equal(pr_config_set(cfg, "chain", "decode,bogus", "--set", 0), PR_OK);
    assert_int_equal(cfg->chain_len, 2);
    assert_string_equal(cfg->chain[1], "bogus");
    struct pr_chain chain;
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_chain_init(&chain, cfg), PR_ERR);
    capture_end();
    assert_non_null(strstr(err, "key 'chain': unknown operator 'bogus'"));
    pr_operators_register();
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "chain", "bogus", "--set", 0), PR_ERR);
    capture_end();
    assert_int_equal(cfg->chain_len, 2);
    pr_config_free(cfg);
    /* Without a file, the defaults are the origin of untouched keys only. */
    cfg = pr_config_default();
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "log.level", "loud", "--set", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --set: key 'log.level': 'loud' is not one "
                             "of error|warn|info|debug\n");
    pr_config_free(cfg);
}

static void test_topic_names_and_distinct(void **state) {
    (void)state;
    char err[1024], path[64], want[512];
    struct pr_config *cfg = pr_config_default();
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "topics.alerts", "my alerts", "--set", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --set: key 'topics.alerts': 'my alerts' is "
                             "not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)\n");
    assert_int_equal(pr_config_validate(cfg), PR_OK);
    pr_config_free(cfg);
    assert_true(pr_topic_name_legal("in.decl-2_x"));
    assert_false(pr_topic_name_legal(".."));
    assert_false(pr_topic_name_legal("a/b"));
    char long_name[251];
    memset(long_name, 'a', 250);
    long_name[250] = '\0';
    assert_false(pr_topic_name_legal(long_name));
    long_name[249] = '\0';
    assert_true(pr_topic_name_legal(long_name));

    /* The same topic in two roles, one from the file and one from --set. */
    cfg = load_opts_capture("topics:\n  declarations: hub.in\n", false, err, sizeof(err), path);
    assert_non_null(cfg);
    assert_int_equal(pr_config_set(cfg, "topics.dlq", "hub.in", "--set", 0), PR_OK);
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_validate(cfg), PR_ERR);
    capture_end();
    snprintf(want, sizeof(want),
             "parcelrisk: config error: --set: key 'topics.dlq': topic 'hub.in' is also the value "
             "of 'topics.declarations' from %s:2; the four topics must be distinct\n",
             path);
    assert_string_equal(err, want);
    pr_config_free(cfg);
}

static void test_redis_address(void **state) {
    (void)state;
    static const char *const bad[] = {"localhost",  ":6379",      "host:",      "host:0",
                                      "host:65536", "host:63 79", "host:6379x", "host:+6379"};
    struct pr_config *cfg = pr_config_default();
    char err[512], want[512];
    for (size_t i = 0; i < PR_ARRAY_LEN(bad); i++) {
        capture_begin(err, sizeof(err));
        assert_int_equal(pr_config_set(cfg, "redis.address", bad[i], "--redis", 0), PR_ERR);
        capture_end();
        snprintf(want, sizeof(want),
                 "parcelrisk: config error: --redis: key 'redis.address': expected host:port with "
                 "a port from 1 to 65535, got '%s'\n",
                 bad[i]);
        assert_string_equal(err, want);
    }
    assert_int_equal(pr_config_set(cfg, "redis.address", "10.0.0.5:6380", "--redis", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "redis.address", "[::1]:6379", "--redis", 0), PR_OK);
    pr_config_free(cfg);
}

static void test_http_listen(void **state) {
    (void)state;
    static const char *const bad[] = {"9477",    ":9477",     "host:",     "host:65536",
                                      "host:-1", "[::1:9477", "host:94 77"};
    struct pr_config *cfg = pr_config_default();
    assert_string_equal(cfg->http_listen, ""); /* off by default */
    assert_int_equal(cfg->http_stall_ms, 60000);
    char err[512], want[512];
    for (size_t i = 0; i < PR_ARRAY_LEN(bad); i++) {
        capture_begin(err, sizeof(err));
        assert_int_equal(pr_config_set(cfg, "http.listen", bad[i], "--set", 0), PR_ERR);
        capture_end();
        snprintf(
            want, sizeof(want),
            "parcelrisk: config error: --set: key 'http.listen': expected HOST:PORT with a port "
            "from 0 to 65535 (0: a free port), or empty for no HTTP endpoint, got '%s'\n",
            bad[i]);
        assert_string_equal(err, want);
    }
    static const char *const good[] = {"", "127.0.0.1:0", "0.0.0.0:9477", "[::1]:9477",
                                       "localhost:65535"};
    for (size_t i = 0; i < PR_ARRAY_LEN(good); i++)
        assert_int_equal(pr_config_set(cfg, "http.listen", good[i], "--set", 0), PR_OK);
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "http.stall_ms", "999", "--set", 0), PR_ERR);
    capture_end();
    pr_config_free(cfg);
}

static void test_duplicate_key_in_file(void **state) {
    (void)state;
    char err[1024], path[64], want[512];
    struct pr_config *cfg = load_opts_capture("batch:\n  size: 10\ngroup: g\nbatch.size: 20\n",
                                              false, err, sizeof(err), path);
    assert_null(cfg);
    snprintf(want, sizeof(want),
             "parcelrisk: config error: %s:4: key 'batch.size' is set twice in this file (first on "
             "line 2)\n",
             path);
    assert_string_equal(err, want);
    cfg = load_opts_capture("kafka:\n  linger.ms: 1\n  linger.ms: 2\n", false, err, sizeof(err),
                            path);
    assert_null(cfg);
    assert_non_null(
        strstr(err, ":3: key 'kafka.linger.ms' is set twice in this file (first on line 2)"));
}

static void test_parse_integer(void **state) {
    (void)state;
    long long v = 77;
    static const char *const refused[] = {
        "", "-", "3s", " 5", "5 ", "+5", "0x10", "1.5", "1e3", "9223372036854775808", "-5", "abc"};
    for (size_t i = 0; i < PR_ARRAY_LEN(refused); i++) {
        assert_int_equal(pr_parse_integer(refused[i], 0, LLONG_MAX, &v), PR_ERR);
        assert_int_equal(v, 77);
    }
    assert_int_equal(pr_parse_integer("11", 0, 10, &v), PR_ERR);
    assert_int_equal(pr_parse_integer("10", 0, 10, &v), PR_OK);
    assert_int_equal(v, 10);
    assert_int_equal(pr_parse_integer("-5", -10, 10, &v), PR_OK);
    assert_int_equal(v, -5);
    assert_int_equal(pr_parse_integer("9223372036854775807", 0, LLONG_MAX, &v), PR_OK);
    assert_true(v == LLONG_MAX);
    assert_int_equal(pr_parse_integer("007", 0, 10, &v), PR_OK);
    assert_int_equal(v, 7);
    /* The configuration uses it: a unit is refused, not cut off. */
    struct pr_config *cfg = pr_config_default();
    char err[512];
    capture_begin(err, sizeof(err));
    assert_int_equal(pr_config_set(cfg, "batch.timeout_ms", "50ms", "--set", 0), PR_ERR);
    capture_end();
    assert_string_equal(err, "parcelrisk: config error: --set: key 'batch.timeout_ms': expected an "
                             "integer from 1 to 60000, got '50ms'\n");
    assert_int_equal(cfg->batch_timeout_ms, 50);
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

/* pr_config_set on a fresh default config with stderr captured into err. */
static int set_capture(struct pr_config *cfg, const char *key, const char *value, char *err,
                       size_t size) {
    memset(err, 0, size);
    fflush(stderr);
    FILE *saved = stderr;
    stderr = fmemopen(err, size, "w");
    int rc = pr_config_set(cfg, key, value, "--set", 0);
    fclose(stderr);
    stderr = saved;
    return rc;
}

static void test_expand_references(void **state) {
    (void)state;
    setenv("PR_TEST_GROUP", "alpha", 1);
    setenv("PR_TEST_EMPTY", "", 1);
    unsetenv("PR_TEST_UNSET");
    char *path = write_temp("s3cr3t-from-file\n");
    char value[128];
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(pr_config_set(cfg, "group", "g-${PR_TEST_GROUP}-${PR_TEST_GROUP}", "--set", 0),
                     PR_OK);
    assert_string_equal(cfg->group_id, "g-alpha-alpha");
    assert_int_equal(pr_config_set(cfg, "group", "${PR_TEST_UNSET:-fallback}", "--set", 0), PR_OK);
    assert_string_equal(cfg->group_id, "fallback");
    assert_int_equal(pr_config_set(cfg, "group", "${PR_TEST_EMPTY:-used}", "--set", 0), PR_OK);
    assert_string_equal(cfg->group_id, "used");
    assert_int_equal(pr_config_set(cfg, "group", "${PR_TEST_GROUP:-unused}", "--set", 0), PR_OK);
    assert_string_equal(cfg->group_id, "alpha");
    snprintf(value, sizeof(value), "${file:%s}", path);
    assert_int_equal(pr_config_set(cfg, "redis.password", value, "--set", 0), PR_OK);
    assert_string_equal(cfg->redis_password, "s3cr3t-from-file"); /* one newline stripped */
    /* The escape, a lone '$', and expanded text that is not expanded again. */
    setenv("PR_TEST_REF", "${PR_TEST_GROUP}", 1);
    assert_int_equal(pr_config_set(cfg, "group", "a$${b}$c$", "--set", 0), PR_OK);
    assert_string_equal(cfg->group_id, "a${b}$c$");
    assert_int_equal(pr_config_set(cfg, "group", "${PR_TEST_REF}", "--set", 0), PR_OK);
    assert_string_equal(cfg->group_id, "${PR_TEST_GROUP}");
    /* Integers and kafka.* values are expanded before they are checked. */
    setenv("PR_TEST_SIZE", "77", 1);
    assert_int_equal(pr_config_set(cfg, "batch.size", "${PR_TEST_SIZE}", "--set", 0), PR_OK);
    assert_int_equal(cfg->batch_size, 77);
    assert_int_equal(pr_config_set(cfg, "kafka.sasl.username", "${PR_TEST_GROUP}", "--set", 0),
                     PR_OK);
    assert_string_equal(cfg->kafka[cfg->kafka_count - 1].value, "alpha");
    pr_config_free(cfg);
    unlink(path);
}

static void test_expand_errors(void **state) {
    (void)state;
    unsetenv("PR_TEST_UNSET");
    char err[512];
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(set_capture(cfg, "redis.password", "x${PR_TEST_UNSET}", err, sizeof(err)),
                     PR_ERR);
    assert_string_equal(err, "parcelrisk: config error: --set: key 'redis.password': environment "
                             "variable 'PR_TEST_UNSET' is not set (${PR_TEST_UNSET:-default} "
                             "gives a default)\n");
    assert_int_equal(
        set_capture(cfg, "redis.password", "${file:/nonexistent/pr-secret}", err, sizeof(err)),
        PR_ERR);
    assert_string_equal(err, "parcelrisk: config error: --set: key 'redis.password': cannot read "
                             "${file:/nonexistent/pr-secret}: No such file or directory\n");
    assert_int_equal(set_capture(cfg, "group", "abc${PR_TEST_UNSET", err, sizeof(err)), PR_ERR);
    assert_string_equal(err, "parcelrisk: config error: --set: key 'group': unterminated '${' (no "
                             "closing '}'; write $${ for a literal ${)\n");
    /* A malformed reference is not echoed: it may be a pasted secret. */
    assert_int_equal(set_capture(cfg, "redis.password", "${hunter 2}", err, sizeof(err)), PR_ERR);
    assert_string_equal(err, "parcelrisk: config error: --set: key 'redis.password': a ${...} "
                             "reference must be ${NAME}, ${NAME:-default} or ${file:/path}, NAME "
                             "of letters, digits and _ (write $${ for a literal ${)\n");
    assert_null(strstr(err, "hunter"));
    assert_int_equal(set_capture(cfg, "group", "${file:}", err, sizeof(err)), PR_ERR);
    assert_string_equal(err,
                        "parcelrisk: config error: --set: key 'group': ${file:} names no file\n");
    /* The value is left unchanged by a failed expansion. */
    assert_string_equal(cfg->group_id, "parcelrisk");
    pr_config_free(cfg);

    /* In a file the message names file and line. */
    char yaml_err[512] = {0};
    cfg = load_capture("group: g\nredis:\n  password: \"${PR_TEST_UNSET}\"\n", yaml_err,
                       sizeof(yaml_err));
    assert_null(cfg);
    assert_true(strncmp(yaml_err, "parcelrisk: config error: /tmp/pr-test-config-", 46) == 0);
    assert_non_null(strstr(yaml_err, ":3: key 'redis.password': environment variable "
                                     "'PR_TEST_UNSET' is not set (${PR_TEST_UNSET:-default} gives "
                                     "a default)\n"));
    /* redis.user needs a password. */
    memset(yaml_err, 0, sizeof(yaml_err));
    cfg = pr_config_default();
    assert_int_equal(pr_config_set(cfg, "redis.user", "app", "--set", 0), PR_OK);
    fflush(stderr);
    FILE *saved = stderr;
    stderr = fmemopen(yaml_err, sizeof(yaml_err), "w");
    assert_int_equal(pr_config_validate(cfg), PR_ERR);
    fclose(stderr);
    stderr = saved;
    assert_string_equal(yaml_err, "parcelrisk: config error: --set: key 'redis.user' is set but "
                                  "'redis.password' is empty: AUTH needs both\n");
    pr_config_free(cfg);
}

static void test_secrets_redacted(void **state) {
    (void)state;
    assert_true(pr_config_key_is_secret("redis.password"));
    assert_true(pr_config_key_is_secret("kafka.sasl.password"));
    assert_true(pr_config_key_is_secret("sasl.password"));
    assert_true(pr_config_key_is_secret("kafka.ssl.key.password"));
    assert_true(pr_config_key_is_secret("kafka.ssl.keystore.password"));
    assert_true(pr_config_key_is_secret("kafka.producer.ssl.key.pem"));
    assert_true(pr_config_key_is_secret("kafka.sasl.oauthbearer.client.secret"));
    assert_true(pr_config_key_is_secret("custom.DB_Password"));
    assert_false(pr_config_key_is_secret("redis.user"));
    assert_false(pr_config_key_is_secret("kafka.sasl.username"));
    assert_false(pr_config_key_is_secret("password.file.path"));

    char out[64];
    assert_string_equal(pr_redact("Invalid value \"pw1\" for pw1x", "pw1", out, sizeof(out)),
                        "Invalid value \"***\" for ***x");
    assert_string_equal(pr_redact("nothing here", "", out, sizeof(out)), "nothing here");
    assert_string_equal(pr_redact("abc", NULL, out, sizeof(out)), "abc");

    /* A secret value is never echoed by a refusal of librdkafka. */
    char err[512];
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(set_capture(cfg, "kafka.sasl.password", "", err, sizeof(err)), PR_OK);
    assert_int_equal(set_capture(cfg, "kafka.ssl.keystore.password", "topsecret", err, sizeof(err)),
                     PR_OK);
    assert_string_equal(err, "");
    pr_config_free(cfg);

    /* config-keys lists the secret keys and no value. */
    char listing[16384] = {0};
    fflush(stdout);
    FILE *saved = stdout;
    stdout = fmemopen(listing, sizeof(listing), "w");
    pr_config_print_keys();
    fclose(stdout);
    stdout = saved;
    assert_non_null(strstr(listing, "redis.password "));
    assert_non_null(strstr(listing, "redis.user "));
    assert_non_null(strstr(listing, "log.format "));
    assert_non_null(strstr(listing, "are never printed: ***."));
}

/* librdkafka's lines through our logger: level mapping, filtering, JSON. */
static void test_kafka_log_routing(void **state) {
    (void)state;
    assert_int_equal(pr_kafka_log_level(0), PR_LOG_ERROR);
    assert_int_equal(pr_kafka_log_level(3), PR_LOG_ERROR);
    assert_int_equal(pr_kafka_log_level(4), PR_LOG_WARN);
    assert_int_equal(pr_kafka_log_level(5), PR_LOG_INFO);
    assert_int_equal(pr_kafka_log_level(6), PR_LOG_INFO);
    assert_int_equal(pr_kafka_log_level(7), PR_LOG_DEBUG);
    char out[4096] = {0};
    fflush(stderr);
    FILE *saved = stderr;
    stderr = fmemopen(out, sizeof(out), "w");
    pr_log_set_format(PR_LOG_JSON);
    pr_log_set_level(PR_LOG_INFO);
    pr_kafka_log_cb(NULL, 3, "FAIL", "Connect to ipv4#127.0.0.1:1 failed: \"quoted\"\n");
    pr_kafka_log_cb(NULL, 7, "BROKER", "debug chatter dropped at info");
    pr_kafka_log_cb(NULL, 4, "CONFWARN", "a warning");
    pr_info("ours %d", 42);
    fclose(stderr);
    stderr = saved;
    pr_log_set_format(PR_LOG_TEXT);
    assert_null(strstr(out, "debug chatter"));
    const char *want_level[] = {"error", "warn", "info"};
    const char *want_source[] = {"librdkafka", "librdkafka", "parcelrisk"};
    const char *want_msg[] = {"FAIL [-]: Connect to ipv4#127.0.0.1:1 failed: \"quoted\"\n",
                              "CONFWARN [-]: a warning", "ours 42"};
    char *line = out;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_error_t jerr;
        json_t *obj = json_loads(line, 0, &jerr);
        assert_non_null(obj);
        assert_string_equal(json_string_value(json_object_get(obj, "level")), want_level[i]);
        assert_string_equal(json_string_value(json_object_get(obj, "source")), want_source[i]);
        assert_string_equal(json_string_value(json_object_get(obj, "msg")), want_msg[i]);
        const char *ts = json_string_value(json_object_get(obj, "ts"));
        assert_non_null(ts);
        assert_int_equal(strlen(ts), 24); /* 2025-05-02T04:01:00.123Z */
        assert_int_equal(ts[10], 'T');
        assert_int_equal(ts[23], 'Z');
        json_decref(obj);
        line = nl + 1;
    }
    assert_string_equal(line, "");
}

int main(void) {
    pr_operators_register(); /* key 'chain' checks names as parcelrisk does */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_unknown_key_names_key_and_line),
        cmocka_unit_test(test_bad_integer),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_kafka_passthrough_refused_property),
        cmocka_unit_test(test_set_override),
        cmocka_unit_test(test_required_keys_refused_empty),
        cmocka_unit_test(test_required_key_empty_in_file_names_line),
        cmocka_unit_test(test_empty_file_refused_unless_allowed),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_topic_names_and_distinct),
        cmocka_unit_test(test_redis_address),
        cmocka_unit_test(test_http_listen),
        cmocka_unit_test(test_duplicate_key_in_file),
        cmocka_unit_test(test_parse_integer),
        cmocka_unit_test(test_expand_references),
        cmocka_unit_test(test_expand_errors),
        cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_kafka_log_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
