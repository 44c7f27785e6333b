"""End to end on a real Kafka broker: 10,000 generated declarations of which
50 are malformed -> exactly 9,950 decisions with exactly the valid ids, 50
dead letters carrying the original bytes, alerts for every YELLOW/RED
decision, no duplicates; then hand-made declarations decided as the rules say."""
import collections
import json
import os

from harness import Checks, Pipeline, WORK, avro_bytes, declaration, line, load_refdata

c = Checks("e2e")
loaded = load_refdata()
c.equal(loaded.returncode, 0, "reference data loads", loaded.stderr[-500:])
p = Pipeline("e2e")
p.create_topics()
good, bad = p.gen(10000, bad=50, seed=7)
c.equal(len(good), 9950, "generator wrote 9,950 valid declarations")
c.equal(len(bad), 50, "generator wrote 50 malformed messages")

rc, summary = p.run_until_idle()
c.equal(rc, 0, "run exits 0 when idle")
c.equal(summary.get("consumed"), 10000, "run consumed 10,000 messages")

decisions = p.tail("decisions")
ids = [d["declaration_id"] for d in decisions]
c.equal(len(decisions), 9950, "exactly 9,950 decisions")
c.equal(len(set(ids)), len(ids), "no duplicate decisions")
c.check(set(ids) == set(good), "decision ids are exactly the valid inputs' ids",
        f"(missing {len(set(good) - set(ids))}, unexpected {len(set(ids) - set(good))})")
c.check(all(d["_key"] == d["declaration_id"] for d in decisions), "decisions keyed by declaration_id")
c.check(all(len(d["consignee_key"]) == 64 for d in decisions), "every decision has a consignee_key")
c.check(all(d["source_topic"] == p.topics["declarations"] for d in decisions), "source_topic set")
c.check(all(0 <= d["score"] <= 1000 for d in decisions), "scores within 0-1000")
lanes = collections.Counter(d["lane"] for d in decisions)
print("lanes:", dict(lanes))

# Source coordinates point at the declaration itself.
raw = p.tail_raw("declarations")
by_coord = {(r["_partition"], r["_offset"]): r for r in raw}
sample = decisions[:200]
c.check(all(bytes.fromhex(by_coord[(d["source_partition"], d["source_offset"])]["_key_hex"]).decode()
            == d["declaration_id"] for d in sample), "source_partition/offset locate the input")

dlq = p.tail("dlq")
c.equal(len(dlq), 50, "exactly 50 dead letters")
c.equal({d["_key"] for d in dlq}, set(bad), "dead letters keep the original keys")
expected_code = {"garbage": {"DECODE_ERROR"}, "truncated": {"DECODE_ERROR"}, "huge_length": {"DECODE_ERROR"},
                 "trailing": {"TRAILING_BYTES"}, "invalid_utf8": {"INVALID_UTF8"}, "empty": {"EMPTY"},
                 "too_large": {"TOO_LARGE"},
                 "wrong_schema": {"DECODE_ERROR", "INVALID_UTF8", "TRAILING_BYTES"}}
c.equal(set(bad.values()), set(expected_code), "every kind of malformed message was sent")
c.check(all(d["error_code"] in expected_code[bad[d["_key"]]] for d in dlq),
        "each dead letter has the error code of its kind",
        str([(bad[d["_key"]], d["error_code"]) for d in dlq if d["error_code"] not in expected_code[bad[d["_key"]]]]))
c.check(all(d["error_detail"] for d in dlq), "each dead letter has an error detail")
raw_by_key = {bytes.fromhex(r["_key_hex"]).decode(): bytes.fromhex(r["value_hex"]) for r in raw}
def kept(d):
    original = raw_by_key[d["_key"]]
    return original[:65536] if d["error_code"] == "TOO_LARGE" else original
c.check(all(avro_bytes(d["payload"]) == kept(d) for d in dlq),
        "dead letters carry the original bytes (the first 64 KiB when TOO_LARGE)")
c.check(all(len(raw_by_key[d["_key"]]) > 262144 for d in dlq if d["error_code"] == "TOO_LARGE")
        and any(d["error_code"] == "TOO_LARGE" for d in dlq), "TOO_LARGE messages are over the 256 KiB cap")

alerts = p.tail("alerts")
risky = [d for d in decisions if d["lane"] in ("YELLOW", "RED")]
c.equal(len(alerts), len(risky), "one alert per YELLOW/RED decision")
c.equal({a["declaration_id"] for a in alerts}, {d["declaration_id"] for d in risky},
        "alerts are exactly the YELLOW/RED decisions")
c.check(all(a["_key"] == a["house_bill"] for a in alerts), "alerts keyed by house_bill")

# Hand-made declarations: lanes and reasons are what the rules say.
cases = [
    (declaration("H-GREEN"), "GREEN", set()),
    (declaration("H-VALUE", value_usd_cents=95000), "BLUE", {"VALUE_OVER_THRESHOLD"}),
    (declaration("H-CN-AFTER", arrival_time=1746158460000, lines=[line(origin_country="CN")]),
     "BLUE", {"DE_MINIMIS_SUSPENDED"}),
    (declaration("H-CN-EARLY", arrival_time=1746158459999, lines=[line(origin_country="CN")]),
     "GREEN", set()),
    (declaration("H-YELLOW", lines=[line(hts="6109.10", description="gift")]), "YELLOW",
     {"HTS_INVALID", "VAGUE_DESCRIPTION"}),
    (declaration("H-RED", freight_usd_cents=900000,
                 consignee={"name": "N/A", "address": "1 Main St", "city": "X", "postal_code": "1",
                            "country": "US"},
                 lines=[line(hts="123", description="parts")]), "RED",
     {"HTS_INVALID", "VAGUE_DESCRIPTION", "MISSING_DATA", "FREIGHT_VALUE_MISMATCH"}),
]
path = os.path.join(WORK, f"{p.prefix}-hand.jsonl")
with open(path, "w") as fh:
    for d, _, _ in cases:
        fh.write(json.dumps(d) + "\n")
p.call("produce", "--input", path)
rc, summary = p.run_until_idle()
c.equal(rc, 0, "second run exits 0")
c.equal(summary.get("consumed"), len(cases), "second run consumed only the new declarations")
after = {d["declaration_id"]: d for d in p.tail("decisions")}
c.equal(len(after), 9950 + len(cases), "decisions now include the hand-made ones")
for d, lane, reasons in cases:
    got = after.get(d["declaration_id"])
    c.check(got is not None and got["lane"] == lane, f"{d['declaration_id']} lane {lane}",
            f"(got {got and got['lane']})")
    c.check(got is not None and {r["code"] for r in got["reasons"]} == reasons,
            f"{d['declaration_id']} reasons {sorted(reasons)}",
            f"(got {got and sorted(r['code'] for r in got['reasons'])})")
red = after.get("H-RED")
c.check(red is not None and red["score"] == 650, "H-RED score 150+150+200+150 = 650",
        f"(got {red and red['score']})")
c.check(red is not None and "N/A" not in json.dumps(red), "no raw consignee text in the decision")
c.done()
