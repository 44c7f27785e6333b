"""The benchmark tools of issue 12 count right: benchmarks/run reports their
numbers against targets, so they are checked here on known data against the
fixture's real broker (counts and contents; nothing is timed).

- pr_twohop moves every record of the input through the repartition topic to
  the output: the same keys and the same bytes, each exactly once, and its
  summary counts both hops.
- pr_topic_stats offsets gives each partition's records as the broker holds
  them (compared with pr_test_kafka records) and the largest one's share.
- pr_topic_stats consignees counts blank and missing consignee addresses,
  distinct normalized addresses, the hottest one, distinct consignees and
  undecodable records of a hand-made input, and prints no address."""
import collections
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, BOOTSTRAP, Checks, Pipeline, declaration, produce  # noqa: E402

TOOL = os.environ["PR_TEST_KAFKA"]
BENCH = os.path.join(os.path.dirname(BIN), "benchmarks")
TWOHOP = os.path.join(BENCH, "pr_twohop")
STATS = os.path.join(BENCH, "pr_topic_stats")
c = Checks("bench_tools")


def run(argv, timeout=300):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def records(topic):
    res = run([TOOL, "records", BOOTSTRAP, topic])
    if res.returncode != 0:
        raise RuntimeError(f"pr_test_kafka records {topic}: {res.stderr}")
    return [json.loads(x) for x in res.stdout.splitlines() if x.strip()]


def raw(pipeline, topic):
    res = pipeline.call("tail", "raw", "--topic", topic)
    return [json.loads(x) for x in res.stdout.splitlines() if x.strip()]


p = Pipeline("benchtools")
p.create_topics()
repartition = f"{p.prefix}.repartition"
# `topics create` makes the group's internal topics too (8 partitions here,
# as topics.declarations_partitions): the tool's create then finds it.
res = run([TOOL, "create", BOOTSTRAP, repartition, 8])
c.check(res.returncode == 0 or "already exists" in res.stderr, "repartition topic (8 partitions) exists",
        res.stderr)

# The input: 15 blank addresses (12 empty, 3 only spaces: one normalized key),
# 4 placeholders (missing, not blank), one person at one address spelled two
# ways 6 times (one key, one consignee), 20 distinct addresses, and one
# record that is not a Declaration.
secret = "Unit 4711 Quietlane Street"
decls = []
for i in range(12):
    decls.append(declaration(f"{p.prefix}-e{i}", consignee={
        "name": f"Ann Empty {i}", "address": "", "city": "Springfield", "postal_code": "62701", "country": "US"}))
for i in range(3):
    decls.append(declaration(f"{p.prefix}-s{i}", consignee={
        "name": f"Sam Space {i}", "address": "   ", "city": "Springfield", "postal_code": "62701", "country": "US"}))
for i in range(4):
    decls.append(declaration(f"{p.prefix}-n{i}", consignee={
        "name": f"Nat Na {i}", "address": "N/A", "city": "Springfield", "postal_code": "62701", "country": "US"}))
for i in range(6):
    decls.append(declaration(f"{p.prefix}-p{i}", consignee={
        "name": "Pat Doe", "address": "1234 Elm Street, Apt. 5B" if i % 2 else "1234 ELM ST APT 5B",
        "city": "Springfield", "postal_code": "62701", "country": "US"}))
for i in range(20):
    decls.append(declaration(f"{p.prefix}-u{i}", consignee={
        "name": f"Una Unique {i}", "address": f"{secret} {i}", "city": "Springfield", "postal_code": "62701",
        "country": "US"}))
produce(p, decls)
res = run([TOOL, "produce", BOOTSTRAP, p.topics["declarations"], 8, 50])
c.equal(res.returncode, 0, "one record that is not a Declaration produced", res.stderr)
total = len(decls) + 1

# ---- pr_topic_stats consignees on the input
res = run([STATS, "consignees", BOOTSTRAP, p.topics["declarations"]])
c.equal(res.returncode, 0, "pr_topic_stats consignees exits 0", res.stderr)
stats = json.loads(res.stdout) if res.returncode == 0 else {}
c.equal(stats.get("records"), total, "consignees: every record read")
c.equal(stats.get("expected"), total, "consignees: the watermarks cover every record")
c.equal(stats.get("undecodable"), 1, "consignees: the one non-Declaration is counted undecodable")
c.equal(stats.get("blank_address"), 15, "consignees: 12 empty + 3 all-space addresses are blank")
c.equal(stats.get("missing_address"), 19, "consignees: blank + 4 N/A placeholders are missing")
c.equal(stats.get("distinct_addresses"), 23, "consignees: blank, N A, Pat's two spellings and 20 more")
c.equal(stats.get("hottest_address_records"), 15, "consignees: the hottest address is the blank one")
c.check(abs(stats.get("hottest_address_share", 0) - 15 / len(decls)) < 1e-5,
        "consignees: hottest share over the decoded records", str(stats))
c.equal(stats.get("distinct_consignees"), len(decls) - 5, "consignees: Pat Doe's 6 declarations are one consignee")
c.check(secret.upper() not in res.stdout.upper() and "ELM" not in res.stdout.upper() and "Pat" not in res.stdout,
        "consignees: no name or address in the output")

# ---- pr_twohop: input -> repartition -> output
summary = os.path.join(os.environ.get("PR_TEST_WORK", "/tmp"), f"{p.prefix}-twohop.json")
res = run([TWOHOP, "--brokers", BOOTSTRAP, "--input", p.topics["declarations"], "--repartition", repartition,
           "--output", p.topics["decisions"], "--group", f"{p.prefix}.twohop", "--count", total,
           "--summary", summary])
c.equal(res.returncode, 0, "pr_twohop exits 0", res.stderr[-2000:])
s = json.load(open(summary)) if os.path.exists(summary) else {}
for key in ("consumed", "consumed_repartition", "delivered_repartition", "delivered"):
    c.equal(s.get(key), total, f"twohop summary: {key}")
c.equal(s.get("failed"), 0, "twohop summary: nothing failed")
c.check(s.get("active_seconds", 0) > 0 and s.get("cpu_seconds", 0) > 0, "twohop summary: time and CPU", str(s))


def pairs(rows):
    return collections.Counter((r["_key_hex"], r["value_hex"]) for r in rows)


source = pairs(raw(p, p.topics["declarations"]))
c.equal(sum(source.values()), total, "input holds every record")
c.equal(pairs(raw(p, repartition)), source, "repartition topic: the same keys and bytes, each once")
c.equal(pairs(raw(p, p.topics["decisions"])), source, "output topic: the same keys and bytes, each once")

# ---- pr_topic_stats offsets against the records the broker holds
for topic in (p.topics["declarations"], repartition):
    res = run([STATS, "offsets", BOOTSTRAP, topic])
    c.equal(res.returncode, 0, f"pr_topic_stats offsets {topic} exits 0", res.stderr)
    off = json.loads(res.stdout) if res.returncode == 0 else {"partitions": []}
    held = collections.Counter(r["partition"] for r in records(topic))
    got = {x["partition"]: x["records"] for x in off["partitions"]}
    c.equal(len(got), 8, f"offsets {topic}: 8 partitions")
    c.equal({k: v for k, v in got.items() if v}, dict(held), f"offsets {topic}: records per partition")
    c.equal(off.get("records"), total, f"offsets {topic}: total")
    c.equal(off.get("largest_records"), max(held.values()), f"offsets {topic}: largest partition")
    c.check(abs(off.get("largest_share", 0) - max(held.values()) / total) < 1e-5,
            f"offsets {topic}: largest share", str(off))
    c.equal(off.get("even_share"), 0.125, f"offsets {topic}: even share of 8 partitions")
res = run([STATS, "offsets", BOOTSTRAP, f"{p.prefix}.no-such-topic"])
c.check(res.returncode == 1 and "no-such-topic" in res.stderr, "offsets of a missing topic: exit 1 naming it",
        f"rc {res.returncode} {res.stderr}")
c.done()
