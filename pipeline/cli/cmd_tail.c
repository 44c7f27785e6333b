/*
 * cmd_tail.c - `parcelrisk tail decisions|alerts|dlq`: prints records as
 * JSON lines (Avro's JSON encoding, decoded with Avro-C's generic API, the
 * reference implementation), one per line, with the Kafka coordinates added.
 *
 * Values may be plain Avro binary or Confluent-framed (what `run` writes
 * with schema_registry.url set): a framed value's header is taken off and
 * its schema id printed as "_schema_id"; the body is read with our schema,
 * the one `run` registers for its outputs. A plain value never starts with
 * byte 0 (it begins with a string's length, and no Decision or DeadLetter
 * has an empty first string), so the two cannot be confused.
 */
#include <avro.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_json.h"
#include "cli.h"
#include "kafka.h"
#include "schemas.h"
#include "wire.h"

static void pr_tail_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk tail decisions|alerts|dlq|raw [--config FILE] [--set KEY=VALUE]...\n"
            "                       [--brokers LIST] [--follow] [--max N] [--topic NAME]\n"
            "Prints every record from the beginning; exits at the end unless --follow.\n"
            "  decisions, alerts, dlq  the topic of that name in the configuration, decoded\n"
            "  raw          (with --topic) prints key and value bytes (and headers) as hex\n"
            "  --follow     keep waiting for new records\n"
            "  --max N      stop after N records, 0 or more (default: no limit)\n"
            "  --topic NAME read this topic instead of the configured one\n" PR_CLI_SHARED_HELP);
}

enum { PR_TAIL_FOLLOW = PR_CLI_OWN, PR_TAIL_MAX, PR_TAIL_TOPIC };

/* The record's headers, when it has any, as ", \"_headers\": [[\"name\",
 * \"value hex\"], ...]" (a replayed declaration carries parcelrisk-replay). */
static void pr_tail_print_headers(rd_kafka_message_t *m) {
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR || !headers) return;
    printf(", \"_headers\": [");
    const char *name;
    const void *value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == 0; i++) {
        printf("%s[\"", i ? ", " : "");
        for (const char *c = name; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\')
                printf("\\u%04x", (unsigned char)*c);
            else
                putchar(*c);
        printf("\", \"");
        for (size_t b = 0; value && b < size; b++)
            printf("%02x", ((const unsigned char *)value)[b]);
        printf("\"]");
    }
    printf("]");
}

/* What the command line asks for. */
struct pr_tail_options {
    const char *which; /* decisions | alerts | dlq | raw */
    const char *topic; /* --topic, or NULL for the configured one */
    bool follow;
    long long max; /* -1: no limit */
};

/* Parses argv into o; returns PR_CLI_END when the command goes on, or the
 * exit status (after --help or an error, reported). */
static int pr_tail_parse(struct pr_cli *cli, int argc, char **argv, struct pr_tail_options *o) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"follow", no_argument, NULL, PR_TAIL_FOLLOW},
        {"max", required_argument, NULL, PR_TAIL_MAX},
        {"topic", required_argument, NULL, PR_TAIL_TOPIC},
        PR_CLI_OPTIONS_END,
    };
    *o = (struct pr_tail_options){.max = -1};
    int opt;
    while ((opt = pr_cli_next(cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(cli);
        case PR_TAIL_FOLLOW: o->follow = true; break;
        case PR_TAIL_MAX:
            if (pr_cli_integer(cli, "--max", optarg, 0, LLONG_MAX, "of records", &o->max) != PR_OK)
                return pr_cli_done(cli);
            break;
        case PR_TAIL_TOPIC:
            if (!pr_topic_name_legal(optarg))
                return pr_cli_usage_error(cli, "--topic: '%s' is not a Kafka topic name", optarg);
            o->topic = optarg;
            break;
        default:
            if (o->which) return pr_cli_usage_error(cli, "unexpected argument '%s'", optarg);
            o->which = optarg;
        }
    }
    if (!o->which)
        return pr_cli_usage_error(cli, "expected what to print: decisions, alerts, dlq or raw");
    if (strcmp(o->which, "raw") == 0) {
        if (!o->topic) return pr_cli_usage_error(cli, "tail raw needs --topic NAME");
    } else if (strcmp(o->which, "decisions") != 0 && strcmp(o->which, "alerts") != 0 &&
               strcmp(o->which, "dlq") != 0) {
        return pr_cli_usage_error(cli,
                                  "unknown record kind '%s' (expected: decisions, alerts, "
                                  "dlq or raw)",
                                  o->which);
    }
    return PR_CLI_END;
}

/* A consumer assigned to every partition of topic from the beginning, with
 * partition EOF events; NULL (logged) when it cannot be made. */
static rd_kafka_t *pr_tail_open(const struct pr_config *cfg, const char *topic, int *partitions) {
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!conf) return NULL;
    char err[512];
    rd_kafka_conf_set(conf, "group.id", "parcelrisk-tail", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("tail: %s", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = pr_kafka_topic_metadata(rk, topic, 30000, &md);
    if (e) {
        pr_error("tail: cannot read metadata of topic %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    *partitions = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(*partitions);
    for (int p = 0; p < *partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic, md->topics[0].partitions[p].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    return rk;
}

/* tail raw: key and value bytes as hex, and the headers. */
static void pr_tail_print_raw(rd_kafka_message_t *m) {
    printf("{\"_partition\": %d, \"_offset\": %lld, \"_key_hex\": \"", m->partition,
           (long long)m->offset);
    for (size_t i = 0; i < m->key_len; i++) printf("%02x", ((const unsigned char *)m->key)[i]);
    printf("\", \"value_hex\": \"");
    for (size_t i = 0; i < m->len; i++) printf("%02x", ((const unsigned char *)m->payload)[i]);
    printf("\"");
    pr_tail_print_headers(m);
    printf("}\n");
}

/* One decoded record (plain or Confluent-framed Avro) as a JSON line with
 * its Kafka coordinates spliced in; false when it is not a valid record of
 * the schema of value. */
static bool pr_tail_print_record(const rd_kafka_message_t *m, avro_value_t *value,
                                 struct pr_buf *json) {
    const char *body = m->payload;
    size_t body_len = m->len;
    uint32_t schema_id = 0;
    enum pr_wire_frame frame = pr_wire_parse(m->payload, m->len, &schema_id);
    if (frame == PR_WIRE_FRAMED) {
        body += PR_WIRE_HEADER_BYTES;
        body_len -= PR_WIRE_HEADER_BYTES;
    }
    avro_reader_t reader = avro_reader_memory(body, (int64_t)body_len);
    avro_value_reset(value);
    pr_buf_reset(json);
    bool ok = frame != PR_WIRE_TRUNCATED && avro_value_read(reader, value) == 0 &&
              pr_avro_to_json(value, json) == PR_OK;
    avro_reader_free(reader);
    if (!ok) return false;
    printf("{\"_partition\": %d, \"_offset\": %lld, \"_key\": \"", m->partition,
           (long long)m->offset);
    for (size_t i = 0; i < m->key_len; i++) {
        unsigned char c = ((const unsigned char *)m->key)[i];
        if (c < 0x20 || c == '"' || c == '\\')
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    if (frame == PR_WIRE_FRAMED)
        printf("\", \"_schema_id\": %u", schema_id);
    else
        putchar('"');
    printf(", %.*s\n", (int)json->len - 1, (const char *)json->data + 1);
    return true;
}

/* Prints the records of rk until every partition is at its end (or for
 * ever with --follow), or --max of them; returns the exit status. */
static int pr_tail_loop(rd_kafka_t *rk, int partitions, const struct pr_tail_options *o,
                        const char *topic, avro_value_t *value) {
    bool raw = strcmp(o->which, "raw") == 0;
    bool *eof = pr_calloc((size_t)partitions + 1, sizeof(bool));
    int at_end = 0;
    struct pr_buf json;
    pr_buf_init(&json);
    long long printed = 0;
    int rc = 0;
    while ((o->follow || at_end < partitions) && (o->max < 0 || printed < o->max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < partitions && !eof[m->partition]) {
                eof[m->partition] = true;
                at_end++;
            }
        } else if (m->err) {
            pr_warn("tail: %s", rd_kafka_message_errstr(m));
        } else if (raw) {
            pr_tail_print_raw(m);
            printed++;
        } else if (pr_tail_print_record(m, value, &json)) {
            printed++;
        } else {
            pr_warn("tail: record at %s[%d]@%lld is not a valid %s: %s", topic, m->partition,
                    (long long)m->offset, o->which, avro_strerror());
            rc = 1;
        }
        rd_kafka_message_destroy(m);
    }
    fflush(stdout);
    free(eof);
    pr_buf_free(&json);
    return rc;
}

int pr_cmd_tail(int argc, char **argv) {
    struct pr_cli cli;
    pr_cli_init(&cli, "tail", pr_tail_usage, argc);
    struct pr_tail_options o;
    int parsed = pr_tail_parse(&cli, argc, argv, &o);
    if (parsed != PR_CLI_END) return parsed;
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    const char *topic = o.topic                             ? o.topic
                        : strcmp(o.which, "decisions") == 0 ? cfg->topic_decisions
                        : strcmp(o.which, "alerts") == 0    ? cfg->topic_alerts
                                                            : cfg->topic_dlq;
    /* raw decodes nothing; the DeadLetter schema is made all the same. */
    const char *schema_json = strcmp(o.which, "decisions") == 0 || strcmp(o.which, "alerts") == 0
                                  ? pr_schema_decision
                                  : pr_schema_deadletter;
    avro_schema_t schema;
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema)) {
        pr_error("tail: bad embedded schema: %s", avro_strerror());
        return pr_cli_finish(&cli, 1);
    }
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t value;
    avro_generic_value_new(iface, &value);
    int partitions = 0;
    rd_kafka_t *rk = pr_tail_open(cfg, topic, &partitions);
    int rc = 1;
    if (rk) {
        rc = pr_tail_loop(rk, partitions, &o, topic, &value);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return pr_cli_finish(&cli, rc);
}
