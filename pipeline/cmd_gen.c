/*
 * cmd_gen.c - `parcelrisk gen`: a courier-hub load generator.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "codec.h"
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

static void pr_gen_usage(void) {
    fprintf(stderr,
            "usage: parcelrisk gen [--config FILE] [--brokers LIST] [--topic NAME]\n"
            "                      [--count N] [--rate PER_SECOND] [--bad N] [--seed S]\n"
            "                      [--start YYYY-MM-DD] [--days D] [--consignees N] [--ids FILE] [--quiet]\n"
            "  --count N    declarations to produce (default 10000)\n"
            "  --rate R     steady rate per second (default: as fast as possible)\n"
            "  --bad N      of the N messages, how many are deliberately malformed, spread\n"
            "               evenly and cycling through: garbage, truncated, huge_length,\n"
            "               trailing, invalid_utf8, empty, too_large, wrong_schema\n"
            "  --seed S     same seed, same declarations (event_time is the wall clock)\n"
            "  --start D    first arrival day (default: today, UTC); --days spreads arrivals\n"
            "  --consignees N  size of the consignee population (default 200000; skewed draws)\n"
            "  --ids FILE   write one line per message: 'ok <declaration_id>' or\n"
            "               'bad <key> <kind>'\n");
}

int pr_cmd_gen(int argc, char **argv) {
    struct pr_config *cfg = pr_cli_config(&argc, argv);
    if (!cfg) return 2;
    uint64_t count = 10000, bad = 0, seed = 1;
    double rate = 0;
    int days = 1;
    unsigned long consignees = 0;
    bool quiet = false;
    const char *ids_path = NULL, *topic_name = cfg->topic_declarations;
    int64_t start_ms = pr_now_ms();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) {
            quiet = true;
            continue;
        }
        if (!v) {
            pr_gen_usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--count") == 0)
            count = strtoull(v, NULL, 10);
        else if (strcmp(a, "--bad") == 0)
            bad = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--rate") == 0)
            rate = atof(v);
        else if (strcmp(a, "--days") == 0)
            days = atoi(v);
        else if (strcmp(a, "--consignees") == 0)
            consignees = strtoul(v, NULL, 10);
        else if (strcmp(a, "--ids") == 0)
            ids_path = v;
        else if (strcmp(a, "--topic") == 0)
            topic_name = v;
        else if (strcmp(a, "--start") == 0) {
            if (pr_parse_utc(v, &start_ms) != PR_OK) {
                fprintf(stderr, "parcelrisk gen: --start: expected YYYY-MM-DD, got '%s'\n", v);
                return 2;
            }
        } else {
            pr_gen_usage();
            return 2;
        }
    }
    if (bad > count) bad = count;

    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_PRODUCER);
    if (!conf) return 2;
    struct pr_gen_delivery delivery = {0, 0};
    rd_kafka_conf_set_opaque(conf, &delivery);
    rd_kafka_conf_set_dr_msg_cb(conf, pr_gen_dr_cb);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pr_error("gen: %s", err);
        return 1;
    }
    rd_kafka_topic_t *topic = rd_kafka_topic_new(rk, topic_name, NULL);
    FILE *ids = ids_path ? fopen(ids_path, "w") : NULL;
    if (ids_path && !ids) {
        pr_error("gen: cannot write %s", ids_path);
        return 1;
    }

    struct pr_gen gen;
    pr_gen_init(&gen, seed, start_ms, days);
    if (consignees > 0) gen.consignee_pool = (uint32_t)consignees;
    struct pr_buf valid, badbuf;
    pr_buf_init(&valid);
    pr_buf_init(&badbuf);
    int64_t t0 = pr_monotonic_us(), last_progress = t0;
    uint64_t next_bad_index = 0, bad_made = 0;
    if (bad) next_bad_index = 0 * count / bad + count / (2 * bad);
    for (uint64_t i = 0; i < count; i++) {
        struct pr_declaration d;
        pr_gen_next(&gen, &d);
        d.event_time = pr_now_ms();
        pr_buf_reset(&valid);
        pr_declaration_encode(&d, &valid);
        const struct pr_buf *value = &valid;
        char key[64];
        size_t key_len;
        if (bad_made < bad && i == next_bad_index) {
            enum pr_gen_bad kind = (enum pr_gen_bad)(bad_made % PR_BAD_KINDS);
            pr_gen_bad(&gen, kind, &valid, &badbuf);
            value = &badbuf;
            key_len = (size_t)snprintf(key, sizeof(key), "BAD-%llu-%llu", (unsigned long long)seed,
                                       (unsigned long long)i);
            if (ids) fprintf(ids, "bad %s %s\n", key, pr_gen_bad_names[kind]);
            bad_made++;
            next_bad_index = bad_made * count / bad + count / (2 * bad);
        } else {
            key_len = d.declaration_id.len < sizeof(key) ? d.declaration_id.len : sizeof(key) - 1;
            memcpy(key, d.declaration_id.ptr, key_len);
            if (ids) fprintf(ids, "ok %.*s\n", (int)key_len, key);
        }
        for (;;) {
            /* The message timestamp is the hub's event_time, as a hub would set it. */
            rd_kafka_resp_err_t perr = rd_kafka_producev(
                rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_VALUE(value->len ? value->data : NULL, value->len),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(d.event_time), RD_KAFKA_V_END);
            if (perr == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                pr_error("gen: produce failed: %s", rd_kafka_err2str(perr));
                return 1;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)(i + 1) * 1e6 / rate);
            int64_t now = pr_monotonic_us();
            if (due > now) {
                struct timespec ts = {(time_t)((due - now) / 1000000), (long)((due - now) % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
        }
        int64_t now = pr_monotonic_us();
        if (!quiet && now - last_progress > 2000000) {
            fprintf(stderr, "gen: %llu/%llu produced (%.0f/s)\n", (unsigned long long)(i + 1),
                    (unsigned long long)count, (double)(i + 1) / ((double)(now - t0) / 1e6));
            last_progress = now;
        }
    }
    while (rd_kafka_outq_len(rk) > 0 && delivery.failed == 0) rd_kafka_poll(rk, 100);
    double secs = (double)(pr_monotonic_us() - t0) / 1e6;
    if (!quiet)
        fprintf(stderr, "gen: %llu declarations (%llu malformed) delivered to %s in %.2f s (%.0f/s)\n",
                (unsigned long long)delivery.delivered, (unsigned long long)bad_made, topic_name,
                secs, (double)delivery.delivered / secs);
    if (ids) fclose(ids);
    pr_buf_free(&valid);
    pr_buf_free(&badbuf);
    rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(rk);
    pr_config_free(cfg);
    return delivery.failed ? 1 : 0;
}
