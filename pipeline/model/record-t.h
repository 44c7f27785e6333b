/*
 * record-t.h - the types that flow through the operator chain: a decoded
 * declaration, the decision being built for it, and the batch that holds
 * both for many messages at once.
 */
#ifndef PR_RECORD_T_H
#define PR_RECORD_T_H

#include "common.h"

enum pr_transport_mode {
    PR_MODE_AIR = 0,
    PR_MODE_TRUCK,
    PR_MODE_RAIL,
    PR_MODE_VESSEL,
    PR_MODE_POSTAL,
    PR_MODE_COUNT
};

struct pr_party {
    struct pr_str name, address, city, postal_code, country;
};

struct pr_line {
    struct pr_str hts, description, origin_country;
    int32_t quantity;
    int64_t value_usd_cents;
};

/* A decoded Declaration (DOMAIN.md section 3). Strings borrow from the
 * message payload; lines live in the batch arena. */
struct pr_declaration {
    struct pr_str declaration_id, filer_code, entry_type, house_bill;
    bool has_master_bill;
    struct pr_str master_bill;
    int32_t transport_mode;
    struct pr_str port_of_entry;
    int64_t arrival_time, event_time;
    struct pr_party shipper, consignee;
    bool has_seller;
    struct pr_party seller;
    bool has_marketplace;
    struct pr_str marketplace;
    int64_t value_usd_cents;
    bool has_freight;
    int64_t freight_usd_cents;
    int32_t gross_weight_grams;
    uint32_t line_count;
    struct pr_line *lines;
};

/* Reason codes of DOMAIN.md section 5, in the order decisions list them. */
enum pr_reason_code {
    PR_R_DE_MINIMIS_SUSPENDED = 0,
    PR_R_VALUE_OVER_THRESHOLD,
    PR_R_AGGREGATE_OVER_THRESHOLD,
    PR_R_SPLIT_SHIPMENT,
    PR_R_EXCLUDED_GOODS,
    PR_R_PGA_REGULATED,
    PR_R_KNOWN_VIOLATOR,
    PR_R_HTS_INVALID,
    PR_R_WATCHED_COMMODITY,
    PR_R_UNDERVALUED,
    PR_R_VAGUE_DESCRIPTION,
    PR_R_MISSING_DATA,
    PR_R_FREIGHT_VALUE_MISMATCH,
    PR_R_HIGH_RISK_ORIGIN,
    PR_R_ADDRESS_CLUSTER,
    PR_R_DATE_IMPLAUSIBLE,
    PR_R_RANDOM_COMPLIANCE,
    PR_R_COUNT
};

extern const char *const pr_reason_names[PR_R_COUNT];
int pr_reason_from_name(const char *name, size_t len); /* -1 if unknown */

enum pr_lane { PR_LANE_GREEN = 0, PR_LANE_BLUE, PR_LANE_YELLOW, PR_LANE_RED };
extern const char *const pr_lane_names[4];

enum pr_de_minimis {
    PR_DM_ELIGIBLE = 0,
    PR_DM_INELIGIBLE_VALUE,
    PR_DM_INELIGIBLE_AGGREGATE,
    PR_DM_INELIGIBLE_GOODS,
    PR_DM_SUSPENDED
};
extern const char *const pr_de_minimis_names[5];

/* Dead-letter error codes of DOMAIN.md section 5. */
enum pr_dlq_code {
    PR_DLQ_NONE = 0,
    PR_DLQ_EMPTY,
    PR_DLQ_TOO_LARGE,
    PR_DLQ_DECODE_ERROR,
    PR_DLQ_TRAILING_BYTES,
    PR_DLQ_INVALID_UTF8,
    PR_DLQ_UNKNOWN_SCHEMA,
    PR_DLQ_INVALID_ID,      /* declaration_id empty, blank, > 128 bytes or with control bytes */
    PR_DLQ_OUTPUT_REJECTED, /* the broker refused for good a record made from it (engine) */
    PR_DLQ_COUNT
};
extern const char *const pr_dlq_names[PR_DLQ_COUNT];

/* What the enrich operator learned about one line. */
struct pr_line_ref {
    uint32_t flags;        /* enum pr_hts_flag: the code's row and all its prefix rows */
    int64_t floor_cents;   /* floor of the most specific row that has one; -1: none */
    int32_t watch_points;  /* highest points of the WATCH rows that apply; -1: no WATCH */
    int32_t origin_points; /* countries.csv points of origin_country; 0 when absent */
    bool all_digits;       /* the code has only digits (prefix rows apply) */
    bool known;            /* a 10-digit row of its own exists */
};

/* Parties a violator row can match (DOMAIN.md section 6). */
enum pr_party_kind {
    PR_PARTY_SHIPPER = 0,
    PR_PARTY_SELLER,
    PR_PARTY_CONSIGNEE,
    PR_PARTY_ADDRESS,
    PR_PARTY_COUNT
};
extern const char *const pr_party_kind_names[PR_PARTY_COUNT];

/* Most bytes of evidence a reason's detail keeps. Evidence past it is cut
 * at an item boundary (", " or "; ") and counted: the encoded detail then
 * ends with " ... and N more". A declaration with 10,000 lines therefore
 * still gives a decision of bounded size. */
#define PR_REASON_DETAIL_MAX 1024

struct pr_reason {
    int32_t points;
    uint32_t detail_len;
    char *detail;     /* batch arena; never a raw name or address */
    uint32_t omitted; /* evidence items cut from detail (PR_REASON_DETAIL_MAX) */
};

/* Where a record's outputs go; set by the route operator. */
enum pr_output {
    PR_OUT_DECISION = 1u << 0,
    PR_OUT_ALERT = 1u << 1,
    PR_OUT_DLQ = 1u << 2,
    PR_OUT_AGGREGATE_ALERT = 1u << 3,
    PR_OUT_REPARTITION = 1u << 4, /* stage 1: the intermediate record (codec/exchange.h) */
};

/* One consumed message and everything the chain learns about it. */
struct pr_record {
    /* The message as consumed (borrowed from librdkafka until the batch ends). */
    const uint8_t *payload;
    size_t payload_len;
    const void *key;
    size_t key_len;
    int32_t partition;
    int64_t offset;

    /* Set by decode; a record with dlq_code != NONE skips the rest. */
    enum pr_dlq_code dlq_code;
    char dlq_detail[192];
    struct pr_declaration decl;

    /* Normal forms of the parties (DOMAIN.md section 6), computed once per
     * record by pr_record_norms() and shared by every operator. */
    struct {
        bool done;
        struct pr_str shipper_name, shipper_address, seller_name, consignee_name, consignee_address,
            delivery_address;
    } norms;

    /* Set by enrich (NULL line_refs when enrich is not in the chain). */
    struct pr_line_ref *line_refs;
    int8_t party_severity[PR_PARTY_COUNT]; /* violator match per party, 0: none */

    /* The decision being built. */
    char consignee_key[65];
    uint32_t fired; /* bit per enum pr_reason_code */
    struct pr_reason reasons[PR_R_COUNT];
    int32_t score;
    int32_t violator_severity; /* highest matched, 0 = none */
    bool random_selection;
    bool value_over_threshold;
    bool aggregate_over_threshold;
    bool suspended;
    enum pr_lane lane;
    enum pr_de_minimis de_minimis;
    int64_t decided_at;

    /* Set by aggregate (one person, one day; DOMAIN.md section 8). */
    int64_t day_total_cents;       /* consignee-day total as first counted, 0 unknown */
    bool aggregate_crossing;       /* this declaration first crossed: aggregate alert */
    struct pr_str day_house_bills; /* arena: every house bill of the day, when crossing */
    int32_t cluster_names;         /* distinct names at the delivery address that day */
    /* The keys of the keyed state, as 128-bit digests (never the raw name or
     * address): of the normalized delivery address and of the normalized
     * consignee name; set by stage 1 (pr_record_state_digests) and carried
     * to stage 2 through the repartition topic. */
    bool has_state_digests;
    uint8_t address_digest[16], name_digest[16];
    /* Stage 2 only (has_origin): where stage 1 read the declaration, and the
     * reference data it decided with; the decision reports these, not the
     * repartition topic's coordinates. */
    bool has_origin;
    bool origin_degraded;
    const char *origin_topic;
    const char *origin_refdata_version;
    int32_t origin_partition;
    int64_t origin_offset;

    /* Set by route, filled by encode. */
    uint32_t outputs;
    struct pr_str out_decision;        /* encoded Decision, arena */
    struct pr_str out_dlq;             /* encoded DeadLetter, arena */
    struct pr_str out_aggregate_alert; /* encoded aggregate alert Decision, arena */
    struct pr_str aggregate_alert_id;  /* AGG:<consignee_key>:<day>, arena */
    struct pr_str out_repartition;     /* stage 1: the intermediate record, arena */
    struct pr_str out_repartition_key; /* and its key (hex digest of the routing key) */
    int32_t out_partition;             /* and the repartition partition it goes to */

    /* Set by the engine when the broker refuses an output for a reason that
     * retrying cannot fix (enum pr_output bits; see engine.c "Refused
     * records"). */
    uint32_t refused;          /* refused since the engine last looked */
    uint32_t retried;          /* produced a second time after a refusal */
    uint32_t rejected;         /* given up: an OUTPUT_REJECTED dead letter replaces it */
    bool dlq_cut;              /* the dead letter is written with key and payload cut */
    bool rejected_sent;        /* the OUTPUT_REJECTED dead letter is produced */
    int32_t refused_err;       /* rd_kafka_resp_err_t of the first refusal */
    const char *refused_topic; /* and the output topic it came from */
};

static inline bool pr_record_dead(const struct pr_record *rec) {
    return rec->dlq_code != PR_DLQ_NONE;
}

static inline bool pr_record_has(const struct pr_record *rec, enum pr_reason_code code) {
    return (rec->fired >> code) & 1u;
}

struct pr_rules;
struct pr_policy;

/* The registry ids of our output schemas (Confluent framing); set by the
 * engine when schema_registry.url is configured. */
struct pr_output_ids {
    uint32_t decision; /* Decision under the decisions topic's subject */
    uint32_t alert;    /* Decision under the alerts topic's subject */
    uint32_t deadletter;
};

/* A batch: up to batch.size messages from one poll cycle, processed by every
 * operator in turn. Owned by the engine; operators read and write records
 * but never keep pointers into a batch past process(). */
struct pr_batch {
    struct pr_record *records;
    size_t count;
    size_t capacity;
    struct pr_arena arena;
    const char *source_topic;
    int64_t now_ms; /* decided_at for every record of the batch */
    const struct pr_rules *rules;
    const char *refdata_version;
    /* Decided without some of the state or reference data it needs (enrich
     * or aggregate in degrade mode): every decision of the batch says
     * refdata_version + "+degraded". Cleared by pr_batch_reset. */
    bool degraded;
    /* NULL: outputs are plain Avro binary; else encode frames every output
     * with these ids (pipeline/codec/wire.h). */
    const struct pr_output_ids *frame;
    /* Outputs that belong to no record (the keyed state's changelog): the
     * engine produces them with the batch's records, to the sink it named
     * (an opaque handle of the engine's), and commits the batch only once
     * they are acknowledged too. value.ptr NULL is a tombstone. */
    struct pr_batch_output *extra;
    size_t extra_count, extra_cap;
};

struct pr_batch_output {
    const void *sink;
    int32_t partition;
    struct pr_str key, value;
};

/* Appends an output to batch->extra, key and value copied into the arena. */
void pr_batch_add_output(struct pr_batch *batch, const void *sink, int32_t partition,
                         struct pr_str key, struct pr_str value);

void pr_batch_init(struct pr_batch *batch, size_t capacity);
/* Clears records and the arena for the next poll cycle. */
void pr_batch_reset(struct pr_batch *batch);
void pr_batch_destroy(struct pr_batch *batch);
/* Claims the next zeroed record slot (capacity is fixed). */
struct pr_record *pr_batch_push(struct pr_batch *batch);

/* Marks a record as dead-lettered with a code and a printf-style detail.
 * The detail must not contain raw names or addresses. */
void pr_record_dead_letter(struct pr_record *rec, enum pr_dlq_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fires a reason on a record. A reason fires at most once: firing it again
 * appends the new evidence to its detail ("; "-separated) and keeps the
 * higher of the two point values. */
void pr_record_fire(struct pr_batch *batch, struct pr_record *rec, enum pr_reason_code code,
                    int32_t points, const char *detail, size_t detail_len);
void pr_record_firef(struct pr_batch *batch, struct pr_record *rec, enum pr_reason_code code,
                     int32_t points, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
