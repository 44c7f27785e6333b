/*
 * gen.h - synthetic courier-hub declarations, shared by `parcelrisk gen`,
 * the benchmarks and the tests.
 */
#ifndef PR_GEN_H
#define PR_GEN_H

#include "record-t.h"

struct pr_gen {
    uint64_t state;    /* xorshift state, from the seed */
    uint64_t sequence; /* declarations made so far */
    int64_t start_ms;  /* first arrival day */
    int days;          /* arrivals spread over this many days */
    uint32_t consignee_pool;
    char scratch[4096]; /* strings of the declaration being made */
    size_t used;
    struct pr_line lines[5];
};

void pr_gen_init(struct pr_gen *gen, uint64_t seed, int64_t start_ms, int days);
/* Fills decl with the next realistic declaration; its strings live in gen
 * until the next call. event_time is set by the caller. */
void pr_gen_next(struct pr_gen *gen, struct pr_declaration *decl);

/* Kinds of deliberately malformed messages. */
enum pr_gen_bad {
    PR_BAD_GARBAGE = 0,
    PR_BAD_TRUNCATED,
    PR_BAD_HUGE_LENGTH,
    PR_BAD_TRAILING,
    PR_BAD_UTF8,
    PR_BAD_EMPTY,
    PR_BAD_TOO_LARGE,
    PR_BAD_WRONG_SCHEMA,
    PR_BAD_KINDS
};
extern const char *const pr_gen_bad_names[PR_BAD_KINDS];
/* Writes a malformed message of the kind to out (reset first), built from a
 * valid encoding in valid. */
void pr_gen_bad(struct pr_gen *gen, enum pr_gen_bad kind, const struct pr_buf *valid,
                struct pr_buf *out);

uint64_t pr_gen_rand(struct pr_gen *gen);

#endif
