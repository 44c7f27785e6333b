"""`parcelrisk dlq replay` end to end on the real broker.

A first run with input.max_message_bytes=150 dead-letters every declaration
as TOO_LARGE (the 'fault'): four of normal size kept whole in the DLQ, two
huge ones cut to input.dlq_keep_bytes=1000. Three garbage messages are
DECODE_ERROR, one empty message EMPTY. Then:
- a --dry-run replay of TOO_LARGE counts (4 to send, 2 cut) and produces nothing;
- --since/--until select by received_at;
- the real replay sends exactly the 4 whole payloads, byte for byte, with
  their original keys and a parcelrisk-replay header naming the dead letter;
  the 2 cut ones are skipped and said so;
- DECODE_ERROR is replayed too, EMPTY is skipped for want of a payload;
- a second run with the default cap decides the 4 declarations (exactly
  those, once) and dead-letters the 3 garbage messages again, at their new
  offsets."""
import collections
import datetime
import os
import subprocess

from harness import (BOOTSTRAP, WORK, Checks, Pipeline, avro_bytes, declaration, line, load_refdata,
                     produce)

c = Checks("dlq_replay")
loaded = load_refdata()
c.equal(loaded.returncode, 0, "reference data loads", loaded.stderr[-500:])
p = Pipeline("dlqreplay", partitions=4)
p.create_topics()
DLQ = p.topics["dlq"]

fixable = [f"RP-{i}" for i in range(1, 5)]
huge = ["RP-HUGE-1", "RP-HUGE-2"]
produce(p, [declaration(i) for i in fixable] +
        [declaration(i, lines=[line(description="cotton t-shirt " + "x" * 3000)]) for i in huge])
for key_len, value_len in ((3, 40), (4, 40), (5, 40), (6, 0)):
    subprocess.run([os.environ["PR_TEST_KAFKA"], "produce", BOOTSTRAP, p.topics["declarations"],
                    str(key_len), str(value_len)], check=True, timeout=120)
raw0 = p.tail_raw()
c.equal(len(raw0), 10, "10 records in the input topic")
original = {bytes.fromhex(r["_key_hex"]).decode(): bytes.fromhex(r["value_hex"]) for r in raw0}
c.check(all(150 < len(original[i]) <= 1000 for i in fixable), "the 4 fixable ones are 151-1000 bytes",
        str({i: len(original[i]) for i in fixable}))
c.check(all(len(original[i]) > 3000 for i in huge), "the 2 huge ones are over 3000 bytes")

# ---------------------------------------------------------------- the fault
proc = p.start("--exit-when-idle", "4000", "--set", "input.max_message_bytes=150",
               "--set", "input.dlq_keep_bytes=1000")
rc = proc.wait(timeout=600)
summary = p.summary(proc)
c.equal(rc, 0, "run 1 exits 0")
c.equal((summary.get("decisions"), summary.get("dead_letters")), (0, 10), "run 1: 10 dead letters")
dlq = p.tail("dlq")
codes = collections.Counter(d["error_code"] for d in dlq)
c.equal(dict(codes), {"TOO_LARGE": 6, "DECODE_ERROR": 3, "EMPTY": 1}, "dead letters of three codes")
by_key = {d["_key"]: d for d in dlq}
c.check(all(avro_bytes(by_key[i]["payload"]) == original[i] for i in fixable),
        "the fixable ones are kept whole in the DLQ")
c.check(all(len(avro_bytes(by_key[i]["payload"])) == 1000 for i in huge),
        "the huge ones are cut to 1000 bytes in the DLQ")


def replay(*args):
    res = p.call("dlq", "replay", *args, check=False)
    counts = {}
    for ln in res.stdout.splitlines():
        if ": " in ln and not ln.startswith("dlq replay"):
            k, v = ln.split(": ", 1)
            counts[k] = int(v.split()[0])
    return res, counts


# ----------------------------------------------------------------- dry run
res, counts = replay("--code", "TOO_LARGE", "--dry-run")
c.equal(res.returncode, 0, "dry run exits 0", res.stderr[-800:])
c.equal(counts, {"scanned": 10, "matched": 6, "would_replay": 4, "replayed": 0,
                 "skipped_without_payload": 0, "skipped_cut": 2, "skipped_internal": 0, "unreadable": 0},
        "dry run: counts", res.stdout)
c.equal(len(p.tail_raw()), 10, "dry run: nothing produced")
c.equal(res.stderr.count("skipped: TOO_LARGE payload kept 1000 of"), 2,
        "dry run: each cut dead letter is named with why", res.stderr[-800:])
res, counts = replay("--code", "DECODE_ERROR", "--dry-run", "--limit", "2")
c.equal((counts.get("would_replay"), counts.get("replayed")), (2, 0), "--limit 2: two would be sent")

today = datetime.datetime.now(datetime.timezone.utc).date()
res, counts = replay("--code", "TOO_LARGE", "--dry-run", "--since", str(today + datetime.timedelta(days=1)))
c.equal((res.returncode, counts.get("matched")), (0, 0), "--since tomorrow: none matched")
res, counts = replay("--code", "TOO_LARGE", "--dry-run", "--until", "2000-01-01")
c.equal((res.returncode, counts.get("matched")), (0, 0), "--until 2000: none matched")
res, counts = replay("--code", "TOO_LARGE", "--dry-run", "--since", str(today - datetime.timedelta(days=1)),
                     "--until", str(today + datetime.timedelta(days=1)))
c.equal(counts.get("matched"), 6, "a window around today: all 6 matched")
res, counts = replay("--code", "NO_SUCH_CODE")
c.equal(res.returncode, 2, "an unknown code: exit 2")
c.check("unknown dead-letter code 'NO_SUCH_CODE'" in res.stderr, "an unknown code: named", res.stderr)

# --------------------------------------------------------------- for real
res, counts = replay("--code", "TOO_LARGE")
c.equal(res.returncode, 0, "replay exits 0", res.stderr[-800:])
c.equal((counts.get("matched"), counts.get("replayed"), counts.get("skipped_cut")), (6, 4, 2),
        "replay: 4 sent, 2 cut skipped", res.stdout)
c.check("acknowledged by %s: 4" % p.topics["declarations"] in res.stdout, "replay: 4 acknowledged")
raw1 = p.tail_raw()
c.equal(len(raw1), 14, "the input topic got exactly 4 more records")
old_coords = {(r["_partition"], r["_offset"]) for r in raw0}
new = [r for r in raw1 if (r["_partition"], r["_offset"]) not in old_coords]
new_keys = sorted(bytes.fromhex(r["_key_hex"]).decode() for r in new)
c.equal(new_keys, sorted(fixable), "the replayed records are the 4 fixable declarations")
c.check(all(bytes.fromhex(r["value_hex"]) == original[bytes.fromhex(r["_key_hex"]).decode()] for r in new),
        "each replayed payload is the original bytes")
dlq_coord = {(d["_partition"], d["_offset"]): d for d in dlq}


def header(r):
    hs = [bytes.fromhex(v).decode() for n, v in r.get("_headers", []) if n == "parcelrisk-replay"]
    return hs[0] if len(hs) == 1 else None


def header_points_home(r):
    h = header(r)
    if not h:
        return False
    topic, part, off = h.rsplit("/", 2)
    d = dlq_coord.get((int(part), int(off)))
    return topic == DLQ and d is not None and d["_key"] == bytes.fromhex(r["_key_hex"]).decode()


c.check(all(header_points_home(r) for r in new),
        "each replayed record has a parcelrisk-replay header naming its dead letter",
        str([header(r) for r in new]))
c.check(all(header(r) is None for r in raw0), "the original records have no replay header")

res, counts = replay("--code", "DECODE_ERROR")
c.equal((res.returncode, counts.get("replayed")), (0, 3), "DECODE_ERROR: 3 replayed", res.stdout)
res, counts = replay("--code", "EMPTY")
c.equal((counts.get("matched"), counts.get("replayed"), counts.get("skipped_without_payload")), (1, 0, 1),
        "EMPTY: skipped, no payload", res.stdout)
raw2 = p.tail_raw()
c.equal(len(raw2), 17, "the input topic: 10 + 4 + 3 records")
replayed_coords = {(r["_partition"], r["_offset"]) for r in raw2 if header(r)}
c.equal(len(replayed_coords), 7, "7 records carry the replay header")

# ------------------------------------------------- the pipeline, fixed
rc, summary = p.run_until_idle()
c.equal(rc, 0, "run 2 exits 0")
c.equal((summary.get("consumed"), summary.get("decisions"), summary.get("dead_letters")), (7, 4, 3),
        "run 2: 7 consumed, 4 decided, 3 dead-lettered again")
decisions = p.tail("decisions")
c.equal(sorted(d["declaration_id"] for d in decisions), sorted(fixable),
        "decisions: exactly the 4 replayed declarations, once each")
c.check(all((d["source_partition"], d["source_offset"]) in replayed_coords for d in decisions),
        "each decision's source is its replayed record")
dlq2 = p.tail("dlq")
again = [d for d in dlq2 if (d["_partition"], d["_offset"]) not in dlq_coord]
c.equal(sorted(d["error_code"] for d in again), ["DECODE_ERROR"] * 3,
        "the replayed garbage is dead-lettered again as DECODE_ERROR")
c.check(all((d["source_partition"], d["source_offset"]) in replayed_coords for d in again),
        "the new dead letters point at the replayed records")
c.done()
