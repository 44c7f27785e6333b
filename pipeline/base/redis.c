#include "redis.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pr_redis_init(struct pr_redis *redis, const char *address, int timeout_ms,
                  const struct pr_redis_auth *auth) {
    memset(redis, 0, sizeof(*redis));
    if (auth) redis->auth = *auth;
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || (size_t)(colon - address) >= sizeof(redis->host)) {
        pr_error("redis.address '%s': expected host:port", address);
        return PR_ERR;
    }
    memcpy(redis->host, address, (size_t)(colon - address));
    redis->host[colon - address] = '\0';
    redis->port = atoi(colon + 1);
    if (redis->port <= 0 || redis->port > 65535) {
        pr_error("redis.address '%s': bad port", address);
        return PR_ERR;
    }
    redis->timeout_ms = timeout_ms;
    return PR_OK;
}

static void pr_redis_log(struct pr_redis *redis, const char *what, const char *why) {
    redis->errors++;
    int64_t now = pr_now_ms();
    if (now - redis->last_log_ms < 10000) return;
    redis->last_log_ms = now;
    pr_warn("Redis %s:%d %s: %s", redis->host, redis->port, what, why);
}

int pr_redis_authenticate(redisContext *ctx, const struct pr_redis_auth *auth, char *why,
                          size_t why_size) {
    if (!auth || !auth->password || !*auth->password) return PR_OK;
    bool with_user = auth->user && *auth->user;
    const char *argv[3] = {"AUTH", with_user ? auth->user : auth->password, auth->password};
    size_t argvlen[3] = {4, strlen(argv[1]), strlen(auth->password)};
    redisReply *reply = redisCommandArgv(ctx, with_user ? 3 : 2, argv, argvlen);
    int rc = PR_OK;
    if (!reply) {
        pr_redact(ctx->errstr[0] ? ctx->errstr : "connection lost", auth->password, why, why_size);
        rc = PR_ERR;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        /* "WRONGPASS invalid username-password pair or user is disabled.", or
         * "ERR AUTH <password> called without any password configured ...":
         * Redis does not quote the password; masked anyway. */
        pr_redact(reply->str, auth->password, why, why_size);
        rc = PR_ERR;
    }
    if (reply) freeReplyObject(reply);
    return rc;
}

int pr_redis_connect(struct pr_redis *redis) {
    if (redis->ctx) return PR_OK;
    struct timeval tv = {redis->timeout_ms / 1000, (redis->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(redis->host, redis->port, tv);
    if (!ctx || ctx->err) {
        pr_redis_log(redis, "unreachable", ctx ? ctx->errstr : "cannot allocate a context");
        if (ctx) redisFree(ctx);
        return PR_ERR;
    }
    redisSetTimeout(ctx, tv);
    redisEnableKeepAlive(ctx);
    /* One large request per batch: without TCP_NODELAY its last segment
     * waits for the ACK of the previous ones (Nagle against delayed ACK),
     * which cost 10-20 ms per batch. hiredis 0.14 does not set it. */
    int one = 1;
    setsockopt(ctx->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (pr_redis_authenticate(ctx, &redis->auth, redis->refusal, sizeof(redis->refusal)) != PR_OK) {
        redis->refused = true;
        redisFree(ctx);
        pr_redis_log(redis, "refused AUTH (check redis.user and redis.password)", redis->refusal);
        return PR_ERR;
    }
    redis->refused = false;
    redis->ctx = ctx;
    if (redis->errors) pr_info("Redis %s:%d reachable again", redis->host, redis->port);
    redis->errors = 0;
    return PR_OK;
}

int pr_redis_check_access(struct pr_redis *redis) {
    if (pr_redis_connect(redis) != PR_OK) {
        if (!redis->refused) return PR_OK;
        pr_error("Redis %s:%d refused AUTH: %s (check redis.user and redis.password)", redis->host,
                 redis->port, redis->refusal);
        return PR_ERR;
    }
    redisReply *reply = redisCommand(redis->ctx, "PING");
    if (!reply) {
        pr_redis_close(redis);
        return PR_OK; /* lost again: the engine's reconnection handles it */
    }
    int rc = PR_OK;
    if (reply->type == REDIS_REPLY_ERROR &&
        (strncmp(reply->str, "NOAUTH", 6) == 0 || strncmp(reply->str, "WRONGPASS", 9) == 0)) {
        pr_error("Redis %s:%d needs a password: %s (set redis.password)", redis->host, redis->port,
                 reply->str);
        redis->refused = true;
        rc = PR_ERR;
    }
    freeReplyObject(reply);
    return rc;
}

void pr_redis_close(struct pr_redis *redis) {
    if (redis->ctx) redisFree(redis->ctx);
    redis->ctx = NULL;
}

static redisReply *pr_redis_checked(struct pr_redis *redis, redisReply *reply, const char *what) {
    if (!reply) {
        /* Said plainly: the connection is gone (the next call reconnects,
         * and its failures say "unreachable", at most once per 10 s). */
        char why[256];
        snprintf(why, sizeof(why), "%s; the connection is lost",
                 redis->ctx->errstr[0] ? redis->ctx->errstr : "no reply");
        pr_redis_log(redis, what, why);
        pr_redis_close(redis);
    }
    return reply;
}

redisReply *pr_redis_command(struct pr_redis *redis, const char *fmt, ...) {
    if (pr_redis_connect(redis) != PR_OK) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(redis->ctx, fmt, ap);
    va_end(ap);
    return pr_redis_checked(redis, reply, "command failed");
}

static int pr_script_load(struct pr_redis *redis, struct pr_script *script) {
    redisReply *reply = pr_redis_command(redis, "SCRIPT LOAD %s", script->body);
    if (!reply) return PR_ERR;
    int rc = PR_ERR;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(script->sha, reply->str, 40);
        script->sha[40] = '\0';
        rc = PR_OK;
    } else {
        pr_error("Redis: cannot load script %s: %s", script->name,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    }
    freeReplyObject(reply);
    return rc;
}

redisReply *pr_redis_eval(struct pr_redis *redis, struct pr_script *script, int argc,
                          const char **argv, const size_t *argvlen) {
    for (int attempt = 0; attempt < 2; attempt++) {
        if (pr_redis_connect(redis) != PR_OK) return NULL;
        if (!script->sha[0] && pr_script_load(redis, script) != PR_OK) return NULL;
        /* argv[-2], argv[-1] are ours: build the full vector on the stack
         * for small calls, on the heap for large ones. */
        const char *stack_argv[64];
        size_t stack_len[64];
        const char **full =
            (size_t)argc + 2 <= 64 ? stack_argv : pr_malloc(((size_t)argc + 2) * sizeof(char *));
        size_t *full_len =
            (size_t)argc + 2 <= 64 ? stack_len : pr_malloc(((size_t)argc + 2) * sizeof(size_t));
        full[0] = "EVALSHA";
        full_len[0] = 7;
        full[1] = script->sha;
        full_len[1] = 40;
        memcpy(full + 2, argv, (size_t)argc * sizeof(char *));
        memcpy(full_len + 2, argvlen, (size_t)argc * sizeof(size_t));
        redisReply *reply = redisCommandArgv(redis->ctx, argc + 2, full, full_len);
        if (full != stack_argv) free(full);
        if (full_len != stack_len) free(full_len);
        if (!pr_redis_checked(redis, reply, "script call failed")) return NULL;
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(reply);
            script->sha[0] = '\0'; /* Redis restarted: load again */
            continue;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            pr_error("Redis script %s: %s", script->name, reply->str);
            freeReplyObject(reply);
            return NULL;
        }
        return reply;
    }
    return NULL;
}
