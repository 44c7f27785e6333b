"""Issue 12, state survives: the consignee-day and address-day state (DOMAIN.md
sections 5, 6 and 8) must give the same decisions and the same aggregate alerts
when an instance is SIGKILLed mid-stream, or when partitions move between
instances (one leaves, one joins), as one uninterrupted run gives, in both
delivery modes.

Written against the contract only: the CLI (`produce`, `run`, `tail`) and the
output topics, never the storage of the state (today Redis, later per-partition
state with a changelog), so the same test holds for either engine.

The workload (372 declarations) builds 64 consignee-days and 4
address-days while it is produced, at about 25 declarations/s, its parcels
spread over the whole stream so that the kill and the rebalance land while
most days are half built:
  - 30 consignees, two arrival days each (2025-03-03/04, when the $800
    threshold applies), each declaration written in one of three spellings of
    the same person (DOMAIN.md 6), its two days of two kinds below;
  - split:  5-7 parcels, each within $800, whose total crosses $800 only at the
    last one: AGGREGATE_OVER_THRESHOLD + SPLIT_SHIPMENT, and an aggregate alert
    (SPLIT_SHIPMENT) listing every house bill of the day;
  - aggregate: 3 x $100, one $850 (VALUE_OVER_THRESHOLD), then $40: only
    AGGREGATE_OVER_THRESHOLD (an earlier parcel was over), and an alert
    AGGREGATE_OVER_THRESHOLD listing the five house bills;
  - under:  5 x $160 = exactly $800, within the threshold: nothing fires, and
    any declaration counted twice after a replay would make it fire;
  - 4 consignees also have a day after 2025-08-29 (suspended for every origin):
    DE_MINIMIS_SUSPENDED only, never an aggregate rule;
  - 4 address clusters: 7 parcels at one delivery address, 6 distinct names
    (one name comes back in another spelling and is not counted again):
    ADDRESS_CLUSTER fires for the 5th and 6th distinct names only.
The crossing parcel is always the last of its day: the alert lists the house
bills counted when the day crosses, so that way its content is the same
whatever the batching (a replay of a crossing that is not the last of its day
re-emits the alert with the bills counted by then).

Totals depend on the order in which a day's parcels are counted, so each
address group (one consignee's parcels, or one cluster's) is keyed into one
input partition (declaration ids chosen with murmur2, checked with `tail raw`)
and produced in order: every engine that keeps per-partition order then has one
right answer, which an uninterrupted run gives (the reference) and which is
also checked against the rules above.

The reference is one instance in at_least_once, the whole input produced at
once (full batches) and decided without interruption. Each run has its own
topics, group and tag; the tag is in every name, address and house bill, so that no run can find the state of another (today's state is
keyed by consignee and address, not by group) and the outputs compare after
replacing the tag. Scenarios, each in at_least_once and exactly_once:
  kill:       one instance, SIGKILLed once it has decided a quarter of the
              workload, just after a chunk of input arrived (its decisions
              still in flight); another starts (a short session timeout lets it take
              the dead member's partitions quickly);
  rebalance:  two instances; one leaves (SIGTERM) at a quarter, one joins at
              half.
exactly_once: a read_committed reader (`tail`) sees each decision and each
aggregate alert once, equal to the reference. at_least_once: duplicates
allowed, every copy equal to the reference, and the set of aggregate alerts
(by content) is the reference's, none missing, none extra."""
import collections
import os
import random
import signal
import threading
import time
import uuid

from harness import (WORK, Checks, Pipeline, declaration, kafka_partition, line, load_refdata, produce,
                     stop, wait_for, wait_until_decided)

c = Checks("state_survival")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The shipped rules without the 1% random sample: the sample hashes the
# declaration id, which differs from run to run.
RULES = os.path.join(WORK, f"rules-nosample-{uuid.uuid4().hex[:6]}.yaml")
with open(os.path.join(ROOT, "schemas", "rules.yaml")) as fh:
    text = fh.read()
assert "sample_rate: 0.01" in text and "version: default-1" in text
with open(RULES, "w") as fh:
    fh.write(text.replace("sample_rate: 0.01", "sample_rate: 0").replace("version: default-1", "version: nosample"))
loaded = load_refdata()
c.equal(loaded.returncode, 0, "test reference data loads", loaded.stderr[-800:])

PARTITIONS = 6
HOUR, DAY_MS = 3600000, 86400000
# Arrival days (00:00 UTC): two under the $800 threshold, one after 2025-08-29 (all suspended).
DAYS = {"2025-03-03": 1740960000000, "2025-03-04": 1740960000000 + DAY_MS, "2025-09-02": 1756771200000}
PRODUCE_SECONDS = 15.0
CHUNKS = 30
# A producer that lingers 400 ms (and, exactly-once, transactions of 1 s)
# keeps decisions undelivered (uncommitted) for a while after their
# declarations were counted in the state, so a SIGKILL finds some in flight:
# the next instance decides them again, and the state must give them the
# totals they had (at-least-once: a replay of ids it has counted), or never
# have kept the counts of an aborted transaction (exactly-once).
SETS = ["batch.size=100", f"rules.file={RULES}", "kafka.producer.linger.ms=400",
        "kafka.consumer.session.timeout.ms=6000", "kafka.consumer.heartbeat.interval.ms=1000"]


# ------------------------------------------------------------------ workload
# An item is one declaration, written without the run's tag: lid (logical id),
# group (its address group: one input partition), who (the logical consignee),
# day, value, and how to spell the consignee. expect[lid] is what the contract
# says of it; crossings lists the aggregate alerts the contract expects.
def person(cid, spelling, tag):
    up = tag.upper()
    return [
        {"name": f"Maria Lopez-{cid} {tag}", "address": f"{100 + cid} Oak Street, Apt. {tag}",
         "city": "Denver", "postal_code": "80202", "country": "US"},
        {"name": f"MARIA LOPEZ {cid} {up}", "address": f"{100 + cid} OAK ST APT {up}",
         "city": "DENVER", "postal_code": "80202", "country": "US"},
        {"name": f"maria  lopez {cid} {tag}.", "address": f"{100 + cid} Oak St., Apt {tag}",
         "city": "denver", "postal_code": "80-202", "country": "US"},
    ][spelling]


def resident(addr, who, spelling, tag):
    if spelling == 0:
        return {"name": f"Resident {addr}-{who} {tag}", "address": f"{500 + addr} Cluster Road {tag}",
                "city": "Reno", "postal_code": "89501", "country": "US"}
    return {"name": f"RESIDENT {addr} {who} {tag.upper()}", "address": f"{500 + addr} CLUSTER RD {tag.upper()}",
            "city": "RENO", "postal_code": "89-501", "country": "US"}


def workload():
    items, expect, crossings = [], {}, []
    green = (frozenset(), "GREEN", "ELIGIBLE", 0)

    def day_group(cid, day, kind, origin):
        lids = []
        if kind == "split":
            n = 5 + cid % 3
            values = [70000 // (n - 1)] * (n - 1) + [15000]
        elif kind == "aggregate":
            values = [10000, 10000, 10000, 85000, 4000]
        elif kind == "under":
            values = [16000] * 5
        else:  # suspended
            values = [14000] * 5 + [15000]
        for k, value in enumerate(values):
            lid = f"c{cid:02d}-{day[5:]}-{k}"
            items.append({"lid": lid, "group": f"c{cid:02d}", "who": f"c{cid:02d}", "day": day, "value": value,
                          "origin": origin, "hour": 1 + k, "party": ("person", cid, (k + cid) % 3)})
            lids.append(lid)
            if kind == "suspended":
                expect[lid] = (frozenset({"DE_MINIMIS_SUSPENDED"}), "BLUE", "SUSPENDED", 0)
            else:
                expect[lid] = green
        last = lids[-1]
        if kind == "split":
            expect[last] = (frozenset({"AGGREGATE_OVER_THRESHOLD", "SPLIT_SHIPMENT"}), "YELLOW",
                            "INELIGIBLE_AGGREGATE", 500)
            crossings.append((f"c{cid:02d}", day, last, "SPLIT_SHIPMENT", 300, lids))
        elif kind == "aggregate":
            expect[lids[3]] = (frozenset({"VALUE_OVER_THRESHOLD"}), "BLUE", "INELIGIBLE_VALUE", 0)
            expect[last] = (frozenset({"AGGREGATE_OVER_THRESHOLD"}), "BLUE", "INELIGIBLE_AGGREGATE", 200)
            crossings.append((f"c{cid:02d}", day, last, "AGGREGATE_OVER_THRESHOLD", 200, lids))

    kinds = ["split", "aggregate", "under"]
    for cid in range(30):
        day_group(cid, "2025-03-03", kinds[cid % 3], "VN")
        day_group(cid, "2025-03-04", kinds[(cid + 1) % 3], "CN")
        if cid < 4:
            day_group(cid, "2025-09-02", "suspended", "VN")
    # Address clusters: names 0,1,2, then 1 again (other spelling), 3, 4, 5.
    for addr in range(4):
        for k, (who, spelling) in enumerate([(0, 0), (1, 0), (2, 0), (1, 1), (3, 0), (4, 0), (5, 0)]):
            lid = f"a{addr}-{k}"
            items.append({"lid": lid, "group": f"a{addr}", "who": f"a{addr}r{who}", "day": "2025-03-03",
                          "value": 5000, "origin": "VN", "hour": 1 + k, "party": ("resident", addr, who, spelling)})
            expect[lid] = ((frozenset({"ADDRESS_CLUSTER"}), "YELLOW", "ELIGIBLE", 300) if k >= 5 else green)
    # Spread the parcels of each day over the whole stream, in their order.
    rng = random.Random(1212)
    by_day = collections.defaultdict(list)
    for it in items:
        by_day[(it["group"], it["day"])].append(it)
    for day in by_day.values():
        for it, t in zip(day, sorted(rng.random() for _ in day)):
            it["t"] = t
    items.sort(key=lambda it: it["t"])
    groups = sorted({it["group"] for it in items})
    partition_of = {g: i % PARTITIONS for i, g in enumerate(groups)}
    return items, expect, crossings, partition_of


ITEMS, EXPECT, CROSSINGS, PARTITION_OF = workload()
LIDS = [it["lid"] for it in ITEMS]
WHO = {it["lid"]: it["who"] for it in ITEMS}
GROUP = {it["lid"]: it["group"] for it in ITEMS}
print(f"workload: {len(ITEMS)} declarations, "
      f"{len({(it['who'], it['day']) for it in ITEMS if it['lid'][0] == 'c'})} consignee-days of 30 people, "
      f"4 address clusters, {len(CROSSINGS)} aggregate alerts expected, "
      f"{len(PARTITION_OF)} address groups on {PARTITIONS} partitions")


class Run:
    """One set of topics and a group, with the workload written under its own tag."""

    def __init__(self, name, mode):
        self.mode = mode
        self.tag = "q" + uuid.uuid4().hex[:7]  # 'q': never part of a number in a detail
        extra = SETS + [f"processing.guarantee={mode}"]
        if mode == "exactly_once":
            extra.append("processing.transaction_interval_ms=1000")
        self.p = Pipeline(name, partitions=PARTITIONS, extra_sets=extra)
        self.p.create_topics()
        self.lid_of, self.decls = {}, []
        for it in ITEMS:
            n = 0
            while kafka_partition(f"{self.tag}-{it['lid']}-{n}", PARTITIONS) != PARTITION_OF[it["group"]]:
                n += 1
            did = f"{self.tag}-{it['lid']}-{n}"
            self.lid_of[did] = it["lid"]
            party = it["party"]
            cons = person(party[1], party[2], self.tag) if party[0] == "person" else resident(*party[1:], self.tag)
            self.decls.append(declaration(
                did, house_bill=f"HB-{self.tag}-{it['lid']}", consignee=cons, value_usd_cents=it["value"],
                arrival_time=DAYS[it["day"]] + it["hour"] * HOUR,
                lines=[line(value_usd_cents=it["value"], origin_country=it["origin"])]))
        self.ids = list(self.lid_of)
        self.chunk_done = threading.Event()
        self.produced = 0

    def produce_all(self):
        produce(self.p, self.decls)

    def produce_slowly(self):
        """CHUNKS calls of `produce` over PRODUCE_SECONDS, in workload order (one
        call ends, flushed, before the next starts: the order per partition holds)."""
        start = time.time()
        for j in range(CHUNKS):
            chunk = self.decls[j * len(self.decls) // CHUNKS:(j + 1) * len(self.decls) // CHUNKS]
            produce(self.p, chunk)
            self.produced += len(chunk)
            self.chunk_done.set()
            time.sleep(max(0.0, start + (j + 1) * PRODUCE_SECONDS / CHUNKS - time.time()))

    def start(self, instance):
        extra = ("--set", f"processing.instance_id={instance}") if self.mode == "exactly_once" else ()
        return self.p.start(*extra)

    def decided(self):
        return {self.lid_of[d["declaration_id"]] for d in self.p.tail("decisions")
                if d["declaration_id"] in self.lid_of}

    def wait_decided(self, share, timeout=120):
        """Waits until share of the workload has a decision; returns those decided."""
        seen = set()

        def enough():
            seen.clear()
            seen.update(self.decided())
            return len(seen) >= share * len(ITEMS)
        wait_for(enough, timeout, step=0.5)
        return set(seen)

    def normalized(self, rec, key_label):
        """What the contract fixes of a decision or alert, with the run's tag, ids
        and consignee keys replaced by the logical names of the workload."""
        did = rec["declaration_id"]
        if did.startswith("AGG:"):
            _, key, day = did.split(":")
            did = f"AGG:{key_label.get(key, '?' + key)}:{day}"
        else:
            did = self.lid_of.get(did, "?" + did)
        reasons = tuple((r["code"], r["points"], r["detail"].replace(self.tag, "T")) for r in rec["reasons"])
        return (did, rec["house_bill"].replace(self.tag, "T"), key_label.get(rec["consignee_key"], "?"),
                rec["lane"], rec["score"], rec["de_minimis"], rec["random_selection"], reasons)

    def outputs(self):
        """Decisions, aggregate alerts and other alerts, normalized, and the key -> consignee map."""
        decisions = [d for d in self.p.tail("decisions") if d["declaration_id"] in self.lid_of]
        keys = collections.defaultdict(set)
        for d in decisions:
            keys[d["consignee_key"]].add(WHO[self.lid_of[d["declaration_id"]]])
        key_label = {k: "/".join(sorted(v)) for k, v in keys.items()}
        alerts = self.p.tail("alerts")
        ours = [a for a in alerts if a["declaration_id"] in self.lid_of or a["declaration_id"].startswith("AGG:")]
        return ([self.normalized(d, key_label) for d in decisions],
                [self.normalized(a, key_label) for a in ours if a["declaration_id"].startswith("AGG:")],
                [self.normalized(a, key_label) for a in ours if not a["declaration_id"].startswith("AGG:")],
                keys, len(alerts) - len(ours))

    def check_partitions(self, what):
        raw = self.p.tail_raw()
        wrong = []
        for r in raw:
            did = bytes.fromhex(r["_key_hex"]).decode("utf-8", "replace")
            lid = self.lid_of.get(did)
            if lid is None or PARTITION_OF[GROUP[lid]] != r["_partition"]:
                wrong.append((did, r["_partition"]))
        c.check(len(raw) == len(ITEMS) and not wrong,
                f"{what}: all {len(ITEMS)} declarations in the input topic, each address group in its own partition",
                f"({len(raw)} records, misplaced {wrong[:3]})")


ALL_DAYS = {(it["group"], it["day"]) for it in ITEMS}


def open_days(decided_before):
    """Consignee-days and address-days with parcels decided before an event and parcels after it."""
    days = collections.defaultdict(lambda: [0, 0])
    for it in ITEMS:
        days[(it["group"], it["day"])][it["lid"] in decided_before] += 1
    return sum(1 for before_after in days.values() if all(before_after))


# ------------------------------------------------------- reference: one run
t0 = time.time()
ref = Run("ss-ref", "at_least_once")
ref.produce_all()
rc, summary = ref.p.run_until_idle(idle_ms=3000)
c.equal(rc, 0, "reference: one uninterrupted run exits 0")
ref.check_partitions("reference")
ref_decisions, ref_aggs, ref_alerts, ref_keys, _ = ref.outputs()
REF = {}
for d in ref_decisions:
    REF.setdefault(d[0], d)
c.equal((len(ref_decisions), len(REF)), (len(ITEMS), len(ITEMS)), "reference: one decision per declaration")
# The reference itself is checked against the contract (DOMAIN.md 5, 6, 8).
wrong = [(lid, REF.get(lid)) for lid in LIDS
         if lid not in REF or (frozenset(r[0] for r in REF[lid][7]), REF[lid][3], REF[lid][5], REF[lid][4]) != EXPECT[lid]]
c.equal(wrong[:3], [], "reference: every declaration has the reasons, lane, de_minimis and score the rules give")
people = {it["who"] for it in ITEMS}
c.check(len(ref_keys) == len(people) and all(len(v) == 1 for v in ref_keys.values()),
        "reference: one consignee_key per person, whatever the spelling and the day",
        f"({len(ref_keys)} keys for {len(people)} people)")
want_aggs = set()
for who, day, last, code, points, lids in CROSSINGS:
    detail = REF.get(last, (None,) * 8)[7]
    reason = next((r for r in detail or () if r[0] == code), None)
    bills = ",".join(sorted(f"HB-T-{lid}" for lid in lids))
    want_aggs.add((f"AGG:{who}:{day}", f"HB-T-{last}", who, "YELLOW", points, "INELIGIBLE_AGGREGATE", False,
                   ((code, points, f"{reason and reason[2]}; house bills: {bills}"),)))
c.equal(len(ref_aggs), len(CROSSINGS), "reference: one aggregate alert per day that crosses the threshold")
c.equal(set(ref_aggs) ^ want_aggs, set(),
        "reference: each aggregate alert is the crossing parcel's, lists every house bill of its day")
REF_AGGS = set(ref_aggs)
REF_ALERTED = {lid for lid, d in REF.items() if d[3] in ("YELLOW", "RED")}
c.equal({a[0] for a in ref_alerts}, REF_ALERTED, "reference: the YELLOW and RED decisions are alerted")
print(f"REPORT reference: {len(REF)} decisions, {len(REF_AGGS)} aggregate alerts, "
      f"{sum(1 for d in REF.values() if d[7])} declarations with reasons, {time.time() - t0:.1f} s")


def compare(run, what, events):
    """The outputs of run against the reference; events: (name, decided before it)."""
    run.check_partitions(what)
    decisions, aggs, alerts, keys, foreign = run.outputs()
    counts = collections.Counter(d[0] for d in decisions)
    missing = [lid for lid in LIDS if lid not in counts]
    dups = sum(n - 1 for n in counts.values())
    c.equal(missing[:5], [], f"{what}: every declaration has a decision", f"({len(missing)} missing)")
    c.check(len(keys) == len(ref_keys) and all(len(v) == 1 for v in keys.values()),
            f"{what}: one consignee_key per person", f"({len(keys)} keys)")
    differ = [(d, REF.get(d[0])) for d in decisions if d != REF.get(d[0])]
    c.equal(differ[:2], [], f"{what}: every decision equals the reference's (lane, score, de_minimis, reasons)",
            f"({len(differ)} differ)")
    c.equal(sorted(set(aggs) - REF_AGGS)[:2], [], f"{what}: no aggregate alert that the reference has not")
    c.equal(sorted(REF_AGGS - set(aggs))[:2], [], f"{what}: every aggregate alert of the reference")
    wrong_alerts = [a for a in alerts if a != REF.get(a[0]) or a[0] not in REF_ALERTED]
    c.check({a[0] for a in alerts} == REF_ALERTED and not wrong_alerts,
            f"{what}: the alerted decisions are the reference's, each copy equal to it",
            f"({len({a[0] for a in alerts})} alerted, want {len(REF_ALERTED)}; {wrong_alerts[:2]})")
    c.equal(foreign, 0, f"{what}: nothing on the alerts topic that the workload did not make")
    agg_dups = len(aggs) - len(set(aggs))
    if run.mode == "exactly_once":
        c.equal(dups, 0, f"{what}: read_committed sees each decision once")
        c.equal(agg_dups + len(alerts) - len(set(alerts)), 0, f"{what}: read_committed sees each alert once")
    for name, before in events:
        c.check(open_days(before) >= len(ALL_DAYS) // 2,
                f"{what}: the {name} landed while at least half the days were being built",
                f"({open_days(before)} of {len(ALL_DAYS)} days open, {len(before)} decided before)")
    print(f"REPORT {what}: {len(counts)} decided, {len(missing)} lost, {dups} decided twice, "
          f"{len(set(aggs))} aggregate alerts ({agg_dups} repeated), "
          + ", ".join(f"{open_days(before)} days open at the {name}" for name, before in events))


def scenario_kill(mode):
    """One instance, SIGKILLed once it has decided a quarter; another takes over."""
    t = time.time()
    run = Run(f"ss-kill-{mode.split('_')[0]}", mode)
    producer = threading.Thread(target=run.produce_slowly)
    first = run.start("kill-1")
    producer.start()
    before = run.wait_decided(0.25)
    with open(first.log_path) as fh:
        assigned = "rebalance: assigned" in fh.read()
    c.check(assigned and 0 < len(before) < len(ITEMS) and producer.is_alive(),
            f"kill {mode}: the first instance is assigned and has decided part of the stream when killed",
            f"({len(before)} decided, producer running: {producer.is_alive()})")
    # Just after a chunk arrives: its decisions are then still in the producer.
    run.chunk_done.clear()
    run.chunk_done.wait(10)
    time.sleep(0.25)
    first.send_signal(signal.SIGKILL)
    first.wait()
    produced, visible = run.produced, len(run.decided())
    second = run.start("kill-1")  # the same instance id fences the dead one's transaction
    producer.join()
    wait_until_decided(run.p, run.ids, timeout=240)
    c.equal(stop(second), 0, f"kill {mode}: the second instance stops cleanly")
    compare(run, f"kill {mode}", [("SIGKILL", before)])
    print(f"REPORT kill {mode}: at the SIGKILL {produced} declarations were in the input topic and "
          f"{visible} had a decision that a read_committed reader sees; the rest was decided after it")
    print(f"REPORT kill {mode}: {time.time() - t:.1f} s")


def scenario_rebalance(mode):
    """Two instances; one leaves at a quarter, one joins at half."""
    t = time.time()
    run = Run(f"ss-rebal-{mode.split('_')[0]}", mode)
    procs = [run.start("rb-a"), run.start("rb-b")]

    def both_assigned():
        logs = []
        for proc in procs:
            with open(proc.log_path) as fh:
                logs.append(fh.read())
        return all("rebalance: assigned" in log for log in logs)
    c.check(wait_for(both_assigned, 60), f"rebalance {mode}: both instances have partitions before the stream")
    producer = threading.Thread(target=run.produce_slowly)
    producer.start()
    at_leave = run.wait_decided(0.25)
    rc_leave = stop(procs[0])  # one leaves
    at_join = run.wait_decided(0.5)
    procs.append(run.start("rb-c"))  # one joins
    producer.join()
    wait_until_decided(run.p, run.ids, timeout=240)
    rcs = [rc_leave] + [stop(proc) for proc in procs[1:]]
    c.equal(rcs, [0, 0, 0], f"rebalance {mode}: the three instances stop cleanly")
    consumed = [run.p.summary(proc).get("consumed", 0) for proc in procs]
    c.check(all(n > 0 for n in consumed), f"rebalance {mode}: each instance decided part of the stream",
            str(consumed))
    compare(run, f"rebalance {mode}", [("leave", at_leave), ("join", at_join)])
    print(f"REPORT rebalance {mode}: {time.time() - t:.1f} s")


for guarantee in ("at_least_once", "exactly_once"):
    scenario_kill(guarantee)
    scenario_rebalance(guarantee)
print(f"REPORT state_survival: {time.time() - t0:.1f} s in all")
c.done()
