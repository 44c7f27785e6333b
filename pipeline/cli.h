/* cli.h - the subcommands of the parcelrisk binary. */
#ifndef PR_CLI_H
#define PR_CLI_H

#include "config.h"

/* Parses the options every subcommand shares (--config FILE, --set K=V,
 * --brokers LIST) out of argv, leaving the rest in place. Returns NULL after
 * printing an error (exit 2). */
struct pr_config *pr_cli_config(int *argc, char **argv);

int pr_cmd_run(int argc, char **argv);
int pr_cmd_gen(int argc, char **argv);
int pr_cmd_tail(int argc, char **argv);
int pr_cmd_topics(int argc, char **argv);
int pr_cmd_produce(int argc, char **argv);
int pr_cmd_refdata(int argc, char **argv);

#endif
