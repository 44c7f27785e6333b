#include "histogram.h"

#include <string.h>

void pr_histogram_reset(struct pr_histogram *h) {
    memset(h, 0, sizeof(*h));
}

static size_t pr_histogram_index(uint64_t v) {
    if (v < PR_HIST_SUB) return (size_t)v;
    int power = 63 - __builtin_clzll(v); /* >= 6 */
    int shift = power - 6;
    size_t index = (size_t)(power - 5) * PR_HIST_SUB + (size_t)((v >> shift) - PR_HIST_SUB);
    size_t last = PR_HIST_POWERS * PR_HIST_SUB - 1;
    return index > last ? last : index;
}

static uint64_t pr_histogram_upper(size_t index) {
    if (index < PR_HIST_SUB) return index;
    size_t power = index / PR_HIST_SUB + 5;
    uint64_t sub = index % PR_HIST_SUB + PR_HIST_SUB;
    int shift = (int)power - 6;
    return ((sub + 1) << shift) - 1;
}

void pr_histogram_record(struct pr_histogram *h, uint64_t value) {
    h->buckets[pr_histogram_index(value)]++;
    h->count++;
    h->sum += value;
    if (value > h->max) h->max = value;
}

uint64_t pr_histogram_quantile(const struct pr_histogram *h, double q) {
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count) rank = h->count - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < PR_HIST_POWERS * PR_HIST_SUB; i++) {
        seen += h->buckets[i];
        if (seen > rank) {
            uint64_t upper = pr_histogram_upper(i);
            return upper < h->max ? upper : h->max;
        }
    }
    return h->max;
}

uint64_t pr_histogram_count_at_most(const struct pr_histogram *h, uint64_t bound) {
    if (bound >= h->max) return h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < PR_HIST_POWERS * PR_HIST_SUB && pr_histogram_upper(i) <= bound; i++)
        seen += h->buckets[i];
    return seen;
}
