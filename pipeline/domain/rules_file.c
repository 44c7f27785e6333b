/*
 * rules_file.c - loads the rule file and the policy file (YAML, DOMAIN.md
 * section 8) on top of the shipped defaults. Any error names the file and
 * line; nothing is half-applied (a new pr_rules is built, or none).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "rules.h"

struct pr_yaml_file {
    const char *path;
    yaml_document_t doc;
    char *err;
    size_t err_size;
};

/* 1-based line of a node; 0 for none (a default). */
static size_t pr_yline(const yaml_node_t *node) {
    return node ? node->start_mark.line + 1 : 0;
}

static int pr_yerr_at(struct pr_yaml_file *f, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pr_yerr_at(struct pr_yaml_file *f, size_t line, const char *fmt, ...) {
    int n = snprintf(f->err, f->err_size, "%s:%zu: ", f->path, line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < f->err_size) vsnprintf(f->err + n, f->err_size - (size_t)n, fmt, ap);
    va_end(ap);
    return PR_ERR;
}

#define pr_yerr(f, node, ...) pr_yerr_at((f), pr_yline(node), __VA_ARGS__)

static int pr_yaml_open(struct pr_yaml_file *f, const char *path, char *err, size_t err_size) {
    f->path = path;
    f->err = err;
    f->err_size = err_size;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return PR_ERR;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    int ok = yaml_parser_load(&parser, &f->doc);
    if (!ok)
        snprintf(err, err_size, "%s:%zu: YAML syntax: %s", path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    fclose(fp);
    if (!ok) return PR_ERR;
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        yaml_document_delete(&f->doc);
        snprintf(err, err_size, "%s:1: the top level must be a mapping", path);
        return PR_ERR;
    }
    return PR_OK;
}

static const char *pr_scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* An integer from min to max; why (may be NULL) says what a value outside
 * would do, for the refusal. */
static int pr_yaml_int(struct pr_yaml_file *f, const yaml_node_t *n, const char *key, long min,
                       long max, const char *why, long *out) {
    const char *s = pr_scalar(n);
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > max)
        return pr_yerr(f, n, "key '%s': expected an integer from %ld to %ld%s%s", key, min, max,
                       why ? ": " : "", why ? why : "");
    *out = v;
    return PR_OK;
}

/* A number from min to max (above min when min_exclusive); never NaN. */
static int pr_yaml_double(struct pr_yaml_file *f, const yaml_node_t *n, const char *key, double min,
                          bool min_exclusive, double max, const char *why, double *out) {
    const char *s = pr_scalar(n);
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    bool low_ok = min_exclusive ? v > min : v >= min;
    if (!s || errno || end == s || *end || !(low_ok && v <= max))
        return pr_yerr(f, n, "key '%s': expected a number %s %g and at most %g%s%s", key,
                       min_exclusive ? "above" : "from", min, max, why ? ": " : "", why ? why : "");
    *out = v;
    return PR_OK;
}

/* YAML forbids a key twice in one mapping but libyaml loads it, and the later
 * value would silently win over the one a reader of the file sees first. */
static int pr_yaml_unique(struct pr_yaml_file *f, const yaml_node_t *map,
                          const yaml_node_pair_t *pair, const char *prefix) {
    const char *key = pr_scalar(yaml_document_get_node(&f->doc, pair->key));
    if (!key) return PR_OK;
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        const yaml_node_t *earlier = yaml_document_get_node(&f->doc, p->key);
        const char *other = pr_scalar(earlier);
        if (other && strcmp(other, key) == 0)
            return pr_yerr(f, yaml_document_get_node(&f->doc, pair->key),
                           "key '%s%s' appears twice (first on line %zu)", prefix, key,
                           pr_yline(earlier));
    }
    return PR_OK;
}

static int pr_yaml_version(struct pr_yaml_file *f, const yaml_node_t *n, char *out, size_t size) {
    const char *s = pr_scalar(n);
    if (!s || !*s || strlen(s) >= size)
        return pr_yerr(f, n, "key 'version': expected a short string");
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '/' || *p > '~')
            return pr_yerr(f, n, "key 'version': no spaces or '/'");
    snprintf(out, size, "%s", s);
    return PR_OK;
}

/* ------------------------------------------------------------- rule file */

/* The reasons a refused value would have had, for the refusals. */
#define PR_WHY_POINTS "points only add to the score; a negative value would cancel other reasons"
#define PR_WHY_THRESHOLD "at 0 every declaration, with or without a reason, would be in that lane"

/* Where a lane setting came from, for the cross-checks: its line, or the default. */
struct pr_rules_origin {
    size_t red, yellow, cap; /* 1-based line in the file; 0 = the default */
};

static const char *pr_origin_text(size_t line, char *buf, size_t size) {
    if (line == 0)
        snprintf(buf, size, "the default");
    else
        snprintf(buf, size, "line %zu", line);
    return buf;
}

static int pr_rules_points(struct pr_rules *r, struct pr_yaml_file *f, yaml_node_t *vn) {
    if (vn->type != YAML_MAPPING_NODE) return pr_yerr(f, vn, "key 'points': expected a mapping");
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *ck = yaml_document_get_node(&f->doc, p->key);
        const char *code = pr_scalar(ck);
        int idx = code ? pr_reason_from_name(code, strlen(code)) : -1;
        if (idx < 0)
            return pr_yerr(f, ck, "key 'points': unknown reason code '%s'", code ? code : "");
        /* Both would be read nowhere: the setting would look in force and not be. */
        if (idx == PR_R_KNOWN_VIOLATOR)
            return pr_yerr(f, ck,
                           "key 'points.KNOWN_VIOLATOR': its points are set by severity, in "
                           "'violator_points'");
        if (idx == PR_R_HIGH_RISK_ORIGIN)
            return pr_yerr(f, ck,
                           "key 'points.HIGH_RISK_ORIGIN': its points come from countries.csv");
        if (pr_yaml_unique(f, vn, p, "points.") != PR_OK) return PR_ERR;
        char name[64];
        snprintf(name, sizeof(name), "points.%s", code);
        long l;
        yaml_node_t *value = yaml_document_get_node(&f->doc, p->value);
        if (pr_yaml_int(f, value, name, 0, 1000, PR_WHY_POINTS, &l) != PR_OK) return PR_ERR;
        r->points[idx] = (int32_t)l;
    }
    return PR_OK;
}

static int pr_rules_violator_points(struct pr_rules *r, struct pr_yaml_file *f, yaml_node_t *vn) {
    if (vn->type != YAML_MAPPING_NODE)
        return pr_yerr(f, vn, "key 'violator_points': expected a mapping");
    size_t seen[4] = {0};
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *sk = yaml_document_get_node(&f->doc, p->key);
        long severity, l;
        if (pr_yaml_int(f, sk, "violator_points severity", 1, 3,
                        "violators.csv severities are 1 to 3", &severity) != PR_OK)
            return PR_ERR;
        if (seen[severity])
            return pr_yerr(f, sk, "key 'violator_points.%ld' appears twice (first on line %zu)",
                           severity, seen[severity]);
        seen[severity] = pr_yline(sk);
        char name[32];
        snprintf(name, sizeof(name), "violator_points.%ld", severity);
        yaml_node_t *value = yaml_document_get_node(&f->doc, p->value);
        if (pr_yaml_int(f, value, name, 0, 1000, PR_WHY_POINTS, &l) != PR_OK) return PR_ERR;
        r->violator_points[severity] = (int32_t)l;
    }
    return PR_OK;
}

static int pr_rules_lanes(struct pr_rules *r, struct pr_yaml_file *f, yaml_node_t *vn,
                          struct pr_rules_origin *origin) {
    if (vn->type != YAML_MAPPING_NODE) return pr_yerr(f, vn, "key 'lanes': expected a mapping");
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *lk = yaml_document_get_node(&f->doc, p->key);
        yaml_node_t *lv = yaml_document_get_node(&f->doc, p->value);
        const char *lname = pr_scalar(lk);
        int32_t *slot = NULL;
        size_t *line = NULL;
        long min = 1, max = 1000;
        const char *why = PR_WHY_THRESHOLD;
        if (lname && strcmp(lname, "red_score") == 0) {
            slot = &r->lane_red_score;
            line = &origin->red;
        } else if (lname && strcmp(lname, "yellow_score") == 0) {
            slot = &r->lane_yellow_score;
            line = &origin->yellow;
        } else if (lname && strcmp(lname, "score_cap") == 0) {
            slot = &r->score_cap;
            line = &origin->cap;
            min = 0;
            why = "the decision's score is 0 to 1000";
        } else if (lname && strcmp(lname, "red_violator_severity") == 0) {
            slot = &r->red_violator_severity;
            min = 0;
            max = 3;
            why = "0 is never, violators.csv severities are 1 to 3";
        }
        if (!slot)
            return pr_yerr(f, lk,
                           "key 'lanes.%s': unknown (red_score, yellow_score, score_cap, "
                           "red_violator_severity)",
                           lname ? lname : "");
        if (pr_yaml_unique(f, vn, p, "lanes.") != PR_OK) return PR_ERR;
        char name[48];
        snprintf(name, sizeof(name), "lanes.%s", lname);
        long l;
        if (pr_yaml_int(f, lv, name, min, max, why, &l) != PR_OK) return PR_ERR;
        *slot = (int32_t)l;
        if (line) *line = pr_yline(lv);
    }
    return PR_OK;
}

/* The lane settings together: each one alone may be in range and the set
 * still send declarations to the wrong lane. The refusal names the line of
 * the later of the two settings (the one that contradicts the other). */
static int pr_rules_check_lanes(const struct pr_rules *r, struct pr_yaml_file *f,
                                const struct pr_rules_origin *origin) {
    char a[32], b[32];
    if (r->lane_yellow_score >= r->lane_red_score)
        return pr_yerr_at(
            f, origin->yellow > origin->red ? origin->yellow : origin->red,
            "lanes: yellow_score %d (%s) must be below red_score %d (%s): otherwise no "
            "score is YELLOW, and scores from red_score on are RED",
            (int)r->lane_yellow_score, pr_origin_text(origin->yellow, a, sizeof(a)),
            (int)r->lane_red_score, pr_origin_text(origin->red, b, sizeof(b)));
    if (r->score_cap < r->lane_red_score)
        return pr_yerr_at(
            f, origin->cap > origin->red ? origin->cap : origin->red,
            "lanes: score_cap %d (%s) must be at least red_score %d (%s): otherwise no "
            "score reaches RED",
            (int)r->score_cap, pr_origin_text(origin->cap, a, sizeof(a)), (int)r->lane_red_score,
            pr_origin_text(origin->red, b, sizeof(b)));
    return PR_OK;
}

static int pr_rules_stop_words(struct pr_rules *r, struct pr_yaml_file *f, yaml_node_t *vn) {
    if (vn->type != YAML_SEQUENCE_NODE) return pr_yerr(f, vn, "key 'stop_words': expected a list");
    size_t count = (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    char **words = pr_calloc(count, sizeof(char *));
    size_t n = 0;
    for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top;
         it++) {
        yaml_node_t *wn = yaml_document_get_node(&f->doc, *it);
        const char *w = pr_scalar(wn);
        bool ok = w && *w;
        for (const char *c = w; ok && *c; c++)
            if (!((*c >= 'A' && *c <= 'Z') || (unsigned char)*c >= 0x80)) ok = false;
        if (!ok) {
            for (size_t k = 0; k < n; k++) free(words[k]);
            free(words);
            return pr_yerr(f, wn, "key 'stop_words': each word is one upper-case token (A-Z)");
        }
        words[n++] = pr_strdup(w);
    }
    for (size_t k = 0; k < r->stop_word_count; k++) free(r->stop_words[k]);
    free(r->stop_words);
    r->stop_words = words;
    r->stop_word_count = n;
    return PR_OK;
}

static int pr_hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int pr_rules_apply(struct pr_rules *r, struct pr_yaml_file *f, char *version, size_t vsize) {
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    bool have_version = false;
    struct pr_rules_origin origin = {0};
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&f->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(&f->doc, pair->value);
        const char *key = pr_scalar(kn);
        long l;
        int rc = PR_OK;
        if (!key) return pr_yerr(f, kn, "keys must be plain strings");
        if (pr_yaml_unique(f, root, pair, "") != PR_OK) return PR_ERR;
        if (strcmp(key, "version") == 0) {
            rc = pr_yaml_version(f, vn, version, vsize);
            have_version = true;
        } else if (strcmp(key, "points") == 0) {
            rc = pr_rules_points(r, f, vn);
        } else if (strcmp(key, "violator_points") == 0) {
            rc = pr_rules_violator_points(r, f, vn);
        } else if (strcmp(key, "lanes") == 0) {
            rc = pr_rules_lanes(r, f, vn, &origin);
        } else if (strcmp(key, "stop_words") == 0) {
            rc = pr_rules_stop_words(r, f, vn);
        } else if (strcmp(key, "undervalue_factor") == 0) {
            rc = pr_yaml_double(f, vn, key, 0, true, 100, "at 0 UNDERVALUED could never fire",
                                &r->undervalue_factor);
        } else if (strcmp(key, "freight_factor") == 0) {
            rc = pr_yaml_double(f, vn, key, 0, true, 1000,
                                "at 0 FREIGHT_VALUE_MISMATCH would fire on every freight charge",
                                &r->freight_factor);
        } else if (strcmp(key, "min_description_letters") == 0) {
            rc = pr_yaml_int(f, vn, key, 0, 100, NULL, &l);
            if (rc == PR_OK) r->min_description_letters = (int)l;
        } else if (strcmp(key, "cluster_size") == 0) {
            rc = pr_yaml_int(f, vn, key, 2, 10000,
                             "the count includes the declaration itself, so 1 would make every "
                             "consignee a cluster",
                             &l);
            if (rc == PR_OK) r->cluster_size = (int)l;
        } else if (strcmp(key, "arrival_window_days") == 0) {
            rc = pr_yaml_int(
                f, vn, key, 1, 36500,
                "at 0 an arrival_time off event_time by 1 ms would be DATE_IMPLAUSIBLE", &l);
            if (rc == PR_OK) r->arrival_window_days = (int)l;
        } else if (strcmp(key, "day_offset_minutes") == 0) {
            rc = pr_yaml_int(f, vn, key, -1440, 1440, NULL, &l);
            if (rc == PR_OK) r->day_offset_minutes = (int)l;
        } else if (strcmp(key, "sample_rate") == 0) {
            rc = pr_yaml_double(f, vn, key, 0, false, 1, "a rate is a fraction", &r->sample_rate);
        } else if (strcmp(key, "sample_key") == 0) {
            const char *hex = pr_scalar(vn);
            bool ok = hex && strlen(hex) == 32;
            for (int i = 0; ok && i < 16; i++) {
                int hi = pr_hex_digit(hex[2 * i]), lo = pr_hex_digit(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    ok = false;
                else
                    r->sample_key[i] = (uint8_t)(hi << 4 | lo);
            }
            if (!ok) rc = pr_yerr(f, vn, "key 'sample_key': expected 32 hex digits");
        } else {
            rc = pr_yerr(f, kn, "unknown key '%s'", key);
        }
        if (rc != PR_OK) return PR_ERR;
    }
    if (!have_version)
        return pr_yerr(f, root, "key 'version' is required (it goes into every decision)");
    if (pr_rules_check_lanes(r, f, &origin) != PR_OK) return PR_ERR;
    qsort(r->stop_words, r->stop_word_count, sizeof(char *), pr_rules_cmp_str);
    return PR_OK;
}

/* ----------------------------------------------------------- policy file */

static int pr_policy_apply(struct pr_policy *policy, struct pr_yaml_file *f, char *version,
                           size_t vsize) {
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    yaml_node_t *rows = NULL;
    bool have_version = false;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(&f->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(&f->doc, pair->value);
        const char *key = pr_scalar(kn);
        if (pr_yaml_unique(f, root, pair, "") != PR_OK) return PR_ERR;
        if (key && strcmp(key, "version") == 0) {
            if (pr_yaml_version(f, vn, version, vsize) != PR_OK) return PR_ERR;
            have_version = true;
        } else if (key && strcmp(key, "rows") == 0) {
            rows = vn;
        } else {
            return pr_yerr(f, kn, "unknown key '%s' (version, rows)", key ? key : "");
        }
    }
    if (!have_version) return pr_yerr(f, root, "key 'version' is required");
    if (!rows || rows->type != YAML_SEQUENCE_NODE)
        return pr_yerr(f, rows ? rows : root, "key 'rows': expected a list");
    struct pr_policy p = {.count = 0};
    size_t previous_from_line = 0;
    for (yaml_node_item_t *it = rows->data.sequence.items.start; it < rows->data.sequence.items.top;
         it++) {
        yaml_node_t *rn = yaml_document_get_node(&f->doc, *it);
        if (rn->type != YAML_MAPPING_NODE) return pr_yerr(f, rn, "each row is a mapping");
        if (p.count == PR_POLICY_MAX_ROWS)
            return pr_yerr(f, rn, "more than %d rows", PR_POLICY_MAX_ROWS);
        struct pr_policy_row *row = &p.rows[p.count];
        memset(row, 0, sizeof(*row));
        bool have_from = false, have_threshold = false;
        size_t from_line = 0;
        for (yaml_node_pair_t *pair = rn->data.mapping.pairs.start;
             pair < rn->data.mapping.pairs.top; pair++) {
            yaml_node_t *kn = yaml_document_get_node(&f->doc, pair->key);
            yaml_node_t *vn = yaml_document_get_node(&f->doc, pair->value);
            const char *key = pr_scalar(kn);
            const char *val = pr_scalar(vn);
            if (pr_yaml_unique(f, rn, pair, "rows.") != PR_OK) return PR_ERR;
            if (key && strcmp(key, "from") == 0) {
                from_line = pr_yline(vn);
                if (val && strcmp(val, "beginning") == 0)
                    row->from_ms = INT64_MIN;
                else if (!val || pr_parse_utc(val, &row->from_ms) != PR_OK || !strchr(val, 'T'))
                    return pr_yerr(
                        f, vn,
                        "key 'from': expected 'beginning' or an instant like 2025-05-02T04:01:00Z");
                have_from = true;
            } else if (key && strcmp(key, "threshold_usd_cents") == 0) {
                long l;
                if (pr_yaml_int(f, vn, key, 0, 100000000,
                                "a threshold is a value in cents, $0 to $1,000,000", &l) != PR_OK)
                    return PR_ERR;
                row->threshold_cents = l;
                have_threshold = true;
            } else if (key && strcmp(key, "repealed") == 0) {
                if (!val || (strcmp(val, "true") && strcmp(val, "false")))
                    return pr_yerr(f, vn, "key 'repealed': expected true or false");
                row->repealed = strcmp(val, "true") == 0;
            } else if (key && strcmp(key, "suspended") == 0) {
                if (val && strcmp(val, "ALL") == 0) {
                    row->suspend_all = true;
                } else if (vn->type == YAML_SEQUENCE_NODE) {
                    for (yaml_node_item_t *c = vn->data.sequence.items.start;
                         c < vn->data.sequence.items.top; c++) {
                        yaml_node_t *cn = yaml_document_get_node(&f->doc, *c);
                        const char *cc = pr_scalar(cn);
                        if (cc && strcmp(cc, "ALL") == 0) {
                            row->suspend_all = true;
                            continue;
                        }
                        if (!cc || strlen(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' ||
                            cc[1] > 'Z')
                            return pr_yerr(f, cn,
                                           "key 'suspended': expected ISO alpha-2 codes or ALL");
                        if (row->suspended_count == PR_POLICY_MAX_ORIGINS)
                            return pr_yerr(f, cn, "more than %d suspended origins",
                                           PR_POLICY_MAX_ORIGINS);
                        memcpy(row->suspended[row->suspended_count++], cc, 3);
                    }
                } else {
                    return pr_yerr(f, vn,
                                   "key 'suspended': expected a list of country codes or ALL");
                }
            } else {
                return pr_yerr(f, kn,
                               "unknown key '%s' (from, threshold_usd_cents, suspended, repealed)",
                               key ? key : "");
            }
        }
        if (!have_from) return pr_yerr(f, rn, "row without 'from'");
        if (!have_threshold && !row->repealed)
            return pr_yerr(f, rn, "row without 'threshold_usd_cents' (or repealed: true)");
        if (p.count > 0 && row->from_ms <= p.rows[p.count - 1].from_ms) {
            char now[40], before[40];
            pr_format_utc(row->from_ms, now, sizeof(now));
            pr_format_utc(p.rows[p.count - 1].from_ms, before, sizeof(before));
            return pr_yerr_at(
                f, from_line,
                "rows must be in increasing order of 'from': %s is not after %s "
                "(line %zu); the row in force at an instant is the last one from before it",
                row->from_ms == INT64_MIN ? "beginning" : now,
                p.rows[p.count - 1].from_ms == INT64_MIN ? "beginning" : before,
                previous_from_line);
        }
        if (p.count == 0 && row->from_ms != INT64_MIN)
            return pr_yerr_at(
                f, from_line,
                "the first row must be 'from: beginning' (every instant needs a row)");
        previous_from_line = from_line;
        p.count++;
    }
    if (p.count == 0) return pr_yerr(f, rows, "key 'rows': at least one row");
    *policy = p;
    return PR_OK;
}

struct pr_rules *pr_rules_load(const char *rules_path, const char *policy_path, char *err,
                               size_t err_size) {
    struct pr_rules *r = pr_rules_new_default();
    char rules_version[48] = "builtin-1", policy_version[48] = "us-builtin-1";
    struct pr_yaml_file f;
    if (rules_path && *rules_path) {
        if (pr_yaml_open(&f, rules_path, err, err_size) != PR_OK) goto fail;
        int rc = pr_rules_apply(r, &f, rules_version, sizeof(rules_version));
        yaml_document_delete(&f.doc);
        if (rc != PR_OK) goto fail;
    }
    if (policy_path && *policy_path) {
        if (pr_yaml_open(&f, policy_path, err, err_size) != PR_OK) goto fail;
        int rc = pr_policy_apply(&r->policy, &f, policy_version, sizeof(policy_version));
        yaml_document_delete(&f.doc);
        if (rc != PR_OK) goto fail;
    }
    snprintf(r->version, sizeof(r->version), "%s/%s", rules_version, policy_version);
    return r;
fail:
    pr_rules_free(r);
    return NULL;
}
