/*
 * Unit tests: each operator alone, on records set up by hand with exactly
 * the fields the operator reads (test_rules.c runs the chain as a whole).
 *
 *   route, score, sample, screen,  no outside service
 *   aggregate (its state in process, by partition), repartition and
 *   repartition-source (the intermediate record, a round trip)
 *   enrich                         against a real redis-server that this
 *                                  test starts on a free port (and stops),
 *                                  with reference data loaded by the real
 *                                  loader from CSV files written here
 *
 * Expected values come from DOMAIN.md sections 5-8, checked against the
 * default rules where a number is a rule (points, thresholds).
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "hash.h"
#include "normalize.h"
#include "operator.h"
#include "state.h"
#include "refdata_load.h"
#include "rules.h"

#define S(lit) ((struct pr_str){(lit), (uint32_t)(sizeof(lit) - 1)})
#define BIT(code) (1u << (code))

/* ------------------------------------------------------------ fixture */

struct op_fixture {
    struct pr_config *cfg;
    struct pr_operator op;
    struct pr_rules *rules;
    struct pr_batch batch;
};

/* Starts an operator with cfg (owned by the fixture from here). */
static void fixture_start_env(struct op_fixture *f, const char *name, struct pr_config *cfg,
                              struct pr_operator_env env) {
    memset(f, 0, sizeof(*f));
    f->cfg = cfg;
    f->op.ops = pr_operator_lookup(name);
    assert_non_null(f->op.ops);
    env.cfg = f->cfg;
    if (f->op.ops->init) assert_int_equal(f->op.ops->init(&f->op, &env), PR_OK);
    f->rules = pr_rules_new_default();
    pr_batch_init(&f->batch, 64);
}

static void fixture_start_with(struct op_fixture *f, const char *name, struct pr_config *cfg) {
    fixture_start_env(f, name, cfg, (struct pr_operator_env){0});
}

/* Starts an operator with the default configuration. */
static void fixture_start(struct op_fixture *f, const char *name) {
    fixture_start_with(f, name, pr_config_default());
}

static void fixture_stop(struct op_fixture *f) {
    if (f->op.ops->destroy) f->op.ops->destroy(&f->op);
    pr_rules_free(f->rules);
    pr_batch_destroy(&f->batch);
    pr_config_free(f->cfg);
}

static void batch_begin(struct op_fixture *f) {
    pr_batch_reset(&f->batch);
    f->batch.rules = f->rules;
    f->batch.source_topic = "declarations";
    f->batch.refdata_version = "none";
    f->batch.now_ms = 1740830400000; /* 2025-03-01T12:00:00Z */
}

static int run(struct op_fixture *f) {
    return f->op.ops->process(&f->op, &f->batch);
}

static struct pr_line lines_store[64][4];

/* A live record with a declaration that the operators can read: one line,
 * arriving 2025-03-01 (before any suspension), $120. */
static struct pr_record *push(struct op_fixture *f, const char *id) {
    struct pr_record *rec = pr_batch_push(&f->batch);
    size_t i = f->batch.count - 1;
    struct pr_declaration *d = &rec->decl;
    d->declaration_id = (struct pr_str){id, (uint32_t)strlen(id)};
    d->house_bill = S("HB1");
    d->port_of_entry = S("4701");
    pr_parse_utc("2025-03-01T12:00:00Z", &d->arrival_time);
    d->event_time = d->arrival_time - 3600000;
    d->shipper = (struct pr_party){S("Hanoi Lotus Export Co., Ltd."), S("12 Tran Phu Street"),
                                   S("Hanoi"), S("100000"), S("VN")};
    d->consignee = (struct pr_party){S("Jane O'Neil"), S("1234 Elm Street, Apt. 5B"),
                                     S("Springfield"), S("62701"), S("US")};
    d->value_usd_cents = 12000;
    lines_store[i][0] =
        (struct pr_line){S("6109100012"), S("Men's cotton t-shirt"), S("VN"), 2, 12000};
    d->lines = lines_store[i];
    d->line_count = 1;
    return rec;
}

/* ============================================================== route */

static void test_route(void **state) {
    (void)state;
    struct op_fixture f;
    fixture_start(&f, "route");
    batch_begin(&f);
    struct pr_record *dead = push(&f, "D");
    pr_record_dead_letter(dead, PR_DLQ_DECODE_ERROR, "bad");
    dead->lane = PR_LANE_RED; /* a dead record's lane means nothing */
    const enum pr_lane lanes[4] = {PR_LANE_GREEN, PR_LANE_BLUE, PR_LANE_YELLOW, PR_LANE_RED};
    for (int i = 0; i < 4; i++) push(&f, "L")->lane = lanes[i];
    struct pr_record *crossing = push(&f, "C");
    crossing->lane = PR_LANE_BLUE;
    crossing->aggregate_crossing = true;
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(f.batch.records[0].outputs, PR_OUT_DLQ);
    assert_int_equal(f.batch.records[1].outputs, PR_OUT_DECISION);
    assert_int_equal(f.batch.records[2].outputs, PR_OUT_DECISION);
    assert_int_equal(f.batch.records[3].outputs, PR_OUT_DECISION | PR_OUT_ALERT);
    assert_int_equal(f.batch.records[4].outputs, PR_OUT_DECISION | PR_OUT_ALERT);
    assert_int_equal(f.batch.records[5].outputs, PR_OUT_DECISION | PR_OUT_AGGREGATE_ALERT);
    fixture_stop(&f);
}

/* ============================================================== score */

static struct pr_record *scored(struct op_fixture *f, uint32_t fired, int32_t points_each) {
    batch_begin(f);
    struct pr_record *rec = push(f, "S");
    rec->fired = fired;
    for (int c = 0; c < PR_R_COUNT; c++)
        if ((fired >> c) & 1) rec->reasons[c].points = points_each;
    assert_int_equal(run(f), PR_OP_DONE);
    return rec;
}

static void test_score_lanes_and_cap(void **state) {
    (void)state;
    struct op_fixture f;
    fixture_start(&f, "score");
    const struct pr_rules *r = f.rules;
    /* DOMAIN.md section 5: YELLOW from 300, RED from 600, the score capped at 1000. */
    assert_int_equal(r->lane_yellow_score, 300);
    assert_int_equal(r->lane_red_score, 600);
    assert_int_equal(r->score_cap, 1000);

    struct pr_record *rec = scored(&f, 0, 0);
    assert_int_equal(rec->score, 0);
    assert_int_equal(rec->lane, PR_LANE_GREEN);
    assert_int_equal(rec->de_minimis, PR_DM_ELIGIBLE);
    assert_int_equal(rec->decided_at, f.batch.now_ms);

    /* The sum of the fired reasons, and only of those. */
    rec = scored(&f, BIT(PR_R_UNDERVALUED) | BIT(PR_R_VAGUE_DESCRIPTION), 149);
    assert_int_equal(rec->score, 298);
    assert_int_equal(rec->lane, PR_LANE_GREEN);
    rec = scored(&f, BIT(PR_R_UNDERVALUED) | BIT(PR_R_VAGUE_DESCRIPTION), 150);
    assert_int_equal(rec->score, 300);
    assert_int_equal(rec->lane, PR_LANE_YELLOW);
    rec = scored(&f, BIT(PR_R_UNDERVALUED) | BIT(PR_R_VAGUE_DESCRIPTION), 299);
    assert_int_equal(rec->lane, PR_LANE_YELLOW);
    rec = scored(&f, BIT(PR_R_UNDERVALUED) | BIT(PR_R_VAGUE_DESCRIPTION), 300);
    assert_int_equal(rec->score, 600);
    assert_int_equal(rec->lane, PR_LANE_RED);
    rec = scored(&f, BIT(PR_R_UNDERVALUED) | BIT(PR_R_VAGUE_DESCRIPTION) | BIT(PR_R_MISSING_DATA),
                 400);
    assert_int_equal(rec->score, 1000); /* 1200 capped */

    /* Points that are not fired do not count. */
    batch_begin(&f);
    rec = push(&f, "S");
    rec->reasons[PR_R_UNDERVALUED].points = 900;
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(rec->score, 0);
    fixture_stop(&f);
}

static void test_score_overrides_and_de_minimis(void **state) {
    (void)state;
    struct op_fixture f;
    fixture_start(&f, "score");
    /* A severity-3 violator is RED whatever the score; severity 2 is not. */
    batch_begin(&f);
    struct pr_record *v3 = push(&f, "V3"), *v2 = push(&f, "V2");
    v3->violator_severity = 3;
    v2->violator_severity = 2;
    /* The random sample alone makes YELLOW. */
    struct pr_record *sampled = push(&f, "R");
    sampled->random_selection = true;
    /* de_minimis: suspended > excluded goods > value > aggregate; any of
     * them without points is BLUE. */
    struct pr_record *all = push(&f, "A");
    all->suspended = all->value_over_threshold = all->aggregate_over_threshold = true;
    all->fired = BIT(PR_R_EXCLUDED_GOODS);
    struct pr_record *goods = push(&f, "G");
    goods->value_over_threshold = goods->aggregate_over_threshold = true;
    goods->fired = BIT(PR_R_EXCLUDED_GOODS);
    struct pr_record *value = push(&f, "V");
    value->value_over_threshold = value->aggregate_over_threshold = true;
    struct pr_record *agg = push(&f, "AG");
    agg->aggregate_over_threshold = true;
    struct pr_record *dead = push(&f, "D");
    pr_record_dead_letter(dead, PR_DLQ_EMPTY, "empty");
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(v3->lane, PR_LANE_RED);
    assert_int_equal(v3->score, 0);
    assert_int_equal(v2->lane, PR_LANE_GREEN);
    assert_int_equal(sampled->lane, PR_LANE_YELLOW);
    assert_int_equal(all->de_minimis, PR_DM_SUSPENDED);
    assert_int_equal(goods->de_minimis, PR_DM_INELIGIBLE_GOODS);
    assert_int_equal(value->de_minimis, PR_DM_INELIGIBLE_VALUE);
    assert_int_equal(agg->de_minimis, PR_DM_INELIGIBLE_AGGREGATE);
    for (struct pr_record *r = all; r <= agg; r++) assert_int_equal(r->lane, PR_LANE_BLUE);
    /* A dead record is left alone. */
    assert_int_equal(dead->decided_at, 0);
    assert_int_equal(dead->lane, PR_LANE_GREEN);
    fixture_stop(&f);
}

/* ============================================================= sample */

static void test_sample_rate_and_key(void **state) {
    (void)state;
    struct op_fixture f;
    fixture_start(&f, "sample");
    assert_true(f.rules->sample_rate > 0 && f.rules->sample_rate < 1);
    uint64_t cutoff = (uint64_t)ldexp(f.rules->sample_rate, 64);
    static char ids[4000][16];
    size_t selected = 0, expected = 0;
    for (size_t base = 0; base < 4000; base += 64) {
        batch_begin(&f);
        for (size_t i = base; i < base + 64 && i < 4000; i++) {
            snprintf(ids[i], sizeof(ids[i]), "ID-%05zu", i);
            push(&f, ids[i]);
        }
        assert_int_equal(run(&f), PR_OP_DONE);
        for (size_t k = 0; k < f.batch.count; k++) {
            const struct pr_record *rec = &f.batch.records[k];
            uint64_t h = pr_siphash24(f.rules->sample_key, rec->decl.declaration_id.ptr,
                                      rec->decl.declaration_id.len);
            bool want = h < cutoff;
            expected += want;
            assert_int_equal(rec->random_selection, want);
            assert_int_equal(pr_record_has(rec, PR_R_RANDOM_COMPLIANCE), want);
            if (want) {
                assert_int_equal(rec->reasons[PR_R_RANDOM_COMPLIANCE].points,
                                 f.rules->points[PR_R_RANDOM_COMPLIANCE]);
                selected++;
            }
        }
    }
    assert_int_equal(selected, expected);
    /* 4000 draws at the default rate: far from none and far from all. */
    double share = (double)selected / 4000.0;
    assert_true(share > f.rules->sample_rate / 3 && share < f.rules->sample_rate * 3);

    /* The same id is selected again (a replay decides the same); another
     * key selects other ids. */
    batch_begin(&f);
    push(&f, ids[0]);
    assert_int_equal(run(&f), PR_OP_DONE);
    bool first = f.batch.records[0].random_selection;
    batch_begin(&f);
    push(&f, ids[0]);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(f.batch.records[0].random_selection, first);

    /* Rate 1 selects every live record, rate 0 none; dead ones never. */
    f.rules->sample_rate = 1;
    batch_begin(&f);
    push(&f, "A");
    pr_record_dead_letter(push(&f, "B"), PR_DLQ_EMPTY, "empty");
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_true(f.batch.records[0].random_selection);
    assert_false(f.batch.records[1].random_selection);
    assert_int_equal(f.batch.records[1].fired, 0);
    f.rules->sample_rate = 0;
    batch_begin(&f);
    for (size_t i = 0; i < 64; i++) push(&f, ids[i]);
    assert_int_equal(run(&f), PR_OP_DONE);
    for (size_t i = 0; i < 64; i++) assert_false(f.batch.records[i].random_selection);
    fixture_stop(&f);
}

/* ============================================================= screen */

static struct pr_line_ref refs_store[64][4];

static struct pr_record *screened_record(struct op_fixture *f, uint32_t lines) {
    struct pr_record *rec = push(f, "SC");
    size_t i = f->batch.count - 1;
    for (uint32_t k = 0; k < lines; k++) {
        lines_store[i][k] =
            (struct pr_line){S("6109100012"), S("Cotton t-shirt"), S("VN"), 2, 4000};
        refs_store[i][k] = (struct pr_line_ref){
            .floor_cents = -1, .watch_points = -1, .all_digits = true, .known = true};
    }
    rec->decl.line_count = lines;
    rec->line_refs = refs_store[i];
    return rec;
}

static const char *detail(const struct pr_record *rec, enum pr_reason_code code) {
    static char text[2048];
    snprintf(text, sizeof(text), "%.*s", (int)rec->reasons[code].detail_len,
             rec->reasons[code].detail);
    return text;
}

static void test_screen_reasons(void **state) {
    (void)state;
    struct op_fixture f;
    fixture_start(&f, "screen");
    const struct pr_rules *r = f.rules;
    batch_begin(&f);
    /* 0: clean. */
    struct pr_record *clean = screened_record(&f, 2);
    /* 1: consignee listed at severity 2, address at 1: the highest counts. */
    struct pr_record *vio = screened_record(&f, 1);
    vio->party_severity[PR_PARTY_CONSIGNEE] = 2;
    vio->party_severity[PR_PARTY_ADDRESS] = 1;
    vio->violator_severity = 2;
    /* 2: a 10-digit code that the reference does not know; a non-digit
     * 10-byte code is validate's business, not screen's. */
    struct pr_record *hts = screened_record(&f, 2);
    hts->line_refs[0].known = false;
    hts->line_refs[1].known = false;
    hts->line_refs[1].all_digits = false;
    /* 3: two watched lines: the highest points; 4: watched with 0 points:
     * the default points. */
    struct pr_record *watch = screened_record(&f, 2);
    watch->line_refs[0].watch_points = 300;
    watch->line_refs[1].watch_points = 450;
    struct pr_record *watch0 = screened_record(&f, 1);
    watch0->line_refs[0].watch_points = 0;
    /* 5: undervalued exactly at the boundary (2 x value = floor x quantity:
     * not fired) and one cent under it (fired). */
    struct pr_record *under = screened_record(&f, 2);
    under->decl.lines[0].value_usd_cents = 4000; /* 2 x 4000 = 4000 x 2 */
    under->line_refs[0].floor_cents = 4000;
    under->decl.lines[1].value_usd_cents = 3999;
    under->line_refs[1].floor_cents = 4000;
    /* 6: origins with points: the highest. */
    struct pr_record *origin = screened_record(&f, 2);
    origin->line_refs[0].origin_points = 100;
    origin->line_refs[1].origin_points = 200;
    /* 7: no enrich in the chain (line_refs NULL): nothing. */
    struct pr_record *unenriched = push(&f, "NE");
    unenriched->violator_severity = 3;
    assert_int_equal(run(&f), PR_OP_DONE);

    assert_int_equal(clean->fired, 0);
    assert_int_equal(vio->fired, BIT(PR_R_KNOWN_VIOLATOR));
    assert_int_equal(vio->reasons[PR_R_KNOWN_VIOLATOR].points, r->violator_points[2]);
    assert_int_equal(r->violator_points[1], 200);
    assert_int_equal(r->violator_points[2], 400);
    assert_int_equal(r->violator_points[3], 700);
    assert_string_equal(detail(vio, PR_R_KNOWN_VIOLATOR),
                        "consignee on the CONSIGNEE list (severity 2), delivery address on the "
                        "ADDRESS list (severity 1)");
    assert_int_equal(hts->fired, BIT(PR_R_HTS_INVALID));
    assert_string_equal(detail(hts, PR_R_HTS_INVALID), "line 1: not in the tariff reference");
    assert_int_equal(watch->fired, BIT(PR_R_WATCHED_COMMODITY));
    assert_int_equal(watch->reasons[PR_R_WATCHED_COMMODITY].points, 450);
    assert_int_equal(watch0->reasons[PR_R_WATCHED_COMMODITY].points,
                     r->points[PR_R_WATCHED_COMMODITY]);
    assert_int_equal(under->fired, BIT(PR_R_UNDERVALUED));
    assert_non_null(strstr(detail(under, PR_R_UNDERVALUED), "line 2:"));
    assert_null(strstr(detail(under, PR_R_UNDERVALUED), "line 1:"));
    assert_int_equal(origin->fired, BIT(PR_R_HIGH_RISK_ORIGIN));
    assert_int_equal(origin->reasons[PR_R_HIGH_RISK_ORIGIN].points, 200);
    assert_int_equal(unenriched->fired, 0);
    fixture_stop(&f);
}

/* ========================================================= real Redis */

struct redis_server {
    pid_t pid;
    int port;
    char address[32];
    char dir[64];
};

static struct redis_server redis_srv;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static redisContext *redis_connect(void) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_srv.port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A small reference set: one known code with a floor, a watched prefix, a
 * consignee violator (US only), an address row, two countries with points. */
static void load_refdata(void) {
    write_file(redis_srv.dir, "hts.csv",
               "hts,description,flags,unit_value_floor_cents,points\n"
               "6109100012,Cotton t-shirts,,1500,\n"
               "8517,Telephone sets,WATCH,,350\n"
               "8517620000,Network equipment,PGA_FCC,,\n");
    write_file(redis_srv.dir, "violators.csv",
               "kind,name,address,country,severity,reason,listed_on\n"
               "CONSIGNEE,JANE ONEIL,,US,2,reshipper,2024-01-01\n"
               "ADDRESS,,99 HARBOR RD UNIT 7,US,1,reship address,2024-01-01\n");
    write_file(redis_srv.dir, "countries.csv", "country,points\nVN,0\nCN,150\n");
    char hts[128], vio[128], cty[128];
    snprintf(hts, sizeof(hts), "%s/hts.csv", redis_srv.dir);
    snprintf(vio, sizeof(vio), "%s/violators.csv", redis_srv.dir);
    snprintf(cty, sizeof(cty), "%s/countries.csv", redis_srv.dir);
    struct pr_refdata_load_options opts = {.hts_path = hts,
                                           .violators_path = vio,
                                           .countries_path = cty,
                                           .redis_address = redis_srv.address,
                                           .quiet = true,
                                           .grace_ms = 0};
    struct pr_refdata_load_result res;
    assert_int_equal(pr_refdata_load(&opts, &res), PR_REFDATA_OK);
    assert_int_equal(res.hts_rows, 3);
    assert_int_equal(res.violator_rows, 2);
}

static int redis_group_setup(void **state) {
    (void)state;
    redis_srv.port = free_port();
    if (redis_srv.port <= 0) return -1;
    snprintf(redis_srv.address, sizeof(redis_srv.address), "127.0.0.1:%d", redis_srv.port);
    snprintf(redis_srv.dir, sizeof(redis_srv.dir), "/tmp/pr-test-operators-XXXXXX");
    if (!mkdtemp(redis_srv.dir)) return -1;
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_srv.port);
    redis_srv.pid = fork();
    if (redis_srv.pid == 0) {
        freopen("/dev/null", "w", stdout);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", redis_srv.dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = redis_connect();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            if (r) freeReplyObject(r);
            redisFree(c);
            if (ok) return 0;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "test_operators: redis-server did not start on port %d\n", redis_srv.port);
    return -1;
}

static int redis_group_teardown(void **state) {
    (void)state;
    if (redis_srv.pid > 0) {
        kill(redis_srv.pid, SIGTERM);
        waitpid(redis_srv.pid, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", redis_srv.dir);
    if (system(cmd) != 0) return -1;
    return 0;
}

static struct pr_config *redis_config(const char *on_unavailable) {
    struct pr_config *cfg = pr_config_default();
    assert_int_equal(pr_config_set(cfg, "redis.address", redis_srv.address, "test", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "redis.on_unavailable", on_unavailable, "test", 0), PR_OK);
    assert_int_equal(pr_config_set(cfg, "redis.timeout_ms", "500", "test", 0), PR_OK);
    return cfg;
}

/* ============================================================= enrich */

static void test_enrich_against_redis(void **state) {
    (void)state;
    load_refdata();
    struct op_fixture f;
    fixture_start_with(&f, "enrich", redis_config("pause"));
    batch_begin(&f);
    /* 0: the listed consignee (name normalizes to JANE ONEIL, country US),
     * a known code with a floor, a code under the watched prefix, an
     * unknown all-digit code under no row, origin CN. */
    struct pr_record *a = push(&f, "E1");
    lines_store[0][0] = (struct pr_line){S("6109100012"), S("T-shirt"), S("VN"), 1, 500};
    lines_store[0][1] = (struct pr_line){S("8517620000"), S("Router"), S("CN"), 1, 5000};
    lines_store[0][2] = (struct pr_line){S("9999999999"), S("Thing"), S("VN"), 1, 100};
    a->decl.line_count = 3;
    /* 1: the same name in another country: not a match; the listed address
     * (with its city: "99 Harbor Road, Unit 7" + "" -> the address alone). */
    struct pr_record *b = push(&f, "E2");
    b->decl.consignee = (struct pr_party){S("Jane O'Neil"), S("99 Harbor Road, Unit 7"), S(""),
                                          S("10001"), S("CA")};
    struct pr_record *c = push(&f, "E3");
    c->decl.consignee =
        (struct pr_party){S("John Roe"), S("99 Harbor Road Unit 7"), S(""), S("10001"), S("US")};
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_not_equal(strcmp(f.batch.refdata_version, "none"), 0);
    assert_non_null(a->line_refs);
    assert_true(a->line_refs[0].known);
    assert_int_equal(a->line_refs[0].floor_cents, 1500);
    assert_int_equal(a->line_refs[0].watch_points, -1);
    assert_true(a->line_refs[1].known);
    assert_int_equal(a->line_refs[1].watch_points, 350);
    assert_int_equal(a->line_refs[1].origin_points, 150);
    assert_false(a->line_refs[2].known);
    assert_true(a->line_refs[2].all_digits);
    assert_int_equal(a->line_refs[2].floor_cents, -1);
    assert_int_equal(a->party_severity[PR_PARTY_CONSIGNEE], 2);
    assert_int_equal(a->violator_severity, 2);
    assert_int_equal(b->party_severity[PR_PARTY_CONSIGNEE], 0);
    assert_int_equal(b->party_severity[PR_PARTY_ADDRESS], 0); /* the row is US, b is CA */
    assert_int_equal(c->party_severity[PR_PARTY_ADDRESS], 1);
    assert_int_equal(c->violator_severity, 1);
    uint64_t trips = f.op.stats.round_trips;
    assert_true(trips >= 1);

    /* The same keys again come from the cache: no round trip for the
     * answers (the version check may still make one). */
    batch_begin(&f);
    push(&f, "E4");
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_true(f.op.stats.cache_hits > 0);
    fixture_stop(&f);

    /* Redis unreachable: pause (PR_OP_RETRY, nothing decided). */
    struct pr_config *cfg = redis_config("pause");
    char gone[32];
    snprintf(gone, sizeof(gone), "127.0.0.1:%d", free_port());
    assert_int_equal(pr_config_set(cfg, "redis.address", gone, "test", 0), PR_OK);
    memset(&f, 0, sizeof(f));
    f.cfg = cfg;
    f.op.ops = pr_operator_lookup("enrich");
    struct pr_operator_env env = {.cfg = cfg};
    /* It starts without Redis (only a refused AUTH stops the start), and
     * pauses at the first batch. */
    assert_int_equal(f.op.ops->init(&f.op, &env), PR_OK);
    f.rules = pr_rules_new_default();
    pr_batch_init(&f.batch, 64);
    batch_begin(&f);
    struct pr_record *p = push(&f, "P1");
    assert_int_equal(run(&f), PR_OP_RETRY);
    assert_int_equal(p->party_severity[PR_PARTY_CONSIGNEE], 0);
    fixture_stop(&f);
}

/* ========================================================== aggregate */

static struct pr_record *agg_push(struct op_fixture *f, const char *id, const char *name,
                                  int64_t cents) {
    struct pr_record *rec = push(f, id);
    rec->decl.consignee.name = (struct pr_str){name, (uint32_t)strlen(name)};
    rec->decl.value_usd_cents = cents;
    rec->decl.house_bill = (struct pr_str){id, (uint32_t)strlen(id)};
    static struct pr_sha256 sha;
    static bool sha_ready;
    if (!sha_ready) {
        pr_sha256_init(&sha);
        sha_ready = true;
    }
    pr_record_consignee_key(&sha, rec);
    return rec;
}

/* The keyed state of two partitions, as the engine gives stage 2 its
 * stores (partition 2 is not owned here). */
static struct pr_state *agg_stores[2];

static struct pr_state *agg_store_of(void *ctx, int32_t partition) {
    (void)ctx;
    return partition >= 0 && partition < 2 ? agg_stores[partition] : NULL;
}

static const struct pr_state_router agg_router = {agg_store_of, NULL};

static void agg_start(struct op_fixture *f) {
    struct pr_state_options so = {.ttl_ms = 72 * 3600000LL, .total_cap = PR_STATE_SCRIPT_TOTAL_CAP};
    for (int i = 0; i < 2; i++) agg_stores[i] = pr_state_new(&so);
    fixture_start_env(f, "aggregate", pr_config_default(),
                      (struct pr_operator_env){.states = &agg_router});
}

static void agg_stop(struct op_fixture *f) {
    fixture_stop(f);
    for (int i = 0; i < 2; i++) pr_state_free(agg_stores[i]);
}

static void test_aggregate_one_person_one_day(void **state) {
    (void)state;
    struct op_fixture f;
    agg_start(&f);
    /* $800 threshold on 2025-03-01 (DOMAIN.md section 8): 300 + 300 is
     * within, the third $300 takes the day to $900 and crosses. */
    batch_begin(&f);
    struct pr_record *d1 = agg_push(&f, "A1", "Jane O'Neil", 30000);
    struct pr_record *d2 = agg_push(&f, "A2", "JANE ONEIL", 30000); /* the same person */
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_string_equal(d1->consignee_key, d2->consignee_key);
    assert_int_equal(d1->day_total_cents, 30000);
    assert_int_equal(d2->day_total_cents, 60000);
    assert_int_equal(d2->fired, 0);
    batch_begin(&f);
    struct pr_record *d3 = agg_push(&f, "A3", "Jane O'Neil", 30000);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(d3->day_total_cents, 90000);
    assert_true(d3->aggregate_over_threshold);
    assert_int_equal(d3->fired, BIT(PR_R_AGGREGATE_OVER_THRESHOLD) | BIT(PR_R_SPLIT_SHIPMENT));
    assert_int_equal(d3->reasons[PR_R_AGGREGATE_OVER_THRESHOLD].points,
                     f.rules->points[PR_R_AGGREGATE_OVER_THRESHOLD]);
    assert_true(d3->aggregate_crossing);
    char want_id[128];
    snprintf(want_id, sizeof(want_id), "AGG:%s:2025-03-01", d3->consignee_key);
    assert_int_equal(d3->aggregate_alert_id.len, strlen(want_id));
    assert_memory_equal(d3->aggregate_alert_id.ptr, want_id, strlen(want_id));
    /* The alert lists every house bill of the day. */
    char bills[256];
    snprintf(bills, sizeof(bills), "%.*s", (int)d3->day_house_bills.len, d3->day_house_bills.ptr);
    assert_non_null(strstr(bills, "A1"));
    assert_non_null(strstr(bills, "A2"));
    assert_non_null(strstr(bills, "A3"));

    /* Replays count nothing again and get the same totals and decisions:
     * A3 is still the crossing, A2 still within. */
    batch_begin(&f);
    struct pr_record *r3 = agg_push(&f, "A3", "Jane O'Neil", 30000);
    struct pr_record *r2 = agg_push(&f, "A2", "Jane O'Neil", 30000);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(r3->day_total_cents, 90000);
    assert_true(r3->aggregate_crossing);
    assert_int_equal(r2->day_total_cents, 60000);
    assert_int_equal(r2->fired, 0);
    /* A fourth declaration is over too, but not the crossing: no second
     * aggregate alert. */
    batch_begin(&f);
    struct pr_record *d4 = agg_push(&f, "A4", "Jane O'Neil", 100);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(d4->day_total_cents, 90100);
    assert_true(d4->aggregate_over_threshold);
    assert_false(d4->aggregate_crossing);

    /* The next day starts again from zero. */
    batch_begin(&f);
    struct pr_record *next = agg_push(&f, "B1", "Jane O'Neil", 30000);
    pr_parse_utc("2025-03-02T01:00:00Z", &next->decl.arrival_time);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(next->day_total_cents, 30000);

    /* A declaration alone over the threshold is not an aggregate case, and
     * after it the day is no longer a split shipment. */
    batch_begin(&f);
    struct pr_record *big = agg_push(&f, "B2", "Jane O'Neil", 90000);
    pr_parse_utc("2025-03-02T02:00:00Z", &big->decl.arrival_time);
    struct pr_record *after = agg_push(&f, "B3", "Jane O'Neil", 100);
    pr_parse_utc("2025-03-02T03:00:00Z", &after->decl.arrival_time);
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_false(pr_record_has(big, PR_R_AGGREGATE_OVER_THRESHOLD));
    assert_true(pr_record_has(after, PR_R_AGGREGATE_OVER_THRESHOLD));
    assert_false(pr_record_has(after, PR_R_SPLIT_SHIPMENT));

    /* Everything above was partition 0's: partition 1's store saw none of
     * it, and a partition not owned here stops the batch (the engine never
     * hands one over). */
    struct pr_state_stats st;
    pr_state_get_stats(agg_stores[1], &st);
    assert_int_equal(st.keys, 0);
    pr_state_get_stats(agg_stores[0], &st);
    assert_true(st.keys >= 4);
    batch_begin(&f);
    struct pr_record *other = agg_push(&f, "A1", "Jane O'Neil", 30000);
    other->partition = 1; /* the same id and day in another partition's store: counted anew */
    assert_int_equal(run(&f), PR_OP_DONE);
    assert_int_equal(other->day_total_cents, 30000);
    batch_begin(&f);
    agg_push(&f, "A9", "Jane O'Neil", 100)->partition = 2;
    assert_int_equal(run(&f), PR_OP_FATAL);
    agg_stop(&f);
}

static void test_aggregate_address_cluster(void **state) {
    (void)state;
    struct op_fixture f;
    agg_start(&f);
    int cluster = f.rules->cluster_size;
    assert_true(cluster >= 2 && cluster <= 32);
    static char names[40][24], ids[40][24];
    batch_begin(&f);
    for (int i = 0; i < cluster; i++) {
        snprintf(names[i], sizeof(names[i]), "Person %c", 'A' + i);
        snprintf(ids[i], sizeof(ids[i]), "C%d", i);
        agg_push(&f, ids[i], names[i], 1000);
    }
    /* A repeat of the first name does not add a name. */
    struct pr_record *again = agg_push(&f, "C-again", names[0], 1000);
    assert_int_equal(run(&f), PR_OP_DONE);
    for (int i = 0; i < cluster; i++) {
        const struct pr_record *rec = &f.batch.records[i];
        assert_int_equal(rec->cluster_names, i + 1);
        assert_int_equal(pr_record_has(rec, PR_R_ADDRESS_CLUSTER), i + 1 >= cluster);
    }
    assert_int_equal(again->cluster_names, cluster);
    assert_true(pr_record_has(again, PR_R_ADDRESS_CLUSTER));
    agg_stop(&f);
}

/* A degraded batch (enrich decided from cache) says so in the decision. */
static void test_encode_degraded(void **state) {
    (void)state;
    struct op_fixture e;
    fixture_start(&e, "encode");
    batch_begin(&e);
    e.batch.refdata_version = "v1";
    e.batch.degraded = true;
    struct pr_record *d = push(&e, "U1");
    d->outputs = PR_OUT_DECISION;
    assert_int_equal(e.op.ops->process(&e.op, &e.batch), PR_OP_DONE);
    assert_true(d->out_decision.len > 0);
    assert_non_null(memmem(d->out_decision.ptr, d->out_decision.len, "\x16v1+degraded", 12));
    batch_begin(&e); /* a new batch is not degraded */
    assert_false(e.batch.degraded);
    fixture_stop(&e);
}

/* Stage 1's end and stage 2's start: what stage 2 decides from the
 * intermediate record equals what one chain decides from the declaration,
 * and the record carries no raw name or address. */
static void test_repartition_round_trip(void **state) {
    (void)state;
    struct op_fixture out;
    fixture_start_env(&out, "repartition", pr_config_default(),
                      (struct pr_operator_env){.repartition_partitions = 8});
    batch_begin(&out);
    out.batch.refdata_version = "v7";
    out.batch.degraded = true;
    struct pr_record *a = agg_push(&out, "R1", "Jane O'Neil", 30000);
    a->partition = 3;
    a->offset = 41;
    pr_record_firef(&out.batch, a, PR_R_VAGUE_DESCRIPTION, 15, "line %d: \"%s\"", 1, "gift");
    pr_record_fire(&out.batch, a, PR_R_HIGH_RISK_ORIGIN, 10, "XX", 2);
    a->suspended = true;
    a->violator_severity = 2;
    a->de_minimis = PR_DM_SUSPENDED;
    struct pr_record *b = agg_push(&out, "R2", "JANE ONEIL", 100); /* the same person */
    struct pr_record *dead = push(&out, "R3");
    pr_record_dead_letter(dead, PR_DLQ_DECODE_ERROR, "bad");
    /* Blank addresses are routed by the consignee key, not all to one
     * partition: two people without an address get two keys. */
    struct pr_record *blank[2];
    for (int i = 0; i < 2; i++) {
        blank[i] = push(&out, i ? "R5" : "R4");
        blank[i]->decl.consignee.name = (struct pr_str){i ? "Bob Blank" : "Ann Blank", 9};
        blank[i]->decl.consignee.address = (struct pr_str){"  ", 2};
        static struct pr_sha256 sha;
        if (i == 0) pr_sha256_init(&sha);
        pr_record_norms(&out.batch, blank[i]);
        pr_record_consignee_key(&sha, blank[i]);
        if (i == 1) pr_sha256_free(&sha);
    }
    assert_int_equal(run(&out), PR_OP_DONE);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(blank[i]->outputs, PR_OUT_REPARTITION);
        assert_false(blank[i]->has_state_digests); /* no address-day for a blank address */
        /* The routing key is the consignee key's first 128 bits. */
        assert_memory_equal(blank[i]->out_repartition_key.ptr, blank[i]->consignee_key, 32);
    }
    assert_memory_not_equal(blank[0]->out_repartition_key.ptr, blank[1]->out_repartition_key.ptr,
                            32);
    assert_int_equal(a->outputs, PR_OUT_REPARTITION);
    assert_int_equal(dead->outputs, PR_OUT_DLQ);
    /* One person, one key, one partition. */
    assert_int_equal(a->out_repartition_key.len, 32);
    assert_memory_equal(a->out_repartition_key.ptr, b->out_repartition_key.ptr, 32);
    assert_int_equal(a->out_partition, b->out_partition);
    assert_true(a->out_partition >= 0 && a->out_partition < 8);
    assert_null(memmem(a->out_repartition.ptr, a->out_repartition.len, "Jane", 4));
    assert_null(memmem(a->out_repartition.ptr, a->out_repartition.len, "ELM", 3));
    assert_null(memmem(a->out_repartition.ptr, a->out_repartition.len, "Elm", 3));

    struct op_fixture in;
    fixture_start(&in, "repartition-source");
    batch_begin(&in);
    in.batch.source_topic = "g.repartition";
    struct pr_record *r = pr_batch_push(&in.batch);
    r->payload = (const uint8_t *)a->out_repartition.ptr;
    r->payload_len = a->out_repartition.len;
    r->partition = a->out_partition;
    struct pr_record *junk = pr_batch_push(&in.batch);
    junk->payload = (const uint8_t *)"\x01\x7f";
    junk->payload_len = 2;
    struct pr_record *cut = pr_batch_push(&in.batch);
    cut->payload = (const uint8_t *)a->out_repartition.ptr;
    cut->payload_len = a->out_repartition.len - 3;
    assert_int_equal(in.op.ops->process(&in.op, &in.batch), PR_OP_DONE);
    assert_false(pr_record_dead(r));
    assert_int_equal(junk->dlq_code, PR_DLQ_DECODE_ERROR);
    assert_int_equal(cut->dlq_code, PR_DLQ_DECODE_ERROR);
    assert_int_equal(r->decl.declaration_id.len, 2);
    assert_memory_equal(r->decl.declaration_id.ptr, "R1", 2);
    assert_string_equal(r->consignee_key, a->consignee_key);
    assert_int_equal(r->decl.arrival_time, a->decl.arrival_time);
    assert_int_equal(r->decl.value_usd_cents, 30000);
    assert_int_equal(r->fired, a->fired);
    assert_int_equal(r->reasons[PR_R_VAGUE_DESCRIPTION].points, 15);
    assert_int_equal(r->reasons[PR_R_VAGUE_DESCRIPTION].detail_len,
                     a->reasons[PR_R_VAGUE_DESCRIPTION].detail_len);
    assert_memory_equal(r->reasons[PR_R_VAGUE_DESCRIPTION].detail,
                        a->reasons[PR_R_VAGUE_DESCRIPTION].detail,
                        a->reasons[PR_R_VAGUE_DESCRIPTION].detail_len);
    assert_true(r->suspended);
    assert_int_equal(r->violator_severity, 2);
    assert_int_equal(r->de_minimis, PR_DM_SUSPENDED);
    assert_true(r->has_state_digests);
    assert_memory_equal(r->address_digest, a->address_digest, 16);
    assert_memory_equal(r->name_digest, a->name_digest, 16);
    /* The decision reports where the declaration was read, and the
     * reference data stage 1 used. */
    assert_true(r->has_origin);
    assert_string_equal(r->origin_topic, "declarations");
    assert_int_equal(r->origin_partition, 3);
    assert_int_equal(r->origin_offset, 41);
    assert_string_equal(r->origin_refdata_version, "v7");
    assert_true(r->origin_degraded);
    fixture_stop(&in);
    fixture_stop(&out);
}

int main(void) {
    pr_operators_register();
    pr_log_set_level(PR_LOG_ERROR);
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_score_lanes_and_cap),
        cmocka_unit_test(test_score_overrides_and_de_minimis),
        cmocka_unit_test(test_sample_rate_and_key),
        cmocka_unit_test(test_screen_reasons),
        cmocka_unit_test(test_aggregate_one_person_one_day),
        cmocka_unit_test(test_aggregate_address_cluster),
        cmocka_unit_test(test_encode_degraded),
        cmocka_unit_test(test_repartition_round_trip),
    };
    const struct CMUnitTest with_redis[] = {
        cmocka_unit_test(test_enrich_against_redis),
    };
    int failed = cmocka_run_group_tests_name("operators", plain, NULL, NULL);
    failed += cmocka_run_group_tests_name("operators with a real Redis", with_redis,
                                          redis_group_setup, redis_group_teardown);
    return failed;
}
