"""Changes while the pipeline runs.
- Rules: a rule change by SIGHUP takes effect on the next batch; a broken
  file is refused (the log names file and line) and the old rules stay.
- Reference data: a reload during a running pipeline switches the version
  with no decision seeing a mix: decisions carry the version they used, and
  their reasons agree with that version's data."""
import os
import shutil
import signal
import threading
import time
import uuid

from harness import (TEST_COUNTRIES, TEST_HTS, TEST_VIOLATORS, WORK, Checks, Pipeline, declaration,
                     line, load_refdata, produce, stop, wait_for)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
c = Checks("reload")
c.equal(load_refdata().returncode, 0, "reference data v1 loads")
run_id = uuid.uuid4().hex[:6]

# ------------------------------------------------------------------ rules
rules = os.path.join(WORK, f"rules-{run_id}.yaml")
shutil.copy(os.path.join(ROOT, "schemas", "rules.yaml"), rules)
p = Pipeline("reload", extra_sets=[f"rules.file={rules}",
                                   f"policy.file={os.path.join(ROOT, 'schemas', 'policy-us.yaml')}"])
p.create_topics()
proc = p.start()


def decided(prefix, n):
    return wait_for(lambda: sum(1 for d in p.tail("decisions") if d["declaration_id"].startswith(prefix)) >= n, 90, 1)


def missing_case(tag, i):
    return declaration(f"RL-{run_id}-{tag}-{i}", house_bill=" ")  # MISSING_DATA


produce(p, [missing_case("a", i) for i in range(5)])
c.check(decided(f"RL-{run_id}-a", 5), "first declarations decided")
text = open(rules).read().replace("version: default-1", "version: strict-2").replace(
    "MISSING_DATA: 200", "MISSING_DATA: 350")
open(rules, "w").write(text)
proc.send_signal(signal.SIGHUP)
time.sleep(1.5)
produce(p, [missing_case("b", i) for i in range(5)])
c.check(decided(f"RL-{run_id}-b", 5), "declarations after SIGHUP decided")
open(rules, "w").write(text.replace("cluster_size: 5", "cluster_size: lots"))
proc.send_signal(signal.SIGHUP)
time.sleep(1.5)
produce(p, [missing_case("c", i) for i in range(5)])
c.check(decided(f"RL-{run_id}-c", 5), "declarations after a broken file decided")
c.check(proc.poll() is None, "a broken rule file does not stop the process")
c.equal(stop(proc), 0, "clean stop")
by = {}
for d in p.tail("decisions"):
    tag = d["declaration_id"].split("-")[2] if d["declaration_id"].startswith(f"RL-{run_id}") else None
    if tag:
        by.setdefault(tag, []).append(d)
points = lambda d: next(r["points"] for r in d["reasons"] if r["code"] == "MISSING_DATA")
c.check(all(d["ruleset_version"] == "default-1/us-2025-08" and points(d) == 200 for d in by.get("a", [])),
        "before SIGHUP: default-1, MISSING_DATA 200")
c.check(all(d["ruleset_version"] == "strict-2/us-2025-08" and points(d) == 350 for d in by.get("b", [])),
        "after SIGHUP: strict-2, MISSING_DATA 350")
c.check(all(d["ruleset_version"] == "strict-2/us-2025-08" and points(d) == 350 for d in by.get("c", [])),
        "after a broken file: strict-2 stays in force")
log = open(proc.log_path).read()
c.check("rules reload refused" in log and f"{rules}:" in log and "cluster_size" in log,
        "the refusal names the file, the line and the key")

# --------------------------------------------------------- reference data
q = Pipeline("reload-ref", extra_sets=["batch.size=50"])
q.create_topics()
proc = q.start()
# v2 flags a new code as excise; v1 does not know it at all.
hts_v2 = TEST_HTS + [("2208", "Spirits", "EXCISE", "", ""), ("2208203000", "Brandy", "", "", "")]
stop_flag = threading.Event()
sent = []


def feeder():
    i = 0
    while not stop_flag.is_set():
        batch = [declaration(f"RF-{run_id}-{i + k}", lines=[line(hts="2208203000", description="Brandy")])
                 for k in range(20)]
        produce(q, batch)
        sent.extend(d["declaration_id"] for d in batch)
        i += 20
        time.sleep(0.1)


t = threading.Thread(target=feeder)
t.start()
time.sleep(4)
r = load_refdata(hts=hts_v2, violators=TEST_VIOLATORS, countries=TEST_COUNTRIES)
c.equal(r.returncode, 0, "reference data v2 loads while the pipeline runs", r.stderr[-300:])
time.sleep(4)
stop_flag.set()
t.join()
c.check(wait_for(lambda: len(q.tail("decisions")) >= len(sent), 120, 1), "every declaration decided")
c.equal(stop(proc), 0, "clean stop")
decisions = [d for d in q.tail("decisions") if d["declaration_id"].startswith(f"RF-{run_id}")]
versions = sorted({d["refdata_version"] for d in decisions})
c.equal(len(versions), 2, "decisions before and after the reload carry two versions", str(versions))
old, new = (versions + ["", ""])[:2]
codes = lambda d: {r["code"] for r in d["reasons"]} - {"RANDOM_COMPLIANCE"}  # the 1% sample is orthogonal
# Versions sort by load time (YYYYMMDDTHHMMSSZ-...), so `old` is v1.
v1 = [d for d in decisions if d["refdata_version"] == old]
v2 = [d for d in decisions if d["refdata_version"] == new]
c.check(v1 and all(codes(d) == {"HTS_INVALID"} for d in v1), "every v1 decision: code unknown, no excise",
        str({frozenset(codes(d)) for d in v1}))
c.check(v2 and all(codes(d) == {"EXCLUDED_GOODS"} for d in v2), "every v2 decision: code known and excise",
        str({frozenset(codes(d)) for d in v2}))
order = sorted(decisions, key=lambda d: (d["source_partition"], d["source_offset"]))
switches = 0
for a, b in zip(order, order[1:]):
    if a["source_partition"] == b["source_partition"] and a["refdata_version"] != b["refdata_version"]:
        switches += 1
        c.check(a["refdata_version"] == old and b["refdata_version"] == new, "per partition, old then new")
c.check(switches >= 1, "the switch happened mid-stream", str(switches))
c.done()
