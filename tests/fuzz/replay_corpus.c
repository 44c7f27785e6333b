/*
 * replay_corpus.c - drives LLVMFuzzerTestOneInput without libFuzzer, so that
 * gcc builds (and the gcc ASan/UBSan build) exercise the fuzz target too.
 *
 *   replay_corpus [-n MUTATIONS] [-s SEED] PATH...
 *
 * Every PATH is a file or a directory of files (the seed corpus). Each file
 * is fed as is, then MUTATIONS (default 20000) deterministic mutants of them:
 * bit flips, byte overwrites with boundary values, truncations, insertions,
 * deletions, duplicated chunks, varint/length-field corruptions and
 * crossovers between two files. Every input is passed in a heap buffer of
 * exactly its size, so AddressSanitizer sees any read past its end. A failed
 * check aborts inside the target; each input is written to
 * ./replay-crash-input before it runs (and removed after), so the one that
 * crashed is left behind and can be replayed on its own.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct pr_input {
    char *name;
    uint8_t *data;
    size_t len;
};

struct pr_inputs {
    struct pr_input *items;
    size_t count, cap;
};

static uint64_t pr_rng(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t pr_below(uint64_t *state, size_t n) {
    return n ? (size_t)(pr_rng(state) % n) : 0;
}

static int pr_read_file(const char *path, struct pr_inputs *inputs) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay_corpus: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *data = malloc(cap);
    size_t n;
    while (data && (n = fread(data + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) data = realloc(data, cap *= 2);
    }
    fclose(f);
    if (!data) return -1;
    if (inputs->count == inputs->cap) {
        inputs->cap = inputs->cap ? inputs->cap * 2 : 64;
        inputs->items = realloc(inputs->items, inputs->cap * sizeof(*inputs->items));
        if (!inputs->items) return -1;
    }
    inputs->items[inputs->count++] = (struct pr_input){strdup(path), data, len};
    return 0;
}

static int pr_cmp_name(const void *a, const void *b) {
    return strcmp(((const struct pr_input *)a)->name, ((const struct pr_input *)b)->name);
}

static int pr_collect(const char *path, struct pr_inputs *inputs) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay_corpus: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return pr_read_file(path, inputs);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    size_t first = inputs->count;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (entry->d_name[0] == '.') continue;
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", path, entry->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && pr_read_file(full, inputs) != 0) {
            closedir(dir);
            return -1;
        }
    }
    closedir(dir);
    /* readdir order is the file system's: sort, so runs are reproducible. */
    qsort(inputs->items + first, inputs->count - first, sizeof(*inputs->items), pr_cmp_name);
    return 0;
}

/* A growable byte string for building a mutant. */
struct pr_bytes {
    uint8_t *data;
    size_t len, cap;
};

static void pr_bytes_reserve(struct pr_bytes *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    while (b->cap < b->len + extra) b->cap = b->cap ? b->cap * 2 : 256;
    b->data = realloc(b->data, b->cap);
    if (!b->data) abort();
}

static void pr_bytes_insert(struct pr_bytes *b, size_t at, const uint8_t *src, size_t n) {
    pr_bytes_reserve(b, n);
    memmove(b->data + at + n, b->data + at, b->len - at);
    memcpy(b->data + at, src, n);
    b->len += n;
}

static void pr_bytes_erase(struct pr_bytes *b, size_t at, size_t n) {
    if (at + n > b->len) n = b->len - at;
    memmove(b->data + at, b->data + at + n, b->len - at - n);
    b->len -= n;
}

/* Zig-zag varint of v, as Avro writes a long. */
static size_t pr_varint(int64_t v, uint8_t out[10]) {
    uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t i = 0;
    while (n & ~(uint64_t)0x7f) {
        out[i++] = (uint8_t)((n & 0x7f) | 0x80);
        n >>= 7;
    }
    out[i++] = (uint8_t)n;
    return i;
}

/* Values that lengths, counts, union and enum indexes trip over. */
static const int64_t pr_interesting[] = {
    0,
    1,
    -1,
    2,
    -2,
    3,
    4,
    5,
    7,
    63,
    64,
    -64,
    -65,
    127,
    128,
    255,
    256,
    4096,
    65535,
    65536,
    1000000000,
    2147483647,
    2147483648LL,
    -2147483648LL,
    -2147483649LL,
    4294967296LL,
    INT64_C(1) << 62,
    -(INT64_C(1) << 62),
    INT64_MAX,
    INT64_MIN,
};
static const uint8_t pr_interesting_bytes[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xc0,
                                               0xc3, 0xed, 0xf0, 0xf4, 0xfe, 0xff};

static void pr_mutate_once(struct pr_bytes *b, const struct pr_inputs *inputs, uint64_t *rng) {
    size_t pos = pr_below(rng, b->len + 1);
    switch (pr_below(rng, 9)) {
    case 0: /* flip one bit */
        if (b->len) b->data[pr_below(rng, b->len)] ^= (uint8_t)(1u << pr_below(rng, 8));
        break;
    case 1: /* overwrite a byte with a boundary value */
        if (b->len)
            b->data[pr_below(rng, b->len)] =
                pr_interesting_bytes[pr_below(rng, sizeof(pr_interesting_bytes))];
        break;
    case 2: /* truncate */ b->len = pos; break;
    case 3: { /* insert 1-8 random bytes */
        uint8_t tmp[8];
        size_t n = 1 + pr_below(rng, 8);
        for (size_t i = 0; i < n; i++) tmp[i] = (uint8_t)pr_rng(rng);
        pr_bytes_insert(b, pos, tmp, n);
        break;
    }
    case 4: /* delete 1-16 bytes */
        if (pos < b->len) pr_bytes_erase(b, pos, 1 + pr_below(rng, 16));
        break;
    case 5: { /* duplicate a chunk */
        if (!b->len) break;
        size_t from = pr_below(rng, b->len), n = 1 + pr_below(rng, 32);
        if (from + n > b->len) n = b->len - from;
        uint8_t tmp[32];
        memcpy(tmp, b->data + from, n);
        pr_bytes_insert(b, pos, tmp, n);
        break;
    }
    case 6:
    case 7: { /* replace a varint (a length, count, index) with an interesting one */
        if (pos >= b->len) pos = b->len ? b->len - 1 : 0;
        size_t old = 0;
        while (pos + old < b->len && old < 10 && (b->data[pos + old] & 0x80)) old++;
        if (pos + old < b->len) old++;
        pr_bytes_erase(b, pos, old);
        uint8_t tmp[10];
        int64_t v =
            pr_interesting[pr_below(rng, sizeof(pr_interesting) / sizeof(pr_interesting[0]))];
        if (pr_below(rng, 4) == 0) /* nudge by -2..2, wrapping at the ends */
            v = (int64_t)((uint64_t)v + (uint64_t)pr_below(rng, 5) - 2);
        pr_bytes_insert(b, pos, tmp, pr_varint(v, tmp));
        break;
    }
    case 8: { /* crossover: splice in a piece of another input */
        const struct pr_input *other = &inputs->items[pr_below(rng, inputs->count)];
        if (!other->len) break;
        size_t from = pr_below(rng, other->len), n = 1 + pr_below(rng, other->len - from);
        if (pr_below(rng, 2)) b->len = pos; /* head of this, tail of other */
        pr_bytes_insert(b, pos, other->data + from, n);
        break;
    }
    }
}

/* Feeds one input from an exact-size heap copy, saving it first. */
static void pr_run(const uint8_t *data, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) abort();
    if (len) memcpy(copy, data, len);
    /* Keep the current input on disk until it has run: a crash leaves it. */
    static const char path[] = "replay-crash-input";
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(copy, 1, len, f);
        fclose(f);
    }
    LLVMFuzzerTestOneInput(copy, len);
    remove(path);
    free(copy);
}

int main(int argc, char **argv) {
    long mutations = 20000;
    uint64_t seed = 0x5eed;
    struct pr_inputs inputs = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            mutations = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (pr_collect(argv[i], &inputs) != 0)
            return 2;
    }
    if (inputs.count == 0) {
        fprintf(stderr, "usage: replay_corpus [-n MUTATIONS] [-s SEED] FILE_OR_DIR...\n"
                        "replay_corpus: no input files\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < inputs.count; i++) pr_run(inputs.items[i].data, inputs.items[i].len);

    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    struct pr_bytes b = {0};
    for (long m = 0; m < mutations; m++) {
        const struct pr_input *in = &inputs.items[pr_below(&rng, inputs.count)];
        b.len = 0;
        pr_bytes_reserve(&b, in->len);
        if (in->len) memcpy(b.data, in->data, in->len);
        b.len = in->len;
        size_t rounds = 1 + pr_below(&rng, 4);
        for (size_t r = 0; r < rounds; r++) pr_mutate_once(&b, &inputs, &rng);
        pr_run(b.data, b.len);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    long total = (long)inputs.count + mutations;
    printf("replay_corpus: %zu corpus files + %ld mutants = %ld inputs in %.2f s (%.0f exec/s), "
           "seed %#llx\n",
           inputs.count, mutations, total, secs, secs > 0 ? (double)total / secs : 0.0,
           (unsigned long long)seed);
    free(b.data);
    for (size_t i = 0; i < inputs.count; i++) {
        free(inputs.items[i].name);
        free(inputs.items[i].data);
    }
    free(inputs.items);
    return 0;
}
