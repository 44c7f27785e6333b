/*
 * cmd_refdata.c - `parcelrisk refdata load|status`: loads the reference data
 * CSV files of DOMAIN.md section 7 into Redis as a new version, or shows the
 * version readers use. The work is in refdata.c (refdata_load.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "refdata_load.h"

static void pr_refdata_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk refdata load --hts FILE --violators FILE --countries FILE\n"
            "                               [--redis HOST:PORT] [--skip-bad] [--grace-seconds N]\n"
            "                               [--dry-run] [--quiet] [--config FILE] [--set "
            "KEY=VALUE]...\n"
            "       parcelrisk refdata status [--redis HOST:PORT] [--config FILE] [--set "
            "KEY=VALUE]...\n"
            "  load      validate the three CSV files, then write them as a new version and\n"
            "            make it current in one step; any bad row refuses the whole load\n"
            "            (Redis unchanged) unless --skip-bad\n"
            "  --redis   Redis address (default: redis.address of the configuration)\n"
            "  --skip-bad        load the good rows, report how many bad ones were skipped\n"
            "  --grace-seconds N previous versions stay readable N more seconds, a whole number\n"
            "                    from 0 to 31536000 without unit (default 3600; 0 deletes them\n"
            "                    at once)\n"
            "  --dry-run         validate only; does not connect to Redis\n"
            "  --quiet           no progress lines\n"
            "  status    current version, when it was loaded, row counts, versions "
            "present\n" PR_CLI_SHARED_HELP);
}

enum {
    PR_REFDATA_OPT_HTS = PR_CLI_OWN,
    PR_REFDATA_OPT_VIOLATORS,
    PR_REFDATA_OPT_COUNTRIES,
    PR_REFDATA_OPT_REDIS,
    PR_REFDATA_OPT_SKIP_BAD,
    PR_REFDATA_OPT_GRACE,
    PR_REFDATA_OPT_DRY_RUN,
    PR_REFDATA_OPT_QUIET,
};

static int pr_refdata_cmd_load(const struct pr_refdata_load_options *opts) {
    struct pr_refdata_load_result res;
    int rc = pr_refdata_load(opts, &res);
    if (rc != PR_REFDATA_OK) return 1;
    if (opts->dry_run)
        printf("refdata: dry run, nothing written: the files would load\n");
    else
        printf("refdata: version %s is current (previous: %s)\n", res.version,
               res.previous[0] ? res.previous : "none");
    printf("  %s: %llu rows\n", opts->hts_path, (unsigned long long)res.hts_rows);
    printf("  %s: %llu rows, %llu keys\n", opts->violators_path,
           (unsigned long long)res.violator_rows, (unsigned long long)res.violator_keys);
    printf("  %s: %llu rows\n", opts->countries_path, (unsigned long long)res.country_rows);
    if (res.skipped_rows)
        printf("  skipped: %llu bad row(s)\n", (unsigned long long)res.skipped_rows);
    if (!opts->dry_run && res.expiring_versions && opts->grace_ms == 0)
        printf("  %llu previous version(s) deleted\n", (unsigned long long)res.expiring_versions);
    else if (!opts->dry_run && res.expiring_versions)
        printf("  %llu previous version(s) expire in %lld s\n",
               (unsigned long long)res.expiring_versions, (long long)(opts->grace_ms / 1000));
    printf("  seconds: %.3f (read and validate %.3f, write %.3f)\n", res.total_seconds,
           res.parse_seconds, res.write_seconds);
    if (res.skipped_rows)
        fprintf(stderr, "refdata: skipped %llu bad row(s)\n", (unsigned long long)res.skipped_rows);
    return 0;
}

int pr_cmd_refdata(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"hts", required_argument, NULL, PR_REFDATA_OPT_HTS},
        {"violators", required_argument, NULL, PR_REFDATA_OPT_VIOLATORS},
        {"countries", required_argument, NULL, PR_REFDATA_OPT_COUNTRIES},
        {"redis", required_argument, NULL, PR_REFDATA_OPT_REDIS},
        {"skip-bad", no_argument, NULL, PR_REFDATA_OPT_SKIP_BAD},
        {"grace-seconds", required_argument, NULL, PR_REFDATA_OPT_GRACE},
        {"dry-run", no_argument, NULL, PR_REFDATA_OPT_DRY_RUN},
        {"quiet", no_argument, NULL, PR_REFDATA_OPT_QUIET},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "refdata", pr_refdata_usage, argc);
    struct pr_refdata_load_options opts = {.grace_ms = PR_REFDATA_DEFAULT_GRACE_MS};
    const char *action = NULL, *redis = NULL, *load_only = NULL;
    long long seconds = 0;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        if (opt >= PR_CLI_OWN && opt != PR_REFDATA_OPT_REDIS && !load_only)
            for (const struct option *o = options; o->name; o++)
                if (o->val == opt) load_only = o->name;
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_REFDATA_OPT_HTS: opts.hts_path = optarg; break;
        case PR_REFDATA_OPT_VIOLATORS: opts.violators_path = optarg; break;
        case PR_REFDATA_OPT_COUNTRIES: opts.countries_path = optarg; break;
        case PR_REFDATA_OPT_REDIS: redis = optarg; break;
        case PR_REFDATA_OPT_SKIP_BAD: opts.skip_bad = true; break;
        case PR_REFDATA_OPT_DRY_RUN: opts.dry_run = true; break;
        case PR_REFDATA_OPT_QUIET: opts.quiet = true; break;
        case PR_REFDATA_OPT_GRACE:
            if (pr_cli_integer(&cli, "--grace-seconds", optarg, 0, 365LL * 86400, "of seconds",
                               &seconds) != PR_OK)
                return pr_cli_done(&cli);
            opts.grace_ms = seconds * 1000;
            break;
        default:
            if (action) return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
            action = optarg;
        }
    }
    if (!action) return pr_cli_usage_error(&cli, "expected an action: load or status");
    bool load = strcmp(action, "load") == 0;
    if (!load && strcmp(action, "status") != 0)
        return pr_cli_usage_error(&cli, "unknown action '%s' (expected: load or status)", action);
    if (!load && load_only)
        return pr_cli_usage_error(&cli, "option '--%s' is for refdata load only", load_only);
    if (load && (!opts.hts_path || !opts.violators_path || !opts.countries_path))
        return pr_cli_usage_error(&cli, "load: --hts, --violators and --countries are all "
                                        "required (a load replaces the whole reference set)");
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    /* --redis is redis.address, checked as the configuration checks it. */
    if (redis && pr_config_set(cfg, "redis.address", redis, "--redis", 0) != PR_OK)
        return pr_cli_finish(&cli, 2);
    if (!load)
        return pr_cli_finish(&cli, pr_refdata_status(cfg->redis_address, cfg->redis_user,
                                                     cfg->redis_password, 0, stdout) == PR_OK
                                       ? 0
                                       : 1);
    opts.redis_address = cfg->redis_address;
    opts.redis_user = cfg->redis_user;
    opts.redis_password = cfg->redis_password;
    return pr_cli_finish(&cli, pr_refdata_cmd_load(&opts));
}
