#include "config.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum pr_config_type { PR_CFG_STR, PR_CFG_INT, PR_CFG_LIST, PR_CFG_ENUM };

/* Checks on a PR_CFG_STR value beyond its type. */
enum pr_config_check {
    PR_CHECK_NONE = 0,
    PR_CHECK_REQUIRED, /* must not be empty or blank: no usable default */
    PR_CHECK_TOPIC,    /* required, and a legal Kafka topic name */
    PR_CHECK_HOSTPORT, /* required, host:port with a port 1-65535 */
    PR_CHECK_LISTEN,   /* empty (off), or HOST:PORT with a port 0-65535 */
};

struct pr_config_key {
    const char *name;
    enum pr_config_type type;
    size_t offset;
    const char *default_value;
    long min, max;      /* PR_CFG_INT */
    const char *values; /* PR_CFG_ENUM: "|"-separated */
    const char *description;
    enum pr_config_check check;
};

#define PR_OFF(field) offsetof(struct pr_config, field)

static const struct pr_config_key pr_config_keys[] = {
    {"group", PR_CFG_STR, PR_OFF(group_id), "parcelrisk", 0, 0, NULL,
     "Kafka consumer group id shared by every instance", PR_CHECK_REQUIRED},
    {"topics.declarations", PR_CFG_STR, PR_OFF(topic_declarations), "declarations", 0, 0, NULL,
     "input topic", PR_CHECK_TOPIC},
    {"topics.decisions", PR_CFG_STR, PR_OFF(topic_decisions), "decisions", 0, 0, NULL,
     "one Decision per declaration, key declaration_id", PR_CHECK_TOPIC},
    {"topics.alerts", PR_CFG_STR, PR_OFF(topic_alerts), "alerts", 0, 0, NULL,
     "YELLOW and RED decisions, key house_bill", PR_CHECK_TOPIC},
    {"topics.dlq", PR_CFG_STR, PR_OFF(topic_dlq), "declarations.dlq", 0, 0, NULL,
     "DeadLetter records, original key", PR_CHECK_TOPIC},
    {"topics.repartition", PR_CFG_STR, PR_OFF(topic_repartition), "", 0, 0, NULL,
     "internal: intermediate records between the two stages of run, keyed by the consignee "
     "address digest (empty: <group>.repartition)"},
    {"topics.changelog", PR_CFG_STR, PR_OFF(topic_changelog), "", 0, 0, NULL,
     "internal, compacted: every change of the keyed state, co-partitioned with "
     "topics.repartition (empty: <group>.changelog)"},
    {"topics.repartition_partitions", PR_CFG_INT, PR_OFF(repartition_partitions), "0", 0, 1024,
     NULL,
     "partitions of the internal topics when they are made (0: as many as the "
     "declarations topic has); the unit of scale-out of the keyed state"},
    {"topics.repartition_purge_ms", PR_CFG_INT, PR_OFF(repartition_purge_ms), "30000", 0, 86400000,
     NULL,
     "delete the repartition topic's records below the group's committed offsets this often and "
     "at a clean stop (0: never; the broker's retention then applies)"},
    {"topics.declarations_partitions", PR_CFG_INT, PR_OFF(declarations_partitions), "8", 1, 1024,
     NULL, "partitions when `parcelrisk topics create` makes the input topic"},
    {"topics.output_partitions", PR_CFG_INT, PR_OFF(output_partitions), "8", 1, 1024, NULL,
     "partitions when `parcelrisk topics create` makes the output topics"},
    {"redis.address", PR_CFG_STR, PR_OFF(redis_address), "127.0.0.1:6379", 0, 0, NULL,
     "host:port of the reference-data and state Redis", PR_CHECK_HOSTPORT},
    {"redis.user", PR_CFG_STR, PR_OFF(redis_user), "", 0, 0, NULL,
     "Redis ACL user sent with AUTH (empty: the default user; needs redis.password)"},
    {"redis.password", PR_CFG_STR, PR_OFF(redis_password), "", 0, 0, NULL,
     "secret: Redis AUTH password, sent on every connection (empty: no AUTH); use "
     "${file:/path} or ${VAR}"},
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
    {"state.max_mb", PR_CFG_INT, PR_OFF(state_max_mb), "1024", 1, 1048576, NULL,
     "memory bound of the keyed state of one process, shared by the repartition partitions "
     "(past it the least recently updated days are dropped and counted)"},
    {"state.ttl_hours", PR_CFG_INT, PR_OFF(state_ttl_hours), "72", 1, 8760, NULL,
     "consignee-day and address-cluster state is kept this long after its last update"},
    {"processing.guarantee", PR_CFG_ENUM, PR_OFF(guarantee), "at_least_once", 0, 0,
     "at_least_once|exactly_once", "delivery guarantee"},
    {"processing.instance_id", PR_CFG_STR, PR_OFF(instance_id), "", 0, 0, NULL,
     "exactly_once: stable id of this instance (transactional.id = group-instance_id); a restart "
     "with the same id fences its previous self at once (empty: host-pid)"},
    {"processing.transaction_interval_ms", PR_CFG_INT, PR_OFF(transaction_interval_ms), "200", 1,
     60000, NULL, "exactly_once: commit the open transaction after this long"},
    {"processing.transaction_max_records", PR_CFG_INT, PR_OFF(transaction_max_records), "20000", 1,
     10000000, NULL, "exactly_once: ... or after this many declarations"},
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
    {"input.max_message_bytes", PR_CFG_INT, PR_OFF(max_message_bytes), "262144", 64, 67108864, NULL,
     "larger messages go to the DLQ as TOO_LARGE"},
    {"input.dlq_keep_bytes", PR_CFG_INT, PR_OFF(dlq_keep_bytes), "65536", 0, 67108864, NULL,
     "bytes of a TOO_LARGE payload kept in its DLQ record"},
    {"stats.interval_ms", PR_CFG_INT, PR_OFF(stats_interval_ms), "10000", 0, 3600000, NULL,
     "period of the stats log line (0: off)"},
    {"chain", PR_CFG_LIST, PR_OFF(chain),
     "decode,validate,enrich,policy,screen,aggregate,sample,score,route,encode", 0, 0, NULL,
     "operators in order"},
    {"rules.file", PR_CFG_STR, PR_OFF(rules_file), "", 0, 0, NULL,
     "rule file (empty: shipped defaults)"},
    {"policy.file", PR_CFG_STR, PR_OFF(policy_file), "", 0, 0, NULL,
     "policy timeline file (empty: shipped US default)"},
    {"log.level", PR_CFG_ENUM, PR_OFF(log_level), "info", 0, 0, "error|warn|info|debug",
     "log verbosity (also of librdkafka's own lines)"},
    {"log.format", PR_CFG_ENUM, PR_OFF(log_format), "text", 0, 0, "text|json",
     "text lines, or one JSON object per line (ts, level, msg, source)"},
    {"http.listen", PR_CFG_STR, PR_OFF(http_listen), "", 0, 0, NULL,
     "HOST:PORT of the HTTP endpoint (/metrics /health /ready); port 0: a free port, logged; "
     "empty: off",
     PR_CHECK_LISTEN},
    {"http.stall_ms", PR_CFG_INT, PR_OFF(http_stall_ms), "60000", 1000, 86400000, NULL,
     "/health answers 503 once the engine loop has not turned for this long"},
    {"schema_registry.url", PR_CFG_STR, PR_OFF(schema_registry_url), "", 0, 0, NULL,
     "Confluent-compatible Schema Registry base URL, http(s)://host:port[/path] (empty: plain "
     "Avro binary in and out, no framing)"},
    {"schema_registry.user", PR_CFG_STR, PR_OFF(schema_registry_user), "", 0, 0, NULL,
     "registry basic-auth user (needs schema_registry.password)"},
    {"schema_registry.password", PR_CFG_STR, PR_OFF(schema_registry_password), "", 0, 0, NULL,
     "secret: registry basic-auth password; use ${file:/path} or ${VAR}"},
    {"schema_registry.ca_file", PR_CFG_STR, PR_OFF(schema_registry_ca_file), "", 0, 0, NULL,
     "PEM file of the CA that signed the registry's TLS certificate (empty: the system's)"},
    {"schema_registry.subject_strategy", PR_CFG_ENUM, PR_OFF(schema_registry_subject_strategy),
     "topic_name", 0, 0, "topic_name|record_name|topic_record_name",
     "subject of our output schemas, as the Confluent serializers name them: <topic>-value, "
     "<record full name>, <topic>-<record full name>"},
    {"schema_registry.timeout_ms", PR_CFG_INT, PR_OFF(schema_registry_timeout_ms), "5000", 100,
     600000, NULL, "connect and request timeout of registry calls"},
    {"schema_registry.cache_max_ids", PR_CFG_INT, PR_OFF(schema_registry_cache_max_ids), "1000", 4,
     1000000, NULL,
     "most writer schema ids kept resolved in process (least recently used "
     "evicted)"},
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

/* ------------------------------------------------------------ secrets */

bool pr_config_key_is_secret(const char *key) {
    /* librdkafka properties that hold a secret without saying so in their
     * last component; its own dumps redact them too (_RK_SENSITIVE). */
    static const char *const named[] = {"sasl.password",           "ssl.key.password",
                                        "ssl.keystore.password",   "ssl.key.pem",
                                        "sasl.oauthbearer.config", "redis.password"};
    const char *property = key;
    if (strncmp(property, "kafka.", 6) == 0) property += 6;
    if (strncmp(property, "consumer.", 9) == 0 || strncmp(property, "producer.", 9) == 0)
        property += 9;
    for (size_t i = 0; i < PR_ARRAY_LEN(named); i++)
        if (strcmp(property, named[i]) == 0 || strcmp(key, named[i]) == 0) return true;
    const char *dot = strrchr(key, '.');
    const char *last = dot ? dot + 1 : key;
    char lower[128];
    size_t n = 0;
    for (; last[n] && n + 1 < sizeof(lower); n++)
        lower[n] = (char)(last[n] >= 'A' && last[n] <= 'Z' ? last[n] - 'A' + 'a' : last[n]);
    lower[n] = '\0';
    return strstr(lower, "password") || strstr(lower, "secret");
}

/* What a message may show of key's value. */
static const char *pr_shown(const char *key, const char *value) {
    return pr_config_key_is_secret(key) ? "***" : value;
}

/* ---------------------------------------------------------- expansion */

#define PR_EXPAND_FILE_MAX (1 << 20)

/* Reads a ${file:...} reference into out (appended). PR_ERR after printing. */
static int pr_expand_file(const char *key, const char *path, const char *origin, int line,
                          struct pr_buf *out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        pr_config_err(origin, line, "key '%s': cannot read ${file:%s}: %s", key, path,
                      strerror(errno));
        return PR_ERR;
    }
    struct pr_buf content;
    pr_buf_init(&content);
    char chunk[4096];
    size_t n;
    int rc = PR_OK;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        pr_buf_append(&content, chunk, n);
        if (content.len > PR_EXPAND_FILE_MAX) break;
    }
    if (ferror(fp)) {
        pr_config_err(origin, line, "key '%s': cannot read ${file:%s}: %s", key, path,
                      strerror(errno));
        rc = PR_ERR;
    } else if (content.len > PR_EXPAND_FILE_MAX) {
        pr_config_err(origin, line, "key '%s': ${file:%s} is larger than %d bytes", key, path,
                      PR_EXPAND_FILE_MAX);
        rc = PR_ERR;
    } else if (content.len && memchr(content.data, '\0', content.len)) {
        pr_config_err(origin, line, "key '%s': ${file:%s} contains a NUL byte", key, path);
        rc = PR_ERR;
    }
    fclose(fp);
    if (rc == PR_OK) {
        /* One trailing newline (as `echo` or an editor leaves it), \r\n too. */
        size_t len = content.len;
        if (len && content.data[len - 1] == '\n') {
            len--;
            if (len && content.data[len - 1] == '\r') len--;
        }
        pr_buf_append(out, content.data, len);
    }
    pr_buf_free(&content);
    return rc;
}

static bool pr_env_name_legal(const char *name, size_t len) {
    if (len == 0 || (name[0] >= '0' && name[0] <= '9')) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* One reference, body = the text between "${" and "}". */
static int pr_expand_reference(const char *key, const char *body, const char *origin, int line,
                               struct pr_buf *out) {
    if (strncmp(body, "file:", 5) == 0) {
        if (!body[5]) {
            pr_config_err(origin, line, "key '%s': ${file:} names no file", key);
            return PR_ERR;
        }
        return pr_expand_file(key, body + 5, origin, line, out);
    }
    const char *sep = strstr(body, ":-");
    size_t name_len = sep ? (size_t)(sep - body) : strlen(body);
    if (!pr_env_name_legal(body, name_len)) {
        /* The text is not echoed: a secret pasted in by mistake stays unseen. */
        pr_config_err(origin, line,
                      "key '%s': a ${...} reference must be ${NAME}, ${NAME:-default} or "
                      "${file:/path}, NAME of letters, digits and _ (write $${ for a literal ${)",
                      key);
        return PR_ERR;
    }
    char name[256];
    if (name_len >= sizeof(name)) {
        pr_config_err(origin, line, "key '%s': variable name longer than %zu bytes", key,
                      sizeof(name) - 1);
        return PR_ERR;
    }
    memcpy(name, body, name_len);
    name[name_len] = '\0';
    const char *env = getenv(name);
    if (sep && (!env || !*env)) env = sep + 2;
    if (!env) {
        pr_config_err(origin, line,
                      "key '%s': environment variable '%s' is not set (${%s:-default} gives a "
                      "default)",
                      key, name, name);
        return PR_ERR;
    }
    pr_buf_append(out, env, strlen(env));
    return PR_OK;
}

char *pr_config_expand(const char *key, const char *value, const char *origin, int line) {
    struct pr_buf out;
    pr_buf_init(&out);
    const char *p = value;
    while (*p) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            pr_buf_append(&out, "${", 2);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            pr_buf_append(&out, p, 1);
            p++;
            continue;
        }
        const char *close = strchr(p + 2, '}');
        if (!close) {
            pr_config_err(
                origin, line,
                "key '%s': unterminated '${' (no closing '}'; write $${ for a literal ${)", key);
            pr_buf_free(&out);
            return NULL;
        }
        char *body = pr_strndup(p + 2, (size_t)(close - (p + 2)));
        int rc = pr_expand_reference(key, body, origin, line, &out);
        free(body);
        if (rc != PR_OK) {
            pr_buf_free(&out);
            return NULL;
        }
        p = close + 1;
    }
    pr_buf_append(&out, "", 1);
    return (char *)out.data;
}

int pr_parse_integer(const char *text, long long min, long long max, long long *out) {
    /* strtoll alone accepts leading spaces, a '+', and stops quietly at the
     * first non-digit ("3s" -> 3); the caller's range is checked after the
     * whole text is known to be one number. */
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (*digits < '0' || *digits > '9') return PR_ERR;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno == ERANGE || *end || v < min || v > max) return PR_ERR;
    *out = v;
    return PR_OK;
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

static bool pr_blank(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return *s == '\0';
}

bool pr_topic_name_legal(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > 249 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool pr_hostport_legal(const char *address) {
    const char *colon = strrchr(address, ':');
    long long port;
    return colon && colon != address && !pr_blank(colon + 1) &&
           pr_parse_integer(colon + 1, 1, 65535, &port) == PR_OK;
}

bool pr_config_listen_split(const char *listen, char *host, size_t host_size, long long *port) {
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) return false;
    const char *start = listen, *end = colon;
    if (*start == '[') {
        if (end[-1] != ']') return false;
        start++;
        end--;
    }
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= host_size) return false;
    memcpy(host, start, len);
    host[len] = '\0';
    return pr_parse_integer(colon + 1, 0, 65535, port) == PR_OK;
}

/* Checks a PR_CFG_STR value as its key requires; prints the error. */
static int pr_check_string(const struct pr_config_key *k, const char *value, const char *origin,
                           int line) {
    if (k->check == PR_CHECK_NONE) return PR_OK;
    if (k->check == PR_CHECK_LISTEN) {
        char host[256];
        long long port;
        if (!*value || pr_config_listen_split(value, host, sizeof(host), &port)) return PR_OK;
        pr_config_err(origin, line,
                      "key '%s': expected HOST:PORT with a port from 0 to 65535 "
                      "(0: a free port), or empty for no HTTP endpoint, got '%s'",
                      k->name, value);
        return PR_ERR;
    }
    if (pr_blank(value)) {
        pr_config_err(origin, line, "key '%s' must not be empty (%s)", k->name, k->description);
        return PR_ERR;
    }
    if (k->check == PR_CHECK_TOPIC && !pr_topic_name_legal(value)) {
        pr_config_err(origin, line,
                      "key '%s': '%s' is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)",
                      k->name, pr_shown(k->name, value));
        return PR_ERR;
    }
    if (k->check == PR_CHECK_HOSTPORT && !pr_hostport_legal(value)) {
        pr_config_err(origin, line,
                      "key '%s': expected host:port with a port from 1 to 65535, "
                      "got '%s'",
                      k->name, pr_shown(k->name, value));
        return PR_ERR;
    }
    return PR_OK;
}

/* A kafka.* property: the brokers may not be emptied (there is no usable
 * default once a value is given), and librdkafka judges the name and value
 * here, on a scratch configuration, so that its refusal names the true origin
 * at once instead of surfacing when a client is made. */
static int pr_check_kafka(const char *key, const char *value, const char *origin, int line) {
    const char *property = key + 6;
    if (strncmp(property, "consumer.", 9) == 0 || strncmp(property, "producer.", 9) == 0)
        property += 9;
    if (!*property) {
        pr_config_err(origin, line, "key '%s': no librdkafka property named", key);
        return PR_ERR;
    }
    if ((strcmp(property, "bootstrap.servers") == 0 ||
         strcmp(property, "metadata.broker.list") == 0) &&
        pr_blank(value)) {
        pr_config_err(origin, line, "key '%s' must not be empty (the Kafka brokers, host:port,...)",
                      key);
        return PR_ERR;
    }
    char err[512];
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(scratch, property, value, err, sizeof(err));
    rd_kafka_conf_destroy(scratch);
    if (res != RD_KAFKA_CONF_OK) {
        /* librdkafka's message may quote the value ("Invalid value \"x\" for
         * ..."): a secret is masked in it. */
        char shown[512];
        pr_config_err(origin, line, "key '%s': %s", key,
                      pr_config_key_is_secret(key) ? pr_redact(err, value, shown, sizeof(shown))
                                                   : err);
        return PR_ERR;
    }
    return PR_OK;
}

static void pr_list_free(char **list, size_t len) {
    for (size_t i = 0; i < len; i++) free(list[i]);
    free(list);
}

static bool (*pr_operator_known)(const char *name);

void pr_config_set_operator_check(bool (*known)(const char *name)) {
    pr_operator_known = known;
}

/* Splits a comma- or space-separated operator list; every name must be a
 * registered operator (once the operators layer has said which they are). */
static int pr_set_chain(struct pr_config *cfg, const char *key, const char *value,
                        const char *origin, int line) {
    char **chain = NULL;
    size_t chain_len = 0;
    const char *p = value;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        chain = pr_realloc(chain, (chain_len + 1) * sizeof(char *));
        chain[chain_len++] = pr_strndup(p, (size_t)(e - p));
        p = e;
    }
    if (chain_len == 0) {
        pr_config_err(origin, line, "key '%s': the operator chain is empty", key);
        return PR_ERR;
    }
    for (size_t i = 0; i < chain_len; i++) {
        if (pr_operator_known && !pr_operator_known(chain[i])) {
            pr_config_err(origin, line, "key '%s': unknown operator '%s'", key, chain[i]);
            pr_list_free(chain, chain_len);
            return PR_ERR;
        }
    }
    pr_list_free(cfg->chain, cfg->chain_len);
    cfg->chain = chain;
    cfg->chain_len = chain_len;
    return PR_OK;
}

static void pr_origin_record(struct pr_config_origin *o, const char *origin, int line) {
    free(o->origin);
    o->origin = pr_strdup(origin);
    o->line = line;
}

static int pr_config_set_expanded(struct pr_config *cfg, const char *key, const char *value,
                                  const char *origin, int line) {
    if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
        if (pr_check_kafka(key, value, origin, line) != PR_OK) return PR_ERR;
        for (size_t i = 0; i < cfg->kafka_count; i++) {
            struct pr_kv *kv = &cfg->kafka[i];
            if (strcmp(kv->key, key + 6) == 0) {
                free(kv->value);
                kv->value = pr_strdup(value);
                free(kv->origin);
                kv->origin = pr_strdup(origin);
                kv->line = line;
                return PR_OK;
            }
        }
        cfg->kafka = pr_realloc(cfg->kafka, (cfg->kafka_count + 1) * sizeof(*cfg->kafka));
        cfg->kafka[cfg->kafka_count++] =
            (struct pr_kv){pr_strdup(key + 6), pr_strdup(value), pr_strdup(origin), line};
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
            pr_config_err(origin, line, "key '%s': '%s' is not one of %s", key,
                          pr_shown(key, value), k->values);
            return PR_ERR;
        }
        /* fall through */
    case PR_CFG_STR: {
        if (pr_check_string(k, value, origin, line) != PR_OK) return PR_ERR;
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = pr_strdup(value);
        break;
    }
    case PR_CFG_INT: {
        long long v;
        if (pr_parse_integer(value, k->min, k->max, &v) != PR_OK) {
            pr_config_err(origin, line, "key '%s': expected an integer from %ld to %ld, got '%s'",
                          key, k->min, k->max, pr_shown(key, value));
            return PR_ERR;
        }
        *(int *)(base + k->offset) = (int)v;
        break;
    }
    case PR_CFG_LIST:
        /* Only `chain` is a list; it is stored with its length. */
        if (pr_set_chain(cfg, key, value, origin, line) != PR_OK) return PR_ERR;
        break;
    }
    pr_origin_record(&cfg->origins[k - pr_config_keys], origin, line);
    return PR_OK;
}

int pr_config_set(struct pr_config *cfg, const char *key, const char *value, const char *origin,
                  int line) {
    if (!strchr(value, '$')) return pr_config_set_expanded(cfg, key, value, origin, line);
    char *expanded = pr_config_expand(key, value, origin, line);
    if (!expanded) return PR_ERR;
    int rc = pr_config_set_expanded(cfg, key, expanded, origin, line);
    /* A secret read from a file or the environment is wiped from the heap
     * copy made here; the configuration keeps its own. */
    memset(expanded, 0, strlen(expanded));
    free(expanded);
    return rc;
}

static const char *pr_origin_format(const char *origin, int line, char *buf, size_t size) {
    if (line > 0)
        snprintf(buf, size, "%s:%d", origin, line);
    else
        snprintf(buf, size, "%s", origin);
    return buf;
}

const char *pr_config_origin(const struct pr_config *cfg, const char *key, char *buf, size_t size) {
    const struct pr_config_key *k = pr_config_find(key);
    if (k) {
        const struct pr_config_origin *o = &cfg->origins[k - pr_config_keys];
        return pr_origin_format(o->origin, o->line, buf, size);
    }
    if (strncmp(key, "kafka.", 6) == 0)
        for (size_t i = 0; i < cfg->kafka_count; i++)
            if (strcmp(cfg->kafka[i].key, key + 6) == 0)
                return pr_origin_format(cfg->kafka[i].origin, cfg->kafka[i].line, buf, size);
    return pr_origin_format("(defaults)", 0, buf, size);
}

/* schema_registry.*: an http(s) URL without credentials in it (they would
 * be printed with the URL: schema_registry.user and .password carry them),
 * and a user only with a password. */
static int pr_config_validate_registry(const struct pr_config *cfg) {
    const char *url = cfg->schema_registry_url;
    const struct pr_config_origin *o =
        &cfg->origins[pr_config_find("schema_registry.url") - pr_config_keys];
    if (*url) {
        const char *rest = strncmp(url, "http://", 7) == 0    ? url + 7
                           : strncmp(url, "https://", 8) == 0 ? url + 8
                                                              : NULL;
        if (!rest || !*rest || *rest == '/') {
            pr_config_err(o->origin, o->line,
                          "key 'schema_registry.url': expected http://host:port or "
                          "https://host:port, got '%s'",
                          url);
            return PR_ERR;
        }
        const char *slash = strchr(rest, '/');
        const char *at = strchr(rest, '@');
        if (at && (!slash || at < slash)) {
            pr_config_err(o->origin, o->line,
                          "key 'schema_registry.url': credentials in the URL are refused (they "
                          "would be logged with it); use schema_registry.user and "
                          "schema_registry.password");
            return PR_ERR;
        }
    }
    if (*cfg->schema_registry_user && !*cfg->schema_registry_password) {
        const struct pr_config_origin *u =
            &cfg->origins[pr_config_find("schema_registry.user") - pr_config_keys];
        pr_config_err(u->origin, u->line,
                      "key 'schema_registry.user' is set but "
                      "'schema_registry.password' is empty: basic auth needs both");
        return PR_ERR;
    }
    return PR_OK;
}

const char *pr_config_internal_topic(const struct pr_config *cfg, enum pr_internal_topic which,
                                     char *out, size_t out_len) {
    const char *set = which == PR_TOPIC_REPARTITION ? cfg->topic_repartition : cfg->topic_changelog;
    if (set && *set)
        snprintf(out, out_len, "%s", set);
    else
        snprintf(out, out_len, "%s.%s", cfg->group_id,
                 which == PR_TOPIC_REPARTITION ? "repartition" : "changelog");
    return out;
}

int pr_config_validate(const struct pr_config *cfg) {
    /* A topic serving two roles loops or mixes records: decisions written to
     * the input topic would be consumed again as declarations (and dead-
     * lettered), alerts mixed into decisions would double-count them. */
    static const char *const topic_keys[] = {"topics.declarations", "topics.decisions",
                                             "topics.alerts", "topics.dlq"};
    const char *const topics[] = {cfg->topic_declarations, cfg->topic_decisions, cfg->topic_alerts,
                                  cfg->topic_dlq};
    int rc = PR_OK;
    if (*cfg->redis_user && !*cfg->redis_password) {
        const struct pr_config_origin *o =
            &cfg->origins[pr_config_find("redis.user") - pr_config_keys];
        pr_config_err(o->origin, o->line,
                      "key 'redis.user' is set but 'redis.password' is empty: AUTH needs both");
        rc = PR_ERR;
    }
    if (pr_config_validate_registry(cfg) != PR_OK) rc = PR_ERR;
    for (size_t i = 0; i < PR_ARRAY_LEN(topic_keys); i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(topics[i], topics[j]) != 0) continue;
            const struct pr_config_origin *o =
                &cfg->origins[pr_config_find(topic_keys[i]) - pr_config_keys];
            char other[512];
            pr_config_origin(cfg, topic_keys[j], other, sizeof(other));
            pr_config_err(o->origin, o->line,
                          "key '%s': topic '%s' is also the value of '%s' from %s; the four "
                          "topics must be distinct",
                          topic_keys[i], topics[i], topic_keys[j], other);
            rc = PR_ERR;
        }
    }
    /* The internal topics are parcelrisk's own: neither may be one of the
     * four (stage 2 would read declarations as intermediate records). */
    char internal[2][512];
    pr_config_internal_topic(cfg, PR_TOPIC_REPARTITION, internal[0], sizeof(internal[0]));
    pr_config_internal_topic(cfg, PR_TOPIC_CHANGELOG, internal[1], sizeof(internal[1]));
    static const char *const internal_keys[2] = {"topics.repartition", "topics.changelog"};
    for (int k = 0; k < 2; k++) {
        bool clash = k == 1 && strcmp(internal[0], internal[1]) == 0;
        for (size_t i = 0; i < PR_ARRAY_LEN(topic_keys) && !clash; i++)
            clash = strcmp(internal[k], topics[i]) == 0;
        if (!clash) continue;
        const struct pr_config_origin *o =
            &cfg->origins[pr_config_find(internal_keys[k]) - pr_config_keys];
        pr_config_err(o->origin, o->line,
                      "key '%s': the internal topic '%s' is also another topic of the "
                      "configuration; the internal topics must be parcelrisk's own",
                      internal_keys[k], internal[k]);
        rc = PR_ERR;
    }
    return rc;
}

struct pr_config *pr_config_default(void) {
    struct pr_config *cfg = pr_calloc(1, sizeof(*cfg));
    cfg->origins = pr_calloc(PR_ARRAY_LEN(pr_config_keys), sizeof(*cfg->origins));
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++)
        if (pr_config_set(cfg, pr_config_keys[i].name, pr_config_keys[i].default_value,
                          "(defaults)", 0) != PR_OK)
            abort();
    cfg->path = pr_strdup("(defaults)");
    return cfg;
}

void pr_config_free(struct pr_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++) {
        const struct pr_config_key *k = &pr_config_keys[i];
        if (k->type == PR_CFG_STR || k->type == PR_CFG_ENUM)
            free(*(char **)((char *)cfg + k->offset));
        free(cfg->origins[i].origin);
    }
    free(cfg->origins);
    pr_list_free(cfg->chain, cfg->chain_len);
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        free(cfg->kafka[i].key);
        free(cfg->kafka[i].value);
        free(cfg->kafka[i].origin);
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

/* The line of this file that already set key, or 0. A key given twice in one
 * file (also as `batch: {size: 1}` and `batch.size: 2`) is refused: YAML
 * keys are unique, and the later value silently winning hides a mistake. */
static int pr_yaml_line_of(const struct pr_yaml_walk *w, const char *key) {
    const struct pr_config *cfg = w->cfg;
    const struct pr_config_key *k = pr_config_find(key);
    const struct pr_config_origin *o = k ? &cfg->origins[k - pr_config_keys] : NULL;
    if (o) return o->line > 0 && strcmp(o->origin, w->path) == 0 ? o->line : 0;
    if (strncmp(key, "kafka.", 6) == 0)
        for (size_t i = 0; i < cfg->kafka_count; i++)
            if (strcmp(cfg->kafka[i].key, key + 6) == 0 && cfg->kafka[i].line > 0 &&
                strcmp(cfg->kafka[i].origin, w->path) == 0)
                return cfg->kafka[i].line;
    return 0;
}

static void pr_yaml_set(struct pr_yaml_walk *w, const char *key, const char *value, int line) {
    w->cfg->file_keys++;
    int earlier = pr_yaml_line_of(w, key);
    if (earlier) {
        pr_config_err(w->path, line, "key '%s' is set twice in this file (first on line %d)", key,
                      earlier);
        w->errors++;
    } else if (pr_config_set(w->cfg, key, value, w->path, line) != PR_OK) {
        w->errors++;
    }
}

static int pr_yaml_value(struct pr_yaml_walk *w, const char *key, yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1;
    if (ev->type == YAML_SCALAR_EVENT) {
        pr_yaml_set(w, key, (const char *)ev->data.scalar.value, line);
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
        pr_yaml_set(w, key, (const char *)joined.data, line);
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

struct pr_config *pr_config_load_opts(const char *path, bool allow_defaults) {
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
        } else if (type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0 &&
                   ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            /* An empty document (a lone `---`): it sets nothing. */
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
    if (rc == PR_OK && !w.errors && cfg->file_keys == 0 && !allow_defaults) {
        pr_config_err(path, 0,
                      "the file sets nothing (empty or only comments): every key would take its "
                      "default (Kafka on 127.0.0.1:9092, Redis on %s); set the keys, or give "
                      "--allow-defaults to run on the defaults on purpose",
                      cfg->redis_address);
        rc = PR_ERR;
    }
    if (rc != PR_OK || w.errors) {
        pr_config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct pr_config *pr_config_load(const char *path) {
    return pr_config_load_opts(path, false);
}

void pr_config_print_keys(void) {
    printf("%-34s %-22s %s\n", "key", "default", "meaning");
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_config_keys); i++) {
        const struct pr_config_key *k = &pr_config_keys[i];
        printf("%-34s %-22s %s", k->name,
               *k->default_value ? pr_shown(k->name, k->default_value) : "", k->description);
        if (k->type == PR_CFG_ENUM) printf(" (%s)", k->values);
        printf("\n");
    }
    printf("%-34s %-22s %s\n", "kafka.<property>", "", "passed to librdkafka (both clients)");
    printf("%-34s %-22s %s\n", "kafka.consumer.<property>", "", "passed to the consumer only");
    printf("%-34s %-22s %s\n", "kafka.producer.<property>", "", "passed to the producer only");
    printf(
        "\nAny value may use ${VAR}, ${VAR:-default} (when VAR is unset or empty) and\n"
        "${file:/path} (the file's contents, one trailing newline removed); $${ is a literal ${.\n"
        "Secrets (redis.password, kafka.sasl.password, kafka.ssl.key.password,\n"
        "kafka.ssl.keystore.password, kafka.ssl.key.pem, kafka.sasl.oauthbearer.config and any\n"
        "key whose last part contains 'password' or 'secret') are never printed: ***.\n");
}
