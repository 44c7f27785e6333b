#include "codec.h"
#include "rules.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ reader */

struct pr_reader {
    const uint8_t *start;
    const uint8_t *pos;
    const uint8_t *end;
    const char *field; /* the field being read, for error messages */
    enum pr_dlq_code code;
    char *err;
    size_t err_size;
};

static bool pr_reader_fail(struct pr_reader *r, enum pr_dlq_code code, const char *what) {
    if (r->code == PR_DLQ_NONE) {
        r->code = code;
        snprintf(r->err, r->err_size, "%s at field %s (byte %zu of %zu)", what, r->field,
                 (size_t)(r->pos - r->start), (size_t)(r->end - r->start));
    }
    return false;
}

/* Avro long: zig-zag varint of at most 10 bytes. */
static bool pr_read_long(struct pr_reader *r, int64_t *out) {
    /* One byte (values -64..63: most lengths, counts and indexes). */
    if (r->pos < r->end && !(*r->pos & 0x80)) {
        uint64_t b = *r->pos++;
        *out = (int64_t)((b >> 1) ^ (~(b & 1) + 1));
        return true;
    }
    uint64_t value = 0;
    int shift = 0;
    for (;;) {
        if (r->pos >= r->end) return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "truncated varint");
        uint8_t b = *r->pos++;
        if (shift == 63 && (b & 0x7e))
            return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "varint overflows 64 bits");
        value |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
        shift += 7;
        if (shift > 63)
            return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "varint longer than 10 bytes");
    }
    *out = (int64_t)((value >> 1) ^ (~(value & 1) + 1));
    return true;
}

static bool pr_read_int(struct pr_reader *r, int32_t *out) {
    int64_t v;
    if (!pr_read_long(r, &v)) return false;
    if (v < INT32_MIN || v > INT32_MAX)
        return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "int out of 32-bit range");
    *out = (int32_t)v;
    return true;
}

static bool pr_read_string(struct pr_reader *r, struct pr_str *out) {
    int64_t len;
    if (!pr_read_long(r, &len)) return false;
    if (len < 0) return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "negative string length");
    if ((uint64_t)len > (uint64_t)(r->end - r->pos))
        return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "string length exceeds bytes left");
    if (!pr_utf8_valid(r->pos, (size_t)len))
        return pr_reader_fail(r, PR_DLQ_INVALID_UTF8, "invalid UTF-8");
    out->ptr = (const char *)r->pos;
    out->len = (uint32_t)len;
    r->pos += len;
    return true;
}

/* Reads a ["null", T] union index; *present tells which branch. */
static bool pr_read_optional(struct pr_reader *r, bool *present) {
    int64_t index;
    if (!pr_read_long(r, &index)) return false;
    if (index != 0 && index != 1) return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "bad union index");
    *present = index == 1;
    return true;
}

static bool pr_read_party(struct pr_reader *r, struct pr_party *p, const char *which) {
    static const char *const fields[][5] = {
        {"shipper.name", "shipper.address", "shipper.city", "shipper.postal_code",
         "shipper.country"},
        {"consignee.name", "consignee.address", "consignee.city", "consignee.postal_code",
         "consignee.country"},
        {"seller.name", "seller.address", "seller.city", "seller.postal_code", "seller.country"},
    };
    int k = which[0] == 's' ? (which[1] == 'h' ? 0 : 2) : 1;
    struct pr_str *dst[5] = {&p->name, &p->address, &p->city, &p->postal_code, &p->country};
    for (int i = 0; i < 5; i++) {
        r->field = fields[k][i];
        if (!pr_read_string(r, dst[i])) return false;
    }
    return true;
}

static bool pr_read_line(struct pr_reader *r, struct pr_line *line) {
    r->field = "lines.hts";
    if (!pr_read_string(r, &line->hts)) return false;
    r->field = "lines.description";
    if (!pr_read_string(r, &line->description)) return false;
    r->field = "lines.origin_country";
    if (!pr_read_string(r, &line->origin_country)) return false;
    r->field = "lines.quantity";
    if (!pr_read_int(r, &line->quantity)) return false;
    r->field = "lines.value_usd_cents";
    return pr_read_long(r, &line->value_usd_cents);
}

/* The smallest encoding of one Line: three empty strings and two zero ints. */
#define PR_MIN_LINE_BYTES 5

/* Avro arrays come in blocks: a count, then that many items; a negative
 * count is followed by the block's size in bytes; a zero count ends the
 * array. Blocks are gathered into one arena array. Every count is checked
 * against the bytes left before anything is allocated. */
static bool pr_read_lines(struct pr_reader *r, struct pr_declaration *d, struct pr_arena *arena) {
    r->field = "lines";
    uint32_t total = 0, cap = 0;
    struct pr_line *lines = NULL;
    for (;;) {
        int64_t count;
        if (!pr_read_long(r, &count)) return false;
        if (count == 0) break;
        /* A block with its size in bytes must hold exactly that many: a
         * size that disagrees with the items is a bad length (readers that
         * skip by it would see another record than readers that do not). */
        int64_t block_bytes = -1;
        if (count < 0) {
            if (count == INT64_MIN)
                return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "bad block count");
            count = -count;
            if (!pr_read_long(r, &block_bytes)) return false;
            if (block_bytes < 0 || (uint64_t)block_bytes > (uint64_t)(r->end - r->pos))
                return pr_reader_fail(r, PR_DLQ_DECODE_ERROR,
                                      "array block size exceeds bytes left");
        }
        if ((uint64_t)count > (uint64_t)(r->end - r->pos) / PR_MIN_LINE_BYTES)
            return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "array count exceeds bytes left");
        if (total + (uint64_t)count > PR_MAX_LINES)
            return pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "too many lines");
        if (total + (uint32_t)count > cap) {
            /* Grow geometrically: many one-item blocks must not cost
             * quadratic memory (each block is checked against the bytes
             * left, so the total stays within the message size). */
            uint32_t new_cap = total + (uint32_t)count;
            if (new_cap < cap * 2) new_cap = cap * 2;
            if (new_cap > PR_MAX_LINES) new_cap = PR_MAX_LINES;
            struct pr_line *grown = pr_arena_alloc(arena, new_cap * sizeof(*grown));
            if (total) memcpy(grown, lines, total * sizeof(*grown));
            lines = grown;
            cap = new_cap;
        }
        const uint8_t *block_start = r->pos;
        for (int64_t i = 0; i < count; i++)
            if (!pr_read_line(r, &lines[total++])) return false;
        r->field = "lines";
        if (block_bytes >= 0 && r->pos - block_start != block_bytes)
            return pr_reader_fail(r, PR_DLQ_DECODE_ERROR,
                                  "array block size disagrees with its items");
    }
    d->lines = lines;
    d->line_count = total;
    return true;
}

enum pr_dlq_code pr_declaration_decode(const uint8_t *buf, size_t len, struct pr_declaration *d,
                                       struct pr_arena *arena, char *err, size_t err_size) {
    struct pr_reader reader = {buf, buf, buf + len, "declaration_id", PR_DLQ_NONE, err, err_size};
    struct pr_reader *r = &reader;
    memset(d, 0, sizeof(*d));
    err[0] = '\0';
    bool ok = (r->field = "declaration_id", pr_read_string(r, &d->declaration_id)) &&
              (r->field = "filer_code", pr_read_string(r, &d->filer_code)) &&
              (r->field = "entry_type", pr_read_string(r, &d->entry_type)) &&
              (r->field = "house_bill", pr_read_string(r, &d->house_bill)) &&
              (r->field = "master_bill", pr_read_optional(r, &d->has_master_bill)) &&
              (!d->has_master_bill || pr_read_string(r, &d->master_bill)) &&
              (r->field = "transport_mode", pr_read_int(r, &d->transport_mode)) &&
              ((d->transport_mode >= 0 && d->transport_mode < PR_MODE_COUNT) ||
               pr_reader_fail(r, PR_DLQ_DECODE_ERROR, "bad enum index")) &&
              (r->field = "port_of_entry", pr_read_string(r, &d->port_of_entry)) &&
              (r->field = "arrival_time", pr_read_long(r, &d->arrival_time)) &&
              (r->field = "event_time", pr_read_long(r, &d->event_time)) &&
              pr_read_party(r, &d->shipper, "shipper") &&
              pr_read_party(r, &d->consignee, "consignee") &&
              (r->field = "seller", pr_read_optional(r, &d->has_seller)) &&
              (!d->has_seller || pr_read_party(r, &d->seller, "seller")) &&
              (r->field = "marketplace", pr_read_optional(r, &d->has_marketplace)) &&
              (!d->has_marketplace || pr_read_string(r, &d->marketplace)) &&
              (r->field = "value_usd_cents", pr_read_long(r, &d->value_usd_cents)) &&
              (r->field = "freight_usd_cents", pr_read_optional(r, &d->has_freight)) &&
              (!d->has_freight || pr_read_long(r, &d->freight_usd_cents)) &&
              (r->field = "gross_weight_grams", pr_read_int(r, &d->gross_weight_grams)) &&
              pr_read_lines(r, d, arena);
    if (!ok) return r->code;
    if (r->pos != r->end) {
        snprintf(err, err_size, "%zu bytes after a complete Declaration of %zu bytes",
                 (size_t)(r->end - r->pos), (size_t)(r->pos - buf));
        return PR_DLQ_TRAILING_BYTES;
    }
    return PR_DLQ_NONE;
}

/* ------------------------------------------------------------------ writer */

void pr_avro_write_long(struct pr_buf *out, int64_t v) {
    uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    uint8_t tmp[10];
    size_t i = 0;
    while (n & ~(uint64_t)0x7f) {
        tmp[i++] = (uint8_t)((n & 0x7f) | 0x80);
        n >>= 7;
    }
    tmp[i++] = (uint8_t)n;
    pr_buf_append(out, tmp, i);
}

void pr_avro_write_string(struct pr_buf *out, const char *s, size_t len) {
    pr_avro_write_long(out, (int64_t)len);
    pr_buf_append(out, s, len);
}

static void pr_write_str(struct pr_buf *out, struct pr_str s) {
    pr_avro_write_string(out, s.ptr, s.len);
}

static void pr_write_cstr(struct pr_buf *out, const char *s) {
    pr_avro_write_string(out, s, s ? strlen(s) : 0);
}

static void pr_write_party(struct pr_buf *out, const struct pr_party *p) {
    pr_write_str(out, p->name);
    pr_write_str(out, p->address);
    pr_write_str(out, p->city);
    pr_write_str(out, p->postal_code);
    pr_write_str(out, p->country);
}

void pr_declaration_encode(const struct pr_declaration *d, struct pr_buf *out) {
    pr_write_str(out, d->declaration_id);
    pr_write_str(out, d->filer_code);
    pr_write_str(out, d->entry_type);
    pr_write_str(out, d->house_bill);
    pr_avro_write_long(out, d->has_master_bill);
    if (d->has_master_bill) pr_write_str(out, d->master_bill);
    pr_avro_write_long(out, d->transport_mode);
    pr_write_str(out, d->port_of_entry);
    pr_avro_write_long(out, d->arrival_time);
    pr_avro_write_long(out, d->event_time);
    pr_write_party(out, &d->shipper);
    pr_write_party(out, &d->consignee);
    pr_avro_write_long(out, d->has_seller);
    if (d->has_seller) pr_write_party(out, &d->seller);
    pr_avro_write_long(out, d->has_marketplace);
    if (d->has_marketplace) pr_write_str(out, d->marketplace);
    pr_avro_write_long(out, d->value_usd_cents);
    pr_avro_write_long(out, d->has_freight);
    if (d->has_freight) pr_avro_write_long(out, d->freight_usd_cents);
    pr_avro_write_long(out, d->gross_weight_grams);
    if (d->line_count) {
        pr_avro_write_long(out, d->line_count);
        for (uint32_t i = 0; i < d->line_count; i++) {
            const struct pr_line *l = &d->lines[i];
            pr_write_str(out, l->hts);
            pr_write_str(out, l->description);
            pr_write_str(out, l->origin_country);
            pr_avro_write_long(out, l->quantity);
            pr_avro_write_long(out, l->value_usd_cents);
        }
    }
    pr_avro_write_long(out, 0);
}

void pr_decision_view_encode(const struct pr_decision_view *v, struct pr_buf *out) {
    pr_write_str(out, v->declaration_id);
    pr_write_str(out, v->house_bill);
    pr_write_str(out, v->consignee_key);
    pr_avro_write_long(out, v->decided_at);
    pr_avro_write_long(out, v->lane);
    pr_avro_write_long(out, v->score);
    pr_avro_write_long(out, v->de_minimis);
    if (v->reason_count) {
        pr_avro_write_long(out, v->reason_count);
        for (uint32_t i = 0; i < v->reason_count; i++) {
            pr_write_cstr(out, pr_reason_names[v->reason_codes[i]]);
            const struct pr_reason *reason = &v->reasons[i];
            pr_avro_write_long(out, reason->points);
            if (reason->omitted == 0) {
                pr_avro_write_string(out, reason->detail, reason->detail_len);
            } else {
                char more[48];
                int n = snprintf(more, sizeof(more), " ... and %u more", reason->omitted);
                pr_avro_write_long(out, (int64_t)reason->detail_len + n);
                pr_buf_append(out, reason->detail, reason->detail_len);
                pr_buf_append(out, more, (size_t)n);
            }
        }
    }
    pr_avro_write_long(out, 0);
    uint8_t flag = v->random_selection ? 1 : 0;
    pr_buf_append(out, &flag, 1);
    pr_write_cstr(out, v->ruleset_version);
    if (v->refdata_degraded) {
        /* DOMAIN.md section 5: a decision made without some of its state or
         * reference data says so in its refdata_version. */
        static const char suffix[] = "+degraded";
        size_t len = strlen(v->refdata_version);
        pr_avro_write_long(out, (int64_t)(len + sizeof(suffix) - 1));
        pr_buf_append(out, v->refdata_version, len);
        pr_buf_append(out, suffix, sizeof(suffix) - 1);
    } else {
        pr_write_cstr(out, v->refdata_version);
    }
    pr_write_cstr(out, v->source_topic);
    pr_avro_write_long(out, v->source_partition);
    pr_avro_write_long(out, v->source_offset);
}

void pr_decision_encode(const struct pr_batch *batch, const struct pr_record *rec,
                        struct pr_buf *out) {
    int codes[PR_R_COUNT];
    struct pr_reason reasons[PR_R_COUNT];
    uint32_t n = 0;
    for (int code = 0; code < PR_R_COUNT; code++) {
        if (!pr_record_has(rec, (enum pr_reason_code)code)) continue;
        codes[n] = code;
        reasons[n++] = rec->reasons[code];
    }
    struct pr_decision_view view = {
        .declaration_id = rec->decl.declaration_id,
        .house_bill = rec->decl.house_bill,
        .consignee_key = {rec->consignee_key, (uint32_t)strlen(rec->consignee_key)},
        .decided_at = rec->decided_at,
        .lane = rec->lane,
        .score = rec->score,
        .de_minimis = rec->de_minimis,
        .reason_count = n,
        .reason_codes = codes,
        .reasons = reasons,
        .random_selection = rec->random_selection,
        .ruleset_version = pr_rules_version(batch->rules),
        .refdata_version = rec->has_origin ? rec->origin_refdata_version : batch->refdata_version,
        .refdata_degraded = batch->degraded || rec->origin_degraded,
        .source_topic = rec->has_origin ? rec->origin_topic : batch->source_topic,
        .source_partition = rec->has_origin ? rec->origin_partition : rec->partition,
        .source_offset = rec->has_origin ? rec->origin_offset : rec->offset,
    };
    pr_decision_view_encode(&view, out);
}

void pr_deadletter_view_encode(const struct pr_deadletter_view *v, struct pr_buf *out) {
    pr_write_cstr(out, v->error_code);
    pr_write_cstr(out, v->error_detail);
    pr_write_cstr(out, v->source_topic);
    pr_avro_write_long(out, v->source_partition);
    pr_avro_write_long(out, v->source_offset);
    pr_avro_write_long(out, v->received_at);
    pr_avro_write_long(out, (int64_t)v->payload_len);
    pr_buf_append(out, v->payload, v->payload_len);
}

void pr_deadletter_encode(const struct pr_batch *batch, const struct pr_record *rec,
                          size_t keep_bytes, struct pr_buf *out) {
    struct pr_deadletter_view view = {
        .error_code = pr_dlq_names[rec->dlq_code],
        .error_detail = rec->dlq_detail,
        .source_topic = batch->source_topic,
        .source_partition = rec->partition,
        .source_offset = rec->offset,
        .received_at = batch->now_ms,
        .payload = rec->payload,
        .payload_len = rec->payload_len < keep_bytes ? rec->payload_len : keep_bytes,
    };
    pr_deadletter_view_encode(&view, out);
}
