#include "record-t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pr_reason_names[PR_R_COUNT] = {
    "DE_MINIMIS_SUSPENDED",     "VALUE_OVER_THRESHOLD",
    "AGGREGATE_OVER_THRESHOLD", "SPLIT_SHIPMENT",
    "EXCLUDED_GOODS",           "PGA_REGULATED",
    "KNOWN_VIOLATOR",           "HTS_INVALID",
    "WATCHED_COMMODITY",        "UNDERVALUED",
    "VAGUE_DESCRIPTION",        "MISSING_DATA",
    "FREIGHT_VALUE_MISMATCH",   "HIGH_RISK_ORIGIN",
    "ADDRESS_CLUSTER",          "DATE_IMPLAUSIBLE",
    "RANDOM_COMPLIANCE",
};

const char *const pr_party_kind_names[PR_PARTY_COUNT] = {"SHIPPER", "SELLER", "CONSIGNEE",
                                                         "ADDRESS"};

const char *const pr_lane_names[4] = {"GREEN", "BLUE", "YELLOW", "RED"};

const char *const pr_de_minimis_names[5] = {"ELIGIBLE", "INELIGIBLE_VALUE", "INELIGIBLE_AGGREGATE",
                                            "INELIGIBLE_GOODS", "SUSPENDED"};

const char *const pr_dlq_names[PR_DLQ_COUNT] = {
    "NONE",         "EMPTY",          "TOO_LARGE",  "DECODE_ERROR",   "TRAILING_BYTES",
    "INVALID_UTF8", "UNKNOWN_SCHEMA", "INVALID_ID", "OUTPUT_REJECTED"};

int pr_reason_from_name(const char *name, size_t len) {
    for (int i = 0; i < PR_R_COUNT; i++)
        if (strlen(pr_reason_names[i]) == len && memcmp(pr_reason_names[i], name, len) == 0)
            return i;
    return -1;
}

void pr_batch_init(struct pr_batch *batch, size_t capacity) {
    memset(batch, 0, sizeof(*batch));
    batch->records = pr_calloc(capacity, sizeof(*batch->records));
    batch->capacity = capacity;
    pr_arena_init(&batch->arena, 1 << 20);
}

void pr_batch_reset(struct pr_batch *batch) {
    batch->count = 0;
    batch->degraded = false;
    batch->extra_count = 0;
    pr_arena_reset(&batch->arena);
}

void pr_batch_add_output(struct pr_batch *batch, const void *sink, int32_t partition,
                         struct pr_str key, struct pr_str value) {
    if (batch->extra_count == batch->extra_cap) {
        batch->extra_cap = batch->extra_cap ? batch->extra_cap * 2 : 256;
        batch->extra = pr_realloc(batch->extra, batch->extra_cap * sizeof(*batch->extra));
    }
    struct pr_batch_output *o = &batch->extra[batch->extra_count++];
    o->sink = sink;
    o->partition = partition;
    o->key = (struct pr_str){pr_arena_strndup(&batch->arena, key.ptr, key.len), key.len};
    o->value = value.ptr ? (struct pr_str){pr_arena_strndup(&batch->arena, value.ptr, value.len),
                                           value.len}
                         : (struct pr_str){NULL, 0};
}

void pr_batch_destroy(struct pr_batch *batch) {
    free(batch->records);
    free(batch->extra);
    pr_arena_destroy(&batch->arena);
    memset(batch, 0, sizeof(*batch));
}

struct pr_record *pr_batch_push(struct pr_batch *batch) {
    if (batch->count >= batch->capacity) return NULL;
    struct pr_record *rec = &batch->records[batch->count++];
    /* Only the header fields need clearing; reasons are guarded by fired. */
    memset(rec, 0, offsetof(struct pr_record, reasons));
    memset(&rec->score, 0, sizeof(*rec) - offsetof(struct pr_record, score));
    return rec;
}

void pr_record_dead_letter(struct pr_record *rec, enum pr_dlq_code code, const char *fmt, ...) {
    rec->dlq_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->dlq_detail, sizeof(rec->dlq_detail), fmt, ap);
    va_end(ap);
}

/* Number of evidence items in detail[0..len): separators plus one. */
static uint32_t pr_detail_items(const char *detail, size_t len) {
    if (len == 0) return 0;
    uint32_t items = 1;
    for (size_t i = 0; i + 1 < len; i++)
        if ((detail[i] == ',' || detail[i] == ';') && detail[i + 1] == ' ') items++;
    return items;
}

/* Longest prefix of detail[0..len) that ends at an item boundary and fits
 * room bytes; 0 when even the first item does not fit. */
static size_t pr_detail_cut(const char *detail, size_t len, size_t room) {
    if (len <= room) return len;
    for (size_t i = room; i > 0; i--)
        if ((detail[i - 1] == ',' || detail[i - 1] == ';') && i < len && detail[i] == ' ')
            return i - 1;
    return 0;
}

void pr_record_fire(struct pr_batch *batch, struct pr_record *rec, enum pr_reason_code code,
                    int32_t points, const char *detail, size_t detail_len) {
    struct pr_reason *reason = &rec->reasons[code];
    if (!pr_record_has(rec, code)) {
        rec->fired |= 1u << code;
        reason->points = points;
        reason->omitted = 0;
        size_t keep = pr_detail_cut(detail, detail_len, PR_REASON_DETAIL_MAX);
        if (keep == 0 && detail_len > 0) {
            /* One item longer than the cap: keep its first bytes, whole
             * UTF-8 characters only. */
            keep = (size_t)pr_utf8_prefix(detail, detail_len, PR_REASON_DETAIL_MAX);
            reason->omitted = pr_detail_items(detail, detail_len) - 1;
        } else if (keep < detail_len) {
            reason->omitted = pr_detail_items(detail, detail_len) - pr_detail_items(detail, keep);
        }
        reason->detail = pr_arena_strndup(&batch->arena, detail, keep);
        reason->detail_len = (uint32_t)keep;
        return;
    }
    if (points > reason->points) reason->points = points;
    size_t room = reason->detail_len + 2 < PR_REASON_DETAIL_MAX
                      ? PR_REASON_DETAIL_MAX - reason->detail_len - 2
                      : 0;
    size_t keep = reason->omitted ? 0 : pr_detail_cut(detail, detail_len, room);
    if (keep < detail_len)
        reason->omitted += pr_detail_items(detail, detail_len) - pr_detail_items(detail, keep);
    if (keep == 0) return;
    size_t len = reason->detail_len + 2 + keep;
    char *joined = pr_arena_alloc(&batch->arena, len + 1);
    memcpy(joined, reason->detail, reason->detail_len);
    memcpy(joined + reason->detail_len, "; ", 2);
    memcpy(joined + reason->detail_len + 2, detail, keep);
    joined[len] = '\0';
    reason->detail = joined;
    reason->detail_len = (uint32_t)len;
}

void pr_record_firef(struct pr_batch *batch, struct pr_record *rec, enum pr_reason_code code,
                     int32_t points, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(tmp)) n = sizeof(tmp) - 1;
    pr_record_fire(batch, rec, code, points, tmp, (size_t)n);
}
