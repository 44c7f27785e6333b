/*
 * cmd_topics.c - `parcelrisk topics create`.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"

static void pr_topics_usage(FILE *out) {
    fprintf(
        out,
        "usage: parcelrisk topics create [--config FILE] [--set KEY=VALUE]... [--brokers LIST]\n"
        "Creates the topics of the configuration (topics.declarations_partitions,\n"
        "topics.output_partitions), and the internal repartition and compacted changelog\n"
        "topics of the keyed state (topics.repartition_partitions), and returns once every\n"
        "partition has a "
        "leader.\n" PR_CLI_SHARED_HELP);
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
