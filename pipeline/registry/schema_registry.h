/*
 * schema_registry.h - a client of the Confluent Schema Registry REST API
 * (libcurl for HTTP, jansson for JSON): fetch a schema by id, register a
 * schema under a subject.
 *
 * Every answer is one of three kinds, because the callers act on the kind:
 *
 *   PR_REG_OK           the registry answered what was asked.
 *   PR_REG_REFUSED      the registry answered, definitively, no: an id it
 *                       does not know (404), a schema it will not register
 *                       (409 incompatible, 422 invalid). The caller may act
 *                       on it (an UNKNOWN_SCHEMA dead letter; exit 2 at
 *                       start).
 *   PR_REG_UNAVAILABLE  no usable answer: connection refused, timeout, TLS
 *                       failure, 5xx, 401/403, a body that is not the JSON
 *                       the API specifies. The caller must not decide
 *                       anything on it: the engine pauses and retries, as
 *                       for a Redis outage.
 *
 * The password is passed to libcurl and never appears in a message; the
 * URL may (credentials inside the URL are refused by the configuration).
 * @locality one thread per client (one curl easy handle, kept alive).
 */
#ifndef PR_SCHEMA_REGISTRY_H
#define PR_SCHEMA_REGISTRY_H

#include "common.h"
#include "config.h"

enum pr_reg_result { PR_REG_OK = 0, PR_REG_REFUSED, PR_REG_UNAVAILABLE };

struct pr_schema_registry;

/* A client of cfg->schema_registry_url; NULL when no registry is
 * configured. */
struct pr_schema_registry *pr_schema_registry_new(const struct pr_config *cfg);
void pr_schema_registry_free(struct pr_schema_registry *reg);
const char *pr_schema_registry_url(const struct pr_schema_registry *reg);

/* GET /schemas/ids/{id}: the schema text, malloc'd, in *schema. A schema
 * whose schemaType is not AVRO is PR_REG_REFUSED. why gets a message for
 * anything but PR_REG_OK. */
enum pr_reg_result pr_schema_registry_get(struct pr_schema_registry *reg, uint32_t id,
                                          char **schema, char *why, size_t why_size);

/* POST /subjects/{subject}/versions: registers schema (or finds it, when
 * the subject has it already) and gives its id. */
enum pr_reg_result pr_schema_registry_register(struct pr_schema_registry *reg, const char *subject,
                                               const char *schema, uint32_t *id, char *why,
                                               size_t why_size);

/* The subject of a record written to topic under strategy (topic_name:
 * "<topic>-value"; record_name: "<full name>"; topic_record_name:
 * "<topic>-<full name>"), into out. */
void pr_schema_registry_subject(const char *strategy, const char *topic,
                                const char *record_full_name, char *out, size_t size);

#endif
