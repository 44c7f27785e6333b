/*
 * wire.h - the Confluent wire format (DOMAIN.md section 2) and the reading
 * of Declarations written with another version of the schema.
 *
 * A framed value is magic byte 0, the writer schema's registry id as 4
 * bytes big-endian, then the Avro binary. Nothing here talks to the
 * registry (pipeline/registry/schema_registry.c does): the functions take schema
 * text, so unit tests feed schemas directly.
 *
 * A writer schema is read one of two ways:
 *
 *   PR_WRITER_SAME      its parsed form equals ours (avro_schema_equal on
 *                       both parsed schemas, so spacing, field order of the
 *                       JSON object, "doc" and the like do not matter): the
 *                       fast decoder (codec.c) reads the bytes as they are.
 *   PR_WRITER_RESOLVED  another version that Avro schema resolution maps
 *                       onto ours (an added field, a promoted type, a field
 *                       of ours missing from it that has a default): Avro-C
 *                       reads the bytes through avro_resolved_writer_new
 *                       (writer, reader) into a value of our schema, which is
 *                       written again as Avro binary of our schema into the
 *                       batch arena and then read by the fast decoder. So
 *                       the record every operator sees is filled by one
 *                       decoder, with its checks (UTF-8, counts, ids).
 *
 * Avro-C 1.11 refuses a reader field that the writer lacks even when the
 * reader gives it a default ("Reader field X doesn't appear in writer"). A
 * top-level field of ours whose default is null (the ["null", T] unions) is
 * therefore left out of the reader schema handed to Avro-C and written back
 * as its default (union branch 0) when the record is re-encoded. Any other
 * missing field, a record name that differs, or types that do not resolve
 * make the writer schema unresolvable: UNKNOWN_SCHEMA, with the id.
 */
#ifndef PR_WIRE_H
#define PR_WIRE_H

#include "record-t.h"

#define PR_WIRE_HEADER_BYTES 5
#define PR_WIRE_MAGIC 0

/* Writes the 5-byte header of schema id into out. */
void pr_wire_header(uint32_t id, uint8_t out[PR_WIRE_HEADER_BYTES]);

enum pr_wire_frame {
    PR_WIRE_UNFRAMED = 0, /* does not start with the magic byte */
    PR_WIRE_FRAMED,       /* *id and the body after the header are set */
    PR_WIRE_TRUNCATED,    /* starts with the magic byte but has fewer than 5 bytes */
};

/* Tells a framed value from plain Avro binary. An unframed Declaration can
 * never start with byte 0: that would be an empty declaration_id, which no
 * decision can key (INVALID_ID), so the magic byte is unambiguous. */
static inline enum pr_wire_frame pr_wire_parse(const uint8_t *buf, size_t len, uint32_t *id) {
    if (len == 0 || buf[0] != PR_WIRE_MAGIC) return PR_WIRE_UNFRAMED;
    if (len < PR_WIRE_HEADER_BYTES) return PR_WIRE_TRUNCATED;
    *id = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
    return PR_WIRE_FRAMED;
}

enum pr_writer_kind { PR_WRITER_SAME = 0, PR_WRITER_RESOLVED, PR_WRITER_UNRESOLVABLE };

/* How one writer schema of the Declaration is read. */
struct pr_decl_reader;

/* Builds the reader of writer_json (the schema text the registry gave).
 * Never NULL: an unparsable or unresolvable schema gives a reader of kind
 * PR_WRITER_UNRESOLVABLE whose pr_decl_reader_why() says why. */
struct pr_decl_reader *pr_decl_reader_new(const char *writer_json, size_t len);
enum pr_writer_kind pr_decl_reader_kind(const struct pr_decl_reader *reader);
const char *pr_decl_reader_why(const struct pr_decl_reader *reader);
void pr_decl_reader_free(struct pr_decl_reader *reader);

/* Decodes body[0..len) (the bytes after the header) written with the
 * reader's writer schema into decl, as pr_declaration_decode does (strings
 * borrow from body, or from the arena on the resolved path). A reader of
 * kind UNRESOLVABLE gives PR_DLQ_UNKNOWN_SCHEMA. */
enum pr_dlq_code pr_decl_reader_decode(struct pr_decl_reader *reader, const uint8_t *body,
                                       size_t len, struct pr_declaration *decl,
                                       struct pr_arena *arena, char *err, size_t err_size);

#endif
