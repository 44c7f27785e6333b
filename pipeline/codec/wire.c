/*
 * wire.c - the Confluent wire format and the resolution of other versions
 * of the Declaration schema (the why is in wire.h).
 */
#include "wire.h"

#include <avro.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "schemas.h"

void pr_wire_header(uint32_t id, uint8_t out[PR_WIRE_HEADER_BYTES]) {
    out[0] = PR_WIRE_MAGIC;
    out[1] = (uint8_t)(id >> 24);
    out[2] = (uint8_t)(id >> 16);
    out[3] = (uint8_t)(id >> 8);
    out[4] = (uint8_t)id;
}

/* Most top-level fields of our Declaration schema (it has 19). */
#define PR_DECL_MAX_FIELDS 64

struct pr_decl_reader {
    enum pr_writer_kind kind;
    char why[256];
    avro_schema_t writer;             /* NULL when the text did not parse */
    avro_schema_t reader;             /* ours, less the fields written back as null */
    avro_value_iface_t *resolver;     /* avro_resolved_writer_new(writer, reader) */
    avro_value_iface_t *reader_class; /* generic values of reader */
    avro_value_t resolved, dest;      /* resolved wraps dest */
    /* Our fields in order: the index of each in reader, or -1 for one the
     * writer lacks, written back as union branch 0 (null). */
    size_t field_count;
    int field_index[PR_DECL_MAX_FIELDS];
};

static struct pr_decl_reader *pr_decl_reader_refuse(struct pr_decl_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct pr_decl_reader *pr_decl_reader_refuse(struct pr_decl_reader *r, const char *fmt,
                                                    ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    r->kind = PR_WRITER_UNRESOLVABLE;
    return r;
}

/* Deepest nesting the resolvability check follows (a recursive type
 * deeper than this is refused rather than followed forever). */
#define PR_RESOLVE_MAX_DEPTH 32

static avro_schema_t pr_deref(avro_schema_t s) {
    while (s && is_avro_link(s)) s = avro_schema_link_target(s);
    return s;
}

static bool pr_same_name(avro_schema_t w, avro_schema_t r) {
    const char *wn = avro_schema_name(w), *rn = avro_schema_name(r);
    const char *ws = avro_schema_namespace(w), *rs = avro_schema_namespace(r);
    return wn && rn && strcmp(wn, rn) == 0 && strcmp(ws ? ws : "", rs ? rs : "") == 0;
}

/* Whether data written with w can be read as r by Avro schema resolution,
 * checked here, strictly, before Avro-C is asked: Avro-C 1.11's
 * avro_resolved_writer_new frees memory twice on some of its failure paths
 * (a record whose nested named type resolved and a later field does not,
 * e.g. `lines` written as a string), so it is only ever called on a pair
 * this check accepts. Stricter than the specification in two places: a
 * writer enum symbol must exist in the reader, and every branch of a
 * writer union must resolve (Avro would fail on such data only when it
 * occurs). */
static bool pr_resolvable(avro_schema_t w, avro_schema_t r, int depth, char *why, size_t why_size) {
    w = pr_deref(w);
    r = pr_deref(r);
    if (!w || !r || depth > PR_RESOLVE_MAX_DEPTH) {
        snprintf(why, why_size, "schema nested deeper than %d levels", PR_RESOLVE_MAX_DEPTH);
        return false;
    }
    if (is_avro_union(w)) {
        for (size_t i = 0; i < avro_schema_union_size(w); i++)
            if (!pr_resolvable(avro_schema_union_branch(w, (int)i), r, depth + 1, why, why_size))
                return false;
        return true;
    }
    if (is_avro_union(r)) {
        for (size_t i = 0; i < avro_schema_union_size(r); i++)
            if (pr_resolvable(w, avro_schema_union_branch(r, (int)i), depth + 1, why, why_size))
                return true;
        snprintf(why, why_size, "a %s matches no branch of the reader's union",
                 avro_schema_type_name(w));
        return false;
    }
    avro_type_t wt = avro_typeof(w), rt = avro_typeof(r);
    if (wt != rt) {
        bool promoted =
            (wt == AVRO_INT32 && (rt == AVRO_INT64 || rt == AVRO_FLOAT || rt == AVRO_DOUBLE)) ||
            (wt == AVRO_INT64 && (rt == AVRO_FLOAT || rt == AVRO_DOUBLE)) ||
            (wt == AVRO_FLOAT && rt == AVRO_DOUBLE);
        if (!promoted)
            snprintf(why, why_size, "a %s cannot be read as a %s", avro_schema_type_name(w),
                     avro_schema_type_name(r));
        return promoted;
    }
    switch (wt) {
    case AVRO_RECORD: {
        if (!pr_same_name(w, r)) {
            snprintf(why, why_size, "record %s cannot be read as record %s", avro_schema_name(w),
                     avro_schema_name(r));
            return false;
        }
        size_t n = avro_schema_record_size(r);
        for (size_t i = 0; i < n; i++) {
            const char *name = avro_schema_record_field_name(r, (int)i);
            int wi = avro_schema_record_field_get_index(w, name);
            if (wi < 0) {
                snprintf(why, why_size, "writer schema lacks field '%s' of record %s", name,
                         avro_schema_name(r));
                return false;
            }
            if (!pr_resolvable(avro_schema_record_field_get_by_index(w, wi),
                               avro_schema_record_field_get_by_index(r, (int)i), depth + 1, why,
                               why_size)) {
                size_t used = strlen(why);
                if (used + 16 < why_size)
                    snprintf(why + used, why_size - used, " (field %s)", name);
                return false;
            }
        }
        return true;
    }
    case AVRO_ENUM: {
        if (!pr_same_name(w, r)) {
            snprintf(why, why_size, "enum %s cannot be read as enum %s", avro_schema_name(w),
                     avro_schema_name(r));
            return false;
        }
        for (int i = 0; i < avro_schema_enum_number_of_symbols(w); i++) {
            const char *symbol = avro_schema_enum_get(w, i);
            if (avro_schema_enum_get_by_name(r, symbol) < 0) {
                snprintf(why, why_size, "enum %s symbol %.40s is not one of ours",
                         avro_schema_name(r), symbol);
                return false;
            }
        }
        return true;
    }
    case AVRO_FIXED:
        if (!pr_same_name(w, r) || avro_schema_fixed_size(w) != avro_schema_fixed_size(r)) {
            snprintf(why, why_size, "fixed %s cannot be read as fixed %s", avro_schema_name(w),
                     avro_schema_name(r));
            return false;
        }
        return true;
    case AVRO_ARRAY:
        return pr_resolvable(avro_schema_array_items(w), avro_schema_array_items(r), depth + 1, why,
                             why_size);
    case AVRO_MAP:
        return pr_resolvable(avro_schema_map_values(w), avro_schema_map_values(r), depth + 1, why,
                             why_size);
    default: return true; /* the same primitive type */
    }
}

/* True when a field of ours may be missing from the writer: its type is a
 * union whose first branch is "null" and its default is null. */
static bool pr_field_defaults_to_null(json_t *field) {
    json_t *type = json_object_get(field, "type");
    json_t *def = json_object_get(field, "default");
    if (!json_is_array(type) || !def || !json_is_null(def)) return false;
    json_t *first = json_array_get(type, 0);
    return json_is_string(first) && strcmp(json_string_value(first), "null") == 0;
}

struct pr_decl_reader *pr_decl_reader_new(const char *writer_json, size_t len) {
    struct pr_decl_reader *r = pr_calloc(1, sizeof(*r));
    if (avro_schema_from_json_length(writer_json, len, &r->writer)) {
        r->writer = NULL;
        return pr_decl_reader_refuse(r, "writer schema does not parse: %s", avro_strerror());
    }
    avro_schema_t ours;
    if (avro_schema_from_json_length(pr_schema_declaration, strlen(pr_schema_declaration), &ours))
        return pr_decl_reader_refuse(r, "embedded Declaration schema does not parse: %s",
                                     avro_strerror());
    if (avro_schema_equal(r->writer, ours)) {
        avro_schema_decref(ours);
        r->kind = PR_WRITER_SAME;
        return r;
    }
    avro_schema_decref(ours);
    if (!is_avro_record(r->writer))
        return pr_decl_reader_refuse(r, "writer schema is a %s, not a record",
                                     avro_schema_type_name(r->writer));

    /* Our fields that the writer lacks: null-defaulted ones are left out of
     * the reader schema (Avro-C does not apply defaults), any other one makes
     * the writer unresolvable. */
    json_error_t jerr;
    json_t *doc = json_loads(pr_schema_declaration, 0, &jerr);
    json_t *fields = json_object_get(doc, "fields");
    if (!json_is_array(fields) || json_array_size(fields) > PR_DECL_MAX_FIELDS) {
        json_decref(doc);
        return pr_decl_reader_refuse(r, "embedded Declaration schema has no usable field list");
    }
    json_t *kept = json_array();
    r->field_count = json_array_size(fields);
    int next = 0;
    for (size_t i = 0; i < r->field_count; i++) {
        json_t *field = json_array_get(fields, i);
        const char *name = json_string_value(json_object_get(field, "name"));
        /* avro_schema_record_field_get reads an unset pointer for a name the
         * record lacks (Avro-C 1.11); the index lookup returns -1. */
        if (name && avro_schema_record_field_get_index(r->writer, name) >= 0) {
            json_array_append(kept, field);
            r->field_index[i] = next++;
        } else if (name && pr_field_defaults_to_null(field)) {
            r->field_index[i] = -1;
        } else {
            pr_decl_reader_refuse(
                r, "writer schema lacks field '%s', which has no null default in ours",
                name ? name : "?");
            json_decref(kept);
            json_decref(doc);
            return r;
        }
    }
    json_object_set_new(doc, "fields", kept);
    char *reader_json = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    int bad = avro_schema_from_json_length(reader_json, strlen(reader_json), &r->reader);
    free(reader_json);
    if (bad) {
        r->reader = NULL;
        return pr_decl_reader_refuse(
            r, "reader schema without the writer's missing fields does not parse: %s",
            avro_strerror());
    }
    char why[200];
    if (!pr_resolvable(r->writer, r->reader, 0, why, sizeof(why)))
        return pr_decl_reader_refuse(r, "writer schema does not resolve against ours: %s", why);
    r->resolver = avro_resolved_writer_new(r->writer, r->reader);
    if (!r->resolver)
        return pr_decl_reader_refuse(r, "writer schema does not resolve against ours: %s",
                                     avro_strerror());
    r->reader_class = avro_generic_class_from_schema(r->reader);
    if (!r->reader_class || avro_generic_value_new(r->reader_class, &r->dest) ||
        avro_resolved_writer_new_value(r->resolver, &r->resolved))
        return pr_decl_reader_refuse(r, "cannot make a value of the reader schema: %s",
                                     avro_strerror());
    avro_resolved_writer_set_dest(&r->resolved, &r->dest);
    r->kind = PR_WRITER_RESOLVED;
    return r;
}

enum pr_writer_kind pr_decl_reader_kind(const struct pr_decl_reader *r) {
    return r->kind;
}

const char *pr_decl_reader_why(const struct pr_decl_reader *r) {
    return r->why;
}

void pr_decl_reader_free(struct pr_decl_reader *r) {
    if (!r) return;
    if (r->resolved.iface) avro_value_decref(&r->resolved);
    if (r->dest.iface) avro_value_decref(&r->dest);
    if (r->reader_class) avro_value_iface_decref(r->reader_class);
    if (r->resolver) avro_value_iface_decref(r->resolver);
    if (r->reader) avro_schema_decref(r->reader);
    if (r->writer) avro_schema_decref(r->writer);
    free(r);
}

/* ------------------------------------------------ validation before Avro-C */

/* Avro-C 1.11 trusts lengths and counts: a negative or huge one makes it
 * allocate what it says (seen under ASan: realloc of 2^64 - 24 bytes from a
 * corrupted record). So the writer's bytes are walked with the writer
 * schema first, each length, count and index checked against the bytes
 * left and the schema, as the fast decoder does for ours; only a record
 * that passes is given to Avro-C. */
struct pr_walk {
    const uint8_t *pos, *end, *start;
    size_t items; /* array and map items so far */
    char *err;
    size_t err_size;
};

#define PR_WALK_MAX_DEPTH 64
#define PR_WALK_MAX_ITEMS 1000000

static bool pr_walk_fail(struct pr_walk *w, const char *what, avro_schema_t s) {
    snprintf(w->err, w->err_size, "%s (%s at byte %zu of %zu, writer schema)", what,
             avro_schema_type_name(s), (size_t)(w->pos - w->start), (size_t)(w->end - w->start));
    return false;
}

static bool pr_walk_long(struct pr_walk *w, int64_t *out, avro_schema_t s) {
    uint64_t value = 0;
    for (int shift = 0;; shift += 7) {
        if (w->pos >= w->end) return pr_walk_fail(w, "truncated varint", s);
        if (shift > 63) return pr_walk_fail(w, "varint longer than 10 bytes", s);
        uint8_t b = *w->pos++;
        if (shift == 63 && (b & 0x7e)) return pr_walk_fail(w, "varint overflows 64 bits", s);
        value |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
    }
    *out = (int64_t)((value >> 1) ^ (~(value & 1) + 1));
    return true;
}

static bool pr_walk_skip(struct pr_walk *w, int64_t n, avro_schema_t s) {
    if (n < 0) return pr_walk_fail(w, "negative length", s);
    if ((uint64_t)n > (uint64_t)(w->end - w->pos))
        return pr_walk_fail(w, "length exceeds bytes left", s);
    w->pos += n;
    return true;
}

static bool pr_walk(struct pr_walk *w, avro_schema_t s, int depth);

/* The blocks of an array or a map. */
static bool pr_walk_blocks(struct pr_walk *w, avro_schema_t s, avro_schema_t items, bool map,
                           int depth) {
    for (;;) {
        int64_t count, block_bytes = -1;
        if (!pr_walk_long(w, &count, s)) return false;
        if (count == 0) return true;
        if (count < 0) {
            if (count == INT64_MIN) return pr_walk_fail(w, "bad block count", s);
            count = -count;
            if (!pr_walk_long(w, &block_bytes, s)) return false;
            if (block_bytes < 0 || (uint64_t)block_bytes > (uint64_t)(w->end - w->pos))
                return pr_walk_fail(w, "block size exceeds bytes left", s);
        }
        /* An item may take no byte (null): the count is still bounded by
         * the bytes left and a total, so Avro-C never allocates more than
         * the message justifies. */
        if ((uint64_t)count > (uint64_t)(w->end - w->pos) + 1 ||
            w->items + (uint64_t)count > PR_WALK_MAX_ITEMS)
            return pr_walk_fail(w, "item count exceeds bytes left", s);
        w->items += (size_t)count;
        const uint8_t *block_start = w->pos;
        for (int64_t i = 0; i < count; i++) {
            int64_t key_len;
            if (map && (!pr_walk_long(w, &key_len, s) || !pr_walk_skip(w, key_len, s)))
                return false;
            if (!pr_walk(w, items, depth + 1)) return false;
        }
        /* As the fast decoder: a block size must match its items. */
        if (block_bytes >= 0 && w->pos - block_start != block_bytes)
            return pr_walk_fail(w, "block size disagrees with its items", s);
    }
}

static bool pr_walk(struct pr_walk *w, avro_schema_t s, int depth) {
    s = pr_deref(s);
    if (!s || depth > PR_WALK_MAX_DEPTH) {
        snprintf(w->err, w->err_size, "writer schema nested deeper than %d levels",
                 PR_WALK_MAX_DEPTH);
        return false;
    }
    int64_t v;
    switch (avro_typeof(s)) {
    case AVRO_NULL: return true;
    case AVRO_BOOLEAN:
        if (w->pos >= w->end) return pr_walk_fail(w, "truncated", s);
        if (*w->pos > 1) return pr_walk_fail(w, "boolean byte not 0 or 1", s);
        w->pos++;
        return true;
    case AVRO_INT32:
        if (!pr_walk_long(w, &v, s)) return false;
        if (v < INT32_MIN || v > INT32_MAX) return pr_walk_fail(w, "int out of 32-bit range", s);
        return true;
    case AVRO_INT64: return pr_walk_long(w, &v, s);
    case AVRO_FLOAT: return pr_walk_skip(w, 4, s);
    case AVRO_DOUBLE: return pr_walk_skip(w, 8, s);
    case AVRO_STRING:
    case AVRO_BYTES: return pr_walk_long(w, &v, s) && pr_walk_skip(w, v, s);
    case AVRO_FIXED: return pr_walk_skip(w, avro_schema_fixed_size(s), s);
    case AVRO_ENUM:
        if (!pr_walk_long(w, &v, s)) return false;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
            return pr_walk_fail(w, "bad enum index", s);
        return true;
    case AVRO_UNION:
        if (!pr_walk_long(w, &v, s)) return false;
        if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
            return pr_walk_fail(w, "bad union index", s);
        return pr_walk(w, avro_schema_union_branch(s, (int)v), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if (!pr_walk(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                return false;
        return true;
    case AVRO_ARRAY: return pr_walk_blocks(w, s, avro_schema_array_items(s), false, depth);
    case AVRO_MAP: return pr_walk_blocks(w, s, avro_schema_map_values(s), true, depth);
    default: return pr_walk_fail(w, "unsupported type", s);
    }
}

/* The resolved path: Avro-C reads the writer's bytes into a value of our
 * schema, which is written again as our Avro binary for the fast decoder. */
static enum pr_dlq_code pr_decl_reader_resolve(struct pr_decl_reader *r, const uint8_t *body,
                                               size_t len, struct pr_declaration *decl,
                                               struct pr_arena *arena, char *err, size_t err_size) {
    struct pr_walk walk = {body, body + len, body, 0, err, err_size};
    if (!pr_walk(&walk, r->writer, 0)) return PR_DLQ_DECODE_ERROR;
    if (walk.pos != walk.end) {
        snprintf(err, err_size,
                 "%zu bytes after a complete record of its writer schema (%zu bytes)",
                 (size_t)(walk.end - walk.pos), (size_t)(walk.pos - body));
        return PR_DLQ_TRAILING_BYTES;
    }
    avro_value_reset(&r->dest);
    avro_reader_t in = avro_reader_memory((const char *)body, (int64_t)len);
    if (avro_value_read(in, &r->resolved)) {
        snprintf(err, err_size, "not a valid record of its writer schema (%zu bytes): %s", len,
                 avro_strerror());
        avro_reader_free(in);
        return PR_DLQ_DECODE_ERROR;
    }
    uint8_t extra;
    bool trailing = avro_read(in, &extra, 1) == 0;
    avro_reader_free(in);
    if (trailing) {
        snprintf(err, err_size,
                 "bytes after a complete record of its writer schema (%zu bytes in all)", len);
        return PR_DLQ_TRAILING_BYTES;
    }
    size_t total = 0;
    for (size_t i = 0; i < r->field_count; i++) {
        if (r->field_index[i] < 0) {
            total += 1;
            continue;
        }
        avro_value_t field;
        size_t size = 0;
        if (avro_value_get_by_index(&r->dest, (size_t)r->field_index[i], &field, NULL) ||
            avro_value_sizeof(&field, &size)) {
            snprintf(err, err_size, "cannot re-encode the resolved record: %s", avro_strerror());
            return PR_DLQ_DECODE_ERROR;
        }
        total += size;
    }
    char *out = pr_arena_alloc(arena, total ? total : 1);
    avro_writer_t w = avro_writer_memory(out, (int64_t)total);
    for (size_t i = 0; i < r->field_count; i++) {
        int rc;
        if (r->field_index[i] < 0) {
            rc = avro_write(w, "\0", 1); /* union branch 0: null */
        } else {
            avro_value_t field;
            avro_value_get_by_index(&r->dest, (size_t)r->field_index[i], &field, NULL);
            rc = avro_value_write(w, &field);
        }
        if (rc) {
            avro_writer_free(w);
            snprintf(err, err_size, "cannot re-encode the resolved record: %s", avro_strerror());
            return PR_DLQ_DECODE_ERROR;
        }
    }
    avro_writer_free(w);
    return pr_declaration_decode((const uint8_t *)out, total, decl, arena, err, err_size);
}

enum pr_dlq_code pr_decl_reader_decode(struct pr_decl_reader *r, const uint8_t *body, size_t len,
                                       struct pr_declaration *decl, struct pr_arena *arena,
                                       char *err, size_t err_size) {
    switch (r->kind) {
    case PR_WRITER_SAME: return pr_declaration_decode(body, len, decl, arena, err, err_size);
    case PR_WRITER_RESOLVED:
        return pr_decl_reader_resolve(r, body, len, decl, arena, err, err_size);
    case PR_WRITER_UNRESOLVABLE: break;
    }
    memset(decl, 0, sizeof(*decl));
    snprintf(err, err_size, "%s", r->why);
    return PR_DLQ_UNKNOWN_SCHEMA;
}
