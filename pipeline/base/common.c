#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static enum pr_log_level pr_log_level_current = PR_LOG_INFO;
static enum pr_log_format pr_log_format_current = PR_LOG_TEXT;

void pr_log_set_level(enum pr_log_level level) {
    pr_log_level_current = level;
}
enum pr_log_level pr_log_get_level(void) {
    return pr_log_level_current;
}
void pr_log_set_format(enum pr_log_format format) {
    pr_log_format_current = format;
}
enum pr_log_format pr_log_get_format(void) {
    return pr_log_format_current;
}

/* RFC 3339 UTC with milliseconds: 2025-05-02T04:01:00.123Z. */
static void pr_log_timestamp(char *buf, size_t size) {
    int64_t ms = pr_now_ms();
    char secs[32];
    pr_format_utc(ms, secs, sizeof(secs));
    size_t len = strlen(secs);
    if (len > 0 && secs[len - 1] == 'Z') secs[len - 1] = '\0';
    snprintf(buf, size, "%s.%03dZ", secs, (int)(ms % 1000));
}

void pr_log_emit(enum pr_log_level level, const char *source, const char *msg) {
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *const json_names[] = {"error", "warn", "info", "debug"};
    if (level > pr_log_level_current) return;
    char ts[40];
    if (pr_log_format_current == PR_LOG_JSON) {
        pr_log_timestamp(ts, sizeof(ts));
        /* One object per line; json_dumps escapes control characters and
         * newlines, so a message can never break the line framing. Invalid
         * UTF-8 (a librdkafka line quoting bytes) is made safe first. */
        json_t *obj = json_object();
        json_object_set_new(obj, "ts", json_string(ts));
        json_object_set_new(obj, "level", json_string(json_names[level]));
        json_t *text = json_string(msg);
        if (!text) {
            size_t len = strlen(msg);
            char *safe = pr_strndup(msg, len);
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)safe[i] >= 0x80) safe[i] = '?';
            text = json_string(safe);
            free(safe);
        }
        json_object_set_new(obj, "msg", text);
        json_object_set_new(obj, "source", json_string(source));
        char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(obj);
        if (line) {
            fprintf(stderr, "%s\n", line);
            free(line);
        }
        return;
    }
    pr_format_utc(pr_now_ms(), ts, sizeof(ts));
    fprintf(stderr, "%s %-5s %s: %s\n", ts, names[level], source, msg);
}

void pr_log(enum pr_log_level level, const char *fmt, ...) {
    if (level > pr_log_level_current) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pr_log_emit(level, "parcelrisk", line);
}

const char *pr_redact(const char *text, const char *secret, char *out, size_t size) {
    size_t secret_len = secret ? strlen(secret) : 0;
    size_t used = 0;
    if (size == 0) return out;
    while (*text && used + 1 < size) {
        if (secret_len && strncmp(text, secret, secret_len) == 0) {
            for (const char *m = "***"; *m && used + 1 < size; m++) out[used++] = *m;
            text += secret_len;
        } else {
            out[used++] = *text++;
        }
    }
    out[used] = '\0';
    return out;
}

static void pr_oom(size_t size) {
    fprintf(stderr, "parcelrisk: out of memory allocating %zu bytes\n", size);
    abort();
}

void *pr_malloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) pr_oom(size);
    return p;
}

void *pr_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) pr_oom(count * size);
    return p;
}

void *pr_realloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) pr_oom(size);
    return p;
}

char *pr_strdup(const char *s) {
    return pr_strndup(s, strlen(s));
}

char *pr_strndup(const char *s, size_t len) {
    char *p = pr_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

int64_t pr_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pr_monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void pr_format_utc(int64_t ms, char *buf, size_t size) {
    /* Floor division without overflow (ms may be INT64_MIN: "the beginning"). */
    time_t secs = (time_t)(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "(out of range)");
}

int pr_parse_utc(const char *s, int64_t *ms) {
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end) return PR_ERR;
    }
    *ms = (int64_t)timegm(&tm) * 1000;
    return PR_OK;
}

/* ------------------------------------------------------------------ arena */

struct pr_arena_block {
    struct pr_arena_block *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

static struct pr_arena_block *pr_arena_block_new(size_t size) {
    struct pr_arena_block *block = pr_malloc(sizeof(*block) + size);
    block->next = NULL;
    block->size = size;
    block->used = 0;
    return block;
}

void pr_arena_init(struct pr_arena *arena, size_t block_size) {
    arena->block_size = block_size;
    arena->head = arena->current = pr_arena_block_new(block_size);
}

void *pr_arena_alloc(struct pr_arena *arena, size_t size) {
    size = (size + 15) & ~(size_t)15;
    for (;;) {
        struct pr_arena_block *block = arena->current;
        if (block->size - block->used >= size) {
            void *p = block->data + block->used;
            block->used += size;
            return p;
        }
        if (block->next && block->next->size >= size) {
            arena->current = block->next;
            arena->current->used = 0;
            continue;
        }
        /* Insert a new block after the current one, big enough for size. */
        size_t want = size > arena->block_size ? size : arena->block_size;
        struct pr_arena_block *fresh = pr_arena_block_new(want);
        fresh->next = block->next;
        block->next = fresh;
        arena->current = fresh;
    }
}

char *pr_arena_strndup(struct pr_arena *arena, const char *s, size_t len) {
    char *p = pr_arena_alloc(arena, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void pr_arena_reset(struct pr_arena *arena) {
    arena->current = arena->head;
    arena->head->used = 0;
}

void pr_arena_destroy(struct pr_arena *arena) {
    struct pr_arena_block *block = arena->head;
    while (block) {
        struct pr_arena_block *next = block->next;
        free(block);
        block = next;
    }
    arena->head = arena->current = NULL;
}

/* ----------------------------------------------------------------- buffer */

void pr_buf_init(struct pr_buf *buf) {
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void pr_buf_reserve(struct pr_buf *buf, size_t extra) {
    if (buf->len + extra <= buf->cap) return;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < buf->len + extra) cap *= 2;
    buf->data = pr_realloc(buf->data, cap);
    buf->cap = cap;
}

void pr_buf_append(struct pr_buf *buf, const void *data, size_t len) {
    pr_buf_reserve(buf, len);
    if (len) memcpy(buf->data + buf->len, data, len);
    buf->len += len;
}

void pr_buf_appendf(struct pr_buf *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(tmp)) {
        pr_buf_append(buf, tmp, (size_t)n);
        return;
    }
    pr_buf_reserve(buf, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
}

void pr_buf_reset(struct pr_buf *buf) {
    buf->len = 0;
}

void pr_buf_free(struct pr_buf *buf) {
    free(buf->data);
    pr_buf_init(buf);
}
