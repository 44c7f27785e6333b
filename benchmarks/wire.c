/*
 * wire.c - the decode step of each input path, in process, no Kafka and no
 * registry (the writer schemas are given here, as a fetched id would give
 * them; pipeline/codec/wire.h):
 *
 *   plain     pr_declaration_decode on plain Avro binary (no registry)
 *   same      Confluent-framed, writer schema equal to ours: header, then the
 *             same fast decoder
 *   resolved  Confluent-framed, another version of the schema (ours plus
 *             one optional field, written null): Avro-C schema resolution,
 *             re-encoded for the fast decoder
 *
 *   pr_wire_bench [--count N] [--distinct D] [--mode plain|same|resolved]
 *
 * Prints declarations/s on one core and CPU microseconds per declaration.
 * For instruction counts run it under
 * `valgrind --tool=callgrind --toggle-collect=pr_wire_timed` (benchmarks/micro).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "codec.h"
#include "gen.h"
#include "schemas.h"
#include "wire.h"

static double pr_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

enum pr_mode { PR_PLAIN, PR_SAME, PR_RESOLVED };

struct pr_prepared {
    struct pr_buf data;
    size_t *offsets; /* count + 1 */
    size_t count;
};

/* The declarations of benchmarks/micro, plain or framed; for resolved, the
 * writer's added optional field is one more byte (union branch 0). */
static void pr_prepare(struct pr_prepared *p, size_t distinct, enum pr_mode mode) {
    pr_buf_init(&p->data);
    p->offsets = pr_malloc((distinct + 1) * sizeof(size_t));
    p->count = distinct;
    struct pr_gen gen;
    int64_t start;
    pr_parse_utc("2025-03-01", &start);
    pr_gen_init(&gen, 42, start, 3);
    for (size_t i = 0; i < distinct; i++) {
        struct pr_declaration d;
        pr_gen_next(&gen, &d);
        d.event_time = start;
        p->offsets[i] = p->data.len;
        if (mode != PR_PLAIN) {
            uint8_t h[PR_WIRE_HEADER_BYTES];
            pr_wire_header(mode == PR_SAME ? 1 : 2, h);
            pr_buf_append(&p->data, h, sizeof(h));
        }
        pr_declaration_encode(&d, &p->data);
        if (mode == PR_RESOLVED) pr_buf_append(&p->data, "", 1);
    }
    p->offsets[distinct] = p->data.len;
}

/* The timed part, by name, for callgrind's --toggle-collect. */
size_t pr_wire_timed(const struct pr_prepared *p, size_t count, enum pr_mode mode,
                     struct pr_decl_reader *reader, struct pr_arena *arena);
__attribute__((noinline)) size_t pr_wire_timed(const struct pr_prepared *p, size_t count,
                                               enum pr_mode mode, struct pr_decl_reader *reader,
                                               struct pr_arena *arena) {
    size_t ok = 0;
    char err[192];
    for (size_t i = 0; i < count; i++) {
        size_t k = i % p->count;
        const uint8_t *buf = p->data.data + p->offsets[k];
        size_t len = p->offsets[k + 1] - p->offsets[k];
        struct pr_declaration d;
        enum pr_dlq_code code;
        if (mode == PR_PLAIN) {
            code = pr_declaration_decode(buf, len, &d, arena, err, sizeof(err));
        } else {
            uint32_t id;
            if (pr_wire_parse(buf, len, &id) != PR_WIRE_FRAMED) continue;
            code = pr_decl_reader_decode(reader, buf + PR_WIRE_HEADER_BYTES,
                                         len - PR_WIRE_HEADER_BYTES, &d, arena, err, sizeof(err));
        }
        if (code == PR_DLQ_NONE) ok++;
        if (i % 1000 == 999) pr_arena_reset(arena); /* once per batch, as the engine does */
    }
    return ok;
}

int main(int argc, char **argv) {
    size_t count = 1000000, distinct = 100000;
    enum pr_mode mode = PR_PLAIN;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--count") == 0)
            count = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--distinct") == 0)
            distinct = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = strcmp(argv[i + 1], "same") == 0       ? PR_SAME
                   : strcmp(argv[i + 1], "resolved") == 0 ? PR_RESOLVED
                                                          : PR_PLAIN;
    }
    if (distinct > count) distinct = count;
    struct pr_prepared prepared;
    pr_prepare(&prepared, distinct, mode);
    /* The writer schema of resolved: ours with one optional field added. */
    struct pr_buf writer;
    pr_buf_init(&writer);
    const char *close = strrchr(pr_schema_declaration, ']');
    pr_buf_append(&writer, pr_schema_declaration, (size_t)(close - pr_schema_declaration));
    pr_buf_appendf(
        &writer,
        ", {\"name\": \"hub_reference\", \"type\": [\"null\", \"string\"], \"default\": null}%s",
        close);
    pr_buf_append(&writer, "", 1);
    const char *writer_json =
        mode == PR_RESOLVED ? (const char *)writer.data : pr_schema_declaration;
    struct pr_decl_reader *reader = pr_decl_reader_new(writer_json, strlen(writer_json));
    enum pr_writer_kind want = mode == PR_RESOLVED ? PR_WRITER_RESOLVED : PR_WRITER_SAME;
    if (pr_decl_reader_kind(reader) != want) {
        fprintf(stderr, "pr_wire_bench: writer schema kind %d, expected %d: %s\n",
                pr_decl_reader_kind(reader), want, pr_decl_reader_why(reader));
        return 1;
    }
    struct pr_arena arena;
    pr_arena_init(&arena, 1 << 20);
    pr_wire_timed(&prepared, distinct, mode, reader, &arena); /* warm-up */
    pr_arena_reset(&arena);
    double cpu0 = pr_cpu();
    int64_t t0 = pr_monotonic_us();
    size_t ok = pr_wire_timed(&prepared, count, mode, reader, &arena);
    double wall = (double)(pr_monotonic_us() - t0) / 1e6;
    double cpu = pr_cpu() - cpu0;
    static const char *const names[] = {"plain", "same", "resolved"};
    printf("wire: %s: %zu declarations (%zu decoded, %.0f bytes avg): %.0f declarations/s on one "
           "core (wall), "
           "%.3f us CPU per declaration\n",
           names[mode], count, ok, (double)prepared.data.len / (double)distinct,
           (double)count / wall, cpu * 1e6 / (double)count);
    printf(
        "{\"mode\": \"%s\", \"count\": %zu, \"decoded\": %zu, \"declarations_per_second\": %.0f, "
        "\"cpu_us_per_declaration\": %.4f}\n",
        names[mode], count, ok, (double)count / wall, cpu * 1e6 / (double)count);
    pr_arena_destroy(&arena);
    pr_decl_reader_free(reader);
    pr_buf_free(&writer);
    pr_buf_free(&prepared.data);
    free(prepared.offsets);
    return ok == count ? 0 : 1;
}
