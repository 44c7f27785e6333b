#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum pr_config_type { PR_CFG_STR, PR_CFG_INT, PR_CFG_LIST, PR_CFG_ENUM };

struct pr_config_key {
    const char *name;
    enum pr_config_type type;
    size_t offset;
    const char *default_value;
    long min, max;      /* PR_CFG_INT */
    const char *values; /* PR_CFG_ENUM: "|"-separated */
    const char *description;
};

#define PR_OFF(field) offsetof(struct pr_config, field)

static const struct pr_config_key pr_config_keys[] = {
    {"group", PR_CFG_STR, PR_OFF(group_id), "parcelrisk", 0, 0, NULL,
     "Kafka consumer group id shared by every instance"},
    {"topics.declarations", PR_CFG_STR, PR_OFF(topic_declarations), "declarations", 0, 0, NULL,
     "input topic"},
    {"topics.decisions", PR_CFG_STR, PR_OFF(topic_decisions), "decisions", 0, 0, NULL,
     "one Decision per declaration, key declaration_id"},
    {"topics.alerts", PR_CFG_STR, PR_OFF(topic_alerts), "alerts", 0, 0, NULL,
     "YELLOW and RED decisions, key house_bill"},
    {"topics.dlq", PR_CFG_STR, PR_OFF(topic_dlq), "declarations.dlq", 0, 0, NULL,
     "DeadLetter records, original key"},
    {"topics.declarations_partitions", PR_CFG_INT, PR_OFF(declarations_partitions), "8", 1, 1024,
     NULL, "partitions when `parcelrisk topics create` makes the input topic"},
    {"topics.output_partitions", PR_CFG_INT, PR_OFF(output_partitions), "8", 1, 1024, NULL,
     "partitions when `parcelrisk topics create` makes the output topics"},
    {"redis.address", PR_CFG_STR, PR_OFF(redis_address), "127.0.0.1:6379", 0, 0, NULL,
     "host:port of the reference-data and state Redis"},
    {"redis.on_unavailable", PR_CFG_ENUM, PR_OFF(on_redis_unavailable), "pause", 0, 0,
     "pause|degrade", "pause: stop fetching until Redis is back; degrade: decide from cache"},
    {"redis.timeout_ms", PR_CFG_INT, PR_OFF(redis_timeout_ms), "2000", 10, 600000, NULL,
     "connect and command timeout of Redis calls"},
    {"cache.max_entries", PR_CFG_INT, PR_OFF(cache_max_entries), "1000000", 16, 100000000, NULL,
     "most reference-data answers kept in process (CLOCK eviction)"},
    {"cache.max_mb", PR_CFG_INT, PR_OFF(cache_max_mb), "128", 1, 65536, NULL,
     "memory bound of the reference-data cache"},
    {"cache.ttl_ms", PR_CFG_INT, PR_OFF(cache_ttl_ms), "300000", 0, 86400000, NULL,
     "how long a cached answer is trusted (a version switch clears the cache at once)"},
    {"state.ttl_hours", PR_CFG_INT, PR_OFF(state_ttl_hours), "72", 1, 8760, NULL,
     "consignee-day and address-cluster state is kept this long after its last update"},
    {"processing.guarantee", PR_CFG_ENUM, PR_OFF(guarantee), "at_least_once", 0, 0,
     "at_least_once|exactly_once", "delivery guarantee"},
    {"processing.instance_id", PR_CFG_STR, PR_OFF(instance_id), "", 0, 0, NULL,
     "exactly_once: stable id of this instance (transactional.id = group-instance_id); a restart "
     "with the same id fences its previous self at once (empty: host-pid)"},
    {"processing.transaction_interval_ms", PR_CFG_INT, PR_OFF(transaction_interval_ms), "200", 1,
     60000, NULL, "exactly_once: commit the open transaction after this long"},
    {"processing.transaction_max_records", PR_CFG_INT, PR_OFF(transaction_max_records), "20000",
     1, 10000000, NULL, "exactly_once: ... or after this many declarations"},
    {"processing.transaction_timeout_ms", PR_CFG_INT, PR_OFF(transaction_timeout_ms), "30000", 1000,
     900000, NULL, "exactly_once: the broker aborts a transaction left open this long"},
    {"batch.size", PR_CFG_INT, PR_OFF(batch_size), "1000", 1, 100000, NULL,
     "most messages processed as one batch"},
    {"batch.timeout_ms", PR_CFG_INT, PR_OFF(batch_timeout_ms), "50", 1, 60000, NULL,
     "longest wait to fill a batch"},
    {"batch.linger_ms", PR_CFG_INT, PR_OFF(batch_linger_ms), "10", 0, 60000, NULL,
     "after this wait a batch is processed as soon as no message is queued"},
    {"batch.max_inflight", PR_CFG_INT, PR_OFF(max_inflight_batches), "4", 1, 64, NULL,
     "batches produced but not yet acknowledged before fetching pauses"},
    {"input.max_message_bytes", PR_CFG_INT, PR_OFF(max_message_bytes), "262144", 64, 67108864,
     NULL, "larger messages go to the DLQ as TOO_LARGE"},
    {"input.dlq_keep_bytes", PR_CFG_INT, PR_OFF(dlq_keep_bytes), "65536", 0, 67108864, NULL,
     "bytes of a TOO_LARGE payload kept in its DLQ record"},
    {"stats.interval_ms", PR_CFG_INT, PR_OFF(stats_interval_ms), "10000", 0, 3600000, NULL,
     "period of the stats log line (0: off)"},
    {"chain", PR_CFG_LIST, PR_OFF(chain), "decode,validate,enrich,policy,screen,aggregate,sample,score,route,encode", 0, 0,
     NULL, "operators in order"},
    {"rules.file", PR_CFG_STR, PR_OFF(rules_file), "", 0, 0, NULL,
     "rule file (empty: shipped defaults)"},
    {"policy.file", PR_CFG_STR, PR_OFF(policy_file), "", 0, 0, NULL,
     "policy timeline file (empty: shipped US default)"},
    {"log.level", PR_CFG_ENUM, PR_OFF(log_level), "info", 0, 0, "error|warn|info|debug",
     "log verbosity"},
};

static const struct pr_config_key *pr_config_find(const char *key) {
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++)
        if (strcmp(pr_config_keys[i].name, key) == 0) return &pr_config_keys[i];
    return NULL;
}

static void pr_config_err(const char *origin, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pr_config_err(const char *origin, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (line > 0)
        fprintf(stderr, "parcelrisk: config error: %s:%d: ", origin, line);
    else
        fprintf(stderr, "parcelrisk: config error: %s: ", origin);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static bool pr_enum_allows(const char *values, const char *value) {
    size_t len = strlen(value);
    const char *p = values;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

static void pr_list_free(char **list, size_t len) {
    for (size_t i = 0; i < len; i++) free(list[i]);
    free(list);
}

int pr_config_set(struct pr_config *cfg, const char *key, const char *value, const char *origin,
                  int line) {
    if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
        for (size_t i = 0; i < cfg->kafka_count; i++) {
            if (strcmp(cfg->kafka[i].key, key + 6) == 0) {
                free(cfg->kafka[i].value);
                cfg->kafka[i].value = pr_strdup(value);
                cfg->kafka[i].line = line;
                return PR_OK;
            }
        }
        cfg->kafka = pr_realloc(cfg->kafka, (cfg->kafka_count + 1) * sizeof(*cfg->kafka));
        cfg->kafka[cfg->kafka_count++] =
            (struct pr_kv){pr_strdup(key + 6), pr_strdup(value), line};
        return PR_OK;
    }
    const struct pr_config_key *k = pr_config_find(key);
    if (!k) {
        pr_config_err(origin, line, "unknown key '%s' (see `parcelrisk config-keys`)", key);
        return PR_ERR;
    }
    char *base = (char *)cfg;
    switch (k->type) {
    case PR_CFG_ENUM:
        if (!pr_enum_allows(k->values, value)) {
            pr_config_err(origin, line, "key '%s': '%s' is not one of %s", key, value, k->values);
            return PR_ERR;
        }
        /* fall through */
    case PR_CFG_STR: {
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = pr_strdup(value);
        return PR_OK;
    }
    case PR_CFG_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < k->min || v > k->max) {
            pr_config_err(origin, line, "key '%s': expected an integer from %ld to %ld, got '%s'",
                          key, k->min, k->max, value);
            return PR_ERR;
        }
        *(int *)(base + k->offset) = (int)v;
        return PR_OK;
    }
    case PR_CFG_LIST: {
        /* Only `chain` is a list; it is stored with its length. */
        pr_list_free(cfg->chain, cfg->chain_len);
        cfg->chain = NULL;
        cfg->chain_len = 0;
        const char *p = value;
        while (*p) {
            while (*p == ',' || *p == ' ') p++;
            if (!*p) break;
            const char *e = p;
            while (*e && *e != ',' && *e != ' ') e++;
            cfg->chain = pr_realloc(cfg->chain, (cfg->chain_len + 1) * sizeof(char *));
            cfg->chain[cfg->chain_len++] = pr_strndup(p, (size_t)(e - p));
            p = e;
        }
        if (cfg->chain_len == 0) {
            pr_config_err(origin, line, "key '%s': the operator chain is empty", key);
            return PR_ERR;
        }
        return PR_OK;
    }
    }
    return PR_ERR;
}

struct pr_config *pr_config_default(void) {
    struct pr_config *cfg = pr_calloc(1, sizeof(*cfg));
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++)
        if (pr_config_set(cfg, pr_config_keys[i].name, pr_config_keys[i].default_value,
                          "defaults", 0) != PR_OK)
            abort();
    cfg->path = pr_strdup("(defaults)");
    return cfg;
}

void pr_config_free(struct pr_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++) {
        const struct pr_config_key *k = &pr_config_keys[i];
        if (k->type == PR_CFG_STR || k->type == PR_CFG_ENUM) free(*(char **)((char *)cfg + k->offset));
    }
    pr_list_free(cfg->chain, cfg->chain_len);
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        free(cfg->kafka[i].key);
        free(cfg->kafka[i].value);
    }
    free(cfg->kafka);
    free(cfg->path);
    free(cfg);
}

/* ------------------------------------------------------------ YAML walker */

/* Walks libyaml events, keeping the dotted path of the current key. Scalars
 * under a key are applied with pr_config_set; a sequence of scalars becomes
 * a comma-joined list. */
struct pr_yaml_walk {
    struct pr_config *cfg;
    const char *path;
    yaml_parser_t parser;
    int errors;
};

static int pr_yaml_mapping(struct pr_yaml_walk *w, const char *prefix);

static int pr_yaml_value(struct pr_yaml_walk *w, const char *key, yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1;
    if (ev->type == YAML_SCALAR_EVENT) {
        if (pr_config_set(w->cfg, key, (const char *)ev->data.scalar.value, w->path, line) != PR_OK)
            w->errors++;
        return PR_OK;
    }
    if (ev->type == YAML_MAPPING_START_EVENT) return pr_yaml_mapping(w, key);
    if (ev->type == YAML_SEQUENCE_START_EVENT) {
        struct pr_buf joined;
        pr_buf_init(&joined);
        for (;;) {
            yaml_event_t item;
            if (!yaml_parser_parse(&w->parser, &item)) return PR_ERR;
            if (item.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&item);
                break;
            }
            if (item.type != YAML_SCALAR_EVENT) {
                pr_config_err(w->path, (int)item.start_mark.line + 1,
                              "key '%s': list items must be plain values", key);
                yaml_event_delete(&item);
                pr_buf_free(&joined);
                return PR_ERR;
            }
            if (joined.len) pr_buf_append(&joined, ",", 1);
            pr_buf_append(&joined, item.data.scalar.value, item.data.scalar.length);
            yaml_event_delete(&item);
        }
        pr_buf_append(&joined, "", 1);
        if (pr_config_set(w->cfg, key, (const char *)joined.data, w->path, line) != PR_OK)
            w->errors++;
        pr_buf_free(&joined);
        return PR_OK;
    }
    pr_config_err(w->path, line, "key '%s': unsupported YAML value (aliases are not allowed)", key);
    return PR_ERR;
}

static int pr_yaml_mapping(struct pr_yaml_walk *w, const char *prefix) {
    for (;;) {
        yaml_event_t kev;
        if (!yaml_parser_parse(&w->parser, &kev)) return PR_ERR;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return PR_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            pr_config_err(w->path, (int)kev.start_mark.line + 1, "keys must be plain strings");
            yaml_event_delete(&kev);
            return PR_ERR;
        }
        char key[512];
        snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "",
                 (const char *)kev.data.scalar.value);
        yaml_event_delete(&kev);
        yaml_event_t vev;
        if (!yaml_parser_parse(&w->parser, &vev)) return PR_ERR;
        int rc = pr_yaml_value(w, key, &vev);
        yaml_event_delete(&vev);
        if (rc != PR_OK) return rc;
    }
}

struct pr_config *pr_config_load(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        pr_config_err(path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct pr_config *cfg = pr_config_default();
    free(cfg->path);
    cfg->path = pr_strdup(path);
    struct pr_yaml_walk w = {.cfg = cfg, .path = path};
    yaml_parser_initialize(&w.parser);
    yaml_parser_set_input_file(&w.parser, fp);
    int rc = PR_OK;
    bool in_doc = false;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&w.parser, &ev)) {
            rc = PR_ERR;
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_DOCUMENT_START_EVENT) in_doc = true;
        if (type == YAML_MAPPING_START_EVENT && in_doc) {
            rc = pr_yaml_mapping(&w, "");
        } else if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT) {
            pr_config_err(path, (int)ev.start_mark.line + 1, "the top level must be a mapping");
            rc = PR_ERR;
        }
        yaml_event_delete(&ev);
        if (rc != PR_OK || type == YAML_STREAM_END_EVENT) break;
    }
    if (w.parser.error != YAML_NO_ERROR) {
        pr_config_err(path, (int)w.parser.problem_mark.line + 1, "YAML syntax: %s",
                      w.parser.problem ? w.parser.problem : "parse error");
        rc = PR_ERR;
    }
    yaml_parser_delete(&w.parser);
    fclose(fp);
    if (rc != PR_OK || w.errors) {
        pr_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void pr_config_print_keys(void) {
    printf("%-34s %-22s %s\n", "key", "default", "meaning");
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++) {
        const struct pr_config_key *k = &pr_config_keys[i];
        printf("%-34s %-22s %s", k->name, k->default_value, k->description);
        if (k->type == PR_CFG_ENUM) printf(" (%s)", k->values);
        printf("\n");
    }
    printf("%-34s %-22s %s\n", "kafka.<property>", "", "passed to librdkafka (both clients)");
    printf("%-34s %-22s %s\n", "kafka.consumer.<property>", "", "passed to the consumer only");
    printf("%-34s %-22s %s\n", "kafka.producer.<property>", "", "passed to the producer only");
}
