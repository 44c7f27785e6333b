/*
 * test_codec.c - the hand-written Avro codec (pipeline/codec/codec.c) against the
 * reference implementation, Avro-C's generic API, on the schema texts that
 * are embedded at build time (pipeline/codec/schemas.h), and the decoder against
 * hostile input.
 *
 * Every expected value is concrete: symbol names, reason names and dead-letter
 * codes come from tables written here from DOMAIN.md, not from the tables
 * the code under test uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "gen.h"
#include "rules.h"
#include "schemas.h"

#if defined(__SANITIZE_ADDRESS__)
#define PR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PR_TEST_ASAN 1
#endif
#endif
#ifdef PR_TEST_ASAN
/* From <sanitizer/allocator_interface.h>, which gcc does not ship. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* A string literal as a pr_str (S for expressions, SI inside initializer
 * braces); sizeof keeps embedded NULs. */
#define SI(lit)                                                                                    \
    { (lit), (uint32_t)(sizeof(lit) - 1) }
#define S(lit) ((struct pr_str)SI(lit))

/* 2025-10-01T00:00:00Z: after the 2025-08-29 suspension for every origin. */
#define PR_TEST_START_MS 1759276800000LL

/* ------------------------------------------------------ DOMAIN.md tables */

static const char *const transport_symbols[] = {"AIR", "TRUCK", "RAIL", "VESSEL", "POSTAL"};
static const char *const lane_symbols[] = {"GREEN", "BLUE", "YELLOW", "RED"};
static const char *const de_minimis_symbols[] = {
    "ELIGIBLE", "INELIGIBLE_VALUE", "INELIGIBLE_AGGREGATE", "INELIGIBLE_GOODS", "SUSPENDED"};
static const char *const reason_codes[] = {
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
static const char *const dlq_codes[] = {
    NULL,           "EMPTY",          "TOO_LARGE",  "DECODE_ERROR",   "TRAILING_BYTES",
    "INVALID_UTF8", "UNKNOWN_SCHEMA", "INVALID_ID", "OUTPUT_REJECTED"};

/* ---------------------------------------------------------- Avro-C types */

/* One schema of schemas/ with a reusable generic value. */
struct pr_avro_type {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
};

struct pr_fixture {
    struct pr_avro_type declaration, decision, deadletter;
};

static int pr_avro_type_init(struct pr_avro_type *t, const char *json) {
    if (avro_schema_from_json_length(json, strlen(json), &t->schema) != 0) {
        fprintf(stderr, "schema: %s\n", avro_strerror());
        return -1;
    }
    t->iface = avro_generic_class_from_schema(t->schema);
    if (!t->iface || avro_generic_value_new(t->iface, &t->value) != 0) {
        fprintf(stderr, "generic value: %s\n", avro_strerror());
        return -1;
    }
    return 0;
}

static void pr_avro_type_free(struct pr_avro_type *t) {
    avro_value_decref(&t->value);
    avro_value_iface_decref(t->iface);
    avro_schema_decref(t->schema);
}

static int pr_group_setup(void **state) {
    struct pr_fixture *f = calloc(1, sizeof(*f));
    if (!f || pr_avro_type_init(&f->declaration, pr_schema_declaration) ||
        pr_avro_type_init(&f->decision, pr_schema_decision) ||
        pr_avro_type_init(&f->deadletter, pr_schema_deadletter))
        return -1;
    *state = f;
    return 0;
}

static int pr_group_teardown(void **state) {
    struct pr_fixture *f = *state;
    pr_avro_type_free(&f->declaration);
    pr_avro_type_free(&f->decision);
    pr_avro_type_free(&f->deadletter);
    free(f);
    return 0;
}

/* Reads len bytes with Avro-C into t->value. Fails unless the read succeeds
 * and consumed exactly len bytes (a memory reader has no usable EOF test:
 * reading one more byte must fail with ENOSPC). */
static void pr_avro_read_all(struct pr_avro_type *t, const void *buf, size_t len, const char *ctx) {
    avro_value_reset(&t->value);
    avro_reader_t reader = avro_reader_memory((const char *)buf, (int64_t)len);
    assert_non_null(reader);
    if (avro_value_read(reader, &t->value) != 0)
        fail_msg("%s: Avro-C could not read the %zu bytes: %s", ctx, len, avro_strerror());
    char extra;
    if (avro_read(reader, &extra, 1) != ENOSPC)
        fail_msg("%s: Avro-C read a complete record before byte %zu of %zu", ctx, len, len);
    avro_reader_free(reader);
}

/* Writes value with Avro-C into out (reset first). */
static void pr_avro_write_all(avro_value_t *value, struct pr_buf *out) {
    size_t cap = 1 << 20;
    pr_buf_reset(out);
    pr_buf_reserve(out, cap);
    avro_writer_t writer = avro_writer_memory((const char *)out->data, (int64_t)cap);
    assert_non_null(writer);
    if (avro_value_write(writer, value) != 0) fail_msg("Avro-C write: %s", avro_strerror());
    out->len = (size_t)avro_writer_tell(writer);
    avro_writer_free(writer);
}

static avro_value_t pr_field(avro_value_t *record, const char *name) {
    avro_value_t child = {NULL, NULL};
    if (avro_value_get_by_name(record, name, &child, NULL) != 0)
        fail_msg("Avro-C value has no field %s: %s", name, avro_strerror());
    return child;
}

static avro_value_t pr_item(avro_value_t *array, size_t index) {
    avro_value_t child = {NULL, NULL};
    if (avro_value_get_by_index(array, index, &child, NULL) != 0)
        fail_msg("Avro-C array has no item %zu", index);
    return child;
}

/* ------------------------------------------------ checks on Avro-C values */

static void pr_check_string(avro_value_t *v, const char *ctx, const char *what, const char *want,
                            size_t want_len) {
    const char *got = NULL;
    size_t size = 0;
    if (avro_value_get_string(v, &got, &size) != 0) fail_msg("%s: %s is not a string", ctx, what);
    /* Avro-C counts the NUL terminator it appends. */
    if (size != want_len + 1 || memcmp(got, want, want_len) != 0)
        fail_msg("%s: %s: want \"%.*s\" (%zu bytes), Avro-C read \"%.*s\" (%zu bytes)", ctx, what,
                 (int)want_len, want, want_len, (int)(size ? size - 1 : 0), got,
                 size ? size - 1 : 0);
}

static void pr_check_str_field(avro_value_t *record, const char *name, struct pr_str want,
                               const char *ctx) {
    avro_value_t v = pr_field(record, name);
    pr_check_string(&v, ctx, name, want.ptr, want.len);
}

static void pr_check_cstr_field(avro_value_t *record, const char *name, const char *want,
                                const char *ctx) {
    avro_value_t v = pr_field(record, name);
    pr_check_string(&v, ctx, name, want, strlen(want));
}

static void pr_check_long_field(avro_value_t *record, const char *name, int64_t want,
                                const char *ctx) {
    avro_value_t v = pr_field(record, name);
    int64_t got = 0;
    if (avro_value_get_long(&v, &got) != 0) fail_msg("%s: %s is not a long", ctx, name);
    if (got != want)
        fail_msg("%s: %s: want %" PRId64 ", Avro-C read %" PRId64, ctx, name, want, got);
}

static void pr_check_int_field(avro_value_t *record, const char *name, int32_t want,
                               const char *ctx) {
    avro_value_t v = pr_field(record, name);
    int32_t got = 0;
    if (avro_value_get_int(&v, &got) != 0) fail_msg("%s: %s is not an int", ctx, name);
    if (got != want) fail_msg("%s: %s: want %d, Avro-C read %d", ctx, name, want, got);
}

static void pr_check_enum_field(avro_value_t *record, const char *name, int want_index,
                                const char *want_symbol, const char *ctx) {
    avro_value_t v = pr_field(record, name);
    int got = -1;
    if (avro_value_get_enum(&v, &got) != 0) fail_msg("%s: %s is not an enum", ctx, name);
    const char *symbol = avro_schema_enum_get(avro_value_get_schema(&v), got);
    if (got != want_index || !symbol || strcmp(symbol, want_symbol) != 0)
        fail_msg("%s: %s: want %s (%d), Avro-C read %s (%d)", ctx, name, want_symbol, want_index,
                 symbol ? symbol : "?", got);
}

/* Checks a ["null", T] union; returns the T branch in *branch when present. */
static void pr_check_optional(avro_value_t *record, const char *name, bool present,
                              avro_value_t *branch, const char *ctx) {
    avro_value_t v = pr_field(record, name);
    int discriminant = -1;
    if (avro_value_get_discriminant(&v, &discriminant) != 0)
        fail_msg("%s: %s is not a union", ctx, name);
    if (discriminant != (present ? 1 : 0))
        fail_msg("%s: %s: want union branch %d, Avro-C read %d", ctx, name, present ? 1 : 0,
                 discriminant);
    avro_value_t current = {NULL, NULL};
    assert_int_equal(avro_value_get_current_branch(&v, &current), 0);
    if (!present) {
        if (avro_value_get_type(&current) != AVRO_NULL)
            fail_msg("%s: %s: branch 0 is not null", ctx, name);
        return;
    }
    *branch = current;
}

static void pr_check_party(avro_value_t *party, const struct pr_party *p, const char *ctx) {
    pr_check_str_field(party, "name", p->name, ctx);
    pr_check_str_field(party, "address", p->address, ctx);
    pr_check_str_field(party, "city", p->city, ctx);
    pr_check_str_field(party, "postal_code", p->postal_code, ctx);
    pr_check_str_field(party, "country", p->country, ctx);
}

/* Every field of the Avro-C Declaration value equals d. */
static void pr_check_declaration_avro(avro_value_t *rec, const struct pr_declaration *d,
                                      const char *ctx) {
    char where[256];
    avro_value_t branch, v;
    pr_check_str_field(rec, "declaration_id", d->declaration_id, ctx);
    pr_check_str_field(rec, "filer_code", d->filer_code, ctx);
    pr_check_str_field(rec, "entry_type", d->entry_type, ctx);
    pr_check_str_field(rec, "house_bill", d->house_bill, ctx);
    pr_check_optional(rec, "master_bill", d->has_master_bill, &branch, ctx);
    if (d->has_master_bill)
        pr_check_string(&branch, ctx, "master_bill", d->master_bill.ptr, d->master_bill.len);
    assert_in_range(d->transport_mode, 0, 4);
    pr_check_enum_field(rec, "transport_mode", d->transport_mode,
                        transport_symbols[d->transport_mode], ctx);
    pr_check_str_field(rec, "port_of_entry", d->port_of_entry, ctx);
    pr_check_long_field(rec, "arrival_time", d->arrival_time, ctx);
    pr_check_long_field(rec, "event_time", d->event_time, ctx);
    snprintf(where, sizeof(where), "%s: shipper", ctx);
    v = pr_field(rec, "shipper");
    pr_check_party(&v, &d->shipper, where);
    snprintf(where, sizeof(where), "%s: consignee", ctx);
    v = pr_field(rec, "consignee");
    pr_check_party(&v, &d->consignee, where);
    pr_check_optional(rec, "seller", d->has_seller, &branch, ctx);
    snprintf(where, sizeof(where), "%s: seller", ctx);
    if (d->has_seller) pr_check_party(&branch, &d->seller, where);
    pr_check_optional(rec, "marketplace", d->has_marketplace, &branch, ctx);
    if (d->has_marketplace)
        pr_check_string(&branch, ctx, "marketplace", d->marketplace.ptr, d->marketplace.len);
    pr_check_long_field(rec, "value_usd_cents", d->value_usd_cents, ctx);
    pr_check_optional(rec, "freight_usd_cents", d->has_freight, &branch, ctx);
    if (d->has_freight) {
        int64_t freight = 0;
        assert_int_equal(avro_value_get_long(&branch, &freight), 0);
        if (freight != d->freight_usd_cents)
            fail_msg("%s: freight_usd_cents: want %" PRId64 ", Avro-C read %" PRId64, ctx,
                     d->freight_usd_cents, freight);
    }
    pr_check_int_field(rec, "gross_weight_grams", d->gross_weight_grams, ctx);
    avro_value_t lines = pr_field(rec, "lines");
    size_t count = 0;
    assert_int_equal(avro_value_get_size(&lines, &count), 0);
    if (count != d->line_count)
        fail_msg("%s: lines: want %u items, Avro-C read %zu", ctx, d->line_count, count);
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line *l = &d->lines[i];
        avro_value_t line = pr_item(&lines, i);
        snprintf(where, sizeof(where), "%s: lines[%u]", ctx, i);
        pr_check_str_field(&line, "hts", l->hts, where);
        pr_check_str_field(&line, "description", l->description, where);
        pr_check_str_field(&line, "origin_country", l->origin_country, where);
        pr_check_int_field(&line, "quantity", l->quantity, where);
        pr_check_long_field(&line, "value_usd_cents", l->value_usd_cents, where);
    }
}

/* ------------------------------------------------ building Avro-C values */

static void pr_set_string(avro_value_t *v, struct pr_str s) {
    /* Avro-C wants the size with a NUL terminator. */
    char *copy = malloc((size_t)s.len + 1);
    assert_non_null(copy);
    memcpy(copy, s.ptr, s.len);
    copy[s.len] = '\0';
    assert_int_equal(avro_value_set_string_len(v, copy, (size_t)s.len + 1), 0);
    free(copy);
}

static void pr_set_str_field(avro_value_t *record, const char *name, struct pr_str s) {
    avro_value_t v = pr_field(record, name);
    pr_set_string(&v, s);
}

static void pr_set_long_field(avro_value_t *record, const char *name, int64_t x) {
    avro_value_t v = pr_field(record, name);
    assert_int_equal(avro_value_set_long(&v, x), 0);
}

static void pr_set_int_field(avro_value_t *record, const char *name, int32_t x) {
    avro_value_t v = pr_field(record, name);
    assert_int_equal(avro_value_set_int(&v, x), 0);
}

/* Selects a ["null", T] branch; returns the T branch when present. */
static void pr_set_optional(avro_value_t *record, const char *name, bool present,
                            avro_value_t *branch) {
    avro_value_t v = pr_field(record, name), b;
    assert_int_equal(avro_value_set_branch(&v, present ? 1 : 0, &b), 0);
    if (!present) {
        assert_int_equal(avro_value_set_null(&b), 0);
        return;
    }
    *branch = b;
}

static void pr_set_party(avro_value_t *party, const struct pr_party *p) {
    pr_set_str_field(party, "name", p->name);
    pr_set_str_field(party, "address", p->address);
    pr_set_str_field(party, "city", p->city);
    pr_set_str_field(party, "postal_code", p->postal_code);
    pr_set_str_field(party, "country", p->country);
}

/* Sets every field of the Avro-C Declaration value from d. */
static void pr_fill_declaration_avro(avro_value_t *rec, const struct pr_declaration *d) {
    avro_value_t branch, v;
    assert_int_equal(avro_value_reset(rec), 0);
    pr_set_str_field(rec, "declaration_id", d->declaration_id);
    pr_set_str_field(rec, "filer_code", d->filer_code);
    pr_set_str_field(rec, "entry_type", d->entry_type);
    pr_set_str_field(rec, "house_bill", d->house_bill);
    pr_set_optional(rec, "master_bill", d->has_master_bill, &branch);
    if (d->has_master_bill) pr_set_string(&branch, d->master_bill);
    v = pr_field(rec, "transport_mode");
    assert_int_equal(avro_value_set_enum(&v, d->transport_mode), 0);
    pr_set_str_field(rec, "port_of_entry", d->port_of_entry);
    pr_set_long_field(rec, "arrival_time", d->arrival_time);
    pr_set_long_field(rec, "event_time", d->event_time);
    v = pr_field(rec, "shipper");
    pr_set_party(&v, &d->shipper);
    v = pr_field(rec, "consignee");
    pr_set_party(&v, &d->consignee);
    pr_set_optional(rec, "seller", d->has_seller, &branch);
    if (d->has_seller) pr_set_party(&branch, &d->seller);
    pr_set_optional(rec, "marketplace", d->has_marketplace, &branch);
    if (d->has_marketplace) pr_set_string(&branch, d->marketplace);
    pr_set_long_field(rec, "value_usd_cents", d->value_usd_cents);
    pr_set_optional(rec, "freight_usd_cents", d->has_freight, &branch);
    if (d->has_freight) assert_int_equal(avro_value_set_long(&branch, d->freight_usd_cents), 0);
    pr_set_int_field(rec, "gross_weight_grams", d->gross_weight_grams);
    avro_value_t lines = pr_field(rec, "lines");
    for (uint32_t i = 0; i < d->line_count; i++) {
        avro_value_t line;
        size_t index = 0;
        assert_int_equal(avro_value_append(&lines, &line, &index), 0);
        assert_int_equal(index, i);
        pr_set_str_field(&line, "hts", d->lines[i].hts);
        pr_set_str_field(&line, "description", d->lines[i].description);
        pr_set_str_field(&line, "origin_country", d->lines[i].origin_country);
        pr_set_int_field(&line, "quantity", d->lines[i].quantity);
        pr_set_long_field(&line, "value_usd_cents", d->lines[i].value_usd_cents);
    }
}

/* ------------------------------------------------ struct-to-struct checks */

static void pr_check_str_eq(struct pr_str got, struct pr_str want, const char *ctx,
                            const char *what) {
    if (got.len != want.len || (want.len && memcmp(got.ptr, want.ptr, want.len) != 0))
        fail_msg("%s: %s: want \"%.*s\" (%u bytes), decoded \"%.*s\" (%u bytes)", ctx, what,
                 (int)want.len, want.ptr, want.len, (int)got.len, got.ptr, got.len);
}

static void pr_check_party_eq(const struct pr_party *got, const struct pr_party *want,
                              const char *ctx, const char *which) {
    char what[64];
    snprintf(what, sizeof(what), "%s.name", which);
    pr_check_str_eq(got->name, want->name, ctx, what);
    snprintf(what, sizeof(what), "%s.address", which);
    pr_check_str_eq(got->address, want->address, ctx, what);
    snprintf(what, sizeof(what), "%s.city", which);
    pr_check_str_eq(got->city, want->city, ctx, what);
    snprintf(what, sizeof(what), "%s.postal_code", which);
    pr_check_str_eq(got->postal_code, want->postal_code, ctx, what);
    snprintf(what, sizeof(what), "%s.country", which);
    pr_check_str_eq(got->country, want->country, ctx, what);
}

#define PR_CHECK_NUM(got, want, ctx, what)                                                         \
    do {                                                                                           \
        if ((int64_t)(got) != (int64_t)(want))                                                     \
            fail_msg("%s: %s: want %" PRId64 ", decoded %" PRId64, (ctx), (what), (int64_t)(want), \
                     (int64_t)(got));                                                              \
    } while (0)

/* Every field of got equals want (absent optionals are not compared). */
static void pr_check_declaration_eq(const struct pr_declaration *got,
                                    const struct pr_declaration *want, const char *ctx) {
    pr_check_str_eq(got->declaration_id, want->declaration_id, ctx, "declaration_id");
    pr_check_str_eq(got->filer_code, want->filer_code, ctx, "filer_code");
    pr_check_str_eq(got->entry_type, want->entry_type, ctx, "entry_type");
    pr_check_str_eq(got->house_bill, want->house_bill, ctx, "house_bill");
    PR_CHECK_NUM(got->has_master_bill, want->has_master_bill, ctx, "master_bill branch");
    if (want->has_master_bill)
        pr_check_str_eq(got->master_bill, want->master_bill, ctx, "master_bill");
    PR_CHECK_NUM(got->transport_mode, want->transport_mode, ctx, "transport_mode");
    pr_check_str_eq(got->port_of_entry, want->port_of_entry, ctx, "port_of_entry");
    PR_CHECK_NUM(got->arrival_time, want->arrival_time, ctx, "arrival_time");
    PR_CHECK_NUM(got->event_time, want->event_time, ctx, "event_time");
    pr_check_party_eq(&got->shipper, &want->shipper, ctx, "shipper");
    pr_check_party_eq(&got->consignee, &want->consignee, ctx, "consignee");
    PR_CHECK_NUM(got->has_seller, want->has_seller, ctx, "seller branch");
    if (want->has_seller) pr_check_party_eq(&got->seller, &want->seller, ctx, "seller");
    PR_CHECK_NUM(got->has_marketplace, want->has_marketplace, ctx, "marketplace branch");
    if (want->has_marketplace)
        pr_check_str_eq(got->marketplace, want->marketplace, ctx, "marketplace");
    PR_CHECK_NUM(got->value_usd_cents, want->value_usd_cents, ctx, "value_usd_cents");
    PR_CHECK_NUM(got->has_freight, want->has_freight, ctx, "freight branch");
    if (want->has_freight)
        PR_CHECK_NUM(got->freight_usd_cents, want->freight_usd_cents, ctx, "freight_usd_cents");
    PR_CHECK_NUM(got->gross_weight_grams, want->gross_weight_grams, ctx, "gross_weight_grams");
    PR_CHECK_NUM(got->line_count, want->line_count, ctx, "line count");
    for (uint32_t i = 0; i < want->line_count; i++) {
        char where[200];
        snprintf(where, sizeof(where), "%s: lines[%u]", ctx, i);
        pr_check_str_eq(got->lines[i].hts, want->lines[i].hts, where, "hts");
        pr_check_str_eq(got->lines[i].description, want->lines[i].description, where,
                        "description");
        pr_check_str_eq(got->lines[i].origin_country, want->lines[i].origin_country, where,
                        "origin_country");
        PR_CHECK_NUM(got->lines[i].quantity, want->lines[i].quantity, where, "quantity");
        PR_CHECK_NUM(got->lines[i].value_usd_cents, want->lines[i].value_usd_cents, where,
                     "value_usd_cents");
    }
}

static void pr_check_bytes_eq(const uint8_t *got, size_t got_len, const uint8_t *want,
                              size_t want_len, const char *ctx) {
    size_t n = got_len < want_len ? got_len : want_len, i = 0;
    while (i < n && got[i] == want[i]) i++;
    if (got_len != want_len || i < n)
        fail_msg("%s: bytes differ at offset %zu (ours %zu bytes, want %zu bytes)", ctx, i, got_len,
                 want_len);
}

/* ------------------------------------------------ hand-built declarations */

static const struct pr_line pr_hand_lines[] = {
    /* non-ASCII in every width: é (2), — and 棉 (3), 📦 (4) */
    {SI("6109100012"), SI("T-shirt \xc3\xa9t\xc3\xa9 \xe2\x80\x94 \xe6\xa3\x89 \xf0\x9f\x93\xa6"),
     SI("CN"), 1, 0},
    {SI(""), SI(""), SI(""), 0, -1},
    {SI("X"), SI("a\0b"), SI("\xc3\x85land"), INT32_MAX, INT64_MAX},
    {SI("9"), SI("negative"), SI("VN"), INT32_MIN, INT64_MIN},
    {SI("8517620000"), SI("Wireless router"), SI("TW"), -7, -123456789012345LL},
};

/* Rich: every optional present, with unusual content in each. */
static void pr_hand_rich(struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    d->declaration_id = S("D-\xc3\xa9\xe2\x82\xac-\xf0\x9f\x93\xa6-0001");
    d->filer_code = S("");
    d->entry_type = S("86");
    d->house_bill = S("H\0B");
    d->has_master_bill = true;
    d->master_bill = S("");
    d->transport_mode = PR_MODE_POSTAL;
    d->port_of_entry = S("4701");
    d->arrival_time = INT64_MIN;
    d->event_time = INT64_MAX;
    d->shipper =
        (struct pr_party){SI("\xe6\xb7\xb1\xe5\x9c\xb3\xe5\xb8\x82 Bright Trading Co., Ltd."),
                          SI("No. 1 Industrial Road"), SI("Shenzhen"), SI("518000"), SI("CN")};
    d->consignee = (struct pr_party){SI("Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m"),
                                     SI("12 Elm St, Apt 3"), SI(""), SI(""), SI("US")};
    d->has_seller = true;
    d->seller = (struct pr_party){SI(""), SI(""), SI(""), SI(""), SI("")};
    d->has_marketplace = true;
    d->marketplace = S("M\xc3\xa4rkt");
    d->value_usd_cents = -1;
    d->has_freight = true;
    d->freight_usd_cents = INT64_MIN;
    d->gross_weight_grams = INT32_MIN;
    d->lines = (struct pr_line *)pr_hand_lines;
    d->line_count = PR_ARRAY_LEN(pr_hand_lines);
}

/* Bare: every optional absent, every string empty, no lines. */
static void pr_hand_bare(struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    static const char empty[1] = "";
    struct pr_str e = {empty, 0};
    d->declaration_id = d->filer_code = d->entry_type = d->house_bill = d->port_of_entry = e;
    d->shipper = d->consignee = (struct pr_party){e, e, e, e, e};
}

/* Long: strings whose length needs a 2- and 3-byte varint and 130 lines, so
 * that the array count needs a 2-byte varint too. */
static char pr_long_text[9000];
static struct pr_line pr_long_lines[130];
static void pr_hand_long(struct pr_declaration *d) {
    pr_hand_rich(d);
    for (size_t i = 0; i < sizeof(pr_long_text); i++) pr_long_text[i] = (char)('a' + i % 26);
    d->declaration_id = (struct pr_str){pr_long_text, 64};
    d->house_bill = (struct pr_str){pr_long_text, 8192};
    d->arrival_time = 1759276800000LL;
    d->event_time = -1759276800000LL;
    d->gross_weight_grams = INT32_MAX;
    d->freight_usd_cents = 63;
    d->value_usd_cents = 64;
    for (uint32_t i = 0; i < PR_ARRAY_LEN(pr_long_lines); i++)
        pr_long_lines[i] = pr_hand_lines[i % PR_ARRAY_LEN(pr_hand_lines)];
    d->lines = pr_long_lines;
    d->line_count = PR_ARRAY_LEN(pr_long_lines);
}

typedef void (*pr_hand_fn)(struct pr_declaration *d);
static const pr_hand_fn pr_hand_builders[] = {pr_hand_rich, pr_hand_bare, pr_hand_long};
static const char *const pr_hand_names[] = {"hand-built rich", "hand-built bare",
                                            "hand-built long"};

/* Decodes buf with our decoder; fails unless it decodes cleanly. */
static void pr_decode_ok(const struct pr_buf *buf, struct pr_declaration *d, struct pr_arena *arena,
                         const char *ctx) {
    char err[256];
    enum pr_dlq_code code = pr_declaration_decode(buf->data, buf->len, d, arena, err, sizeof(err));
    if (code != PR_DLQ_NONE)
        fail_msg("%s: pr_declaration_decode: %s: %s", ctx, dlq_codes[code], err);
}

/* Decodes exactly len bytes from a heap copy of exactly that size, so that
 * AddressSanitizer sees any read past the end. */
static enum pr_dlq_code pr_decode_exact(const uint8_t *bytes, size_t len, struct pr_arena *arena,
                                        char *err, size_t err_size) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, bytes, len);
    struct pr_declaration d;
    enum pr_dlq_code code = pr_declaration_decode(copy, len, &d, arena, err, err_size);
    free(copy);
    return code;
}

static void pr_expect_code(const struct pr_buf *buf, enum pr_dlq_code want, const char *ctx) {
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    char err[256];
    enum pr_dlq_code got = pr_decode_exact(buf->data, buf->len, &arena, err, sizeof(err));
    pr_arena_destroy(&arena);
    if (got != want)
        fail_msg("%s: want %s, got %s (%s)", ctx, dlq_codes[want] ? dlq_codes[want] : "NONE",
                 dlq_codes[got] ? dlq_codes[got] : "NONE", err);
    if (want != PR_DLQ_NONE && err[0] == '\0') fail_msg("%s: no error text", ctx);
}

/* ==================================================== Declaration tests */

static void test_declaration_ours_to_avro_generated(void **state) {
    struct pr_fixture *f = *state;
    static const uint64_t seeds[] = {0, 1, 2, 3, 42, 1234567, 0xdeadbeefULL, UINT64_MAX};
    enum { per_seed = 500 };
    unsigned by_lines[6] = {0}, optional_seen[4][2] = {{0}};
    struct pr_buf buf;
    pr_buf_init(&buf);
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    unsigned total = 0;
    for (size_t s = 0; s < PR_ARRAY_LEN(seeds); s++) {
        struct pr_gen gen;
        pr_gen_init(&gen, seeds[s], PR_TEST_START_MS, 7);
        for (int i = 0; i < per_seed; i++) {
            struct pr_declaration d, back;
            pr_gen_next(&gen, &d);
            d.event_time = d.arrival_time - 3600000 - i;
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "seed %" PRIu64 " declaration %d", seeds[s], i);
            pr_buf_reset(&buf);
            pr_declaration_encode(&d, &buf);
            pr_avro_read_all(&f->declaration, buf.data, buf.len, ctx);
            pr_check_declaration_avro(&f->declaration.value, &d, ctx);
            /* and back through our decoder */
            pr_arena_reset(&arena);
            pr_decode_ok(&buf, &back, &arena, ctx);
            pr_check_declaration_eq(&back, &d, ctx);
            assert_in_range(d.line_count, 1, 5);
            by_lines[d.line_count]++;
            optional_seen[0][d.has_master_bill]++;
            optional_seen[1][d.has_seller]++;
            optional_seen[2][d.has_marketplace]++;
            optional_seen[3][d.has_freight]++;
            total++;
        }
    }
    assert_int_equal(total, PR_ARRAY_LEN(seeds) * per_seed);
    /* The generator must have produced every shape this test claims to cover. */
    for (int n = 1; n <= 5; n++)
        if (!by_lines[n]) fail_msg("no generated declaration with %d lines", n);
    for (int k = 0; k < 4; k++)
        if (!optional_seen[k][0] || !optional_seen[k][1])
            fail_msg("optional field %d not seen both present and absent", k);
    pr_arena_destroy(&arena);
    pr_buf_free(&buf);
}

static void test_declaration_ours_to_avro_handbuilt(void **state) {
    struct pr_fixture *f = *state;
    struct pr_buf buf;
    pr_buf_init(&buf);
    for (size_t k = 0; k < PR_ARRAY_LEN(pr_hand_builders); k++) {
        struct pr_declaration d;
        pr_hand_builders[k](&d);
        pr_buf_reset(&buf);
        pr_declaration_encode(&d, &buf);
        pr_avro_read_all(&f->declaration, buf.data, buf.len, pr_hand_names[k]);
        pr_check_declaration_avro(&f->declaration.value, &d, pr_hand_names[k]);
    }
    /* A few exact bytes, worked out by hand from the Avro spec: the bare
     * record is 4 empty strings, union 0, enum 0, empty string, two longs 0,
     * 10 empty party strings, 2 unions 0, long 0, union 0, int 0 and the 0
     * that ends an empty array: 25 zero bytes. */
    struct pr_declaration bare;
    pr_hand_bare(&bare);
    pr_buf_reset(&buf);
    pr_declaration_encode(&bare, &buf);
    static const uint8_t bare_bytes[25] = {0};
    pr_check_bytes_eq(buf.data, buf.len, bare_bytes, sizeof(bare_bytes), "bare bytes");
    pr_buf_free(&buf);
}

/* The oracle itself: one extra byte after a record must be noticed. */
static void test_avro_oracle_sees_trailing_bytes(void **state) {
    struct pr_fixture *f = *state;
    struct pr_declaration d;
    pr_hand_rich(&d);
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_declaration_encode(&d, &buf);
    pr_buf_append(&buf, "", 1);
    avro_reader_t reader = avro_reader_memory((const char *)buf.data, (int64_t)buf.len);
    assert_int_equal(avro_value_read(reader, &f->declaration.value), 0);
    char extra = 1;
    assert_int_equal(avro_read(reader, &extra, 1), 0);
    assert_int_equal(extra, 0);
    assert_int_equal(avro_read(reader, &extra, 1), ENOSPC);
    avro_reader_free(reader);
    pr_buf_free(&buf);
}

/* Avro-C writes, we decode: same fields, and our encoder gives back the very
 * same bytes. */
static void pr_avro_to_ours_one(struct pr_fixture *f, const struct pr_declaration *d,
                                struct pr_buf *avro_bytes, struct pr_buf *ours,
                                struct pr_arena *arena, const char *ctx) {
    pr_fill_declaration_avro(&f->declaration.value, d);
    pr_avro_write_all(&f->declaration.value, avro_bytes);
    struct pr_declaration back;
    pr_arena_reset(arena);
    pr_decode_ok(avro_bytes, &back, arena, ctx);
    pr_check_declaration_eq(&back, d, ctx);
    pr_buf_reset(ours);
    pr_declaration_encode(&back, ours);
    pr_check_bytes_eq(ours->data, ours->len, avro_bytes->data, avro_bytes->len, ctx);
}

static void test_declaration_avro_to_ours(void **state) {
    struct pr_fixture *f = *state;
    struct pr_buf avro_bytes, ours;
    pr_buf_init(&avro_bytes);
    pr_buf_init(&ours);
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    for (size_t k = 0; k < PR_ARRAY_LEN(pr_hand_builders); k++) {
        struct pr_declaration d;
        pr_hand_builders[k](&d);
        pr_avro_to_ours_one(f, &d, &avro_bytes, &ours, &arena, pr_hand_names[k]);
    }
    static const uint64_t seeds[] = {7, 99, 31337};
    for (size_t s = 0; s < PR_ARRAY_LEN(seeds); s++) {
        struct pr_gen gen;
        pr_gen_init(&gen, seeds[s], PR_TEST_START_MS, 3);
        for (int i = 0; i < 300; i++) {
            struct pr_declaration d;
            pr_gen_next(&gen, &d);
            d.event_time = d.arrival_time + i;
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "Avro-C -> ours, seed %" PRIu64 " declaration %d", seeds[s],
                     i);
            pr_avro_to_ours_one(f, &d, &avro_bytes, &ours, &arena, ctx);
        }
    }
    pr_arena_destroy(&arena);
    pr_buf_free(&avro_bytes);
    pr_buf_free(&ours);
}

/* ======================================================= Decision tests */

static const char pr_test_key[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct pr_decision_env {
    struct pr_batch batch;
    struct pr_rules *rules;
    struct pr_buf out;
};

static void pr_decision_env_init(struct pr_decision_env *env) {
    pr_batch_init(&env->batch, 4);
    env->rules = pr_rules_new_default();
    assert_non_null(env->rules);
    strcpy(env->rules->version, "rules-test-7");
    env->batch.rules = env->rules;
    env->batch.source_topic = "declarations.eu-west-1";
    env->batch.refdata_version = "refdata-2025-11-27";
    env->batch.now_ms = 1764201600999LL;
    pr_buf_init(&env->out);
}

static void pr_decision_env_free(struct pr_decision_env *env) {
    pr_buf_free(&env->out);
    pr_rules_free(env->rules);
    pr_batch_destroy(&env->batch);
}

static void pr_check_reason(avro_value_t *reasons, size_t index, const char *code, int32_t points,
                            const char *detail) {
    char ctx[64];
    snprintf(ctx, sizeof(ctx), "reasons[%zu]", index);
    avro_value_t reason = pr_item(reasons, index);
    pr_check_cstr_field(&reason, "code", code, ctx);
    pr_check_int_field(&reason, "points", points, ctx);
    pr_check_cstr_field(&reason, "detail", detail, ctx);
}

static void pr_fire(struct pr_batch *batch, struct pr_record *rec, enum pr_reason_code code,
                    int32_t points, const char *detail) {
    pr_record_fire(batch, rec, code, points, detail, strlen(detail));
}

static void test_decision_to_avro(void **state) {
    struct pr_fixture *f = *state;
    struct pr_decision_env env;
    pr_decision_env_init(&env);
    struct pr_batch *batch = &env.batch;
    struct pr_record *rec = pr_batch_push(batch);
    assert_non_null(rec);
    rec->decl.declaration_id = S("D0000000042-\xc3\xa9");
    rec->decl.house_bill = S("DHLX00000000042");
    strcpy(rec->consignee_key, pr_test_key);
    rec->partition = 7;
    rec->offset = 9007199254740993LL;
    rec->decided_at = 1764201600123LL;
    rec->lane = PR_LANE_RED;
    rec->score = 1000;
    rec->de_minimis = PR_DM_SUSPENDED;
    rec->random_selection = true;
    /* Fired out of order; MISSING_DATA twice (details joined, higher points kept). */
    pr_fire(batch, rec, PR_R_RANDOM_COMPLIANCE, 0, "selected at rate 0.01");
    pr_fire(batch, rec, PR_R_MISSING_DATA, 150, "missing: house_bill");
    pr_fire(batch, rec, PR_R_DE_MINIMIS_SUSPENDED, 0,
            "line 1 origin CN: de minimis suspended since 2025-08-29T04:01:00Z");
    pr_fire(batch, rec, PR_R_MISSING_DATA, 200, "line 2 hts");
    pr_record_firef(batch, rec, PR_R_KNOWN_VIOLATOR, 700,
                    "consignee on list %s severity %d \xe2\x80\x94 x", "OFAC", 3);
    pr_fire(batch, rec, PR_R_ADDRESS_CLUSTER, INT32_MAX, "");
    pr_decision_encode(batch, rec, &env.out);
    pr_avro_read_all(&f->decision, env.out.data, env.out.len, "decision");
    avro_value_t *v = &f->decision.value;
    pr_check_cstr_field(v, "declaration_id", "D0000000042-\xc3\xa9", "decision");
    pr_check_cstr_field(v, "house_bill", "DHLX00000000042", "decision");
    pr_check_cstr_field(v, "consignee_key", pr_test_key, "decision");
    pr_check_long_field(v, "decided_at", 1764201600123LL, "decision");
    pr_check_enum_field(v, "lane", 3, "RED", "decision");
    pr_check_int_field(v, "score", 1000, "decision");
    pr_check_enum_field(v, "de_minimis", 4, "SUSPENDED", "decision");
    avro_value_t reasons = pr_field(v, "reasons");
    size_t count = 0;
    assert_int_equal(avro_value_get_size(&reasons, &count), 0);
    assert_int_equal(count, 5);
    pr_check_reason(&reasons, 0, "DE_MINIMIS_SUSPENDED", 0,
                    "line 1 origin CN: de minimis suspended since 2025-08-29T04:01:00Z");
    pr_check_reason(&reasons, 1, "KNOWN_VIOLATOR", 700,
                    "consignee on list OFAC severity 3 \xe2\x80\x94 x");
    pr_check_reason(&reasons, 2, "MISSING_DATA", 200, "missing: house_bill; line 2 hts");
    pr_check_reason(&reasons, 3, "ADDRESS_CLUSTER", INT32_MAX, "");
    pr_check_reason(&reasons, 4, "RANDOM_COMPLIANCE", 0, "selected at rate 0.01");
    avro_value_t flag = pr_field(v, "random_selection");
    int b = -1;
    assert_int_equal(avro_value_get_boolean(&flag, &b), 0);
    assert_int_equal(b, 1);
    pr_check_cstr_field(v, "ruleset_version", "rules-test-7", "decision");
    pr_check_cstr_field(v, "refdata_version", "refdata-2025-11-27", "decision");
    pr_check_cstr_field(v, "source_topic", "declarations.eu-west-1", "decision");
    pr_check_int_field(v, "source_partition", 7, "decision");
    pr_check_long_field(v, "source_offset", 9007199254740993LL, "decision");
    pr_decision_env_free(&env);
}

/* Every reason fired, in reverse: the decision lists them in enum order with
 * the names of DOMAIN.md section 5. */
static void test_decision_all_reasons_in_order(void **state) {
    struct pr_fixture *f = *state;
    struct pr_decision_env env;
    pr_decision_env_init(&env);
    struct pr_record *rec = pr_batch_push(&env.batch);
    rec->decl.declaration_id = S("D1");
    rec->decl.house_bill = S("HB1");
    strcpy(rec->consignee_key, pr_test_key);
    for (int code = PR_R_COUNT - 1; code >= 0; code--) {
        char detail[32];
        int n = snprintf(detail, sizeof(detail), "evidence %d", code);
        pr_record_fire(&env.batch, rec, (enum pr_reason_code)code, 10 * code - 50, detail,
                       (size_t)n);
    }
    pr_decision_encode(&env.batch, rec, &env.out);
    pr_avro_read_all(&f->decision, env.out.data, env.out.len, "all reasons");
    avro_value_t reasons = pr_field(&f->decision.value, "reasons");
    size_t count = 0;
    assert_int_equal(avro_value_get_size(&reasons, &count), 0);
    assert_int_equal(count, PR_R_COUNT);
    assert_int_equal(PR_ARRAY_LEN(reason_codes), PR_R_COUNT);
    for (int code = 0; code < PR_R_COUNT; code++) {
        char detail[32];
        snprintf(detail, sizeof(detail), "evidence %d", code);
        pr_check_reason(&reasons, (size_t)code, reason_codes[code], 10 * code - 50, detail);
    }
    pr_decision_env_free(&env);
}

/* Every lane and de_minimis value, no reasons, random_selection false. */
static void test_decision_enums(void **state) {
    struct pr_fixture *f = *state;
    struct pr_decision_env env;
    pr_decision_env_init(&env);
    env.batch.source_topic = "";
    env.batch.refdata_version = "";
    for (int lane = 0; lane < 4; lane++) {
        for (int dm = 0; dm < 5; dm++) {
            pr_batch_reset(&env.batch);
            struct pr_record *rec = pr_batch_push(&env.batch);
            rec->decl.declaration_id = S("");
            rec->decl.house_bill = S("");
            rec->lane = (enum pr_lane)lane;
            rec->de_minimis = (enum pr_de_minimis)dm;
            rec->score = -lane * 5 + dm;
            rec->partition = -1;
            rec->offset = -2;
            rec->decided_at = -3;
            pr_buf_reset(&env.out);
            pr_decision_encode(&env.batch, rec, &env.out);
            char ctx[64];
            snprintf(ctx, sizeof(ctx), "lane %d de_minimis %d", lane, dm);
            pr_avro_read_all(&f->decision, env.out.data, env.out.len, ctx);
            avro_value_t *v = &f->decision.value;
            pr_check_enum_field(v, "lane", lane, lane_symbols[lane], ctx);
            pr_check_enum_field(v, "de_minimis", dm, de_minimis_symbols[dm], ctx);
            pr_check_int_field(v, "score", -lane * 5 + dm, ctx);
            pr_check_cstr_field(v, "consignee_key", "", ctx);
            avro_value_t reasons = pr_field(v, "reasons");
            size_t count = 99;
            assert_int_equal(avro_value_get_size(&reasons, &count), 0);
            assert_int_equal(count, 0);
            avro_value_t flag = pr_field(v, "random_selection");
            int b = -1;
            assert_int_equal(avro_value_get_boolean(&flag, &b), 0);
            assert_int_equal(b, 0);
            pr_check_cstr_field(v, "source_topic", "", ctx);
            pr_check_int_field(v, "source_partition", -1, ctx);
            pr_check_long_field(v, "source_offset", -2, ctx);
            pr_check_long_field(v, "decided_at", -3, ctx);
        }
    }
    pr_decision_env_free(&env);
}

/* ===================================================== DeadLetter tests */

static void pr_check_bytes_field(avro_value_t *record, const char *name, const uint8_t *want,
                                 size_t want_len, const char *ctx) {
    avro_value_t v = pr_field(record, name);
    const void *got = NULL;
    size_t size = 0;
    if (avro_value_get_bytes(&v, &got, &size) != 0) fail_msg("%s: %s is not bytes", ctx, name);
    pr_check_bytes_eq(got, size, want, want_len, ctx);
}

static void test_deadletter_to_avro(void **state) {
    struct pr_fixture *f = *state;
    struct pr_decision_env env;
    pr_decision_env_init(&env);
    static const uint8_t payload[] = {0x00, 0xff, 0x00, 'A', 0x80, 0xff, 0xfe, 0x00};
    for (int code = PR_DLQ_EMPTY; code <= PR_DLQ_UNKNOWN_SCHEMA; code++) {
        pr_batch_reset(&env.batch);
        struct pr_record *rec = pr_batch_push(&env.batch);
        rec->payload = payload;
        rec->payload_len = sizeof(payload);
        rec->partition = 2;
        rec->offset = 123456789012LL;
        pr_record_dead_letter(rec, (enum pr_dlq_code)code,
                              "string length exceeds bytes left at field %s (byte %d of %d)",
                              "house_bill", 17, 42);
        pr_buf_reset(&env.out);
        pr_deadletter_encode(&env.batch, rec, sizeof(payload), &env.out);
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "dead letter %s", dlq_codes[code]);
        pr_avro_read_all(&f->deadletter, env.out.data, env.out.len, ctx);
        avro_value_t *v = &f->deadletter.value;
        pr_check_cstr_field(v, "error_code", dlq_codes[code], ctx);
        pr_check_cstr_field(v, "error_detail",
                            "string length exceeds bytes left at field house_bill (byte 17 of 42)",
                            ctx);
        pr_check_cstr_field(v, "source_topic", "declarations.eu-west-1", ctx);
        pr_check_int_field(v, "source_partition", 2, ctx);
        pr_check_long_field(v, "source_offset", 123456789012LL, ctx);
        pr_check_long_field(v, "received_at", 1764201600999LL, ctx);
        pr_check_bytes_field(v, "payload", payload, sizeof(payload), ctx);
    }
    pr_decision_env_free(&env);
}

static void test_deadletter_too_large_keeps_prefix(void **state) {
    struct pr_fixture *f = *state;
    struct pr_decision_env env;
    pr_decision_env_init(&env);
    size_t big = 300000;
    uint8_t *payload = malloc(big);
    assert_non_null(payload);
    for (size_t i = 0; i < big; i++) payload[i] = (uint8_t)(i * 131 + (i >> 8));
    static const struct {
        size_t len, keep, want;
    } cases[] = {{300000, 65536, 65536}, {1000, 65536, 1000}, {1000, 1000, 1000},
                 {1000, 999, 999},       {1000, 0, 0},        {0, 65536, 0}};
    for (size_t k = 0; k < PR_ARRAY_LEN(cases); k++) {
        pr_batch_reset(&env.batch);
        struct pr_record *rec = pr_batch_push(&env.batch);
        rec->payload = cases[k].len ? payload : NULL;
        rec->payload_len = cases[k].len;
        rec->partition = 0;
        rec->offset = 5;
        pr_record_dead_letter(rec, PR_DLQ_TOO_LARGE, "message of %zu bytes exceeds the cap of %d",
                              cases[k].len, 262144);
        pr_buf_reset(&env.out);
        pr_deadletter_encode(&env.batch, rec, cases[k].keep, &env.out);
        char ctx[64], detail[96];
        snprintf(ctx, sizeof(ctx), "TOO_LARGE %zu keep %zu", cases[k].len, cases[k].keep);
        snprintf(detail, sizeof(detail), "message of %zu bytes exceeds the cap of 262144",
                 cases[k].len);
        pr_avro_read_all(&f->deadletter, env.out.data, env.out.len, ctx);
        avro_value_t *v = &f->deadletter.value;
        pr_check_cstr_field(v, "error_code", "TOO_LARGE", ctx);
        pr_check_cstr_field(v, "error_detail", detail, ctx);
        pr_check_long_field(v, "source_offset", 5, ctx);
        pr_check_bytes_field(v, "payload", payload, cases[k].want, ctx);
    }
    free(payload);
    pr_decision_env_free(&env);
}

/* ===================================================== hostile input */

/* Our declaration encoding, cut before the lines array (the 0 that ends an
 * empty array is dropped), so a test can write the array its own way. */
static void pr_encode_head(const struct pr_declaration *d, struct pr_buf *out) {
    struct pr_declaration head = *d;
    head.line_count = 0;
    head.lines = NULL;
    pr_buf_reset(out);
    pr_declaration_encode(&head, out);
    assert_true(out->len > 0);
    assert_int_equal(out->data[out->len - 1], 0);
    out->len--;
}

static void pr_encode_line(struct pr_buf *out, const struct pr_line *l) {
    pr_avro_write_string(out, l->hts.ptr, l->hts.len);
    pr_avro_write_string(out, l->description.ptr, l->description.len);
    pr_avro_write_string(out, l->origin_country.ptr, l->origin_country.len);
    pr_avro_write_long(out, l->quantity);
    pr_avro_write_long(out, l->value_usd_cents);
}

/* Writes n lines in blocks of per_block items; negative blocks carry a
 * negative count followed by the block's size in bytes (Avro spec). */
static void pr_encode_lines_blocks(struct pr_buf *out, const struct pr_line *lines, uint32_t n,
                                   uint32_t per_block, bool negative) {
    struct pr_buf block;
    pr_buf_init(&block);
    for (uint32_t i = 0; i < n; i += per_block) {
        uint32_t k = n - i < per_block ? n - i : per_block;
        pr_buf_reset(&block);
        for (uint32_t j = 0; j < k; j++) pr_encode_line(&block, &lines[i + j]);
        if (negative) {
            pr_avro_write_long(out, -(int64_t)k);
            pr_avro_write_long(out, (int64_t)block.len);
        } else {
            pr_avro_write_long(out, k);
        }
        pr_buf_append(out, block.data, block.len);
    }
    pr_avro_write_long(out, 0);
    pr_buf_free(&block);
}

/* Replaces the encoded string marker (length varint and bytes) and the
 * skip_after bytes that follow it with raw. The marker must occur once. */
static void pr_splice(struct pr_buf *out, const struct pr_buf *in, const char *marker,
                      size_t skip_after, const void *raw, size_t raw_len) {
    size_t mlen = strlen(marker);
    assert_true(mlen > 0 && mlen < 64);
    const uint8_t *hit = NULL;
    for (size_t i = 1; i + mlen <= in->len; i++) {
        if (memcmp(in->data + i, marker, mlen) == 0 && in->data[i - 1] == (uint8_t)(mlen * 2)) {
            if (hit) fail_msg("marker %s occurs twice", marker);
            hit = in->data + i;
        }
    }
    if (!hit) fail_msg("marker %s not found", marker);
    size_t start = (size_t)(hit - in->data) - 1, end = start + 1 + mlen + skip_after;
    assert_true(end <= in->len);
    pr_buf_reset(out);
    pr_buf_append(out, in->data, start);
    pr_buf_append(out, raw, raw_len);
    pr_buf_append(out, in->data + end, in->len - end);
}

/* A declaration with a marker string in most fields; optionals as given. */
static const struct pr_line pr_marked_lines[] = {
    {SI("6109100012"), SI("Cotton t-shirt"), SI("CN"), 2, 1800},
    {SI("8517620000"), SI("Wireless router"), SI("TW"), 1, 4500},
    {SI("8518300000"), SI("@DESC3@"), SI("@ORIG3@"), 3, 7500},
};
static void pr_marked(struct pr_declaration *d, bool optionals) {
    memset(d, 0, sizeof(*d));
    d->declaration_id = S("@ID@");
    d->filer_code = S("DHLX");
    d->entry_type = S("86");
    d->house_bill = S("@HB@");
    d->has_master_bill = optionals;
    d->master_bill = S("@MB@");
    d->transport_mode = PR_MODE_AIR;
    d->port_of_entry = S("@PORT@");
    d->arrival_time = 1759300000000LL;
    d->event_time = 1759290000000LL;
    d->shipper =
        (struct pr_party){SI("@SNAME@"), SI("No. 1 Road"), SI("Shenzhen"), SI("518000"), SI("CN")};
    d->consignee =
        (struct pr_party){SI("@CNAME@"), SI("1 Elm St"), SI("Boston"), SI("02108"), SI("@CCTRY@")};
    d->has_seller = optionals;
    d->seller = (struct pr_party){SI("Store 1"), SI("Online"), SI(""), SI(""), SI("@SCTRY@")};
    d->has_marketplace = optionals;
    d->marketplace = S("@MKT@");
    d->value_usd_cents = 13800;
    d->has_freight = optionals;
    d->freight_usd_cents = 900;
    d->gross_weight_grams = 750;
    d->lines = (struct pr_line *)pr_marked_lines;
    d->line_count = PR_ARRAY_LEN(pr_marked_lines);
}

static void pr_encode_marked(struct pr_buf *out, bool optionals) {
    struct pr_declaration d;
    pr_marked(&d, optionals);
    pr_buf_reset(out);
    pr_declaration_encode(&d, out);
}

static void test_hostile_every_prefix(void **state) {
    (void)state;
    struct pr_buf buf;
    pr_buf_init(&buf);
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    unsigned checked = 0;
    for (int k = 0; k < (int)PR_ARRAY_LEN(pr_hand_builders) + 40; k++) {
        struct pr_declaration d;
        struct pr_gen gen;
        if (k < (int)PR_ARRAY_LEN(pr_hand_builders)) {
            pr_hand_builders[k](&d);
        } else {
            pr_gen_init(&gen, (uint64_t)k, PR_TEST_START_MS, 2);
            pr_gen_next(&gen, &d);
        }
        pr_buf_reset(&buf);
        pr_declaration_encode(&d, &buf);
        /* The long one has 17k bytes: its every 7th prefix is enough. */
        size_t step = buf.len > 4096 ? 7 : 1;
        for (size_t len = 0; len < buf.len; len += step) {
            char err[256];
            pr_arena_reset(&arena);
            enum pr_dlq_code code = pr_decode_exact(buf.data, len, &arena, err, sizeof(err));
            if (code != PR_DLQ_DECODE_ERROR)
                fail_msg("declaration %d cut to %zu of %zu bytes: want DECODE_ERROR, got %s (%s)",
                         k, len, buf.len, code ? dlq_codes[code] : "NONE", err);
            if (!err[0]) fail_msg("declaration %d cut to %zu bytes: no error text", k, len);
            checked++;
        }
        pr_arena_reset(&arena);
        char err[256];
        assert_int_equal(pr_decode_exact(buf.data, buf.len, &arena, err, sizeof(err)), PR_DLQ_NONE);
    }
    assert_true(checked > 5000);
    pr_arena_destroy(&arena);
    pr_buf_free(&buf);
}

static void test_hostile_trailing_bytes(void **state) {
    (void)state;
    struct pr_buf buf;
    pr_buf_init(&buf);
    static const char *const extras[] = {"\x00", "\002a", "\x00\x01\x02\x03", "\xff"};
    static const size_t extra_lens[] = {1, 2, 4, 1};
    for (size_t k = 0; k < PR_ARRAY_LEN(pr_hand_builders); k++) {
        for (size_t e = 0; e < PR_ARRAY_LEN(extras); e++) {
            struct pr_declaration d;
            pr_hand_builders[k](&d);
            pr_buf_reset(&buf);
            pr_declaration_encode(&d, &buf);
            pr_buf_append(&buf, extras[e], extra_lens[e]);
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "%s + %zu bytes", pr_hand_names[k], extra_lens[e]);
            pr_expect_code(&buf, PR_DLQ_TRAILING_BYTES, ctx);
        }
    }
    /* A declaration followed by a whole second declaration. */
    struct pr_buf two;
    pr_buf_init(&two);
    pr_encode_marked(&buf, true);
    pr_buf_append(&two, buf.data, buf.len);
    pr_buf_append(&two, buf.data, buf.len);
    pr_expect_code(&two, PR_DLQ_TRAILING_BYTES, "two declarations");
    pr_buf_free(&two);
    pr_buf_free(&buf);
}

static void test_hostile_string_lengths(void **state) {
    (void)state;
    struct pr_buf valid, bad, raw;
    pr_buf_init(&valid);
    pr_buf_init(&bad);
    pr_buf_init(&raw);
    pr_encode_marked(&valid, true);
    pr_expect_code(&valid, PR_DLQ_NONE, "marked declaration");
    static const int64_t lengths[] = {INT64_C(1) << 62, -1,      -(INT64_C(1) << 62), INT64_MIN,
                                      INT64_MAX,        1000000, 4294967296LL + 4};
    static const char *const markers[] = {"@ID@",    "@HB@",  "@MB@",    "@CNAME@",
                                          "@SCTRY@", "@MKT@", "@DESC3@", "@ORIG3@"};
    for (size_t m = 0; m < PR_ARRAY_LEN(markers); m++) {
        for (size_t k = 0; k < PR_ARRAY_LEN(lengths); k++) {
            /* The claimed length, then the marker's own bytes. */
            pr_buf_reset(&raw);
            pr_avro_write_long(&raw, lengths[k]);
            pr_buf_append(&raw, markers[m], strlen(markers[m]));
            pr_splice(&bad, &valid, markers[m], 0, raw.data, raw.len);
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "%s with length %" PRId64, markers[m], lengths[k]);
            pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
        }
    }
    /* 2^62 at the very start, as pr_gen_bad makes it. */
    pr_buf_reset(&bad);
    pr_avro_write_long(&bad, INT64_C(1) << 62);
    assert_int_equal(bad.len, 10);
    pr_buf_append(&bad, valid.data, valid.len);
    pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, "declaration_id of 2^62 bytes");
    pr_buf_free(&raw);
    pr_buf_free(&bad);
    pr_buf_free(&valid);
}

static void test_hostile_union_and_enum_index(void **state) {
    (void)state;
    struct pr_buf without, with, bad, raw;
    pr_buf_init(&without);
    pr_buf_init(&with);
    pr_buf_init(&bad);
    pr_buf_init(&raw);
    pr_encode_marked(&without, false);
    pr_encode_marked(&with, true);
    /* Each union follows a marked string; both encodings put the index byte
     * right after it (absent: 0x00, present: 0x02). */
    static const struct {
        const char *marker;
        const char *field;
    } unions[] = {{"@HB@", "master_bill"}, {"@CCTRY@", "seller"}, {"@SCTRY@", "marketplace"}};
    static const int64_t indexes[] = {2, -1, 3, 100, INT64_MIN};
    for (size_t u = 0; u < PR_ARRAY_LEN(unions); u++) {
        const struct pr_buf *src = u == 2 ? &with : &without;
        for (size_t k = 0; k < PR_ARRAY_LEN(indexes); k++) {
            pr_buf_reset(&raw);
            pr_avro_write_string(&raw, unions[u].marker, strlen(unions[u].marker));
            pr_avro_write_long(&raw, indexes[k]);
            pr_splice(&bad, src, unions[u].marker, 1, raw.data, raw.len);
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "%s union index %" PRId64, unions[u].field, indexes[k]);
            pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
        }
    }
    /* freight_usd_cents follows value_usd_cents (13800, 3 bytes) after
     * marketplace: find it through the marketplace marker. */
    {
        uint8_t tail[8];
        size_t n = 0;
        struct pr_buf v;
        pr_buf_init(&v);
        pr_avro_write_long(&v, 13800);
        memcpy(tail, v.data, v.len);
        n = v.len;
        pr_buf_free(&v);
        for (size_t k = 0; k < PR_ARRAY_LEN(indexes); k++) {
            pr_buf_reset(&raw);
            pr_avro_write_string(&raw, "@MKT@", 5);
            pr_buf_append(&raw, tail, n);
            pr_avro_write_long(&raw, indexes[k]);
            pr_splice(&bad, &with, "@MKT@", n + 1, raw.data, raw.len);
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "freight union index %" PRId64, indexes[k]);
            pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
        }
    }
    /* transport_mode follows master_bill: "@MB@" then the enum index. */
    static const int64_t enums[] = {7, 5, -1, 2147483648LL, INT64_MIN};
    for (size_t k = 0; k < PR_ARRAY_LEN(enums); k++) {
        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, "@MB@", 4);
        pr_avro_write_long(&raw, enums[k]);
        pr_splice(&bad, &with, "@MB@", 1, raw.data, raw.len);
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "transport_mode index %" PRId64, enums[k]);
        pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
    }
    /* Control: the same splice with a valid index decodes, to that index. */
    for (int64_t mode = 0; mode < 5; mode++) {
        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, "@MB@", 4);
        pr_avro_write_long(&raw, mode);
        pr_splice(&bad, &with, "@MB@", 1, raw.data, raw.len);
        struct pr_arena arena;
        pr_arena_init(&arena, 1 << 16);
        struct pr_declaration d;
        pr_decode_ok(&bad, &d, &arena, "valid transport_mode");
        assert_int_equal(d.transport_mode, mode);
        pr_arena_destroy(&arena);
    }
    pr_buf_free(&raw);
    pr_buf_free(&bad);
    pr_buf_free(&with);
    pr_buf_free(&without);
}

static void test_hostile_varints(void **state) {
    (void)state;
    struct pr_buf valid, bad, raw;
    pr_buf_init(&valid);
    pr_buf_init(&bad);
    pr_buf_init(&raw);
    pr_encode_marked(&valid, true);
    /* 11-byte varints (10 continuation bytes), as a string length at the
     * start and as arrival_time after "@PORT@". */
    static const uint8_t eleven_zero[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                            0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t eleven_ff[11] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0x01};
    /* 10 bytes whose last one carries more than bit 63. */
    static const uint8_t ten_overflow[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t ten_overflow2[10] = {0x80, 0x80, 0x80, 0x80, 0x80,
                                              0x80, 0x80, 0x80, 0x80, 0x02};
    /* ...and a varint that runs off the end of the message. */
    static const uint8_t unterminated[3] = {0xff, 0xff, 0xff};
    static const struct {
        const uint8_t *bytes;
        size_t len;
        const char *name;
    } varints[] = {{eleven_zero, 11, "11-byte zero"},
                   {eleven_ff, 11, "11-byte all ones"},
                   {ten_overflow, 10, "10 bytes over 64 bits"},
                   {ten_overflow2, 10, "10 bytes, bit 64 set"}};
    struct pr_buf arrival;
    pr_buf_init(&arrival);
    pr_avro_write_long(&arrival, 1759300000000LL);
    for (size_t k = 0; k < PR_ARRAY_LEN(varints); k++) {
        char ctx[96];
        pr_buf_reset(&bad);
        pr_buf_append(&bad, varints[k].bytes, varints[k].len);
        pr_buf_append(&bad, valid.data + 5, valid.len - 5); /* after "@ID@" */
        snprintf(ctx, sizeof(ctx), "%s as declaration_id length", varints[k].name);
        pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);

        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, "@PORT@", 6);
        pr_buf_append(&raw, varints[k].bytes, varints[k].len);
        pr_splice(&bad, &valid, "@PORT@", arrival.len, raw.data, raw.len);
        snprintf(ctx, sizeof(ctx), "%s as arrival_time", varints[k].name);
        pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
    }
    pr_buf_reset(&bad);
    /* 19 bytes: "@ID@", "DHLX", "86", "@HB@", union 1; then master_bill's length. */
    pr_buf_append(&bad, valid.data, 19);
    pr_buf_append(&bad, unterminated, sizeof(unterminated));
    pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, "unterminated varint at the end");

    /* Boundaries that are valid: the 10-byte encodings of INT64_MIN/MAX. */
    static const int64_t extremes[] = {INT64_MIN, INT64_MAX, -1, 0};
    for (size_t k = 0; k < PR_ARRAY_LEN(extremes); k++) {
        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, "@PORT@", 6);
        pr_avro_write_long(&raw, extremes[k]);
        pr_splice(&bad, &valid, "@PORT@", arrival.len, raw.data, raw.len);
        struct pr_arena arena;
        pr_arena_init(&arena, 1 << 16);
        struct pr_declaration d;
        pr_decode_ok(&bad, &d, &arena, "extreme arrival_time");
        assert_true(d.arrival_time == extremes[k]);
        pr_arena_destroy(&arena);
    }
    /* int fields: a long outside the 32-bit range is not an int. gross
     * weight (750) is the last field before the lines. */
    struct pr_declaration d;
    pr_marked(&d, true);
    static const int64_t not_ints[] = {2147483648LL, -2147483649LL, INT64_MAX};
    for (size_t k = 0; k < PR_ARRAY_LEN(not_ints); k++) {
        struct pr_declaration head = d;
        head.gross_weight_grams = 0;
        pr_encode_head(&head, &bad);
        assert_int_equal(bad.data[bad.len - 1], 0); /* the int 0 just written */
        bad.len--;
        pr_avro_write_long(&bad, not_ints[k]);
        pr_encode_lines_blocks(&bad, d.lines, d.line_count, 10, false);
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "gross_weight_grams %" PRId64, not_ints[k]);
        pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, ctx);
    }
    pr_buf_free(&arrival);
    pr_buf_free(&raw);
    pr_buf_free(&bad);
    pr_buf_free(&valid);
}

static void test_hostile_array_counts(void **state) {
    (void)state;
    struct pr_declaration d;
    pr_marked(&d, true);
    struct pr_buf bad, block;
    pr_buf_init(&bad);
    pr_buf_init(&block);
    pr_buf_reset(&block);
    pr_encode_line(&block, &d.lines[0]);
    static const struct {
        int64_t count, block_bytes;
        const char *name;
    } cases[] = {
        {1000000000, 0, "10^9 items"},
        {INT64_MAX, 0, "INT64_MAX items"},
        {-1000000000, 30, "-10^9 items"},
        {INT64_MIN, 30, "INT64_MIN items"},
        {-1, 1000000, "block size beyond the message"},
        {-1, -5, "negative block size"},
        {2, 0, "2 items, 1 present"},
    };
    for (size_t k = 0; k < PR_ARRAY_LEN(cases); k++) {
        pr_encode_head(&d, &bad);
        pr_avro_write_long(&bad, cases[k].count);
        if (cases[k].count < 0) pr_avro_write_long(&bad, cases[k].block_bytes);
        pr_buf_append(&bad, block.data, block.len);
        pr_avro_write_long(&bad, 0);
        pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, cases[k].name);
    }
    /* PR_MAX_LINES: 10000 of the smallest lines decode, 10001 do not, even
     * when split over two blocks. */
    struct pr_line *tiny = calloc(PR_MAX_LINES + 1, sizeof(*tiny));
    assert_non_null(tiny);
    static const char empty[1] = "";
    for (uint32_t i = 0; i <= PR_MAX_LINES; i++)
        tiny[i].hts = tiny[i].description = tiny[i].origin_country = (struct pr_str){empty, 0};
    pr_encode_head(&d, &bad);
    pr_encode_lines_blocks(&bad, tiny, PR_MAX_LINES, PR_MAX_LINES / 2, false);
    pr_expect_code(&bad, PR_DLQ_NONE, "PR_MAX_LINES lines");
    pr_encode_head(&d, &bad);
    pr_encode_lines_blocks(&bad, tiny, PR_MAX_LINES + 1, PR_MAX_LINES / 2 + 1, false);
    pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, "PR_MAX_LINES + 1 lines");
    pr_encode_head(&d, &bad);
    pr_encode_lines_blocks(&bad, tiny, PR_MAX_LINES + 1, PR_MAX_LINES + 1, true);
    pr_expect_code(&bad, PR_DLQ_DECODE_ERROR, "PR_MAX_LINES + 1 lines, negative block");
    free(tiny);
    pr_buf_free(&block);
    pr_buf_free(&bad);
}

/* Negative block counts with a byte size are valid Avro: the lines must
 * decode the same, Avro-C must agree, and our canonical re-encoding must be
 * the single-block form. */
static void test_negative_block_count_is_valid(void **state) {
    struct pr_fixture *f = *state;
    struct pr_buf canonical, blocks, again;
    pr_buf_init(&canonical);
    pr_buf_init(&blocks);
    pr_buf_init(&again);
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    struct pr_declaration d;
    pr_hand_rich(&d);
    pr_buf_reset(&canonical);
    pr_declaration_encode(&d, &canonical);
    static const struct {
        uint32_t per_block;
        bool negative;
    } layouts[] = {{100, true}, {1, true}, {2, true}, {2, false}, {1, false}, {3, true}};
    for (size_t k = 0; k < PR_ARRAY_LEN(layouts); k++) {
        char ctx[96];
        snprintf(ctx, sizeof(ctx), "lines in %s blocks of %u",
                 layouts[k].negative ? "negative" : "positive", layouts[k].per_block);
        pr_encode_head(&d, &blocks);
        pr_encode_lines_blocks(&blocks, d.lines, d.line_count, layouts[k].per_block,
                               layouts[k].negative);
        struct pr_declaration back;
        pr_arena_reset(&arena);
        pr_decode_ok(&blocks, &back, &arena, ctx);
        pr_check_declaration_eq(&back, &d, ctx);
        pr_avro_read_all(&f->declaration, blocks.data, blocks.len, ctx);
        pr_check_declaration_avro(&f->declaration.value, &d, ctx);
        pr_buf_reset(&again);
        pr_declaration_encode(&back, &again);
        pr_check_bytes_eq(again.data, again.len, canonical.data, canonical.len, ctx);
    }
    /* The single negative block spelled out: -5 lines, then their size. */
    pr_encode_head(&d, &blocks);
    size_t head_len = blocks.len;
    pr_encode_lines_blocks(&blocks, d.lines, d.line_count, 100, true);
    assert_int_equal(blocks.data[head_len], 0x09); /* zig-zag -5 */
    pr_arena_destroy(&arena);
    pr_buf_free(&again);
    pr_buf_free(&blocks);
    pr_buf_free(&canonical);
}

static size_t pr_heap_in_use(void) {
#ifdef PR_TEST_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* Memory must grow with the message, not with the square of its blocks: a
 * 14 KB message of 2000 one-line blocks may not claim more than 4 MB of
 * arena (2000 lines need 128 KB). */
static void test_hostile_many_small_blocks_memory(void **state) {
    (void)state;
    struct pr_declaration d;
    pr_marked(&d, false);
    enum { lines = 2000 };
    struct pr_line *tiny = calloc(lines, sizeof(*tiny));
    assert_non_null(tiny);
    static const char empty[1] = "";
    for (uint32_t i = 0; i < lines; i++)
        tiny[i].hts = tiny[i].description = tiny[i].origin_country = (struct pr_str){empty, 0};
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_encode_head(&d, &buf);
    pr_encode_lines_blocks(&buf, tiny, lines, 1, false);
    size_t message_len = buf.len;
    assert_true(message_len < 16 * 1024);
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 16);
    size_t before = pr_heap_in_use();
    struct pr_declaration back;
    char err[256];
    enum pr_dlq_code code =
        pr_declaration_decode(buf.data, buf.len, &back, &arena, err, sizeof(err));
    size_t used = pr_heap_in_use() - before;
    pr_arena_destroy(&arena);
    free(tiny);
    pr_buf_free(&buf);
    assert_int_equal(code, PR_DLQ_NONE);
    assert_int_equal(back.line_count, lines);
    if (used > 4u << 20)
        fail_msg("decoding %d one-line blocks (a %zu-byte message) took %zu bytes of heap", lines,
                 message_len, used);
}

static void test_hostile_invalid_utf8(void **state) {
    (void)state;
    struct pr_buf valid, bad, raw;
    pr_buf_init(&valid);
    pr_buf_init(&bad);
    pr_buf_init(&raw);
    pr_encode_marked(&valid, true);
    static const struct {
        const char *bytes;
        size_t len;
        const char *name;
    } invalid[] = {
        {"\xff", 1, "0xFF"},
        {"ab\xc0\x80", 4, "overlong NUL C0 80"},
        {"\xed\xa0\x80z", 4, "surrogate ED A0 80"},
        {"\xe0\x80\xaf", 3, "overlong slash E0 80 AF"},
        {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
        {"x\xc3", 2, "cut 2-byte sequence"},
        {"\x80", 1, "lone continuation byte"},
    };
    static const struct {
        const char *marker;
        const char *field;
    } fields[] = {{"@ID@", "declaration_id"},       {"@MB@", "master_bill"},
                  {"@SNAME@", "shipper.name"},      {"@CNAME@", "consignee.name"},
                  {"@SCTRY@", "seller.country"},    {"@MKT@", "marketplace"},
                  {"@DESC3@", "lines.description"}, {"@ORIG3@", "lines.origin_country"}};
    for (size_t m = 0; m < PR_ARRAY_LEN(fields); m++) {
        for (size_t k = 0; k < PR_ARRAY_LEN(invalid); k++) {
            pr_buf_reset(&raw);
            pr_avro_write_string(&raw, invalid[k].bytes, invalid[k].len);
            pr_splice(&bad, &valid, fields[m].marker, 0, raw.data, raw.len);
            char ctx[96], err[256];
            snprintf(ctx, sizeof(ctx), "%s in %s", invalid[k].name, fields[m].field);
            struct pr_arena arena;
            pr_arena_init(&arena, 1 << 16);
            enum pr_dlq_code code = pr_decode_exact(bad.data, bad.len, &arena, err, sizeof(err));
            pr_arena_destroy(&arena);
            if (code != PR_DLQ_INVALID_UTF8)
                fail_msg("%s: want INVALID_UTF8, got %s (%s)", ctx, code ? dlq_codes[code] : "NONE",
                         err);
            /* The error names the field, never the bad text itself. */
            if (!strstr(err, fields[m].field))
                fail_msg("%s: error \"%s\" does not name the field", ctx, err);
        }
        /* Control: valid multibyte text in the same place decodes. */
        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa6", 9);
        pr_splice(&bad, &valid, fields[m].marker, 0, raw.data, raw.len);
        pr_expect_code(&bad, PR_DLQ_NONE, fields[m].field);
    }
    pr_buf_free(&raw);
    pr_buf_free(&bad);
    pr_buf_free(&valid);
}

/* ======================================================== pr_utf8_valid */

static bool pr_utf8_exact(const char *s, size_t len) {
    /* A heap copy of exactly len bytes, so ASan sees a read past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    bool ok = pr_utf8_valid(copy, len);
    free(copy);
    return ok;
}

static void test_utf8_valid(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } valid[] = {
        {"", 0},
        {"plain ASCII 0123", 16},
        {"a\0b", 3},
        {"\x7f", 1},
        {"\xc2\x80", 2},          /* U+0080, smallest 2-byte */
        {"\xdf\xbf", 2},          /* U+07FF */
        {"\xc3\xa9t\xc3\xa9", 5}, /* été */
        {"\xe0\xa0\x80", 3},      /* U+0800, smallest 3-byte */
        {"\xe2\x82\xac", 3},      /* € */
        {"\xed\x9f\xbf", 3},      /* U+D7FF, just below the surrogates */
        {"\xee\x80\x80", 3},      /* U+E000, just above */
        {"\xef\xbf\xbf", 3},      /* U+FFFF */
        {"\xf0\x90\x80\x80", 4},  /* U+10000, smallest 4-byte */
        {"\xf0\x9f\x93\xa6", 4},  /* 📦 */
        {"\xf4\x8f\xbf\xbf", 4},  /* U+10FFFF, the last code point */
        {"x\xf0\x9f\x93\xa6y\xc3\xa9", 8},
    };
    for (size_t k = 0; k < PR_ARRAY_LEN(valid); k++)
        if (!pr_utf8_exact(valid[k].s, valid[k].len)) fail_msg("valid UTF-8 #%zu refused", k);

    static const struct {
        const char *s;
        size_t len;
    } invalid[] = {
        {"\xff", 1},
        {"\xfe", 1},
        {"\x80", 1}, /* continuation without a lead */
        {"\xbf", 1},
        {"\xc0\x80", 2},         /* overlong NUL */
        {"\xc1\xbf", 2},         /* overlong U+007F */
        {"\xe0\x80\x80", 3},     /* overlong */
        {"\xe0\x9f\xbf", 3},     /* overlong U+07FF */
        {"\xed\xa0\x80", 3},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 3},     /* U+DFFF */
        {"\xf0\x80\x80\x80", 4}, /* overlong */
        {"\xf0\x8f\xbf\xbf", 4}, /* overlong U+FFFF */
        {"\xf4\x90\x80\x80", 4}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4},
        {"\xf8\x88\x80\x80\x80", 5}, /* old 5-byte form */
        {"\xc2", 1},                 /* cut at the end of the string */
        {"\xe2\x82", 2},
        {"\xf0\x9f\x93", 3},
        {"\xe2\x82"
         "A",
         3},                 /* cut, then ASCII */
        {"\xc2\xc3\xa9", 3}, /* lead followed by a lead */
        {"ok\xc3\xa9\xff", 6},
        {"\xc3\xa9\x80", 3}, /* one continuation too many */
    };
    for (size_t k = 0; k < PR_ARRAY_LEN(invalid); k++)
        if (pr_utf8_exact(invalid[k].s, invalid[k].len)) fail_msg("invalid UTF-8 #%zu accepted", k);

    /* len is respected: a valid sequence cut short by len is invalid. */
    assert_false(pr_utf8_exact("\xc2\x80", 1));
    assert_false(pr_utf8_exact("\xf0\x9f\x93\xa6", 3));
    assert_true(pr_utf8_exact("a\xff", 1));
}

/* ======================================== decode operator: INVALID_ID */

#include "operator.h"

extern const struct pr_operator_ops pr_op_decode;

/* The decode operator (operators/decode.c) on one message whose
 * declaration_id is id: the dead-letter code it sets and the detail. */
static enum pr_dlq_code pr_decode_op_one(const char *id, size_t id_len, char *detail,
                                         size_t detail_size) {
    struct pr_declaration d;
    pr_hand_rich(&d);
    d.declaration_id = (struct pr_str){id, (uint32_t)id_len};
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_declaration_encode(&d, &buf);
    struct pr_config *cfg = pr_config_default();
    assert_non_null(cfg);
    struct pr_operator op = {.ops = &pr_op_decode};
    struct pr_operator_env env = {.cfg = cfg};
    assert_int_equal(pr_op_decode.init(&op, &env), PR_OK);
    struct pr_batch batch;
    pr_batch_init(&batch, 4);
    struct pr_record *rec = pr_batch_push(&batch);
    rec->payload = buf.data;
    rec->payload_len = buf.len;
    assert_int_equal(pr_op_decode.process(&op, &batch), PR_OP_DONE);
    enum pr_dlq_code code = rec->dlq_code;
    snprintf(detail, detail_size, "%s", rec->dlq_detail);
    if (code == PR_DLQ_NONE) {
        /* Decoded by length: the id is the one encoded, byte for byte. */
        assert_int_equal(rec->decl.declaration_id.len, id_len);
        assert_memory_equal(rec->decl.declaration_id.ptr, id, id_len);
    }
    pr_batch_destroy(&batch);
    pr_op_decode.destroy(&op);
    pr_config_free(cfg);
    pr_buf_free(&buf);
    return code;
}

static void test_decode_invalid_id(void **state) {
    (void)state;
    char id129[129], id128[128], ctl200[200];
    memset(id129, 'X', sizeof(id129));
    memset(id128, 'Y', sizeof(id128));
    memset(ctl200, 'Z', sizeof(ctl200));
    ctl200[150] = '\n';
    static const struct {
        const char *id;
        size_t len;
        const char *detail; /* NULL: decided (no dead letter) */
    } cases[] = {
        {"", 0, "declaration_id is empty"},
        {" ", 1, "declaration_id of 1 byte is only spaces"},
        {"    ", 4, "declaration_id of 4 bytes is only spaces"},
        {"ID\x01X", 4, "declaration_id of 4 bytes holds 1 control byte (first: 0x01 at byte 3)"},
        {"ID\0X", 4, "declaration_id of 4 bytes holds 1 control byte (first: 0x00 at byte 3)"},
        {"\x7f"
         "ID",
         3, "declaration_id of 3 bytes holds 1 control byte (first: 0x7F at byte 1)"},
        {"A\tB\r\n", 5, "declaration_id of 5 bytes holds 3 control bytes (first: 0x09 at byte 2)"},
        {" \t ", 3, "declaration_id of 3 bytes holds 1 control byte (first: 0x09 at byte 2)"},
        {"A B", 3, NULL},
        {" A", 2, NULL},
        {"D-\xc3\xa9\xe2\x82\xac", 7, NULL}, /* non-ASCII bytes are not control bytes */
        {"~", 1, NULL},
    };
    char detail[256];
    for (size_t k = 0; k < PR_ARRAY_LEN(cases); k++) {
        enum pr_dlq_code got = pr_decode_op_one(cases[k].id, cases[k].len, detail, sizeof(detail));
        if (cases[k].detail == NULL) {
            if (got != PR_DLQ_NONE)
                fail_msg("case %zu: want no dead letter, got %s (%s)", k, dlq_codes[got], detail);
            continue;
        }
        if (got != PR_DLQ_INVALID_ID)
            fail_msg("case %zu: want INVALID_ID, got %s", k,
                     dlq_codes[got] ? dlq_codes[got] : "NONE");
        assert_string_equal(detail, cases[k].detail);
    }
    assert_int_equal(pr_decode_op_one(id128, sizeof(id128), detail, sizeof(detail)), PR_DLQ_NONE);
    assert_int_equal(pr_decode_op_one(id129, sizeof(id129), detail, sizeof(detail)),
                     PR_DLQ_INVALID_ID);
    assert_string_equal(detail, "declaration_id of 129 bytes is longer than 128 bytes");
    /* Control bytes are named first, whatever the length. */
    assert_int_equal(pr_decode_op_one(ctl200, sizeof(ctl200), detail, sizeof(detail)),
                     PR_DLQ_INVALID_ID);
    assert_string_equal(
        detail, "declaration_id of 200 bytes holds 1 control byte (first: 0x0A at byte 151)");
    /* A message that does not decode keeps its own code, not INVALID_ID. */
    struct pr_declaration d;
    pr_hand_bare(&d);
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_declaration_encode(&d, &buf);
    pr_buf_append(&buf, "x", 1);
    struct pr_config *cfg = pr_config_default();
    struct pr_operator op = {.ops = &pr_op_decode};
    struct pr_operator_env env = {.cfg = cfg};
    assert_int_equal(pr_op_decode.init(&op, &env), PR_OK);
    struct pr_batch batch;
    pr_batch_init(&batch, 1);
    struct pr_record *rec = pr_batch_push(&batch);
    rec->payload = buf.data;
    rec->payload_len = buf.len;
    assert_int_equal(pr_op_decode.process(&op, &batch), PR_OP_DONE);
    assert_int_equal(rec->dlq_code, PR_DLQ_TRAILING_BYTES);
    pr_batch_destroy(&batch);
    pr_op_decode.destroy(&op);
    pr_config_free(cfg);
    pr_buf_free(&buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avro_oracle_sees_trailing_bytes),
        cmocka_unit_test(test_declaration_ours_to_avro_generated),
        cmocka_unit_test(test_declaration_ours_to_avro_handbuilt),
        cmocka_unit_test(test_declaration_avro_to_ours),
        cmocka_unit_test(test_decision_to_avro),
        cmocka_unit_test(test_decision_all_reasons_in_order),
        cmocka_unit_test(test_decision_enums),
        cmocka_unit_test(test_deadletter_to_avro),
        cmocka_unit_test(test_deadletter_too_large_keeps_prefix),
        cmocka_unit_test(test_hostile_every_prefix),
        cmocka_unit_test(test_hostile_trailing_bytes),
        cmocka_unit_test(test_hostile_string_lengths),
        cmocka_unit_test(test_hostile_union_and_enum_index),
        cmocka_unit_test(test_hostile_varints),
        cmocka_unit_test(test_hostile_array_counts),
        cmocka_unit_test(test_negative_block_count_is_valid),
        cmocka_unit_test(test_hostile_many_small_blocks_memory),
        cmocka_unit_test(test_hostile_invalid_utf8),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_decode_invalid_id),
    };
    return cmocka_run_group_tests(tests, pr_group_setup, pr_group_teardown);
}
