/*
 * screen - the reasons that judge a declaration against the reference data
 * the enrich operator fetched (DOMAIN.md section 5):
 *
 *   KNOWN_VIOLATOR     a party matches the violator list; points by the highest
 *                      severity (1 = 200, 2 = 400, 3 = 700); detail names which
 *                      party and list, never the name
 *   HTS_INVALID        an all-digit 10-digit code with no 10-digit row of its own
 *                      (the format check is in validate; both add to one reason)
 *   WATCHED_COMMODITY  a line's flags include WATCH; the highest points among the
 *                      WATCH rows that apply over the parcel, 250 when all are 0
 *   UNDERVALUED        value < factor x floor x quantity (factor 0.5: 2 x value <
 *                      floor x quantity), floor of the most specific row with one
 *   HIGH_RISK_ORIGIN   a line's origin_country has points above 0; the highest
 *
 * Without enrich in the chain (line_refs NULL) it does nothing.
 */
#include <stdio.h>
#include <string.h>

#include "normalize.h"
#include "rules.h"
#include "operator.h"

struct pr_evidence {
    char text[512];
    size_t len;
};

static void pr_evidence_add(struct pr_evidence *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pr_evidence_add(struct pr_evidence *ev, const char *fmt, ...) {
    if (ev->len >= sizeof(ev->text) - 96) return; /* enough evidence for one line of text */
    if (ev->len) {
        memcpy(ev->text + ev->len, ", ", 2);
        ev->len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ev->text + ev->len, sizeof(ev->text) - ev->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        ev->len +=
            (size_t)n < sizeof(ev->text) - ev->len ? (size_t)n : sizeof(ev->text) - ev->len - 1;
}

static void pr_screen_record(struct pr_batch *batch, struct pr_record *rec) {
    const struct pr_rules *rules = batch->rules;
    const struct pr_declaration *d = &rec->decl;
    struct pr_evidence ev = {.len = 0};

    static const char *const party_text[PR_PARTY_COUNT] = {
        "shipper on the SHIPPER list", "seller on the SELLER list",
        "consignee on the CONSIGNEE list", "delivery address on the ADDRESS list"};
    for (int p = 0; p < PR_PARTY_COUNT; p++)
        if (rec->party_severity[p])
            pr_evidence_add(&ev, "%s (severity %d)", party_text[p], rec->party_severity[p]);
    if (ev.len && rec->violator_severity >= 1 && rec->violator_severity <= 3)
        pr_record_fire(batch, rec, PR_R_KNOWN_VIOLATOR,
                       rules->violator_points[rec->violator_severity], ev.text, ev.len);

    ev.len = 0;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line_ref *ref = &rec->line_refs[i];
        if (d->lines[i].hts.len == 10 && ref->all_digits && !ref->known)
            pr_evidence_add(&ev, "line %u: not in the tariff reference", i + 1);
    }
    if (ev.len)
        pr_record_fire(batch, rec, PR_R_HTS_INVALID, rules->points[PR_R_HTS_INVALID], ev.text,
                       ev.len);

    ev.len = 0;
    int32_t watch = -1;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line_ref *ref = &rec->line_refs[i];
        if (ref->watch_points < 0) continue;
        pr_evidence_add(&ev, "line %u: HTS %.*s on the watch list", i + 1,
                        pr_utf8_prefix(d->lines[i].hts.ptr, d->lines[i].hts.len, 10),
                        d->lines[i].hts.ptr);
        if (ref->watch_points > watch) watch = ref->watch_points;
    }
    if (ev.len)
        pr_record_fire(batch, rec, PR_R_WATCHED_COMMODITY,
                       watch > 0 ? watch : rules->points[PR_R_WATCHED_COMMODITY], ev.text, ev.len);

    ev.len = 0;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line_ref *ref = &rec->line_refs[i];
        const struct pr_line *line = &d->lines[i];
        if (ref->floor_cents < 0 || line->quantity <= 0) continue;
        /* Exact for the default factor 0.5: 2 x value < floor x quantity. */
        if ((double)line->value_usd_cents <
            rules->undervalue_factor * (double)ref->floor_cents * (double)line->quantity)
            pr_evidence_add(&ev, "line %u: unit value %lld/%d cents below %g x floor %lld cents",
                            i + 1, (long long)line->value_usd_cents, line->quantity,
                            rules->undervalue_factor, (long long)ref->floor_cents);
    }
    if (ev.len)
        pr_record_fire(batch, rec, PR_R_UNDERVALUED, rules->points[PR_R_UNDERVALUED], ev.text,
                       ev.len);

    ev.len = 0;
    int32_t origin = 0;
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line_ref *ref = &rec->line_refs[i];
        if (ref->origin_points <= 0) continue;
        pr_evidence_add(
            &ev, "line %u origin %.*s (%d points)", i + 1,
            pr_utf8_prefix(d->lines[i].origin_country.ptr, d->lines[i].origin_country.len, 8),
            d->lines[i].origin_country.ptr, ref->origin_points);
        if (ref->origin_points > origin) origin = ref->origin_points;
    }
    if (ev.len) pr_record_fire(batch, rec, PR_R_HIGH_RISK_ORIGIN, origin, ev.text, ev.len);
}

static int pr_screen_process(struct pr_operator *op, struct pr_batch *batch) {
    (void)op;
    for (size_t i = 0; i < batch->count; i++) {
        struct pr_record *rec = &batch->records[i];
        if (!pr_record_dead(rec) && rec->line_refs) pr_screen_record(batch, rec);
    }
    return PR_OP_DONE;
}

const struct pr_operator_ops pr_op_screen = {
    .name = "screen",
    .description =
        "KNOWN_VIOLATOR, HTS_INVALID (reference), WATCHED_COMMODITY, UNDERVALUED, HIGH_RISK_ORIGIN",
    .process = pr_screen_process,
};
