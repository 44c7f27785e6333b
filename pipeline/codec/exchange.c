/*
 * exchange.c - the intermediate record of the repartition topic
 * (exchange.h). Varints as Avro writes them (zigzag), so that the writer is
 * the codec's own pr_avro_write_long.
 */
#include "exchange.h"

#include <stdio.h>
#include <string.h>

#include "codec.h"

enum {
    PR_X_SUSPENDED = 1,
    PR_X_OVER = 2,
    PR_X_DEGRADED = 4,
    PR_X_RANDOM = 8,
    PR_X_DIGESTS = 16,
};

static void pr_x_str(struct pr_buf *out, const char *s, size_t len) {
    pr_avro_write_string(out, s ? s : "", s ? len : 0);
}

void pr_exchange_encode(const struct pr_record *rec, const char *refdata_version, bool degraded,
                        const char *source_topic, struct pr_buf *out) {
    const struct pr_declaration *d = &rec->decl;
    uint8_t version = PR_EXCHANGE_VERSION;
    pr_buf_append(out, &version, 1);
    pr_x_str(out, d->declaration_id.ptr, d->declaration_id.len);
    pr_x_str(out, d->house_bill.ptr, d->house_bill.len);
    pr_buf_append(out, rec->consignee_key, 64);
    pr_avro_write_long(out, d->arrival_time);
    pr_avro_write_long(out, d->event_time);
    pr_avro_write_long(out, d->value_usd_cents);
    uint8_t flags = (uint8_t)((rec->suspended ? PR_X_SUSPENDED : 0) |
                              (rec->value_over_threshold ? PR_X_OVER : 0) |
                              (degraded ? PR_X_DEGRADED : 0) |
                              (rec->random_selection ? PR_X_RANDOM : 0) |
                              (rec->has_state_digests ? PR_X_DIGESTS : 0));
    uint8_t dm = (uint8_t)rec->de_minimis;
    pr_buf_append(out, &flags, 1);
    pr_buf_append(out, &dm, 1);
    pr_avro_write_long(out, rec->violator_severity);
    if (rec->has_state_digests) {
        pr_buf_append(out, rec->address_digest, 16);
        pr_buf_append(out, rec->name_digest, 16);
    }
    pr_x_str(out, refdata_version, refdata_version ? strlen(refdata_version) : 0);
    pr_x_str(out, source_topic, source_topic ? strlen(source_topic) : 0);
    pr_avro_write_long(out, rec->partition);
    pr_avro_write_long(out, rec->offset);
    pr_avro_write_long(out, rec->fired);
    for (int code = 0; code < PR_R_COUNT; code++) {
        if (!pr_record_has(rec, (enum pr_reason_code)code)) continue;
        const struct pr_reason *r = &rec->reasons[code];
        pr_avro_write_long(out, r->points);
        pr_avro_write_long(out, r->omitted);
        pr_x_str(out, r->detail, r->detail_len);
    }
}

struct pr_x_reader {
    const uint8_t *p, *end;
    bool bad;
};

static int64_t pr_x_long(struct pr_x_reader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) break;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    }
    r->bad = true;
    return 0;
}

static const uint8_t *pr_x_bytes(struct pr_x_reader *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

/* A string, copied NUL-terminated into the arena. */
static struct pr_str pr_x_str_read(struct pr_x_reader *r, struct pr_batch *batch, size_t max) {
    int64_t len = pr_x_long(r);
    if (r->bad || len < 0 || (uint64_t)len > max) {
        r->bad = true;
        return (struct pr_str){"", 0};
    }
    const uint8_t *at = pr_x_bytes(r, (size_t)len);
    if (!at) return (struct pr_str){"", 0};
    return (struct pr_str){pr_arena_strndup(&batch->arena, (const char *)at, (size_t)len),
                           (uint32_t)len};
}

int pr_exchange_decode(struct pr_batch *batch, struct pr_record *rec, char *err, size_t err_len) {
    struct pr_x_reader r = {rec->payload, rec->payload + rec->payload_len, false};
    const uint8_t *version = pr_x_bytes(&r, 1);
    if (!version || *version != PR_EXCHANGE_VERSION) {
        snprintf(err, err_len, "intermediate record of version %d, this build reads version %d",
                 version ? *version : -1, PR_EXCHANGE_VERSION);
        return PR_ERR;
    }
    struct pr_declaration *d = &rec->decl;
    d->declaration_id = pr_x_str_read(&r, batch, 1u << 20);
    d->house_bill = pr_x_str_read(&r, batch, 1u << 20);
    const uint8_t *key = pr_x_bytes(&r, 64);
    if (key) {
        memcpy(rec->consignee_key, key, 64);
        rec->consignee_key[64] = '\0';
    }
    d->arrival_time = pr_x_long(&r);
    d->event_time = pr_x_long(&r);
    d->value_usd_cents = pr_x_long(&r);
    const uint8_t *flags = pr_x_bytes(&r, 1), *dm = pr_x_bytes(&r, 1);
    rec->violator_severity = (int32_t)pr_x_long(&r);
    if (flags && dm) {
        rec->suspended = *flags & PR_X_SUSPENDED;
        rec->value_over_threshold = *flags & PR_X_OVER;
        rec->origin_degraded = *flags & PR_X_DEGRADED;
        rec->random_selection = *flags & PR_X_RANDOM;
        if (*dm > PR_DM_SUSPENDED) r.bad = true;
        rec->de_minimis = (enum pr_de_minimis)(*dm <= PR_DM_SUSPENDED ? *dm : 0);
        if (*flags & PR_X_DIGESTS) {
            const uint8_t *a = pr_x_bytes(&r, 16), *n = pr_x_bytes(&r, 16);
            if (a && n) {
                memcpy(rec->address_digest, a, 16);
                memcpy(rec->name_digest, n, 16);
                rec->has_state_digests = true;
            }
        }
    }
    rec->origin_refdata_version = pr_x_str_read(&r, batch, 4096).ptr;
    rec->origin_topic = pr_x_str_read(&r, batch, 4096).ptr;
    int64_t partition = pr_x_long(&r), offset = pr_x_long(&r);
    if (partition < 0 || partition > INT32_MAX || offset < 0) r.bad = true;
    rec->origin_partition = (int32_t)partition;
    rec->origin_offset = offset;
    rec->has_origin = true;
    int64_t fired = pr_x_long(&r);
    if (fired < 0 || fired >= (1LL << PR_R_COUNT)) r.bad = true;
    for (int code = 0; code < PR_R_COUNT && !r.bad; code++) {
        if (!((fired >> code) & 1)) continue;
        struct pr_reason *reason = &rec->reasons[code];
        int64_t points = pr_x_long(&r), omitted = pr_x_long(&r);
        struct pr_str detail = pr_x_str_read(&r, batch, 1u << 16);
        if (points < INT32_MIN || points > INT32_MAX || omitted < 0 || omitted > UINT32_MAX)
            r.bad = true;
        reason->points = (int32_t)points;
        reason->omitted = (uint32_t)omitted;
        reason->detail = (char *)detail.ptr;
        reason->detail_len = detail.len;
    }
    rec->fired = r.bad ? 0 : (uint32_t)fired;
    if (r.bad) {
        snprintf(err, err_len, "intermediate record of %zu bytes is malformed (a field runs past "
                 "its end or holds an impossible value)", rec->payload_len);
        return PR_ERR;
    }
    if (r.p != r.end) {
        snprintf(err, err_len, "intermediate record has %zu trailing bytes",
                 (size_t)(r.end - r.p));
        return PR_ERR;
    }
    return PR_OK;
}
