"""Prints the demo's summary: decisions of this run by lane, de minimis
status and reason, dead letters by error code, and a few alerts."""
import collections
import json
import os
import sys

work = sys.argv[1]
ids = set()
bad = set()
with open(os.path.join(work, "ids.txt")) as fh:
    for line in fh:
        kind, key = line.split()[:2]
        (ids if kind == "ok" else bad).add(key)
decisions = [d for d in map(json.loads, open(os.path.join(work, "decisions.jsonl"))) if d["declaration_id"] in ids]
dlq = [d for d in map(json.loads, open(os.path.join(work, "dlq.jsonl"))) if d["_key"] in bad]
summary = json.load(open(os.path.join(work, "summary.json")))

print()
print(f"parcelrisk decided {len(decisions)} of {len(ids)} valid declarations "
      f"({summary['decisions'] / max(summary['wall_seconds'], 1e-9):.0f}/s wall, "
      f"{summary['cpu_seconds'] * 1e6 / max(summary['consumed'], 1):.1f} us CPU per declaration); "
      f"{len(dlq)} of {len(bad)} malformed messages went to the DLQ")
print()
lanes = collections.Counter(d["lane"] for d in decisions)
print("  lane     count   share")
for lane in ("GREEN", "BLUE", "YELLOW", "RED"):
    n = lanes.get(lane, 0)
    print(f"  {lane:<7} {n:>6}  {100.0 * n / max(len(decisions), 1):5.1f}%")
print()
dm = collections.Counter(d["de_minimis"] for d in decisions)
print("  de minimis: " + ", ".join(f"{k} {v}" for k, v in dm.most_common()))
reasons = collections.Counter(r["code"] for d in decisions for r in d["reasons"])
print("  reasons:    " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
codes = collections.Counter(d["error_code"] for d in dlq)
print("  dead letters: " + ", ".join(f"{k} {v}" for k, v in codes.most_common()))
print()
alerts = sorted((d for d in decisions if d["lane"] in ("RED", "YELLOW")),
                key=lambda d: (-d["score"], d["declaration_id"]))[:5]
print("a few alerts (what an officer sees):")
for a in alerts:
    print(f"  {a['lane']:<6} score {a['score']:>3}  {a['declaration_id']}  house bill {a['house_bill']}")
    for r in a["reasons"]:
        print(f"         {r['code']} (+{r['points']}): {r['detail']}")
