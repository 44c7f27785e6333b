/*
 * gen.c - realistic synthetic declarations.
 *
 * Hubs and carriers from a fixed list; origins weighted toward the real
 * de minimis mix (mostly CN, then HK, VN and others); 1-5 lines with HTS codes
 * from a list of common e-commerce tariff lines; values with a long tail
 * (log-uniform body plus a 2% tail of high values); consignees drawn with a
 * skew so that some receive several parcels a day. Everything depends only on
 * the seed and the sequence number.
 */
#include "gen.h"

#include "codec.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const pr_gen_bad_names[PR_BAD_KINDS] = {"garbage",   "truncated",    "huge_length",
                                                    "trailing",  "invalid_utf8", "empty",
                                                    "too_large", "wrong_schema"};

uint64_t pr_gen_rand(struct pr_gen *gen) {
    /* xorshift64* */
    uint64_t x = gen->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    gen->state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t pr_gen_below(struct pr_gen *gen, uint32_t n) {
    return (uint32_t)(pr_gen_rand(gen) % n);
}

static double pr_gen_unit(struct pr_gen *gen) {
    return (double)(pr_gen_rand(gen) >> 11) / 9007199254740992.0;
}

void pr_gen_init(struct pr_gen *gen, uint64_t seed, int64_t start_ms, int days) {
    memset(gen, 0, sizeof(*gen));
    gen->state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    if (!gen->state) gen->state = 1;
    gen->start_ms = start_ms - start_ms % 86400000;
    gen->days = days > 0 ? days : 1;
    gen->consignee_pool = 200000;
}

static struct pr_str pr_gen_printf(struct pr_gen *gen, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct pr_str pr_gen_printf(struct pr_gen *gen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof(gen->scratch) - gen->used;
    int n = vsnprintf(gen->scratch + gen->used, room, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= room) n = (int)room - 1;
    struct pr_str s = {gen->scratch + gen->used, (uint32_t)n};
    gen->used += (size_t)n + 1;
    return s;
}

static struct pr_str pr_gen_lit(const char *s) {
    return (struct pr_str){s, (uint32_t)strlen(s)};
}

struct pr_weighted {
    const char *value;
    int weight;
};

static const char *pr_gen_pick(struct pr_gen *gen, const struct pr_weighted *table, size_t n) {
    int total = 0;
    for (size_t i = 0; i < n; i++) total += table[i].weight;
    int r = (int)pr_gen_below(gen, (uint32_t)total);
    for (size_t i = 0; i < n; i++) {
        if (r < table[i].weight) return table[i].value;
        r -= table[i].weight;
    }
    return table[n - 1].value;
}

static const struct pr_weighted pr_origins[] = {
    {"CN", 55}, {"HK", 8}, {"VN", 6}, {"IN", 4}, {"KR", 4}, {"JP", 3}, {"TW", 3}, {"GB", 3},
    {"DE", 3},  {"TR", 2}, {"MX", 2}, {"CA", 2}, {"TH", 2}, {"PK", 1}, {"BD", 1}, {"ID", 1},
};

/* Common e-commerce tariff lines with a plausible description and unit price. */
static const struct {
    const char *hts;
    const char *description;
    int unit_cents;
} pr_items[] = {
    {"6109100012", "Men's cotton t-shirt, knitted", 900},
    {"6204624011", "Women's cotton trousers", 2200},
    {"6110202079", "Cotton pullover sweater", 2500},
    {"6402993165", "Rubber sole sneakers", 3500},
    {"6404110000", "Sports footwear, textile upper", 4000},
    {"4202920807", "Textile backpack", 2800},
    {"4202210000", "Leather handbag", 6000},
    {"7117190000", "Imitation jewelry necklace", 700},
    {"9102110000", "Wrist watch, battery powered", 3000},
    {"8518300000", "Bluetooth headphones", 2500},
    {"8517620000", "Wireless router", 4500},
    {"8504405000", "USB phone charger", 800},
    {"8544429000", "USB charging cable", 300},
    {"3926909985", "Plastic phone case", 400},
    {"9503000073", "Plastic toy figure set", 1500},
    {"9504500000", "Video game controller", 3500},
    {"3304990000", "Skin care cream", 1800},
    {"3305100000", "Shampoo", 900},
    {"6302600010", "Cotton bath towel", 1200},
    {"9405410000", "LED desk lamp", 2000},
    {"8471300100", "Tablet computer", 15000},
    {"9004100000", "Sunglasses", 1100},
    {"6505009040", "Knitted hat", 800},
    {"4901990000", "Printed book", 1500},
    {"2106909998", "Dietary supplement capsules", 2500},
    {"3004909290", "Vitamin tablets", 2000},
    {"8713900000", "Wheelchair parts", 5000},
    {"8211910000", "Kitchen knife set", 2500},
    {"6912004810", "Ceramic mug", 900},
    {"2402200000", "Cigarettes", 1200},
};

static const char *const pr_first_names[] = {
    "James", "Mary",  "Robert",    "Patricia", "John",    "Jennifer", "Michael",
    "Linda", "David", "Elizabeth", "William",  "Barbara", "Maria",    "Jose",
    "Wei",   "Priya", "Carlos",    "Aisha",    "Kenji",   "Olga",     "Ahmed",
    "Sofia", "Luis",  "Nguyen",    "Fatima",   "Daniel",  "Grace",    "Omar"};
static const char *const pr_last_names[] = {
    "Smith",  "Johnson",   "Williams", "Brown",     "Jones", "Garcia", "Miller",
    "Davis",  "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson",
    "Thomas", "Taylor",    "Moore",    "Lee",       "Chen",  "Patel",  "Kim",
    "Nguyen", "Khan",      "O'Brien",  "Murphy",    "Rossi", "Novak",  "Silva"};
static const char *const pr_streets[] = {"Elm",        "Oak",  "Maple", "Main", "Cedar",  "Pine",
                                         "Washington", "Lake", "Hill",  "Park", "Sunset", "River"};
static const char *const pr_street_kinds[] = {"Street", "St.",   "Avenue", "Ave",
                                              "Road",   "Drive", "Lane",   "Boulevard"};
static const struct {
    const char *city;
    const char *zip;
} pr_cities[] = {{"New York", "10001"}, {"Los Angeles", "90012"}, {"Chicago", "60601"},
                 {"Houston", "77002"},  {"Phoenix", "85004"},     {"Miami", "33130"},
                 {"Seattle", "98101"},  {"Denver", "80202"},      {"Atlanta", "30303"},
                 {"Boston", "02108"},   {"Dallas", "75201"},      {"Portland", "97201"}};
static const char *const pr_shipper_stems[] = {"Shenzhen Bright Trading",
                                               "Yiwu Global Commerce",
                                               "Guangzhou Star Apparel",
                                               "Hangzhou Sunrise E-Commerce",
                                               "Dongguan Everlight Electronics",
                                               "Hong Kong Pacific Express",
                                               "Hanoi Lotus Export",
                                               "Mumbai Crafts Export",
                                               "Seoul Beauty Direct",
                                               "Osaka Goods Online",
                                               "Taipei Tech Parts",
                                               "London Vintage Store",
                                               "Berlin Maker Supply",
                                               "Istanbul Bazaar Online"};
static const char *const pr_legal_suffixes[] = {" Co., Ltd.", " Ltd", " Limited", " LLC",
                                                " Inc.",      "",     " GmbH",    " Co. Ltd"};
static const char *const pr_hubs[] = {"4701", "2720", "3901", "5206",
                                      "4196", "2704", "1303", "5501"};
static const char *const pr_filers[] = {"DHLX", "FDXE", "UPSN", "CNPX",
                                        "YUNX", "4PXE", "CAIN", "USPS"};
static const char *const pr_marketplaces[] = {"Temu",   "Shein", "AliExpress",
                                              "Amazon", "eBay",  "Etsy"};

#define PR_PICK(gen, arr) (arr)[pr_gen_below((gen), PR_ARRAY_LEN(arr))]

/* A person of the consignee pool, written one of several ways so that the
 * same person shows up with spelling noise (as real filers do). */
static void pr_gen_consignee(struct pr_gen *gen, struct pr_party *p) {
    /* Skewed draw: the square of a uniform favours low indexes, so some
     * consignees receive many parcels. */
    double u = pr_gen_unit(gen);
    uint32_t who = (uint32_t)(u * u * gen->consignee_pool);
    uint64_t h = who * 0x9E3779B97F4A7C15ULL;
    const char *first = pr_first_names[h % PR_ARRAY_LEN(pr_first_names)];
    const char *last = pr_last_names[(h >> 8) % PR_ARRAY_LEN(pr_last_names)];
    unsigned number = (unsigned)((h >> 16) % 9000) + 100;
    const char *street = pr_streets[(h >> 30) % PR_ARRAY_LEN(pr_streets)];
    unsigned city = (unsigned)((h >> 36) % PR_ARRAY_LEN(pr_cities));
    unsigned apt = (unsigned)((h >> 44) % 40);
    int style = (int)pr_gen_below(gen, 3);
    if (style == 0)
        p->name = pr_gen_printf(gen, "%s %s", first, last);
    else if (style == 1) {
        p->name = pr_gen_printf(gen, "%s %s", first, last);
        for (uint32_t i = 0; i < p->name.len; i++)
            ((char *)p->name.ptr)[i] = (char)toupper((unsigned char)p->name.ptr[i]);
    } else
        p->name = pr_gen_printf(gen, "%s, %s", last, first);
    const char *kind = pr_street_kinds[(h >> 40) % 4 * 2 + pr_gen_below(gen, 2)];
    if (apt)
        p->address = pr_gen_printf(gen, "%u %s %s, Apt %u", number, street, kind, apt);
    else
        p->address = pr_gen_printf(gen, "%u %s %s", number, street, kind);
    p->city = pr_gen_lit(pr_cities[city].city);
    p->postal_code = pr_gen_lit(pr_cities[city].zip);
    p->country = pr_gen_lit("US");
}

void pr_gen_next(struct pr_gen *gen, struct pr_declaration *d) {
    memset(d, 0, sizeof(*d));
    gen->used = 0;
    uint64_t seq = gen->sequence++;
    const char *origin = pr_gen_pick(gen, pr_origins, PR_ARRAY_LEN(pr_origins));
    const char *filer = PR_PICK(gen, pr_filers);
    d->declaration_id = pr_gen_printf(gen, "D%010llu-%08x", (unsigned long long)seq,
                                      (unsigned)(pr_gen_rand(gen) >> 32));
    d->filer_code = pr_gen_lit(filer);
    d->entry_type = pr_gen_lit(pr_gen_below(gen, 10) < 8 ? "86" : "321");
    d->house_bill = pr_gen_printf(gen, "%s%011llu", filer,
                                  (unsigned long long)(pr_gen_rand(gen) % 100000000000ULL));
    d->has_master_bill = pr_gen_below(gen, 10) < 7;
    if (d->has_master_bill)
        d->master_bill = pr_gen_printf(gen, "%03u-%08u", 100 + pr_gen_below(gen, 900),
                                       pr_gen_below(gen, 100000000));
    d->transport_mode = pr_gen_below(gen, 10) < 8
                            ? PR_MODE_AIR
                            : (pr_gen_below(gen, 2) ? PR_MODE_POSTAL : PR_MODE_TRUCK);
    d->port_of_entry = pr_gen_lit(PR_PICK(gen, pr_hubs));
    d->arrival_time = gen->start_ms + (int64_t)pr_gen_below(gen, (uint32_t)gen->days) * 86400000 +
                      (int64_t)pr_gen_below(gen, 86400000);
    d->event_time = 0;

    const char *stem = PR_PICK(gen, pr_shipper_stems);
    d->shipper.name = pr_gen_printf(gen, "%s%s", stem, PR_PICK(gen, pr_legal_suffixes));
    d->shipper.address = pr_gen_printf(gen, "No. %u Industrial Road, Building %u",
                                       1 + pr_gen_below(gen, 300), 1 + pr_gen_below(gen, 20));
    d->shipper.city = pr_gen_lit("Shenzhen");
    d->shipper.postal_code = pr_gen_printf(gen, "%06u", 510000 + pr_gen_below(gen, 9999));
    d->shipper.country = pr_gen_lit(origin);
    pr_gen_consignee(gen, &d->consignee);
    d->has_seller = pr_gen_below(gen, 10) < 6;
    if (d->has_seller) {
        d->seller.name = pr_gen_printf(gen, "%s Store %u", PR_PICK(gen, pr_shipper_stems),
                                       pr_gen_below(gen, 500));
        d->seller.address = pr_gen_lit("Online");
        d->seller.city = pr_gen_lit("");
        d->seller.postal_code = pr_gen_lit("");
        d->seller.country = pr_gen_lit(origin);
    }
    d->has_marketplace = d->has_seller;
    if (d->has_marketplace) d->marketplace = pr_gen_lit(PR_PICK(gen, pr_marketplaces));

    /* 1-5 lines, most parcels have one or two. */
    static const int line_weights[] = {50, 25, 12, 8, 5};
    int r = (int)pr_gen_below(gen, 100), count = 1;
    for (int i = 0; i < 5; i++) {
        if (r < line_weights[i]) {
            count = i + 1;
            break;
        }
        r -= line_weights[i];
    }
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        struct pr_line *l = &gen->lines[i];
        unsigned item = pr_gen_below(gen, PR_ARRAY_LEN(pr_items));
        l->hts = pr_gen_lit(pr_items[item].hts);
        l->description = pr_gen_lit(pr_items[item].description);
        l->origin_country =
            pr_gen_below(gen, 10) < 9
                ? pr_gen_lit(origin)
                : pr_gen_lit(pr_gen_pick(gen, pr_origins, PR_ARRAY_LEN(pr_origins)));
        l->quantity = 1 + (int32_t)(pr_gen_below(gen, 10) < 7 ? 0 : pr_gen_below(gen, 6));
        /* Unit price around the item's typical price, log-uniform x0.3..x3,
         * with a 2% tail up to x40. */
        double factor = 0.3 * pow(10.0, pr_gen_unit(gen));
        if (pr_gen_below(gen, 100) < 2) factor *= 1 + pr_gen_below(gen, 40);
        l->value_usd_cents = (int64_t)(pr_items[item].unit_cents * factor) * l->quantity + 1;
        total += l->value_usd_cents;
    }
    d->lines = gen->lines;
    d->line_count = (uint32_t)count;
    d->value_usd_cents = total;
    /* Freight is mostly a fraction of the value plus a base charge; 0.5% of
     * parcels carry a freight charge far above their declared value (the
     * undervaluation pattern FREIGHT_VALUE_MISMATCH looks for). */
    d->has_freight = pr_gen_below(gen, 10) < 6;
    if (d->has_freight) {
        if (pr_gen_below(gen, 1000) < 5)
            d->freight_usd_cents = total * (4 + pr_gen_below(gen, 8)) + 500;
        else
            d->freight_usd_cents =
                150 + (int64_t)((double)total * 0.05 * (1 + pr_gen_below(gen, 8)) / 4);
    }
    d->gross_weight_grams = 50 + (int32_t)pr_gen_below(gen, 3000) * count;
}

void pr_gen_bad(struct pr_gen *gen, enum pr_gen_bad kind, const struct pr_buf *valid,
                struct pr_buf *out) {
    pr_buf_reset(out);
    switch (kind) {
    case PR_BAD_GARBAGE: {
        size_t n = 20 + pr_gen_below(gen, 300);
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)pr_gen_rand(gen);
            pr_buf_append(out, &b, 1);
        }
        /* Make sure it cannot parse: a negative first string length. */
        out->data[0] = 0x03;
        break;
    }
    case PR_BAD_TRUNCATED: pr_buf_append(out, valid->data, valid->len / 2); break;
    case PR_BAD_HUGE_LENGTH: {
        /* declaration_id claiming ~2^62 bytes */
        static const uint8_t huge[] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        pr_buf_append(out, huge, sizeof(huge));
        pr_buf_append(out, valid->data, valid->len);
        break;
    }
    case PR_BAD_TRAILING:
        pr_buf_append(out, valid->data, valid->len);
        pr_buf_append(out, "\x00\x01\x02\x03", 4);
        break;
    case PR_BAD_UTF8: {
        pr_buf_append(out, valid->data, valid->len);
        /* The first string is declaration_id: corrupt its first byte. */
        if (out->len > 1) out->data[1] = 0xff;
        break;
    }
    case PR_BAD_TOO_LARGE: {
        /* 300 KB: over the default 256 KiB cap, under Kafka's 1 MB. */
        pr_buf_append(out, valid->data, valid->len);
        while (out->len < 300 * 1024) {
            uint8_t b = (uint8_t)pr_gen_rand(gen);
            pr_buf_append(out, &b, 1);
        }
        break;
    }
    case PR_BAD_WRONG_SCHEMA: {
        /* A record of another schema: a DeadLetter (two strings, then a
         * negative-free int, long, long and bytes) read as a Declaration
         * runs out of bytes or hits a bad union index. */
        static const char code[] = "SOMETHING_ELSE", detail[] = "not a declaration";
        pr_avro_write_string(out, code, sizeof(code) - 1);
        pr_avro_write_string(out, detail, sizeof(detail) - 1);
        pr_avro_write_long(out, 3);
        pr_avro_write_long(out, 12345);
        pr_avro_write_long(out, 1700000000000);
        pr_avro_write_long(out, 4);
        pr_buf_append(out, "\x01\x02\x03\x04", 4);
        break;
    }
    case PR_BAD_EMPTY:
    case PR_BAD_KINDS: break;
    }
}
