"""The keyed state comes back from its changelog (issue 12).

  restart   a consignee-day half built by one run (two $300 parcels, a
            clean stop) is finished by the next process: the third $300
            fires AGGREGATE and SPLIT, with the day's total as the first
            run left it, and the aggregate alert lists all three house
            bills. The state was nowhere but in the changelog in between.
  1,000,000 the changelog of 1,000,000 consignee-days (written by
            tests/pr_changelog_fill as stage 2 writes it) is restored by a
            run of the group on assignment: every day, every record, logged
            per partition; the time, bytes per day and peak RSS are printed
            (reported, never asserted: timing on a shared 2-core machine).
  refused   internal topics whose partition counts differ, or differ from
            topics.repartition_partitions, stop run at start (exit 2) with
            a message that names them."""
import json
import os
import re
import subprocess
import time

from harness import BOOTSTRAP, Checks, Pipeline, declaration, line, load_refdata, produce

c = Checks("state_restore")
c.equal(load_refdata().returncode, 0, "reference data loads")

# ------------------------------------------------------------------ restart
p = Pipeline("restore-day", partitions=4)
p.create_topics()
person = {"name": "Rita Restore", "address": "77 Harbor Road", "city": "Portland", "postal_code": "97201",
          "country": "US"}
day = [declaration(f"RD-{p.prefix}-{i}", consignee=person, value_usd_cents=30000,
                   lines=[line(value_usd_cents=30000)]) for i in range(3)]
produce(p, day[:2])
rc, first = p.run_until_idle()
c.equal((rc, first.get("decisions")), (0, 2), "run 1 decides the first two $300 parcels")
produce(p, day[2:])
rc, second = p.run_until_idle()
c.equal((rc, second.get("decisions")), (0, 1), "run 2 (a new process) decides the third")
c.check(second.get("keyed_state", {}).get("restored_records", 0) >= 2,
        "run 2 restored the day from the changelog", str(second.get("keyed_state")))
got = {d["declaration_id"]: d for d in p.tail("decisions")}
third = got.get(day[2]["declaration_id"])
codes = sorted(r["code"] for r in third["reasons"]) if third else []
c.equal(codes, ["AGGREGATE_OVER_THRESHOLD", "SPLIT_SHIPMENT"], "the third fires AGGREGATE and SPLIT")
detail = third and next((r["detail"] for r in third["reasons"] if r["code"] == "AGGREGATE_OVER_THRESHOLD"), "")
c.check(detail and "total 90000 cents" in detail, "with the day's total $900 (run 1's $600 restored)", detail)
# The repartition topic holds only what is not committed: both runs purged
# it below the group's committed offsets when they stopped.
left = p.call("tail", "raw", "--topic", f"{p.prefix}.repartition").stdout.split("\n")
c.equal([x for x in left if x.strip()], [], "the repartition topic is purged below the committed offsets")
alerts = [a for a in p.tail("alerts") if a["declaration_id"].startswith("AGG:")]
c.equal(len(alerts), 1, "one aggregate alert")
c.check(alerts and all(d["house_bill"] in alerts[0]["reasons"][0]["detail"] for d in day),
        "it lists the three house bills, two of them counted by run 1", alerts and alerts[0]["reasons"][0]["detail"])

# ---------------------------------------------------------------- 1,000,000
COUNT = 1000000
q = Pipeline("restore-1m", partitions=8)
q.create_topics()
t0 = time.time()
fill = subprocess.run([os.environ["PR_CHANGELOG_FILL"], BOOTSTRAP, f"{q.prefix}.changelog", "8", str(COUNT)],
                      capture_output=True, text=True, timeout=600)
c.equal(fill.returncode, 0, "the changelog of 1,000,000 consignee-days is written", fill.stderr[-500:])
m = re.search(r"records (\d+) bytes (\d+)", fill.stdout)
c.equal(m and int(m.group(1)), COUNT, "one record per consignee-day")
print(f"fill: {fill.stdout.strip()} ({time.time() - t0:.1f} s with the process start)")
rc, summary = q.run_until_idle(idle_ms=3000)
c.equal(rc, 0, "the run restores and stops")
log = open(os.path.join(os.environ.get("PR_TEST_WORK"), f"{q.prefix}-run1.log")).read()
lines = re.findall(r"restored (\d+) consignee-days and address-days \((\d+) changelog records, (\d+) bytes\) "
                   r"from changelog partition (\d+) in ([0-9.]+) s", log)
c.equal(sorted(int(x[3]) for x in lines), list(range(8)), "one restore line per partition")
c.equal(sum(int(x[0]) for x in lines), COUNT, "1,000,000 consignee-days restored")
c.equal(sum(int(x[1]) for x in lines), COUNT, "from 1,000,000 changelog records")
ks = summary.get("keyed_state", {})
c.equal(ks.get("keys"), COUNT, "all held at the end of the run")
held = sum(int(x[2]) for x in lines)
print(f"REPORT restore of {COUNT} consignee-days: {ks.get('restore_seconds', 0):.2f} s restoring "
      f"(8 partitions, one process; slowest partition {max(float(x[4]) for x in lines):.2f} s), "
      f"{held / COUNT:.0f} bytes per consignee-day in memory, peak RSS {summary.get('peak_rss_mb', 0):.0f} MB")
# ------------------------------------------------------- refused at start
# The state of repartition partition P is restored from changelog partition
# P: internal topics of different partition counts, or not the count the
# configuration asks for, are refused (exit 2) with a message that names both.
TOOL = os.environ["PR_TEST_KAFKA"]
m = Pipeline("restore-mismatch", partitions=4)
m.create_topics()  # the four topics and both internal ones, 4 partitions each
subprocess.run([TOOL, "delete", BOOTSTRAP, f"{m.prefix}.changelog"], capture_output=True, timeout=120)
made = subprocess.run([TOOL, "create", BOOTSTRAP, f"{m.prefix}.changelog", "6", "cleanup.policy=compact"],
                      capture_output=True, text=True, timeout=120)
c.equal(made.returncode, 0, "a changelog of 6 partitions beside a repartition topic of 4", made.stderr)
res = subprocess.run(m.cmd("run", "--exit-when-idle", "2000"), capture_output=True, text=True, timeout=300)
c.equal(res.returncode, 2, "run refuses to start: exit 2", res.stderr[-600:])
c.check(f"{m.prefix}.repartition has 4 partitions and the changelog topic {m.prefix}.changelog has 6"
        in res.stderr, "the message names both topics and their counts", res.stderr[-600:])
res = subprocess.run(p.cmd("run", "--exit-when-idle", "2000", "--set", "topics.repartition_partitions=8"),
                     capture_output=True, text=True, timeout=300)
c.equal(res.returncode, 2, "topics.repartition_partitions=8 against internal topics of 4: exit 2",
        res.stderr[-600:])
c.check("have 4 partitions, but topics.repartition_partitions says 8" in res.stderr,
        "the message says which count and which key", res.stderr[-600:])

c.done()
