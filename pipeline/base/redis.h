/*
 * redis.h - one synchronous hiredis connection with timeouts, reconnection
 * and Lua scripts called by SHA (loaded again after a Redis restart).
 *
 * @locality one thread (the engine thread).
 */
#ifndef PR_REDIS_H
#define PR_REDIS_H

#include <hiredis/hiredis.h>

#include "common.h"

/* Credentials sent with AUTH on every new connection. Borrowed strings (the
 * configuration's); a NULL or empty password sends no AUTH; an empty user
 * authenticates the default user (AUTH password). */
struct pr_redis_auth {
    const char *user;
    const char *password;
};

struct pr_redis {
    redisContext *ctx;
    struct pr_redis_auth auth;
    bool refused;      /* the last connect was refused by AUTH (or NOAUTH) */
    char refusal[256]; /* Redis's words when refused (never the password) */
    char host[256];
    int port;
    int timeout_ms;
    int64_t last_log_ms;
    uint64_t errors;
};

struct pr_script {
    const char *name;
    const char *body;
    char sha[41];
};

/* Parses host:port; PR_ERR (logged) when malformed. Does not connect. auth
 * may be NULL (no AUTH). */
int pr_redis_init(struct pr_redis *redis, const char *address, int timeout_ms,
                  const struct pr_redis_auth *auth);
/* Connects when not connected and sends AUTH first when a password is set.
 * PR_ERR when Redis cannot be reached or refuses AUTH (logged at most once
 * per 10 s; redis->refused tells the two apart). */
int pr_redis_connect(struct pr_redis *redis);
/* For an operator's init: connects and PINGs. Returns PR_ERR, with an error
 * logged, only when Redis answers but refuses us (AUTH refused, or NOAUTH:
 * a password is needed) - a configuration error; an unreachable Redis is
 * PR_OK here (the engine pauses or degrades until it is back). */
int pr_redis_check_access(struct pr_redis *redis);

/* Sends AUTH [user] password on ctx (a fresh connection) when auth has a
 * password. PR_OK, or PR_ERR with Redis's refusal (or the connection error)
 * in why; why never holds the password. */
int pr_redis_authenticate(redisContext *ctx, const struct pr_redis_auth *auth, char *why,
                          size_t why_size);
void pr_redis_close(struct pr_redis *redis);

/* EVALSHA script: argv are numkeys, keys and args (argv[0] = numkeys as
 * text). Loads the script when Redis does not know it. Returns the reply
 * (caller frees with freeReplyObject) or NULL after a connection error (the
 * connection is closed; the next call reconnects) or a script error
 * (logged). */
redisReply *pr_redis_eval(struct pr_redis *redis, struct pr_script *script, int argc,
                          const char **argv, const size_t *argvlen);

/* Runs a plain command (printf-style, as redisCommand). NULL on a
 * connection error, as above. */
redisReply *pr_redis_command(struct pr_redis *redis, const char *fmt, ...);

#endif
