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

static void pr_refdata_usage(void) {
    fprintf(stderr,
            "usage: parcelrisk refdata load --hts FILE --violators FILE --countries FILE\n"
            "                               [--redis HOST:PORT] [--skip-bad] [--grace-seconds N]\n"
            "                               [--dry-run] [--quiet] [--config FILE] [--set k=v]\n"
            "       parcelrisk refdata status [--redis HOST:PORT] [--config FILE]\n"
            "  load      validate the three CSV files, then write them as a new version and\n"
            "            make it current in one step; any bad row refuses the whole load\n"
            "            (Redis unchanged) unless --skip-bad\n"
            "  --redis   Redis address (default: redis.address of the configuration)\n"
            "  --skip-bad        load the good rows, report how many bad ones were skipped\n"
            "  --grace-seconds N previous versions stay readable N more seconds (default 3600;\n"
            "                    0 deletes them at once)\n"
            "  --dry-run         validate only; does not connect to Redis\n"
            "  status    current version, when it was loaded, row counts, versions present\n");
}

static bool pr_parse_seconds(const char *s, int64_t *ms) {
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!*s || !end || *end || v < 0 || v > 365LL * 86400) return false;
    *ms = v * 1000;
    return true;
}

static int pr_refdata_cmd_load(struct pr_config *cfg, int argc, char **argv) {
    struct pr_refdata_load_options opts = {.redis_address = cfg->redis_address,
                                           .grace_ms = PR_REFDATA_DEFAULT_GRACE_MS};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--skip-bad") == 0) {
            opts.skip_bad = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            opts.dry_run = true;
        } else if (strcmp(a, "--quiet") == 0) {
            opts.quiet = true;
        } else if (v && strcmp(a, "--hts") == 0) {
            opts.hts_path = argv[++i];
        } else if (v && strcmp(a, "--violators") == 0) {
            opts.violators_path = argv[++i];
        } else if (v && strcmp(a, "--countries") == 0) {
            opts.countries_path = argv[++i];
        } else if (v && strcmp(a, "--redis") == 0) {
            opts.redis_address = argv[++i];
        } else if (v && strcmp(a, "--grace-seconds") == 0) {
            if (!pr_parse_seconds(v, &opts.grace_ms)) {
                fprintf(stderr, "parcelrisk refdata load: --grace-seconds: expected a whole "
                                "number of seconds 0-31536000\n");
                return 2;
            }
            i++;
        } else {
            pr_refdata_usage();
            return 2;
        }
    }
    if (!opts.hts_path || !opts.violators_path || !opts.countries_path) {
        fprintf(stderr, "parcelrisk refdata load: --hts, --violators and --countries are all "
                        "required (a load replaces the whole reference set)\n");
        return 2;
    }
    struct pr_refdata_load_result res;
    int rc = pr_refdata_load(&opts, &res);
    if (rc != PR_REFDATA_OK) return 1;
    if (opts.dry_run)
        printf("refdata: dry run, nothing written: the files would load\n");
    else
        printf("refdata: version %s is current (previous: %s)\n", res.version,
               res.previous[0] ? res.previous : "none");
    printf("  %s: %llu rows\n", opts.hts_path, (unsigned long long)res.hts_rows);
    printf("  %s: %llu rows, %llu keys\n", opts.violators_path,
           (unsigned long long)res.violator_rows, (unsigned long long)res.violator_keys);
    printf("  %s: %llu rows\n", opts.countries_path, (unsigned long long)res.country_rows);
    if (res.skipped_rows)
        printf("  skipped: %llu bad row(s)\n", (unsigned long long)res.skipped_rows);
    if (!opts.dry_run && res.expiring_versions && opts.grace_ms == 0)
        printf("  %llu previous version(s) deleted\n", (unsigned long long)res.expiring_versions);
    else if (!opts.dry_run && res.expiring_versions)
        printf("  %llu previous version(s) expire in %lld s\n",
               (unsigned long long)res.expiring_versions, (long long)(opts.grace_ms / 1000));
    printf("  seconds: %.3f (read and validate %.3f, write %.3f)\n", res.total_seconds,
           res.parse_seconds, res.write_seconds);
    if (res.skipped_rows)
        fprintf(stderr, "refdata: skipped %llu bad row(s)\n", (unsigned long long)res.skipped_rows);
    return 0;
}

int pr_cmd_refdata(int argc, char **argv) {
    struct pr_config *cfg = pr_cli_config(&argc, argv);
    if (!cfg) return 2;
    int rc = 2;
    if (argc < 2) {
        pr_refdata_usage();
    } else if (strcmp(argv[1], "load") == 0) {
        rc = pr_refdata_cmd_load(cfg, argc, argv);
    } else if (strcmp(argv[1], "status") == 0) {
        const char *address = cfg->redis_address;
        bool ok = true;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc)
                address = argv[++i];
            else
                ok = false;
        }
        if (!ok)
            pr_refdata_usage();
        else
            rc = pr_refdata_status(address, 0, stdout) == PR_OK ? 0 : 1;
    } else {
        pr_refdata_usage();
    }
    pr_config_free(cfg);
    return rc;
}
