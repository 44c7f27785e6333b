"""parcelrisk whatif (issue 15) against the real Kafka and Redis of the fixture.

Generated declarations on a one-partition topic (so that `run` and the replay
count one person one day in the same order), decided once by `run` with fresh
consignee-day state (arrival days no other test uses):

- identical candidate and baseline files: the lane matrix is diagonal,
  nothing is listed, and the replay's baseline decision of every declaration
  equals the decision `run` wrote (lane, score, every reason with its points);
- a candidate doubling UNDERVALUED: the changed declarations are exactly those
  this test computes from `run`'s decisions (the reason fired and the new sum
  crossed a lane threshold), with both lanes;
- twice the same replay: report.json and changed.jsonl byte-identical;
- nothing written: the decisions, alerts and DLQ topics hold the same records
  and Redis had no write (rdb_changes_since_last_save, the key set) afterwards;
- --by timestamp: reading starts at offsetsForTimes(T1) and stops at T2;
- May 2025 with and without the 2025-05-02 CN/HK suspension row: on the
  generated data DE_MINIMIS_SUSPENDED fires in the baseline exactly as often
  as in `run`'s decisions and never in the candidate; on hand-made CN, HK and
  VN parcels the lane moves are exactly those computed here (BLUE to GREEN for
  CN/HK within the threshold, a CN split shipment that the suspension had
  hidden, nothing before the instant or for VN).
"""
import collections
import json
import os
import subprocess
import uuid

from harness import (BIN, REDIS, WORK, Checks, Pipeline, declaration, line, produce, redis_cli)

c = Checks("whatif")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "schemas", "rules.yaml")
POLICY = os.path.join(ROOT, "schemas", "policy-us.yaml")
tag = uuid.uuid4().hex[:6]


def write(name, text):
    path = os.path.join(WORK, f"whatif-{tag}-{name}")
    with open(path, "w") as fh:
        fh.write(text)
    return path


rules_text = open(RULES).read()
policy_text = open(POLICY).read()
assert "  UNDERVALUED: 200\n" in rules_text and "version: default-1" in rules_text
DOUBLED = write("undervalued-x2.yaml", rules_text.replace("  UNDERVALUED: 200\n", "  UNDERVALUED: 400\n")
                .replace("version: default-1", "version: undervalued-x2"))
NOSAMPLE = write("nosample.yaml", rules_text.replace("sample_rate: 0.01", "sample_rate: 0")
                 .replace("version: default-1", "version: nosample"))
suspension_row = ("  - from: 2025-05-02T04:01:00Z          # 00:01 US Eastern: suspended for China and Hong Kong\n"
                  "    threshold_usd_cents: 80000\n    suspended: [CN, HK]\n")
assert suspension_row in policy_text
NO_CNHK = write("policy-no-cnhk.yaml", policy_text.replace(suspension_row, "")
                .replace("version: us-2025-08", "version: us-no-cnhk"))

# The example reference data (richer than the harness's small set: floors,
# watch rows, violators), loaded as the current version.
res = subprocess.run([BIN, "refdata", "load", "--hts", f"{ROOT}/ops/refdata/hts.csv", "--violators",
                      f"{ROOT}/ops/refdata/violators.csv", "--countries", f"{ROOT}/ops/refdata/countries.csv",
                      "--redis", REDIS, "--quiet"],
                     capture_output=True, text=True, timeout=300)
c.equal(res.returncode, 0, "example reference data loads", res.stderr[-500:])
refdata_version = redis_cli("GET", "pr:ref:current")

p = Pipeline("whatif", partitions=1, extra_sets=[f"rules.file={RULES}", f"policy.file={POLICY}"])
p.create_topics()
# Arrivals 2025-04-28 .. 2025-06-01: no other test generates these days.
N, BAD = 6000, 12
good, bad_keys = p.gen(N, bad=BAD, seed=15015, extra=("--start", "2025-04-28", "--days", "35", "--consignees", "300"))
c.equal(len(good) + len(bad_keys), N, "gen wrote the declarations")
rc, summary = p.run_until_idle()
c.equal(rc, 0, "run decides the window")
decisions = {d["declaration_id"]: d for d in p.tail("decisions")}
c.equal(len(decisions), len(good), "one decision per good declaration")


def whatif(pipeline, out, *args, check=True):
    res = pipeline.call("whatif", "--out", os.path.join(WORK, f"whatif-{tag}-{out}"), "--quiet", *args,
                        check=False)
    if check:
        c.equal(res.returncode, 0, f"whatif {out} exits 0", res.stderr[-1500:])
    d = os.path.join(WORK, f"whatif-{tag}-{out}")
    report = {}
    if res.returncode == 0:
        with open(os.path.join(d, "report.json")) as fh:
            report = json.load(fh)
    return res, d, report


def jsonl(path):
    with open(path) as fh:
        return [json.loads(x) for x in fh if x.strip()]


def points(reasons):
    return sorted((r["code"], r["points"]) for r in reasons)


LANES = ("GREEN", "BLUE", "YELLOW", "RED")

# ---------------------------------------------------------------- before
kafka_before = {k: len(p.tail(k)) for k in ("decisions", "alerts", "dlq")}
redis_keys_before = sorted(redis_cli("--scan", "--pattern", "pr:*").split("\n"))
changes_before = redis_cli("INFO", "persistence")
changes_before = [x for x in changes_before.splitlines() if x.startswith("rdb_changes_since_last_save")]

# ------------------------------------------------------- identical files
WINDOW = ("--from", "2025-04-28", "--to", "2025-06-02")
all0 = os.path.join(WORK, f"whatif-{tag}-all0.jsonl")
res, out0, r0 = whatif(p, "same", *WINDOW, "--rules", RULES, "--all", all0)
if r0:
    m = r0["lane_transitions"]["counts"]
    off = sum(m[a][b] for a in LANES for b in LANES if a != b)
    c.equal(off, 0, "identical files: the lane matrix is diagonal")
    c.equal(sum(m[a][a] for a in LANES), len(good), "identical files: every good declaration decided")
    c.equal(r0["changed"]["count"], 0, "identical files: nothing changed")
    c.equal(os.path.getsize(os.path.join(out0, "changed.jsonl")), 0, "identical files: changed.jsonl is empty")
    c.equal(sum(r0["input"]["undecodable"].values()), BAD, "undecodable messages counted as such")
    c.equal(r0["input"]["messages_read"], N, "every message of the topic read")
    c.equal(r0["refdata"]["version"], refdata_version, "the report names the reference-data version in force")
    c.equal(r0["baseline"]["ruleset_version"], "default-1/us-2025-08", "the report names the baseline ruleset")
    md = open(os.path.join(out0, "report.md")).read()
    c.check("## Lane transitions" in md and "0 declarations" in md, "report.md written")
    # The replay's baseline is what `run` decided, declaration by declaration.
    rows = jsonl(all0)
    c.equal(len(rows), len(good), "--all lists every decided declaration")
    mismatch = [x["declaration_id"] for x in rows
                if x["declaration_id"] not in decisions
                or x["baseline"]["lane"] != decisions[x["declaration_id"]]["lane"]
                or x["baseline"]["score"] != decisions[x["declaration_id"]]["score"]
                or points(x["baseline"]["reasons"]) != points(decisions[x["declaration_id"]]["reasons"])]
    c.equal(mismatch[:5], [], f"baseline equals run's decision for all {len(rows)} declarations")
    fired = collections.Counter(r["code"] for d in decisions.values() for r in d["reasons"])
    c.equal({k: v["baseline"] for k, v in r0["reasons"].items() if v["baseline"]}, dict(fired),
            "reason counts equal those of run's decisions")
    for code in ("AGGREGATE_OVER_THRESHOLD", "SPLIT_SHIPMENT", "UNDERVALUED", "DE_MINIMIS_SUSPENDED"):
        c.check(fired[code] > 0, f"the generated data fires {code} ({fired[code]})")


# ------------------------------------------- UNDERVALUED doubled (200 -> 400)
def lane_of(score, d):
    if score >= 600 or any(r["code"] == "KNOWN_VIOLATOR" and r["points"] >= 700 for r in d["reasons"]):
        return "RED"
    if score >= 300 or d["random_selection"]:
        return "YELLOW"
    return "BLUE" if d["de_minimis"] != "ELIGIBLE" else "GREEN"


expected = {}
for did, d in decisions.items():
    c_lane_before = lane_of(min(1000, sum(r["points"] for r in d["reasons"])), d)
    if c_lane_before != d["lane"]:
        c.check(False, f"the test's lane rule reproduces run's lane for {did}")
    if not any(r["code"] == "UNDERVALUED" for r in d["reasons"]):
        continue
    new = lane_of(min(1000, sum(r["points"] for r in d["reasons"]) + 200), d)
    if new != d["lane"]:
        expected[did] = (d["lane"], new)
c.check(len(expected) > 0, f"doubling UNDERVALUED moves some declarations ({len(expected)})")
runs = []
for attempt in ("a", "b"):
    res, out, rep = whatif(p, f"double-{attempt}", *WINDOW, "--rules", DOUBLED)
    runs.append((out, rep))
out1, r1 = runs[0]
if r1:
    changed = {x["declaration_id"]: x for x in jsonl(os.path.join(out1, "changed.jsonl"))}
    got = {k: (v["baseline"]["lane"], v["candidate"]["lane"]) for k, v in changed.items()}
    c.equal(len(got), len(expected), "doubled: as many changed as computed")
    c.equal(sorted(set(got) ^ set(expected))[:5], [], "doubled: exactly the declarations computed")
    c.equal(sum(1 for k in got if got[k] != expected.get(k)), 0, "doubled: both lanes as computed")
    c.equal(r1["changed"]["count"], len(expected), "doubled: the report counts them")
    moved = collections.Counter(expected.values())
    m = r1["lane_transitions"]["counts"]
    c.equal({(a, b): m[a][b] for a in LANES for b in LANES if a != b and m[a][b]}, dict(moved),
            "doubled: the off-diagonal cells are the computed moves")
    c.equal(r1["reasons"]["UNDERVALUED"]["baseline"], r1["reasons"]["UNDERVALUED"]["candidate"],
            "doubled: UNDERVALUED fires as often (only its points changed)")
    c.equal(r1["candidate"]["ruleset_version"], "undervalued-x2/us-2025-08", "doubled: candidate ruleset named")
    sample = next(iter(changed.values()))
    c.check(set(sample) == {"arrival_day", "baseline", "candidate", "declaration_id", "house_bill", "port_of_entry",
                            "source_offset", "source_partition"}, "changed.jsonl: ids, house bill, lanes, reasons only")
    c.equal(sample["house_bill"], decisions[sample["declaration_id"]]["house_bill"], "changed.jsonl: the house bill")
    day_red = sum(b["change"]["RED"] for b in r1["by_day"])
    c.equal(day_red, sum(1 for v in expected.values() if v[1] == "RED") - sum(1 for v in expected.values() if v[0] == "RED"),
            "doubled: RED change per day adds up")
    c.equal(sum(b["change"]["YELLOW"] for b in r1["by_port"]), sum(b["change"]["YELLOW"] for b in r1["by_day"]),
            "doubled: YELLOW change per port and per day agree")
    md = open(os.path.join(out1, "report.md")).read()
    listed = [row.split("|")[1].strip() for row in md.split("## Declarations whose lane changed")[1].splitlines()
              if row.startswith("| ") and not row.startswith("| declaration_id")]
    c.equal(len(listed), min(100, len(expected)), "report.md lists the first 100 changed declarations")
    c.check(all(x in expected for x in listed), "report.md lists changed declaration ids only")
    c.check(os.path.exists(os.path.join(out1, "workload_by_day.png")) or "gnuplot" not in
            subprocess.run(["sh", "-c", "command -v gnuplot"], capture_output=True, text=True).stdout,
            "the workload chart is drawn (gnuplot installed)")
    # Deterministic: the same window and files, byte-identical report.
    out2 = runs[1][0]
    for name in ("report.json", "changed.jsonl", "report.md"):
        same = open(os.path.join(out1, name), "rb").read() == open(os.path.join(out2, name), "rb").read()
        c.check(same, f"deterministic: {name} byte-identical on a second run")

# ---------------------------------------------- the policy timeline (May 2025)
MAY = ("--from", "2025-05-01", "--to", "2025-06-01")
res, out3, r3 = whatif(p, "may", *MAY, "--policy", NO_CNHK)
if r3:
    day_of = {x["declaration_id"]: x["arrival_day"] for x in jsonl(all0)} if r0 else {}
    in_may = [d for did, d in decisions.items() if day_of.get(did, "").startswith("2025-05")]
    c.equal(r3["input"]["decided"], len(in_may), "May: the declarations arriving in May decided")
    suspended = sum(1 for d in in_may if any(r["code"] == "DE_MINIMIS_SUSPENDED" for r in d["reasons"]))
    c.check(suspended > 0, f"May: run suspended CN/HK parcels ({suspended})")
    c.equal(r3["reasons"]["DE_MINIMIS_SUSPENDED"]["baseline"], suspended,
            "May: the baseline suspends exactly the parcels run suspended")
    c.equal(r3["reasons"]["DE_MINIMIS_SUSPENDED"]["candidate"], 0, "May: without the row nothing is suspended")
    c.check(r3["lane_transitions"]["counts"]["BLUE"]["GREEN"] > 0, "May: CN/HK parcels shift from BLUE to GREEN")
    moved_from_blue = [x for x in jsonl(os.path.join(out3, "changed.jsonl")) if x["baseline"]["lane"] == "BLUE"]
    c.check(all(any(r["code"] == "DE_MINIMIS_SUSPENDED" for r in x["baseline"]["reasons"]) for x in moved_from_blue),
            "May: every parcel leaving BLUE was suspended in the baseline")
    c.equal(r3["candidate"]["ruleset_version"], "default-1/us-no-cnhk", "May: candidate policy named")

# Hand-made parcels: the counts computed here.
q = Pipeline("whatif-may", partitions=1)
q.create_topics()
T_SUSPEND = 1746158460000  # 2025-05-02T04:01:00Z
HOUR = 3600000
cases = []  # (declaration, baseline lane, candidate lane)


def party(i, origin):
    return {"name": f"Whatif Buyer {tag} {i}", "address": f"{i} Whatif Road", "city": "Springfield",
            "postal_code": "62701", "country": "US"}


n = 0
for origin, count in (("CN", 7), ("HK", 5)):
    for k in range(count):  # within the threshold after the instant: BLUE (suspended) -> GREEN
        n += 1
        cases.append((declaration(f"wf-{tag}-{n}", arrival_time=T_SUSPEND + k * HOUR, consignee=party(n, origin),
                                  lines=[line(origin_country=origin)]), "BLUE", "GREEN"))
for origin in ("CN", "HK", "CN"):  # over the threshold: BLUE either way (suspended / INELIGIBLE_VALUE)
    n += 1
    cases.append((declaration(f"wf-{tag}-{n}", arrival_time=T_SUSPEND + 5 * HOUR, consignee=party(n, origin),
                              value_usd_cents=95000, lines=[line(origin_country=origin, value_usd_cents=95000)]),
                  "BLUE", "BLUE"))
for k in range(4):  # CN one minute before the instant: GREEN either way
    n += 1
    cases.append((declaration(f"wf-{tag}-{n}", arrival_time=T_SUSPEND - 60000 - k * HOUR, consignee=party(n, "CN"),
                              lines=[line(origin_country="CN")]), "GREEN", "GREEN"))
n += 1  # exactly at the instant (inclusive): suspended in the baseline
cases.append((declaration(f"wf-{tag}-{n}", arrival_time=T_SUSPEND, consignee=party(n, "CN"),
                          lines=[line(origin_country="CN")]), "BLUE", "GREEN"))
for k in range(6):  # VN: GREEN either way
    n += 1
    cases.append((declaration(f"wf-{tag}-{n}", arrival_time=T_SUSPEND + k * HOUR, consignee=party(n, "VN"),
                              lines=[line(origin_country="VN")]), "GREEN", "GREEN"))
# One consignee, one day, three CN parcels of $300: suspended they are never
# aggregated (BLUE); without the row the third takes the day to $900 > $800:
# AGGREGATE_OVER_THRESHOLD + SPLIT_SHIPMENT (500 points) -> YELLOW.
n += 1
split_party = party(n, "CN")
for k in range(3):
    cases.append((declaration(f"wf-{tag}-split-{k}", arrival_time=T_SUSPEND + 10 * HOUR + k * 60000,
                              consignee=split_party, value_usd_cents=30000,
                              lines=[line(origin_country="CN", value_usd_cents=30000)]),
                  "BLUE", "GREEN" if k < 2 else "YELLOW"))
produce(q, [d for d, _, _ in cases])
res, out4, r4 = whatif(q, "may-hand", *MAY, "--baseline-rules", NOSAMPLE, "--baseline-policy", POLICY,
                       "--rules", NOSAMPLE, "--policy", NO_CNHK, "--all", os.path.join(WORK, f"whatif-{tag}-may.jsonl"))
if r4:
    want = collections.Counter((b, a) for _, b, a in cases)
    m = r4["lane_transitions"]["counts"]
    got = collections.Counter({(a, b): m[a][b] for a in LANES for b in LANES if m[a][b]})
    c.equal(dict(got), dict(want), "hand-made May: the lane matrix is the one computed")
    rows = {x["declaration_id"]: x for x in jsonl(os.path.join(WORK, f"whatif-{tag}-may.jsonl"))}
    wrong = [d["declaration_id"] for d, b, a in cases
             if (rows.get(d["declaration_id"], {}).get("baseline", {}).get("lane"),
                 rows.get(d["declaration_id"], {}).get("candidate", {}).get("lane")) != (b, a)]
    c.equal(wrong, [], "hand-made May: every parcel in the lanes computed")
    split = rows.get(f"wf-{tag}-split-2", {}).get("candidate", {}).get("reasons", [])
    c.equal(points(split), [("AGGREGATE_OVER_THRESHOLD", 200), ("SPLIT_SHIPMENT", 300)],
            "hand-made May: the split shipment the suspension hid")
    cnhk = sum(1 for _, b, a in cases if b == "BLUE" and a != "BLUE")
    c.equal(r4["changed"]["count"], cnhk, f"hand-made May: {cnhk} CN/HK parcels change lane")
    c.equal(r4["reasons"]["DE_MINIMIS_SUSPENDED"]["baseline"], sum(1 for _, b, _ in cases if b == "BLUE"),
            "hand-made May: every CN/HK parcel from the instant on is suspended in the baseline")

# ------------------------------------------- --by timestamp (offsetsForTimes)
import time  # noqa: E402

t = Pipeline("whatif-ts", partitions=4)
t.create_topics()
first, _ = t.gen(300, seed=15016, extra=("--start", "2025-05-10", "--days", "2"))
time.sleep(1.5)
T = int(time.time() * 1000)
time.sleep(1.5)
second, _ = t.gen(200, seed=15017, extra=("--start", "2025-05-10", "--days", "2"))


def utc(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


# The instant T to the second: 1.5 s on either side keeps every record on its side.
res, out5, r5 = whatif(t, "ts-after", "--by", "timestamp", "--from", utc(T), "--to", utc(T + 3600000),
                       "--rules", RULES, "--all", os.path.join(WORK, f"whatif-{tag}-ts.jsonl"))
if r5:
    c.equal(sum(x["start_offset"] for x in r5["input"]["partitions"]), len(first),
            "--by timestamp: each partition starts at offsetsForTimes(T1)")
    c.equal(r5["input"]["messages_read"], len(second), "--by timestamp: only the later records read")
    got = {x["declaration_id"] for x in jsonl(os.path.join(WORK, f"whatif-{tag}-ts.jsonl"))}
    c.equal(got, set(second), "--by timestamp: exactly the declarations produced after T1")
res, out6, r6 = whatif(t, "ts-before", "--by", "timestamp", "--from", utc(T - 3600000), "--to", utc(T),
                       "--rules", RULES)
if r6:
    c.equal(r6["input"]["decided"], len(first), "--by timestamp: the window ends at T2")
    c.equal(r6["input"]["messages_read"], len(first), "--by timestamp: each partition stops at its first record at T2")

# ----------------------------------------------------------------- after
kafka_after = {k: len(p.tail(k)) for k in ("decisions", "alerts", "dlq")}
c.equal(kafka_after, kafka_before, "no record written to decisions, alerts or the DLQ")
c.equal(len(q.tail("decisions")), 0, "the hand-made topic's decisions topic stays empty")
redis_keys_after = sorted(redis_cli("--scan", "--pattern", "pr:*").split("\n"))
changes_after = [x for x in redis_cli("INFO", "persistence").splitlines()
                 if x.startswith("rdb_changes_since_last_save")]
c.equal(redis_keys_after == redis_keys_before, True, f"Redis keys unchanged ({len(redis_keys_before)} pr:* keys)")
c.equal(changes_after, changes_before, "Redis saw no write while whatif ran")

# ------------------------------------------------------------- refusals
res, _, _ = whatif(p, "bad", *WINDOW, "--rules", os.path.join(WORK, "no-such-rules.yaml"), check=False)
c.equal(res.returncode, 2, "a candidate rule file that cannot be read: exit 2")
res = p.call("whatif", "--from", "2025-05-02", "--to", "2025-05-01", "--rules", RULES, check=False)
c.equal(res.returncode, 2, "--to before --from: exit 2")
res = p.call("whatif", "--from", "2025-05-01", "--to", "2025-05-02", check=False)
c.check(res.returncode == 2 and "candidate" in res.stderr, "no candidate file: exit 2, saying so")
c.done()
