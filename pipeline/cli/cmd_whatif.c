/*
 * cmd_whatif.c - `parcelrisk whatif`: the command line of the replay
 * (pipeline/whatif/whatif.c does the work).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "whatif.h"

static void pr_whatif_usage(FILE *out) {
    fprintf(
        out,
        "usage: parcelrisk whatif --from T1 --to T2 [--rules CANDIDATE.yaml] [--policy "
        "CANDIDATE.yaml]\n"
        "                         [--baseline-rules FILE] [--baseline-policy FILE] [--out DIR]\n"
        "                         [--by arrival_time|timestamp] [--scan-from T] [--list N]\n"
        "                         [--all FILE.jsonl]\n"
        "                         [--batch N] [--state-max-mb N] [--no-charts] [--quiet]\n"
        "Replays the declarations of the input topic in [T1, T2) under the baseline rules and\n"
        "policy and under the candidate files, and reports what would have changed. Writes\n"
        "nothing to Kafka or Redis: reads the topic without a consumer group and the reference\n"
        "data version current at start (once, into memory).\n"
        "  --from T1, --to T2     the window, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC), T1 "
        "inclusive\n"
        "  --rules FILE           candidate rule file (default: the baseline's)\n"
        "  --policy FILE          candidate policy file (default: the baseline's); at least one\n"
        "                         of --rules and --policy is needed\n"
        "  --baseline-rules FILE  baseline rule file (default: rules.file of the configuration)\n"
        "  --baseline-policy FILE baseline policy file (default: policy.file of the "
        "configuration)\n"
        "  --out DIR              where report.json, report.md, changed.jsonl, run.json and the\n"
        "                         charts go (default: whatif-out; created when missing)\n"
        "  --by arrival_time      window by the declaration's arrival_time (default): the whole\n"
        "                         retained log is read, from --scan-from when given\n"
        "  --by timestamp         window by the Kafka timestamp: reading starts at "
        "offsetsForTimes(T1)\n"
        "  --scan-from T          arrival_time mode: start reading each partition at the first\n"
        "                         record with a Kafka timestamp at or after T\n"
        "  --all FILE.jsonl       also write every decided declaration there (the lines of\n"
        "                         changed.jsonl, for audits and tests)\n"
        "  --list N               changed declarations listed in report.md (default 100; all of\n"
        "                         them are in changed.jsonl)\n"
        "  --batch N              records per step and side (default 8192)\n"
        "  --state-max-mb N       memory bound of each side's one-person-one-day state (default\n"
        "                         0: unbounded; evictions are counted in the report)\n"
        "  --no-charts            no PNG charts (they need gnuplot)\n"
        "  --quiet                no progress line on stderr\n" PR_CLI_SHARED_HELP
        "Exit status: 0 report written, 1 runtime failure (Kafka, Redis, a file), 2 bad command\n"
        "line, configuration, rule or policy file.\n");
}

enum {
    PR_WHATIF_FROM = PR_CLI_OWN,
    PR_WHATIF_TO,
    PR_WHATIF_RULES,
    PR_WHATIF_POLICY,
    PR_WHATIF_BASELINE_RULES,
    PR_WHATIF_BASELINE_POLICY,
    PR_WHATIF_OUT,
    PR_WHATIF_BY,
    PR_WHATIF_SCAN_FROM,
    PR_WHATIF_LIST,
    PR_WHATIF_BATCH,
    PR_WHATIF_STATE_MAX_MB,
    PR_WHATIF_NO_CHARTS,
    PR_WHATIF_QUIET,
    PR_WHATIF_ALL,
};

static int pr_whatif_instant(struct pr_cli *cli, const char *flag, const char *text, int64_t *ms) {
    if (pr_parse_utc(text, ms) == PR_OK) return PR_OK;
    pr_cli_usage_error(cli, "%s: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC), got '%s'", flag,
                       text);
    return PR_ERR;
}

int pr_cmd_whatif(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"from", required_argument, NULL, PR_WHATIF_FROM},
        {"to", required_argument, NULL, PR_WHATIF_TO},
        {"rules", required_argument, NULL, PR_WHATIF_RULES},
        {"policy", required_argument, NULL, PR_WHATIF_POLICY},
        {"baseline-rules", required_argument, NULL, PR_WHATIF_BASELINE_RULES},
        {"baseline-policy", required_argument, NULL, PR_WHATIF_BASELINE_POLICY},
        {"out", required_argument, NULL, PR_WHATIF_OUT},
        {"by", required_argument, NULL, PR_WHATIF_BY},
        {"scan-from", required_argument, NULL, PR_WHATIF_SCAN_FROM},
        {"list", required_argument, NULL, PR_WHATIF_LIST},
        {"batch", required_argument, NULL, PR_WHATIF_BATCH},
        {"state-max-mb", required_argument, NULL, PR_WHATIF_STATE_MAX_MB},
        {"no-charts", no_argument, NULL, PR_WHATIF_NO_CHARTS},
        {"quiet", no_argument, NULL, PR_WHATIF_QUIET},
        {"all", required_argument, NULL, PR_WHATIF_ALL},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "whatif", pr_whatif_usage, argc);
    struct pr_whatif_options o = {.scan_from_ms = -1,
                                  .out_dir = "whatif-out",
                                  .listed_max = 100,
                                  .batch_size = 8192,
                                  .charts = true};
    bool have_from = false, have_to = false;
    long long number = 0;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_WHATIF_FROM:
            if (pr_whatif_instant(&cli, "--from", optarg, &o.from_ms) != PR_OK) return 2;
            have_from = true;
            break;
        case PR_WHATIF_TO:
            if (pr_whatif_instant(&cli, "--to", optarg, &o.to_ms) != PR_OK) return 2;
            have_to = true;
            break;
        case PR_WHATIF_SCAN_FROM:
            if (pr_whatif_instant(&cli, "--scan-from", optarg, &o.scan_from_ms) != PR_OK) return 2;
            break;
        case PR_WHATIF_RULES: o.rules_path = optarg; break;
        case PR_WHATIF_POLICY: o.policy_path = optarg; break;
        case PR_WHATIF_BASELINE_RULES: o.baseline_rules_path = optarg; break;
        case PR_WHATIF_BASELINE_POLICY: o.baseline_policy_path = optarg; break;
        case PR_WHATIF_OUT:
            if (!optarg[0]) return pr_cli_usage_error(&cli, "--out: expected a directory");
            o.out_dir = optarg;
            break;
        case PR_WHATIF_BY:
            if (strcmp(optarg, "timestamp") == 0)
                o.by_timestamp = true;
            else if (strcmp(optarg, "arrival_time") == 0)
                o.by_timestamp = false;
            else
                return pr_cli_usage_error(
                    &cli, "--by: expected arrival_time or timestamp, got '%s'", optarg);
            break;
        case PR_WHATIF_LIST:
            if (pr_cli_integer(&cli, "--list", optarg, 0, 1000000, "", &number) != PR_OK)
                return pr_cli_done(&cli);
            o.listed_max = (int)number;
            break;
        case PR_WHATIF_BATCH:
            if (pr_cli_integer(&cli, "--batch", optarg, 1, 100000, "", &number) != PR_OK)
                return pr_cli_done(&cli);
            o.batch_size = (size_t)number;
            break;
        case PR_WHATIF_STATE_MAX_MB:
            if (pr_cli_integer(&cli, "--state-max-mb", optarg, 0, 1048576, "of MiB", &number) !=
                PR_OK)
                return pr_cli_done(&cli);
            o.state_max_mb = (size_t)number;
            break;
        case PR_WHATIF_NO_CHARTS: o.charts = false; break;
        case PR_WHATIF_QUIET: o.quiet = true; break;
        case PR_WHATIF_ALL: o.all_path = optarg; break;
        default: return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        }
    }
    if (!have_from || !have_to) return pr_cli_usage_error(&cli, "--from and --to are required");
    if (o.to_ms <= o.from_ms) return pr_cli_usage_error(&cli, "--to must be after --from");
    if (!o.rules_path && !o.policy_path)
        return pr_cli_usage_error(&cli, "give the candidate: --rules FILE, --policy FILE or both");
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    return pr_cli_finish(&cli, pr_whatif_run(cfg, &o));
}
