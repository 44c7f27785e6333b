/*
 * probe.c - the readiness probe thread (see probe.h).
 *
 * One hiredis connection, kept between checks and made again after an
 * error, with AUTH like every other connection (pr_redis_authenticate). The
 * check is one EVAL of a script that reads pr:ref:current and runs the same
 * pr_ref_verify as the enrich operator and `refdata status`, so the three
 * agree on what "usable" means. The probe logs nothing: the engine already
 * logs an outage it meets (once per 10 s), and /ready says the rest.
 */
#include "probe.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis.h"
#include "refdata.h"

/* Short: the check runs once a second, and a stopping process waits for
 * at most one. */
#define PR_PROBE_TIMEOUT_MS 1000
#define PR_PROBE_INTERVAL_MS 1000

/* {1, version} when the current version checks out, {0, why} otherwise. */
static const char pr_probe_script[] = PR_REFDATA_VERIFY_LUA
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return {0, 'no reference data is loaded (' .. KEYS[1] .. ' is not set)'} end\n"
    "local why = pr_ref_verify(cur, " PR_REFDATA_TABLES_LUA ")\n"
    "if why then return {0, 'version ' .. cur .. ': ' .. why} end\n"
    "return {1, cur}\n";

struct pr_probe {
    struct pr_metrics *metrics;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop; /* under lock */
    bool need_redis, need_refdata;
    char host[256];
    int port;
    char *user, *password; /* copies: the configuration may go first */
    redisContext *ctx;
};

static bool pr_chain_has(const struct pr_config *cfg, const char *name) {
    for (size_t i = 0; i < cfg->chain_len; i++)
        if (strcmp(cfg->chain[i], name) == 0) return true;
    return false;
}

static void pr_probe_disconnect(struct pr_probe *probe) {
    if (probe->ctx) redisFree(probe->ctx);
    probe->ctx = NULL;
}

static bool pr_probe_connect(struct pr_probe *probe, struct pr_metrics_probe *found) {
    if (probe->ctx) return true;
    struct timeval tv = {PR_PROBE_TIMEOUT_MS / 1000, (PR_PROBE_TIMEOUT_MS % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(probe->host, probe->port, tv);
    if (!ctx || ctx->err) {
        snprintf(found->redis_detail, sizeof(found->redis_detail), "%s",
                 ctx ? ctx->errstr : "cannot allocate a context");
        if (ctx) redisFree(ctx);
        return false;
    }
    redisSetTimeout(ctx, tv);
    struct pr_redis_auth auth = {probe->user, probe->password};
    char why[256];
    if (pr_redis_authenticate(ctx, &auth, why, sizeof(why)) != PR_OK) {
        snprintf(found->redis_detail, sizeof(found->redis_detail), "refused AUTH: %.140s", why);
        redisFree(ctx);
        return false;
    }
    probe->ctx = ctx;
    return true;
}

/* One check: what it finds goes into found. */
static void pr_probe_check(struct pr_probe *probe, struct pr_metrics_probe *found) {
    memset(found, 0, sizeof(*found));
    found->redis = probe->need_redis ? PR_READY_FAILED : PR_READY_NOT_NEEDED;
    found->refdata = probe->need_refdata ? PR_READY_UNKNOWN : PR_READY_NOT_NEEDED;
    if (!probe->need_redis) return;
    if (!pr_probe_connect(probe, found)) return;
    redisReply *reply = probe->need_refdata ? redisCommand(probe->ctx, "EVAL %s 1 %s",
                                                           pr_probe_script, PR_REF_CURRENT)
                                            : redisCommand(probe->ctx, "PING");
    if (!reply) {
        snprintf(found->redis_detail, sizeof(found->redis_detail), "%s",
                 probe->ctx->errstr[0] ? probe->ctx->errstr : "connection lost");
        pr_probe_disconnect(probe);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Redis answers, but refuses (NOAUTH, a script error, LOADING). */
        snprintf(found->redis_detail, sizeof(found->redis_detail), "%.*s", (int)reply->len,
                 reply->str);
        freeReplyObject(reply);
        return;
    }
    found->redis = PR_READY_OK;
    if (probe->need_refdata) {
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_INTEGER &&
            reply->element[1]->type == REDIS_REPLY_STRING) {
            found->refdata = reply->element[0]->integer == 1 ? PR_READY_OK : PR_READY_FAILED;
            if (found->refdata == PR_READY_FAILED)
                snprintf(found->refdata_detail, sizeof(found->refdata_detail), "%.*s",
                         (int)reply->element[1]->len, reply->element[1]->str);
        } else {
            found->refdata = PR_READY_FAILED;
            snprintf(found->refdata_detail, sizeof(found->refdata_detail),
                     "unexpected answer to the check");
        }
    }
    freeReplyObject(reply);
}

static void *pr_probe_main(void *arg) {
    struct pr_probe *probe = arg;
    pthread_mutex_lock(&probe->lock);
    while (!probe->stop) {
        pthread_mutex_unlock(&probe->lock);
        struct pr_metrics_probe found;
        pr_probe_check(probe, &found);
        pr_metrics_set_probe(probe->metrics, &found);
        pthread_mutex_lock(&probe->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)PR_PROBE_INTERVAL_MS % 1000 * 1000000L;
        until.tv_sec += PR_PROBE_INTERVAL_MS / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!probe->stop && pthread_cond_timedwait(&probe->wake, &probe->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&probe->lock);
    pr_probe_disconnect(probe);
    return NULL;
}

struct pr_probe *pr_probe_start(const struct pr_config *cfg, struct pr_metrics *metrics) {
    struct pr_probe *probe = pr_calloc(1, sizeof(*probe));
    probe->metrics = metrics;
    probe->need_refdata = pr_chain_has(cfg, "enrich");
    probe->need_redis = probe->need_refdata || pr_chain_has(cfg, "aggregate");
    const char *colon = strrchr(cfg->redis_address, ':');
    size_t host_len = colon ? (size_t)(colon - cfg->redis_address) : 0;
    if (host_len >= sizeof(probe->host)) host_len = sizeof(probe->host) - 1;
    memcpy(probe->host, cfg->redis_address, host_len);
    probe->port = colon ? atoi(colon + 1) : 0;
    probe->user = pr_strdup(cfg->redis_user ? cfg->redis_user : "");
    probe->password = pr_strdup(cfg->redis_password ? cfg->redis_password : "");
    pthread_mutex_init(&probe->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&probe->wake, &attr);
    pthread_condattr_destroy(&attr);
    int err = pthread_create(&probe->thread, NULL, pr_probe_main, probe);
    if (err) {
        pr_error("cannot start the readiness probe thread: %s", strerror(err));
        pthread_cond_destroy(&probe->wake);
        pthread_mutex_destroy(&probe->lock);
        free(probe->user);
        free(probe->password);
        free(probe);
        return NULL;
    }
    return probe;
}

void pr_probe_stop(struct pr_probe *probe) {
    if (!probe) return;
    pthread_mutex_lock(&probe->lock);
    probe->stop = true;
    pthread_cond_signal(&probe->wake);
    pthread_mutex_unlock(&probe->lock);
    pthread_join(probe->thread, NULL);
    pthread_cond_destroy(&probe->wake);
    pthread_mutex_destroy(&probe->lock);
    free(probe->user);
    free(probe->password);
    free(probe);
}
