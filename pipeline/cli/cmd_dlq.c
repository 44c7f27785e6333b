/*
 * cmd_dlq.c - `parcelrisk dlq replay --code CODE [--since T] [--until T]
 * [--dry-run] [--limit N]`: after a fix (a raised input.max_message_bytes, a
 * corrected producer, a registry back from an outage), sends the original
 * payloads of the chosen dead letters back to the input topic, so that the
 * pipeline decides them (or dead-letters them again, with a code of today).
 *
 * What it reads. The dead-letter topic (topics.dlq), every partition from its
 * beginning up to the end offset it had when the command started (queried
 * first), so the command terminates even while the pipeline keeps writing
 * dead letters, including those of the records it replays. read_committed
 * (the consumer default of pr_kafka_conf_new): a dead letter of an aborted
 * exactly-once transaction was never part of the output and is not replayed.
 * No offset is committed: a replay is a read of the whole topic.
 *
 * What it selects. DeadLetter records (schemas/deadletter.avsc) whose
 * error_code is CODE and, with --since/--until, whose received_at (when the
 * pipeline dead-lettered it) lies in [since, until). --limit N stops after N
 * selected records were sent (or, with --dry-run, would be).
 *
 * What it does not send. A dead letter without a payload (EMPTY) is counted
 * skipped_without_payload. A dead letter whose payload (or key) was cut is
 * counted skipped_cut and never sent: a TOO_LARGE payload longer than
 * input.dlq_keep_bytes keeps only its first bytes, and a dead letter the DLQ
 * topic refused is written again with key and payload cut to
 * input.dlq_keep_bytes together. The cut bytes are gone; what is left is not
 * the declaration the hub sent: replayed, it would be decoded as a truncated
 * record (a DECODE_ERROR dead letter under a new offset, hiding the original
 * TOO_LARGE), and a cut key would send it to another partition under an id
 * that is not the declaration's. Such a declaration must be filed again by
 * its hub. A cut is recognised from the dead letter itself: its error_detail
 * says "(cut to input.dlq_keep_bytes=K: key k of n bytes, payload p of m)"
 * (pipeline/engine/engine.c), or, for TOO_LARGE, "message of N bytes exceeds the cap
 * of C" with fewer than N payload bytes kept.
 *
 * How it sends. An idempotent producer (pr_kafka_conf_new: acks=all, the
 * pipeline's partitioner), the DLQ record's key (the original key) and
 * payload, and a header
 *   parcelrisk-replay: <dlq topic>/<partition>/<offset>
 * naming the dead letter it came from, so a decision or a new dead letter of a
 * replayed record can be traced back. It waits for every delivery report and
 * exits 1 when any record was not acknowledged. Replaying twice sends twice:
 * the decisions are the same (the state counts each declaration_id once), the
 * decisions topic then holds them twice.
 *
 * Prints the counts (scanned, matched, replayed, skipped_without_payload,
 * skipped_cut, unreadable) on stdout; exit 0, 1 on a Kafka failure, 2 on a
 * bad command line or configuration.
 */
#include <avro.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"
#include "record-t.h"
#include "schemas.h"

#define PR_DLQ_REPLAY_HEADER "parcelrisk-replay"
/* No record for this long while partitions are still short of their end: a
 * broker gone or a partition stuck behind an open transaction. */
#define PR_DLQ_STALL_MS 60000

static void pr_dlq_usage(FILE *out) {
    fprintf(out,
            "usage: parcelrisk dlq replay --code CODE [--since T] [--until T] [--dry-run]\n"
            "                             [--limit N] [--config FILE] [--set KEY=VALUE]...\n"
            "Reads the dead-letter topic (topics.dlq) from the beginning to its end at start,\n"
            "selects the dead letters with error_code CODE, and produces their original payloads\n"
            "to the input topic (topics.declarations) with the original key and a header\n"
            "parcelrisk-replay: <dlq topic>/<partition>/<offset>.\n"
            "  --code CODE   EMPTY, TOO_LARGE, DECODE_ERROR, TRAILING_BYTES, INVALID_UTF8,\n"
            "                UNKNOWN_SCHEMA, INVALID_ID or OUTPUT_REJECTED\n"
            "  --since T     only dead letters received at T or later (YYYY-MM-DDTHH:MM:SSZ\n"
            "                or YYYY-MM-DD, UTC)\n"
            "  --until T     only dead letters received before T\n"
            "  --dry-run     count only; produce nothing\n"
            "  --limit N     send at most N records (1 or more)\n"
            "A dead letter without payload, or whose payload or key was cut (TOO_LARGE over\n"
            "input.dlq_keep_bytes, or cut to fit the DLQ topic), is counted and never "
            "sent.\n" PR_CLI_SHARED_HELP
            "Exit status: 0 done, 1 Kafka failure (a record not acknowledged), 2 bad command\n"
            "line or configuration.\n");
}

enum {
    PR_DLQ_OPT_CODE = PR_CLI_OWN,
    PR_DLQ_OPT_SINCE,
    PR_DLQ_OPT_UNTIL,
    PR_DLQ_OPT_DRY_RUN,
    PR_DLQ_OPT_LIMIT,
};

struct pr_dlq_counts {
    long long scanned, matched, replayed, skipped_without_payload, skipped_cut, skipped_internal,
        unreadable;
    long long delivered, failed; /* delivery reports */
};

/* One DeadLetter, fields borrowed from the Avro value. */
struct pr_dlq_record {
    const char *error_code;
    const char *error_detail;
    const char *source_topic;
    int64_t received_at;
    const void *payload;
    size_t payload_len;
};

static int pr_dlq_read(avro_value_t *value, struct pr_dlq_record *out) {
    avro_value_t field;
    size_t size;
    if (avro_value_get_by_index(value, 0, &field, NULL) ||
        avro_value_get_string(&field, &out->error_code, &size) ||
        avro_value_get_by_index(value, 1, &field, NULL) ||
        avro_value_get_string(&field, &out->error_detail, &size) ||
        avro_value_get_by_index(value, 2, &field, NULL) ||
        avro_value_get_string(&field, &out->source_topic, &size) ||
        avro_value_get_by_index(value, 5, &field, NULL) ||
        avro_value_get_long(&field, &out->received_at) ||
        avro_value_get_by_index(value, 6, &field, NULL) ||
        avro_value_get_bytes(&field, &out->payload, &out->payload_len))
        return PR_ERR;
    return PR_OK;
}

/* Whether the dead letter's key or payload was cut (see the top of the
 * file); why says how, for the log line. */
static bool pr_dlq_was_cut(const struct pr_dlq_record *r, char *why, size_t why_size) {
    const char *cut = strstr(r->error_detail, "(cut to input.dlq_keep_bytes=");
    if (cut) {
        unsigned long long keep = 0, key = 0, key_of = 0, payload = 0, payload_of = 0;
        if (sscanf(
                cut,
                "(cut to input.dlq_keep_bytes=%llu: key %llu of %llu bytes, payload %llu of %llu)",
                &keep, &key, &key_of, &payload, &payload_of) != 5) {
            snprintf(why, why_size, "cut to fit the DLQ topic (detail not understood)");
            return true;
        }
        if (key < key_of || payload < payload_of) {
            snprintf(why, why_size,
                     "cut to input.dlq_keep_bytes=%llu: key %llu of %llu bytes, payload "
                     "%llu of %llu",
                     keep, key, key_of, payload, payload_of);
            return true;
        }
        return false;
    }
    unsigned long long size = 0, cap = 0;
    if (strcmp(r->error_code, "TOO_LARGE") == 0 &&
        sscanf(r->error_detail, "message of %llu bytes exceeds the cap of %llu", &size, &cap) ==
            2 &&
        r->payload_len < size) {
        snprintf(why, why_size, "TOO_LARGE payload kept %zu of %llu bytes (input.dlq_keep_bytes)",
                 r->payload_len, size);
        return true;
    }
    return false;
}

static void pr_dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    struct pr_dlq_counts *counts = opaque;
    if (m->err) {
        counts->failed++;
        pr_error("dlq replay: a record to %s was not acknowledged: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    } else {
        counts->delivered++;
    }
}

struct pr_dlq_options {
    const char *code;
    int64_t since_ms, until_ms; /* INT64_MIN / INT64_MAX: unbounded */
    bool dry_run;
    long long limit; /* -1: none */
};

static int pr_dlq_replay(const struct pr_config *cfg, const struct pr_dlq_options *o,
                         struct pr_dlq_counts *counts) {
    const char *dlq = cfg->topic_dlq;
    avro_schema_t schema;
    if (avro_schema_from_json_length(pr_schema_deadletter, strlen(pr_schema_deadletter), &schema)) {
        pr_error("dlq replay: bad embedded schema: %s", avro_strerror());
        return 1;
    }
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t value;
    avro_generic_value_new(iface, &value);
    int rc = 1;
    rd_kafka_t *consumer = NULL, *producer = NULL;
    int64_t *end = NULL;
    bool *done = NULL;
    char err[512];

    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!conf) {
        rc = 2;
        goto out;
    }
    rd_kafka_conf_set(conf, "group.id", "parcelrisk-dlq-replay", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!consumer) {
        pr_error("dlq replay: %s", err);
        goto out;
    }
    rd_kafka_poll_set_consumer(consumer);
    if (!o->dry_run) {
        conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
        if (!conf) {
            rc = 2;
            goto out;
        }
        /* The pipeline's producer never gives up on a record; a command
         * should say within minutes that the broker does not take them. */
        rd_kafka_conf_set(conf, "message.timeout.ms", "300000", err, sizeof(err));
        rd_kafka_conf_set_dr_msg_cb(conf, pr_dlq_dr_cb);
        rd_kafka_conf_set_opaque(conf, counts);
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!producer) {
            pr_error("dlq replay: %s", err);
            goto out;
        }
    }

    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = pr_kafka_topic_metadata(consumer, dlq, 30000, &md);
    if (e) {
        pr_error("dlq replay: cannot read metadata of the DLQ topic %s: %s", dlq,
                 rd_kafka_err2str(e));
        goto out;
    }
    int partitions = md->topics[0].partition_cnt;
    end = pr_calloc((size_t)partitions + 1, sizeof(*end));
    done = pr_calloc((size_t)partitions + 1, sizeof(*done));
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    int open_partitions = 0;
    /* The end of every partition as it is now: what is written later (the
     * dead letters of what this replay sends, among others) is not read. */
    for (int i = 0; i < partitions; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t low = 0, high = 0;
        e = rd_kafka_query_watermark_offsets(consumer, dlq, p, &low, &high, 30000);
        if (e) {
            pr_error("dlq replay: cannot read the end offset of %s[%d]: %s", dlq, (int)p,
                     rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(list);
            rd_kafka_metadata_destroy(md);
            goto out;
        }
        if (p >= 0 && p < partitions) {
            end[p] = high;
            done[p] = low >= high;
        }
        if (low < high) {
            rd_kafka_topic_partition_list_add(list, dlq, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
            open_partitions++;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (open_partitions) rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);

    rd_kafka_topic_t *input =
        producer ? rd_kafka_topic_new(producer, cfg->topic_declarations, NULL) : NULL;
    int64_t last_progress = pr_monotonic_us();
    bool limit_reached = false;
    rc = 0;
    while (open_partitions > 0 && !limit_reached) {
        if (producer) rd_kafka_poll(producer, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 500);
        if (!m) {
            if (pr_monotonic_us() - last_progress > PR_DLQ_STALL_MS * 1000LL) {
                pr_error(
                    "dlq replay: no record from %s for %d s while %d partition(s) are short of "
                    "their end offset (broker down, or an open transaction?)",
                    dlq, PR_DLQ_STALL_MS / 1000, open_partitions);
                rc = 1;
                break;
            }
            continue;
        }
        last_progress = pr_monotonic_us();
        int32_t p = m->partition;
        bool known = p >= 0 && p < partitions;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (known && !done[p]) {
                done[p] = true;
                open_partitions--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            pr_warn("dlq replay: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (!known || done[p] || m->offset >= end[p]) {
            /* Written after the start: not part of this replay. */
            if (known && !done[p]) {
                done[p] = true;
                open_partitions--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset >= end[p] - 1) {
            done[p] = true;
            open_partitions--;
        }
        counts->scanned++;
        avro_reader_t reader = avro_reader_memory(m->payload, (int64_t)m->len);
        avro_value_reset(&value);
        struct pr_dlq_record r;
        if (avro_value_read(reader, &value) != 0 || pr_dlq_read(&value, &r) != PR_OK) {
            counts->unreadable++;
            pr_warn("dlq replay: %s[%d]@%lld is not a DeadLetter record: %s", dlq, (int)p,
                    (long long)m->offset, avro_strerror());
            avro_reader_free(reader);
            rd_kafka_message_destroy(m);
            continue;
        }
        avro_reader_free(reader);
        if (strcmp(r.error_code, o->code) != 0 || r.received_at < o->since_ms ||
            r.received_at >= o->until_ms) {
            rd_kafka_message_destroy(m);
            continue;
        }
        counts->matched++;
        char why[256];
        if (r.payload_len == 0) {
            counts->skipped_without_payload++;
            pr_info("dlq replay: %s[%d]@%lld skipped: no payload", dlq, (int)p,
                    (long long)m->offset);
        } else if (strcmp(r.source_topic, cfg->topic_declarations) != 0) {
            /* Dead-lettered by stage 2 of run (its decision refused for
             * good): the payload is the intermediate record of the internal
             * repartition topic, not a declaration; the detail names where
             * the declaration is. */
            counts->skipped_internal++;
            pr_warn(
                "dlq replay: %s[%d]@%lld skipped: read from %s, not from %s (its payload is not "
                "a declaration; the detail says where the declaration is)",
                dlq, (int)p, (long long)m->offset, r.source_topic, cfg->topic_declarations);
        } else if (pr_dlq_was_cut(&r, why, sizeof(why))) {
            counts->skipped_cut++;
            pr_warn("dlq replay: %s[%d]@%lld skipped: %s; the original bytes are gone, the hub "
                    "must file it again",
                    dlq, (int)p, (long long)m->offset, why);
        } else if (o->dry_run) {
            counts->replayed++;
        } else {
            char origin[300];
            snprintf(origin, sizeof(origin), "%s/%d/%lld", dlq, (int)p, (long long)m->offset);
            rd_kafka_headers_t *headers = rd_kafka_headers_new(1);
            rd_kafka_header_add(headers, PR_DLQ_REPLAY_HEADER, -1, origin, -1);
            for (;;) {
                e = rd_kafka_producev(
                    producer, RD_KAFKA_V_RKT(input), RD_KAFKA_V_KEY(m->key, m->key_len),
                    RD_KAFKA_V_VALUE((void *)r.payload, r.payload_len), RD_KAFKA_V_HEADERS(headers),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
                rd_kafka_poll(producer, 100);
            }
            if (e) {
                rd_kafka_headers_destroy(headers); /* owned by the message only on success */
                pr_error("dlq replay: cannot produce to %s: %s", cfg->topic_declarations,
                         rd_kafka_err2str(e));
                rc = 1;
                rd_kafka_message_destroy(m);
                break;
            }
            counts->replayed++;
        }
        if (o->limit >= 0 && counts->replayed >= o->limit) limit_reached = true;
        rd_kafka_message_destroy(m);
    }
    if (producer) {
        /* Every delivery report, however long the broker takes (bounded by
         * message.timeout.ms above). */
        while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
        rd_kafka_poll(producer, 0);
        if (counts->failed) rc = 1;
    }
    if (input) rd_kafka_topic_destroy(input);
    if (limit_reached) pr_info("dlq replay: --limit %lld reached", o->limit);
out:
    free(end);
    free(done);
    if (consumer) {
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    if (producer) rd_kafka_destroy(producer);
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return rc;
}

int pr_cmd_dlq(int argc, char **argv) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"code", required_argument, NULL, PR_DLQ_OPT_CODE},
        {"since", required_argument, NULL, PR_DLQ_OPT_SINCE},
        {"until", required_argument, NULL, PR_DLQ_OPT_UNTIL},
        {"dry-run", no_argument, NULL, PR_DLQ_OPT_DRY_RUN},
        {"limit", required_argument, NULL, PR_DLQ_OPT_LIMIT},
        PR_CLI_OPTIONS_END,
    };
    struct pr_cli cli;
    pr_cli_init(&cli, "dlq", pr_dlq_usage, argc);
    struct pr_dlq_options o = {.since_ms = INT64_MIN, .until_ms = INT64_MAX, .limit = -1};
    const char *action = NULL, *since = NULL, *until = NULL;
    int opt;
    while ((opt = pr_cli_next(&cli, argc, argv, options)) != PR_CLI_END) {
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(&cli);
        case PR_DLQ_OPT_CODE: o.code = optarg; break;
        case PR_DLQ_OPT_SINCE:
            since = optarg;
            if (pr_parse_utc(optarg, &o.since_ms) != PR_OK)
                return pr_cli_usage_error(&cli,
                                          "--since: expected YYYY-MM-DDTHH:MM:SSZ or "
                                          "YYYY-MM-DD (UTC), got '%s'",
                                          optarg);
            break;
        case PR_DLQ_OPT_UNTIL:
            until = optarg;
            if (pr_parse_utc(optarg, &o.until_ms) != PR_OK)
                return pr_cli_usage_error(&cli,
                                          "--until: expected YYYY-MM-DDTHH:MM:SSZ or "
                                          "YYYY-MM-DD (UTC), got '%s'",
                                          optarg);
            break;
        case PR_DLQ_OPT_DRY_RUN: o.dry_run = true; break;
        case PR_DLQ_OPT_LIMIT:
            if (pr_cli_integer(&cli, "--limit", optarg, 1, LLONG_MAX, "of records", &o.limit) !=
                PR_OK)
                return pr_cli_done(&cli);
            break;
        default:
            if (action) return pr_cli_usage_error(&cli, "unexpected argument '%s'", optarg);
            action = optarg;
        }
    }
    if (!action) return pr_cli_usage_error(&cli, "expected an action: replay");
    if (strcmp(action, "replay") != 0)
        return pr_cli_usage_error(&cli, "unknown action '%s' (expected: replay)", action);
    if (!o.code) return pr_cli_usage_error(&cli, "replay needs --code CODE");
    bool code_known = false;
    for (int i = 1; i < PR_DLQ_COUNT; i++) code_known |= strcmp(o.code, pr_dlq_names[i]) == 0;
    if (!code_known)
        return pr_cli_usage_error(&cli,
                                  "--code: unknown dead-letter code '%s' (EMPTY, TOO_LARGE, "
                                  "DECODE_ERROR, TRAILING_BYTES, INVALID_UTF8, UNKNOWN_SCHEMA, "
                                  "INVALID_ID, OUTPUT_REJECTED)",
                                  o.code);
    if (since && until && o.since_ms >= o.until_ms)
        return pr_cli_usage_error(&cli, "--since %s is not before --until %s", since, until);
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    struct pr_dlq_counts counts;
    memset(&counts, 0, sizeof(counts));
    int rc = pr_dlq_replay(cfg, &o, &counts);
    if (rc == 2) return pr_cli_finish(&cli, 2);
    printf("dlq replay: %s, code %s, from %s to %s%s\n", cfg->topic_dlq, o.code,
           since ? since : "the beginning", until ? until : "the end at start",
           o.dry_run ? " (dry run: nothing produced)" : "");
    printf("scanned: %lld\n", counts.scanned);
    printf("matched: %lld\n", counts.matched);
    if (o.dry_run) {
        printf("would_replay: %lld\n", counts.replayed);
        printf("replayed: 0\n");
    } else {
        printf("replayed: %lld (acknowledged by %s: %lld)\n", counts.replayed,
               cfg->topic_declarations, counts.delivered);
    }
    printf("skipped_without_payload: %lld\n", counts.skipped_without_payload);
    printf("skipped_cut: %lld%s\n", counts.skipped_cut,
           counts.skipped_cut ? " (payload or key cut in the DLQ: the hub must file them again)"
                              : "");
    printf("skipped_internal: %lld%s\n", counts.skipped_internal,
           counts.skipped_internal ? " (made by stage 2 from the repartition topic: produce the "
                                     "declarations named in their detail again)"
                                   : "");
    printf("unreadable: %lld\n", counts.unreadable);
    fflush(stdout);
    return pr_cli_finish(&cli, rc);
}
