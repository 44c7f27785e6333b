/*
 * hash.h - the hash functions, in one place:
 *
 *   pr_hash64      unkeyed 64-bit hash for in-process hash tables (the enrich
 *                  cache and key index, aggregate's key index, the loader's
 *                  violator map). Not for anything an attacker may choose
 *                  to collide across processes.
 *   pr_siphash24   SipHash-2-4 under a 128-bit key: the keyed hash of the
 *                  random compliance sample (deterministic, so a replay
 *                  decides the same).
 *   pr_sha256_*    SHA-256 (OpenSSL) as lower-case hex: consignee keys,
 *                  aggregate's keys, the loader's file digests.
 *
 * pr_hash64 and pr_sha256_hex_with are static inline: they run on the hot
 * path (every cache and index probe, every declaration).
 *
 * @locality any thread; a struct pr_sha256 belongs to one thread.
 */
#ifndef PR_HASH_H
#define PR_HASH_H

#include <openssl/evp.h>

#include "common.h"

/* 64-bit FNV-1a with a final avalanche (murmur3 fmix64): keys are short. */
static inline uint64_t pr_hash64(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* SipHash-2-4 of data under a 128-bit key (Aumasson and Bernstein). */
uint64_t pr_siphash24(const uint8_t key[16], const void *data, size_t len);

/* Lower-case hex SHA-256 of data (65 bytes with NUL); looks the digest up on
 * every call, so prefer pr_sha256_hex_with on a hot path. */
void pr_sha256_hex(const void *data, size_t len, char hex[65]);

/* SHA-256 with the digest fetched once (OpenSSL 3 looks the algorithm up
 * again on every EVP_sha256() one-shot call, which costs more than hashing
 * a short identity). One per thread or operator. identity is a scratch
 * buffer for pr_record_consignee_key (normalize.h). */
struct pr_sha256 {
    void *md;  /* EVP_MD */
    void *ctx; /* EVP_MD_CTX */
    struct pr_buf identity;
};
/* Aborts when OpenSSL has no SHA-256. */
void pr_sha256_init(struct pr_sha256 *sha);
void pr_sha256_free(struct pr_sha256 *sha);

/* Writes the 32-byte digest md as 64 lower-case hex digits and a NUL. */
static inline void pr_sha256_to_hex(const unsigned char md[32], char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

/* Lower-case hex SHA-256 of data with the digest of sha. Inline: it runs
 * once or twice per declaration (validate, aggregate), and was inlined into
 * its hot caller before it moved here. */
static inline void pr_sha256_hex_with(struct pr_sha256 *sha, const void *data, size_t len,
                                      char hex[65]) {
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_DigestInit_ex(sha->ctx, sha->md, NULL);
    EVP_DigestUpdate(sha->ctx, data, len);
    EVP_DigestFinal_ex(sha->ctx, md, &md_len);
    pr_sha256_to_hex(md, hex);
}

#endif
