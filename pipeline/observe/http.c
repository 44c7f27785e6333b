/*
 * http.c - the HTTP endpoint on libmicrohttpd (Debian libmicrohttpd-dev
 * 0.9.75), see http.h.
 *
 * libmicrohttpd runs one internal polling thread (MHD_USE_INTERNAL_POLLING_
 * THREAD, epoll or poll as the platform has it) that accepts, parses and
 * answers. Each answer is rendered on that thread from a private copy of
 * the last snapshot (pr_metrics_read: the lock is held for a memcpy only),
 * so a slow or hostile client costs the HTTP thread, never the engine.
 * Connections are limited in number and time: this is an endpoint for a
 * scraper and a supervisor, not a web server.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"

#define PR_HTTP_MAX_CONNECTIONS 32
#define PR_HTTP_CONNECTION_TIMEOUT_S 10

struct pr_http {
    struct MHD_Daemon *daemon;
    struct pr_metrics *metrics;
};

static enum MHD_Result pr_http_reply(struct MHD_Connection *connection, unsigned int status,
                                     const char *content_type, struct pr_buf *body) {
    struct MHD_Response *response =
        MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return rc;
}

static enum MHD_Result pr_http_answer(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    struct pr_http *http = cls;
    struct pr_buf body;
    pr_buf_init(&body);
    unsigned int status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        pr_buf_appendf(&body, "only GET and HEAD\n");
    } else if (strcmp(url, "/health") == 0) {
        int64_t age_us = pr_monotonic_us() - atomic_load(&http->metrics->heartbeat_us);
        if (age_us <= http->metrics->stall_us) {
            pr_buf_appendf(&body, "ok\n");
        } else {
            status = MHD_HTTP_SERVICE_UNAVAILABLE;
            pr_buf_appendf(&body, "stuck: the engine loop has not turned for %lld s\n",
                           (long long)(age_us / 1000000));
        }
    } else if (strcmp(url, "/metrics") == 0 || strcmp(url, "/ready") == 0) {
        struct pr_metrics_snapshot *snap = pr_malloc(sizeof(*snap));
        pr_metrics_read(http->metrics, snap);
        if (url[1] == 'm') {
            type = "text/plain; version=0.0.4; charset=utf-8";
            pr_metrics_render(snap, &body);
        } else {
            type = "application/json";
            if (!pr_metrics_ready(snap, &body)) status = MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        free(snap);
    } else {
        status = MHD_HTTP_NOT_FOUND;
        pr_buf_appendf(&body, "not found: the paths are /metrics, /health and /ready\n");
    }
    enum MHD_Result rc = pr_http_reply(connection, status, type, &body);
    pr_buf_free(&body);
    return rc;
}

static void pr_http_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    pr_warn("http: %s", line);
}

struct pr_http *pr_http_start(const char *listen, struct pr_metrics *metrics) {
    char host[256];
    long long port;
    if (!pr_config_listen_split(listen, host, sizeof(host), &port)) {
        pr_error("http.listen '%s': expected HOST:PORT with a port from 0 to 65535", listen);
        return NULL;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%lld", port);
    int gai = getaddrinfo(host, service, &hints, &found);
    if (gai != 0 || !found) {
        pr_error("http.listen '%s': cannot resolve %s: %s", listen, host, gai_strerror(gai));
        if (found) freeaddrinfo(found);
        return NULL;
    }
    struct pr_http *http = pr_calloc(1, sizeof(*http));
    http->metrics = metrics;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (found->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    http->daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, pr_http_answer, http, MHD_OPTION_EXTERNAL_LOGGER,
        pr_http_log, NULL, MHD_OPTION_SOCK_ADDR, found->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)PR_HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)PR_HTTP_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    freeaddrinfo(found);
    if (!http->daemon) {
        pr_error("http.listen '%s': cannot start the HTTP server (address in use or not local?)",
                 listen);
        free(http);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned int bound = info ? info->port : (unsigned int)port;
    bool v6 = strchr(host, ':') != NULL;
    pr_info("http: listening on %s%s%s:%u (/metrics /health /ready)", v6 ? "[" : "", host,
            v6 ? "]" : "", bound);
    return http;
}

void pr_http_stop(struct pr_http *http) {
    if (!http) return;
    MHD_stop_daemon(http->daemon);
    free(http);
}
