/*
 * cli.c - the option parser every subcommand shares (cli.h): glibc
 * getopt_long, the shared configuration options, strict numbers, and the
 * configuration loaded from them.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
        case 1: return PR_CLI_POSITIONAL;
        case 'h':
            cli->usage(stdout);
            cli->exit_status = 0;
            return PR_CLI_EXIT;
        case ':':
            pr_cli_report(cli, "option '%s' needs a value", argv[optind - 1]);
            return PR_CLI_EXIT;
        case '?': pr_cli_report_refused(cli, argc, argv, options); return PR_CLI_EXIT;
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
        case PR_CLI_OPT_ALLOW_DEFAULTS: cli->allow_defaults = true; continue;
        default: return opt;
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
    bool decimal =
        text[0] >= '0' && text[0] <= '9' && strspn(text, "0123456789.eE+-") == strlen(text);
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
