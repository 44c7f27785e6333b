"""Values that bend a decision (issue 10, rows 1, 2, 4 and 5), against a real
Kafka and Redis, in at_least_once and in exactly_once (read with a
read_committed consumer, as `parcelrisk tail` does):

  (a) a negative value_usd_cents counts as 0 in the consignee-day total
      (DOMAIN.md section 8) and still gives MISSING_DATA: -10,000,000 cents
      then three $300 parcels; the third is AGGREGATE_OVER_THRESHOLD and
      SPLIT_SHIPMENT. Also the threshold boundary: $400 + $400 is within,
      one more cent is above.
  (b) INT64_MAX, INT64_MIN and several 2^62 values: the day's total
      saturates (kept as 2^53 in the state, reported as INT64_MAX with
      "(saturated)") instead of overflowing to a negative total.
  (c) declaration_id empty, only spaces, 129 bytes, with control bytes (and
      with a NUL): dead letter INVALID_ID, exact count and detail, no
      decision; 128 bytes and an inner space are decided.
  (d) a house bill with a NUL inside: the state and the aggregate alert keep
      the whole house bill.

Every expected decision is written out here from DOMAIN.md sections 5 and 8.
A flat policy of our own ($800 from the beginning, nothing suspended) lets the
declarations arrive today (event_time now, no DATE_IMPLAUSIBLE), and a rule
file without the random sample keeps the lanes exact."""
import json
import os
import time
import uuid

from harness import WORK, Checks, Pipeline, day_state, declaration, line, load_refdata, produce

c = Checks("values")
tag = uuid.uuid4().hex[:6]
RULES = os.path.join(WORK, f"values-rules-{tag}.yaml")
with open(RULES, "w") as fh:
    fh.write("version: values-nosample\nsample_rate: 0\n")
POLICY = os.path.join(WORK, f"values-policy-{tag}.yaml")
with open(POLICY, "w") as fh:
    fh.write("version: values-flat\nrows:\n  - from: beginning\n    threshold_usd_cents: 80000\n")
loaded = load_refdata()
c.equal(loaded.returncode, 0, "test reference data loads", loaded.stderr[-800:])

NOW_MS = int(time.time() * 1000)
NOON = NOW_MS // 86400000 * 86400000 + 43200000  # today 12:00 UTC: within hours of event_time
DAY = time.strftime("%Y-%m-%d", time.gmtime(NOON / 1000))
INT64_MAX = 2**63 - 1
INT64_MIN = -2**63
SAT_KEPT = "9007199254740992"  # 2^53, the saturated total as the state keeps it
THR = 80000


def person(name):
    return {"name": name, "address": f"40 Saturation Road {name}", "city": "Reno", "postal_code": "89501",
            "country": "US"}


def decl(did, who, value, house_bill=None, **over):
    d = declaration(did, consignee=person(who), value_usd_cents=value, arrival_time=NOON,
                    lines=[line(value_usd_cents=30000)], **over)
    if house_bill is not None:
        d["house_bill"] = house_bill
    return d


def agg_detail(total, saturated=False):
    sat = " (saturated)" if saturated else ""
    return f"consignee-day {DAY} total {total} cents{sat} above threshold {THR} cents"


def split_detail(total):
    return f"every declaration of consignee-day {DAY} within {THR} cents, total {total} cents"


def reasons(*items):
    return [{"code": code, "points": pts, "detail": det} for code, pts, det in items]


def check_decision(got, did, want_reasons, lane, dm, what):
    d = got.get(did)
    if d is None:
        c.check(False, f"{what}: decided", f"(no decision for {did!r})")
        return None
    rs = [{"code": r["code"], "points": r["points"], "detail": r["detail"]} for r in d["reasons"]]
    if want_reasons is not None and isinstance(want_reasons, set):
        c.equal({r["code"] for r in rs}, want_reasons, f"{what}: reasons")
    else:
        c.equal(rs, want_reasons, f"{what}: reasons, points and details")
    c.equal((d["lane"], d["de_minimis"]), (lane, dm), f"{what}: lane and de_minimis")
    want_score = min(1000, sum(r["points"] for r in rs))
    c.equal(d["score"], want_score, f"{what}: score is the sum of the points")
    return d


def day_numbers(p, key):
    """'<total>|<overs>' of the consignee-day, as the keyed state's changelog holds it."""
    state = day_state(p, key, DAY)
    return f"{state['total']}|{state['overs']}" if state else ""


def member_numbers(p, key, did):
    """'<total>|<overs>|<house bill>' remembered for one declaration of the day."""
    state = day_state(p, key, DAY)
    m = state and state["members"].get(did)
    return f"{m[0]}|{m[1]}|{m[2]}" if m else ""


def check_agg_alert(alerts, d, code, points, detail, bills, what):
    """The one aggregate alert of d's consignee-day (DOMAIN.md section 5)."""
    if d is None:
        c.check(False, f"{what}: aggregate alert (no crossing decision)")
        return
    aid = f"AGG:{d['consignee_key']}:{DAY}"
    mine = [a for a in alerts if a["declaration_id"] == aid]
    c.equal(len(mine), 1, f"{what}: exactly one aggregate alert")
    if not mine:
        return
    a = mine[0]
    c.equal(a["house_bill"], d["house_bill"], f"{what}: alert carries the crossing house bill, whole")
    c.equal(a["de_minimis"], "INELIGIBLE_AGGREGATE", f"{what}: alert de_minimis")
    c.equal(a["lane"], "YELLOW" if d["lane"] in ("GREEN", "BLUE", "YELLOW") else d["lane"],
            f"{what}: alert lane (the crossing lane, at least YELLOW)")
    c.equal([(r["code"], r["points"]) for r in a["reasons"]], [(code, points)], f"{what}: alert reason")
    text = a["reasons"][0]["detail"] if a["reasons"] else ""
    head = detail + "; house bills: "
    c.check(text.startswith(head), f"{what}: alert detail starts with the reason's detail", repr(text))
    listed = text[len(head):].split(",") if text.startswith(head) else []
    c.equal(sorted(listed), sorted(bills), f"{what}: alert lists every house bill of the day, whole")
    c.equal((a["source_partition"], a["source_offset"]), (d["source_partition"], d["source_offset"]),
            f"{what}: alert source is the crossing declaration")


def scenario(mode):
    m = mode.split("_")[0]
    extra = [f"rules.file={RULES}", f"policy.file={POLICY}", f"processing.guarantee={mode}"]
    if mode == "exactly_once":
        extra += [f"processing.instance_id=values-{tag}", "processing.transaction_interval_ms=100"]
    # One partition: the order produced is the order counted.
    p = Pipeline(f"values-{m}", partitions=1, extra_sets=extra)
    p.create_topics()
    r = f"{tag}{m[:1]}"  # ids, names and house bills of this run and mode
    A, E, B1, B2, N = (f"Amy Negative {r}", f"Eve Boundary {r}", f"Ben Extremes {r}", f"Bo Large {r}",
                       f"Nul Bills {r}")

    # (a) negative value, then three $300; the threshold boundary.
    rows_a = [decl(f"A-{r}-neg", A, -10_000_000)] + [decl(f"A-{r}-{i}", A, 30000) for i in (1, 2, 3)]
    rows_e = [decl(f"E-{r}-1", E, 40000), decl(f"E-{r}-2", E, 40000), decl(f"E-{r}-3", E, 1)]
    # (b) extremes: INT64_MAX, INT64_MIN, $300; three 2^62 and $300.
    rows_b = [decl(f"B1-{r}-max", B1, INT64_MAX), decl(f"B1-{r}-min", B1, INT64_MIN),
              decl(f"B1-{r}-300", B1, 30000)]
    rows_b += [decl(f"B2-{r}-{i}", B2, 2**62) for i in (1, 2, 3)] + [decl(f"B2-{r}-300", B2, 30000)]
    # (c) ids that cannot key a decision, and two that can.
    long_base = f"C-{r}-"
    bad_ids = [
        ("", "declaration_id is empty"),
        ("   ", "declaration_id of 3 bytes is only spaces"),
        (long_base.ljust(129, "L"), "declaration_id of 129 bytes is longer than 128 bytes"),
        (f"C-{r}-\x01-soh", f"declaration_id of {len(long_base) + 5} bytes holds 1 control byte "
                            f"(first: 0x01 at byte {len(long_base) + 1})"),
        (f"C-{r}-\x7f-del", f"declaration_id of {len(long_base) + 5} bytes holds 1 control byte "
                            f"(first: 0x7F at byte {len(long_base) + 1})"),
        (f"C-{r}-\t-tab\n", f"declaration_id of {len(long_base) + 6} bytes holds 2 control bytes "
                            f"(first: 0x09 at byte {len(long_base) + 1})"),
    ]
    good_ids = [long_base.ljust(128, "K"), f"C-{r} inner space"]
    rows_c = [declaration(i, arrival_time=NOON) for i, _ in bad_ids] + \
             [declaration(i, arrival_time=NOON) for i in good_ids]
    first = rows_a + rows_e + rows_b + rows_c
    produce(p, first)

    # (d) NUL bytes: in house bills, and in an id (JSON \u0000). Produced on
    # their own: `produce` must carry a NUL inside a string.
    hb1, hb3 = f"HB-{r}-\x00-one", f"HB-{r}-\x00\x00-three"
    rows_d = [decl(f"N-{r}-1", N, 30000, house_bill=hb1), decl(f"N-{r}-2", N, 30000),
              decl(f"N-{r}-3", N, 30000, house_bill=hb3)]
    nul_id = f"C-{r}-\x00-nul"
    nul_bad = (nul_id, f"declaration_id of {len(nul_id)} bytes holds 1 control byte "
                       f"(first: 0x00 at byte {len(long_base) + 1})")
    rows_d.append(declaration(nul_id, arrival_time=NOON))
    try:
        produce(p, rows_d)
        nul_produced = True
    except RuntimeError as e:
        nul_produced = False
        print(f"  produce refused the NUL rows: {str(e)[-300:]}")
    c.check(nul_produced, f"{mode}: `parcelrisk produce` carries a NUL inside a JSON string (\\u0000)")
    if nul_produced:
        bad_ids.append(nul_bad)

    rc, summary = p.run_until_idle()
    c.equal(rc, 0, f"{mode}: run exits 0")
    valid = len(first) - (len(bad_ids) - (1 if nul_produced else 0)) + (3 if nul_produced else 0)
    c.equal(summary.get("decisions"), valid, f"{mode}: one decision per valid declaration (summary)")
    c.equal(summary.get("dead_letters"), len(bad_ids), f"{mode}: one dead letter per invalid id (summary)")

    decisions = p.tail("decisions")
    got = {d["declaration_id"]: d for d in decisions}
    c.equal(len(decisions), valid, f"{mode}: exactly {valid} decisions in the topic")
    c.equal(len(got), valid, f"{mode}: no declaration decided twice")
    res = p.call("tail", "alerts", check=False)
    c.equal(res.returncode, 0, f"{mode}: every record in the alerts topic is a valid Decision", res.stderr[-600:])
    alerts = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    want_alerts = sum(1 for d in decisions if d["lane"] in ("YELLOW", "RED")) + (5 if nul_produced else 4)
    c.equal(len(alerts), want_alerts,
            f"{mode}: alerts hold every YELLOW/RED decision and one aggregate alert per crossed day, nothing else")

    # ---- (a)
    check_decision(got, f"A-{r}-neg", reasons(("MISSING_DATA", 200, "missing: value_usd_cents")),
                   "GREEN", "ELIGIBLE", f"{mode} (a) negative value")
    for i in (1, 2):
        check_decision(got, f"A-{r}-{i}", [], "GREEN", "ELIGIBLE", f"{mode} (a) ${300 * i} so far")
    a3 = check_decision(got, f"A-{r}-3", reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(90000)),
                                                  ("SPLIT_SHIPMENT", 300, split_detail(90000))),
                        "YELLOW", "INELIGIBLE_AGGREGATE", f"{mode} (a) third $300, total $900")
    check_agg_alert(alerts, a3, "SPLIT_SHIPMENT", 300, split_detail(90000),
                    [f"HB-A-{r}-neg", f"HB-A-{r}-1", f"HB-A-{r}-2", f"HB-A-{r}-3"], f"{mode} (a)")
    if a3:
        c.equal(day_numbers(p, a3["consignee_key"]), "90000|0", f"{mode} (a) state total 90000, the negative as 0")
    check_decision(got, f"E-{r}-2", [], "GREEN", "ELIGIBLE", f"{mode} (a) boundary: exactly $800 is within")
    e3 = check_decision(got, f"E-{r}-3", reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(80001)),
                                                 ("SPLIT_SHIPMENT", 300, split_detail(80001))),
                        "YELLOW", "INELIGIBLE_AGGREGATE", f"{mode} (a) boundary: one cent more is above")
    check_agg_alert(alerts, e3, "SPLIT_SHIPMENT", 300, split_detail(80001), [f"HB-E-{r}-{i}" for i in (1, 2, 3)],
                    f"{mode} (a) boundary")

    # ---- (b)
    b1max = check_decision(got, f"B1-{r}-max", {"VALUE_OVER_THRESHOLD"}, "BLUE", "INELIGIBLE_VALUE",
                           f"{mode} (b) INT64_MAX")
    b1min = check_decision(got, f"B1-{r}-min",
                           reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(INT64_MAX, True)),
                                   ("MISSING_DATA", 200, "missing: value_usd_cents")),
                           "YELLOW", "INELIGIBLE_AGGREGATE", f"{mode} (b) INT64_MIN after INT64_MAX")
    check_decision(got, f"B1-{r}-300", reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(INT64_MAX, True))),
                   "BLUE", "INELIGIBLE_AGGREGATE", f"{mode} (b) $300 after the extremes")
    check_agg_alert(alerts, b1min, "AGGREGATE_OVER_THRESHOLD", 200, agg_detail(INT64_MAX, True),
                    [f"HB-B1-{r}-max", f"HB-B1-{r}-min", f"HB-B1-{r}-300"], f"{mode} (b) extremes")
    if b1max:
        c.equal(day_numbers(p, b1max["consignee_key"]), f"{SAT_KEPT}|1", f"{mode} (b) state saturated, one over")
    for i in (1, 2, 3):
        check_decision(got, f"B2-{r}-{i}", {"VALUE_OVER_THRESHOLD"}, "BLUE", "INELIGIBLE_VALUE",
                       f"{mode} (b) 2^62 #{i}")
    b2 = check_decision(got, f"B2-{r}-300", reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(INT64_MAX, True))),
                        "BLUE", "INELIGIBLE_AGGREGATE", f"{mode} (b) $300 after three 2^62")
    check_agg_alert(alerts, b2, "AGGREGATE_OVER_THRESHOLD", 200, agg_detail(INT64_MAX, True),
                    [f"HB-B2-{r}-{i}" for i in (1, 2, 3)] + [f"HB-B2-{r}-300"], f"{mode} (b) 3 x 2^62")
    if b2:
        c.equal(day_numbers(p, b2["consignee_key"]), f"{SAT_KEPT}|3", f"{mode} (b) state saturated, three over")

    # ---- (c)
    dlq = p.tail("dlq")
    raw = {r_["_offset"]: bytes.fromhex(r_["value_hex"]) for r_ in p.tail_raw("declarations")}
    c.equal(len(dlq), len(bad_ids), f"{mode} (c) exactly {len(bad_ids)} dead letters")
    c.equal([x["error_code"] for x in dlq], ["INVALID_ID"] * len(bad_ids), f"{mode} (c) every one INVALID_ID")
    offsets = {}
    for k, row in enumerate(first + (rows_d if nul_produced else [])):
        offsets.setdefault(row["declaration_id"], k)
    by_offset = {x["source_offset"]: x for x in dlq}
    for bad, want in bad_ids:
        off = offsets[bad]
        x = by_offset.get(off)
        c.equal(x and x["error_detail"], want, f"{mode} (c) {bad!r}: detail")
        c.check(x is not None and x["payload"].encode("latin-1") == raw.get(off),
                f"{mode} (c) {bad!r}: the dead letter keeps the message as received")
        c.check(bad not in got, f"{mode} (c) {bad!r}: no decision")
    for i in good_ids:
        check_decision(got, i, [], "GREEN", "ELIGIBLE", f"{mode} (c) valid id {i[:12]!r}... ({len(i)} bytes)")

    # ---- (d)
    if nul_produced:
        n1 = check_decision(got, f"N-{r}-1", [], "GREEN", "ELIGIBLE", f"{mode} (d) NUL house bill #1")
        c.equal(n1 and n1["house_bill"], hb1, f"{mode} (d) the decision keeps the whole house bill")
        n3 = check_decision(got, f"N-{r}-3", reasons(("AGGREGATE_OVER_THRESHOLD", 200, agg_detail(90000)),
                                                      ("SPLIT_SHIPMENT", 300, split_detail(90000))),
                            "YELLOW", "INELIGIBLE_AGGREGATE", f"{mode} (d) third, NUL house bill")
        check_agg_alert(alerts, n3, "SPLIT_SHIPMENT", 300, split_detail(90000), [hb1, f"HB-N-{r}-2", hb3],
                        f"{mode} (d) NUL house bills")
        if n1:
            c.equal(member_numbers(p, n1["consignee_key"], f"N-{r}-1"), f"30000|0|{hb1}",
                    f"{mode} (d) the state keeps the whole house bill")
        yellow = [a for a in alerts if a["declaration_id"] == f"N-{r}-3"]
        c.equal(len(yellow), 1, f"{mode} (d) the YELLOW decision is an alert too")
        c.equal(yellow and yellow[0]["house_bill"], hb3, f"{mode} (d) alert keeps the whole house bill")


scenario("at_least_once")
scenario("exactly_once")
c.done()
