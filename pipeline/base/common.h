/*
 * common.h - small shared building blocks: logging, a bump arena, a growable
 * byte buffer, and a borrowed string view.
 *
 * Nothing here owns global mutable state except the log level, which main()
 * sets once before any thread starts.
 */
#ifndef PR_COMMON_H
#define PR_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PR_OK 0
#define PR_ERR -1

#define PR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- logging */

enum pr_log_level { PR_LOG_ERROR = 0, PR_LOG_WARN, PR_LOG_INFO, PR_LOG_DEBUG };
/* text: "TS LEVEL source: msg"; json: one object per line with ts (RFC 3339
 * UTC), level, msg and source ("parcelrisk" or "librdkafka"). */
enum pr_log_format { PR_LOG_TEXT = 0, PR_LOG_JSON };

void pr_log_set_level(enum pr_log_level level);
enum pr_log_level pr_log_get_level(void);
void pr_log_set_format(enum pr_log_format format);
enum pr_log_format pr_log_get_format(void);
/* Log lines go to stderr with a UTC timestamp. Callers must never pass raw
 * names or addresses: log identifiers (declaration_id, offsets) only; nor a
 * secret (a value of a key that pr_config_key_is_secret names). */
void pr_log(enum pr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one finished line from source ("parcelrisk", "librdkafka") when
 * level passes the current level, in the current format. One write per line:
 * safe from any thread (librdkafka logs from its own threads). */
void pr_log_emit(enum pr_log_level level, const char *source, const char *msg);
/* Copies text into out (truncated to size) with every occurrence of secret
 * replaced by "***"; an empty or NULL secret copies text unchanged. For
 * messages of other libraries that may quote a value. Returns out. */
const char *pr_redact(const char *text, const char *secret, char *out, size_t size);
#define pr_error(...) pr_log(PR_LOG_ERROR, __VA_ARGS__)
#define pr_warn(...) pr_log(PR_LOG_WARN, __VA_ARGS__)
#define pr_info(...) pr_log(PR_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) pr_log(PR_LOG_DEBUG, __VA_ARGS__)

/* Allocation wrappers: abort with a message on out-of-memory, so callers
 * never have to handle NULL from these. */
void *pr_malloc(size_t size);
void *pr_calloc(size_t count, size_t size);
void *pr_realloc(void *ptr, size_t size);
char *pr_strdup(const char *s);
char *pr_strndup(const char *s, size_t len);

int64_t pr_now_ms(void);       /* wall clock, ms since the epoch */
int64_t pr_monotonic_us(void); /* monotonic clock, microseconds */
/* Formats ms since the epoch as 2025-05-02T04:01:00Z (buf >= 21 bytes). */
void pr_format_utc(int64_t ms, char *buf, size_t size);
/* Parses YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD into ms; PR_ERR if malformed. */
int pr_parse_utc(const char *s, int64_t *ms);

/* ------------------------------------------------------------ string view */

/* The longest prefix of s[0..len) of at most max bytes that does not split a
 * UTF-8 sequence (s is valid UTF-8), for quoting short codes in details. */
static inline int pr_utf8_prefix(const char *s, size_t len, size_t max) {
    if (len <= max) return (int)len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    return (int)n;
}

/* A borrowed, not NUL-terminated string: points into a Kafka payload or an
 * arena. Valid as long as what it points into. */
struct pr_str {
    const char *ptr;
    uint32_t len;
};

static inline bool pr_str_eq(struct pr_str a, const char *lit, size_t lit_len) {
    if (a.len != lit_len) return false;
    for (size_t i = 0; i < lit_len; i++)
        if (a.ptr[i] != lit[i]) return false;
    return true;
}

/* ------------------------------------------------------------------ arena */

/* A bump allocator reset once per batch. Blocks are kept across resets so a
 * steady-state batch allocates nothing from malloc. */
struct pr_arena_block;
struct pr_arena {
    struct pr_arena_block *head;
    struct pr_arena_block *current;
    size_t block_size;
};

void pr_arena_init(struct pr_arena *arena, size_t block_size);
void *pr_arena_alloc(struct pr_arena *arena, size_t size);
char *pr_arena_strndup(struct pr_arena *arena, const char *s, size_t len);
void pr_arena_reset(struct pr_arena *arena);
void pr_arena_destroy(struct pr_arena *arena);

/* ----------------------------------------------------------------- buffer */

struct pr_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void pr_buf_init(struct pr_buf *buf);
void pr_buf_reserve(struct pr_buf *buf, size_t extra);
void pr_buf_append(struct pr_buf *buf, const void *data, size_t len);
void pr_buf_appendf(struct pr_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pr_buf_reset(struct pr_buf *buf);
void pr_buf_free(struct pr_buf *buf);

#endif
