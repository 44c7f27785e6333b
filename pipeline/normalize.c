#include "normalize.h"

#include <openssl/evp.h>
#include <string.h>

size_t pr_norm_text(const char *in, size_t len, char *out) {
    size_t n = 0;
    bool pending_space = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.' || c == '\'') continue;
        if (c >= 'a' && c <= 'z') c = (unsigned char)(c - 'a' + 'A');
        bool keep = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
        if (!keep) {
            pending_space = n > 0;
            continue;
        }
        if (pending_space) {
            out[n++] = ' ';
            pending_space = false;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

static const char *const pr_legal_forms[] = {"CO", "LTD", "LLC", "INC", "CORP", "LIMITED",
                                             "COMPANY", "GMBH", "PLC", "SA", "AG"};

static bool pr_token_in(const char *tok, size_t len, const char *const *set, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(set[i]) == len && memcmp(set[i], tok, len) == 0) return true;
    return false;
}

size_t pr_norm_name(const char *in, size_t len, char *out) {
    size_t n = pr_norm_text(in, len, out);
    while (n > 0) {
        size_t start = n;
        while (start > 0 && out[start - 1] != ' ') start--;
        if (!pr_token_in(out + start, n - start, pr_legal_forms, PR_ARRAY_LEN(pr_legal_forms)))
            break;
        n = start > 0 ? start - 1 : 0;
    }
    out[n] = '\0';
    return n;
}

static const char *const pr_address_words[][2] = {
    {"STREET", "ST"},   {"AVENUE", "AVE"},  {"ROAD", "RD"},       {"APARTMENT", "APT"},
    {"SUITE", "STE"},   {"BOULEVARD", "BLVD"}, {"DRIVE", "DR"},   {"LANE", "LN"},
    {"PARKWAY", "PKWY"}, {"FLOOR", "FL"},   {"BUILDING", "BLDG"},
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
        const char *repl = NULL;
        for (size_t i = 0; i < PR_ARRAY_LEN(pr_address_words); i++) {
            if (strlen(pr_address_words[i][0]) == word_len &&
                memcmp(pr_address_words[i][0], word, word_len) == 0) {
                repl = pr_address_words[i][1];
                break;
            }
        }
        if (w > 0) out[w++] = ' ';
        if (repl) {
            size_t rl = strlen(repl);
            memmove(out + w, repl, rl);
            w += rl;
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

/* Normalizes into the tail of buf with the given function. */
static void pr_append_norm(struct pr_buf *buf, struct pr_str s,
                           size_t (*norm)(const char *, size_t, char *)) {
    pr_buf_reserve(buf, (size_t)s.len + 1);
    buf->len += norm(s.ptr, s.len, (char *)buf->data + buf->len);
}

void pr_consignee_identity(const struct pr_party *party, struct pr_buf *out) {
    pr_buf_reset(out);
    pr_append_norm(out, party->name, pr_norm_name);
    pr_buf_append(out, "|", 1);
    pr_append_norm(out, party->address, pr_norm_address);
    pr_buf_append(out, "|", 1);
    pr_buf_reserve(out, party->postal_code.len + 1);
    for (uint32_t i = 0; i < party->postal_code.len; i++) {
        char c = party->postal_code.ptr[i];
        if (c == ' ' || c == '-') continue;
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        out->data[out->len++] = (uint8_t)c;
    }
}

void pr_sha256_hex(const void *data, size_t len, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

void pr_consignee_key(const struct pr_party *party, char hex[65]) {
    struct pr_buf buf;
    pr_buf_init(&buf);
    pr_consignee_identity(party, &buf);
    pr_sha256_hex(buf.data, buf.len, hex);
    pr_buf_free(&buf);
}

void pr_delivery_address(const struct pr_party *party, struct pr_buf *out) {
    pr_buf_reset(out);
    pr_append_norm(out, party->address, pr_norm_address);
    size_t address_len = out->len;
    pr_buf_append(out, " ", 1);
    size_t before_city = out->len;
    pr_append_norm(out, party->city, pr_norm_text);
    if (out->len == before_city || address_len == 0) out->len = address_len;
}
