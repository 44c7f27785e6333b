/*
 * probe.h - the readiness probe of `parcelrisk run`: a thread of its own
 * that checks once a second that Redis answers and that the current
 * reference-data version is usable (its manifest checks out, refdata.h),
 * and writes what it finds into the metrics (pr_metrics_set_probe) for
 * /ready.
 *
 * Why a thread and a connection of its own: the engine only talks to Redis
 * when a batch needs it, so an idle pipeline would not notice an outage;
 * and the engine thread must never wait on a check made for HTTP. The probe
 * costs Redis one small script per second (GET, TYPE and HLEN of three
 * tables: O(1)).
 */
#ifndef PR_PROBE_H
#define PR_PROBE_H

#include "config.h"
#include "metrics.h"

struct pr_probe;

/* Starts the thread. Redis is checked only when the chain uses it (enrich
 * or aggregate), the reference data only when it has enrich; otherwise the
 * condition is "not needed". Returns NULL (logged) when the thread cannot
 * start. @locality the main thread. */
struct pr_probe *pr_probe_start(const struct pr_config *cfg, struct pr_metrics *metrics);
/* Stops and joins the thread (at most one check in progress, bounded by
 * its timeout), frees it. NULL is a no-op. */
void pr_probe_stop(struct pr_probe *probe);

#endif
