#include "normalize.h"

#include <stdlib.h>
#include <string.h>

/* What pr_norm_text does with each byte value: 0 drop (period,
 * apostrophe), 1 separator (becomes a space), else the byte to write
 * (upper-cased ASCII letters, digits, bytes >= 0x80 as they are). */
#define PR_NC_SEP16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define PR_NC_SELF8(b) (b), (b) + 1, (b) + 2, (b) + 3, (b) + 4, (b) + 5, (b) + 6, (b) + 7
#define PR_NC_SELF32(b)                                                                            \
    PR_NC_SELF8(b), PR_NC_SELF8((b) + 8), PR_NC_SELF8((b) + 16), PR_NC_SELF8((b) + 24)
static const uint8_t pr_norm_class[256] = {
    /* 0x00-0x1f */ PR_NC_SEP16,
    PR_NC_SEP16,
    /* ' ' ! " # $ % & */ 1,
    1,
    1,
    1,
    1,
    1,
    1,
    /* ' */ 0,
    /* ( ) * + , - */ 1,
    1,
    1,
    1,
    1,
    1,
    /* . */ 0,
    /* / */ 1,
    '0',
    '1',
    '2',
    '3',
    '4',
    '5',
    '6',
    '7',
    '8',
    '9',
    /* : ; < = > ? @ */ 1,
    1,
    1,
    1,
    1,
    1,
    1,
    'A',
    'B',
    'C',
    'D',
    'E',
    'F',
    'G',
    'H',
    'I',
    'J',
    'K',
    'L',
    'M',
    'N',
    'O',
    'P',
    'Q',
    'R',
    'S',
    'T',
    'U',
    'V',
    'W',
    'X',
    'Y',
    'Z',
    /* [ \ ] ^ _ ` */ 1,
    1,
    1,
    1,
    1,
    1,
    'A',
    'B',
    'C',
    'D',
    'E',
    'F',
    'G',
    'H',
    'I',
    'J',
    'K',
    'L',
    'M',
    'N',
    'O',
    'P',
    'Q',
    'R',
    'S',
    'T',
    'U',
    'V',
    'W',
    'X',
    'Y',
    'Z',
    /* { | } ~ DEL */ 1,
    1,
    1,
    1,
    1,
    /* 0x80-0xff: UTF-8 bytes are kept as they are */
    PR_NC_SELF32(0x80),
    PR_NC_SELF32(0xa0),
    PR_NC_SELF32(0xc0),
    PR_NC_SELF32(0xe0),
};
_Static_assert(sizeof(pr_norm_class) == 256, "one entry per byte value");

size_t pr_norm_text(const char *in, size_t len, char *out) {
    size_t n = 0;
    bool pending_space = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t k = pr_norm_class[(unsigned char)in[i]];
        if (k > 1) {
            if (pending_space) {
                out[n++] = ' ';
                pending_space = false;
            }
            out[n++] = (char)k;
        } else if (k == 1) {
            pending_space = n > 0; /* a separator; period and apostrophe (0) are deleted */
        }
    }
    out[n] = '\0';
    return n;
}

static const struct {
    const char *token;
    size_t len;
} pr_legal_forms[] = {{"CO", 2},   {"LTD", 3},     {"LLC", 3},     {"INC", 3},
                      {"CORP", 4}, {"LIMITED", 7}, {"COMPANY", 7}, {"GMBH", 4},
                      {"PLC", 3},  {"SA", 2},      {"AG", 2}};

static bool pr_legal_form(const char *tok, size_t len) {
    if (len < 2 || len > 7) return false;
    for (size_t i = 0; i < PR_ARRAY_LEN(pr_legal_forms); i++)
        if (pr_legal_forms[i].len == len && memcmp(pr_legal_forms[i].token, tok, len) == 0)
            return true;
    return false;
}

size_t pr_norm_name(const char *in, size_t len, char *out) {
    size_t n = pr_norm_text(in, len, out);
    while (n > 0) {
        size_t start = n;
        while (start > 0 && out[start - 1] != ' ') start--;
        if (!pr_legal_form(out + start, n - start)) break;
        n = start > 0 ? start - 1 : 0;
    }
    out[n] = '\0';
    return n;
}

static const struct {
    const char *word;
    uint8_t word_len;
    const char *abbrev;
    uint8_t abbrev_len;
} pr_address_words[] = {
    {"STREET", 6, "ST", 2},     {"AVENUE", 6, "AVE", 3},    {"ROAD", 4, "RD", 2},
    {"APARTMENT", 9, "APT", 3}, {"SUITE", 5, "STE", 3},     {"BOULEVARD", 9, "BLVD", 4},
    {"DRIVE", 5, "DR", 2},      {"LANE", 4, "LN", 2},       {"PARKWAY", 7, "PKWY", 4},
    {"FLOOR", 5, "FL", 2},      {"BUILDING", 8, "BLDG", 4},
};

size_t pr_norm_address(const char *in, size_t len, char *out) {
    size_t n = pr_norm_text(in, len, out);
    /* Rewrite in place: every replacement is shorter than its word. */
    size_t r = 0, w = 0;
    while (r < n) {
        size_t end = r;
        while (end < n && out[end] != ' ') end++;
        const char *word = out + r;
        size_t word_len = end - r;
        int repl = -1;
        if (word_len >= 4 && word_len <= 9) {
            for (size_t i = 0; i < PR_ARRAY_LEN(pr_address_words); i++) {
                if (pr_address_words[i].word_len == word_len &&
                    pr_address_words[i].word[0] == word[0] &&
                    memcmp(pr_address_words[i].word, word, word_len) == 0) {
                    repl = (int)i;
                    break;
                }
            }
        }
        if (w > 0) out[w++] = ' ';
        if (repl >= 0) {
            memmove(out + w, pr_address_words[repl].abbrev, pr_address_words[repl].abbrev_len);
            w += pr_address_words[repl].abbrev_len;
        } else {
            memmove(out + w, word, word_len);
            w += word_len;
        }
        r = end + 1;
    }
    out[w] = '\0';
    return w;
}

bool pr_norm_is_placeholder(const char *norm, size_t len) {
    return (len == 3 && memcmp(norm, "N A", 3) == 0) || (len == 2 && memcmp(norm, "NA", 2) == 0) ||
           (len == 4 && memcmp(norm, "NONE", 4) == 0) ||
           (len == 7 && memcmp(norm, "UNKNOWN", 7) == 0);
}

bool pr_str_blank(struct pr_str s) {
    for (uint32_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
    }
    return true;
}

/* The one writer of the consignee identity: norm name | norm address |
 * postal code upper-cased without spaces and hyphens. */
static void pr_identity_from(struct pr_buf *out, struct pr_str name, struct pr_str address,
                             struct pr_str postal) {
    pr_buf_reset(out);
    pr_buf_reserve(out, (size_t)name.len + address.len + postal.len + 2);
    pr_buf_append(out, name.ptr, name.len);
    pr_buf_append(out, "|", 1);
    pr_buf_append(out, address.ptr, address.len);
    pr_buf_append(out, "|", 1);
    for (uint32_t i = 0; i < postal.len; i++) {
        char c = postal.ptr[i];
        if (c == ' ' || c == '-') continue;
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        out->data[out->len++] = (uint8_t)c;
    }
}

/* The one writer of the delivery address: norm address + " " + norm city,
 * or the address alone when either is empty. out holds address.len +
 * city.len + 2 bytes. */
static size_t pr_delivery_from(char *out, struct pr_str address, struct pr_str city) {
    memcpy(out, address.ptr, address.len);
    size_t n = address.len;
    if (address.len > 0) {
        out[n] = ' ';
        size_t city_len = pr_norm_text(city.ptr, city.len, out + n + 1);
        n = city_len ? n + 1 + city_len : address.len;
    }
    out[n] = '\0';
    return n;
}

/* Normalizes s with norm into a fresh heap string (the party-level API). */
static struct pr_str pr_norm_heap(struct pr_str s, size_t (*norm)(const char *, size_t, char *)) {
    char *out = pr_malloc((size_t)s.len + 1);
    size_t n = norm(s.ptr, s.len, out);
    return (struct pr_str){out, (uint32_t)n};
}

void pr_consignee_identity(const struct pr_party *party, struct pr_buf *out) {
    struct pr_str name = pr_norm_heap(party->name, pr_norm_name);
    struct pr_str address = pr_norm_heap(party->address, pr_norm_address);
    pr_identity_from(out, name, address, party->postal_code);
    free((char *)name.ptr);
    free((char *)address.ptr);
}

void pr_consignee_key(const struct pr_party *party, char hex[65]) {
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_consignee_identity(party, &buf);
    pr_sha256_hex(buf.data, buf.len, hex);
    pr_buf_free(&buf);
}

void pr_delivery_address(const struct pr_party *party, struct pr_buf *out) {
    struct pr_str address = pr_norm_heap(party->address, pr_norm_address);
    pr_buf_reset(out);
    pr_buf_reserve(out, (size_t)address.len + party->city.len + 2);
    out->len = pr_delivery_from((char *)out->data, address, party->city);
    free((char *)address.ptr);
}

static struct pr_str pr_norm_into(struct pr_batch *batch, struct pr_str s,
                                  size_t (*norm)(const char *, size_t, char *)) {
    char *out = pr_arena_alloc(&batch->arena, (size_t)s.len + 1);
    size_t n = norm(s.ptr, s.len, out);
    return (struct pr_str){out, (uint32_t)n};
}

void pr_record_norms(struct pr_batch *batch, struct pr_record *rec) {
    if (rec->norms.done) return;
    const struct pr_declaration *d = &rec->decl;
    rec->norms.shipper_name = pr_norm_into(batch, d->shipper.name, pr_norm_name);
    rec->norms.shipper_address = pr_norm_into(batch, d->shipper.address, pr_norm_address);
    if (d->has_seller) rec->norms.seller_name = pr_norm_into(batch, d->seller.name, pr_norm_name);
    rec->norms.consignee_name = pr_norm_into(batch, d->consignee.name, pr_norm_name);
    struct pr_str address = pr_norm_into(batch, d->consignee.address, pr_norm_address);
    rec->norms.consignee_address = address;
    char *delivery = pr_arena_alloc(&batch->arena, (size_t)address.len + d->consignee.city.len + 2);
    size_t n = pr_delivery_from(delivery, address, d->consignee.city);
    rec->norms.delivery_address = (struct pr_str){delivery, (uint32_t)n};
    rec->norms.done = true;
}

void pr_record_consignee_key(struct pr_sha256 *sha, struct pr_record *rec) {
    pr_identity_from(&sha->identity, rec->norms.consignee_name, rec->norms.consignee_address,
                     rec->decl.consignee.postal_code);
    pr_sha256_hex_with(sha, sha->identity.data, sha->identity.len, rec->consignee_key);
}

static const uint8_t pr_state_digest_keys[2][16] = {
    {0x70, 0x72, 0x2d, 0x73, 0x74, 0x61, 0x74, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30,
     0x31},
    {0x70, 0x72, 0x2d, 0x73, 0x74, 0x61, 0x74, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30,
     0x32},
};

void pr_state_digest(const void *data, size_t len, uint8_t out[16]) {
    uint64_t h[2] = {pr_siphash24(pr_state_digest_keys[0], data, len),
                     pr_siphash24(pr_state_digest_keys[1], data, len)};
    memcpy(out, h, 16);
}

void pr_record_state_digests(struct pr_batch *batch, struct pr_record *rec) {
    if (rec->has_state_digests) return;
    pr_record_norms(batch, rec);
    struct pr_str delivery = rec->norms.delivery_address;
    if (delivery.len == 0) return;
    pr_state_digest(delivery.ptr, delivery.len, rec->address_digest);
    pr_state_digest(rec->norms.consignee_name.ptr, rec->norms.consignee_name.len, rec->name_digest);
    rec->has_state_digests = true;
}
