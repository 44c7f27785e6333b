/*
 * whatif.c - replay a window of declarations under two rule sets and report
 * the difference (whatif.h, issue 15).
 *
 * Reading. The input topic is read partition by partition with librdkafka's
 * partition consumer (rd_kafka_consume_start at an explicit offset,
 * rd_kafka_consume_batch): no group is joined, nothing is committed, and the
 * production group's offsets are never touched. Each partition starts at
 * offsetsForTimes of the window start (--by timestamp) or of --scan-from
 * (arrival_time mode; the log start without it: a hub's Kafka timestamps
 * say nothing about arrival_time), and stops at its high watermark as it was
 * at start, so a replay terminates while hubs keep producing; with --by
 * timestamp also at its first record stamped at or after the window's end. Fetches are
 * large (fetch.max.bytes, queued.max.messages.kbytes).
 *
 * Threads. A reader thread merges the partitions into one of two slots of
 * up to --batch messages while the main thread decides the other; deciding
 * a slot uses two threads (decode and enrich in halves, then baseline and
 * candidate). The report does not depend on the threads: each side sees
 * the same records in the same order.
 *
 * Order. The partitions are merged by (Kafka timestamp, partition, offset):
 * the order in which the one-person-one-day state counts declarations then
 * follows when they were written, and it is the same on every run, so the
 * same window and files give the same report byte for byte.
 *
 * Deciding. Through the operators of `run`. decode and enrich read no rules,
 * so they run once per message, on two halves of each step's messages, one
 * per thread, each half with its own operator instances (enrich answers from one
 * in-memory snapshot of the reference-data version current at start,
 * pipeline/refdata/refdata_snapshot.c). Each side (baseline, candidate) then copies
 * the records and runs validate, policy, screen, aggregate, sample and score
 * with its own rules and its own pr_state (aggregate counts there). The
 * candidate runs on a second thread while the main thread runs the
 * baseline (2 cores); the main thread then compares the two batches record
 * by record, in order. The state's
 * clock is the batch's newest Kafka timestamp (when production would have
 * decided), so state.ttl_hours applies as it would have.
 *
 * Window. In arrival_time mode a message is decoded first and kept only
 * when arrival_time is in [from, to); in timestamp mode by its Kafka
 * timestamp before decoding. Messages that do not decode (or carry an
 * invalid id) are counted by dead-letter code; neither they nor messages
 * outside the window are counted in any state.
 *
 * Output (--out DIR): report.json (sorted keys and arrays, nothing of the
 * run itself: byte-identical for the same window, files and data), run.json
 * (timings and rate of this run), report.md, changed.jsonl (every
 * declaration whose lane changed: id, house bill, port, day, both lanes,
 * scores and reason lists; never a name or address), and PNG charts drawn
 * by gnuplot when it is installed (ops/setup installs gnuplot-nox).
 */
#define _GNU_SOURCE /* posix_spawn_file_actions_addchdir_np (glibc 2.29) */
#include "whatif.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "operator.h"
#include "hash.h"
#include "kafka.h"
#include "refdata_snapshot.h"
#include "rules.h"
#include "state.h"

extern char **environ;

#define PR_WHATIF_FETCH 4096      /* messages per consume call per partition */
#define PR_WHATIF_STALL_MS 120000 /* no message from a partition for this long: give up */
#define PR_WHATIF_MAX_KEYS 100000 /* distinct days / ports kept; the rest as "(other)" */
#define PR_WHATIF_PORT_MAX 16     /* bytes of a port code kept */

static const char *const pr_whatif_side_names[2] = {"baseline", "candidate"};
/* decode and enrich do not read the rules: they run once per message, on
 * two half batches (one per thread); each side copies the records of both
 * and runs the rest. */
static const char *const pr_whatif_shared_chain[] = {"decode", "enrich"};
static const char *const pr_whatif_side_chain[] = {"validate",  "policy", "screen",
                                                   "aggregate", "sample", "score"};

/* ------------------------------------------------------------- sides */

struct pr_whatif_side {
    const char *name;
    const char *rules_path, *policy_path;
    struct pr_rules *rules;
    struct pr_state *state;
    struct pr_chain rest;
    struct pr_batch batch;
    const struct pr_batch *shared[2]; /* the records to decide: both halves, in order */
    int rc;                           /* of the last step */
    uint64_t busy_us;                 /* time deciding, over the run */
};

/* ------------------------------------------------------------- counters */

/* Lanes per side for one day or port. */
struct pr_whatif_bucket {
    char *key;
    uint64_t count;
    uint64_t lanes[2][4];
};

struct pr_whatif_map {
    struct pr_whatif_bucket *items;
    size_t count, cap;
    uint32_t *index; /* open addressing: item + 1, 0 empty */
    size_t index_cap;
    bool overflowed;
};

static struct pr_whatif_bucket *pr_whatif_map_get(struct pr_whatif_map *map, const char *key,
                                                  size_t len) {
    if (map->index_cap == 0 || (map->count + 1) * 2 > map->index_cap) {
        size_t cap = map->index_cap ? map->index_cap * 2 : 256;
        uint32_t *index = pr_calloc(cap, sizeof(*index));
        for (size_t i = 0; i < map->count; i++) {
            size_t j = pr_hash64(map->items[i].key, strlen(map->items[i].key)) & (cap - 1);
            while (index[j]) j = (j + 1) & (cap - 1);
            index[j] = (uint32_t)i + 1;
        }
        free(map->index);
        map->index = index;
        map->index_cap = cap;
    }
    if (map->count >= PR_WHATIF_MAX_KEYS) {
        map->overflowed = true;
        key = "(other)";
        len = strlen(key);
    }
    size_t j = pr_hash64(key, len) & (map->index_cap - 1);
    while (map->index[j]) {
        struct pr_whatif_bucket *b = &map->items[map->index[j] - 1];
        if (strlen(b->key) == len && memcmp(b->key, key, len) == 0) return b;
        j = (j + 1) & (map->index_cap - 1);
    }
    if (map->count == map->cap) {
        map->cap = map->cap ? map->cap * 2 : 64;
        map->items = pr_realloc(map->items, map->cap * sizeof(*map->items));
    }
    struct pr_whatif_bucket *b = &map->items[map->count];
    memset(b, 0, sizeof(*b));
    b->key = pr_strndup(key, len);
    map->index[j] = (uint32_t)++map->count;
    return b;
}

static int pr_whatif_bucket_cmp(const void *a, const void *b) {
    return strcmp(((const struct pr_whatif_bucket *)a)->key,
                  ((const struct pr_whatif_bucket *)b)->key);
}

static void pr_whatif_map_free(struct pr_whatif_map *map) {
    for (size_t i = 0; i < map->count; i++) free(map->items[i].key);
    free(map->items);
    free(map->index);
}

/* One changed declaration kept for report.md. */
struct pr_whatif_listed {
    char *id, *house_bill;
    int lane[2], score[2];
    uint32_t fired[2];
};

/* Half of a step's messages, decoded and enriched on one thread. */
struct pr_whatif_half {
    struct pr_whatif *w;
    struct pr_chain shared; /* decode, enrich: operator instances of this half */
    struct pr_batch batch;  /* decoded, enriched, in the window */
    rd_kafka_message_t **messages;
    size_t count;
    int64_t now_ms;
    int rc;
    uint64_t undecodable[PR_DLQ_COUNT], out_of_window; /* added to the totals after the step */
};

struct pr_whatif_partition {
    int32_t partition;
    int64_t start, end; /* [start, end): end is the high watermark at start */
    int64_t next;       /* next offset expected */
    bool done;
    rd_kafka_message_t *buf[PR_WHATIF_FETCH];
    size_t head, count;
    int64_t head_ts; /* Kafka timestamp of buf[head] when count > 0 */
    int64_t last_message_us;
};

struct pr_whatif {
    const struct pr_config *cfg;
    const struct pr_whatif_options *o;
    struct pr_whatif_side sides[2];
    struct pr_whatif_half halves[2]; /* a step's messages, split in two, one per thread */
    struct pr_refdata_snapshot *snapshot;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    struct pr_whatif_partition *parts;
    int part_count;
    uint64_t to_read; /* sum of end - start */
    uint64_t read;    /* messages taken from the partitions */
    uint64_t out_of_window, decided;
    uint64_t undecodable[PR_DLQ_COUNT];
    uint64_t matrix[4][4];
    uint64_t reasons[2][PR_R_COUNT];
    uint64_t lanes[2][4];
    uint64_t changed;
    struct pr_whatif_map days, ports;
    struct pr_whatif_listed *listed;
    size_t listed_count;
    FILE *changed_file;
    FILE *all_file; /* --all */
    struct pr_buf line;
    int64_t started_us, last_progress_us;
    double snapshot_seconds;
    /* Wall time of the main thread's stages (run.json). */
    uint64_t read_us, shared_us, wait_us, compare_us;
    uint64_t reader_us; /* the reader thread's time reading */
};

/* ------------------------------------------------------------- helpers */

static double pr_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* The UTC day of ms (plus the offset of the rules), "YYYY-MM-DD". */
static void pr_whatif_day(int64_t ms, int offset_minutes, char out[16]) {
    char buf[32];
    int64_t shifted = ms;
    if (__builtin_add_overflow(ms, (int64_t)offset_minutes * 60000, &shifted)) shifted = ms;
    pr_format_utc(shifted, buf, sizeof(buf));
    snprintf(out, 16, "%.10s", buf);
}

static char *pr_whatif_path(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = pr_malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

/* -------------------------------------------------------------- reading */

static int pr_whatif_open(struct pr_whatif *w) {
    const struct pr_config *cfg = w->cfg;
    rd_kafka_conf_t *conf = pr_kafka_conf_new(cfg, PR_KAFKA_CONSUMER);
    if (!conf) return PR_ERR;
    /* Large fetches; nothing stored or committed (no offset is ever
     * stored, so nothing can be committed for the group). */
    static const char *const settings[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"fetch.max.bytes", "67108864"},
        {"max.partition.fetch.bytes", "16777216"},
        {"queued.max.messages.kbytes", "131072"},
        {"queued.min.messages", "200000"},
        {"fetch.wait.max.ms", "100"},
        {"enable.partition.eof", "false"},
    };
    char err[512];
    for (size_t i = 0; i < PR_ARRAY_LEN(settings); i++)
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            pr_error("whatif: consumer setting %s: %s", settings[i][0], err);
            rd_kafka_conf_destroy(conf);
            return PR_ERR;
        }
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!w->rk) {
        pr_error("whatif: cannot create the consumer: %s", err);
        return PR_ERR;
    }
    const char *topic = cfg->topic_declarations;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t merr = pr_kafka_topic_metadata(w->rk, topic, 30000, &md);
    if (merr) {
        pr_error("whatif: cannot read the metadata of topic %s: %s", topic, rd_kafka_err2str(merr));
        return PR_ERR;
    }
    w->part_count = md->topics[0].partition_cnt;
    w->parts = pr_calloc((size_t)(w->part_count ? w->part_count : 1), sizeof(*w->parts));
    rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new(w->part_count);
    for (int i = 0; i < w->part_count; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        rd_kafka_topic_partition_list_add(times, topic, p)->offset =
            w->o->by_timestamp ? w->o->from_ms : w->o->scan_from_ms;
    }
    rd_kafka_metadata_destroy(md);
    /* The partitions in id order: the merge breaks ties by partition. */
    for (int i = 0; i < times->cnt; i++)
        for (int j = i + 1; j < times->cnt; j++)
            if (times->elems[j].partition < times->elems[i].partition) {
                rd_kafka_topic_partition_t t = times->elems[i];
                times->elems[i] = times->elems[j];
                times->elems[j] = t;
            }
    bool use_times = w->o->by_timestamp || w->o->scan_from_ms >= 0;
    if (use_times) {
        rd_kafka_resp_err_t terr = rd_kafka_offsets_for_times(w->rk, times, 30000);
        if (terr) {
            pr_error("whatif: offsetsForTimes on %s failed: %s", topic, rd_kafka_err2str(terr));
            rd_kafka_topic_partition_list_destroy(times);
            return PR_ERR;
        }
    }
    for (int i = 0; i < times->cnt; i++) {
        struct pr_whatif_partition *part = &w->parts[i];
        part->partition = times->elems[i].partition;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t qerr =
            rd_kafka_query_watermark_offsets(w->rk, topic, part->partition, &lo, &hi, 30000);
        if (qerr) {
            pr_error("whatif: cannot read the watermarks of %s [%d]: %s", topic, part->partition,
                     rd_kafka_err2str(qerr));
            rd_kafka_topic_partition_list_destroy(times);
            return PR_ERR;
        }
        int64_t start = lo;
        if (use_times) {
            if (times->elems[i].err) {
                pr_error("whatif: offsetsForTimes on %s [%d]: %s", topic, part->partition,
                         rd_kafka_err2str(times->elems[i].err));
                rd_kafka_topic_partition_list_destroy(times);
                return PR_ERR;
            }
            /* -1: no record at or after the instant. */
            start = times->elems[i].offset < 0 ? hi : times->elems[i].offset;
        }
        if (start < lo) start = lo;
        part->start = part->next = start;
        part->end = hi;
        part->done = start >= hi;
        w->to_read += (uint64_t)(hi > start ? hi - start : 0);
    }
    rd_kafka_topic_partition_list_destroy(times);
    w->rkt = rd_kafka_topic_new(w->rk, topic, NULL);
    for (int i = 0; i < w->part_count; i++) {
        struct pr_whatif_partition *part = &w->parts[i];
        part->last_message_us = pr_monotonic_us();
        if (part->done) continue;
        if (rd_kafka_consume_start(w->rkt, part->partition, part->start) != 0) {
            pr_error("whatif: cannot start reading %s [%d] at offset %lld: %s", topic,
                     part->partition, (long long)part->start,
                     rd_kafka_err2str(rd_kafka_last_error()));
            part->done = true;
            return PR_ERR;
        }
    }
    return PR_OK;
}

static void pr_whatif_close(struct pr_whatif *w) {
    if (w->parts) {
        for (int i = 0; i < w->part_count; i++) {
            struct pr_whatif_partition *part = &w->parts[i];
            for (size_t k = 0; k < part->count; k++)
                rd_kafka_message_destroy(part->buf[part->head + k]);
            if (w->rkt && part->start < part->end) rd_kafka_consume_stop(w->rkt, part->partition);
        }
        free(w->parts);
    }
    if (w->rkt) rd_kafka_topic_destroy(w->rkt);
    if (w->rk) rd_kafka_destroy(w->rk);
}

/* Makes sure part has a buffered message unless it is done. PR_ERR when
 * it stalls or fails. */
static int pr_whatif_fill(struct pr_whatif *w, struct pr_whatif_partition *part) {
    while (!part->done && part->count == 0) {
        part->head = 0;
        /* What is queued, without waiting (consume_batch with a timeout
         * waits for a full batch); when nothing is, wait for one message. */
        ssize_t n = rd_kafka_consume_batch(w->rkt, part->partition, 0, part->buf, PR_WHATIF_FETCH);
        if (n == 0) n = rd_kafka_consume_batch(w->rkt, part->partition, 200, part->buf, 1);
        if (n < 0) {
            pr_error("whatif: reading %s [%d] failed: %s", w->cfg->topic_declarations,
                     part->partition, rd_kafka_err2str(rd_kafka_last_error()));
            return PR_ERR;
        }
        size_t kept = 0;
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = part->buf[i];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    pr_warn("whatif: %s [%d]: %s", w->cfg->topic_declarations, part->partition,
                            rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            if (part->done || m->offset >= part->end) {
                part->done = true;
                rd_kafka_message_destroy(m);
                continue;
            }
            part->buf[kept++] = m;
        }
        part->count = kept;
        if (kept) {
            part->head_ts = rd_kafka_message_timestamp(part->buf[0], NULL);
            part->last_message_us = pr_monotonic_us();
        } else if (!part->done &&
                   pr_monotonic_us() - part->last_message_us > PR_WHATIF_STALL_MS * 1000LL) {
            pr_error("whatif: nothing from %s [%d] for %d s at offset %lld (end %lld); giving up",
                     w->cfg->topic_declarations, part->partition, PR_WHATIF_STALL_MS / 1000,
                     (long long)part->next, (long long)part->end);
            return PR_ERR;
        }
    }
    return PR_OK;
}

/* The next message in (timestamp, partition, offset) order, NULL at the
 * end; *failed on a reading error. */
static rd_kafka_message_t *pr_whatif_next(struct pr_whatif *w, bool *failed) {
    for (;;) {
        struct pr_whatif_partition *best = NULL;
        int64_t best_ts = 0;
        for (int i = 0; i < w->part_count; i++) {
            struct pr_whatif_partition *part = &w->parts[i];
            if (part->count == 0 && !part->done && pr_whatif_fill(w, part) != PR_OK) {
                *failed = true;
                return NULL;
            }
            if (part->count == 0) continue;
            int64_t ts = part->head_ts;
            if (!best || ts < best_ts) {
                best = part;
                best_ts = ts;
            }
        }
        if (!best) return NULL;
        rd_kafka_message_t *m = best->buf[best->head++];
        best->count--;
        if (best->count) best->head_ts = rd_kafka_message_timestamp(best->buf[best->head], NULL);
        best->next = m->offset + 1;
        if (best->next >= best->end) best->done = true;
        if (w->o->by_timestamp && best_ts >= w->o->to_ms) {
            /* The end of the window in this partition (the first record at or
             * after T2, as offsetsForTimes finds the first at or after T1):
             * the partition is done; what it has buffered is not read. */
            rd_kafka_message_destroy(m);
            for (size_t k = 0; k < best->count; k++)
                rd_kafka_message_destroy(best->buf[best->head + k]);
            best->count = 0;
            best->done = true;
            continue;
        }
        __atomic_fetch_add(&w->read, 1,
                           __ATOMIC_RELAXED); /* progress reads it from the main thread */
        return m;
    }
}

/* ------------------------------------------------------------- deciding */

static int pr_whatif_side_init(struct pr_whatif *w, struct pr_whatif_side *side, int index) {
    const struct pr_config *cfg = w->cfg;
    side->name = pr_whatif_side_names[index];
    char err[512];
    side->rules = pr_rules_load(side->rules_path, side->policy_path, err, sizeof(err));
    if (!side->rules) {
        pr_error("whatif: %s rules refused: %s", side->name, err);
        return 2;
    }
    struct pr_state_options so = {.ttl_ms = (int64_t)cfg->state_ttl_hours * 3600000LL,
                                  .max_bytes = w->o->state_max_mb << 20,
                                  .total_cap = PR_STATE_SCRIPT_TOTAL_CAP};
    side->state = pr_state_new(&so);
    struct pr_operator_env env = {.cfg = cfg, .refdata = w->snapshot, .state = side->state};
    if (pr_chain_init_env(&side->rest, pr_whatif_side_chain, PR_ARRAY_LEN(pr_whatif_side_chain),
                          &env) != PR_OK)
        return 1;
    pr_batch_init(&side->batch, w->o->batch_size);
    return 0;
}

static void pr_whatif_side_free(struct pr_whatif_side *side) {
    pr_chain_destroy(&side->rest);
    if (side->batch.records) pr_batch_destroy(&side->batch);
    pr_state_free(side->state);
    if (side->rules) pr_rules_free(side->rules);
}

/* Decodes and enriches half of a step's messages and keeps, in order, the
 * records that decoded and lie in the window (the others are counted in
 * the half). Runs on either thread; touches only its half. */
static void *pr_whatif_half_step(void *arg) {
    struct pr_whatif_half *half = arg;
    struct pr_whatif *w = half->w;
    struct pr_batch *batch = &half->batch;
    pr_batch_reset(batch);
    for (size_t i = 0; i < half->count; i++) pr_kafka_batch_push(batch, half->messages[i]);
    batch->now_ms = half->now_ms;
    batch->rules = w->sides[0].rules;
    batch->source_topic = w->cfg->topic_declarations;
    batch->refdata_version = w->snapshot->version;
    /* decode alone first: enrich then sees only the window. */
    size_t failed_at = 0;
    int rc = half->shared.ops[0].ops->process(&half->shared.ops[0], batch);
    size_t kept = 0;
    for (size_t i = 0; rc == PR_OP_DONE && i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (pr_record_dead(rec)) {
            half->undecodable[rec->dlq_code]++;
            continue;
        }
        if (!w->o->by_timestamp &&
            (rec->decl.arrival_time < w->o->from_ms || rec->decl.arrival_time >= w->o->to_ms)) {
            half->out_of_window++;
            continue;
        }
        if (kept != i) batch->records[kept] = *rec;
        kept++;
    }
    batch->count = kept;
    if (rc == PR_OP_DONE) rc = pr_chain_process(&half->shared, batch, 1, &failed_at);
    if (rc != PR_OP_DONE)
        pr_error("whatif: operator %s failed", half->shared.ops[failed_at].ops->name);
    half->rc = rc;
    return NULL;
}

/* Runs fn(a) on a second thread and fn(b) on this one; waits for both.
 * Returns the time spent waiting for the second thread, us. */
static int64_t pr_whatif_both(void *(*fn)(void *), void *a, void *b) {
    pthread_t thread;
    bool threaded = pthread_create(&thread, NULL, fn, a) == 0;
    fn(b);
    int64_t t0 = pr_monotonic_us();
    if (threaded)
        pthread_join(thread, NULL);
    else
        fn(a);
    return pr_monotonic_us() - t0;
}

/* One side decides the records of both halves, in order: a copy of each
 * (the strings, lines and reference answers stay in the halves' arenas,
 * read only), then validate, policy, screen, aggregate, sample, score.
 * Runs on either thread and touches only its side. */
static void *pr_whatif_side_step(void *arg) {
    struct pr_whatif_side *side = arg;
    struct pr_batch *batch = &side->batch;
    pr_batch_reset(batch);
    batch->count = 0;
    for (int h = 0; h < 2; h++) {
        const struct pr_batch *shared = side->shared[h];
        memcpy(batch->records + batch->count, shared->records,
               shared->count * sizeof(*batch->records));
        batch->count += shared->count;
    }
    batch->now_ms = side->shared[1]->now_ms;
    batch->rules = side->rules;
    batch->source_topic = side->shared[0]->source_topic;
    batch->refdata_version = side->shared[0]->refdata_version;
    size_t failed_at = 0;
    int64_t t0 = pr_monotonic_us();
    side->rc = pr_chain_process(&side->rest, batch, 0, &failed_at);
    side->busy_us += (uint64_t)(pr_monotonic_us() - t0);
    if (side->rc != PR_OP_DONE)
        pr_error("whatif: %s: operator %s failed", side->name, side->rest.ops[failed_at].ops->name);
    return NULL;
}

static void pr_whatif_reasons_json(struct pr_buf *line, const struct pr_record *rec) {
    pr_buf_append(line, "[", 1);
    bool first = true;
    for (int c = 0; c < PR_R_COUNT; c++) {
        if (!pr_record_has(rec, (enum pr_reason_code)c)) continue;
        pr_buf_appendf(line, "%s{\"code\":\"%s\",\"points\":%d}", first ? "" : ",",
                       pr_reason_names[c], rec->reasons[c].points);
        first = false;
    }
    pr_buf_append(line, "]", 1);
}

static void pr_whatif_json_string(struct pr_buf *line, struct pr_str s) {
    json_t *j = json_stringn(s.ptr, s.len);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (text)
        pr_buf_append(line, text, strlen(text));
    else
        pr_buf_append(line, "null", 4);
    free(text);
    json_decref(j);
}

/* One JSON line for a declaration decided on both sides (changed.jsonl,
 * --all): identifiers, day, port, both lanes, scores and reason lists.
 * Never a name or address. Keys in sorted order. */
static void pr_whatif_line(struct pr_buf *line, const struct pr_record *ra,
                           const struct pr_record *rb, const char *day, int port_len) {
    const struct pr_declaration *d = &ra->decl;
    pr_buf_reset(line);
    pr_buf_append(line, "{\"arrival_day\":\"", 16);
    pr_buf_append(line, day, strlen(day));
    pr_buf_appendf(line, "\",\"baseline\":{\"lane\":\"%s\",\"reasons\":", pr_lane_names[ra->lane]);
    pr_whatif_reasons_json(line, ra);
    pr_buf_appendf(line, ",\"score\":%d},\"candidate\":{\"lane\":\"%s\",\"reasons\":", ra->score,
                   pr_lane_names[rb->lane]);
    pr_whatif_reasons_json(line, rb);
    pr_buf_appendf(line, ",\"score\":%d},\"declaration_id\":", rb->score);
    pr_whatif_json_string(line, d->declaration_id);
    pr_buf_append(line, ",\"house_bill\":", 14);
    pr_whatif_json_string(line, d->house_bill);
    pr_buf_append(line, ",\"port_of_entry\":", 17);
    pr_whatif_json_string(line, (struct pr_str){d->port_of_entry.ptr, (uint32_t)port_len});
    pr_buf_appendf(line, ",\"source_offset\":%lld,\"source_partition\":%d}\n",
                   (long long)ra->offset, ra->partition);
}

static int pr_whatif_compare(struct pr_whatif *w) {
    struct pr_batch *a = &w->sides[0].batch, *b = &w->sides[1].batch;
    if (a->count != b->count) {
        pr_error("whatif: the sides kept %zu and %zu records of one batch", a->count, b->count);
        return PR_ERR;
    }
    const struct pr_rules *rules = w->sides[0].rules;
    for (size_t i = 0; i < a->count; i++) {
        const struct pr_record *ra = &a->records[i], *rb = &b->records[i];
        const struct pr_declaration *d = &ra->decl;
        w->decided++;
        w->matrix[ra->lane][rb->lane]++;
        w->lanes[0][ra->lane]++;
        w->lanes[1][rb->lane]++;
        for (int c = 0; c < PR_R_COUNT; c++) {
            if (pr_record_has(ra, (enum pr_reason_code)c)) w->reasons[0][c]++;
            if (pr_record_has(rb, (enum pr_reason_code)c)) w->reasons[1][c]++;
        }
        char day[16];
        pr_whatif_day(d->arrival_time, rules->day_offset_minutes, day);
        struct pr_whatif_bucket *bd = pr_whatif_map_get(&w->days, day, strlen(day));
        int port_len =
            pr_utf8_prefix(d->port_of_entry.ptr, d->port_of_entry.len, PR_WHATIF_PORT_MAX);
        struct pr_whatif_bucket *bp =
            port_len ? pr_whatif_map_get(&w->ports, d->port_of_entry.ptr, (size_t)port_len)
                     : pr_whatif_map_get(&w->ports, "(none)", 6);
        for (struct pr_whatif_bucket *bk = bd;; bk = bp) {
            bk->count++;
            bk->lanes[0][ra->lane]++;
            bk->lanes[1][rb->lane]++;
            if (bk == bp) break;
        }
        bool changed = ra->lane != rb->lane;
        if (!changed && !w->all_file) continue;
        pr_whatif_line(&w->line, ra, rb, day, port_len);
        if (w->all_file && fwrite(w->line.data, 1, w->line.len, w->all_file) != w->line.len) {
            pr_error("whatif: cannot write %s: %s", w->o->all_path, strerror(errno));
            return PR_ERR;
        }
        if (!changed) continue;
        w->changed++;
        if (fwrite(w->line.data, 1, w->line.len, w->changed_file) != w->line.len) {
            pr_error("whatif: cannot write changed.jsonl: %s", strerror(errno));
            return PR_ERR;
        }
        if (w->listed_count < (size_t)w->o->listed_max) {
            struct pr_whatif_listed *l = &w->listed[w->listed_count++];
            l->id = pr_strndup(d->declaration_id.ptr, d->declaration_id.len);
            l->house_bill = pr_strndup(d->house_bill.ptr, d->house_bill.len);
            l->lane[0] = ra->lane;
            l->lane[1] = rb->lane;
            l->score[0] = ra->score;
            l->score[1] = rb->score;
            l->fired[0] = ra->fired;
            l->fired[1] = rb->fired;
        }
    }
    return PR_OK;
}

static void pr_whatif_progress(struct pr_whatif *w, bool last) {
    if (w->o->quiet) return;
    int64_t now = pr_monotonic_us();
    bool tty = isatty(2);
    if (!last && now - w->last_progress_us < (tty ? 1000000 : 5000000)) return;
    w->last_progress_us = now;
    double secs = (double)(now - w->started_us) / 1e6;
    uint64_t read = __atomic_load_n(&w->read, __ATOMIC_RELAXED);
    double rate = secs > 0 ? (double)read / secs : 0;
    double left = rate > 0 && w->to_read > read ? (double)(w->to_read - read) / rate : 0;
    fprintf(stderr,
            "%swhatif: %llu of %llu messages (%.1f%%), %llu decided, %llu changed, %.0f/s, ETA "
            "%.0f s%s",
            tty ? "\r" : "", (unsigned long long)read, (unsigned long long)w->to_read,
            w->to_read ? 100.0 * (double)read / (double)w->to_read : 100.0,
            (unsigned long long)w->decided, (unsigned long long)w->changed, rate, left,
            !tty || last ? "\n" : "   ");
    fflush(stderr);
}

/* --------------------------------------------------------------- report */

static json_t *pr_whatif_lanes_json(const uint64_t lanes[4]) {
    json_t *o = json_object();
    for (int l = 0; l < 4; l++)
        json_object_set_new(o, pr_lane_names[l], json_integer((json_int_t)lanes[l]));
    return o;
}

static double pr_share(uint64_t n, uint64_t of) {
    return of ? round(1e6 * (double)n / (double)of) / 1e6 : 0;
}

static json_t *pr_whatif_buckets_json(struct pr_whatif_map *map, const char *key_name) {
    qsort(map->items, map->count, sizeof(*map->items), pr_whatif_bucket_cmp);
    /* The index no longer matches the order: no lookups after this. */
    json_t *arr = json_array();
    for (size_t i = 0; i < map->count; i++) {
        const struct pr_whatif_bucket *b = &map->items[i];
        json_t *o = json_object();
        json_object_set_new(o, key_name, json_string(b->key));
        json_object_set_new(o, "declarations", json_integer((json_int_t)b->count));
        json_object_set_new(o, "baseline", pr_whatif_lanes_json(b->lanes[0]));
        json_object_set_new(o, "candidate", pr_whatif_lanes_json(b->lanes[1]));
        json_t *change = json_object();
        json_object_set_new(change, "YELLOW",
                            json_integer((json_int_t)b->lanes[1][PR_LANE_YELLOW] -
                                         (json_int_t)b->lanes[0][PR_LANE_YELLOW]));
        json_object_set_new(change, "RED",
                            json_integer((json_int_t)b->lanes[1][PR_LANE_RED] -
                                         (json_int_t)b->lanes[0][PR_LANE_RED]));
        json_object_set_new(o, "change", change);
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *pr_whatif_side_json(const struct pr_whatif *w, int s) {
    const struct pr_whatif_side *side = &w->sides[s];
    struct pr_state_stats st;
    pr_state_get_stats(side->state, &st);
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I}}", "rules_file",
        side->rules_path && side->rules_path[0] ? side->rules_path : "(shipped defaults)",
        "policy_file",
        side->policy_path && side->policy_path[0] ? side->policy_path : "(shipped defaults)",
        "ruleset_version", pr_rules_version(side->rules), "lanes",
        pr_whatif_lanes_json(w->lanes[s]), "state", "keys_at_end", (json_int_t)st.keys, "expired",
        (json_int_t)st.expired, "evicted", (json_int_t)st.evicted);
}

static json_t *pr_whatif_report_json(struct pr_whatif *w) {
    char from[32], to[32];
    pr_format_utc(w->o->from_ms, from, sizeof(from));
    pr_format_utc(w->o->to_ms, to, sizeof(to));
    json_t *window = json_pack("{s:s, s:s, s:s}", "from", from, "to", to, "by",
                               w->o->by_timestamp ? "timestamp" : "arrival_time");
    if (!w->o->by_timestamp) {
        char scan[32] = "(log start)";
        if (w->o->scan_from_ms >= 0) pr_format_utc(w->o->scan_from_ms, scan, sizeof(scan));
        json_object_set_new(window, "scan_from", json_string(scan));
    }
    json_t *parts = json_array();
    for (int i = 0; i < w->part_count; i++)
        json_array_append_new(parts,
                              json_pack("{s:i, s:I, s:I}", "partition", w->parts[i].partition,
                                        "start_offset", (json_int_t)w->parts[i].start, "end_offset",
                                        (json_int_t)w->parts[i].end));
    json_t *undecodable = json_object();
    for (int c = 1; c < PR_DLQ_COUNT; c++)
        if (w->undecodable[c])
            json_object_set_new(undecodable, pr_dlq_names[c],
                                json_integer((json_int_t)w->undecodable[c]));
    json_t *input = json_pack("{s:s, s:o, s:I, s:I, s:o, s:I}", "topic", w->cfg->topic_declarations,
                              "partitions", parts, "messages_read", (json_int_t)w->read,
                              "out_of_window", (json_int_t)w->out_of_window, "undecodable",
                              undecodable, "decided", (json_int_t)w->decided);
    json_t *counts = json_object(), *shares = json_object();
    for (int a = 0; a < 4; a++) {
        json_t *row = json_object(), *srow = json_object();
        for (int b = 0; b < 4; b++) {
            json_object_set_new(row, pr_lane_names[b], json_integer((json_int_t)w->matrix[a][b]));
            json_object_set_new(srow, pr_lane_names[b],
                                json_real(pr_share(w->matrix[a][b], w->decided)));
        }
        json_object_set_new(counts, pr_lane_names[a], row);
        json_object_set_new(shares, pr_lane_names[a], srow);
    }
    json_t *reasons = json_object();
    for (int c = 0; c < PR_R_COUNT; c++)
        json_object_set_new(reasons, pr_reason_names[c],
                            json_pack("{s:I, s:I, s:I}", "baseline", (json_int_t)w->reasons[0][c],
                                      "candidate", (json_int_t)w->reasons[1][c], "change",
                                      (json_int_t)w->reasons[1][c] - (json_int_t)w->reasons[0][c]));
    json_t *root = json_object();
    json_object_set_new(root, "window", window);
    json_object_set_new(root, "input", input);
    json_object_set_new(root, "refdata",
                        json_pack("{s:s, s:s, s:I, s:I, s:I}", "version", w->snapshot->version,
                                  "manifest", w->snapshot->manifest, "hts_rows",
                                  (json_int_t)w->snapshot->hts_rows, "violator_keys",
                                  (json_int_t)w->snapshot->violator_keys, "country_rows",
                                  (json_int_t)w->snapshot->country_rows));
    json_object_set_new(root, "baseline", pr_whatif_side_json(w, 0));
    json_object_set_new(root, "candidate", pr_whatif_side_json(w, 1));
    json_object_set_new(root, "lane_transitions",
                        json_pack("{s:s, s:o, s:o}", "rows",
                                  "baseline lane; columns: candidate lane", "counts", counts,
                                  "shares", shares));
    json_object_set_new(
        root, "changed",
        json_pack("{s:I, s:s}", "count", (json_int_t)w->changed, "file", "changed.jsonl"));
    json_object_set_new(root, "reasons", reasons);
    json_object_set_new(root, "by_day", pr_whatif_buckets_json(&w->days, "day"));
    json_object_set_new(root, "by_port", pr_whatif_buckets_json(&w->ports, "port_of_entry"));
    json_object_set_new(root, "by_port_overflowed", json_boolean(w->ports.overflowed));
    return root;
}

/* A table cell: '|' and line breaks would break the table. */
static void pr_md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

static void pr_md_reasons(FILE *f, uint32_t fired) {
    bool first = true;
    for (int c = 0; c < PR_R_COUNT; c++)
        if ((fired >> c) & 1u) {
            fprintf(f, "%s%s", first ? "" : ", ", pr_reason_names[c]);
            first = false;
        }
    if (first) fputs("-", f);
}

static long long pr_delta(uint64_t after, uint64_t before) {
    return (long long)after - (long long)before;
}

static int pr_whatif_report_md(struct pr_whatif *w, const char *path, bool charts) {
    FILE *f = fopen(path, "w");
    if (!f) {
        pr_error("whatif: cannot write %s: %s", path, strerror(errno));
        return PR_ERR;
    }
    char from[32], to[32];
    pr_format_utc(w->o->from_ms, from, sizeof(from));
    pr_format_utc(w->o->to_ms, to, sizeof(to));
    fprintf(f, "# What-if report\n\n");
    fprintf(f, "- Window: %s in [%s, %s), topic `%s`\n",
            w->o->by_timestamp ? "Kafka timestamp" : "arrival_time", from, to,
            w->cfg->topic_declarations);
    uint64_t undecodable = 0;
    for (int c = 1; c < PR_DLQ_COUNT; c++) undecodable += w->undecodable[c];
    fprintf(f,
            "- Declarations decided: %llu (messages read %llu, outside the window %llu, "
            "undecodable %llu",
            (unsigned long long)w->decided, (unsigned long long)w->read,
            (unsigned long long)w->out_of_window, (unsigned long long)undecodable);
    for (int c = 1; c < PR_DLQ_COUNT; c++)
        if (w->undecodable[c])
            fprintf(f, "; %s %llu", pr_dlq_names[c], (unsigned long long)w->undecodable[c]);
    fprintf(f, ")\n");
    fprintf(f,
            "- Reference data version: `%s` (%llu HTS rows, %llu violator keys, %llu countries)\n",
            w->snapshot->version, (unsigned long long)w->snapshot->hts_rows,
            (unsigned long long)w->snapshot->violator_keys,
            (unsigned long long)w->snapshot->country_rows);
    for (int s = 0; s < 2; s++) {
        const struct pr_whatif_side *side = &w->sides[s];
        fprintf(f, "- %s: ruleset `%s` (rules %s, policy %s)\n", s ? "Candidate" : "Baseline",
                pr_rules_version(side->rules),
                side->rules_path && side->rules_path[0] ? side->rules_path : "shipped defaults",
                side->policy_path && side->policy_path[0] ? side->policy_path : "shipped defaults");
    }
    fprintf(f, "- Lane changed: %llu declarations (%.2f%%), all in `changed.jsonl`\n\n",
            (unsigned long long)w->changed,
            w->decided ? 100.0 * (double)w->changed / (double)w->decided : 0.0);

    fprintf(f, "## Lane transitions\n\nRows: baseline lane; columns: candidate lane; count (share "
               "of all decided).\n\n");
    fprintf(f, "| baseline \\ candidate | GREEN | BLUE | YELLOW | RED | total "
               "|\n|---|---:|---:|---:|---:|---:|\n");
    for (int a = 0; a < 4; a++) {
        fprintf(f, "| **%s** |", pr_lane_names[a]);
        for (int b = 0; b < 4; b++)
            fprintf(f, " %llu (%.2f%%) |", (unsigned long long)w->matrix[a][b],
                    w->decided ? 100.0 * (double)w->matrix[a][b] / (double)w->decided : 0.0);
        fprintf(f, " %llu |\n", (unsigned long long)w->lanes[0][a]);
    }
    fprintf(f, "| **total** |");
    for (int b = 0; b < 4; b++) fprintf(f, " %llu |", (unsigned long long)w->lanes[1][b]);
    fprintf(f, " %llu |\n\n", (unsigned long long)w->decided);

    fprintf(f, "## Officer workload per arrival day\n\n");
    if (charts) fprintf(f, "![YELLOW and RED per day](workload_by_day.png)\n\n");
    fprintf(f, "| day | declarations | YELLOW before | YELLOW after | change | RED before | RED "
               "after | change |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < w->days.count; i++) {
        const struct pr_whatif_bucket *b = &w->days.items[i];
        fprintf(f, "| %s | %llu | %llu | %llu | %+lld | %llu | %llu | %+lld |\n", b->key,
                (unsigned long long)b->count, (unsigned long long)b->lanes[0][2],
                (unsigned long long)b->lanes[1][2], pr_delta(b->lanes[1][2], b->lanes[0][2]),
                (unsigned long long)b->lanes[0][3], (unsigned long long)b->lanes[1][3],
                pr_delta(b->lanes[1][3], b->lanes[0][3]));
    }
    fprintf(f, "\n## Officer workload per port of entry\n\n");
    fprintf(f, "| port | declarations | YELLOW before | YELLOW after | change | RED before | RED "
               "after | change |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < w->ports.count; i++) {
        const struct pr_whatif_bucket *b = &w->ports.items[i];
        fputs("| ", f);
        pr_md_cell(f, b->key);
        fprintf(f, " | %llu | %llu | %llu | %+lld | %llu | %llu | %+lld |\n",
                (unsigned long long)b->count, (unsigned long long)b->lanes[0][2],
                (unsigned long long)b->lanes[1][2], pr_delta(b->lanes[1][2], b->lanes[0][2]),
                (unsigned long long)b->lanes[0][3], (unsigned long long)b->lanes[1][3],
                pr_delta(b->lanes[1][3], b->lanes[0][3]));
    }
    fprintf(f, "\n## Reasons fired\n\n");
    if (charts) fprintf(f, "![Reasons before and after](reasons.png)\n\n");
    fprintf(f, "| reason | before | after | change |\n|---|---:|---:|---:|\n");
    for (int c = 0; c < PR_R_COUNT; c++)
        fprintf(f, "| %s | %llu | %llu | %+lld |\n", pr_reason_names[c],
                (unsigned long long)w->reasons[0][c], (unsigned long long)w->reasons[1][c],
                pr_delta(w->reasons[1][c], w->reasons[0][c]));
    fprintf(f, "\n## Declarations whose lane changed\n\n");
    if (w->changed > w->listed_count)
        fprintf(f, "The first %zu of %llu in replay order; every one is in `changed.jsonl`.\n\n",
                w->listed_count, (unsigned long long)w->changed);
    else
        fprintf(f, "%llu (also in `changed.jsonl`).\n\n", (unsigned long long)w->changed);
    if (w->listed_count) {
        fprintf(
            f, "| declaration_id | house_bill | before | after | reasons before | reasons after |\n"
               "|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < w->listed_count; i++) {
            const struct pr_whatif_listed *l = &w->listed[i];
            fputs("| ", f);
            pr_md_cell(f, l->id);
            fputs(" | ", f);
            pr_md_cell(f, l->house_bill);
            fprintf(f, " | %s (%d) | %s (%d) | ", pr_lane_names[l->lane[0]], l->score[0],
                    pr_lane_names[l->lane[1]], l->score[1]);
            pr_md_reasons(f, l->fired[0]);
            fputs(" | ", f);
            pr_md_reasons(f, l->fired[1]);
            fputs(" |\n", f);
        }
    }
    bool ok = ferror(f) == 0;
    if (fclose(f) != 0) ok = false;
    if (!ok) pr_error("whatif: cannot write %s", path);
    return ok ? PR_OK : PR_ERR;
}

/* Charts with gnuplot (Debian gnuplot-nox, installed by ops/setup): data
 * files and a script in DIR, PNGs beside them. Returns true when drawn. */
static bool pr_whatif_charts(struct pr_whatif *w, const char *dir) {
    char *data = pr_whatif_path(dir, "charts.dat");
    char *script = pr_whatif_path(dir, "charts.gp");
    FILE *f = fopen(data, "w");
    bool ok = f != NULL;
    if (f) {
        fprintf(f, "# day yellow_before yellow_after red_before red_after\n");
        for (size_t i = 0; i < w->days.count; i++) {
            const struct pr_whatif_bucket *b = &w->days.items[i];
            fprintf(f, "%s %llu %llu %llu %llu\n", b->key, (unsigned long long)b->lanes[0][2],
                    (unsigned long long)b->lanes[1][2], (unsigned long long)b->lanes[0][3],
                    (unsigned long long)b->lanes[1][3]);
        }
        fprintf(f, "\n\n# reason before after\n");
        for (int c = 0; c < PR_R_COUNT; c++)
            fprintf(f, "%s %llu %llu\n", pr_reason_names[c], (unsigned long long)w->reasons[0][c],
                    (unsigned long long)w->reasons[1][c]);
        ok = fclose(f) == 0;
    }
    f = ok ? fopen(script, "w") : NULL;
    if (f) {
        fprintf(
            f,
            "set terminal pngcairo size 1000,520 font 'sans,10'\n"
            "set style data histograms\nset style histogram clustered gap 1\nset style fill solid "
            "0.8 border -1\n"
            "set boxwidth 0.9\nset grid ytics\nset key outside right top\nset xtics rotate by -45 "
            "scale 0\n"
            "set output 'workload_by_day.png'\n"
            "set title 'Officer workload per arrival day: YELLOW (document check) and RED (exam)'\n"
            "plot 'charts.dat' index 0 using 2:xtic(1) title 'YELLOW before', '' index 0 using 3 "
            "title "
            "'YELLOW after', '' index 0 using 4 title 'RED before', '' index 0 using 5 title 'RED "
            "after'\n"
            "set output 'reasons.png'\nset title 'Declarations per reason code, before and after'\n"
            "plot 'charts.dat' index 1 using 2:xtic(1) title 'before', '' index 1 using 3 title "
            "'after'\n");
        ok = fclose(f) == 0;
    } else {
        ok = false;
    }
    free(data);
    free(script);
    if (!ok) return false;
    pid_t pid;
    char gp[] = "gnuplot", arg[] = "charts.gp";
    char *argv[] = {gp, arg, NULL};
    /* gnuplot runs in DIR (the script names the files relative to it); this
     * process's own directory is not changed (other threads are running). */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    bool drawn =
        rc == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!drawn) pr_warn("whatif: no charts (gnuplot %s)", rc ? "is not installed" : "failed");
    return drawn;
}

static int pr_whatif_write(struct pr_whatif *w, double wall, double cpu) {
    const char *dir = w->o->out_dir;
    json_t *report = pr_whatif_report_json(w);
    char *path = pr_whatif_path(dir, "report.json");
    int rc =
        json_dump_file(report, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6)) == 0
            ? PR_OK
            : PR_ERR;
    if (rc != PR_OK) pr_error("whatif: cannot write %s", path);
    json_decref(report);
    free(path);
    bool charts = rc == PR_OK && w->o->charts && pr_whatif_charts(w, dir);
    path = pr_whatif_path(dir, "report.md");
    if (rc == PR_OK) rc = pr_whatif_report_md(w, path, charts);
    free(path);
    struct pr_state_stats st[2];
    pr_state_get_stats(w->sides[0].state, &st[0]);
    pr_state_get_stats(w->sides[1].state, &st[1]);
    json_t *stages = json_pack(
        "{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "reader_thread", (double)w->reader_us / 1e6,
        "wait_for_reader", (double)w->read_us / 1e6, "decode_enrich", (double)w->shared_us / 1e6,
        "baseline", (double)w->sides[0].busy_us / 1e6, "candidate",
        (double)w->sides[1].busy_us / 1e6, "wait_for_other_thread", (double)w->wait_us / 1e6,
        "compare", (double)w->compare_us / 1e6);
    json_t *run = json_pack(
        "{s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:I, s:I, s:I, s:b, s:o}", "wall_seconds", wall,
        "cpu_seconds", cpu, "messages_per_second", wall > 0 ? (double)w->read / wall : 0.0,
        "decided_per_second", wall > 0 ? (double)w->decided / wall : 0.0, "messages_read",
        (json_int_t)w->read, "decided", (json_int_t)w->decided, "snapshot_seconds",
        w->snapshot_seconds, "snapshot_bytes", (json_int_t)w->snapshot->bytes,
        "state_bytes_baseline", (json_int_t)st[0].bytes, "state_bytes_candidate",
        (json_int_t)st[1].bytes, "charts", charts, "stage_seconds", stages);
    path = pr_whatif_path(dir, "run.json");
    if (rc == PR_OK && json_dump_file(run, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        pr_error("whatif: cannot write %s", path);
        rc = PR_ERR;
    }
    json_decref(run);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- reader */

/* The reader thread fills a step's messages (merged, in the window by
 * timestamp) into one of two slots while the main thread decides the
 * other, so reading overlaps deciding. */
struct pr_whatif_slot {
    rd_kafka_message_t **messages;
    size_t count;
    int64_t newest; /* newest Kafka timestamp of the slot: the state's clock */
    bool full;      /* filled, not yet given back by the main thread */
    bool last;      /* nothing after it */
};

struct pr_whatif_reader {
    struct pr_whatif *w;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct pr_whatif_slot slots[2];
    bool stop, failed;
    uint64_t out_of_window; /* by timestamp */
    uint64_t busy_us;
};

static void *pr_whatif_reader_main(void *arg) {
    struct pr_whatif_reader *r = arg;
    struct pr_whatif *w = r->w;
    for (size_t k = 0;; k ^= 1) {
        struct pr_whatif_slot *slot = &r->slots[k];
        pthread_mutex_lock(&r->lock);
        while (slot->full && !r->stop) pthread_cond_wait(&r->changed, &r->lock);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop) return NULL;
        int64_t t0 = pr_monotonic_us();
        bool failed = false, ended = false;
        slot->count = 0;
        slot->newest = INT64_MIN;
        while (slot->count < w->o->batch_size) {
            rd_kafka_message_t *m = pr_whatif_next(w, &failed);
            if (!m) {
                ended = true;
                break;
            }
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            if (w->o->by_timestamp && (ts < w->o->from_ms || ts >= w->o->to_ms)) {
                r->out_of_window++;
                rd_kafka_message_destroy(m);
                continue;
            }
            if (ts > slot->newest) slot->newest = ts;
            slot->messages[slot->count++] = m;
        }
        r->busy_us += (uint64_t)(pr_monotonic_us() - t0);
        pthread_mutex_lock(&r->lock);
        slot->full = true;
        slot->last = ended || failed;
        r->failed = failed;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        if (ended || failed) return NULL;
    }
}

/* ------------------------------------------------------------------ run */

int pr_whatif_run(const struct pr_config *cfg, const struct pr_whatif_options *o) {
    struct pr_whatif w = {.cfg = cfg, .o = o};
    int status = 1;
    w.sides[0].rules_path = o->baseline_rules_path ? o->baseline_rules_path : cfg->rules_file;
    w.sides[0].policy_path = o->baseline_policy_path ? o->baseline_policy_path : cfg->policy_file;
    w.sides[1].rules_path = o->rules_path ? o->rules_path : w.sides[0].rules_path;
    w.sides[1].policy_path = o->policy_path ? o->policy_path : w.sides[0].policy_path;
    rd_kafka_message_t **messages = pr_malloc(o->batch_size * sizeof(*messages));

    for (int s = 0; s < 2; s++) {
        int rc = pr_whatif_side_init(&w, &w.sides[s], s);
        if (rc) {
            status = rc;
            goto out;
        }
        w.sides[s].shared[0] = &w.halves[0].batch;
        w.sides[s].shared[1] = &w.halves[1].batch;
    }
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST) {
        pr_error("whatif: cannot create %s: %s", o->out_dir, strerror(errno));
        goto out;
    }
    int64_t t0 = pr_monotonic_us();
    char err[512];
    w.snapshot = pr_refdata_snapshot_load(
        cfg->redis_address, cfg->redis_user, cfg->redis_password,
        cfg->redis_timeout_ms > 30000 ? cfg->redis_timeout_ms : 30000, err, sizeof(err));
    if (!w.snapshot) {
        pr_error("whatif: %s", err);
        goto out;
    }
    w.snapshot_seconds = (double)(pr_monotonic_us() - t0) / 1e6;
    pr_info("whatif: reference data version %s in memory (%llu HTS rows, %llu violator keys, %llu "
            "countries, "
            "%.1f MB, %.2f s)",
            w.snapshot->version, (unsigned long long)w.snapshot->hts_rows,
            (unsigned long long)w.snapshot->violator_keys,
            (unsigned long long)w.snapshot->country_rows, (double)w.snapshot->bytes / 1e6,
            w.snapshot_seconds);
    struct pr_operator_env env = {.cfg = cfg, .refdata = w.snapshot};
    for (int h = 0; h < 2; h++) {
        w.halves[h].w = &w;
        if (pr_chain_init_env(&w.halves[h].shared, pr_whatif_shared_chain,
                              PR_ARRAY_LEN(pr_whatif_shared_chain), &env) != PR_OK)
            goto out;
        pr_batch_init(&w.halves[h].batch, o->batch_size);
    }
    char *changed_path = pr_whatif_path(o->out_dir, "changed.jsonl");
    w.changed_file = fopen(changed_path, "w");
    if (!w.changed_file) pr_error("whatif: cannot write %s: %s", changed_path, strerror(errno));
    free(changed_path);
    if (!w.changed_file) goto out;
    if (o->all_path) {
        w.all_file = fopen(o->all_path, "w");
        if (!w.all_file) {
            pr_error("whatif: cannot write %s: %s", o->all_path, strerror(errno));
            goto out;
        }
    }
    w.listed = pr_calloc((size_t)(o->listed_max > 0 ? o->listed_max : 1), sizeof(*w.listed));
    pr_buf_init(&w.line);
    if (pr_whatif_open(&w) != PR_OK) goto out;
    pr_info("whatif: %llu messages to read from %d partitions of %s", (unsigned long long)w.to_read,
            w.part_count, cfg->topic_declarations);

    w.started_us = pr_monotonic_us();
    double cpu0 = pr_cpu_seconds();
    bool failed = false;
    struct pr_whatif_reader reader = {.w = &w};
    pthread_mutex_init(&reader.lock, NULL);
    pthread_cond_init(&reader.changed, NULL);
    reader.slots[0].messages = messages;
    reader.slots[1].messages = pr_malloc(o->batch_size * sizeof(*messages));
    pthread_t reader_thread;
    bool reading = pthread_create(&reader_thread, NULL, pr_whatif_reader_main, &reader) == 0;
    if (!reading) {
        pr_error("whatif: cannot start the reader thread");
        failed = true;
    }
    for (size_t k = 0; reading;) {
        struct pr_whatif_slot *slot = &reader.slots[k];
        int64_t t_read = pr_monotonic_us();
        pthread_mutex_lock(&reader.lock);
        while (!slot->full) pthread_cond_wait(&reader.changed, &reader.lock);
        pthread_mutex_unlock(&reader.lock);
        int64_t t_shared = pr_monotonic_us();
        w.read_us += (uint64_t)(t_shared - t_read); /* waiting for the reader */
        size_t count = slot->count;
        if (count > 0) {
            /* Decode and enrich: the first half here, the second on the other
             * thread; then baseline here, candidate there. */
            size_t first = count / 2;
            for (int h = 0; h < 2; h++) {
                struct pr_whatif_half *half = &w.halves[h];
                half->messages = slot->messages + (h ? first : 0);
                half->count = h ? count - first : first;
                half->now_ms = slot->newest;
            }
            w.wait_us += (uint64_t)pr_whatif_both(pr_whatif_half_step, &w.halves[1], &w.halves[0]);
            int64_t t_sides = pr_monotonic_us();
            w.shared_us += (uint64_t)(t_sides - t_shared);
            for (int h = 0; h < 2; h++) {
                struct pr_whatif_half *half = &w.halves[h];
                if (half->rc != PR_OP_DONE) failed = true;
                for (int c = 0; c < PR_DLQ_COUNT; c++) w.undecodable[c] += half->undecodable[c];
                w.out_of_window += half->out_of_window;
                memset(half->undecodable, 0, sizeof(half->undecodable));
                half->out_of_window = 0;
            }
            if (!failed) {
                w.wait_us +=
                    (uint64_t)pr_whatif_both(pr_whatif_side_step, &w.sides[1], &w.sides[0]);
                int64_t t_compare = pr_monotonic_us();
                if (w.sides[0].rc != PR_OP_DONE || w.sides[1].rc != PR_OP_DONE ||
                    pr_whatif_compare(&w) != PR_OK)
                    failed = true;
                w.compare_us += (uint64_t)(pr_monotonic_us() - t_compare);
            }
        }
        for (size_t i = 0; i < slot->count; i++) rd_kafka_message_destroy(slot->messages[i]);
        bool last = slot->last;
        pthread_mutex_lock(&reader.lock);
        slot->count = 0;
        slot->full = false;
        pthread_cond_broadcast(&reader.changed);
        pthread_mutex_unlock(&reader.lock);
        if (last || failed) break;
        pr_whatif_progress(&w, false);
        k ^= 1;
    }
    if (reading) {
        pthread_mutex_lock(&reader.lock);
        reader.stop = true;
        pthread_cond_broadcast(&reader.changed);
        pthread_mutex_unlock(&reader.lock);
        pthread_join(reader_thread, NULL);
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < reader.slots[k].count && reader.slots[k].full; i++)
                rd_kafka_message_destroy(reader.slots[k].messages[i]);
        }
        if (reader.failed) failed = true;
        w.out_of_window += reader.out_of_window;
        w.reader_us = reader.busy_us;
    }
    free(reader.slots[1].messages);
    pthread_mutex_destroy(&reader.lock);
    pthread_cond_destroy(&reader.changed);
    double wall = (double)(pr_monotonic_us() - w.started_us) / 1e6, cpu = pr_cpu_seconds() - cpu0;
    pr_whatif_progress(&w, true);
    if (fclose(w.changed_file) != 0) {
        pr_error("whatif: cannot write changed.jsonl: %s", strerror(errno));
        failed = true;
    }
    w.changed_file = NULL;
    if (w.all_file && fclose(w.all_file) != 0) {
        pr_error("whatif: cannot write %s: %s", o->all_path, strerror(errno));
        failed = true;
    }
    w.all_file = NULL;
    if (failed) goto out;
    if (pr_whatif_write(&w, wall, cpu) != PR_OK) goto out;
    pr_info("whatif: %llu decided in %.1f s (%.0f messages/s, %.2f us CPU each), %llu changed "
            "lane; report in %s",
            (unsigned long long)w.decided, wall, wall > 0 ? (double)w.read / wall : 0.0,
            w.read ? cpu * 1e6 / (double)w.read : 0.0, (unsigned long long)w.changed, o->out_dir);
    status = 0;
out:
    free(messages);
    if (w.changed_file) fclose(w.changed_file);
    if (w.all_file) fclose(w.all_file);
    for (int s = 0; s < 2; s++) pr_whatif_side_free(&w.sides[s]);
    for (int h = 0; h < 2; h++) {
        pr_chain_destroy(&w.halves[h].shared);
        if (w.halves[h].batch.records) pr_batch_destroy(&w.halves[h].batch);
    }
    pr_whatif_close(&w);
    pr_refdata_snapshot_free(w.snapshot);
    for (size_t i = 0; i < w.listed_count; i++) {
        free(w.listed[i].id);
        free(w.listed[i].house_bill);
    }
    free(w.listed);
    pr_buf_free(&w.line);
    pr_whatif_map_free(&w.days);
    pr_whatif_map_free(&w.ports);
    return status;
}
