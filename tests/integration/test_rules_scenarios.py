"""The full chain (enrich, policy, screen, aggregate, ...) against a real
Kafka and Redis, table-driven: at least one declaration per reason code, and
combinations, each with the exact set of reasons and the lane; one person one
day with three spellings of one consignee, replay, the next day, and two
parcelrisk processes in one group sharing the totals."""
import os
import signal
import time
import uuid

from harness import (WORK, Checks, Pipeline, day_state, declaration, line, load_refdata, produce,
                     stop, wait_for)

c = Checks("rules")
# The shipped rules without the 1% random sample, so that the expected reasons and
# lanes below are exact whatever the (random) declaration ids of this run.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(WORK, f"rules-nosample-{uuid.uuid4().hex[:6]}.yaml")
with open(os.path.join(ROOT, "schemas", "rules.yaml")) as fh:
    text = fh.read()
assert "sample_rate: 0.01" in text and "version: default-1" in text
with open(RULES, "w") as fh:
    fh.write(text.replace("sample_rate: 0.01", "sample_rate: 0").replace("version: default-1", "version: nosample"))
loaded = load_refdata()
c.equal(loaded.returncode, 0, "test reference data loads", loaded.stderr[-800:])
run_id = uuid.uuid4().hex[:6]
DAY = 1740830400000  # 2025-03-01T12:00:00Z


def day_total(pipeline, consignee_key, day):
    """The consignee-day total in cents, as the keyed state's changelog holds it."""
    state = day_state(pipeline, consignee_key, day)
    return str(state[0]) if state else ""


def consignee(name, address="1234 Elm Street, Apt. 5B", city="Springfield", postal="62701"):
    return {"name": name, "address": address, "city": city, "postal_code": postal, "country": "US"}


cases = [
    # id, declaration overrides, expected reasons, lane, de_minimis
    ("clean", {}, set(), "GREEN", "ELIGIBLE"),
    ("excise", {"lines": [line(hts="2402200000", description="Cigarettes")]},
     {"EXCLUDED_GOODS"}, "YELLOW", "INELIGIBLE_GOODS"),
    ("adcvd", {"lines": [line(hts="7306301000", description="Welded steel tube")]},
     {"EXCLUDED_GOODS"}, "YELLOW", "INELIGIBLE_GOODS"),
    ("pga", {"lines": [line(hts="3004909290", description="Vitamin tablets")]},
     {"PGA_REGULATED"}, "GREEN", "ELIGIBLE"),
    ("violator-shipper", {"shipper": {"name": "SHENZHEN BRIGHT TRADING", "address": "1 Rd",
                                      "city": "Shenzhen", "postal_code": "518000", "country": "CN"}},
     {"KNOWN_VIOLATOR"}, "RED", "ELIGIBLE"),
    ("violator-wrong-country", {"shipper": {"name": "Shenzhen Bright Trading Ltd", "address": "1 Rd",
                                            "city": "X", "postal_code": "1", "country": "VN"}},
     set(), "GREEN", "ELIGIBLE"),
    ("violator-seller", {"seller": {"name": "QuickDeal Store 7", "address": "Online", "city": "",
                                    "postal_code": "", "country": "CN"}, "marketplace": "Temu"},
     {"KNOWN_VIOLATOR"}, "GREEN", "ELIGIBLE"),
    ("violator-consignee", {"consignee": consignee("Northgate Reship Services, Inc", "9 Dock Rd")},
     {"KNOWN_VIOLATOR"}, "YELLOW", "ELIGIBLE"),
    ("violator-address", {"consignee": consignee("Pat Doe " + run_id, "77 Harbor Blvd., Ste 9", "Miami")},
     {"KNOWN_VIOLATOR"}, "YELLOW", "ELIGIBLE"),
    ("hts-unknown", {"lines": [line(hts="6109100099")]}, {"HTS_INVALID"}, "GREEN", "ELIGIBLE"),
    ("hts-format", {"lines": [line(hts="6109-10")]}, {"HTS_INVALID"}, "GREEN", "ELIGIBLE"),
    ("watched", {"lines": [line(hts="9102110000", description="Wrist watch", value_usd_cents=9000, quantity=1)]},
     {"WATCHED_COMMODITY"}, "GREEN", "ELIGIBLE"),
    ("watched-points", {"lines": [line(hts="6402993165", description="Sneakers", quantity=1, value_usd_cents=5000)]},
     {"WATCHED_COMMODITY"}, "YELLOW", "ELIGIBLE"),
    ("undervalued", {"lines": [line(hts="6402993165", description="Sneakers", quantity=2, value_usd_cents=1999)]},
     {"WATCHED_COMMODITY", "UNDERVALUED"}, "YELLOW", "ELIGIBLE"),
    ("not-undervalued", {"lines": [line(hts="6402993165", description="Sneakers", quantity=2, value_usd_cents=2000)]},
     {"WATCHED_COMMODITY"}, "YELLOW", "ELIGIBLE"),
    ("vague", {"lines": [line(description="Gift")]}, {"VAGUE_DESCRIPTION"}, "GREEN", "ELIGIBLE"),
    ("missing", {"house_bill": " "}, {"MISSING_DATA"}, "GREEN", "ELIGIBLE"),
    ("freight", {"freight_usd_cents": 40000}, {"FREIGHT_VALUE_MISMATCH"}, "GREEN", "ELIGIBLE"),
    ("high-risk-origin", {"lines": [line(origin_country="KP")]}, {"HIGH_RISK_ORIGIN"}, "YELLOW", "ELIGIBLE"),
    ("value-over", {"value_usd_cents": 85000}, {"VALUE_OVER_THRESHOLD"}, "BLUE", "INELIGIBLE_VALUE"),
    ("suspended", {"arrival_time": 1757000000000, "lines": [line(origin_country="CN")]},
     {"DE_MINIMIS_SUSPENDED"}, "BLUE", "SUSPENDED"),
    ("combo-red", {"lines": [line(hts="2402200000", description="gift", origin_country="IR")],
                   "freight_usd_cents": 90000},
     {"EXCLUDED_GOODS", "VAGUE_DESCRIPTION", "HIGH_RISK_ORIGIN", "FREIGHT_VALUE_MISMATCH"}, "RED",
     "INELIGIBLE_GOODS"),
    ("excluded-and-suspended", {"arrival_time": 1757000000000, "lines": [line(hts="2402200000", description="Cigarettes")]},
     {"EXCLUDED_GOODS", "DE_MINIMIS_SUSPENDED"}, "YELLOW", "SUSPENDED"),
]
points = {"watched": 250, "watched-points": 350, "high-risk-origin": 400, "violator-shipper": 700,
          "combo-red": 300 + 150 + 300 + 150}

p = Pipeline("rules", partitions=4, extra_sets=[f"rules.file={RULES}"])
p.create_topics()
decls = []
for cid, over, _, _, _ in cases:
    did = f"R-{run_id}-{cid}"
    decls.append(declaration(did, **over))
# Address cluster: 5 distinct names at one delivery address on one day.
for i in range(5):
    decls.append(declaration(f"R-{run_id}-cluster-{i}",
                             consignee=consignee(f"Resident {i} {run_id}", f"500 Cluster Road {run_id}", "Reno")))
produce(p, decls)
rc, summary = p.run_until_idle()
c.equal(rc, 0, "run exits 0")
c.equal(summary.get("decisions"), len(decls), "one decision per declaration")
enrich = summary.get("operators", {}).get("enrich", {})
c.check(enrich.get("batches", 0) > 0 and enrich.get("round_trips", 99) <= enrich.get("batches"),
        "enrich: at most one Redis round trip per batch", str(enrich))
agg = summary.get("operators", {}).get("aggregate", {})
c.check(agg.get("round_trips", 99) <= agg.get("batches", 0), "aggregate: one round trip per batch", str(agg))

got = {d["declaration_id"]: d for d in p.tail("decisions")}
for cid, _, reasons, lane, dm in cases:
    d = got.get(f"R-{run_id}-{cid}")
    codes = {r["code"] for r in d["reasons"]} if d else None
    c.check(d is not None and codes == reasons and d["lane"] == lane and d["de_minimis"] == dm,
            f"{cid}: {sorted(reasons)} {lane} {dm}",
            f"(got {d and sorted(codes)} {d and d['lane']} {d and d['de_minimis']})")
    if d and cid in points:
        c.equal(d["score"], points[cid], f"{cid}: score")
    if d:
        c.check(d["refdata_version"] not in ("", "none"), f"{cid}: refdata_version recorded")
d = got.get(f"R-{run_id}-violator-shipper")
detail = d and next(r["detail"] for r in d["reasons"] if r["code"] == "KNOWN_VIOLATOR")
c.check(detail is not None and "shipper" in detail and "severity 3" in detail and "BRIGHT" not in detail.upper(),
        "KNOWN_VIOLATOR detail names the party and list, not the name", repr(detail))
cluster = [got.get(f"R-{run_id}-cluster-{i}") for i in range(5)]
c.check(all(x is not None for x in cluster), "cluster declarations decided")
fired = sorted(i for i, x in enumerate(cluster) if x and "ADDRESS_CLUSTER" in {r["code"] for r in x["reasons"]})
c.equal(len(fired), 1, "ADDRESS_CLUSTER fires once, for the fifth distinct name")

# ---------------------------------------------------------------- one person, one day
spellings = [consignee(f"Maria Lopez-{run_id}", "88 Oak Street, Apt. 2", "Denver", "80202"),
             consignee(f"MARIA LOPEZ {run_id}", "88 OAK ST APT 2", "DENVER", "80202"),
             consignee(f"maria  lopez {run_id}.", "88 Oak St., Apt 2", "denver", "80-202")]
day_decls = [declaration(f"D-{run_id}-{i}", consignee=spellings[i], value_usd_cents=30000,
                         lines=[line(value_usd_cents=30000)], arrival_time=DAY + i * 3600000)
             for i in range(3)]
produce(p, day_decls[:2])
p.run_until_idle()
produce(p, day_decls[2:])
p.run_until_idle()
got = {d["declaration_id"]: d for d in p.tail("decisions")}
keys = {got[f"D-{run_id}-{i}"]["consignee_key"] for i in range(3) if f"D-{run_id}-{i}" in got}
c.equal(len(keys), 1, "three spellings give one consignee_key")
third = got.get(f"D-{run_id}-2")
codes = {r["code"] for r in third["reasons"]} if third else set()
c.equal(codes, {"AGGREGATE_OVER_THRESHOLD", "SPLIT_SHIPMENT"}, "the third $300 fires AGGREGATE and SPLIT")
c.equal(third and third["de_minimis"], "INELIGIBLE_AGGREGATE", "the third is INELIGIBLE_AGGREGATE")
c.equal(third and third["score"], 500, "AGGREGATE 200 + SPLIT 300")
first_two = [{r["code"] for r in got[f"D-{run_id}-{i}"]["reasons"]} for i in range(2)]
c.equal(first_two, [set(), set()], "the first two are within the threshold")
alerts = [a for a in p.tail("alerts") if a["declaration_id"].startswith("AGG:")]
key = third and third["consignee_key"]
mine = [a for a in alerts if a["declaration_id"] == f"AGG:{key}:2025-03-01"]
c.equal(len(mine), 1, "one aggregate alert for the consignee-day")
if mine:
    a = mine[0]
    c.equal(a["de_minimis"], "INELIGIBLE_AGGREGATE", "aggregate alert de_minimis")
    c.check(a["lane"] in ("YELLOW", "RED"), "aggregate alert at least YELLOW")
    c.equal([r["code"] for r in a["reasons"]], ["SPLIT_SHIPMENT"], "aggregate alert carries SPLIT_SHIPMENT")
    c.check(all(f"HB-D-{run_id}-{i}" in a["reasons"][0]["detail"] for i in range(3)),
            "aggregate alert lists every house bill of the day", a["reasons"][0]["detail"])
    c.equal(a["house_bill"], f"HB-D-{run_id}-2", "aggregate alert keyed by the crossing house bill")
total_before = day_total(p, key, "2025-03-01")
c.equal(total_before, "90000", "consignee-day total is 90000 cents")
# Kept 72 h after its last update by processing time (state.ttl_hours; the
# expiry itself is tested in tests/test_state.c): the update time the state
# keeps is when it was counted, not the declaration's arrival.
state = day_state(p, key, "2025-03-01")
age = time.time() * 1000 - state[1] if state else -1
c.check(0 <= age < 600000, "the day's last update is processing time (its 72 h run from now)", str(age))

# Replay the same declaration: total unchanged, same decision.
produce(p, day_decls[2:])
p.run_until_idle()
c.equal(day_total(p, key, "2025-03-01"), total_before, "a replayed declaration does not count twice")
again = [d for d in p.tail("decisions") if d["declaration_id"] == f"D-{run_id}-2"]
c.equal(len(again), 2, "the replay is decided again (not silently dropped)")
c.check(len(again) == 2 and {r["code"] for r in again[1]["reasons"]} == codes and again[1]["score"] == again[0]["score"],
        "the replay gets the same decision")
# A day later the total starts again.
next_day = declaration(f"D-{run_id}-next", consignee=spellings[0], value_usd_cents=30000,
                       lines=[line(value_usd_cents=30000)], arrival_time=DAY + 86400000)
produce(p, [next_day])
p.run_until_idle()
nd = [d for d in p.tail("decisions") if d["declaration_id"] == f"D-{run_id}-next"]
c.check(len(nd) == 1 and nd[0]["reasons"] == [], "the next day starts from zero", str(nd and nd[0]["reasons"]))
c.equal(day_total(p, key, "2025-03-02"), "30000", "next day's total is its own")

# ------------------------------------------------- two processes, one group, shared totals
q = Pipeline("rules2", partitions=8, extra_sets=[f"rules.file={RULES}"])
q.create_topics()
procs = [q.start(), q.start()]
time.sleep(4)  # both join the group
shared = [declaration(f"S-{run_id}-{i}", consignee=consignee(f"Sam Shared {run_id}"), value_usd_cents=10000,
                      lines=[line(value_usd_cents=10000)]) for i in range(12)]
for d in shared:  # one at a time, so the order of counting is the order produced
    produce(q, [d])
    time.sleep(0.3)
ok = wait_for(lambda: len(q.tail("decisions")) >= 12, 60, step=1)
for proc in procs:
    stop(proc, signal.SIGTERM)
summaries = [q.summary(proc) for proc in procs]
c.check(all(s.get("consumed", 0) > 0 for s in summaries), "both processes decided some of them",
        str([s.get("consumed") for s in summaries]))
got = [d for d in q.tail("decisions") if d["declaration_id"].startswith(f"S-{run_id}-")]
c.equal(len(got), 12, "twelve decisions")
agg_fired = [d for d in got if "AGGREGATE_OVER_THRESHOLD" in {r["code"] for r in d["reasons"]}]
c.equal(len(agg_fired), 4, "the $100 parcels that took the shared total to $900..$1200 fire AGGREGATE")
key2 = got[0]["consignee_key"] if got else ""
c.equal(day_total(q, key2, "2025-03-01"), "120000", "shared total is 120000 cents")
agg_alerts = [a for a in q.tail("alerts") if a["declaration_id"] == f"AGG:{key2}:2025-03-01"]
c.equal(len(agg_alerts), 1, "exactly one aggregate alert across both processes")
c.done()
