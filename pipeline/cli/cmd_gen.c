/*
 * cmd_gen.c - `parcelrisk gen`: a courier-hub load generator.
 */
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "codec.h"
#include "wire.h"
#include "gen.h"
#include "kafka.h"

struct pr_gen_delivery {
    uint64_t delivered;
    uint64_t failed;
};

static void pr_gen_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    struct pr_gen_delivery *d = opaque;
    if (msg->err) {
        if (d->failed++ == 0) pr_error("gen: delivery failed: %s", rd_kafka_err2str(msg->err));
    } else {
        d->delivered++;
    }
}

static void pr_gen_usage(FILE *out) {
    fprintf(
        out,
        "usage: parcelrisk gen [--config FILE] [--set KEY=VALUE]... [--brokers LIST] [--topic "
        "NAME]\n"
        "                      [--count N] [--rate PER_SECOND] [--bad N] [--seed S]\n"
        "                      [--start YYYY-MM-DD] [--days D] [--consignees N] [--ids FILE] "
        "[--quiet]\n"
        "                      [--frame-id ID]\n"
        "Numbers are plain decimal, without units.\n"
        "  --count N    declarations to produce, 0 or more (default 10000)\n"
        "  --rate R     steady rate per second, e.g. 2500 or 0.5 (default: as fast as possible)\n"
        "  --bad N      of the --count messages, how many (at most --count) are deliberately\n"
        "               malformed, spread evenly and cycling through: garbage, truncated,\n"
        "               huge_length, trailing, invalid_utf8, empty, too_large, wrong_schema\n"
        "  --seed S     0 or more; same seed, same declarations (event_time is the wall clock,\n"
        "               or 6 h before arrival for arrivals more than 20 days away)\n"
        "  --start D    first arrival day, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (default: now, UTC)\n"
        "  --days D     spread arrivals over D days, 1-36500 (default 1)\n"
        "  --consignees N  size of the consignee population, 1-4294967295 (default 200000;\n"
        "               skewed draws)\n"
        "  --topic NAME the topic to write (default: topics.declarations)\n"
        "  --ids FILE   write one line per message: 'ok <declaration_id>' or\n"
        "               'bad <key> <kind>'\n"
        "  --quiet      no progress lines\n"
        "  --frame-id ID  write every valid declaration Confluent-framed with this schema\n"
        "               registry id (0-4294967295), as a hub's serializer would (the\n"
        "               --bad messages stay unframed)\n" PR_CLI_SHARED_HELP);
}

enum {
    PR_GEN_COUNT = PR_CLI_OWN,
    PR_GEN_BAD,
    PR_GEN_SEED,
    PR_GEN_RATE,
    PR_GEN_DAYS,
    PR_GEN_CONSIGNEES,
    PR_GEN_IDS,
    PR_GEN_TOPIC,
    PR_GEN_START,
    PR_GEN_QUIET,
    PR_GEN_FRAME_ID,
};

/* What the command line asks for. */
struct pr_gen_options {
    uint64_t count, bad, seed;
    int days;
    uint32_t consignees;
    double rate;
    bool quiet;
    const char *ids_path, *topic;
    long long frame_id; /* --frame-id: -1 for plain Avro binary */
    int64_t start_ms;
};

/* Parses argv into o; returns PR_CLI_END when the run goes on, or the exit
 * status (after --help or an error, reported). */
static int pr_gen_parse(struct pr_cli *cli, int argc, char **argv, struct pr_gen_options *o) {
    static const struct option options[] = {
        PR_CLI_SHARED_OPTIONS,
        {"count", required_argument, NULL, PR_GEN_COUNT},
        {"bad", required_argument, NULL, PR_GEN_BAD},
        {"seed", required_argument, NULL, PR_GEN_SEED},
        {"rate", required_argument, NULL, PR_GEN_RATE},
        {"days", required_argument, NULL, PR_GEN_DAYS},
        {"consignees", required_argument, NULL, PR_GEN_CONSIGNEES},
        {"ids", required_argument, NULL, PR_GEN_IDS},
        {"topic", required_argument, NULL, PR_GEN_TOPIC},
        {"start", required_argument, NULL, PR_GEN_START},
        {"quiet", no_argument, NULL, PR_GEN_QUIET},
        {"frame-id", required_argument, NULL, PR_GEN_FRAME_ID},
        PR_CLI_OPTIONS_END,
    };
    *o = (struct pr_gen_options){
        .count = 10000, .seed = 1, .days = 1, .frame_id = -1, .start_ms = pr_now_ms()};
    long long number = 0;
    int opt;
    while ((opt = pr_cli_next(cli, argc, argv, options)) != PR_CLI_END) {
        int rc = PR_OK;
        switch (opt) {
        case PR_CLI_EXIT: return pr_cli_done(cli);
        case PR_GEN_COUNT:
            rc = pr_cli_integer(cli, "--count", optarg, 0, LLONG_MAX, "", &number);
            o->count = (uint64_t)number;
            break;
        case PR_GEN_BAD:
            rc = pr_cli_integer(cli, "--bad", optarg, 0, LLONG_MAX, "", &number);
            o->bad = (uint64_t)number;
            break;
        case PR_GEN_SEED:
            rc = pr_cli_integer(cli, "--seed", optarg, 0, LLONG_MAX, "", &number);
            o->seed = (uint64_t)number;
            break;
        case PR_GEN_RATE:
            rc = pr_cli_number(cli, "--rate", optarg, 0, 1e9, "per second", &o->rate);
            break;
        case PR_GEN_DAYS:
            rc = pr_cli_integer(cli, "--days", optarg, 1, 36500, "of days", &number);
            o->days = (int)number;
            break;
        case PR_GEN_CONSIGNEES:
            rc = pr_cli_integer(cli, "--consignees", optarg, 1, UINT32_MAX, "", &number);
            o->consignees = (uint32_t)number;
            break;
        case PR_GEN_IDS: o->ids_path = optarg; break;
        case PR_GEN_FRAME_ID:
            rc = pr_cli_integer(cli, "--frame-id", optarg, 0, UINT32_MAX, "", &number);
            o->frame_id = number;
            break;
        case PR_GEN_TOPIC:
            if (!pr_topic_name_legal(optarg))
                return pr_cli_usage_error(cli, "--topic: '%s' is not a Kafka topic name", optarg);
            o->topic = optarg;
            break;
        case PR_GEN_START:
            if (pr_parse_utc(optarg, &o->start_ms) != PR_OK)
                return pr_cli_usage_error(
                    cli, "--start: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got '%s'", optarg);
            break;
        case PR_GEN_QUIET: o->quiet = true; break;
        default: return pr_cli_usage_error(cli, "unexpected argument '%s'", optarg);
        }
        if (rc != PR_OK) return pr_cli_done(cli);
    }
    if (o->bad > o->count)
        return pr_cli_usage_error(cli, "--bad %llu is more than --count %llu",
                                  (unsigned long long)o->bad, (unsigned long long)o->count);
    return PR_CLI_END;
}

/* Produces one message, waiting while the local queue is full. */
static int pr_gen_produce(rd_kafka_t *rk, rd_kafka_topic_t *topic, const struct pr_buf *value,
                          const char *key, size_t key_len) {
    for (;;) {
        /* The message timestamp is the producer's clock (Kafka's default):
         * a replay of 2025 is not deleted by retention. */
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE(value->len ? value->data : NULL, value->len),
                              RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            pr_error("gen: produce failed: %s", rd_kafka_err2str(err));
            return PR_ERR;
        }
        rd_kafka_poll(rk, 10);
    }
    rd_kafka_poll(rk, 0);
    return PR_OK;
}

/* The hub files now: the latency of a live feed is measured from
 * event_time. An arrival generated far from now (--start in the past, a
 * replay of history) is filed six hours before it, as its hub would have,
 * so that it stays plausible (DATE_IMPLAUSIBLE: more than 30 days apart). */
static void pr_gen_set_event_time(struct pr_declaration *d) {
    int64_t now_ms = pr_now_ms();
    int64_t apart = d->arrival_time > now_ms ? d->arrival_time - now_ms : now_ms - d->arrival_time;
    d->event_time = apart > 20 * 86400000LL ? d->arrival_time - 6 * 3600000LL : now_ms;
}

/* --rate: sleeps until message i + 1 is due; a progress line every 2 s. */
static void pr_gen_pace(const struct pr_gen_options *o, uint64_t i, int64_t t0,
                        int64_t *last_progress) {
    if (o->rate > 0) {
        int64_t due = t0 + (int64_t)((double)(i + 1) * 1e6 / o->rate);
        int64_t now = pr_monotonic_us();
        if (due > now) {
            struct timespec ts = {(time_t)((due - now) / 1000000),
                                  (long)((due - now) % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    int64_t now = pr_monotonic_us();
    if (!o->quiet && now - *last_progress > 2000000) {
        fprintf(stderr, "gen: %llu/%llu produced (%.0f/s)\n", (unsigned long long)(i + 1),
                (unsigned long long)o->count, (double)(i + 1) / ((double)(now - t0) / 1e6));
        *last_progress = now;
    }
}

/* Generates and produces o->count declarations, o->bad of them malformed
 * (spread evenly); returns the exit status. */
static int pr_gen_produce_all(const struct pr_gen_options *o, rd_kafka_t *rk,
                              rd_kafka_topic_t *topic, FILE *ids, struct pr_gen_delivery *delivery,
                              const char *topic_name) {
    struct pr_gen gen;
    pr_gen_init(&gen, o->seed, o->start_ms, o->days);
    if (o->consignees > 0) gen.consignee_pool = o->consignees;
    struct pr_buf valid, badbuf, framed;
    pr_buf_init(&valid);
    pr_buf_init(&badbuf);
    pr_buf_init(&framed);
    int64_t t0 = pr_monotonic_us(), last_progress = t0;
    uint64_t bad_made = 0;
    uint64_t next_bad_index = o->bad ? o->count / (2 * o->bad) : 0;
    int rc = 0;
    for (uint64_t i = 0; i < o->count && rc == 0; i++) {
        struct pr_declaration d;
        pr_gen_next(&gen, &d);
        pr_gen_set_event_time(&d);
        pr_buf_reset(&valid);
        pr_declaration_encode(&d, &valid);
        const struct pr_buf *value = &valid;
        char key[64];
        size_t key_len;
        if (bad_made < o->bad && i == next_bad_index) {
            enum pr_gen_bad kind = (enum pr_gen_bad)(bad_made % PR_BAD_KINDS);
            pr_gen_bad(&gen, kind, &valid, &badbuf);
            value = &badbuf;
            key_len = (size_t)snprintf(key, sizeof(key), "BAD-%llu-%llu",
                                       (unsigned long long)o->seed, (unsigned long long)i);
            if (ids) fprintf(ids, "bad %s %s\n", key, pr_gen_bad_names[kind]);
            bad_made++;
            next_bad_index = bad_made * o->count / o->bad + o->count / (2 * o->bad);
        } else {
            key_len = d.declaration_id.len < sizeof(key) ? d.declaration_id.len : sizeof(key) - 1;
            memcpy(key, d.declaration_id.ptr, key_len);
            if (ids) fprintf(ids, "ok %.*s\n", (int)key_len, key);
            if (o->frame_id >= 0) {
                uint8_t header[PR_WIRE_HEADER_BYTES];
                pr_wire_header((uint32_t)o->frame_id, header);
                pr_buf_reset(&framed);
                pr_buf_append(&framed, header, sizeof(header));
                pr_buf_append(&framed, valid.data, valid.len);
                value = &framed;
            }
        }
        if (pr_gen_produce(rk, topic, value, key, key_len) != PR_OK)
            rc = 1;
        else
            pr_gen_pace(o, i, t0, &last_progress);
    }
    while (rd_kafka_outq_len(rk) > 0 && delivery->failed == 0) rd_kafka_poll(rk, 100);
    double secs = (double)(pr_monotonic_us() - t0) / 1e6;
    if (!o->quiet && rc == 0)
        fprintf(stderr,
                "gen: %llu declarations (%llu malformed) delivered to %s in %.2f s (%.0f/s)\n",
                (unsigned long long)delivery->delivered, (unsigned long long)bad_made, topic_name,
                secs, (double)delivery->delivered / secs);
    pr_buf_free(&valid);
    pr_buf_free(&badbuf);
    pr_buf_free(&framed);
    return rc ? rc : delivery->failed ? 1 : 0;
}

int pr_cmd_gen(int argc, char **argv) {
    struct pr_cli cli;
    pr_cli_init(&cli, "gen", pr_gen_usage, argc);
    struct pr_gen_options o;
    int parsed = pr_gen_parse(&cli, argc, argv, &o);
    if (parsed != PR_CLI_END) return parsed;
    struct pr_config *cfg = pr_cli_config(&cli);
    if (!cfg) return pr_cli_done(&cli);
    const char *topic_name = o.topic ? o.topic : cfg->topic_declarations;

    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!conf) return pr_cli_finish(&cli, 2);
    struct pr_gen_delivery delivery = {0, 0};
    rd_kafka_conf_set_opaque(conf, &delivery);
    rd_kafka_conf_set_dr_msg_cb(conf, pr_gen_dr_cb);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("gen: %s", err);
        return pr_cli_finish(&cli, 1);
    }
    FILE *ids = o.ids_path ? fopen(o.ids_path, "w") : NULL;
    if (o.ids_path && !ids) {
        pr_error("gen: cannot write %s", o.ids_path);
        rd_kafka_destroy(rk);
        return pr_cli_finish(&cli, 1);
    }
    rd_kafka_topic_t *topic = rd_kafka_topic_new(rk, topic_name, NULL);
    int rc = pr_gen_produce_all(&o, rk, topic, ids, &delivery, topic_name);
    if (ids) fclose(ids);
    rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(rk);
    return pr_cli_finish(&cli, rc);
}
