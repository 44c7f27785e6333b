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

struct pr_kv {
    char *key;
    char *value;
    int line;
};

struct pr_config {
    char *path;
    char *group_id;
    char *topic_declarations, *topic_decisions, *topic_alerts, *topic_dlq;
    char *redis_address;
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
    size_t chain_len;
    char **chain;
    size_t kafka_count;
    struct pr_kv *kafka; /* kafka.* passthrough, prefix stripped */
};

/* Loads and validates path. On error prints "path:line: message" naming the
 * key to stderr and returns NULL; callers exit with status 2. */
struct pr_config *pr_config_load(const char *path);
/* A config with every default, for subcommands run without a file. */
struct pr_config *pr_config_default(void);
void pr_config_free(struct pr_config *cfg);
/* Applies one "key=value" override (from the command line), same rules as the
 * file. Returns PR_ERR with a message on stderr. */
int pr_config_set(struct pr_config *cfg, const char *key, const char *value, const char *origin,
                  int line);
/* Prints the table of keys with defaults and descriptions. */
void pr_config_print_keys(void);

#endif
