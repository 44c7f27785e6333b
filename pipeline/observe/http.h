/*
 * http.h - the HTTP endpoint of `parcelrisk run` (http.listen): /metrics
 * (Prometheus text format 0.0.4), /health and /ready, served by
 * libmicrohttpd on its own internal polling thread from the snapshot the
 * engine publishes (metrics.h). The engine thread never waits on HTTP.
 *
 *   GET /metrics  200, text/plain; version=0.0.4
 *   GET /health   200 "ok" while the engine loop turns; 503 once it has not
 *                 turned for http.stall_ms (stuck)
 *   GET /ready    200 when ready (metrics.h: pr_metrics_ready), else 503;
 *                 a short JSON body either way
 *   HEAD          as GET, without the body; any other method 405; any
 *                 other path 404.
 */
#ifndef PR_HTTP_H
#define PR_HTTP_H

#include "metrics.h"

struct pr_http;

/* Parses listen ("HOST:PORT", "[IPv6]:PORT"; port 0 for a free one),
 * binds and starts the server, and logs one line
 *   http: listening on HOST:PORT (/metrics /health /ready)
 * with the port actually bound. Returns NULL (logged) when the address is
 * malformed or cannot be bound. @locality the main thread. */
struct pr_http *pr_http_start(const char *listen, struct pr_metrics *metrics);
/* Stops the server (waits for its thread), frees it. NULL is a no-op. */
void pr_http_stop(struct pr_http *http);

#endif
