/*
 * cmd_check.c - `parcelrisk check-config --config FILE [--connect]`: says,
 * before a deployment or in a unit's ExecStartPre, whether `run` would start
 * with this configuration, one line per check on stdout:
 *
 *   config /etc/parcelrisk/parcelrisk.yaml: ok (24 keys set in the file)
 *   rules /etc/parcelrisk/rules.yaml: ok (version 2025-08-29)
 *   policy /etc/parcelrisk/policy-us.yaml: ok (version us-2025-08-29, 5 rows)
 *   kafka broker1:9092: ok (3 brokers)
 *   topic topics.declarations 'declarations': ok (8 partitions, every one led)
 *   topic topics.dlq 'declarations.dlq': FAIL: does not exist on the cluster (...)
 *   redis 127.0.0.1:6379: ok (PING answered, AUTH as user 'parcelrisk')
 *   refdata: ok (version 20251201T..., manifest checks out: hts:hash:13,...)
 *   check-config: 1 of 8 checks failed
 *
 * Exit status 0 when every check passes, 2 otherwise (also for an
 * unreachable service: the point is a yes or no before starting).
 *
 * The checks are the very code `run` uses: the configuration loader with its
 * cross-key checks (pr_cli_config: every key, every value, every kafka.*
 * property judged by librdkafka, duplicates, the empty file), both Kafka
 * client configurations (pr_kafka_conf_new), the rule and policy loader
 * (pr_rules_load, the one SIGHUP uses), AUTH as every Redis connection sends
 * it (pr_redis_authenticate), and the manifest check the enrich operator
 * makes (PR_REFDATA_VERIFY_LUA). The loader reports its errors on stderr as
 * "parcelrisk: config error: ..."; here stderr is pointed at a memory stream
 * while it runs (glibc documents stderr as an assignable variable), so that
 * each error becomes one "config FILE: FAIL: ..." line on stdout.
 *
 * Secrets are never printed: the loader already masks them in its errors,
 * AUTH refusals are redacted, and the lines here name keys, files, hosts and
 * counts only.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"
#include "operator.h"
#include "redis.h"
#include "refdata.h"
#include "rules.h"

#define PR_CHECK_KAFKA_TIMEOUT_MS 10000

static void pr_check_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk check-config --config FILE [--connect] [--set KEY=VALUE]...\n"
            "                               [--brokers LIST]\n"
            "Checks the configuration as `run` would read it: every key and value, the cross-key\n"
            "checks, the Kafka client properties, and the rule and policy files it names.\n"
            "  --connect  also reach Kafka (the four topics exist, with their partitions; the\n"
            "             internal topics of a keyed chain agree, or do not exist yet),\n"
            "             Redis (PING, AUTH when configured) and the reference data (a current\n"
            "             version whose tables check out against its manifest)\n"
            "Prints one line per check, 'ok' or 'FAIL: why'; secrets are never "
            "printed.\n" PR_CLI_SHARED_HELP
            "Exit status: 0 every check passed, 2 a check failed or a bad command line.\n");
}

enum { PR_CHECK_CONNECT = PR_CLI_OWN };

struct pr_check {
    int run;
    int failed;
};

static void pr_check_line(struct pr_check *check, bool ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pr_check_line(struct pr_check *check, bool ok, const char *what, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    check->run++;
    if (!ok) check->failed++;
    printf("%s: %s%s%s%s\n", what, ok ? "ok" : "FAIL: ", ok && *text ? " (" : "", text,
           ok && *text ? ")" : "");
    fflush(stdout);
}

/* ------------------------------------------------------- configuration */

/* Loads the configuration with stderr captured; each line the loader
 * printed becomes one FAIL line. */
static struct pr_config *pr_check_config(struct pr_cli *cli, struct pr_check *check) {
    char what[1100];
    snprintf(what, sizeof(what), "config %s", cli->config_path);
    char *captured = NULL;
    size_t captured_len = 0;
    FILE *mem = open_memstream(&captured, &captured_len);
    FILE *saved = stderr;
    if (mem) stderr = mem;
    struct pr_config *cfg = pr_cli_config(cli);
    /* Both clients are built as run builds them: a consumer.-only or
     * producer.-only property is judged on its own side. */
    for (int side = 0; cfg && side < 2; side++) {
        rd_kafka_conf_t *conf =
            pr_kafka_conf_new(cfg, side == 0 ? PR_KAFKA_CONSUMER : PR_KAFKA_PRODUCER);
        if (!conf) {
            cfg = NULL; /* freed by pr_cli_finish through cli->cfg */
            break;
        }
        rd_kafka_conf_destroy(conf);
    }
    if (mem) {
        stderr = saved;
        fclose(mem);
    }
    static const char prefix[] = "parcelrisk: config error: ";
    bool reported = false;
    for (char *line = captured, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        if (!*line) continue;
        if (strncmp(line, prefix, sizeof(prefix) - 1) == 0) line += sizeof(prefix) - 1;
        pr_check_line(check, false, what, "%s", line);
        reported = true;
    }
    free(captured);
    if (!cfg && !reported) pr_check_line(check, false, what, "refused (no message)");
    if (!cfg) return NULL;
    pr_check_line(check, true, what, "%zu keys set in the file, cross-key checks pass",
                  cfg->file_keys);
    return cfg;
}

/* The rule file and the policy file, each on its own line (the other one
 * left at its shipped default), then nothing more: pr_rules_load has no
 * check that involves both. */
static void pr_check_rules(const struct pr_config *cfg, struct pr_check *check) {
    for (int which = 0; which < 2; which++) {
        const char *path = which == 0 ? cfg->rules_file : cfg->policy_file;
        char what[1100], err[512] = "";
        snprintf(what, sizeof(what), "%s %s", which == 0 ? "rules" : "policy",
                 *path ? path : "(shipped defaults)");
        struct pr_rules *rules = which == 0 ? pr_rules_load(path, NULL, err, sizeof(err))
                                            : pr_rules_load(NULL, path, err, sizeof(err));
        if (!rules) {
            pr_check_line(check, false, what, "%s", err);
            continue;
        }
        /* version is "<rules version>/<policy version>". */
        const char *version = pr_rules_version(rules);
        const char *slash = strchr(version, '/');
        if (which == 0)
            pr_check_line(check, true, what, "version %.*s, %zu stop words",
                          slash ? (int)(slash - version) : (int)strlen(version), version,
                          rules->stop_word_count);
        else
            pr_check_line(check, true, what, "version %s, %d rows", slash ? slash + 1 : version,
                          rules->policy.count);
        pr_rules_free(rules);
    }
}

/* ----------------------------------------------------------------- Kafka */

struct pr_check_kafka_error {
    char reason[512];
};

static void pr_check_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)err;
    struct pr_check_kafka_error *last = opaque;
    snprintf(last->reason, sizeof(last->reason), "%s", reason);
}

/* One metadata request for every topic (a request naming our topics could
 * make a broker with auto.create.topics.enable create them), then the four
 * topics looked up in it. */
static void pr_check_internal_topics(const struct pr_config *cfg,
                                     const struct rd_kafka_metadata *md, struct pr_check *check);

static void pr_check_kafka(const struct pr_config *cfg, struct pr_check *check) {
    const char *servers = "127.0.0.1:9092";
    for (size_t i = 0; i < cfg->kafka_count; i++)
        if (strcmp(cfg->kafka[i].key, "bootstrap.servers") == 0) servers = cfg->kafka[i].value;
    char what[1100];
    snprintf(what, sizeof(what), "kafka %s", servers);
    static const char *const keys[] = {"topics.declarations", "topics.decisions", "topics.alerts",
                                       "topics.dlq"};
    const char *const topics[] = {cfg->topic_declarations, cfg->topic_decisions, cfg->topic_alerts,
                                  cfg->topic_dlq};
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!conf) {
        pr_check_line(check, false, what, "the client configuration is refused (see above)");
        return;
    }
    struct pr_check_kafka_error last = {""};
    rd_kafka_conf_set_error_cb(conf, pr_check_kafka_error_cb);
    rd_kafka_conf_set_opaque(conf, &last);
    char err[512];
    /* No InitProducerId for a look at metadata. */
    rd_kafka_conf_set(conf, "enable.idempotence", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pr_check_line(check, false, what, "cannot create a client: %s", err);
        return;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, PR_CHECK_KAFKA_TIMEOUT_MS);
    if (e) {
        rd_kafka_poll(rk, 0); /* serves the error events: the broker's own words */
        pr_check_line(check, false, what, "no metadata within %d ms: %s%s%s",
                      PR_CHECK_KAFKA_TIMEOUT_MS, rd_kafka_err2str(e), last.reason[0] ? "; " : "",
                      last.reason);
        for (size_t t = 0; t < PR_ARRAY_LEN(topics); t++) {
            char twhat[600];
            snprintf(twhat, sizeof(twhat), "topic %s '%s'", keys[t], topics[t]);
            pr_check_line(check, false, twhat, "not checked: Kafka is not reachable");
        }
        rd_kafka_destroy(rk);
        return;
    }
    pr_check_line(check, true, what, "%d broker%s, metadata of %d topics", md->broker_cnt,
                  md->broker_cnt == 1 ? "" : "s", md->topic_cnt);
    for (size_t t = 0; t < PR_ARRAY_LEN(topics); t++) {
        char twhat[600];
        snprintf(twhat, sizeof(twhat), "topic %s '%s'", keys[t], topics[t]);
        const struct rd_kafka_metadata_topic *found = NULL;
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topics[t]) == 0) found = &md->topics[i];
        if (!found || found->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            pr_check_line(check, false, twhat,
                          "does not exist on the cluster (create it: parcelrisk topics create, "
                          "or ask for it with the partitions you need)");
            continue;
        }
        if (found->err) {
            pr_check_line(check, false, twhat, "%s", rd_kafka_err2str(found->err));
            continue;
        }
        int leaderless = 0;
        for (int p = 0; p < found->partition_cnt; p++)
            if (found->partitions[p].err || found->partitions[p].leader < 0) leaderless++;
        if (found->partition_cnt == 0 || leaderless)
            pr_check_line(check, false, twhat, "%d partitions, %d without a leader",
                          found->partition_cnt, leaderless);
        else
            pr_check_line(check, true, twhat, "%d partition%s, every one led", found->partition_cnt,
                          found->partition_cnt == 1 ? "" : "s");
    }
    pr_check_internal_topics(cfg, md, check);
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
}

/* The internal topics of a chain with a keyed operator (issue 12): both
 * missing is fine (`run` makes them); present, their partition counts must
 * agree with each other and with a nonzero topics.repartition_partitions, as
 * `run` refuses to start otherwise. */
static void pr_check_internal_topics(const struct pr_config *cfg,
                                     const struct rd_kafka_metadata *md, struct pr_check *check) {
    bool keyed = false;
    for (size_t i = 0; i < cfg->chain_len; i++) {
        const struct pr_operator_ops *ops = pr_operator_lookup(cfg->chain[i]);
        if (ops && ops->keyed) keyed = true;
    }
    if (!keyed) return;
    char names[2][512];
    pr_config_internal_topic(cfg, PR_TOPIC_REPARTITION, names[0], sizeof(names[0]));
    pr_config_internal_topic(cfg, PR_TOPIC_CHANGELOG, names[1], sizeof(names[1]));
    static const char *const keys[2] = {"topics.repartition", "topics.changelog"};
    int counts[2] = {-1, -1};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, names[t]) == 0 && !md->topics[i].err)
                counts[t] = md->topics[i].partition_cnt;
    for (int t = 0; t < 2; t++) {
        char what[600];
        snprintf(what, sizeof(what), "internal topic %s '%s'", keys[t], names[t]);
        int other = counts[1 - t];
        if (counts[t] < 0)
            pr_check_line(check, other < 0, what,
                          other < 0 ? "does not exist yet (run makes it, with the other)"
                                    : "does not exist while the other does (run makes it with "
                                      "the other's partitions)");
        else if (other >= 0 && other != counts[t])
            pr_check_line(check, false, what,
                          "%d partitions, the other internal topic %d: they must be equal (run "
                          "refuses to start)",
                          counts[t], other);
        else if (cfg->repartition_partitions > 0 && counts[t] != cfg->repartition_partitions)
            pr_check_line(check, false, what,
                          "%d partitions, topics.repartition_partitions says %d (run refuses to "
                          "start)",
                          counts[t], cfg->repartition_partitions);
        else
            pr_check_line(check, true, what, "%d partition%s", counts[t],
                          counts[t] == 1 ? "" : "s");
    }
}

/* ----------------------------------------------------------------- Redis */

static const char pr_check_verify_script[] =
    PR_REFDATA_VERIFY_LUA "return pr_ref_verify(ARGV[1], " PR_REFDATA_TABLES_LUA ", nil) or 'ok'\n";

static void pr_check_refdata(redisContext *ctx, struct pr_check *check) {
    redisReply *current = redisCommand(ctx, "GET %s", PR_REF_CURRENT);
    if (!current || current->type == REDIS_REPLY_ERROR) {
        pr_check_line(check, false, "refdata", "GET %s: %s", PR_REF_CURRENT,
                      current ? current->str : ctx->errstr);
    } else if (current->type != REDIS_REPLY_STRING) {
        pr_check_line(check, false, "refdata",
                      "no reference data loaded (%s is not set): run `parcelrisk refdata load`",
                      PR_REF_CURRENT);
    } else {
        redisReply *verdict =
            redisCommand(ctx, "EVAL %s 0 %s", pr_check_verify_script, current->str);
        char meta[160];
        pr_refdata_key(meta, sizeof(meta), current->str, "meta");
        redisReply *manifest = redisCommand(ctx, "HGET %s manifest", meta);
        if (!verdict || verdict->type != REDIS_REPLY_STRING)
            pr_check_line(check, false, "refdata", "version %s: the manifest check failed: %s",
                          current->str, verdict && verdict->str ? verdict->str : ctx->errstr);
        else if (strcmp(verdict->str, "ok") != 0)
            pr_check_line(check, false, "refdata",
                          "version %s is unusable: %s (load the reference data again)",
                          current->str, verdict->str);
        else
            pr_check_line(check, true, "refdata", "version %s, manifest checks out: %s",
                          current->str,
                          manifest && manifest->type == REDIS_REPLY_STRING ? manifest->str : "?");
        if (verdict) freeReplyObject(verdict);
        if (manifest) freeReplyObject(manifest);
    }
    if (current) freeReplyObject(current);
}

static void pr_check_redis(const struct pr_config *cfg, struct pr_check *check) {
    char what[600];
    snprintf(what, sizeof(what), "redis %s", cfg->redis_address);
    const char *colon = strrchr(cfg->redis_address, ':');
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - cfg->redis_address), cfg->redis_address);
    int port = atoi(colon + 1); /* host:port checked by the loader */
    struct timeval tv = {cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(host, port, tv);
    if (!ctx || ctx->err) {
        pr_check_line(check, false, what, "unreachable: %s",
                      ctx ? ctx->errstr : "cannot allocate a context");
        pr_check_line(check, false, "refdata", "not checked: Redis is not reachable");
        if (ctx) redisFree(ctx);
        return;
    }
    redisSetTimeout(ctx, tv);
    struct pr_redis_auth auth = {cfg->redis_user, cfg->redis_password};
    char why[256];
    if (pr_redis_authenticate(ctx, &auth, why, sizeof(why)) != PR_OK) {
        pr_check_line(check, false, what, "refused AUTH: %s (check redis.user and redis.password)",
                      why);
        pr_check_line(check, false, "refdata", "not checked: Redis refused AUTH");
        redisFree(ctx);
        return;
    }
    redisReply *pong = redisCommand(ctx, "PING");
    bool ok = pong && pong->type == REDIS_REPLY_STATUS;
    char auth_text[300] = "no AUTH";
    if (*cfg->redis_password)
        snprintf(auth_text, sizeof(auth_text), "AUTH as %s%s%s", *cfg->redis_user ? "user '" : "",
                 *cfg->redis_user ? cfg->redis_user : "the default user",
                 *cfg->redis_user ? "'" : "");
    if (!ok) {
        char shown[256];
        pr_redact(pong && pong->str ? pong->str : ctx->errstr, cfg->redis_password, shown,
                  sizeof(shown));
        bool noauth = pong && pong->str && strncmp(pong->str, "NOAUTH", 6) == 0;
        pr_check_line(check, false, what, "PING: %s%s", shown,
                      noauth ? " (set redis.password)" : "");
        pr_check_line(check, false, "refdata", "not checked: Redis does not answer PING");
    } else {
        pr_check_line(check, true, what, "PING answered, %s", auth_text);
        pr_check_refdata(ctx, check);
    }
    if (pong) freeReplyObject(pong);
    redisFree(ctx);
}

/* ------------------------------------------------------------- command */

int pr_cmd_check_config(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"connect", no_argument, NULL, PR_CHECK_CONNECT},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "check-config", pr_check_usage, argc);
    bool connect = false;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_CHECK_CONNECT: connect = true; break;
        default: return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        }
    }
    if (!cli.config_path)
        return pr_cli_usage_error(&cli, "--config FILE is required (the file to check)");
    struct pr_check check = {0, 0};
    struct pr_config *cfg = pr_check_config(&cli, &check);
    if (cfg) {
        pr_check_rules(cfg, &check);
        if (connect) {
            pr_check_kafka(cfg, &check);
            pr_check_redis(cfg, &check);
        }
    }
    if (check.failed)
        printf("check-config: %d of %d checks failed%s\n", check.failed, check.run,
               cfg ? "" : " (the configuration is refused: nothing else checked)");
    else
        printf("check-config: all %d checks passed%s\n", check.run,
               connect ? "" : " (--connect also reaches Kafka, Redis and the reference data)");
    fflush(stdout);
    return pr_cli_finish(&cli, check.failed ? 2 : 0);
}
