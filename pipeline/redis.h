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

struct pr_redis {
    redisContext *ctx;
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

/* Parses host:port; PR_ERR (logged) when malformed. Does not connect. */
int pr_redis_init(struct pr_redis *redis, const char *address, int timeout_ms);
/* Connects when not connected. PR_ERR when Redis cannot be reached (logged
 * at most once per 10 s). */
int pr_redis_connect(struct pr_redis *redis);
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
