/*
 * rdstats.c - an LD_PRELOAD shim for profiling: librdkafka's statistics of
 * every client a process makes (consumer, producer, the restore consumer),
 * once a second, appended one JSON document a line to
 * $PR_RDSTATS_DIR/<client name>.json.
 *
 * Why a shim: `parcelrisk run` asks librdkafka for statistics only for the
 * HTTP endpoint and only of its consumer; the per-topic produce batch sizes
 * (batchsize, batchcnt) that explain the broker's cost per declaration are
 * in the producer's. The shim wraps rd_kafka_new(), so the measured binary
 * is the one that ships. It replaces any statistics callback the program
 * set: do not use it with http.listen. Not built by cmake (a profiling aid,
 * benchmarks/README.md "Issue 12: what limits each missed target"):
 *
 *   cc -O2 -shared -fPIC -o /tmp/rdstats.so benchmarks/rdstats.c -ldl
 *   PR_RDSTATS_DIR=DIR LD_PRELOAD=/tmp/rdstats.so build/parcelrisk run ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

static int pr_rdstats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)opaque;
    const char *dir = getenv("PR_RDSTATS_DIR");
    if (!dir) return 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.json", dir, rd_kafka_name(rk));
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "rdstats: cannot append to %s\n", path);
        return 0;
    }
    fwrite(json, 1, json_len, f);
    fputc('\n', f);
    fclose(f);
    return 0; /* librdkafka frees json */
}

rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                         size_t errstr_size) {
    static rd_kafka_t *(*real)(rd_kafka_type_t, rd_kafka_conf_t *, char *, size_t);
    if (!real)
        real = (rd_kafka_t * (*)(rd_kafka_type_t, rd_kafka_conf_t *, char *, size_t))
            dlsym(RTLD_NEXT, "rd_kafka_new");
    if (!real) {
        fprintf(stderr, "rdstats: rd_kafka_new not found\n");
        abort();
    }
    if (conf) {
        char err[256];
        if (rd_kafka_conf_set(conf, "statistics.interval.ms", "1000", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            fprintf(stderr, "rdstats: statistics.interval.ms: %s\n", err);
        rd_kafka_conf_set_stats_cb(conf, pr_rdstats_cb);
    }
    return real(type, conf, errstr, errstr_size);
}
