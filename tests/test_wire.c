/*
 * test_wire.c - the Confluent wire format and the resolution of other
 * Declaration schema versions (pipeline/codec/wire.c), with no registry: the
 * writer schemas are given here as text, and the writer's bytes are made
 * by Avro-C's generic API (the reference implementation) from those
 * schemas. Every decoded declaration is compared field by field with its
 * v1 twin decoded by the fast decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "operator.h"
#include "schema_registry.h"
#include "schemas.h"
#include "wire.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define S(lit) ((struct pr_str){(lit), (uint32_t)(sizeof(lit) - 1)})

static struct pr_line pr_test_lines[] = {
    {S("6109100010"), S("Cotton T-shirts, men's"), S("CN"), 12, 4800},
    {S("9503000073"), S("Plastic building blocks"), S("VN"), 3, 2599},
};

/* A v1 declaration with every optional field present. */
static void pr_test_declaration(struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    d->declaration_id = S("D-WIRE-1");
    d->filer_code = S("FLR9");
    d->entry_type = S("86");
    d->house_bill = S("HB-778812");
    d->has_master_bill = true;
    d->master_bill = S("MB-1");
    d->transport_mode = 3; /* VESSEL */
    d->port_of_entry = S("2704");
    d->arrival_time = 1760000000000LL;
    d->event_time = 1759990000000LL;
    d->shipper = (struct pr_party){S("Shenzhen Bright Trading Co."), S("88 Bao'an Rd"),
                                   S("Shenzhen"), S("518000"), S("CN")};
    d->consignee = (struct pr_party){S("Jane Roe"), S("1234 Elm Street, Apt. 5B"), S("Springfield"),
                                     S("62704"), S("US")};
    d->has_seller = true;
    d->seller =
        (struct pr_party){S("Bright Store"), S("1 Market St"), S("Shenzhen"), S(""), S("CN")};
    d->has_marketplace = true;
    d->marketplace = S("bazaar.example");
    d->value_usd_cents = 7399;
    d->has_freight = true;
    d->freight_usd_cents = 1200;
    d->gross_weight_grams = 2100;
    d->line_count = 2;
    d->lines = pr_test_lines;
}

/* ------------------------------------------------- writer-side helpers */

/* Our schema with fields removed and added, as a hub's other version. */
static char *pr_schema_variant(const char *const *remove, size_t remove_count, const char *add_json,
                               const char *rename_record) {
    json_error_t jerr;
    json_t *doc = json_loads(pr_schema_declaration, 0, &jerr);
    assert_non_null(doc);
    json_t *fields = json_object_get(doc, "fields");
    for (size_t r = 0; r < remove_count; r++) {
        for (size_t i = 0; i < json_array_size(fields); i++) {
            if (strcmp(json_string_value(json_object_get(json_array_get(fields, i), "name")),
                       remove[r]) == 0) {
                json_array_remove(fields, i);
                break;
            }
        }
    }
    if (add_json) json_array_append_new(fields, json_loads(add_json, 0, &jerr));
    if (rename_record) json_object_set_new(doc, "name", json_string(rename_record));
    char *text = json_dumps(doc, JSON_INDENT(3));
    json_decref(doc);
    return text;
}

/* Avro-C wants NUL-terminated strings: copy the view. */
static void pr_set_string(avro_value_t *v, struct pr_str s) {
    char *copy = strndup(s.ptr, s.len);
    assert_int_equal(avro_value_set_string(v, copy), 0);
    free(copy);
}

static void pr_set_str(avro_value_t *rec, const char *name, struct pr_str s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return;
    pr_set_string(&f, s);
}

static void pr_set_party(avro_value_t *rec, const char *name, const struct pr_party *p,
                         bool optional) {
    avro_value_t f, party, x;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return;
    if (optional) {
        assert_int_equal(avro_value_set_branch(&f, 1, &party), 0);
    } else {
        party = f;
    }
    const struct pr_str *parts[] = {&p->name, &p->address, &p->city, &p->postal_code, &p->country};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(avro_value_get_by_index(&party, i, &x, NULL), 0);
        pr_set_string(&x, *parts[i]);
    }
}

static void pr_set_long(avro_value_t *rec, const char *name, int64_t v) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return;
    if (avro_value_get_type(&f) == AVRO_INT32)
        assert_int_equal(avro_value_set_int(&f, (int32_t)v), 0);
    else
        assert_int_equal(avro_value_set_long(&f, v), 0);
}

static void pr_set_opt_str(avro_value_t *rec, const char *name, bool present, struct pr_str s) {
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return;
    assert_int_equal(avro_value_set_branch(&f, present ? 1 : 0, &b), 0);
    if (present) pr_set_string(&b, s);
}

static void pr_set_opt_long(avro_value_t *rec, const char *name, bool present, int64_t v) {
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return;
    assert_int_equal(avro_value_set_branch(&f, present ? 1 : 0, &b), 0);
    if (present) assert_int_equal(avro_value_set_long(&b, v), 0);
}

/* Writes d with Avro-C under writer_json; fields the writer lacks are
 * skipped; extra optional fields are set by the caller's extra(). */
static void pr_write_variant(const char *writer_json, const struct pr_declaration *d,
                             void (*extra)(avro_value_t *rec), struct pr_buf *out) {
    avro_schema_t schema;
    assert_int_equal(avro_schema_from_json_length(writer_json, strlen(writer_json), &schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t rec, f, item, x;
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    pr_set_str(&rec, "declaration_id", d->declaration_id);
    pr_set_str(&rec, "filer_code", d->filer_code);
    pr_set_str(&rec, "entry_type", d->entry_type);
    pr_set_str(&rec, "house_bill", d->house_bill);
    pr_set_opt_str(&rec, "master_bill", d->has_master_bill, d->master_bill);
    if (avro_value_get_by_name(&rec, "transport_mode", &f, NULL) == 0)
        assert_int_equal(avro_value_set_enum(&f, d->transport_mode), 0);
    pr_set_str(&rec, "port_of_entry", d->port_of_entry);
    pr_set_long(&rec, "arrival_time", d->arrival_time);
    pr_set_long(&rec, "event_time", d->event_time);
    pr_set_party(&rec, "shipper", &d->shipper, false);
    pr_set_party(&rec, "consignee", &d->consignee, false);
    if (avro_value_get_by_name(&rec, "seller", &f, NULL) == 0) {
        if (d->has_seller)
            pr_set_party(&rec, "seller", &d->seller, true);
        else
            assert_int_equal(avro_value_set_branch(&f, 0, &x), 0);
    }
    pr_set_opt_str(&rec, "marketplace", d->has_marketplace, d->marketplace);
    pr_set_long(&rec, "value_usd_cents", d->value_usd_cents);
    pr_set_opt_long(&rec, "freight_usd_cents", d->has_freight, d->freight_usd_cents);
    pr_set_long(&rec, "gross_weight_grams", d->gross_weight_grams);
    assert_int_equal(avro_value_get_by_name(&rec, "lines", &f, NULL), 0);
    for (uint32_t i = 0; i < d->line_count; i++) {
        const struct pr_line *l = &d->lines[i];
        assert_int_equal(avro_value_append(&f, &item, NULL), 0);
        pr_set_str(&item, "hts", l->hts);
        pr_set_str(&item, "description", l->description);
        pr_set_str(&item, "origin_country", l->origin_country);
        pr_set_long(&item, "quantity", l->quantity);
        pr_set_long(&item, "value_usd_cents", l->value_usd_cents);
    }
    if (extra) extra(&rec);
    size_t size;
    assert_int_equal(avro_value_sizeof(&rec, &size), 0);
    pr_buf_reset(out);
    pr_buf_reserve(out, size);
    avro_writer_t w = avro_writer_memory((const char *)out->data, (int64_t)size);
    assert_int_equal(avro_value_write(w, &rec), 0);
    out->len = size;
    avro_writer_free(w);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
}

/* ------------------------------------------------------------ compare */

static void pr_expect_str(struct pr_str got, struct pr_str want, const char *what) {
    if (got.len != want.len || memcmp(got.ptr, want.ptr, got.len) != 0)
        fail_msg("%s: got '%.*s', want '%.*s'", what, (int)got.len, got.ptr, (int)want.len,
                 want.ptr);
}

static void pr_expect_party(const struct pr_party *got, const struct pr_party *want,
                            const char *what) {
    pr_expect_str(got->name, want->name, what);
    pr_expect_str(got->address, want->address, what);
    pr_expect_str(got->city, want->city, what);
    pr_expect_str(got->postal_code, want->postal_code, what);
    pr_expect_str(got->country, want->country, what);
}

static void pr_expect_same(const struct pr_declaration *got, const struct pr_declaration *want) {
    pr_expect_str(got->declaration_id, want->declaration_id, "declaration_id");
    pr_expect_str(got->filer_code, want->filer_code, "filer_code");
    pr_expect_str(got->entry_type, want->entry_type, "entry_type");
    pr_expect_str(got->house_bill, want->house_bill, "house_bill");
    assert_int_equal(got->has_master_bill, want->has_master_bill);
    if (want->has_master_bill) pr_expect_str(got->master_bill, want->master_bill, "master_bill");
    assert_int_equal(got->transport_mode, want->transport_mode);
    pr_expect_str(got->port_of_entry, want->port_of_entry, "port_of_entry");
    assert_int_equal(got->arrival_time, want->arrival_time);
    assert_int_equal(got->event_time, want->event_time);
    pr_expect_party(&got->shipper, &want->shipper, "shipper");
    pr_expect_party(&got->consignee, &want->consignee, "consignee");
    assert_int_equal(got->has_seller, want->has_seller);
    if (want->has_seller) pr_expect_party(&got->seller, &want->seller, "seller");
    assert_int_equal(got->has_marketplace, want->has_marketplace);
    if (want->has_marketplace) pr_expect_str(got->marketplace, want->marketplace, "marketplace");
    assert_int_equal(got->value_usd_cents, want->value_usd_cents);
    assert_int_equal(got->has_freight, want->has_freight);
    if (want->has_freight) assert_int_equal(got->freight_usd_cents, want->freight_usd_cents);
    assert_int_equal(got->gross_weight_grams, want->gross_weight_grams);
    assert_int_equal(got->line_count, want->line_count);
    for (uint32_t i = 0; i < want->line_count; i++) {
        pr_expect_str(got->lines[i].hts, want->lines[i].hts, "hts");
        pr_expect_str(got->lines[i].description, want->lines[i].description, "description");
        pr_expect_str(got->lines[i].origin_country, want->lines[i].origin_country,
                      "origin_country");
        assert_int_equal(got->lines[i].quantity, want->lines[i].quantity);
        assert_int_equal(got->lines[i].value_usd_cents, want->lines[i].value_usd_cents);
    }
}

/* Decodes bytes through a reader of writer_json and checks it gives want,
 * and that want encoded as v1 by the fast encoder decodes to the same. */
static void pr_expect_decodes_as(const char *writer_json, enum pr_writer_kind kind,
                                 const struct pr_buf *bytes, const struct pr_declaration *want) {
    struct pr_decl_reader *reader = pr_decl_reader_new(writer_json, strlen(writer_json));
    if (pr_decl_reader_kind(reader) != kind)
        fail_msg("reader kind %d, want %d (%s)", pr_decl_reader_kind(reader), kind,
                 pr_decl_reader_why(reader));
    struct pr_arena arena;
    pr_arena_init(&arena, 4096);
    struct pr_declaration got, twin;
    char err[192];
    enum pr_dlq_code code =
        pr_decl_reader_decode(reader, bytes->data, bytes->len, &got, &arena, err, sizeof(err));
    if (code != PR_DLQ_NONE) fail_msg("decode gave code %d: %s", code, err);
    pr_expect_same(&got, want);
    /* The v1 twin through the fast decoder. */
    struct pr_buf v1;
    pr_buf_init(&v1);
    pr_declaration_encode(want, &v1);
    assert_int_equal(pr_declaration_decode(v1.data, v1.len, &twin, &arena, err, sizeof(err)),
                     PR_DLQ_NONE);
    pr_expect_same(&got, &twin);
    /* The same reader again (values are reused across records). */
    assert_int_equal(
        pr_decl_reader_decode(reader, bytes->data, bytes->len, &got, &arena, err, sizeof(err)),
        PR_DLQ_NONE);
    pr_expect_same(&got, want);
    pr_buf_free(&v1);
    pr_arena_destroy(&arena);
    pr_decl_reader_free(reader);
}

/* -------------------------------------------------------------- tests */

static void test_header(void **state) {
    (void)state;
    uint8_t h[PR_WIRE_HEADER_BYTES];
    pr_wire_header(0x01020304u, h);
    const uint8_t want[] = {0, 1, 2, 3, 4};
    assert_memory_equal(h, want, sizeof(want));
    uint32_t id = 0;
    assert_int_equal(pr_wire_parse(h, sizeof(h), &id), PR_WIRE_FRAMED);
    assert_int_equal(id, 0x01020304u);
    pr_wire_header(4000000000u, h);
    assert_int_equal(pr_wire_parse(h, sizeof(h), &id), PR_WIRE_FRAMED);
    assert_int_equal(id, 4000000000u);
    for (size_t n = 1; n < PR_WIRE_HEADER_BYTES; n++)
        assert_int_equal(pr_wire_parse(h, n, &id), PR_WIRE_TRUNCATED);
    assert_int_equal(pr_wire_parse(h, 0, &id), PR_WIRE_UNFRAMED);
    /* A plain Declaration starts with its id's length, never 0 for a
     * decidable one. */
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf plain;
    pr_buf_init(&plain);
    pr_declaration_encode(&d, &plain);
    assert_int_equal(pr_wire_parse(plain.data, plain.len, &id), PR_WIRE_UNFRAMED);
    pr_buf_free(&plain);
}

/* Our own schema, reformatted (indentation, key order, no doc): the fast
 * decoder reads it, on the very bytes of the fast encoder. */
static void test_same_schema_fast_path(void **state) {
    (void)state;
    json_error_t jerr;
    json_t *doc = json_loads(pr_schema_declaration, 0, &jerr);
    json_object_del(doc, "doc");
    char *text = json_dumps(doc, JSON_INDENT(7) | JSON_SORT_KEYS);
    json_decref(doc);
    assert_true(strcmp(text, pr_schema_declaration) != 0);
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf bytes;
    pr_buf_init(&bytes);
    pr_declaration_encode(&d, &bytes);
    pr_expect_decodes_as(text, PR_WRITER_SAME, &bytes, &d);
    pr_expect_decodes_as(pr_schema_declaration, PR_WRITER_SAME, &bytes, &d);
    free(text);
    pr_buf_free(&bytes);
}

static void pr_set_hub_reference(avro_value_t *rec) {
    avro_value_t f, b;
    assert_int_equal(avro_value_get_by_name(rec, "hub_reference", &f, NULL), 0);
    assert_int_equal(avro_value_set_branch(&f, 1, &b), 0);
    assert_int_equal(avro_value_set_string(&b, "hub-ref-99"), 0);
}

/* v2: one added optional field, marketplace (null default in ours)
 * removed. Read through resolution; marketplace comes back null. */
static void test_v2_added_and_removed_field(void **state) {
    (void)state;
    static const char *const removed[] = {"marketplace"};
    char *v2 = pr_schema_variant(
        removed, 1,
        "{\"name\": \"hub_reference\", \"type\": [\"null\", \"string\"], \"default\": null}", NULL);
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf bytes;
    pr_buf_init(&bytes);
    pr_write_variant(v2, &d, pr_set_hub_reference, &bytes);
    d.has_marketplace = false; /* what v2 cannot carry: our default */
    pr_expect_decodes_as(v2, PR_WRITER_RESOLVED, &bytes, &d);
    free(v2);
    pr_buf_free(&bytes);
}

/* v0: an older hub without seller and freight, value_usd_cents written
 * as int (promoted to our long). */
static void test_v0_promoted_and_missing_fields(void **state) {
    (void)state;
    static const char *const removed[] = {"seller", "freight_usd_cents", "value_usd_cents"};
    char *v0 =
        pr_schema_variant(removed, 3, "{\"name\": \"value_usd_cents\", \"type\": \"int\"}", NULL);
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf bytes;
    pr_buf_init(&bytes);
    pr_write_variant(v0, &d, NULL, &bytes);
    d.has_seller = false;
    d.has_freight = false;
    pr_expect_decodes_as(v0, PR_WRITER_RESOLVED, &bytes, &d);
    free(v0);
    pr_buf_free(&bytes);
}

static void pr_expect_unresolvable(const char *writer_json, const char *why_part) {
    struct pr_decl_reader *reader = pr_decl_reader_new(writer_json, strlen(writer_json));
    assert_int_equal(pr_decl_reader_kind(reader), PR_WRITER_UNRESOLVABLE);
    if (!strstr(pr_decl_reader_why(reader), why_part))
        fail_msg("why '%s' does not mention '%s'", pr_decl_reader_why(reader), why_part);
    struct pr_arena arena;
    pr_arena_init(&arena, 1024);
    struct pr_declaration d;
    char err[192];
    const uint8_t body[] = {2, 'x'};
    assert_int_equal(
        pr_decl_reader_decode(reader, body, sizeof(body), &d, &arena, err, sizeof(err)),
        PR_DLQ_UNKNOWN_SCHEMA);
    assert_string_equal(err, pr_decl_reader_why(reader));
    pr_arena_destroy(&arena);
    pr_decl_reader_free(reader);
}

static void test_unresolvable_writers(void **state) {
    (void)state;
    static const char *const no_bill[] = {"house_bill"};
    char *s = pr_schema_variant(no_bill, 1, NULL, NULL);
    pr_expect_unresolvable(s, "house_bill");
    free(s);
    char *renamed = pr_schema_variant(NULL, 0, NULL, "Shipment");
    pr_expect_unresolvable(renamed, "does not resolve");
    free(renamed);
    static const char *const lines[] = {"lines"};
    char *bad_type =
        pr_schema_variant(lines, 1, "{\"name\": \"lines\", \"type\": \"string\"}", NULL);
    pr_expect_unresolvable(bad_type, "does not resolve");
    free(bad_type);
    pr_expect_unresolvable("{\"type\": \"record\", \"name\": ", "does not parse");
    pr_expect_unresolvable("\"string\"", "not a record");
}

/* Bad bytes on the resolved path: the same codes as the fast path. */
static void test_resolved_bad_bytes(void **state) {
    (void)state;
    static const char *const removed[] = {"marketplace"};
    char *v2 = pr_schema_variant(removed, 1, NULL, NULL);
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf bytes;
    pr_buf_init(&bytes);
    pr_write_variant(v2, &d, NULL, &bytes);
    struct pr_decl_reader *reader = pr_decl_reader_new(v2, strlen(v2));
    assert_int_equal(pr_decl_reader_kind(reader), PR_WRITER_RESOLVED);
    struct pr_arena arena;
    pr_arena_init(&arena, 4096);
    struct pr_declaration got;
    char err[192];
    /* Truncated anywhere: DECODE_ERROR. */
    for (size_t cut = 0; cut < bytes.len; cut += 7)
        assert_int_equal(
            pr_decl_reader_decode(reader, bytes.data, cut, &got, &arena, err, sizeof(err)),
            PR_DLQ_DECODE_ERROR);
    /* One byte more: TRAILING_BYTES. */
    pr_buf_append(&bytes, "\x02", 1);
    assert_int_equal(
        pr_decl_reader_decode(reader, bytes.data, bytes.len, &got, &arena, err, sizeof(err)),
        PR_DLQ_TRAILING_BYTES);
    bytes.len--;
    /* Invalid UTF-8 in a string is caught by the fast decoder after
     * resolution: the id is 8 bytes at offset 1. */
    bytes.data[3] = 0xff;
    assert_int_equal(
        pr_decl_reader_decode(reader, bytes.data, bytes.len, &got, &arena, err, sizeof(err)),
        PR_DLQ_INVALID_UTF8);
    pr_arena_destroy(&arena);
    pr_decl_reader_free(reader);
    pr_buf_free(&bytes);
    free(v2);
}

/* Hostile bytes on the resolved path: random corruptions of a valid v2
 * record never crash and always give a code (Avro-C is not hardened; the
 * payload is capped by input.max_message_bytes before this). */
static void test_resolved_corrupted_bytes(void **state) {
    (void)state;
    static const char *const removed[] = {"marketplace"};
    char *v2 = pr_schema_variant(removed, 1, NULL, NULL);
    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf bytes, bad;
    pr_buf_init(&bytes);
    pr_buf_init(&bad);
    pr_write_variant(v2, &d, NULL, &bytes);
    struct pr_decl_reader *reader = pr_decl_reader_new(v2, strlen(v2));
    struct pr_arena arena;
    pr_arena_init(&arena, 4096);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t decoded = 0;
    for (int round = 0; round < 3000; round++) {
        pr_buf_reset(&bad);
        pr_buf_append(&bad, bytes.data, bytes.len);
        int flips = 1 + round % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            bad.data[x % bad.len] = (uint8_t)(x >> 32);
        }
        struct pr_declaration got;
        char err[192];
        enum pr_dlq_code code =
            pr_decl_reader_decode(reader, bad.data, bad.len, &got, &arena, err, sizeof(err));
        if (code == PR_DLQ_NONE)
            decoded++;
        else
            assert_true(code == PR_DLQ_DECODE_ERROR || code == PR_DLQ_TRAILING_BYTES ||
                        code == PR_DLQ_INVALID_UTF8);
        pr_arena_reset(&arena);
    }
    assert_true(decoded < 3000);
    pr_arena_destroy(&arena);
    pr_decl_reader_free(reader);
    pr_buf_free(&bytes);
    pr_buf_free(&bad);
    free(v2);
}

/* A lines block with its byte size (a negative count): the size must match
 * the items exactly, on the fast path and on the resolved path alike. */
static void test_block_size_checked(void **state) {
    (void)state;
    /* v2: ours plus an optional field at the end: a v1 record followed by
     * a null is a v2 record. */
    char *v2 = pr_schema_variant(
        NULL, 0,
        "{\"name\": \"hub_reference\", \"type\": [\"null\", \"string\"], \"default\": null}", NULL);
    struct pr_decl_reader *reader = pr_decl_reader_new(v2, strlen(v2));
    assert_int_equal(pr_decl_reader_kind(reader), PR_WRITER_RESOLVED);
    struct pr_declaration d;
    pr_test_declaration(&d);
    d.line_count = 0;
    struct pr_buf head, item;
    pr_buf_init(&head);
    pr_buf_init(&item);
    pr_declaration_encode(&d, &head);
    head.len--; /* the empty array's 0 */
    const struct pr_line *l = &pr_test_lines[0];
    pr_avro_write_string(&item, l->hts.ptr, l->hts.len);
    pr_avro_write_string(&item, l->description.ptr, l->description.len);
    pr_avro_write_string(&item, l->origin_country.ptr, l->origin_country.len);
    pr_avro_write_long(&item, l->quantity);
    pr_avro_write_long(&item, l->value_usd_cents);
    struct pr_arena arena;
    pr_arena_init(&arena, 4096);
    char err[192];
    for (int64_t delta = -1; delta <= 1; delta++) {
        struct pr_buf msg;
        pr_buf_init(&msg);
        pr_buf_append(&msg, head.data, head.len);
        pr_avro_write_long(&msg, -1);
        pr_avro_write_long(&msg, (int64_t)item.len + delta);
        pr_buf_append(&msg, item.data, item.len);
        pr_avro_write_long(&msg, 0); /* end of the array, and the end of a v1 record */
        enum pr_dlq_code want = delta == 0 ? PR_DLQ_NONE : PR_DLQ_DECODE_ERROR;
        struct pr_declaration got;
        assert_int_equal(pr_declaration_decode(msg.data, msg.len, &got, &arena, err, sizeof(err)),
                         want);
        if (delta == 0) assert_int_equal(got.line_count, 1);
        pr_buf_append(&msg, "\0", 1); /* v2's hub_reference: null */
        assert_int_equal(
            pr_decl_reader_decode(reader, msg.data, msg.len, &got, &arena, err, sizeof(err)), want);
        if (delta == 0) assert_int_equal(got.line_count, 1);
        pr_buf_free(&msg);
    }
    pr_arena_destroy(&arena);
    pr_buf_free(&head);
    pr_buf_free(&item);
    pr_decl_reader_free(reader);
    free(v2);
}

/* ------------------------------------------------- the operators, framed */

static void pr_test_batch(struct pr_batch *batch) {
    pr_batch_init(batch, 8);
    batch->source_topic = "declarations";
    batch->refdata_version = "none";
    batch->now_ms = 1760000000000LL;
}

/* One decided record and one dead letter through encode: without ids the
 * bytes are exactly the codec's (as before registries existed); with ids,
 * the same bytes behind the header of each output's schema id. */
static void test_encode_framing(void **state) {
    (void)state;
    const struct pr_operator_ops *ops = pr_operator_lookup("encode");
    assert_non_null(ops);
    struct pr_config *cfg = pr_config_default();
    struct pr_operator op = {.ops = ops};
    struct pr_operator_env env = {.cfg = cfg};
    assert_int_equal(ops->init(&op, &env), PR_OK);
    static const struct pr_output_ids ids = {.decision = 7, .alert = 8, .deadletter = 0x01020304};
    for (int framed = 0; framed < 2; framed++) {
        struct pr_batch batch;
        pr_test_batch(&batch);
        batch.frame = framed ? &ids : NULL;
        struct pr_record *decided = pr_batch_push(&batch);
        pr_test_declaration(&decided->decl);
        snprintf(decided->consignee_key, sizeof(decided->consignee_key), "%064d", 0);
        decided->lane = PR_LANE_YELLOW;
        decided->score = 300;
        decided->outputs = PR_OUT_DECISION | PR_OUT_ALERT;
        struct pr_record *dead = pr_batch_push(&batch);
        dead->payload = (const uint8_t *)"\x00\x00\x00";
        dead->payload_len = 3;
        pr_record_dead_letter(dead, PR_DLQ_UNKNOWN_SCHEMA,
                              "framed value of 3 bytes: truncated header");
        dead->outputs = PR_OUT_DLQ;
        assert_int_equal(ops->process(&op, &batch), PR_OP_DONE);
        struct pr_buf want;
        pr_buf_init(&want);
        uint8_t h[PR_WIRE_HEADER_BYTES];
        if (framed) {
            pr_wire_header(7, h);
            pr_buf_append(&want, h, sizeof(h));
        }
        pr_decision_encode(&batch, decided, &want);
        assert_int_equal(decided->out_decision.len, want.len);
        assert_memory_equal(decided->out_decision.ptr, want.data, want.len);
        if (!framed) assert_int_not_equal((uint8_t)decided->out_decision.ptr[0], 0);
        pr_buf_reset(&want);
        if (framed) {
            pr_wire_header(0x01020304, h);
            pr_buf_append(&want, h, sizeof(h));
        }
        pr_deadletter_encode(&batch, dead, dead->payload_len, &want);
        assert_int_equal(dead->out_dlq.len, want.len);
        assert_memory_equal(dead->out_dlq.ptr, want.data, want.len);
        pr_buf_free(&want);
        pr_batch_destroy(&batch);
    }
    ops->destroy(&op);
    pr_config_free(cfg);
}

/* A loopback port with nothing listening (bound, then closed). */
static int pr_closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* decode with a registry that does not answer (connection refused: a real
 * failure, no server stands in): a batch holding a framed value is given
 * back untouched (PR_OP_RETRY, nothing dead-lettered, nothing decoded);
 * a batch without framed values needs no registry: plain values decode,
 * a truncated header is UNKNOWN_SCHEMA. */
static void test_decode_registry_unavailable(void **state) {
    (void)state;
    const struct pr_operator_ops *ops = pr_operator_lookup("decode");
    struct pr_config *cfg = pr_config_default();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", pr_closed_port());
    assert_int_equal(pr_config_set(cfg, "schema_registry.url", url, "test", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "schema_registry.timeout_ms", "1000", "test", 0), PR_OK);
    struct pr_operator op = {.ops = ops};
    struct pr_operator_env env = {.cfg = cfg};
    assert_int_equal(ops->init(&op, &env), PR_OK);

    struct pr_declaration d;
    pr_test_declaration(&d);
    struct pr_buf plain, framed;
    pr_buf_init(&plain);
    pr_buf_init(&framed);
    pr_declaration_encode(&d, &plain);
    uint8_t h[PR_WIRE_HEADER_BYTES];
    pr_wire_header(42, h);
    pr_buf_append(&framed, h, sizeof(h));
    pr_buf_append(&framed, plain.data, plain.len);

    struct pr_batch batch;
    pr_test_batch(&batch);
    struct pr_record *a = pr_batch_push(&batch), *b = pr_batch_push(&batch);
    a->payload = plain.data;
    a->payload_len = plain.len;
    b->payload = framed.data;
    b->payload_len = framed.len;
    for (int attempt = 0; attempt < 2; attempt++) {
        assert_int_equal(ops->process(&op, &batch), PR_OP_RETRY);
        assert_int_equal(a->dlq_code, PR_DLQ_NONE);
        assert_int_equal(b->dlq_code, PR_DLQ_NONE);
        assert_int_equal(a->decl.declaration_id.len, 0); /* not decoded either */
    }
    pr_batch_destroy(&batch);

    pr_test_batch(&batch);
    a = pr_batch_push(&batch);
    b = pr_batch_push(&batch);
    a->payload = plain.data;
    a->payload_len = plain.len;
    b->payload = framed.data;
    b->payload_len = 4;
    assert_int_equal(ops->process(&op, &batch), PR_OP_DONE);
    assert_int_equal(a->dlq_code, PR_DLQ_NONE);
    pr_expect_same(&a->decl, &d);
    assert_int_equal(b->dlq_code, PR_DLQ_UNKNOWN_SCHEMA);
    assert_non_null(strstr(b->dlq_detail, "truncated header"));
    pr_batch_destroy(&batch);

    ops->destroy(&op);
    pr_config_free(cfg);
    pr_buf_free(&plain);
    pr_buf_free(&framed);
}

/* The configuration: the password is a secret, credentials in the URL and
 * a user without a password are refused. */
static void test_registry_config(void **state) {
    (void)state;
    assert_true(pr_config_key_is_secret("schema_registry.password"));
    assert_false(pr_config_key_is_secret("schema_registry.user"));
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(pr_config_validate(cfg), PR_OK);
    assert_int_equal(
        pr_config_set(cfg, "schema_registry.url", "http://u:p@127.0.0.1:8081", "test", 0), PR_OK);
    assert_int_equal(pr_config_validate(cfg), PR_ERR);
    assert_int_equal(pr_config_set(cfg, "schema_registry.url", "ftp://127.0.0.1:8081", "test", 0),
                     PR_OK);
    assert_int_equal(pr_config_validate(cfg), PR_ERR);
    assert_int_equal(pr_config_set(cfg, "schema_registry.url",
                                   "https://registry.example:8081/apis/ccompat/v7", "test", 0),
                     PR_OK);
    assert_int_equal(pr_config_validate(cfg), PR_OK);
    assert_int_equal(pr_config_set(cfg, "schema_registry.user", "hub", "test", 0), PR_OK);
    assert_int_equal(pr_config_validate(cfg), PR_ERR);
    assert_int_equal(pr_config_set(cfg, "schema_registry.password", "s3cret", "test", 0), PR_OK);
    assert_int_equal(pr_config_validate(cfg), PR_OK);
    assert_int_equal(pr_config_set(cfg, "schema_registry.subject_strategy", "by_magic", "test", 0),
                     PR_ERR);
    pr_config_free(cfg);
    char subject[128];
    pr_schema_registry_subject("topic_name", "decisions", "parcelrisk.Decision", subject,
                               sizeof(subject));
    assert_string_equal(subject, "decisions-value");
    pr_schema_registry_subject("record_name", "decisions", "parcelrisk.Decision", subject,
                               sizeof(subject));
    assert_string_equal(subject, "parcelrisk.Decision");
    pr_schema_registry_subject("topic_record_name", "alerts", "parcelrisk.Decision", subject,
                               sizeof(subject));
    assert_string_equal(subject, "alerts-parcelrisk.Decision");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_same_schema_fast_path),
        cmocka_unit_test(test_v2_added_and_removed_field),
        cmocka_unit_test(test_v0_promoted_and_missing_fields),
        cmocka_unit_test(test_unresolvable_writers),
        cmocka_unit_test(test_resolved_bad_bytes),
        cmocka_unit_test(test_resolved_corrupted_bytes),
        cmocka_unit_test(test_block_size_checked),
        cmocka_unit_test(test_encode_framing),
        cmocka_unit_test(test_decode_registry_unavailable),
        cmocka_unit_test(test_registry_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
