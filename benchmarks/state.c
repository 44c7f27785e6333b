/*
 * state.c - the in-process one-person-one-day store (pipeline/domain/state.c)
 * with and without its changelog journal, and its restore (issue 12).
 *
 *   pr_state_bench [--count N] [--rounds R]
 *
 * Prints, for N distinct consignee-days of one declaration each (keys of
 * the aggregate operator's shape: 32 digest bytes and the day, 42 bytes; a
 * 16-byte declaration id; a 12-byte house bill):
 *   - memory held: pr_state_get_stats bytes per consignee-day;
 *   - CPU ns per pr_state_day_count without a journal and with one that
 *     copies each record into an in-memory log (what a producer's copy
 *     costs at least), and the changelog bytes per declaration;
 *   - the same for pr_state_address_count (N declarations over N/4
 *     address-days, 16-byte name digests);
 *   - CPU time to restore the N consignee-days from their records in memory,
 *     and the N/4 address-days from theirs.
 * Each timing is the fastest of R rounds (default 3), CPU time of this
 * process (the machines are shared). Nothing is asserted: it prints.
 *
 * Why a bench of its own: the journal sits on the hot path of every
 * declaration, and its off state must cost nothing; restore time bounds how
 * long a partition assignment waits before its first record is processed.
 *
 * Compiled with -DPR_STATE_BENCH_PLAIN_ONLY it runs only the journal-less
 * counts, so that it links against a state.c from before the journal (for
 * the before/after instruction counts in benchmarks/README.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "state.h"

#define PR_BENCH_THRESHOLD 80000

struct pr_bench_input {
    char *keys;  /* count x 42 */
    char *ids;   /* count x 16 */
    char *bills; /* count x 12 */
    char *names; /* count x 16 */
    size_t count;
};

static double pr_bench_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t pr_bench_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void pr_bench_prepare(struct pr_bench_input *in, size_t count) {
    in->count = count;
    in->keys = pr_malloc(count * 42);
    in->ids = pr_malloc(count * 16);
    in->bills = pr_malloc(count * 12);
    in->names = pr_malloc(count * 16);
    uint64_t seed = 42;
    for (size_t i = 0; i < count; i++) {
        char *k = in->keys + i * 42;
        for (int w = 0; w < 4; w++) {
            uint64_t r = pr_bench_rand(&seed);
            memcpy(k + 8 * w, &r, 8);
        }
        memcpy(k + 32, "2025-05-01", 10);
        char text[48];
        snprintf(text, sizeof(text), "D%015zu", i);
        memcpy(in->ids + i * 16, text, 16);
        snprintf(text, sizeof(text), "HB%010zu", i);
        memcpy(in->bills + i * 12, text, 12);
        for (int w = 0; w < 2; w++) {
            uint64_t r = pr_bench_rand(&seed);
            memcpy(in->names + i * 16 + 8 * w, &r, 8);
        }
    }
}

static struct pr_str pr_bench_at(const char *base, size_t size, size_t i) {
    return (struct pr_str){base + i * size, (uint32_t)size};
}

static const int64_t pr_bench_now = 1746057600000LL; /* 2025-05-01, ms */

/* N consignee-days of one declaration each into a fresh store; CPU seconds. */
static double pr_bench_days(const struct pr_bench_input *in, struct pr_state *st) {
    double t0 = pr_bench_cpu();
    struct pr_state_day out;
    for (size_t i = 0; i < in->count; i++) {
        int64_t value = (int64_t)(i % 70000);
        pr_state_day_count(st, pr_bench_at(in->keys, 42, i), pr_bench_at(in->ids, 16, i), value,
                           false, true, PR_BENCH_THRESHOLD, pr_bench_at(in->bills, 12, i),
                           pr_bench_now + (int64_t)(i / 1000), &out);
    }
    return pr_bench_cpu() - t0;
}

/* N declarations over N/4 address-days (the first 26 key bytes as the
 * address key), one name each; CPU seconds. */
static double pr_bench_addresses(const struct pr_bench_input *in, struct pr_state *st) {
    double t0 = pr_bench_cpu();
    size_t keys = in->count / 4 ? in->count / 4 : 1;
    for (size_t i = 0; i < in->count; i++)
        pr_state_address_count(st, pr_bench_at(in->keys, 42, i % keys), pr_bench_at(in->ids, 16, i),
                               pr_bench_at(in->names, 16, i), pr_bench_now + (int64_t)(i / 1000));
    return pr_bench_cpu() - t0;
}

#ifndef PR_STATE_BENCH_PLAIN_ONLY
/* The changelog in memory: records one after another, each as key length,
 * value length (UINT32_MAX: tombstone), key, value. */
struct pr_bench_log {
    struct pr_buf data;
    size_t records;
    size_t key_bytes, value_bytes;
};

static void pr_bench_log_write(void *ctx, struct pr_str key, struct pr_str value) {
    struct pr_bench_log *log = ctx;
    uint32_t lens[2] = {key.len, value.ptr ? value.len : UINT32_MAX};
    pr_buf_append(&log->data, lens, sizeof(lens));
    pr_buf_append(&log->data, key.ptr, key.len);
    if (value.ptr) pr_buf_append(&log->data, value.ptr, value.len);
    log->records++;
    log->key_bytes += key.len;
    log->value_bytes += value.len;
}

/* Restores every record of log into st; CPU seconds, or -1 on a refusal. */
static double pr_bench_restore(const struct pr_bench_log *log, struct pr_state *st) {
    double t0 = pr_bench_cpu();
    const uint8_t *p = log->data.data, *end = p + log->data.len;
    while (p < end) {
        uint32_t lens[2];
        memcpy(lens, p, sizeof(lens));
        p += sizeof(lens);
        struct pr_str key = {(const char *)p, lens[0]};
        p += lens[0];
        struct pr_str value = {NULL, 0};
        if (lens[1] != UINT32_MAX) {
            value = (struct pr_str){(const char *)p, lens[1]};
            p += lens[1];
        }
        if (pr_state_restore(st, key, value) != 0) return -1;
    }
    return pr_bench_cpu() - t0;
}

/* The journaled address-day counts and the address-day restore under names
 * of their own, for callgrind's --toggle-collect (the plain counts and the
 * consignee-day restore run the same functions). */
static __attribute__((noinline)) double
pr_bench_addresses_journaled(const struct pr_bench_input *in, struct pr_state *st) {
    return pr_bench_addresses(in, st);
}

static __attribute__((noinline)) double pr_bench_restore_addresses(const struct pr_bench_log *log,
                                                                   struct pr_state *st) {
    return pr_bench_restore(log, st);
}
#endif

static double pr_min(double a, double b) {
    return a < b ? a : b;
}

int main(int argc, char **argv) {
    size_t count = 1000000;
    int rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: pr_state_bench [--count N] [--rounds R]\n");
            return 2;
        }
    }
    if (count == 0 || rounds < 1) {
        fprintf(stderr, "pr_state_bench: --count and --rounds must be at least 1\n");
        return 2;
    }
    struct pr_bench_input in;
    pr_bench_prepare(&in, count);
    struct pr_state_options options = {.ttl_ms = 72LL * 3600 * 1000,
                                       .total_cap = PR_STATE_SCRIPT_TOTAL_CAP};
    double plain = 1e9, plain_addr = 1e9;
    struct pr_state_stats stats = {0};
    for (int r = 0; r < rounds; r++) {
        struct pr_state *st = pr_state_new(&options);
        plain = pr_min(plain, pr_bench_days(&in, st));
        pr_state_get_stats(st, &stats);
        pr_state_free(st);
        st = pr_state_new(&options);
        plain_addr = pr_min(plain_addr, pr_bench_addresses(&in, st));
        pr_state_free(st);
    }
    printf("consignee-days: %zu, one declaration each (42-byte key, 16-byte id, 12-byte bill)\n",
           count);
    printf("memory: %zu bytes held, %.1f bytes per consignee-day (keys %zu, members %zu)\n",
           stats.bytes, (double)stats.bytes / (double)stats.keys, stats.keys, stats.members);
    printf("pr_state_day_count, no journal:      %.1f ns CPU per call\n", plain * 1e9 / count);
#ifndef PR_STATE_BENCH_PLAIN_ONLY
    double journaled = 1e9, journaled_addr = 1e9, restore = 1e9, restore_addr = 1e9;
    struct pr_bench_log day_log = {0}, addr_log = {0};
    pr_buf_init(&day_log.data);
    pr_buf_init(&addr_log.data);
    struct pr_state_stats restored = {0}, restored_addr = {0}, original_addr = {0};
    for (int r = 0; r < rounds; r++) {
        /* The log's growth and first touch of its pages are not the
         * store's cost: reserved and written over beforehand. */
        pr_buf_reset(&day_log.data);
        day_log.records = day_log.key_bytes = day_log.value_bytes = 0;
        pr_buf_reserve(&day_log.data, count * 96);
        memset(day_log.data.data, 0, day_log.data.cap);
        struct pr_state *st = pr_state_new(&options);
        struct pr_state_journal journal = {pr_bench_log_write, &day_log};
        pr_state_set_journal(st, &journal);
        journaled = pr_min(journaled, pr_bench_days(&in, st));
        pr_state_free(st);

        pr_buf_reset(&addr_log.data);
        addr_log.records = addr_log.key_bytes = addr_log.value_bytes = 0;
        pr_buf_reserve(&addr_log.data, count * 128);
        memset(addr_log.data.data, 0, addr_log.data.cap);
        st = pr_state_new(&options);
        journal.ctx = &addr_log;
        pr_state_set_journal(st, &journal);
        journaled_addr = pr_min(journaled_addr, pr_bench_addresses_journaled(&in, st));
        pr_state_get_stats(st, &original_addr);
        pr_state_free(st);

        st = pr_state_new(&options);
        double t = pr_bench_restore(&day_log, st);
        if (t < 0) {
            fprintf(stderr, "pr_state_bench: restore refused a record the store wrote\n");
            return 1;
        }
        restore = pr_min(restore, t);
        pr_state_get_stats(st, &restored);
        pr_state_free(st);

        st = pr_state_new(&options);
        t = pr_bench_restore_addresses(&addr_log, st);
        if (t < 0) {
            fprintf(stderr, "pr_state_bench: restore refused an address-day record the store "
                            "wrote\n");
            return 1;
        }
        restore_addr = pr_min(restore_addr, t);
        pr_state_get_stats(st, &restored_addr);
        pr_state_free(st);
    }
    printf("pr_state_day_count, journal to memory: %.1f ns CPU per call (+%.1f); %.1f bytes per "
           "record (key %.1f, value %.1f), %zu records\n",
           journaled * 1e9 / count, (journaled - plain) * 1e9 / count,
           (double)(day_log.key_bytes + day_log.value_bytes) / (double)day_log.records,
           (double)day_log.key_bytes / (double)day_log.records,
           (double)day_log.value_bytes / (double)day_log.records, day_log.records);
    printf("restore %zu consignee-days from %zu records in memory: %.3f s CPU (%.0f ns per "
           "record); restored keys %zu, members %zu, %zu bytes\n",
           count, day_log.records, restore, restore * 1e9 / (double)day_log.records, restored.keys,
           restored.members, restored.bytes);
#endif
    printf("pr_state_address_count (%zu declarations over %zu address-days), no journal: %.1f ns "
           "CPU per call\n",
           count, count / 4 ? count / 4 : 1, plain_addr * 1e9 / count);
#ifndef PR_STATE_BENCH_PLAIN_ONLY
    printf("pr_state_address_count, journal to memory: %.1f ns CPU per call (+%.1f); %.2f records "
           "per call, %.1f bytes per record\n",
           journaled_addr * 1e9 / count, (journaled_addr - plain_addr) * 1e9 / count,
           (double)addr_log.records / (double)count,
           (double)(addr_log.key_bytes + addr_log.value_bytes) / (double)addr_log.records);
    printf("pr_state_address_count changelog: %.1f bytes per declaration (key %.1f, value %.1f)\n",
           (double)(addr_log.key_bytes + addr_log.value_bytes) / (double)count,
           (double)addr_log.key_bytes / (double)count,
           (double)addr_log.value_bytes / (double)count);
    printf("restore %zu address-days from %zu records in memory: %.3f s CPU (%.0f ns per "
           "declaration); restored keys %zu, members %zu, %zu bytes (original: keys %zu, members "
           "%zu, %zu bytes)\n",
           count / 4 ? count / 4 : 1, addr_log.records, restore_addr,
           restore_addr * 1e9 / (double)count, restored_addr.keys, restored_addr.members,
           restored_addr.bytes, original_addr.keys, original_addr.members, original_addr.bytes);
    pr_buf_free(&day_log.data);
    pr_buf_free(&addr_log.data);
#endif
    free(in.keys);
    free(in.ids);
    free(in.bills);
    free(in.names);
    return 0;
}
