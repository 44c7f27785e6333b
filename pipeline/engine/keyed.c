/*
 * keyed.c - the keyed state of stage 2: stores by repartition partition,
 * their changelog, restore and expiry (keyed.h).
 *
 * The restore reads a changelog partition with a consumer of its own (no
 * group: assign() only, nothing committed), from the beginning to its end
 * as the broker reports it by a partition EOF (with read_committed that is
 * the last stable offset: a transaction still open or aborted is never
 * restored). It runs inside the rebalance callback, before the partitions
 * are assigned to the engine's consumer, so no record of a partition is
 * processed before its state is back; the group's max.poll.interval.ms
 * (300 s by default) bounds how long that may take, far above the restore
 * time of a million consignee-days (benchmarks/README.md).
 */
#include "keyed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "state.h"

/* No record for this long while records are still due: the restore fails. */
#define PR_RESTORE_STALL_MS 60000

struct pr_keyed_part {
    struct pr_keyed *keyed;
    int32_t partition;
    struct pr_state *store; /* NULL: not owned */
    /* Revoked by an eager rebalance and kept: if the next assignment gives
     * the partition back, nobody else processed it in between (every member
     * revokes before any is assigned), so the store is still exact. */
    bool standby;
    struct pr_state_journal journal;
};

struct pr_keyed {
    const struct pr_config *cfg;
    const char *changelog;
    int32_t partitions;
    struct pr_keyed_part *parts;
    struct pr_state_options options;
    struct pr_state_router router;
    rd_kafka_t *restorer;
    struct pr_batch *batch; /* the stage-2 batch being processed */
    const void *sink;
    uint64_t restored_records;
    int64_t restore_us;
    uint64_t dropped_expired, dropped_evicted; /* of stores dropped since */
};

static void pr_keyed_write(void *ctx, struct pr_str key, struct pr_str value) {
    struct pr_keyed_part *part = ctx;
    struct pr_keyed *keyed = part->keyed;
    if (!keyed->batch) {
        /* A change outside a batch would never reach the changelog. */
        pr_error("keyed state: a change of partition %d outside a batch is lost (a bug)",
                 part->partition);
        return;
    }
    pr_batch_add_output(keyed->batch, keyed->sink, part->partition, key, value);
}

static struct pr_state *pr_keyed_get(void *ctx, int32_t partition) {
    struct pr_keyed *keyed = ctx;
    if (partition < 0 || partition >= keyed->partitions || keyed->parts[partition].standby)
        return NULL;
    return keyed->parts[partition].store;
}

struct pr_keyed *pr_keyed_new(const struct pr_config *cfg, const char *changelog,
                              int32_t partitions, bool read_committed) {
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!conf) return NULL;
    char err[512];
    if (rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "isolation.level",
                          read_committed ? "read_committed" : "read_uncommitted", err,
                          sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "parcelrisk-restore", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        /* A bulk read applied as fast as it arrives: 16 MB of prefetch is
         * plenty, and it is memory on top of the state being rebuilt. */
        rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "16384", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
        pr_error("keyed state: restore consumer: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *restorer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!restorer) {
        pr_error("keyed state: cannot create the restore consumer: %s", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(restorer);
    struct pr_keyed *keyed = pr_calloc(1, sizeof(*keyed));
    keyed->cfg = cfg;
    keyed->changelog = changelog;
    keyed->partitions = partitions;
    keyed->restorer = restorer;
    keyed->parts = pr_calloc((size_t)partitions, sizeof(*keyed->parts));
    for (int32_t p = 0; p < partitions; p++) {
        keyed->parts[p].keyed = keyed;
        keyed->parts[p].partition = p;
        keyed->parts[p].journal = (struct pr_state_journal){pr_keyed_write, &keyed->parts[p]};
    }
    keyed->options = (struct pr_state_options){
        .ttl_ms = (int64_t)cfg->state_ttl_hours * 3600000LL,
        /* The process's bound, shared: a process that owns every partition
         * gets all of it. */
        .max_bytes = (size_t)cfg->state_max_mb * 1048576u / (size_t)partitions,
        /* The cap the shared-Redis script kept: decisions of saturated days
         * stay what they were. */
        .total_cap = PR_STATE_SCRIPT_TOTAL_CAP,
    };
    keyed->router = (struct pr_state_router){pr_keyed_get, keyed};
    return keyed;
}

static void pr_keyed_drop(struct pr_keyed_part *part) {
    if (part->store) {
        /* Its expiry and eviction counts stay counted. */
        struct pr_state_stats st;
        pr_state_get_stats(part->store, &st);
        part->keyed->dropped_expired += st.expired;
        part->keyed->dropped_evicted += st.evicted;
    }
    pr_state_free(part->store);
    part->store = NULL;
    part->standby = false;
}

void pr_keyed_free(struct pr_keyed *keyed) {
    if (!keyed) return;
    for (int32_t p = 0; p < keyed->partitions; p++) pr_keyed_drop(&keyed->parts[p]);
    free(keyed->parts);
    rd_kafka_consumer_close(keyed->restorer);
    rd_kafka_destroy(keyed->restorer);
    free(keyed);
}

const struct pr_state_router *pr_keyed_router(struct pr_keyed *keyed) {
    return &keyed->router;
}

/* Rebuilds the stores of partitions[0..n) (fresh, empty ones first) from
 * the changelog. */
static int pr_keyed_restore_all(struct pr_keyed *keyed, const int32_t *partitions, size_t n);

static int pr_keyed_restore(struct pr_keyed *keyed, const int32_t *partitions, size_t n) {
    int64_t t0 = pr_monotonic_us();
    int rc = pr_keyed_restore_all(keyed, partitions, n);
    keyed->restore_us += pr_monotonic_us() - t0;
    return rc;
}

static int pr_keyed_restore_all(struct pr_keyed *keyed, const int32_t *partitions, size_t n) {
    if (n == 0) return PR_OK;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    size_t due = 0;
    int64_t *records = pr_calloc((size_t)keyed->partitions, sizeof(*records));
    int64_t *started = pr_calloc((size_t)keyed->partitions, sizeof(*started));
    bool *done = pr_calloc((size_t)keyed->partitions, sizeof(*done));
    int rc = PR_OK;
    for (size_t i = 0; i < n; i++) {
        struct pr_keyed_part *part = &keyed->parts[partitions[i]];
        pr_keyed_drop(part);
        part->store = pr_state_new(&keyed->options);
        pr_state_set_journal(part->store, &part->journal);
        started[part->partition] = pr_monotonic_us();
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t err;
        /* A leader moving (a topic just made, a broker restarting) is
         * waited out, up to PR_RESTORE_STALL_MS. */
        for (int64_t until = pr_monotonic_us() + PR_RESTORE_STALL_MS * 1000LL;;) {
            err = rd_kafka_query_watermark_offsets(keyed->restorer, keyed->changelog,
                                                   part->partition, &low, &high, 10000);
            if (!err || pr_monotonic_us() > until) break;
            pr_warn("keyed state: changelog %s partition %d: %s; retrying", keyed->changelog,
                    part->partition, rd_kafka_err2str(err));
            struct timespec ts = {0, 500 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (err) {
            pr_error("keyed state: changelog %s partition %d: %s", keyed->changelog,
                     part->partition, rd_kafka_err2str(err));
            rc = PR_ERR;
            continue;
        }
        if (high <= low) {
            done[part->partition] = true;
            pr_info("restored 0 consignee-days from changelog partition %d in 0.00 s (empty)",
                    part->partition);
            continue;
        }
        rd_kafka_topic_partition_list_add(list, keyed->changelog, part->partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        due++;
    }
    if (rc == PR_OK && due > 0) {
        rd_kafka_resp_err_t err = rd_kafka_assign(keyed->restorer, list);
        if (err) {
            pr_error("keyed state: cannot read changelog %s: %s", keyed->changelog,
                     rd_kafka_err2str(err));
            rc = PR_ERR;
        }
        int64_t last_progress = pr_monotonic_us();
        while (rc == PR_OK && due > 0) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(keyed->restorer, 200);
            if (!m) {
                if (pr_monotonic_us() - last_progress > PR_RESTORE_STALL_MS * 1000LL) {
                    pr_error("keyed state: the changelog %s gave nothing for %d s while %zu "
                             "partitions are still restoring",
                             keyed->changelog, PR_RESTORE_STALL_MS / 1000, due);
                    rc = PR_ERR;
                }
                continue;
            }
            last_progress = pr_monotonic_us();
            int32_t p = m->partition;
            bool ours = p >= 0 && p < keyed->partitions && keyed->parts[p].store && !done[p];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (ours) {
                    done[p] = true;
                    due--;
                    struct pr_state_stats st;
                    pr_state_get_stats(keyed->parts[p].store, &st);
                    pr_info("restored %zu consignee-days and address-days (%lld changelog "
                            "records, %zu bytes) from changelog partition %d in %.2f s",
                            st.keys, (long long)records[p], st.bytes, p,
                            (double)(pr_monotonic_us() - started[p]) / 1e6);
                }
            } else if (m->err) {
                pr_warn("keyed state: reading changelog %s: %s", keyed->changelog,
                        rd_kafka_message_errstr(m));
            } else if (ours) {
                struct pr_str key = {m->key ? (const char *)m->key : "", (uint32_t)m->key_len};
                struct pr_str value = {m->payload ? (const char *)m->payload : NULL,
                                       (uint32_t)m->len};
                if (pr_state_restore(keyed->parts[p].store, key, value) != PR_OK)
                    pr_warn("keyed state: changelog %s partition %d offset %lld: a record this "
                            "version cannot read is skipped",
                            keyed->changelog, p, (long long)m->offset);
                records[p]++;
                keyed->restored_records++;
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(keyed->restorer, NULL);
    }
    rd_kafka_topic_partition_list_destroy(list);
    free(records);
    free(started);
    free(done);
    return rc;
}

static size_t pr_keyed_pick(struct pr_keyed *keyed, const rd_kafka_topic_partition_list_t *parts,
                            const char *topic, int32_t *out) {
    size_t n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, topic) != 0) continue;
        if (tp->partition < 0 || tp->partition >= keyed->partitions) {
            pr_warn("keyed state: partition %d of %s is beyond the %d partitions the state was "
                    "made for; its records are not aggregated here",
                    tp->partition, topic, keyed->partitions);
            continue;
        }
        out[n++] = tp->partition;
    }
    return n;
}

int pr_keyed_assign(struct pr_keyed *keyed, const rd_kafka_topic_partition_list_t *parts,
                    const char *topic) {
    int32_t *picked = pr_calloc((size_t)parts->cnt + 1, sizeof(*picked));
    size_t n = pr_keyed_pick(keyed, parts, topic, picked), due = 0;
    bool *assigned = pr_calloc((size_t)keyed->partitions, sizeof(*assigned));
    for (size_t i = 0; i < n; i++) assigned[picked[i]] = true;
    for (int32_t p = 0; p < keyed->partitions; p++) {
        struct pr_keyed_part *part = &keyed->parts[p];
        if (!part->standby) continue;
        if (assigned[p]) {
            part->standby = false; /* back to us, untouched: no restore */
            pr_info("keyed state: partition %d assigned back, its store kept", p);
        } else {
            pr_keyed_drop(part); /* another member owns it now */
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!keyed->parts[picked[i]].store) picked[due++] = picked[i];
    int rc = pr_keyed_restore(keyed, picked, due);
    free(assigned);
    free(picked);
    return rc;
}

void pr_keyed_revoke(struct pr_keyed *keyed, const rd_kafka_topic_partition_list_t *parts,
                     const char *topic, bool keep) {
    int32_t *picked = pr_calloc((size_t)parts->cnt + 1, sizeof(*picked));
    size_t n = pr_keyed_pick(keyed, parts, topic, picked);
    for (size_t i = 0; i < n; i++) {
        if (keep && keyed->parts[picked[i]].store)
            keyed->parts[picked[i]].standby = true;
        else
            pr_keyed_drop(&keyed->parts[picked[i]]);
    }
    free(picked);
}

int pr_keyed_reload(struct pr_keyed *keyed) {
    int32_t *owned = pr_calloc((size_t)keyed->partitions, sizeof(*owned));
    size_t n = 0;
    for (int32_t p = 0; p < keyed->partitions; p++)
        if (keyed->parts[p].store && !keyed->parts[p].standby) owned[n++] = p;
    int rc = pr_keyed_restore(keyed, owned, n);
    free(owned);
    return rc;
}

void pr_keyed_begin(struct pr_keyed *keyed, struct pr_batch *batch, const void *sink) {
    keyed->batch = batch;
    keyed->sink = sink;
}

void pr_keyed_end(struct pr_keyed *keyed) {
    if (keyed->batch)
        for (int32_t p = 0; p < keyed->partitions; p++)
            if (keyed->parts[p].store && !keyed->parts[p].standby)
                pr_state_expire(keyed->parts[p].store, keyed->batch->now_ms);
    keyed->batch = NULL;
}

void pr_keyed_get_stats(const struct pr_keyed *keyed, struct pr_keyed_stats *out) {
    memset(out, 0, sizeof(*out));
    for (int32_t p = 0; p < keyed->partitions; p++) {
        if (!keyed->parts[p].store || keyed->parts[p].standby) continue;
        struct pr_state_stats st;
        pr_state_get_stats(keyed->parts[p].store, &st);
        out->stores++;
        out->keys += st.keys;
        out->bytes += st.bytes;
        out->expired += st.expired;
        out->evicted += st.evicted;
    }
    out->expired += keyed->dropped_expired;
    out->evicted += keyed->dropped_evicted;
    out->restored_records = keyed->restored_records;
    out->restore_seconds = (double)keyed->restore_us / 1e6;
}
