/*
 * config.h - the one configuration file of `parcelrisk run` (YAML).
 *
 * Keys are declared once in a table (config.c, pr_config_keys) that drives
 * parsing, validation, defaults and `parcelrisk config-keys` documentation,
 * as Fluent Bit's config_map does. Nested YAML mappings flatten to dotted
 * keys: `batch: {size: 500}` is `batch.size`. Every `kafka.<name>` key is
 * passed to librdkafka unchanged (so SASL/SSL settings work as documented
 * there); `kafka.consumer.<name>` and `kafka.producer.<name>` go to one side
 * only.
 */
#ifndef PR_CONFIG_H
#define PR_CONFIG_H

#include "common.h"

/* One kafka.* passthrough property. origin and line say where its value came
 * from, for messages: origin is the file path (line > 0), "--set" or
 * "--brokers" (line 0). */
struct pr_kv {
    char *key;
    char *value;
    char *origin;
    int line;
};

/* Where a key of the table got its value: a file path and line, "--set",
 * "--brokers", ... (line 0), or "(defaults)". */
struct pr_config_origin {
    char *origin;
    int line;
};

struct pr_config {
    char *path;
    char *group_id;
    char *topic_declarations, *topic_decisions, *topic_alerts, *topic_dlq;
    /* The internal topics of `run` (issue 12); "" : derived from the group,
     * see pr_config_internal_topic. */
    char *topic_repartition, *topic_changelog;
    int repartition_partitions; /* 0: as many as the declarations topic has */
    int repartition_purge_ms;   /* 0: never purge the repartition topic */
    int state_max_mb;
    char *redis_address;
    char *redis_user;           /* "" : AUTH password alone (the default user) */
    char *redis_password;       /* secret; "" : no AUTH */
    char *on_redis_unavailable; /* pause | degrade */
    char *guarantee;            /* at_least_once | exactly_once */
    char *instance_id;          /* stable per instance: the transactional.id suffix */
    int transaction_interval_ms;
    int transaction_max_records;
    int transaction_timeout_ms;
    int batch_size;
    int batch_timeout_ms;
    int batch_linger_ms;
    int max_inflight_batches;
    int max_message_bytes;
    int dlq_keep_bytes;
    int stats_interval_ms;
    int declarations_partitions;
    int output_partitions;
    int redis_timeout_ms;
    int cache_max_entries;
    int cache_max_mb;
    int cache_ttl_ms;
    int state_ttl_hours;
    char *rules_file;
    char *policy_file;
    char *log_level;
    char *log_format;  /* text | json */
    char *http_listen; /* "" : no HTTP endpoint */
    int http_stall_ms;
    /* Schema Registry (Confluent wire format); "" url: plain Avro binary. */
    char *schema_registry_url;
    char *schema_registry_user;
    char *schema_registry_password; /* secret */
    char *schema_registry_ca_file;
    char *schema_registry_subject_strategy; /* topic_name | record_name | topic_record_name */
    int schema_registry_timeout_ms;
    int schema_registry_cache_max_ids;
    size_t chain_len;
    char **chain;
    size_t kafka_count;
    struct pr_kv *kafka;              /* kafka.* passthrough, prefix stripped */
    struct pr_config_origin *origins; /* one per key of the table (config.c) */
    size_t file_keys;                 /* keys the file set: 0 for an empty file */
};

/* Every configuration error is printed to stderr as
 *   parcelrisk: config error: ORIGIN[:LINE]: key 'KEY': why
 * where ORIGIN is the file (and line) that set the value, "--set" or
 * "--brokers" for the command line, or "(defaults)"; callers exit with
 * status 2 on any of them. */

/* The operators layer sits above this one, so the configuration cannot look
 * an operator name up itself: the layer that owns the registry tells it how
 * (pr_operators_register does, and every program that loads a configuration
 * for a run calls that first). Until then the names of key 'chain' are taken
 * as written and pr_chain_init refuses an unknown one when the run starts. */
void pr_config_set_operator_check(bool (*known)(const char *name));

/* Splits an http.listen value, "HOST:PORT" or "[V6]:PORT" (port 0 to 65535,
 * 0 for a free one), into host and port; false when malformed. */
bool pr_config_listen_split(const char *listen, char *host, size_t host_size, long long *port);

/* Loads and checks path. A file that sets no key at all (empty, only
 * comments, an empty document) is refused unless allow_defaults: it would
 * run on every default (a broker and a Redis on 127.0.0.1) without a word.
 * Returns NULL after printing the error(s). Cross-key checks are left to
 * pr_config_validate, once the command-line overrides are applied. */
struct pr_config *pr_config_load_opts(const char *path, bool allow_defaults);
/* pr_config_load_opts(path, false). */
struct pr_config *pr_config_load(const char *path);
/* A config with every default, for subcommands run without a file. */
struct pr_config *pr_config_default(void);
void pr_config_free(struct pr_config *cfg);
/* Applies one "key=value" (from the file or the command line): checks it as
 * its key requires (integer range, enum, non-empty required names, Kafka topic
 * names, host:port, operator names, librdkafka properties) and records origin
 * and line as where the value came from. Returns PR_ERR with a message on
 * stderr. */
int pr_config_set(struct pr_config *cfg, const char *key, const char *value, const char *origin,
                  int line);
/* Checks that concern several keys (the four topics are distinct) on the
 * final configuration. Returns PR_ERR with a message naming each key's origin. */
int pr_config_validate(const struct pr_config *cfg);
/* Formats where key got its value ("prod.yaml:7", "--set", "(defaults)")
 * into buf; returns buf. */
const char *pr_config_origin(const struct pr_config *cfg, const char *key, char *buf, size_t size);

/* Expands the references of a configuration value: ${VAR} (the environment
 * variable VAR), ${VAR:-default} (default when VAR is unset or empty),
 * ${file:/path} (the file's contents, one trailing newline removed) and the
 * escape $${ (a literal "${"). A '$' before anything else is kept. Expanded
 * text is not expanded again. Returns a new string, or NULL after printing
 *   parcelrisk: config error: ORIGIN[:LINE]: key 'KEY': why
 * where why names the variable or the path, never a value. */
char *pr_config_expand(const char *key, const char *value, const char *origin, int line);

/* True for keys whose values are secrets and are never printed (shown as
 * "***"): kafka.sasl.password, kafka.ssl.key.password,
 * kafka.ssl.keystore.password, kafka.ssl.key.pem,
 * kafka.sasl.oauthbearer.config, redis.password, and any key whose last
 * dotted component contains "password" or "secret". key may be given with or
 * without the "kafka." (or "kafka.consumer."/"kafka.producer.") prefix of a
 * librdkafka property. */
bool pr_config_key_is_secret(const char *key);

/* Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
bool pr_topic_name_legal(const char *name);

/* The strict whole-number parser of the configuration and the command line:
 * optional '-', then decimal digits only (no spaces, '+', units or
 * fractions), within [min, max]. Returns PR_OK, or PR_ERR leaving *out alone. */
int pr_parse_integer(const char *text, long long min, long long max, long long *out);
/* Prints the table of keys with defaults and descriptions. */
void pr_config_print_keys(void);

enum pr_internal_topic { PR_TOPIC_REPARTITION, PR_TOPIC_CHANGELOG };

/* The name of an internal topic of `run`: topics.repartition or
 * topics.changelog as set, else "<group>.repartition" or
 * "<group>.changelog" (as Kafka Streams names its internal topics after the
 * application id, so that two groups never share state). Written to out
 * and returned. */
const char *pr_config_internal_topic(const struct pr_config *cfg, enum pr_internal_topic which,
                                     char *out, size_t out_len);

#endif
