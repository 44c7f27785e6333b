/*
 * schema_registry.c - the Confluent Schema Registry REST client (the
 * contract is in schema_registry.h).
 *
 * One curl easy handle per client, reused, so the connection is kept
 * alive across calls. Bodies are capped (PR_REG_MAX_BODY): a registry that
 * answers megabytes is broken, and the cap bounds what a hostile one can
 * make us allocate.
 */
#include "schema_registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PR_REG_MAX_BODY (4u << 20)

struct pr_schema_registry {
    CURL *curl;
    char *base; /* the URL without a trailing '/' */
    struct pr_buf body;
    bool body_too_large;
};

static size_t pr_reg_write_cb(char *data, size_t size, size_t count, void *opaque) {
    struct pr_schema_registry *reg = opaque;
    size_t n = size * count;
    if (reg->body.len + n > PR_REG_MAX_BODY) {
        reg->body_too_large = true;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    pr_buf_append(&reg->body, data, n);
    return n;
}

struct pr_schema_registry *pr_schema_registry_new(const struct pr_config *cfg) {
    if (!cfg->schema_registry_url || !*cfg->schema_registry_url) return NULL;
    /* Reference-counted by libcurl, and thread-safe since 7.84 (Debian 12
     * has 7.88); undone in pr_schema_registry_free. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct pr_schema_registry *reg = pr_calloc(1, sizeof(*reg));
    reg->curl = curl_easy_init();
    if (!reg->curl) {
        pr_error("schema registry: cannot create a libcurl handle");
        free(reg);
        curl_global_cleanup();
        return NULL;
    }
    size_t len = strlen(cfg->schema_registry_url);
    while (len > 0 && cfg->schema_registry_url[len - 1] == '/') len--;
    reg->base = pr_strndup(cfg->schema_registry_url, len);
    pr_buf_init(&reg->body);
    CURL *c = reg->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->schema_registry_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->schema_registry_timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, pr_reg_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reg);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "parcelrisk");
    if (*cfg->schema_registry_user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, cfg->schema_registry_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->schema_registry_password);
    }
    if (*cfg->schema_registry_ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->schema_registry_ca_file);
    return reg;
}

void pr_schema_registry_free(struct pr_schema_registry *reg) {
    if (!reg) return;
    curl_easy_cleanup(reg->curl);
    free(reg->base);
    pr_buf_free(&reg->body);
    free(reg);
    curl_global_cleanup();
}

const char *pr_schema_registry_url(const struct pr_schema_registry *reg) {
    return reg->base;
}

/* One request; the body lands in reg->body (NUL-terminated). Returns the
 * HTTP status, or 0 with why set when there was no HTTP answer. */
static long pr_reg_request(struct pr_schema_registry *reg, const char *path, const char *post_body,
                           char *why, size_t why_size) {
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", reg->base, path);
    CURL *c = reg->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    struct curl_slist *headers =
        curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, "
                                "application/json");
    if (post_body) {
        headers =
            curl_slist_append(headers, "Content-Type: application/vnd.schemaregistry.v1+json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    pr_buf_reset(&reg->body);
    reg->body_too_large = false;
    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
        if (reg->body_too_large)
            snprintf(why, why_size, "%s: answer larger than %u bytes", url, PR_REG_MAX_BODY);
        else
            snprintf(why, why_size, "%s: %s", url, curl_err[0] ? curl_err : curl_easy_strerror(rc));
        return 0;
    }
    pr_buf_append(&reg->body, "", 1);
    reg->body.len--;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* The registry's own message of an error answer ({"error_code", "message"}),
 * cut short; never the schema or a record. */
static void pr_reg_error_text(struct pr_schema_registry *reg, long status, const char *path,
                              char *why, size_t why_size) {
    json_error_t jerr;
    json_t *doc = json_loads((const char *)reg->body.data, 0, &jerr);
    const char *message = doc ? json_string_value(json_object_get(doc, "message")) : NULL;
    long long code = doc ? json_integer_value(json_object_get(doc, "error_code")) : 0;
    snprintf(why, why_size, "%s%s: HTTP %ld%s%lld%s%.160s", reg->base, path, status,
             code ? " error_code " : "", code, message ? ": " : "", message ? message : "");
    json_decref(doc);
}

enum pr_reg_result pr_schema_registry_get(struct pr_schema_registry *reg, uint32_t id,
                                          char **schema, char *why, size_t why_size) {
    char path[64];
    snprintf(path, sizeof(path), "/schemas/ids/%u", id);
    *schema = NULL;
    long status = pr_reg_request(reg, path, NULL, why, why_size);
    if (status == 0) return PR_REG_UNAVAILABLE;
    if (status == 404) {
        pr_reg_error_text(reg, status, path, why, why_size);
        return PR_REG_REFUSED;
    }
    if (status != 200) {
        pr_reg_error_text(reg, status, path, why, why_size);
        return PR_REG_UNAVAILABLE;
    }
    json_error_t jerr;
    json_t *doc = json_loads((const char *)reg->body.data, 0, &jerr);
    const char *text = doc ? json_string_value(json_object_get(doc, "schema")) : NULL;
    if (!text) {
        snprintf(why, why_size, "%s%s: HTTP 200 without a \"schema\" string", reg->base, path);
        json_decref(doc);
        return PR_REG_UNAVAILABLE;
    }
    const char *type = json_string_value(json_object_get(doc, "schemaType"));
    if (type && strcmp(type, "AVRO") != 0) {
        snprintf(why, why_size, "schema id %u is of type %.32s, not AVRO", id, type);
        json_decref(doc);
        return PR_REG_REFUSED;
    }
    *schema = pr_strdup(text);
    json_decref(doc);
    return PR_REG_OK;
}

enum pr_reg_result pr_schema_registry_register(struct pr_schema_registry *reg, const char *subject,
                                               const char *schema, uint32_t *id, char *why,
                                               size_t why_size) {
    char *escaped = curl_easy_escape(reg->curl, subject, 0);
    char path[1024];
    snprintf(path, sizeof(path), "/subjects/%s/versions", escaped ? escaped : subject);
    curl_free(escaped);
    json_t *req = json_pack("{s:s}", "schema", schema);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    long status = pr_reg_request(reg, path, body, why, why_size);
    free(body);
    if (status == 0) return PR_REG_UNAVAILABLE;
    if (status != 200) {
        pr_reg_error_text(reg, status, path, why, why_size);
        return status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 &&
                       status != 429
                   ? PR_REG_REFUSED
                   : PR_REG_UNAVAILABLE;
    }
    json_error_t jerr;
    json_t *doc = json_loads((const char *)reg->body.data, 0, &jerr);
    json_t *value = doc ? json_object_get(doc, "id") : NULL;
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        json_integer_value(value) > UINT32_MAX) {
        snprintf(why, why_size, "%s%s: HTTP 200 without an \"id\"", reg->base, path);
        json_decref(doc);
        return PR_REG_UNAVAILABLE;
    }
    *id = (uint32_t)json_integer_value(value);
    json_decref(doc);
    return PR_REG_OK;
}

void pr_schema_registry_subject(const char *strategy, const char *topic,
                                const char *record_full_name, char *out, size_t size) {
    if (strcmp(strategy, "record_name") == 0)
        snprintf(out, size, "%s", record_full_name);
    else if (strcmp(strategy, "topic_record_name") == 0)
        snprintf(out, size, "%s-%s", topic, record_full_name);
    else
        snprintf(out, size, "%s-value", topic);
}
