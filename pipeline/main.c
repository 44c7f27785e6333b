/*
 * main.c - the parcelrisk binary: subcommand dispatch, shared options,
 * signals, and `run`.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "kafka.h"

#ifndef PR_VERSION
#define PR_VERSION "0.1.0"
#endif

static volatile sig_atomic_t pr_stop_requested;
static volatile sig_atomic_t pr_reload_requested;

static void pr_on_reload_signal(int sig) {
    (void)sig;
    pr_reload_requested = 1;
}

static void pr_on_stop_signal(int sig) {
    (void)sig;
    pr_stop_requested = 1;
}

static void pr_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pr_on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = pr_on_reload_signal;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

struct pr_config *pr_cli_config(int *argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < *argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) path = argv[i + 1];
    struct pr_config *cfg = path ? pr_config_load(path) : pr_config_default();
    if (!cfg) return NULL;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) {
            i++;
            continue;
        }
        if ((strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "--brokers") == 0) && i + 1 < *argc) {
            const char *arg = argv[++i];
            int rc;
            if (strcmp(argv[i - 1], "--brokers") == 0) {
                rc = pr_config_set(cfg, "kafka.bootstrap.servers", arg, "--brokers", 0);
            } else {
                const char *eq = strchr(arg, '=');
                if (!eq) {
                    fprintf(stderr, "parcelrisk: --set expects key=value, got '%s'\n", arg);
                    pr_config_free(cfg);
                    return NULL;
                }
                char *key = pr_strndup(arg, (size_t)(eq - arg));
                rc = pr_config_set(cfg, key, eq + 1, "--set", 0);
                free(key);
            }
            if (rc != PR_OK) {
                pr_config_free(cfg);
                return NULL;
            }
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int l = 0; l < 4; l++)
        if (strcmp(cfg->log_level, levels[l]) == 0) pr_log_set_level((enum pr_log_level)l);
    return cfg;
}

int pr_cmd_run(int argc, char **argv) {
    struct pr_config *cfg = pr_cli_config(&argc, argv);
    if (!cfg) return 2;
    struct pr_engine_options options = {.stop = &pr_stop_requested, .reload = &pr_reload_requested};
    const char *summary_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--exit-when-idle") == 0 && i + 1 < argc) {
            options.exit_when_idle_ms = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--summary") == 0 && i + 1 < argc) {
            summary_path = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: parcelrisk run [--config FILE] [--set key=value]... [--brokers LIST]\n"
                    "                      [--exit-when-idle MS] [--summary FILE.json]\n");
            pr_config_free(cfg);
            return 2;
        }
    }
    pr_install_signals();
    struct pr_engine_totals totals;
    int rc = pr_engine_run(cfg, &options, &totals);
    if (summary_path && rc != 2) {
        FILE *fp = fopen(summary_path, "w");
        if (fp) {
            fprintf(fp,
                    "{\"consumed\": %llu, \"decisions\": %llu, \"alerts\": %llu, "
                    "\"aggregate_alerts\": %llu, \"dead_letters\": %llu, \"batches\": %llu, "
                    "\"cpu_seconds\": %.6f, \"wall_seconds\": %.6f, \"active_seconds\": %.6f, "
                    "\"latency_ms\": {\"count\": %llu, \"p50\": %llu, \"p99\": %llu, \"p999\": %llu, "
                    "\"max\": %llu}, \"exit_status\": %d, \"operators\": {",
                    (unsigned long long)totals.consumed, (unsigned long long)totals.decisions,
                    (unsigned long long)totals.alerts, (unsigned long long)totals.aggregate_alerts,
                    (unsigned long long)totals.dead_letters, (unsigned long long)totals.batches,
                    totals.cpu_seconds, totals.wall_seconds, totals.active_seconds,
                    (unsigned long long)totals.latency_count, (unsigned long long)totals.latency_p50_ms,
                    (unsigned long long)totals.latency_p99_ms, (unsigned long long)totals.latency_p999_ms,
                    (unsigned long long)totals.latency_max_ms, rc);
            for (size_t i = 0; i < totals.operator_count; i++) {
                const struct pr_engine_operator_stats *st = &totals.operators[i];
                fprintf(fp,
                        "%s\"%s\": {\"batches\": %llu, \"records\": %llu, \"busy_us\": %llu, "
                        "\"round_trips\": %llu, \"cache_hits\": %llu, \"cache_misses\": %llu}",
                        i ? ", " : "", st->name, (unsigned long long)st->batches,
                        (unsigned long long)st->records, (unsigned long long)st->busy_us,
                        (unsigned long long)st->round_trips, (unsigned long long)st->cache_hits,
                        (unsigned long long)st->cache_misses);
            }
            fprintf(fp, "}}\n");
            fclose(fp);
        }
    }
    pr_config_free(cfg);
    return rc;
}

int pr_cmd_topics(int argc, char **argv) {
    struct pr_config *cfg = pr_cli_config(&argc, argv);
    if (!cfg) return 2;
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "usage: parcelrisk topics create [--config FILE] [--brokers LIST]\n");
        pr_config_free(cfg);
        return 2;
    }
    int rc = pr_kafka_create_topics(cfg, 30000) == PR_OK ? 0 : 1;
    pr_config_free(cfg);
    return rc;
}

static void pr_usage(void) {
    fprintf(stderr,
            "parcelrisk %s - customs risk decisions for small parcels, from Kafka to Kafka\n\n"
            "usage: parcelrisk <command> [options]\n\n"
            "  run          consume declarations, decide, produce decisions/alerts/DLQ\n"
            "  gen          produce synthetic courier-hub declarations\n"
            "  produce      produce declarations from JSON lines (hand-made cases)\n"
            "  tail         print decisions, alerts or dlq records as JSON lines\n"
            "  topics       create the topics of the configuration\n"
            "  refdata      load reference data (HTS, violators, countries) into Redis; status\n"
            "  config-keys  list every configuration key with its default\n"
            "  version      print the version\n\n"
            "Shared options: --config FILE, --set key=value, --brokers host:port\n",
            PR_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        pr_usage();
        return 2;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (strcmp(cmd, "run") == 0) return pr_cmd_run(argc, argv);
    if (strcmp(cmd, "gen") == 0) return pr_cmd_gen(argc, argv);
    if (strcmp(cmd, "tail") == 0) return pr_cmd_tail(argc, argv);
    if (strcmp(cmd, "topics") == 0) return pr_cmd_topics(argc, argv);
    if (strcmp(cmd, "produce") == 0) return pr_cmd_produce(argc, argv);
    if (strcmp(cmd, "refdata") == 0) return pr_cmd_refdata(argc, argv);
    if (strcmp(cmd, "config-keys") == 0) {
        pr_config_print_keys();
        return 0;
    }
    if (strcmp(cmd, "version") == 0) {
        printf("parcelrisk %s (librdkafka %s)\n", PR_VERSION, rd_kafka_version_str());
        return 0;
    }
    pr_usage();
    return 2;
}
