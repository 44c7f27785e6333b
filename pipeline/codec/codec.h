/*
 * codec.h - Avro binary encoding and decoding specialised to the schemas in
 * schemas/ (the .avsc files).
 *
 * The decoder is written for hostile input: every length and count is checked
 * against the bytes left before anything is read or allocated, every string is
 * checked to be UTF-8, and a record followed by extra bytes is refused. It
 * borrows strings from the input buffer (zero copy). Avro-C stays the reference
 * implementation: tests/test_codec.c checks both directions byte for byte
 * against Avro-C's generic API on the same schema files.
 */
#ifndef PR_CODEC_H
#define PR_CODEC_H

#include "record-t.h"
#include "utf8.h"

/* Largest number of lines a declaration may carry; more is DECODE_ERROR. */
#define PR_MAX_LINES 10000

/* Decodes one Avro-binary Declaration from buf[0..len).
 * @returns PR_DLQ_NONE on success, else the dead-letter code, with a
 *          human-readable reason in err (never containing payload text).
 * @locality any thread; lines are allocated from arena. */
enum pr_dlq_code pr_declaration_decode(const uint8_t *buf, size_t len, struct pr_declaration *decl,
                                       struct pr_arena *arena, char *err, size_t err_size);

/* Appends the Avro-binary encoding of decl to out. */
void pr_declaration_encode(const struct pr_declaration *decl, struct pr_buf *out);

/* Appends the Avro-binary Decision for rec to out. source_topic and the
 * versions come from the batch. */
void pr_decision_encode(const struct pr_batch *batch, const struct pr_record *rec,
                        struct pr_buf *out);

/* Fields of a Decision, for callers that build one outside a record
 * (aggregate alerts, tests). reasons are (code index, points, detail). */
struct pr_decision_view {
    struct pr_str declaration_id, house_bill, consignee_key;
    int64_t decided_at;
    enum pr_lane lane;
    int32_t score;
    enum pr_de_minimis de_minimis;
    uint32_t reason_count;
    const int *reason_codes;
    const struct pr_reason *reasons;
    bool random_selection;
    const char *ruleset_version, *refdata_version, *source_topic;
    bool refdata_degraded; /* written as refdata_version + "+degraded" */
    int32_t source_partition;
    int64_t source_offset;
};
void pr_decision_view_encode(const struct pr_decision_view *view, struct pr_buf *out);

/* Fields of a DeadLetter, for callers that write one outside the encode
 * operator (the engine's OUTPUT_REJECTED dead letters). */
struct pr_deadletter_view {
    const char *error_code, *error_detail, *source_topic;
    int32_t source_partition;
    int64_t source_offset, received_at;
    const uint8_t *payload;
    size_t payload_len;
};
void pr_deadletter_view_encode(const struct pr_deadletter_view *view, struct pr_buf *out);

/* Appends the Avro-binary DeadLetter for rec to out: rec's code and detail,
 * the payload as received cut to keep_bytes. */
void pr_deadletter_encode(const struct pr_batch *batch, const struct pr_record *rec,
                          size_t keep_bytes, struct pr_buf *out);

/* Low-level Avro primitives, exposed for the generator and tests. */
void pr_avro_write_long(struct pr_buf *out, int64_t v);
void pr_avro_write_string(struct pr_buf *out, const char *s, size_t len);

#endif
