/*
 * cmd_run.c - `parcelrisk run`: the signals it answers (SIGTERM/SIGINT stop,
 * SIGHUP reloads the rules), the engine, and the run summary.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine.h"

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

static void pr_run_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk run [--config FILE] [--set KEY=VALUE]... [--brokers LIST]\n"
            "                      [--exit-when-idle MS] [--summary FILE.json]\n"
            "Consumes declarations, decides, produces decisions, alerts and dead letters until\n"
            "SIGTERM or SIGINT (SIGHUP reloads the rule and policy files).\n"
            "  --exit-when-idle MS  stop once nothing has arrived for MS milliseconds (a whole\n"
            "                       number from 1 to 86400000, no unit) and the group has\n"
            "                       committed the input topic up to its end\n"
            "  --summary FILE.json  write counts, timings and the exit status there at the "
            "end\n" PR_CLI_SHARED_HELP
            "Exit status: 0 clean stop, 1 fatal runtime error, 2 bad command line or "
            "configuration.\n");
}

enum { PR_RUN_EXIT_WHEN_IDLE = PR_CLI_OWN, PR_RUN_SUMMARY };

/* The run summary (--summary FILE.json): totals, latency and per-operator
 * counters, for tests and benchmarks. */
static void pr_write_summary(const char *path, const struct pr_engine_totals *t, int rc) {
    json_t *operators = json_object();
    for (size_t i = 0; i < t->operator_count; i++) {
        const struct pr_engine_operator_stats *st = &t->operators[i];
        json_t *seen = json_object_get(operators, st->name);
        if (seen) {
            /* Both stages end with encode: one entry per name, summed. */
            const char *const fields[] = {"batches",     "records",    "busy_us",
                                          "round_trips", "cache_hits", "cache_misses"};
            const uint64_t values[] = {st->batches,     st->records,    st->busy_us,
                                       st->round_trips, st->cache_hits, st->cache_misses};
            for (size_t k = 0; k < 6; k++)
                json_object_set_new(
                    seen, fields[k],
                    json_integer(json_integer_value(json_object_get(seen, fields[k])) +
                                 (json_int_t)values[k]));
            continue;
        }
        json_object_set_new(
            operators, st->name,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "batches", (json_int_t)st->batches,
                      "records", (json_int_t)st->records, "busy_us", (json_int_t)st->busy_us,
                      "round_trips", (json_int_t)st->round_trips, "cache_hits",
                      (json_int_t)st->cache_hits, "cache_misses", (json_int_t)st->cache_misses));
    }
    json_t *latency =
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)t->latency_count, "p50",
                  (json_int_t)t->latency_p50_ms, "p99", (json_int_t)t->latency_p99_ms, "p999",
                  (json_int_t)t->latency_p999_ms, "max", (json_int_t)t->latency_max_ms);
    json_t *root = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:i, s:o}", "consumed",
        (json_int_t)t->consumed, "decisions", (json_int_t)t->decisions, "alerts",
        (json_int_t)t->alerts, "aggregate_alerts", (json_int_t)t->aggregate_alerts, "dead_letters",
        (json_int_t)t->dead_letters, "output_rejected", (json_int_t)t->output_rejected, "batches",
        (json_int_t)t->batches, "cpu_seconds", t->cpu_seconds, "wall_seconds", t->wall_seconds,
        "active_seconds", t->active_seconds, "latency_ms", latency, "exit_status", rc, "operators",
        operators);
    json_t *keyed = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "repartitioned", (json_int_t)t->repartitioned,
        "changelog_records", (json_int_t)t->changelog_records, "keys", (json_int_t)t->state_keys,
        "bytes", (json_int_t)t->state_bytes, "expired", (json_int_t)t->state_expired, "evicted",
        (json_int_t)t->state_evicted, "restored_records", (json_int_t)t->restored_records);
    if (root && keyed) {
        json_object_set_new(keyed, "restore_seconds", json_real(t->restore_seconds));
        json_object_set_new(root, "keyed_state", keyed);
        json_object_set_new(root, "peak_rss_mb", json_real(t->peak_rss_mb));
    }
    if (!root || json_dump_file(root, path, JSON_COMPACT) != 0)
        pr_error("cannot write the run summary to %s", path);
    json_decref(root);
}

/* The exit status of `run` (its --help): 0 clean stop, 1 fatal runtime
 * error, 2 bad command line or configuration. */
static int pr_run_exit_status(enum pr_engine_result result) {
    switch (result) {
    case PR_ENGINE_DONE:
    case PR_ENGINE_STOPPED_WAITING: return 0;
    case PR_ENGINE_FAILED: return 1;
    case PR_ENGINE_REFUSED: return 2;
    }
    return 1;
}

int pr_cmd_run(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"exit-when-idle", required_argument, NULL, PR_RUN_EXIT_WHEN_IDLE},
        {"summary", required_argument, NULL, PR_RUN_SUMMARY},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "run", pr_run_usage, argc);
    struct pr_engine_options options_run = {.stop = &pr_stop_requested,
                                            .reload = &pr_reload_requested};
    options_run.build_version = PR_VERSION;
    const char *summary_path = NULL;
    long long number = 0;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_RUN_EXIT_WHEN_IDLE:
            if (pr_cli_integer(&cli, "--exit-when-idle", optarg, 1, 86400000, "of milliseconds",
                               &number) != PR_OK)
                return pr_cli_done(&cli);
            options_run.exit_when_idle_ms = (int)number;
            break;
        case PR_RUN_SUMMARY: summary_path = optarg; break;
        default: return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        }
    }
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    pr_install_signals();
    struct pr_engine_totals totals;
    enum pr_engine_result result = pr_engine_run(cfg, &options_run, &totals);
    int rc = pr_run_exit_status(result);
    if (summary_path && result != PR_ENGINE_REFUSED) pr_write_summary(summary_path, &totals, rc);
    return pr_cli_finish(&cli, rc);
}
