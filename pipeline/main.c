/*
 * main.c - the parcelrisk binary: subcommand dispatch, shared options,
 * signals, and `run`.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
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

/* ------------------------------------------------------ the option parser */

void pr_cli_init(struct pr_cli *cli, const char *command, void (*usage)(FILE *out), int argc) {
    memset(cli, 0, sizeof(*cli));
    cli->command = command;
    cli->usage = usage;
    cli->overrides = pr_calloc((size_t)argc + 1, sizeof(*cli->overrides));
    optind = 0; /* glibc: start a fresh scan */
    opterr = 0; /* our messages, not getopt's */
}

static void pr_cli_free(struct pr_cli *cli) {
    free(cli->overrides);
    cli->overrides = NULL;
    pr_config_free(cli->cfg);
    cli->cfg = NULL;
}

int pr_cli_done(struct pr_cli *cli) {
    pr_cli_free(cli);
    return cli->exit_status;
}

int pr_cli_finish(struct pr_cli *cli, int rc) {
    pr_cli_free(cli);
    return rc;
}

static void pr_cli_vreport(struct pr_cli *cli, const char *fmt, va_list ap) {
    fprintf(stderr, "parcelrisk %s: ", cli->command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'parcelrisk %s --help'.\n", cli->command);
    cli->exit_status = 2;
}

static void pr_cli_report(struct pr_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pr_cli_report(struct pr_cli *cli, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pr_cli_vreport(cli, fmt, ap);
    va_end(ap);
}

int pr_cli_usage_error(struct pr_cli *cli, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pr_cli_vreport(cli, fmt, ap);
    va_end(ap);
    return pr_cli_done(cli);
}

/* getopt_long refused argv[optind - 1] (or the short option optopt): says
 * which option and why. */
static void pr_cli_report_refused(struct pr_cli *cli, int argc, char **argv,
                                  const struct option *options) {
    const char *text = optind - 1 < argc && optind > 0 ? argv[optind - 1] : "";
    if (strncmp(text, "--", 2) != 0) {
        pr_cli_report(cli, "unknown option '-%c'", optopt ? optopt : '?');
        return;
    }
    const char *name = text + 2;
    size_t len = strcspn(name, "=");
    size_t prefixed = 0;
    const struct option *match = NULL;
    for (const struct option *o = options; o->name; o++) {
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
            prefixed = 1;
            match = o;
            break;
        }
        if (strncmp(o->name, name, len) == 0) {
            prefixed++;
            match = o;
        }
    }
    if (prefixed == 1 && name[len] == '=')
        /* Known: refused because it was given a value it does not take. */
        pr_cli_report(cli, "option '--%s' takes no value", match->name);
    else if (prefixed > 1)
        pr_cli_report(cli, "ambiguous option '--%.*s' (%zu options start so)", (int)len, name,
                      prefixed);
    else
        pr_cli_report(cli, "unknown option '--%.*s'", (int)len, name);
}

int pr_cli_next(struct pr_cli *cli, int argc, char **argv, const struct option *options) {
    for (;;) {
        if (cli->after_dashdash) {
            if (optind >= argc) return PR_CLI_END;
            optarg = argv[optind++];
            return PR_CLI_POSITIONAL;
        }
        /* "-": positionals come back in order as 1 (also with POSIXLY_CORRECT);
         * ":": a missing value is told apart from an unknown option. */
        int opt = getopt_long(argc, argv, "-:h", options, NULL);
        switch (opt) {
        case -1:
            cli->after_dashdash = true; /* anything left follows "--" */
            continue;
        case 1:
            return PR_CLI_POSITIONAL;
        case 'h':
            cli->usage(stdout);
            cli->exit_status = 0;
            return PR_CLI_EXIT;
        case ':':
            pr_cli_report(cli, "option '%s' needs a value", argv[optind - 1]);
            return PR_CLI_EXIT;
        case '?':
            pr_cli_report_refused(cli, argc, argv, options);
            return PR_CLI_EXIT;
        case PR_CLI_OPT_CONFIG:
            if (cli->config_path) {
                pr_cli_report(cli, "--config given twice ('%s' and '%s'): give one file",
                              cli->config_path, optarg);
                return PR_CLI_EXIT;
            }
            cli->config_path = optarg;
            continue;
        case PR_CLI_OPT_SET:
        case PR_CLI_OPT_BROKERS:
            cli->overrides[cli->override_count++] = (struct pr_cli_override){opt, optarg};
            continue;
        case PR_CLI_OPT_ALLOW_DEFAULTS:
            cli->allow_defaults = true;
            continue;
        default:
            return opt;
        }
    }
}

int pr_cli_integer(struct pr_cli *cli, const char *flag, const char *text, long long min,
                   long long max, const char *what, long long *out) {
    if (pr_parse_integer(text, min, max, out) == PR_OK) return PR_OK;
    if (max == LLONG_MAX)
        pr_cli_report(cli, "%s: expected a whole number%s%s, %lld or more, got '%s'", flag,
                      *what ? " " : "", what, min, text);
    else
        pr_cli_report(cli, "%s: expected a whole number%s%s from %lld to %lld, got '%s'", flag,
                      *what ? " " : "", what, min, max, text);
    return PR_ERR;
}

int pr_cli_number(struct pr_cli *cli, const char *flag, const char *text, double min, double max,
                  const char *what, double *out) {
    char *end = NULL;
    errno = 0;
    /* Decimal only: strtod would also take hex ("0x10"), "inf" and leading spaces. */
    bool decimal = text[0] >= '0' && text[0] <= '9' &&
                   strspn(text, "0123456789.eE+-") == strlen(text);
    double v = decimal ? strtod(text, &end) : NAN;
    if (end && !*end && errno == 0 && isfinite(v) && v >= min && v <= max) {
        *out = v;
        return PR_OK;
    }
    pr_cli_report(cli, "%s: expected a number%s%s from %.15g to %.15g, got '%s'", flag,
                  *what ? " " : "", what, min, max, text);
    return PR_ERR;
}

struct pr_config *pr_cli_config(struct pr_cli *cli) {
    struct pr_config *cfg = cli->config_path
                                ? pr_config_load_opts(cli->config_path, cli->allow_defaults)
                                : pr_config_default();
    int rc = cfg ? PR_OK : PR_ERR;
    for (size_t i = 0; rc == PR_OK && i < cli->override_count; i++) {
        const char *arg = cli->overrides[i].arg;
        if (cli->overrides[i].option == PR_CLI_OPT_BROKERS) {
            rc = pr_config_set(cfg, "kafka.bootstrap.servers", arg, "--brokers", 0);
            continue;
        }
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            /* A mistyped secret ("--set redis.password:s3cret") is not echoed. */
            fprintf(stderr, "parcelrisk: config error: --set: expected key=value, got '%s'\n",
                    pr_config_key_is_secret(arg) ? "***" : arg);
            rc = PR_ERR;
            continue;
        }
        char *key = pr_strndup(arg, (size_t)(eq - arg));
        rc = pr_config_set(cfg, key, eq + 1, "--set", 0);
        free(key);
    }
    if (rc == PR_OK) rc = pr_config_validate(cfg);
    if (rc != PR_OK) {
        pr_config_free(cfg);
        cli->exit_status = 2;
        return NULL;
    }
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int l = 0; l < 4; l++)
        if (strcmp(cfg->log_level, levels[l]) == 0) pr_log_set_level((enum pr_log_level)l);
    pr_log_set_format(strcmp(cfg->log_format, "json") == 0 ? PR_LOG_JSON : PR_LOG_TEXT);
    cli->cfg = cfg;
    return cfg;
}

/* ------------------------------------------------------------------- run */

static void pr_run_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk run [--config FILE] [--set KEY=VALUE]... [--brokers LIST]\n"
            "                      [--exit-when-idle MS] [--summary FILE.json]\n"
            "Consumes declarations, decides, produces decisions, alerts and dead letters until\n"
            "SIGTERM or SIGINT (SIGHUP reloads the rule and policy files).\n"
            "  --exit-when-idle MS  stop once nothing has arrived for MS milliseconds (a whole\n"
            "                       number from 1 to 86400000, no unit) and the group has\n"
            "                       committed the input topic up to its end\n"
            "  --summary FILE.json  write counts, timings and the exit status there at the end\n"
            PR_CLI_SHARED_HELP
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
        json_object_set_new(operators, st->name,
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "batches", (json_int_t)st->batches,
                                      "records", (json_int_t)st->records, "busy_us", (json_int_t)st->busy_us,
                                      "round_trips", (json_int_t)st->round_trips, "cache_hits",
                                      (json_int_t)st->cache_hits, "cache_misses", (json_int_t)st->cache_misses));
    }
    json_t *latency = json_pack("{s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)t->latency_count, "p50",
                                (json_int_t)t->latency_p50_ms, "p99", (json_int_t)t->latency_p99_ms, "p999",
                                (json_int_t)t->latency_p999_ms, "max", (json_int_t)t->latency_max_ms);
    json_t *root = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:i, s:o}", "consumed", (json_int_t)t->consumed,
        "decisions", (json_int_t)t->decisions, "alerts", (json_int_t)t->alerts, "aggregate_alerts",
        (json_int_t)t->aggregate_alerts, "dead_letters", (json_int_t)t->dead_letters, "output_rejected",
        (json_int_t)t->output_rejected, "batches", (json_int_t)t->batches, "cpu_seconds", t->cpu_seconds,
        "wall_seconds", t->wall_seconds, "active_seconds", t->active_seconds, "latency_ms", latency,
        "exit_status", rc, "operators", operators);
    if (!root || json_dump_file(root, path, JSON_COMPACT) != 0)
        pr_error("cannot write the run summary to %s", path);
    json_decref(root);
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
    const char *summary_path = NULL;
    long long number = 0;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT:
            return pr_cli_done(&cli);
        case PR_RUN_EXIT_WHEN_IDLE:
            if (pr_cli_integer(&cli, "--exit-when-idle", optarg, 1, 86400000, "of milliseconds",
                               &number) != PR_OK)
                return pr_cli_done(&cli);
            options_run.exit_when_idle_ms = (int)number;
            break;
        case PR_RUN_SUMMARY:
            summary_path = optarg;
            break;
        default:
            return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        }
    }
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    pr_install_signals();
    struct pr_engine_totals totals;
    int rc = pr_engine_run(cfg, &options_run, &totals);
    if (summary_path && rc != 2) pr_write_summary(summary_path, &totals, rc);
    return pr_cli_finish(&cli, rc);
}

/* ---------------------------------------------------------------- topics */

static void pr_topics_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk topics create [--config FILE] [--set KEY=VALUE]... [--brokers LIST]\n"
            "Creates the four topics of the configuration (topics.declarations_partitions and\n"
            "topics.output_partitions) and returns once every partition has a leader.\n"
            PR_CLI_SHARED_HELP);
}

int pr_cmd_topics(int argc, char **argv) {
    static const struct option options[] = {PR_CLI_SHARED_OPTIONS, PR_CLI_OPTIONS_END};
    struct pr_cli cli;
    pr_cli_init(&cli, "topics", pr_topics_usage, argc);
    const char *action = NULL;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        if (opt == PR_CLI_EXIT) return pr_cli_done(&cli);
        if (action) return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        action = optarg;
    }
    if (!action) return pr_cli_usage_error(&cli, "expected an action: create");
    if (strcmp(action, "create") != 0)
        return pr_cli_usage_error(&cli, "unknown action '%s' (expected: create)", action);
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    int rc = pr_kafka_create_topics(cfg, 30000) == PR_OK ? 0 : 1;
    return pr_cli_finish(&cli, rc);
}

/* ------------------------------------------------------ dispatch, help */

static void pr_usage(FILE *out) {
    fprintf(out,
            "parcelrisk %s - customs risk decisions for small parcels, from Kafka to Kafka\n\n"
            "usage: parcelrisk <command> [options]\n\n"
            "  run          consume declarations, decide, produce decisions/alerts/DLQ\n"
            "  gen          produce synthetic courier-hub declarations\n"
            "  produce      produce declarations from JSON lines (hand-made cases)\n"
            "  tail         print decisions, alerts or dlq records as JSON lines\n"
            "  topics       create the topics of the configuration\n"
            "  refdata      load reference data (HTS, violators, countries) into Redis; status\n"
            "  whatif       replay a window under candidate rules or policy; report the change\n"
            "  config-keys  list every configuration key with its default\n"
            "  version      print the version\n"
            "  help [COMMAND]  this help, or the options of COMMAND\n\n"
            "Every command but config-keys, version and help takes the configuration options:\n"
            "  --config FILE, --set KEY=VALUE (repeatable), --brokers LIST, --allow-defaults\n"
            "`parcelrisk COMMAND --help` shows the options of COMMAND.\n\n"
            "Exit status: 0 success (a clean stop for run), 1 runtime failure, 2 bad command\n"
            "line or configuration.\n",
            PR_VERSION);
}

static void pr_config_keys_usage(FILE *out) {
    fprintf(out, "usage: parcelrisk config-keys\n"
                 "Lists every configuration key with its default and meaning.\n");
}

static void pr_version_usage(FILE *out) {
    fprintf(out, "usage: parcelrisk version\nPrints the version of parcelrisk and librdkafka.\n");
}

static void pr_print_version(void) {
    printf("parcelrisk %s (librdkafka %s)\n", PR_VERSION, rd_kafka_version_str());
}

/* config-keys and version: no options but --help, no arguments. */
static int pr_cmd_plain(const char *command, void (*usage)(FILE *out), void (*action)(void),
                        int argc, char **argv) {
    static const struct option options[] = {PR_CLI_OPTIONS_END};
    struct pr_cli cli;
    pr_cli_init(&cli, command, usage, argc);
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        if (opt == PR_CLI_EXIT) return pr_cli_done(&cli);
        return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
    }
    action();
    return pr_cli_finish(&cli, 0);
}

static int pr_cmd_config_keys(int argc, char **argv) {
    return pr_cmd_plain("config-keys", pr_config_keys_usage, pr_config_print_keys, argc, argv);
}

static int pr_cmd_version(int argc, char **argv) {
    return pr_cmd_plain("version", pr_version_usage, pr_print_version, argc, argv);
}

static const struct {
    const char *name;
    int (*main)(int argc, char **argv);
} pr_commands[] = {
    {"run", pr_cmd_run},         {"gen", pr_cmd_gen},
    {"tail", pr_cmd_tail},       {"topics", pr_cmd_topics},
    {"produce", pr_cmd_produce}, {"refdata", pr_cmd_refdata},
    {"config-keys", pr_cmd_config_keys}, {"version", pr_cmd_version},
    {"whatif", pr_cmd_whatif},
};

static int pr_dispatch(const char *cmd, int argc, char **argv) {
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_commands); i++)
        if (strcmp(cmd, pr_commands[i].name) == 0) return pr_commands[i].main(argc, argv);
    if (cmd[0] == '-')
        fprintf(stderr, "parcelrisk: unknown option '%s'\n", cmd);
    else
        fprintf(stderr, "parcelrisk: unknown command '%s'\n", cmd);
    fprintf(stderr, "Try 'parcelrisk --help'.\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        pr_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc == 2) {
            pr_usage(stdout);
            return 0;
        }
        if (argc > 3 || strcmp(cmd, "help") != 0) {
            fprintf(stderr, "parcelrisk: %s takes at most one command name\n"
                            "Try 'parcelrisk --help'.\n", cmd);
            return 2;
        }
        /* `parcelrisk help gen` is `parcelrisk gen --help`. */
        static char help_flag[] = "--help";
        char *help_argv[] = {argv[2], help_flag, NULL};
        return pr_dispatch(argv[2], 2, help_argv);
    }
    if (strcmp(cmd, "--version") == 0 && argc == 2) cmd = "version";
    return pr_dispatch(cmd, argc - 1, argv + 1);
}
