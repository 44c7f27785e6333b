/*
 * refdata.c - reference data in Redis (DOMAIN.md sections 6-7): the loader
 * and status of refdata_load.h. (The value encoding of refdata.h lives in
 * refdata_format.c.)
 *
 * The loader works in two strictly separated phases:
 *
 *   1. Read and validate. Each file is read whole, parsed with libcsv fed one
 *      physical line at a time (so that every record knows the line it starts
 *      on), and every row is checked. Good rows go to in-memory tables: HTS
 *      rows in an array with a code index for duplicates, violators in a hash
 *      map that merges rows of the same KIND|name key, countries in an array
 *      indexed by code. Bad rows are reported as FILE:LINE: reason. Nothing
 *      touches Redis in this phase, so a refused load changes nothing.
 *
 *   2. Write. HSETs of up to PR_REF_HSET_FIELDS field-value pairs are
 *      appended to the hiredis output buffer and their replies read back
 *      every PR_REF_PIPELINE_DEPTH commands; every reply is checked. The keys
 *      carry a pending TTL until MULTI / GET current / SET current / PERSIST
 *      / EXEC makes the version current, so the switch is one atomic step and
 *      a dead loader leaves no permanent garbage. Finally the previous
 *      versions get the grace TTL (only keys without a TTL: an older version
 *      already counting down keeps its deadline).
 */
#include "refdata.h"

#include <csv.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "normalize.h"
#include "redis.h"
#include "refdata-int.h"
#include "refdata_load.h"
#include "utf8.h"

/* ================================================================ tables */

/* Limits of the numeric columns. Points add up to a score capped at 1000. */
#define PR_REF_MAX_POINTS 1000
#define PR_REF_MAX_FLOOR 1000000000000000ULL /* 10^15 cents */
#define PR_REF_MAX_FILE_BYTES (1024LL * 1024 * 1024)
#define PR_REF_MAX_PRINTED_ERRORS 200
#define PR_REF_PROGRESS_US 2000000

static uint64_t pr_ref_hash(const void *data, size_t len) {
    return pr_hash64(data, len);
}

/* One valid row of hts.csv, as it goes to Redis. */
struct pr_hts_row {
    char code[11];
    uint8_t code_len;
    uint32_t flags;
    int64_t floor_cents; /* -1 when empty */
    int32_t points;      /* -1 when empty */
    uint64_t line;
};

/* Open addressing from an HTS code (digits value * 16 + length, never 0) to
 * its row index, to find duplicates. */
struct pr_code_slot {
    uint64_t code_key;
    uint32_t row;
};

struct pr_code_index {
    struct pr_code_slot *slots;
    size_t cap, count;
};

static void pr_code_index_grow(struct pr_code_index *index) {
    size_t cap = index->cap ? index->cap * 2 : 1024;
    struct pr_code_slot *slots = pr_calloc(cap, sizeof(*slots));
    for (size_t i = 0; i < index->cap; i++) {
        if (!index->slots[i].code_key) continue;
        size_t j = pr_ref_hash(&index->slots[i].code_key, 8) & (cap - 1);
        while (slots[j].code_key) j = (j + 1) & (cap - 1);
        slots[j] = index->slots[i];
    }
    free(index->slots);
    index->slots = slots;
    index->cap = cap;
}

/* Finds code_key; when absent inserts it with row and returns NULL. */
static const struct pr_code_slot *pr_code_index_put(struct pr_code_index *index, uint64_t code_key,
                                                    uint32_t row) {
    if ((index->count + 1) * 10 > index->cap * 7) pr_code_index_grow(index);
    size_t j = pr_ref_hash(&code_key, 8) & (index->cap - 1);
    while (index->slots[j].code_key) {
        if (index->slots[j].code_key == code_key) return &index->slots[j];
        j = (j + 1) & (index->cap - 1);
    }
    index->slots[j].code_key = code_key;
    index->slots[j].row = row;
    index->count++;
    return NULL;
}

/* One violator key ("SHIPPER|NAME") with its ";"-joined entries. */
struct pr_vio_slot {
    char *key;
    char *value;
    uint32_t key_len, value_len;
    uint64_t hash;
};

struct pr_vio_map {
    struct pr_vio_slot *slots;
    size_t cap, count;
};

static void pr_vio_map_grow(struct pr_vio_map *map) {
    size_t cap = map->cap ? map->cap * 2 : 1024;
    struct pr_vio_slot *slots = pr_calloc(cap, sizeof(*slots));
    for (size_t i = 0; i < map->cap; i++) {
        if (!map->slots[i].key) continue;
        size_t j = map->slots[i].hash & (cap - 1);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = map->slots[i];
    }
    free(map->slots);
    map->slots = slots;
    map->cap = cap;
}

/* True when entry is already one of the ";"-separated items of value. */
static bool pr_vio_has_entry(const char *value, size_t value_len, const char *entry,
                             size_t entry_len) {
    size_t start = 0;
    for (size_t i = 0; i <= value_len; i++) {
        if (i == value_len || value[i] == ';') {
            if (i - start == entry_len && memcmp(value + start, entry, entry_len) == 0) return true;
            start = i + 1;
        }
    }
    return false;
}

/* Adds entry under key, merging with the entries already there. */
static void pr_vio_map_add(struct pr_vio_map *map, const char *key, size_t key_len,
                           const char *entry, size_t entry_len) {
    if ((map->count + 1) * 10 > map->cap * 7) pr_vio_map_grow(map);
    uint64_t hash = pr_ref_hash(key, key_len);
    size_t j = hash & (map->cap - 1);
    while (map->slots[j].key) {
        struct pr_vio_slot *slot = &map->slots[j];
        if (slot->hash == hash && slot->key_len == key_len &&
            memcmp(slot->key, key, key_len) == 0) {
            if (pr_vio_has_entry(slot->value, slot->value_len, entry, entry_len)) return;
            slot->value = pr_realloc(slot->value, slot->value_len + 1 + entry_len + 1);
            slot->value[slot->value_len] = ';';
            memcpy(slot->value + slot->value_len + 1, entry, entry_len);
            slot->value_len += 1 + (uint32_t)entry_len;
            slot->value[slot->value_len] = '\0';
            return;
        }
        j = (j + 1) & (map->cap - 1);
    }
    struct pr_vio_slot *slot = &map->slots[j];
    slot->key = pr_strndup(key, key_len);
    slot->key_len = (uint32_t)key_len;
    slot->value = pr_strndup(entry, entry_len);
    slot->value_len = (uint32_t)entry_len;
    slot->hash = hash;
    map->count++;
}

static void pr_vio_map_free(struct pr_vio_map *map) {
    for (size_t i = 0; i < map->cap; i++) {
        free(map->slots[i].key);
        free(map->slots[i].value);
    }
    free(map->slots);
    memset(map, 0, sizeof(*map));
}

struct pr_country_row {
    int32_t points;
    uint64_t line; /* 0 when absent */
};

/* Everything phase 1 keeps for phase 2. */
struct pr_loader {
    const struct pr_refdata_load_options *opts;
    struct pr_hts_row *hts;
    size_t hts_count, hts_cap;
    struct pr_code_index hts_index;
    struct pr_vio_map violators;
    uint64_t violator_rows;
    struct pr_country_row countries[26 * 26];
    uint64_t country_rows;
    uint64_t bad_rows;
    uint64_t printed_errors;
    struct pr_buf scratch; /* normalization and key building */
    char sha256[3][65];
    int64_t last_progress_us;
};

/* ============================================================ CSV reading */

struct pr_field {
    const char *ptr;
    size_t len;
};

struct pr_csv_field {
    size_t off, len;
};

struct pr_csv_reader;

/* One of the three files: its fixed columns and its row check, which
 * returns PR_ERR with a reason in err (naming the column, never quoting a
 * name or address) or stores the row. */
struct pr_ref_spec {
    const char *what;
    const char *const *columns;
    size_t column_count;
    int (*row)(struct pr_loader *loader, const struct pr_csv_reader *reader, char *err,
               size_t err_size);
};

#define PR_REF_MAX_COLUMNS 8

struct pr_csv_reader {
    struct pr_loader *loader;
    const char *path;
    const struct pr_ref_spec *spec;
    struct csv_parser parser;
    bool parser_ready;
    bool header_done;
    bool fatal;
    size_t header_fields;
    size_t column_index[PR_REF_MAX_COLUMNS]; /* spec column -> field index */
    char **header_names;                     /* field index -> column name */
    struct pr_buf text;                      /* the current record's fields, NUL-terminated */
    struct pr_csv_field *fields;
    size_t field_count, field_cap;
    uint64_t line;        /* physical line being fed, from 1 */
    uint64_t record_line; /* line the current record starts on */
    bool record_started;
    uint64_t rows, bad_rows;
};

static struct pr_field pr_col(const struct pr_csv_reader *reader, size_t column) {
    const struct pr_csv_field *f = &reader->fields[reader->column_index[column]];
    return (struct pr_field){(const char *)reader->text.data + f->off, f->len};
}

static bool pr_field_blank(struct pr_field f) {
    for (size_t i = 0; i < f.len; i++)
        if (!pr_is_blank_byte(f.ptr[i])) return false;
    return true;
}

static bool pr_field_is(struct pr_field f, const char *lit) {
    return strlen(lit) == f.len && memcmp(f.ptr, lit, f.len) == 0;
}

static void pr_progress(struct pr_loader *loader, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pr_progress(struct pr_loader *loader, const char *fmt, ...) {
    if (loader->opts->quiet) return;
    int64_t now = pr_monotonic_us();
    if (now - loader->last_progress_us < PR_REF_PROGRESS_US) return;
    loader->last_progress_us = now;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pr_info("refdata: %s", line);
}

static void pr_row_bad(struct pr_csv_reader *reader, uint64_t line, const char *reason) {
    reader->bad_rows++;
    reader->loader->bad_rows++;
    if (reader->loader->printed_errors++ < PR_REF_MAX_PRINTED_ERRORS)
        pr_error("%s:%llu: %s", reader->path, (unsigned long long)line, reason);
}

/* A column name fit for a message: printable ASCII, cut at 40 bytes. */
static void pr_safe_name(const char *name, char *out, size_t size) {
    size_t n = 0;
    for (; name[n] && n + 1 < size && n < 40; n++) {
        unsigned char c = (unsigned char)name[n];
        out[n] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
    }
    out[n] = '\0';
}

static void pr_csv_header(struct pr_csv_reader *reader) {
    const struct pr_ref_spec *spec = reader->spec;
    reader->header_done = true;
    reader->header_fields = reader->field_count;
    reader->header_names = pr_calloc(reader->field_count + 1, sizeof(char *));
    for (size_t c = 0; c < spec->column_count; c++) reader->column_index[c] = SIZE_MAX;
    for (size_t j = 0; j < reader->field_count; j++) {
        const char *name = (const char *)reader->text.data + reader->fields[j].off;
        reader->header_names[j] = pr_strdup(name);
        char safe[48];
        pr_safe_name(name, safe, sizeof(safe));
        size_t c = 0;
        while (c < spec->column_count && strcmp(spec->columns[c], name) != 0) c++;
        if (c == spec->column_count) {
            pr_warn("%s:%llu: ignoring unknown column '%s'", reader->path,
                    (unsigned long long)reader->record_line, safe);
        } else if (reader->column_index[c] != SIZE_MAX) {
            pr_error("%s:%llu: column '%s' appears twice in the header", reader->path,
                     (unsigned long long)reader->record_line, safe);
            reader->fatal = true;
        } else {
            reader->column_index[c] = j;
        }
    }
    for (size_t c = 0; c < spec->column_count; c++) {
        if (reader->column_index[c] != SIZE_MAX) continue;
        char needs[256];
        size_t n = 0;
        needs[0] = '\0';
        for (size_t k = 0; k < spec->column_count && n < sizeof(needs); k++) {
            int w = snprintf(needs + n, sizeof(needs) - n, "%s%s", k ? ", " : "", spec->columns[k]);
            if (w < 0) break;
            n += (size_t)w;
        }
        pr_error("%s:%llu: missing column '%s' (%s needs: %s)", reader->path,
                 (unsigned long long)reader->record_line, spec->columns[c], spec->what, needs);
        reader->fatal = true;
    }
}

static void pr_csv_record(struct pr_csv_reader *reader) {
    if (reader->fatal) return;
    if (!reader->header_done) {
        pr_csv_header(reader);
        return;
    }
    reader->rows++;
    char err[256];
    if (reader->field_count != reader->header_fields) {
        snprintf(err, sizeof(err), "expected %zu fields as in the header, found %zu",
                 reader->header_fields, reader->field_count);
        pr_row_bad(reader, reader->record_line, err);
        return;
    }
    for (size_t j = 0; j < reader->field_count; j++) {
        const char *s = (const char *)reader->text.data + reader->fields[j].off;
        size_t len = reader->fields[j].len;
        const char *problem = NULL;
        if (memchr(s, '\0', len))
            problem = "contains a NUL byte";
        else if (!pr_utf8_valid((const uint8_t *)s, len))
            problem = "not valid UTF-8";
        if (problem) {
            char safe[48];
            pr_safe_name(reader->header_names[j], safe, sizeof(safe));
            snprintf(err, sizeof(err), "%s: %s", safe, problem);
            pr_row_bad(reader, reader->record_line, err);
            return;
        }
    }
    err[0] = '\0';
    if (reader->spec->row(reader->loader, reader, err, sizeof(err)) != PR_OK)
        pr_row_bad(reader, reader->record_line, err);
}

static void pr_csv_on_field(void *field, size_t len, void *data) {
    struct pr_csv_reader *reader = data;
    if (!reader->record_started) {
        reader->record_started = true;
        reader->record_line = reader->line;
    }
    if (reader->field_count == reader->field_cap) {
        reader->field_cap = reader->field_cap ? reader->field_cap * 2 : 16;
        reader->fields = pr_realloc(reader->fields, reader->field_cap * sizeof(*reader->fields));
    }
    reader->fields[reader->field_count++] = (struct pr_csv_field){reader->text.len, len};
    pr_buf_append(&reader->text, field, len);
    pr_buf_append(&reader->text, "", 1);
}

static void pr_csv_reset_record(struct pr_csv_reader *reader) {
    reader->field_count = 0;
    pr_buf_reset(&reader->text);
    reader->record_started = false;
}

static void pr_csv_on_record(int terminator, void *data) {
    (void)terminator;
    struct pr_csv_reader *reader = data;
    pr_csv_record(reader);
    pr_csv_reset_record(reader);
}

#define PR_CSV_OPTIONS (CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)

static int pr_read_whole_file(const char *path, char **data, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        pr_error("refdata: cannot open %s: %s", path, strerror(errno));
        return PR_ERR;
    }
    struct pr_buf buf;
    pr_buf_init(&buf);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if ((long long)(buf.len + n) > PR_REF_MAX_FILE_BYTES) {
            pr_error("refdata: %s is larger than 1 GiB", path);
            fclose(fp);
            pr_buf_free(&buf);
            return PR_ERR;
        }
        pr_buf_append(&buf, chunk, n);
    }
    bool failed = ferror(fp);
    fclose(fp);
    if (failed) {
        pr_error("refdata: cannot read %s", path);
        pr_buf_free(&buf);
        return PR_ERR;
    }
    pr_buf_append(&buf, "", 1);
    *data = (char *)buf.data;
    *len = buf.len - 1;
    return PR_OK;
}

/* Reads and validates one file into the loader's tables. PR_ERR on a fatal
 * problem (unreadable, bad header, unterminated quote); bad rows are counted
 * in reader stats and the loader. */
static int pr_read_csv(struct pr_loader *loader, const char *path, const struct pr_ref_spec *spec,
                       char sha256[65], uint64_t *bad_rows) {
    char *data;
    size_t len;
    if (pr_read_whole_file(path, &data, &len) != PR_OK) return PR_ERR;
    pr_sha256_hex(data, len, sha256);

    struct pr_csv_reader reader;
    memset(&reader, 0, sizeof(reader));
    reader.loader = loader;
    reader.path = path;
    reader.spec = spec;
    pr_buf_init(&reader.text);
    csv_init(&reader.parser, PR_CSV_OPTIONS);
    reader.parser_ready = true;

    size_t pos = 0;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) pos = 3; /* UTF-8 byte order mark */
    reader.line = 1;
    while (pos < len && !reader.fatal) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) + 1 : len;
        size_t chunk_len = end - pos;
        if (!reader.record_started) {
            bool blank = true;
            for (size_t i = pos; i < end && blank; i++) blank = pr_is_blank_byte(data[i]);
            if (!blank) {
                reader.record_started = true;
                reader.record_line = reader.line;
            }
        }
        size_t used = csv_parse(&reader.parser, data + pos, chunk_len, pr_csv_on_field,
                                pr_csv_on_record, &reader);
        if (used != chunk_len) {
            int code = csv_error(&reader.parser);
            if (!reader.header_done) {
                pr_error("%s:%llu: header row: malformed CSV (%s)", path,
                         (unsigned long long)reader.record_line, csv_strerror(code));
                reader.fatal = true;
                break;
            }
            reader.rows++;
            pr_row_bad(&reader, reader.record_line,
                       code == CSV_EPARSE ? "malformed CSV: a quote inside an unquoted field, "
                                            "or text after a closing quote"
                                          : csv_strerror(code));
            /* Start over on the next line. */
            csv_free(&reader.parser);
            csv_init(&reader.parser, PR_CSV_OPTIONS);
            pr_csv_reset_record(&reader);
        }
        pos = end;
        reader.line++;
        pr_progress(loader, "reading %s: line %llu (%.0f%%)", path, (unsigned long long)reader.line,
                    100.0 * (double)pos / (double)(len ? len : 1));
    }
    if (!reader.fatal &&
        csv_fini(&reader.parser, pr_csv_on_field, pr_csv_on_record, &reader) != 0) {
        /* An opening quote never closed swallowed the rest of the file: which
         * rows were meant cannot be known, so this is never skippable. */
        pr_error("%s:%llu: malformed CSV: quoted field not closed before the end of "
                 "the file",
                 path, (unsigned long long)reader.record_line);
        reader.fatal = true;
    }
    if (!reader.fatal && !reader.header_done) {
        pr_error("%s: empty file: expected a header row (%s)", path, spec->what);
        reader.fatal = true;
    }
    if (!reader.fatal && reader.rows > 0 && reader.bad_rows == reader.rows) {
        pr_error("%s: every one of its %llu rows is bad; refusing it even with "
                 "--skip-bad",
                 path, (unsigned long long)reader.rows);
        reader.fatal = true;
    }
    *bad_rows = reader.bad_rows;
    csv_free(&reader.parser);
    if (reader.header_names)
        for (size_t j = 0; j < reader.header_fields; j++) free(reader.header_names[j]);
    free(reader.header_names);
    free(reader.fields);
    pr_buf_free(&reader.text);
    free(data);
    return reader.fatal ? PR_ERR : PR_OK;
}

/* ============================================================ row checks */

enum {
    PR_HTS_COL_HTS,
    PR_HTS_COL_DESCRIPTION,
    PR_HTS_COL_FLAGS,
    PR_HTS_COL_FLOOR,
    PR_HTS_COL_POINTS
};
static const char *const pr_hts_columns[] = {"hts", "description", "flags",
                                             "unit_value_floor_cents", "points"};

static int pr_hts_row(struct pr_loader *loader, const struct pr_csv_reader *reader, char *err,
                      size_t err_size) {
    struct pr_field code = pr_col(reader, PR_HTS_COL_HTS);
    if (code.len == 0) {
        pr_set_err(err, err_size, "hts: empty");
        return PR_ERR;
    }
    uint64_t digits = 0;
    for (size_t i = 0; i < code.len; i++) {
        if (code.ptr[i] < '0' || code.ptr[i] > '9') {
            pr_set_err(err, err_size, "hts: not all digits (write 6402993165, not 6402.99.31.65)");
            return PR_ERR;
        }
        if (i < 10) digits = digits * 10 + (uint64_t)(code.ptr[i] - '0');
    }
    if (code.len > 10 || code.len % 2) {
        pr_set_err(err, err_size, "hts: %zu digits, expected 2, 4, 6, 8 or 10", code.len);
        return PR_ERR;
    }
    struct pr_hts_row row = {.code_len = (uint8_t)code.len, .line = reader->record_line};
    memcpy(row.code, code.ptr, code.len);
    row.code[code.len] = '\0';

    struct pr_field flags = pr_col(reader, PR_HTS_COL_FLAGS);
    char detail[200];
    if (pr_hts_flags_parse(flags.ptr, flags.len, &row.flags, detail, sizeof(detail)) != PR_OK) {
        pr_set_err(err, err_size, "flags: %s", detail);
        return PR_ERR;
    }
    struct pr_field floor = pr_col(reader, PR_HTS_COL_FLOOR);
    uint64_t v;
    row.floor_cents = -1;
    if (floor.len) {
        if (!pr_parse_decimal(floor.ptr, floor.len, PR_REF_MAX_FLOOR, &v)) {
            pr_set_err(err, err_size,
                       "unit_value_floor_cents: expected empty or a whole number of cents");
            return PR_ERR;
        }
        row.floor_cents = (int64_t)v;
    }
    struct pr_field points = pr_col(reader, PR_HTS_COL_POINTS);
    row.points = -1;
    if (points.len) {
        if (!pr_parse_decimal(points.ptr, points.len, PR_REF_MAX_POINTS, &v)) {
            pr_set_err(err, err_size, "points: expected empty or a whole number 0-%d",
                       PR_REF_MAX_POINTS);
            return PR_ERR;
        }
        row.points = (int32_t)v;
    }
    const struct pr_code_slot *dup =
        pr_code_index_put(&loader->hts_index, digits * 16 + code.len, (uint32_t)loader->hts_count);
    if (dup) {
        pr_set_err(err, err_size, "hts: duplicate code (first on line %llu)",
                   (unsigned long long)loader->hts[dup->row].line);
        return PR_ERR;
    }
    if (loader->hts_count == loader->hts_cap) {
        loader->hts_cap = loader->hts_cap ? loader->hts_cap * 2 : 1024;
        loader->hts = pr_realloc(loader->hts, loader->hts_cap * sizeof(*loader->hts));
    }
    loader->hts[loader->hts_count++] = row;
    return PR_OK;
}

enum {
    PR_VIO_COL_KIND,
    PR_VIO_COL_NAME,
    PR_VIO_COL_ADDRESS,
    PR_VIO_COL_COUNTRY,
    PR_VIO_COL_SEVERITY,
    PR_VIO_COL_REASON,
    PR_VIO_COL_LISTED_ON
};
static const char *const pr_violator_columns[] = {"kind",     "name",   "address",  "country",
                                                  "severity", "reason", "listed_on"};
static const char *const pr_violator_kinds[] = {"SHIPPER", "SELLER", "CONSIGNEE", "ADDRESS"};

static bool pr_country_code(struct pr_field f) {
    return f.len == 2 && f.ptr[0] >= 'A' && f.ptr[0] <= 'Z' && f.ptr[1] >= 'A' && f.ptr[1] <= 'Z';
}

static bool pr_valid_date(struct pr_field f) {
    if (f.len != 10 || f.ptr[4] != '-' || f.ptr[7] != '-') return false;
    uint64_t y, m, d;
    if (!pr_parse_decimal(f.ptr, 4, 9999, &y) || !pr_parse_decimal(f.ptr + 5, 2, 12, &m) ||
        !pr_parse_decimal(f.ptr + 8, 2, 31, &d))
        return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || d < 1) return false;
    int max = days[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
    return (int)d <= max;
}

static int pr_violator_row(struct pr_loader *loader, const struct pr_csv_reader *reader, char *err,
                           size_t err_size) {
    struct pr_field kind = pr_col(reader, PR_VIO_COL_KIND);
    size_t k = 0;
    while (k < PR_ARRAY_LEN(pr_violator_kinds) && !pr_field_is(kind, pr_violator_kinds[k])) k++;
    if (k == PR_ARRAY_LEN(pr_violator_kinds)) {
        pr_set_err(err, err_size, "kind: expected SHIPPER, SELLER, CONSIGNEE or ADDRESS");
        return PR_ERR;
    }
    bool is_address = k == 3;
    struct pr_field name = pr_col(reader, PR_VIO_COL_NAME);
    struct pr_field address = pr_col(reader, PR_VIO_COL_ADDRESS);
    if (is_address && !pr_field_blank(name)) {
        pr_set_err(err, err_size, "name: must be empty for kind ADDRESS");
        return PR_ERR;
    }
    if (!is_address && pr_field_blank(name)) {
        pr_set_err(err, err_size, "name: required for kind %s", pr_violator_kinds[k]);
        return PR_ERR;
    }
    if (is_address && pr_field_blank(address)) {
        pr_set_err(err, err_size, "address: required for kind ADDRESS");
        return PR_ERR;
    }
    struct pr_field country = pr_col(reader, PR_VIO_COL_COUNTRY);
    if (country.len && !pr_country_code(country)) {
        pr_set_err(err, err_size, "country: expected empty or two upper-case letters (ISO 3166)");
        return PR_ERR;
    }
    struct pr_field severity = pr_col(reader, PR_VIO_COL_SEVERITY);
    if (severity.len != 1 || severity.ptr[0] < '1' || severity.ptr[0] > '3') {
        pr_set_err(err, err_size, "severity: expected 1, 2 or 3");
        return PR_ERR;
    }
    if (!pr_valid_date(pr_col(reader, PR_VIO_COL_LISTED_ON))) {
        pr_set_err(err, err_size, "listed_on: expected a date YYYY-MM-DD");
        return PR_ERR;
    }

    /* Key: KIND|normalized name (or address). The text itself never goes to
     * a message, only the column it came from. */
    struct pr_field subject = is_address ? address : name;
    const char *column = is_address ? "address" : "name";
    struct pr_buf *key = &loader->scratch;
    pr_buf_reset(key);
    size_t kind_len = strlen(pr_violator_kinds[k]);
    pr_buf_reserve(key, kind_len + 1 + subject.len + 1);
    memcpy(key->data, pr_violator_kinds[k], kind_len);
    key->data[kind_len] = '|';
    char *norm = (char *)key->data + kind_len + 1;
    size_t norm_len = is_address ? pr_norm_address(subject.ptr, subject.len, norm)
                                 : pr_norm_name(subject.ptr, subject.len, norm);
    if (norm_len == 0) {
        pr_set_err(err, err_size, "%s: nothing left after normalization", column);
        return PR_ERR;
    }
    if (pr_norm_is_placeholder(norm, norm_len)) {
        pr_set_err(err, err_size, "%s: a placeholder (N/A, NONE, UNKNOWN) cannot be listed",
                   column);
        return PR_ERR;
    }
    key->len = kind_len + 1 + norm_len;
    char entry[8];
    int entry_len =
        snprintf(entry, sizeof(entry), "%.*s:%c", (int)country.len, country.ptr, severity.ptr[0]);
    pr_vio_map_add(&loader->violators, (const char *)key->data, key->len, entry, (size_t)entry_len);
    loader->violator_rows++;
    return PR_OK;
}

enum { PR_CTY_COL_COUNTRY, PR_CTY_COL_POINTS };
static const char *const pr_country_columns[] = {"country", "points"};

static int pr_country_row(struct pr_loader *loader, const struct pr_csv_reader *reader, char *err,
                          size_t err_size) {
    struct pr_field country = pr_col(reader, PR_CTY_COL_COUNTRY);
    if (!pr_country_code(country)) {
        pr_set_err(err, err_size, "country: expected two upper-case letters (ISO 3166)");
        return PR_ERR;
    }
    struct pr_field points = pr_col(reader, PR_CTY_COL_POINTS);
    uint64_t v;
    if (!pr_parse_decimal(points.ptr, points.len, PR_REF_MAX_POINTS, &v)) {
        pr_set_err(err, err_size, "points: expected a whole number 0-%d", PR_REF_MAX_POINTS);
        return PR_ERR;
    }
    struct pr_country_row *row =
        &loader->countries[(country.ptr[0] - 'A') * 26 + (country.ptr[1] - 'A')];
    if (row->line) {
        pr_set_err(err, err_size, "country: duplicate (first on line %llu)",
                   (unsigned long long)row->line);
        return PR_ERR;
    }
    row->line = reader->record_line;
    row->points = (int32_t)v;
    loader->country_rows++;
    return PR_OK;
}

static const struct pr_ref_spec pr_ref_specs[3] = {
    {"hts.csv", pr_hts_columns, PR_ARRAY_LEN(pr_hts_columns), pr_hts_row},
    {"violators.csv", pr_violator_columns, PR_ARRAY_LEN(pr_violator_columns), pr_violator_row},
    {"countries.csv", pr_country_columns, PR_ARRAY_LEN(pr_country_columns), pr_country_row},
};

static void pr_loader_free(struct pr_loader *loader) {
    free(loader->hts);
    free(loader->hts_index.slots);
    pr_vio_map_free(&loader->violators);
    pr_buf_free(&loader->scratch);
}

/* ================================================================= Redis */

#define PR_REF_HSET_FIELDS 1000  /* field-value pairs per HSET */
#define PR_REF_PIPELINE_DEPTH 16 /* commands appended before replies are read */
#define PR_REF_PENDING_TTL_MS (6 * 3600 * 1000LL)

static const char *const pr_ref_suffixes[] = {"hts", "vio", "cty", "meta"};
#define PR_REF_KEYS 4

struct pr_ref_conn {
    redisContext *ctx;
    const char *address;
    char host[256];
    int port;
    int timeout_ms;
    struct pr_redis_auth auth; /* AUTH on every connection (redis.user, redis.password) */
};

static int pr_ref_parse_address(struct pr_ref_conn *conn, const char *address) {
    conn->address = address;
    const char *host = address, *colon = strrchr(address, ':');
    size_t host_len = colon ? (size_t)(colon - address) : 0;
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || host_len == 0 || host_len >= sizeof(conn->host) || !end || *end || port <= 0 ||
        port > 65535) {
        pr_error("refdata: Redis address '%s': expected host:port", address);
        return PR_ERR;
    }
    memcpy(conn->host, host, host_len);
    conn->host[host_len] = '\0';
    conn->port = (int)port;
    return PR_OK;
}

static int pr_ref_connect(struct pr_ref_conn *conn) {
    if (conn->ctx) redisFree(conn->ctx);
    conn->ctx = NULL;
    int ms = conn->timeout_ms > 0 ? conn->timeout_ms : 30000;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(conn->host, conn->port, tv);
    if (!ctx || ctx->err) {
        pr_error("refdata: cannot connect to Redis at %s: %s", conn->address,
                 ctx ? ctx->errstr : "cannot allocate a context");
        if (ctx) redisFree(ctx);
        return PR_ERR;
    }
    redisSetTimeout(ctx, tv);
    char why[256];
    if (pr_redis_authenticate(ctx, &conn->auth, why, sizeof(why)) != PR_OK) {
        pr_error("refdata: Redis at %s refused AUTH: %s (check redis.user and redis.password)",
                 conn->address, why);
        redisFree(ctx);
        return PR_ERR;
    }
    conn->ctx = ctx;
    return PR_OK;
}

static void pr_ref_close(struct pr_ref_conn *conn) {
    if (conn->ctx) redisFree(conn->ctx);
    conn->ctx = NULL;
}

/* A synchronous command; NULL after printing why (connection error or an
 * error reply). */
static redisReply *pr_ref_command(struct pr_ref_conn *conn, const char *fmt, ...) {
    if (!conn->ctx || conn->ctx->err) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(conn->ctx, fmt, ap);
    va_end(ap);
    if (!reply) {
        pr_error("refdata: Redis at %s: %s", conn->address,
                 conn->ctx->errstr[0] ? conn->ctx->errstr : "connection lost");
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        pr_error("refdata: Redis at %s replied: %.*s", conn->address, (int)reply->len, reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* Appends commands to the hiredis output buffer and reads their replies
 * back in groups, failing on the first error. */
struct pr_pipe {
    struct pr_ref_conn *conn;
    struct pr_loader *loader;
    size_t pending;
    bool failed;
    struct pr_buf bytes; /* the arguments of the command being built */
    size_t *lens;
    const char **argv;
    size_t argc, cap;
    uint64_t fields_done, fields_total;
};

static void pr_pipe_begin(struct pr_pipe *pipe) {
    pr_buf_reset(&pipe->bytes);
    pipe->argc = 0;
}

static void pr_pipe_arg(struct pr_pipe *pipe, const void *data, size_t len) {
    if (pipe->argc == pipe->cap) {
        pipe->cap = pipe->cap ? pipe->cap * 2 : 64;
        pipe->lens = pr_realloc(pipe->lens, pipe->cap * sizeof(*pipe->lens));
        pipe->argv = pr_realloc(pipe->argv, pipe->cap * sizeof(*pipe->argv));
    }
    pipe->lens[pipe->argc++] = len;
    pr_buf_append(&pipe->bytes, data, len);
}

static void pr_pipe_str(struct pr_pipe *pipe, const char *s) {
    pr_pipe_arg(pipe, s, strlen(s));
}

static void pr_pipe_argf(struct pr_pipe *pipe, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pr_pipe_argf(struct pr_pipe *pipe, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(tmp)) n = (int)sizeof(tmp) - 1;
    pr_pipe_arg(pipe, tmp, (size_t)n);
}

static int pr_pipe_drain(struct pr_pipe *pipe) {
    while (pipe->pending > 0) {
        void *r = NULL;
        if (redisGetReply(pipe->conn->ctx, &r) != REDIS_OK || !r) {
            if (!pipe->failed)
                pr_error("refdata: Redis at %s: %s", pipe->conn->address,
                         pipe->conn->ctx->errstr[0] ? pipe->conn->ctx->errstr : "connection lost");
            pipe->failed = true;
            pipe->pending = 0;
            return PR_ERR;
        }
        redisReply *reply = r;
        if (reply->type == REDIS_REPLY_ERROR && !pipe->failed) {
            pr_error("refdata: Redis at %s replied: %.*s", pipe->conn->address, (int)reply->len,
                     reply->str);
            pipe->failed = true;
        }
        freeReplyObject(reply);
        pipe->pending--;
    }
    if (pipe->fields_total)
        pr_progress(pipe->loader, "writing: %llu/%llu fields (%.0f%%)",
                    (unsigned long long)pipe->fields_done, (unsigned long long)pipe->fields_total,
                    100.0 * (double)pipe->fields_done / (double)pipe->fields_total);
    return pipe->failed ? PR_ERR : PR_OK;
}

static int pr_pipe_send(struct pr_pipe *pipe) {
    if (pipe->failed) return PR_ERR;
    size_t off = 0;
    for (size_t i = 0; i < pipe->argc; i++) {
        pipe->argv[i] = (const char *)pipe->bytes.data + off;
        off += pipe->lens[i];
    }
    if (redisAppendCommandArgv(pipe->conn->ctx, (int)pipe->argc, pipe->argv, pipe->lens) !=
        REDIS_OK) {
        pr_error("refdata: cannot queue a Redis command: %s", pipe->conn->ctx->errstr);
        pipe->failed = true;
        return PR_ERR;
    }
    pipe->pending++;
    if (pipe->pending >= PR_REF_PIPELINE_DEPTH) return pr_pipe_drain(pipe);
    return PR_OK;
}

static void pr_pipe_free(struct pr_pipe *pipe) {
    pr_buf_free(&pipe->bytes);
    free(pipe->lens);
    free(pipe->argv);
}

/* Builds HSET key f1 v1 f2 v2 ... commands of PR_REF_HSET_FIELDS pairs; the
 * first one is followed by PEXPIRE key <pending TTL>. */
struct pr_hset {
    struct pr_pipe *pipe;
    const char *key;
    size_t pairs;
    bool ttl_set;
    bool rows; /* count the fields in the progress line */
};

static void pr_hset_flush(struct pr_hset *hset) {
    if (hset->pairs == 0) return;
    pr_pipe_send(hset->pipe);
    hset->pairs = 0;
    if (!hset->ttl_set) {
        pr_pipe_begin(hset->pipe);
        pr_pipe_str(hset->pipe, "PEXPIRE");
        pr_pipe_str(hset->pipe, hset->key);
        pr_pipe_argf(hset->pipe, "%lld", (long long)PR_REF_PENDING_TTL_MS);
        pr_pipe_send(hset->pipe);
        hset->ttl_set = true;
    }
}

static void pr_hset_field(struct pr_hset *hset, const char *field, size_t field_len,
                          const char *value, size_t value_len) {
    if (hset->pairs == 0) {
        pr_pipe_begin(hset->pipe);
        pr_pipe_str(hset->pipe, "HSET");
        pr_pipe_str(hset->pipe, hset->key);
    }
    pr_pipe_arg(hset->pipe, field, field_len);
    pr_pipe_arg(hset->pipe, value, value_len);
    hset->pairs++;
    if (hset->rows) hset->pipe->fields_done++;
    if (hset->pairs == PR_REF_HSET_FIELDS) pr_hset_flush(hset);
}

static void pr_make_version(int64_t now_ms, char *out, size_t size) {
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    unsigned char rnd[3];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        uint64_t x = (uint64_t)pr_monotonic_us() ^ ((uint64_t)getpid() << 20);
        x = pr_ref_hash(&x, sizeof(x));
        rnd[0] = (unsigned char)x;
        rnd[1] = (unsigned char)(x >> 8);
        rnd[2] = (unsigned char)(x >> 16);
    }
    snprintf(out, size, "%s-%02x%02x%02x", stamp, rnd[0], rnd[1], rnd[2]);
}

/* Removes what was written of a version that never became current. */
static void pr_ref_discard(struct pr_ref_conn *conn, const char *version) {
    if (!conn->ctx || conn->ctx->err) {
        if (pr_ref_connect(conn) != PR_OK) {
            pr_warn("refdata: could not remove the partial version %s; its keys expire "
                    "by themselves within %lld h",
                    version, (long long)(PR_REF_PENDING_TTL_MS / 3600000));
            return;
        }
    }
    char keys[PR_REF_KEYS][160];
    for (int i = 0; i < PR_REF_KEYS; i++)
        pr_refdata_key(keys[i], sizeof(keys[i]), version, pr_ref_suffixes[i]);
    redisReply *reply = pr_ref_command(conn, "DEL %s %s %s %s", keys[0], keys[1], keys[2], keys[3]);
    if (reply) freeReplyObject(reply);
    reply = pr_ref_command(conn, "ZREM %s %s", PR_REF_VERSIONS, version);
    if (reply) freeReplyObject(reply);
    pr_warn("refdata: removed the partial version %s; %s is unchanged", version, PR_REF_CURRENT);
}

/* Writes the four hashes and the versions entry of version (keys under a
 * pending TTL). */
static int pr_ref_write_version(struct pr_loader *loader, struct pr_ref_conn *conn,
                                const char *version, int64_t loaded_at,
                                const struct pr_refdata_load_result *out) {
    const struct pr_refdata_load_options *opts = loader->opts;
    struct pr_pipe pipe;
    memset(&pipe, 0, sizeof(pipe));
    pipe.conn = conn;
    pipe.loader = loader;
    pr_buf_init(&pipe.bytes);
    pipe.fields_total = loader->hts_count + loader->violators.count + loader->country_rows;

    char key[160];
    /* hts */
    pr_refdata_key(key, sizeof(key), version, "hts");
    struct pr_hset hset = {&pipe, key, 0, false, true};
    for (size_t i = 0; i < loader->hts_count && !pipe.failed; i++) {
        const struct pr_hts_row *row = &loader->hts[i];
        char value[96];
        int n = snprintf(value, sizeof(value), "%u,", row->flags);
        if (row->floor_cents >= 0)
            n +=
                snprintf(value + n, sizeof(value) - (size_t)n, "%lld", (long long)row->floor_cents);
        value[n++] = ',';
        if (row->points >= 0)
            n += snprintf(value + n, sizeof(value) - (size_t)n, "%d", (int)row->points);
        n += snprintf(value + n, sizeof(value) - (size_t)n, ",%c", row->code_len == 10 ? '1' : '0');
        pr_hset_field(&hset, row->code, row->code_len, value, (size_t)n);
    }
    pr_hset_flush(&hset);
    /* vio */
    pr_refdata_key(key, sizeof(key), version, "vio");
    hset = (struct pr_hset){&pipe, key, 0, false, true};
    for (size_t i = 0; i < loader->violators.cap && !pipe.failed; i++) {
        const struct pr_vio_slot *slot = &loader->violators.slots[i];
        if (slot->key) pr_hset_field(&hset, slot->key, slot->key_len, slot->value, slot->value_len);
    }
    pr_hset_flush(&hset);
    /* cty */
    pr_refdata_key(key, sizeof(key), version, "cty");
    hset = (struct pr_hset){&pipe, key, 0, false, true};
    for (int i = 0; i < 26 * 26 && !pipe.failed; i++) {
        if (!loader->countries[i].line) continue;
        char code[3] = {(char)('A' + i / 26), (char)('A' + i % 26), '\0'};
        char value[16];
        int n = snprintf(value, sizeof(value), "%d", (int)loader->countries[i].points);
        pr_hset_field(&hset, code, 2, value, (size_t)n);
    }
    pr_hset_flush(&hset);
    /* meta */
    pr_refdata_key(key, sizeof(key), version, "meta");
    hset = (struct pr_hset){&pipe, key, 0, false, false};
    char utc[32], num[32];
    pr_format_utc(loaded_at, utc, sizeof(utc));
#define PR_META(field, value) pr_hset_field(&hset, field, strlen(field), value, strlen(value))
#define PR_META_U64(field, v)                                                                      \
    do {                                                                                           \
        snprintf(num, sizeof(num), "%llu", (unsigned long long)(v));                               \
        PR_META(field, num);                                                                       \
    } while (0)
    PR_META("version", version);
    PR_META_U64("loaded_at", (uint64_t)loaded_at);
    PR_META("loaded_at_utc", utc);
    PR_META_U64("hts_rows", out->hts_rows);
    PR_META_U64("violator_rows", out->violator_rows);
    PR_META_U64("violator_keys", out->violator_keys);
    PR_META_U64("country_rows", out->country_rows);
    PR_META_U64("skipped_rows", out->skipped_rows);
    /* The manifest (refdata.h): the exact size of every table, so that a
     * reader can tell a table deleted or cut short from an empty list. */
    char manifest[160];
    snprintf(manifest, sizeof(manifest), "hts:hash:%llu,vio:hash:%llu,cty:hash:%llu",
             (unsigned long long)loader->hts_count, (unsigned long long)loader->violators.count,
             (unsigned long long)loader->country_rows);
    PR_META("manifest", manifest);
    PR_META("hts_file", opts->hts_path);
    PR_META("hts_sha256", loader->sha256[0]);
    PR_META("violators_file", opts->violators_path);
    PR_META("violators_sha256", loader->sha256[1]);
    PR_META("countries_file", opts->countries_path);
    PR_META("countries_sha256", loader->sha256[2]);
#undef PR_META_U64
#undef PR_META
    pr_hset_flush(&hset);
    /* versions */
    pr_pipe_begin(&pipe);
    pr_pipe_str(&pipe, "ZADD");
    pr_pipe_str(&pipe, PR_REF_VERSIONS);
    pr_pipe_argf(&pipe, "%lld", (long long)loaded_at);
    pr_pipe_str(&pipe, version);
    pr_pipe_send(&pipe);
    int rc = pipe.failed ? PR_ERR : pr_pipe_drain(&pipe);
    pr_pipe_free(&pipe);
    if (rc != PR_OK) return PR_ERR;

    /* Check what landed: every hash has exactly the fields it should. */
    const uint64_t want[3] = {loader->hts_count, loader->violators.count, loader->country_rows};
    for (int i = 0; i < 3; i++) {
        pr_refdata_key(key, sizeof(key), version, pr_ref_suffixes[i]);
        redisReply *reply = pr_ref_command(conn, "HLEN %s", key);
        if (!reply) return PR_ERR;
        bool ok = reply->type == REDIS_REPLY_INTEGER && (uint64_t)reply->integer == want[i];
        long long got = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
        freeReplyObject(reply);
        if (!ok) {
            pr_error("refdata: %s has %lld fields after writing, expected %llu", key, got,
                     (unsigned long long)want[i]);
            return PR_ERR;
        }
    }
    return PR_OK;
}

/* MULTI / GET current / SET current version / PERSIST the four keys / EXEC.
 * PR_OK when switched (previous receives the old current or ""), PR_ERR
 * when not. */
static int pr_ref_switch(struct pr_ref_conn *conn, const char *version, char *previous,
                         size_t previous_size) {
    char keys[PR_REF_KEYS][160];
    for (int i = 0; i < PR_REF_KEYS; i++)
        pr_refdata_key(keys[i], sizeof(keys[i]), version, pr_ref_suffixes[i]);
    redisAppendCommand(conn->ctx, "MULTI");
    redisAppendCommand(conn->ctx, "GET %s", PR_REF_CURRENT);
    redisAppendCommand(conn->ctx, "SET %s %s", PR_REF_CURRENT, version);
    for (int i = 0; i < PR_REF_KEYS; i++) redisAppendCommand(conn->ctx, "PERSIST %s", keys[i]);
    redisAppendCommand(conn->ctx, "EXEC");
    const int replies = 3 + PR_REF_KEYS + 1;
    bool io_error = false, switched = false;
    previous[0] = '\0';
    for (int i = 0; i < replies; i++) {
        void *r = NULL;
        if (redisGetReply(conn->ctx, &r) != REDIS_OK || !r) {
            pr_error("refdata: Redis at %s: %s", conn->address,
                     conn->ctx->errstr[0] ? conn->ctx->errstr : "connection lost");
            io_error = true;
            break;
        }
        redisReply *reply = r;
        if (reply->type == REDIS_REPLY_ERROR)
            pr_error("refdata: Redis at %s replied: %.*s", conn->address, (int)reply->len,
                     reply->str);
        if (i == replies - 1 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 6) {
            redisReply *old = reply->element[0];
            if (old->type == REDIS_REPLY_STRING) snprintf(previous, previous_size, "%s", old->str);
            switched = reply->element[1]->type == REDIS_REPLY_STATUS;
        }
        freeReplyObject(reply);
    }
    if (switched) return PR_OK;
    if (io_error && pr_ref_connect(conn) == PR_OK) {
        /* The connection broke around EXEC: the transaction either ran
         * completely or not at all; find out which. */
        redisReply *reply = pr_ref_command(conn, "GET %s", PR_REF_CURRENT);
        bool now_current =
            reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, version) == 0;
        if (reply) freeReplyObject(reply);
        if (now_current) {
            pr_warn("refdata: the switch went through (previous version unknown)");
            return PR_OK;
        }
    }
    return PR_ERR;
}

static bool pr_str_in(const char *s, char **list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

/* Gives every key of every version other than current the grace TTL (keys
 * that already count down keep theirs) and forgets versions whose keys are
 * all gone; with grace_ms 0 deletes them. Returns the number of versions
 * newly set to expire (or deleted). */
static uint64_t pr_ref_expire_previous(struct pr_ref_conn *conn, const char *current,
                                       const char *previous, int64_t grace_ms) {
    char **versions = NULL;
    size_t count = 0;
    redisReply *reply = pr_ref_command(conn, "ZRANGE %s 0 -1", PR_REF_VERSIONS);
    if (!reply) return 0;
    size_t listed = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
    versions = pr_calloc(listed + 1, sizeof(char *));
    for (size_t i = 0; i < listed; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            versions[count++] = pr_strdup(reply->element[i]->str);
    freeReplyObject(reply);
    if (previous[0] && !pr_str_in(previous, versions, count))
        versions[count++] = pr_strdup(previous);

    uint64_t expiring = 0;
    for (size_t v = 0; v < count; v++) {
        if (strcmp(versions[v], current) == 0) continue;
        char keys[PR_REF_KEYS][160];
        long long ttl[PR_REF_KEYS];
        bool all_gone = true, any_set = false;
        for (int i = 0; i < PR_REF_KEYS; i++) {
            pr_refdata_key(keys[i], sizeof(keys[i]), versions[v], pr_ref_suffixes[i]);
            reply = pr_ref_command(conn, "PTTL %s", keys[i]);
            ttl[i] = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -2;
            if (reply) freeReplyObject(reply);
            if (ttl[i] != -2) all_gone = false;
        }
        if (all_gone || grace_ms == 0) {
            if (!all_gone) {
                reply = pr_ref_command(conn, "DEL %s %s %s %s", keys[0], keys[1], keys[2], keys[3]);
                if (reply) freeReplyObject(reply);
                expiring++;
            }
            reply = pr_ref_command(conn, "ZREM %s %s", PR_REF_VERSIONS, versions[v]);
            if (reply) freeReplyObject(reply);
            continue;
        }
        for (int i = 0; i < PR_REF_KEYS; i++) {
            if (ttl[i] != -1) continue;
            reply = pr_ref_command(conn, "PEXPIRE %s %lld", keys[i], (long long)grace_ms);
            if (reply) freeReplyObject(reply);
            any_set = true;
        }
        if (any_set) expiring++;
    }
    for (size_t v = 0; v < count; v++) free(versions[v]);
    free(versions);
    return expiring;
}

static double pr_seconds_since(int64_t t0_us) {
    return (double)(pr_monotonic_us() - t0_us) / 1e6;
}

int pr_refdata_load(const struct pr_refdata_load_options *opts,
                    struct pr_refdata_load_result *out) {
    memset(out, 0, sizeof(*out));
    int64_t t0 = pr_monotonic_us();
    struct pr_loader loader;
    memset(&loader, 0, sizeof(loader));
    loader.opts = opts;
    loader.last_progress_us = t0;
    pr_buf_init(&loader.scratch);

    /* Phase 1: read and validate everything. */
    const char *paths[3] = {opts->hts_path, opts->violators_path, opts->countries_path};
    uint64_t bad[3] = {0, 0, 0};
    bool fatal = false;
    for (int f = 0; f < 3; f++) {
        if (!paths[f]) {
            pr_error("refdata: no %s given", pr_ref_specs[f].what);
            fatal = true;
            continue;
        }
        if (pr_read_csv(&loader, paths[f], &pr_ref_specs[f], loader.sha256[f], &bad[f]) != PR_OK)
            fatal = true;
    }
    out->hts_rows = loader.hts_count;
    out->violator_rows = loader.violator_rows;
    out->violator_keys = loader.violators.count;
    out->country_rows = loader.country_rows;
    out->bad_rows = loader.bad_rows;
    out->parse_seconds = pr_seconds_since(t0);
    if (loader.printed_errors > PR_REF_MAX_PRINTED_ERRORS)
        pr_error("refdata: ... and %llu more bad rows not shown",
                 (unsigned long long)(loader.printed_errors - PR_REF_MAX_PRINTED_ERRORS));
    if (fatal || (loader.bad_rows && !opts->skip_bad)) {
        if (!fatal)
            pr_error("refdata: refused: %llu bad row(s) (hts %llu, violators %llu, "
                     "countries %llu); nothing was written. Fix them, or pass --skip-bad to load "
                     "the good rows.",
                     (unsigned long long)loader.bad_rows, (unsigned long long)bad[0],
                     (unsigned long long)bad[1], (unsigned long long)bad[2]);
        else
            pr_error("refdata: refused; nothing was written");
        pr_loader_free(&loader);
        out->total_seconds = pr_seconds_since(t0);
        return PR_REFDATA_BAD_DATA;
    }
    out->skipped_rows = loader.bad_rows;
    if (opts->dry_run) {
        pr_loader_free(&loader);
        out->total_seconds = pr_seconds_since(t0);
        return PR_REFDATA_OK;
    }

    /* Phase 2: write a new version, switch, expire the old ones. */
    int64_t t1 = pr_monotonic_us();
    struct pr_ref_conn conn;
    memset(&conn, 0, sizeof(conn));
    conn.timeout_ms = opts->timeout_ms;
    conn.auth = (struct pr_redis_auth){opts->redis_user, opts->redis_password};
    int rc = PR_REFDATA_REDIS;
    if (pr_ref_parse_address(&conn, opts->redis_address ? opts->redis_address : "") != PR_OK ||
        pr_ref_connect(&conn) != PR_OK)
        goto done;
    int64_t loaded_at = pr_now_ms();
    char version[64];
    for (int attempt = 0;; attempt++) {
        pr_make_version(loaded_at, version, sizeof(version));
        char key[160];
        pr_refdata_key(key, sizeof(key), version, "meta");
        redisReply *reply = pr_ref_command(&conn, "EXISTS %s", key);
        if (!reply) goto done;
        bool taken = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
        freeReplyObject(reply);
        if (!taken) break;
        if (attempt == 5) {
            pr_error("refdata: cannot pick an unused version name");
            goto done;
        }
    }
    if (pr_ref_write_version(&loader, &conn, version, loaded_at, out) != PR_OK ||
        pr_ref_switch(&conn, version, out->previous, sizeof(out->previous)) != PR_OK) {
        pr_ref_discard(&conn, version);
        goto done;
    }
    snprintf(out->version, sizeof(out->version), "%s", version);
    rc = PR_REFDATA_OK;
    /* The load has succeeded; a failure from here on only delays the
     * expiry of old versions until the next load. */
    out->expiring_versions = pr_ref_expire_previous(&conn, version, out->previous, opts->grace_ms);
done:
    pr_ref_close(&conn);
    pr_loader_free(&loader);
    out->write_seconds = pr_seconds_since(t1);
    out->total_seconds = pr_seconds_since(t0);
    return rc;
}

/* ================================================================ status */

static const char *pr_reply_field(const redisReply *hash, const char *field) {
    if (!hash || hash->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < hash->elements; i += 2)
        if (hash->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(hash->element[i]->str, field) == 0 &&
            hash->element[i + 1]->type == REDIS_REPLY_STRING)
            return hash->element[i + 1]->str;
    return NULL;
}

static const char pr_ref_verify_script[] =
    PR_REFDATA_VERIFY_LUA "return pr_ref_verify(ARGV[1], " PR_REFDATA_TABLES_LUA ", nil) or 'ok'\n";

int pr_refdata_status(const char *redis_address, const char *redis_user, const char *redis_password,
                      int timeout_ms, FILE *out) {
    struct pr_ref_conn conn;
    memset(&conn, 0, sizeof(conn));
    conn.timeout_ms = timeout_ms;
    conn.auth = (struct pr_redis_auth){redis_user, redis_password};
    if (pr_ref_parse_address(&conn, redis_address ? redis_address : "") != PR_OK ||
        pr_ref_connect(&conn) != PR_OK)
        return PR_ERR;
    int rc = PR_ERR;
    redisReply *meta = NULL, *versions = NULL, *check = NULL;
    redisReply *current = pr_ref_command(&conn, "GET %s", PR_REF_CURRENT);
    if (!current) goto done;
    if (current->type != REDIS_REPLY_STRING) {
        pr_error("refdata: no reference data loaded in Redis at %s (%s is not set); "
                 "run `parcelrisk refdata load`",
                 conn.address, PR_REF_CURRENT);
        goto done;
    }
    char key[160];
    pr_refdata_key(key, sizeof(key), current->str, "meta");
    meta = pr_ref_command(&conn, "HGETALL %s", key);
    if (!meta) goto done;
    if (meta->type != REDIS_REPLY_ARRAY || meta->elements == 0) {
        pr_error("refdata: current version %s has no %s hash (deleted by hand?); load "
                 "again",
                 current->str, key);
        goto done;
    }
    static const char *const fields[] = {"loaded_at_utc",    "hts_rows",       "violator_rows",
                                         "violator_keys",    "country_rows",   "skipped_rows",
                                         "hts_file",         "hts_sha256",     "violators_file",
                                         "violators_sha256", "countries_file", "countries_sha256"};
    fprintf(out, "current: %s\n", current->str);
    for (size_t i = 0; i < PR_ARRAY_LEN(fields); i++) {
        const char *v = pr_reply_field(meta, fields[i]);
        fprintf(out, "%s: %s\n", strcmp(fields[i], "loaded_at_utc") == 0 ? "loaded_at" : fields[i],
                v ? v : "?");
    }
    /* The manifest and the same check the enrich operator makes. */
    const char *manifest = pr_reply_field(meta, "manifest");
    fprintf(out, "manifest: %s\n", manifest ? manifest : "none");
    check = pr_ref_command(&conn, "EVAL %s 0 %s", pr_ref_verify_script, current->str);
    if (!check) goto done;
    bool checks_out = check->type == REDIS_REPLY_STRING && strcmp(check->str, "ok") == 0;
    fprintf(out, "manifest_check: %s%.*s\n",
            checks_out ? "" : "FAILED: ", check->type == REDIS_REPLY_STRING ? (int)check->len : 1,
            check->type == REDIS_REPLY_STRING ? check->str : "?");
    versions = pr_ref_command(&conn, "ZRANGE %s 0 -1 WITHSCORES", PR_REF_VERSIONS);
    if (!versions) goto done;
    size_t present = 0;
    struct pr_buf lines;
    pr_buf_init(&lines);
    bool current_listed = false;
    for (size_t i = 0; versions->type == REDIS_REPLY_ARRAY && i + 1 < versions->elements; i += 2) {
        const char *name = versions->element[i]->str;
        if (!name) continue;
        pr_refdata_key(key, sizeof(key), name, "meta");
        redisReply *ttl = pr_ref_command(&conn, "PTTL %s", key);
        long long pttl = ttl && ttl->type == REDIS_REPLY_INTEGER ? ttl->integer : -2;
        if (ttl) freeReplyObject(ttl);
        if (pttl == -2) continue; /* expired: forgotten at the next load */
        char utc[32] = "?";
        const char *score = versions->element[i + 1]->str;
        if (score) pr_format_utc(strtoll(score, NULL, 10), utc, sizeof(utc));
        bool is_current = strcmp(name, current->str) == 0;
        current_listed |= is_current;
        char state[64];
        if (is_current)
            snprintf(state, sizeof(state), "current");
        else if (pttl == -1)
            snprintf(state, sizeof(state), "no expiry (expires at the next load)");
        else
            snprintf(state, sizeof(state), "expires in %lld s", (pttl + 999) / 1000);
        pr_buf_appendf(&lines, "  %s  loaded %s  %s\n", name, utc, state);
        present++;
    }
    fprintf(out, "versions: %zu\n", present);
    if (lines.len) fwrite(lines.data, 1, lines.len, out);
    if (!current_listed) fprintf(out, "  %s  current (not in %s)\n", current->str, PR_REF_VERSIONS);
    pr_buf_free(&lines);
    if (checks_out) {
        rc = PR_OK;
    } else {
        fflush(out);
        pr_error("refdata: current version %s does not check out against its manifest; "
                 "parcelrisk treats it as unavailable (redis.on_unavailable): load the reference "
                 "data again",
                 current->str);
    }
done:
    if (check) freeReplyObject(check);
    if (versions) freeReplyObject(versions);
    if (meta) freeReplyObject(meta);
    if (current) freeReplyObject(current);
    pr_ref_close(&conn);
    return rc;
}
