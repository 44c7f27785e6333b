/*
 * refdata_load.h - `parcelrisk refdata load|status` as functions, so that the
 * command, the tests and the benchmarks run the same code.
 *
 * A load reads the three CSV files of DOMAIN.md section 7, validates every
 * row BEFORE anything is written (a refused load leaves Redis untouched: no
 * connection is even made), writes a complete new version with pipelined
 * HSETs (the layout of refdata.h), switches readers to it with one
 * SET pr:ref:current inside MULTI/EXEC, and gives the keys of the previous
 * versions a grace TTL. The version's meta hash carries its manifest (every
 * table with its exact size, refdata.h), written before the switch; readers
 * refuse a version whose tables do not match it.
 *
 * While a version is being written its keys carry a "pending" TTL, removed
 * (PERSIST) in the same transaction as the switch: a loader that dies half
 * way leaves nothing behind for good.
 *
 * Errors are logged (pr_error/pr_warn/pr_info, to stderr after the usual
 * timestamp and level) as "FILE:LINE: reason" for rows and "refdata: ..."
 * otherwise; they name the column, never the text of a name or address.
 *
 * @locality any thread; no global state.
 */
#ifndef PR_REFDATA_LOAD_H
#define PR_REFDATA_LOAD_H

#include <stdio.h>

#include "common.h"

#define PR_REFDATA_DEFAULT_GRACE_MS (3600 * 1000LL)

struct pr_refdata_load_options {
    const char *hts_path;
    const char *violators_path;
    const char *countries_path;
    const char *redis_address;  /* host:port */
    const char *redis_user;     /* AUTH user ("" or NULL: the default user) */
    const char *redis_password; /* AUTH password, a secret ("" or NULL: no AUTH) */
    bool skip_bad;              /* load the good rows, count the bad ones as skipped */
    bool dry_run;               /* validate only: never connects to Redis */
    bool quiet;                 /* no progress lines */
    int64_t grace_ms;           /* TTL given to previous versions; 0 deletes them at once */
    int timeout_ms;             /* connect and reply timeout; 0 means 30000 */
};

struct pr_refdata_load_result {
    char version[64];  /* the new current version ("" on a dry run or failure) */
    char previous[64]; /* the version that was current before ("" when none) */
    uint64_t hts_rows; /* valid rows written, per file */
    uint64_t violator_rows;
    uint64_t violator_keys; /* distinct KIND|name keys after merging */
    uint64_t country_rows;
    uint64_t bad_rows;          /* rows that failed validation (all files) */
    uint64_t skipped_rows;      /* bad rows left out by skip_bad (0 when refused) */
    uint64_t expiring_versions; /* previous versions given the grace TTL (deleted when 0) */
    double parse_seconds;       /* read and validate */
    double write_seconds;       /* connect, write, switch, expire */
    double total_seconds;
};

/* Return values of pr_refdata_load. */
#define PR_REFDATA_OK 0
#define PR_REFDATA_BAD_DATA 1 /* bad rows (without skip_bad), bad header, unreadable file */
#define PR_REFDATA_REDIS 2    /* Redis unreachable or a command failed; current unchanged */

/**
 * @brief Validates the three files and, unless dry_run, loads them as a new
 *        current version.
 * @returns PR_REFDATA_OK, PR_REFDATA_BAD_DATA or PR_REFDATA_REDIS; out is
 *          filled as far as the load got.
 */
int pr_refdata_load(const struct pr_refdata_load_options *opts, struct pr_refdata_load_result *out);

/**
 * @brief Writes the current version, its meta data, its manifest and whether
 *        the tables in Redis check out against it ("manifest_check: ok" or
 *        "manifest_check: FAILED: <why>"), and every version still present
 *        to out.
 * @returns PR_OK, or PR_ERR with a message on stderr when Redis cannot be
 *          reached, no version is loaded, or the current version does not
 *          check out against its manifest (readers treat it as unavailable).
 *          redis_user and redis_password are sent with AUTH as by a load.
 */
int pr_refdata_status(const char *redis_address, const char *redis_user, const char *redis_password,
                      int timeout_ms, FILE *out);

#endif
