/*
 * cli.h - the subcommands of the parcelrisk binary and the one option parser
 * they share (glibc getopt_long).
 *
 * Every subcommand parses its argv the same way:
 *
 *   static const struct option options[] = {
 *       PR_CLI_SHARED_OPTIONS,                 (subcommands with a configuration)
 *       {"count", required_argument, NULL, PR_GEN_COUNT},
 *       PR_CLI_OPTIONS_END,
 *   };
 *   struct pr_cli cli;
 *   pr_cli_init(&cli, "gen", pr_gen_usage, argc);
 *   int opt;
 *   while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
 *       if (opt == PR_CLI_EXIT) return pr_cli_done(&cli);   (help shown: 0, error: 2)
 *       ...
 *   }
 *   struct pr_config *cfg = pr_cli_config(&cli);
 *   if (!cfg) return pr_cli_done(&cli);                     (2)
 *   ...
 *   return pr_cli_finish(&cli, rc);                         (frees cfg, returns rc)
 *
 * pr_cli_next handles the shared options (--config, --set, --brokers,
 * --allow-defaults) and --help/-h itself, names unknown options and missing
 * values, and returns each positional argument as PR_CLI_POSITIONAL (optarg
 * holds it), in order, also those after "--". Errors print
 * "parcelrisk CMD: what" and "Try 'parcelrisk CMD --help'." to stderr.
 */
#ifndef PR_CLI_H
#define PR_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "config.h"

/* Values of the shared options; a subcommand's own options use values from
 * PR_CLI_OWN up. */
enum {
    PR_CLI_OPT_CONFIG = 0x100,
    PR_CLI_OPT_SET,
    PR_CLI_OPT_BROKERS,
    PR_CLI_OPT_ALLOW_DEFAULTS,
    PR_CLI_OWN = 0x200,
};

/* Returns of pr_cli_next besides an option's value. */
enum {
    PR_CLI_END = -1,       /* no more arguments */
    PR_CLI_EXIT = -2,      /* help printed or an error reported: return pr_cli_done() */
    PR_CLI_POSITIONAL = 1, /* a positional argument, in optarg */
};

#define PR_CLI_SHARED_OPTIONS                                                                      \
    {"config", required_argument, NULL, PR_CLI_OPT_CONFIG},                                        \
        {"set", required_argument, NULL, PR_CLI_OPT_SET},                                          \
        {"brokers", required_argument, NULL, PR_CLI_OPT_BROKERS}, {                                \
        "allow-defaults", no_argument, NULL, PR_CLI_OPT_ALLOW_DEFAULTS                             \
    }
#define PR_CLI_OPTIONS_END                                                                         \
    {"help", no_argument, NULL, 'h'}, {                                                            \
        NULL, 0, NULL, 0                                                                           \
    }

/* The usage text of the shared options, for the subcommands' --help. */
#define PR_CLI_SHARED_HELP                                                                         \
    "Configuration (the file first, then every --set and --brokers in the order given):\n"         \
    "  --config FILE      the YAML configuration (see `parcelrisk config-keys`); a file that\n"    \
    "                     sets nothing is refused unless --allow-defaults\n"                       \
    "  --set KEY=VALUE    override one key (repeatable)\n"                                         \
    "  --brokers LIST     the same as --set kafka.bootstrap.servers=LIST\n"                        \
    "  --allow-defaults   accept a --config file that sets nothing\n"                              \
    "  -h, --help         this help\n"

struct pr_cli_override {
    int option; /* PR_CLI_OPT_SET or PR_CLI_OPT_BROKERS */
    const char *arg;
};

struct pr_cli {
    const char *command;      /* "run", "gen", ... */
    void (*usage)(FILE *out); /* the subcommand's --help text */
    int exit_status;          /* after PR_CLI_EXIT: 0 help, 2 error */
    bool after_dashdash;      /* past "--": the rest is positional */
    const char *config_path;
    bool allow_defaults;
    size_t override_count;
    struct pr_cli_override *overrides; /* room for argc of them */
    struct pr_config *cfg;             /* made by pr_cli_config, freed by pr_cli_finish */
};

void pr_cli_init(struct pr_cli *cli, const char *command, void (*usage)(FILE *out), int argc);
/* The next argument; see the top of this file. */
int pr_cli_next(struct pr_cli *cli, int argc, char **argv, const struct option *options);
/* Prints "parcelrisk CMD: <message>" and the --help hint to stderr, frees
 * what cli holds and returns 2: `return pr_cli_usage_error(&cli, ...)`. */
int pr_cli_usage_error(struct pr_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees what cli holds and returns its exit status: 0 after --help, 2 after
 * an error of pr_cli_next, pr_cli_integer, pr_cli_number or pr_cli_config. */
int pr_cli_done(struct pr_cli *cli);
/* Frees what cli holds and returns rc. */
int pr_cli_finish(struct pr_cli *cli, int rc);
/* Strict numbers for options (pr_parse_integer): on error prints
 * "parcelrisk CMD: --flag: expected a whole number <what> from MIN to MAX,
 * got 'TEXT'" and returns PR_ERR (the caller then returns pr_cli_done). what
 * names the unit ("of milliseconds"), "" for a plain count. */
int pr_cli_integer(struct pr_cli *cli, const char *flag, const char *text, long long min,
                   long long max, const char *what, long long *out);
/* A decimal number (strtod, finite, whole text, within [min, max]). */
int pr_cli_number(struct pr_cli *cli, const char *flag, const char *text, double min, double max,
                  const char *what, double *out);
/* Loads the configuration once the options are parsed: the --config file (or
 * the defaults), then every --set/--brokers in order, then the cross-key
 * checks; sets the log level. Returns NULL after printing the error (exit 2). */
struct pr_config *pr_cli_config(struct pr_cli *cli);

int pr_cmd_run(int argc, char **argv);
int pr_cmd_gen(int argc, char **argv);
int pr_cmd_tail(int argc, char **argv);
int pr_cmd_topics(int argc, char **argv);
int pr_cmd_produce(int argc, char **argv);
int pr_cmd_refdata(int argc, char **argv);
int pr_cmd_check_config(int argc, char **argv);
int pr_cmd_dlq(int argc, char **argv);
int pr_cmd_whatif(int argc, char **argv);

#endif
