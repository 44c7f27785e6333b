/*
 * exchange.h - the intermediate record between the two stages of `run`
 * (issue 12): what stage 1 (decode .. screen) learned about a declaration,
 * written to the internal repartition topic, and read back by stage 2
 * (aggregate .. encode) into a struct pr_record as if stage 1 had run in
 * the same batch.
 *
 * It carries the partly made decision and what the keyed rules need, never
 * a raw name or address: ids, the consignee key (a SHA-256), 128-bit
 * digests of the delivery address and the consignee name, times, values,
 * flags, the reasons fired so far (their details hold no raw name or
 * address either: DOMAIN.md section 6), and where the declaration was read
 * (the decision's source_topic/partition/offset).
 *
 * Format (version 1), little-endian, every string a varint length and its
 * bytes:
 *   u8 version (1)
 *   str declaration_id, str house_bill, 64 bytes consignee_key (hex)
 *   varint arrival_time, event_time, value_usd_cents (zigzag)
 *   u8 flags: 1 suspended, 2 value_over_threshold, 4 refdata degraded,
 *             8 random_selection, 16 digests present
 *   u8 de_minimis, varint violator_severity (zigzag)
 *   [16 bytes address digest, 16 bytes name digest] when flag 16
 *   str refdata_version, str source_topic, varint source_partition,
 *   varint source_offset
 *   varint fired (bit per reason); per fired reason in code order:
 *     varint points (zigzag), varint omitted, str detail
 * A reader refuses any other version, a length past the end, and trailing
 * bytes: the record is dead-lettered (DECODE_ERROR) by stage 2, never
 * guessed at.
 */
#ifndef PR_EXCHANGE_H
#define PR_EXCHANGE_H

#include "record-t.h"

#define PR_EXCHANGE_VERSION 1

/* Appends rec's intermediate record to out. refdata_version and degraded
 * are the batch's (stage 1 decided it with them). */
void pr_exchange_encode(const struct pr_record *rec, const char *refdata_version, bool degraded,
                        const char *source_topic, struct pr_buf *out);

/* Fills rec (zeroed by pr_batch_push, payload set) from its payload, the
 * intermediate record; strings and reasons go into the batch arena.
 * Returns PR_OK, or PR_ERR with a reason in err (no raw bytes in it). */
int pr_exchange_decode(struct pr_batch *batch, struct pr_record *rec, char *err, size_t err_len);

#endif
