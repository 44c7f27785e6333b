/*
 * cmd_produce.c - `parcelrisk produce`: reads declarations as JSON lines
 * (plain JSON: field names of DOMAIN.md section 3, null or absent for the
 * optional ones, transport_mode as its symbol) and produces them as Avro
 * binary, key declaration_id. For hand-made test cases and replays.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "kafka.h"

static const char *const pr_mode_names[PR_MODE_COUNT] = {"AIR", "TRUCK", "RAIL", "VESSEL",
                                                         "POSTAL"};

static struct pr_str pr_json_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return (struct pr_str){"", 0};
    return (struct pr_str){json_string_value(v), (uint32_t)json_string_length(v)};
}

static int64_t pr_json_int(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static bool pr_json_present(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v);
}

static void pr_json_party(json_t *obj, struct pr_party *p) {
    p->name = pr_json_str(obj, "name");
    p->address = pr_json_str(obj, "address");
    p->city = pr_json_str(obj, "city");
    p->postal_code = pr_json_str(obj, "postal_code");
    p->country = pr_json_str(obj, "country");
}

/* Fills d from a JSON object; strings borrow from root. Returns the line
 * array (caller frees). event_time defaults to now when absent. */
static struct pr_line *pr_json_declaration(json_t *root, struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    d->declaration_id = pr_json_str(root, "declaration_id");
    d->filer_code = pr_json_str(root, "filer_code");
    d->entry_type = pr_json_str(root, "entry_type");
    d->house_bill = pr_json_str(root, "house_bill");
    d->has_master_bill = pr_json_present(root, "master_bill");
    d->master_bill = pr_json_str(root, "master_bill");
    struct pr_str mode = pr_json_str(root, "transport_mode");
    for (int i = 0; i < PR_MODE_COUNT; i++)
        if (pr_str_eq(mode, pr_mode_names[i], strlen(pr_mode_names[i]))) d->transport_mode = i;
    d->port_of_entry = pr_json_str(root, "port_of_entry");
    d->arrival_time = pr_json_int(root, "arrival_time");
    d->event_time =
        pr_json_present(root, "event_time") ? pr_json_int(root, "event_time") : pr_now_ms();
    pr_json_party(json_object_get(root, "shipper"), &d->shipper);
    pr_json_party(json_object_get(root, "consignee"), &d->consignee);
    d->has_seller = pr_json_present(root, "seller");
    if (d->has_seller) pr_json_party(json_object_get(root, "seller"), &d->seller);
    d->has_marketplace = pr_json_present(root, "marketplace");
    d->marketplace = pr_json_str(root, "marketplace");
    d->value_usd_cents = pr_json_int(root, "value_usd_cents");
    d->has_freight = pr_json_present(root, "freight_usd_cents");
    d->freight_usd_cents = pr_json_int(root, "freight_usd_cents");
    d->gross_weight_grams = (int32_t)pr_json_int(root, "gross_weight_grams");
    json_t *lines = json_object_get(root, "lines");
    size_t n = json_is_array(lines) ? json_array_size(lines) : 0;
    struct pr_line *out = pr_calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(lines, i);
        out[i].hts = pr_json_str(l, "hts");
        out[i].description = pr_json_str(l, "description");
        out[i].origin_country = pr_json_str(l, "origin_country");
        out[i].quantity = (int32_t)pr_json_int(l, "quantity");
        out[i].value_usd_cents = pr_json_int(l, "value_usd_cents");
    }
    d->lines = out;
    d->line_count = (uint32_t)n;
    return out;
}

static void pr_produce_usage(FILE *out) {
    fprintf(
        out,
        "usage: parcelrisk produce [--config FILE] [--set KEY=VALUE]... [--brokers LIST]\n"
        "                          [--topic NAME] [--input FILE.jsonl|-]\n"
        "Produces declarations written as JSON lines (field names of the Declaration\n"
        "schema), as Avro, key declaration_id.\n"
        "  --input FILE  the JSON lines, '-' for standard input (default)\n"
        "  --topic NAME  the topic to write (default: topics.declarations)\n" PR_CLI_SHARED_HELP);
}

enum { PR_PRODUCE_INPUT = PR_CLI_OWN, PR_PRODUCE_TOPIC };

int pr_cmd_produce(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"input", required_argument, NULL, PR_PRODUCE_INPUT},
        {"topic", required_argument, NULL, PR_PRODUCE_TOPIC},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "produce", pr_produce_usage, argc);
    const char *input = "-", *topic_option = NULL;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_PRODUCE_INPUT: input = optarg; break;
        case PR_PRODUCE_TOPIC:
            if (!pr_topic_name_legal(optarg))
                return pr_cli_usage_error(&cli, "--topic: '%s' is not a Kafka topic name", optarg);
            topic_option = optarg;
            break;
        default: return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
        }
    }
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    const char *topic_name = topic_option ? topic_option : cfg->topic_declarations;
    FILE *fp = strcmp(input, "-") == 0 ? stdin : fopen(input, "r");
    if (!fp) {
        pr_error("produce: cannot open %s", input);
        return pr_cli_finish(&cli, 1);
    }
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!conf) return pr_cli_finish(&cli, 2);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("produce: %s", err);
        return pr_cli_finish(&cli, 1);
    }
    rd_kafka_topic_t *topic = rd_kafka_topic_new(rk, topic_name, NULL);
    struct pr_buf buf;
    pr_buf_init(&buf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, produced = 0, rc = 0;
    while ((len = getline(&line, &cap, fp)) > 0) {
        lineno++;
        if (len <= 1) continue;
        json_error_t jerr;
        json_t *root = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &jerr);
        if (!json_is_object(root)) {
            pr_error("produce: %s:%d: not a JSON object: %s", input, lineno, jerr.text);
            json_decref(root);
            rc = 1;
            break;
        }
        struct pr_declaration d;
        struct pr_line *lines = pr_json_declaration(root, &d);
        pr_buf_reset(&buf);
        pr_declaration_encode(&d, &buf);
        while (rd_kafka_produce(topic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, buf.data,
                                buf.len, d.declaration_id.ptr, d.declaration_id.len, NULL) != 0)
            rd_kafka_poll(rk, 10);
        produced++;
        free(lines);
        json_decref(root);
    }
    free(line);
    if (fp != stdin) fclose(fp);
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        pr_error("produce: not every declaration was acknowledged");
        rc = 1;
    }
    pr_info("produce: %d declarations to %s", produced, topic_name);
    pr_buf_free(&buf);
    rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(rk);
    return pr_cli_finish(&cli, rc);
}
