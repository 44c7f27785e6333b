/*
 * make_corpus.c - writes the seed corpus of fuzz_decode into a directory:
 * valid declarations (pr_gen plus hand-made ones that reach other paths of
 * the operators) and broken ones, one per kind of damage the decoder must
 * refuse. Each seed is checked against the decoder before it is written:
 * a seed that does not decode as its name says stops the build, because the
 * corpus would no longer be what it claims.
 *
 *   make_corpus DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "gen.h"

#define SI(lit)                                                                                    \
    { (lit), (uint32_t)(sizeof(lit) - 1) }
#define S(lit) ((struct pr_str)SI(lit))

/* 2025-10-01T00:00:00Z: de minimis suspended for every origin. */
#define START_MS 1759276800000LL

struct pr_corpus {
    const char *dir;
    struct pr_arena arena;
    int written, wrong;
};

static void pr_seed(struct pr_corpus *c, const char *name, const struct pr_buf *buf,
                    enum pr_dlq_code want) {
    char err[256];
    struct pr_declaration d;
    pr_arena_reset(&c->arena);
    enum pr_dlq_code got =
        pr_declaration_decode(buf->data, buf->len, &d, &c->arena, err, sizeof(err));
    if (got != want) {
        fprintf(stderr, "make_corpus: seed %s decodes as %s, not %s (%s)\n", name,
                pr_dlq_names[got], pr_dlq_names[want], err);
        c->wrong++;
        return;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf->data, 1, buf->len, f) != buf->len || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    c->written++;
}

/* The encoding of d cut before its lines array. */
static void pr_head(const struct pr_declaration *d, struct pr_buf *out) {
    struct pr_declaration head = *d;
    head.line_count = 0;
    head.lines = NULL;
    pr_buf_reset(out);
    pr_declaration_encode(&head, out);
    out->len--; /* the 0 that ends the empty array */
}

static void pr_line(struct pr_buf *out, const struct pr_line *l) {
    pr_avro_write_string(out, l->hts.ptr, l->hts.len);
    pr_avro_write_string(out, l->description.ptr, l->description.len);
    pr_avro_write_string(out, l->origin_country.ptr, l->origin_country.len);
    pr_avro_write_long(out, l->quantity);
    pr_avro_write_long(out, l->value_usd_cents);
}

/* Replaces the encoded string s (its length byte and bytes) of in, and the
 * skip bytes after it, with raw. s is the first match of its encoding. */
static void pr_splice(struct pr_buf *out, const struct pr_buf *in, struct pr_str s, size_t skip,
                      const struct pr_buf *raw) {
    for (size_t i = 1; i + s.len <= in->len; i++) {
        if (in->data[i - 1] != (uint8_t)(s.len * 2) || memcmp(in->data + i, s.ptr, s.len) != 0)
            continue;
        pr_buf_reset(out);
        pr_buf_append(out, in->data, i - 1);
        pr_buf_append(out, raw->data, raw->len);
        pr_buf_append(out, in->data + i + s.len + skip, in->len - (i + s.len + skip));
        return;
    }
    fprintf(stderr, "make_corpus: marker %.*s not found\n", (int)s.len, s.ptr);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    struct pr_corpus c = {.dir = argv[1]};
    if (mkdir(c.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: %s: %s\n", c.dir, strerror(errno));
        return 1;
    }
    pr_arena_init(&c.arena, 1 << 16);
    struct pr_buf buf, tmp, raw;
    pr_buf_init(&buf);
    pr_buf_init(&tmp);
    pr_buf_init(&raw);

    /* Generated: the first of each line count, none and all optionals. */
    struct pr_gen gen;
    pr_gen_init(&gen, 1, START_MS, 3);
    bool have_lines[6] = {false}, have_none = false, have_all = false;
    for (int i = 0; i < 1000; i++) {
        struct pr_declaration d;
        pr_gen_next(&gen, &d);
        d.event_time = d.arrival_time - 7200000;
        char name[64] = "";
        bool none = !d.has_master_bill && !d.has_seller && !d.has_freight;
        bool all = d.has_master_bill && d.has_seller && d.has_marketplace && d.has_freight;
        if (!have_lines[d.line_count]) {
            have_lines[d.line_count] = true;
            snprintf(name, sizeof(name), "valid-gen-%ulines", d.line_count);
        } else if (none && !have_none) {
            have_none = true;
            snprintf(name, sizeof(name), "valid-gen-no-optionals");
        } else if (all && !have_all && d.line_count == 1) {
            have_all = true;
            snprintf(name, sizeof(name), "valid-gen-all-optionals");
        }
        if (!name[0]) continue;
        pr_buf_reset(&buf);
        pr_declaration_encode(&d, &buf);
        pr_seed(&c, name, &buf, PR_DLQ_NONE);
    }

    /* Hand-made: the base of the broken seeds too. Non-ASCII text, a
     * suspended origin, a vague description and a placeholder name. */
    static const struct pr_line lines[] = {
        {SI("6109100012"), SI("T-shirt \xc3\xa9t\xc3\xa9 \xe6\xa3\x89"), SI("CN"), 2, 1800},
        {SI("8517.62"), SI("gift"), SI("\xc3\x9c"), 1, 4500},
        {SI(""), SI("parts 123"), SI("HK"), 0, 1},
    };
    struct pr_declaration d = {
        .declaration_id = S("D-corpus-0001"),
        .filer_code = S("DHLX"),
        .entry_type = S("86"),
        .house_bill = S("HB-MARKER"),
        .has_master_bill = true,
        .master_bill = S("MB-MARKER"),
        .transport_mode = PR_MODE_AIR,
        .port_of_entry = S("PORT"),
        .arrival_time = START_MS + 3600000,
        .event_time = START_MS,
        .shipper = {S("\xe6\xb7\xb1\xe5\x9c\xb3 Trading Co., Ltd."), S("No. 1 Road"), S("Shenzhen"),
                    S("518000"), S("CN")},
        .consignee = {S("CNAME-MARKER"), S("12 Elm Street, Apt 3"), S("Boston"), S("02108"),
                      S("US")},
        .has_seller = true,
        .seller = {S("N/A"), S("Online"), S(""), S(""), S("CN")},
        .has_marketplace = true,
        .marketplace = S("Temu"),
        .value_usd_cents = 6301,
        .has_freight = true,
        .freight_usd_cents = 90000,
        .gross_weight_grams = 750,
        .lines = (struct pr_line *)lines,
        .line_count = 3,
    };
    struct pr_buf valid;
    pr_buf_init(&valid);
    pr_declaration_encode(&d, &valid);
    pr_seed(&c, "valid-hand-utf8-suspended", &valid, PR_DLQ_NONE);

    /* A hub that sends a country name, not a code: long non-ASCII text in
     * origin_country reaches the DE_MINIMIS_SUSPENDED evidence. */
    struct pr_line named[1] = {lines[0]};
    named[0].origin_country = S("C\xc3\xb4te d\xe2\x80\x99Ivoire");
    struct pr_declaration by_name = d;
    by_name.lines = named;
    by_name.line_count = 1;
    pr_buf_reset(&buf);
    pr_declaration_encode(&by_name, &buf);
    pr_seed(&c, "valid-origin-country-name", &buf, PR_DLQ_NONE);

    struct pr_declaration old = d;
    old.arrival_time = 0; /* 1970: the first policy row, before any date */
    old.has_seller = old.has_marketplace = old.has_freight = false;
    pr_buf_reset(&buf);
    pr_declaration_encode(&old, &buf);
    pr_seed(&c, "valid-hand-arrival-1970", &buf, PR_DLQ_NONE);

    struct pr_declaration empty = {0};
    pr_buf_reset(&buf);
    pr_declaration_encode(&empty, &buf);
    pr_seed(&c, "valid-all-empty", &buf, PR_DLQ_NONE);

    /* Lines as one negative block with its byte size: valid Avro. */
    pr_head(&d, &buf);
    pr_buf_reset(&tmp);
    for (uint32_t i = 0; i < d.line_count; i++) pr_line(&tmp, &d.lines[i]);
    pr_avro_write_long(&buf, -(int64_t)d.line_count);
    pr_avro_write_long(&buf, (int64_t)tmp.len);
    pr_buf_append(&buf, tmp.data, tmp.len);
    pr_avro_write_long(&buf, 0);
    pr_seed(&c, "valid-negative-block", &buf, PR_DLQ_NONE);

    /* ------------------------------------------------------------ broken */
    pr_buf_reset(&buf);
    pr_seed(&c, "bad-empty", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_reset(&buf);
    pr_buf_append(&buf, valid.data, valid.len / 2);
    pr_seed(&c, "bad-truncated", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_reset(&buf);
    pr_buf_append(&buf, valid.data, valid.len);
    pr_buf_append(&buf, "\x00\x01\x02\x03", 4);
    pr_seed(&c, "bad-trailing-bytes", &buf, PR_DLQ_TRAILING_BYTES);

    pr_buf_reset(&buf);
    pr_avro_write_long(&buf, INT64_C(1) << 62);
    pr_buf_append(&buf, valid.data + 1, valid.len - 1);
    pr_seed(&c, "bad-huge-length", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_reset(&raw);
    pr_avro_write_string(&raw, "CNAME", 5);
    pr_avro_write_long(&raw, -3);
    pr_splice(&buf, &valid, S("CNAME-MARKER"), 0, &raw);
    pr_seed(&c, "bad-negative-length", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_reset(&raw);
    pr_avro_write_string(&raw, "HB-MARKER", 9);
    pr_avro_write_long(&raw, 2);
    pr_splice(&buf, &valid, S("HB-MARKER"), 1, &raw);
    pr_seed(&c, "bad-union-index", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_reset(&raw);
    pr_avro_write_string(&raw, "MB-MARKER", 9);
    pr_avro_write_long(&raw, 7);
    pr_splice(&buf, &valid, S("MB-MARKER"), 1, &raw);
    pr_seed(&c, "bad-enum-index", &buf, PR_DLQ_DECODE_ERROR);

    static const struct {
        const char *name, *bytes;
        size_t len;
    } utf8[] = {{"bad-utf8-ff", "Zo\xff Smith", 9},
                {"bad-utf8-overlong", "Zo\xc0\x80 Smith", 10},
                {"bad-utf8-surrogate", "Zo\xed\xa0\x80 Smith", 11}};
    for (size_t k = 0; k < sizeof(utf8) / sizeof(utf8[0]); k++) {
        pr_buf_reset(&raw);
        pr_avro_write_string(&raw, utf8[k].bytes, utf8[k].len);
        pr_splice(&buf, &valid, S("CNAME-MARKER"), 0, &raw);
        pr_seed(&c, utf8[k].name, &buf, PR_DLQ_INVALID_UTF8);
    }

    /* arrival_time as an 11-byte varint. */
    pr_buf_reset(&tmp);
    pr_avro_write_long(&tmp, d.arrival_time);
    pr_buf_reset(&raw);
    pr_avro_write_string(&raw, "PORT", 4);
    pr_buf_append(&raw, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
    pr_splice(&buf, &valid, S("PORT"), tmp.len, &raw);
    pr_seed(&c, "bad-varint-11-bytes", &buf, PR_DLQ_DECODE_ERROR);

    /* A lines array claiming 10^9 items. */
    pr_head(&d, &buf);
    pr_avro_write_long(&buf, 1000000000);
    pr_line(&buf, &d.lines[0]);
    pr_avro_write_long(&buf, 0);
    pr_seed(&c, "bad-array-count", &buf, PR_DLQ_DECODE_ERROR);

    pr_buf_free(&valid);
    pr_buf_free(&raw);
    pr_buf_free(&tmp);
    pr_buf_free(&buf);
    pr_arena_destroy(&c.arena);
    if (c.wrong) return 1;
    printf("make_corpus: %d seeds in %s\n", c.written, c.dir);
    return 0;
}
