/*
 * hash.c - SipHash-2-4 and SHA-256 of hash.h (pr_hash64 and
 * pr_sha256_hex_with are inline there).
 */
#include "hash.h"

#include <stdlib.h>

/* ============================================================= SipHash */

/* SipHash-2-4 (Aumasson and Bernstein), from the reference description. */
#define PR_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define PR_SIPROUND                                                                                \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = PR_ROTL(v1, 13);                                                                      \
        v1 ^= v0;                                                                                  \
        v0 = PR_ROTL(v0, 32);                                                                      \
        v2 += v3;                                                                                  \
        v3 = PR_ROTL(v3, 16);                                                                      \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = PR_ROTL(v3, 21);                                                                      \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = PR_ROTL(v1, 17);                                                                      \
        v1 ^= v2;                                                                                  \
        v2 = PR_ROTL(v2, 32);                                                                      \
    } while (0)

static uint64_t pr_load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

uint64_t pr_siphash24(const uint8_t key[16], const void *data, size_t len) {
    const uint8_t *in = data;
    uint64_t k0 = pr_load_le64(key), k1 = pr_load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = pr_load_le64(in + i);
        v3 ^= m;
        PR_SIPROUND;
        PR_SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    PR_SIPROUND;
    PR_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    PR_SIPROUND;
    PR_SIPROUND;
    PR_SIPROUND;
    PR_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ============================================================= SHA-256 */

void pr_sha256_hex(const void *data, size_t len, char hex[65]) {
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL);
    pr_sha256_to_hex(md, hex);
}

void pr_sha256_init(struct pr_sha256 *sha) {
    sha->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha->ctx = EVP_MD_CTX_new();
    if (!sha->md || !sha->ctx) {
        pr_error("OpenSSL: SHA-256 unavailable");
        abort();
    }
    pr_buf_init(&sha->identity);
}

void pr_sha256_free(struct pr_sha256 *sha) {
    EVP_MD_free(sha->md);
    EVP_MD_CTX_free(sha->ctx);
    pr_buf_free(&sha->identity);
}
