/*
 * main.c - the parcelrisk binary: the table of subcommands (each in its own
 * cmd_*.c; the option parser they share is cli.c), help, and the two
 * commands without a configuration (config-keys, version).
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "operator.h"

#ifndef PR_VERSION
#define PR_VERSION "0.1.0"
#endif

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
            "  check-config check a configuration file (--connect: Kafka, Redis, refdata too)\n"
            "  dlq replay   send the original payloads of chosen dead letters back to the input\n"
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
    {"run", pr_cmd_run},
    {"gen", pr_cmd_gen},
    {"tail", pr_cmd_tail},
    {"topics", pr_cmd_topics},
    {"produce", pr_cmd_produce},
    {"refdata", pr_cmd_refdata},
    {"config-keys", pr_cmd_config_keys},
    {"version", pr_cmd_version},
    {"check-config", pr_cmd_check_config},
    {"dlq", pr_cmd_dlq},
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
    pr_operators_register();
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
            fprintf(stderr,
                    "parcelrisk: %s takes at most one command name\n"
                    "Try 'parcelrisk --help'.\n",
                    cmd);
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
