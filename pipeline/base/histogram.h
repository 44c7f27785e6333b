/*
 * histogram.h - a log-linear latency histogram (HdrHistogram's idea, which
 * Debian does not package for C): values in [0, 2^40) with about 1.6%
 * relative precision (64 sub-buckets per power of two), fixed memory, O(1)
 * record.
 */
#ifndef PR_HISTOGRAM_H
#define PR_HISTOGRAM_H

#include "common.h"

#define PR_HIST_SUB 64
#define PR_HIST_POWERS 40

struct pr_histogram {
    uint64_t count;
    uint64_t max;
    uint64_t sum; /* of every value recorded (the Prometheus histogram's _sum) */
    uint64_t buckets[PR_HIST_POWERS * PR_HIST_SUB];
};

void pr_histogram_reset(struct pr_histogram *h);
void pr_histogram_record(struct pr_histogram *h, uint64_t value);
/* The value at quantile q (0..1): the upper edge of its bucket. */
uint64_t pr_histogram_quantile(const struct pr_histogram *h, double q);
/* How many values were recorded in buckets that lie wholly at or below
 * bound (a Prometheus bucket le=bound): exact below 64; above, a value
 * within 1.6% under bound whose bucket straddles it is counted in the next
 * bucket up. Non-decreasing in bound; equals count for bound >= max. */
uint64_t pr_histogram_count_at_most(const struct pr_histogram *h, uint64_t bound);

#endif
