"""A version of the reference data is usable only when every table its
manifest lists is present with its row count (issue 10: with
pr:ref:<version>:vio deleted and pr:ref:current intact, a severity-3 violator
was decided BLUE/GREEN with an ordinary refdata_version and no log line).

1. `refdata load` writes the manifest into the meta hash; `refdata status`
   shows it and checks it (ok; a table deleted, cut short, of another type,
   or a manifest missing: FAILED and exit 1).
2. redis.on_unavailable: pause, the vio table deleted before the pipeline
   starts: nothing is decided, the log says why (exact line, at most once per
   10 s); after loading the reference data again every declaration is
   decided exactly once, the violator RED with KNOWN_VIOLATOR.
3. redis.on_unavailable: degrade: a new version whose vio table is deleted is
   never adopted: decisions come from the cache of the last good version and
   carry <that version>+degraded; a table deleted from the current version
   while running is found at the next batch (every batch compares the
   tables' sizes with the manifest); a good load ends it.

Uses the services Redis (shared: never FLUSHALL; the tests run one at a
time) and ends with a clean reference set current."""
import re
import subprocess
import time
import uuid

from harness import (BIN, REDIS, Checks, Pipeline, load_refdata, produce, redis_cli, stop,
                     wait_for, wait_until_decided)
from harness import declaration as harness_declaration

c = Checks("refdata_manifest")
run_id = uuid.uuid4().hex[:6]

SHIPPER = {"name": "SHENZHEN BRIGHT TRADING", "address": "1 Rd", "city": "Shenzhen",
           "postal_code": "518000", "country": "CN"}          # listed, severity 3
SELLER = {"name": "QuickDeal Store 7", "address": "Online", "city": "", "postal_code": "",
          "country": "CN"}                                     # listed, severity 1
MANIFEST = "hts:hash:13,vio:hash:4,cty:hash:4"                 # the harness's test set
LOG_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def declaration(did, **over):
    """The harness's clean declaration, filed when it arrives (event_time =
    arrival_time), so that only the reference data decides its lane."""
    d = harness_declaration(did, **over)
    d["event_time"] = d["arrival_time"]
    return d


def loaded(extra=()):
    res = load_refdata(extra=extra)
    m = re.search(r"version (\S+) is current", res.stdout)
    c.check(res.returncode == 0 and m is not None, "reference data loads", res.stderr[-500:])
    return m.group(1) if m else "?"


def status():
    return subprocess.run([BIN, "refdata", "status", "--redis", REDIS], capture_output=True,
                          text=True, timeout=60)


def status_field(res, name):
    m = re.search(rf"^{name}: (.*)$", res.stdout, re.M)
    return m.group(1) if m else None


def codes(d):
    return {r["code"] for r in d["reasons"]}


def points(d, code):
    return next((r["points"] for r in d["reasons"] if r["code"] == code), None)


def by_id(p):
    return {d["declaration_id"]: d for d in p.tail("decisions")}


def log_lines(proc, pattern):
    with open(proc.log_path) as fh:
        return [ln.rstrip("\n") for ln in fh if re.fullmatch(pattern, ln.rstrip("\n"))]


def clean_ok(d, version):
    """A clean declaration: nothing but (maybe) the random sample, full data."""
    return d is not None and codes(d) <= {"RANDOM_COMPLIANCE"} and d["refdata_version"] == version


# ------------------------------------------------------------ 1. manifest
v1 = loaded()
c.equal(redis_cli("HGET", f"pr:ref:{v1}:meta", "manifest"), MANIFEST,
        "load writes the manifest: every table with its exact size")
st = status()
c.equal(st.returncode, 0, "status exits 0 on an intact version", st.stderr)
c.equal(status_field(st, "manifest"), MANIFEST, "status shows the manifest")
c.equal(status_field(st, "manifest_check"), "ok", "status: the manifest checks out")

c.equal(redis_cli("DEL", f"pr:ref:{v1}:vio"), "1", "pr:ref:<version>:vio deleted")
c.equal(redis_cli("GET", "pr:ref:current"), v1, "pr:ref:current still names the version")
st = status()
c.equal(st.returncode, 1, "status exits 1 when a table is missing")
c.equal(status_field(st, "manifest_check"),
        f"FAILED: pr:ref:{v1}:vio is missing (the manifest lists 4 rows)",
        "status names the missing table and its listed rows")
c.check(f"current version {v1} does not check out against its manifest" in st.stderr,
        "status says why on stderr", st.stderr)

# ------------------------------------------------ 2. pause: nothing decided
p = Pipeline("manifest-pause", extra_sets=["redis.on_unavailable=pause"])
p.create_topics()
pause_decls = [declaration(f"P-{run_id}-v", shipper=SHIPPER)] + \
              [declaration(f"P-{run_id}-{i}") for i in range(4)]
proc = p.start()
t_start = time.time()
produce(p, pause_decls)
want_line = (rf"{LOG_TS} WARN  parcelrisk: enrich: reference data version {re.escape(v1)} is "
             rf"unavailable: pr:ref:{re.escape(v1)}:vio is missing \(the manifest lists 4 rows\); "
             r"not deciding until it checks out; load the reference data again")
c.check(wait_for(lambda: log_lines(proc, want_line), 90), "the log names the version and the missing table")
time.sleep(12)  # keep it unavailable a while: retries go on, nothing decided
unavailable_for = time.time() - t_start
c.equal(len(p.tail("decisions")), 0, "no decision while the vio table is missing (pause)")
c.check(proc.poll() is None, "parcelrisk keeps running (paused, not failed)")
n_lines = len(log_lines(proc, want_line))
c.check(1 <= n_lines <= int(unavailable_for / 10) + 1,
        "the reason is logged at most once per 10 s", f"({n_lines} lines in {unavailable_for:.0f} s)")
c.check(len(log_lines(proc, rf"{LOG_TS} WARN  parcelrisk: operator enrich: dependency unavailable, "
                            r"retrying in \d+ ms")) >= 2,
        "the engine retries the batch")
with open(proc.log_path) as fh:
    text = fh.read()
c.check("SHENZHEN" not in text.upper() and "NORTHGATE" not in text.upper(),
        "no name from the reference data in the log")

v2 = loaded()
counts = wait_until_decided(p, [d["declaration_id"] for d in pause_decls], timeout=120)
c.equal(sorted(counts.values()), [1] * len(pause_decls),
        "after the reload every declaration is decided exactly once")
got = by_id(p)
c.equal(len(p.tail("decisions")), len(pause_decls), "exactly as many decisions as declarations")
v = got.get(f"P-{run_id}-v")
c.check(v is not None and v["lane"] == "RED" and points(v, "KNOWN_VIOLATOR") == 700
        and v["refdata_version"] == v2,
        "the severity-3 violator is RED with KNOWN_VIOLATOR 700 under the reloaded version",
        str(v and (v["lane"], v["reasons"], v["refdata_version"])))
clean = [got.get(f"P-{run_id}-{i}") for i in range(4)]
c.equal(sum(1 for d in clean if clean_ok(d, v2)), 4,
        "the clean declarations are decided with the reloaded version",
        str([(d["lane"], sorted(codes(d)), d["refdata_version"]) for d in clean if d]))
c.equal(len(log_lines(proc, rf"{LOG_TS} INFO  parcelrisk: enrich: reference data version "
                            rf"{re.escape(v2)} checks out against its manifest: deciding from it")), 1,
        "the log says when a version checks out again")

# The table deleted while the pipeline runs on that version: the next batch
# stops, it is not decided from the missing table.
c.equal(redis_cli("DEL", f"pr:ref:{v2}:vio"), "1", "the current version's vio table deleted while running")
late = [declaration(f"Q-{run_id}-v", shipper=SHIPPER)]
produce(p, late)
late_line = (rf"{LOG_TS} WARN  parcelrisk: enrich: reference data version {re.escape(v2)} is "
             rf"unavailable: pr:ref:{re.escape(v2)}:vio is missing \(the manifest lists 4 rows\); "
             r"not deciding until it checks out; load the reference data again")
c.check(wait_for(lambda: log_lines(proc, late_line), 60), "the log names the table deleted while running")
time.sleep(5)
c.equal(len(p.tail("decisions")), len(pause_decls), "no decision from the table deleted while running")
v2b = loaded()
counts = wait_until_decided(p, [f"Q-{run_id}-v"], timeout=120)
q = by_id(p).get(f"Q-{run_id}-v")
c.check(q is not None and q["lane"] == "RED" and points(q, "KNOWN_VIOLATOR") == 700
        and q["refdata_version"] == v2b,
        "after the reload it is RED with KNOWN_VIOLATOR 700", str(q and (q["lane"], q["refdata_version"])))
c.equal(len(p.tail("decisions")), len(pause_decls) + 1, "pause run: exactly one decision per declaration")
c.equal(stop(proc), 0, "clean stop")

# -------------------------------------------- 3. degrade: the cache decides
p = Pipeline("manifest-degrade", extra_sets=["redis.on_unavailable=degrade"])
p.create_topics()
v3 = loaded()
proc = p.start()
warm = [declaration(f"W-{run_id}-v", shipper=SHIPPER), declaration(f"W-{run_id}-0")]
produce(p, warm)
counts = wait_until_decided(p, [d["declaration_id"] for d in warm], timeout=120)
got = by_id(p)
w = got.get(f"W-{run_id}-v")
c.check(w is not None and w["lane"] == "RED" and "KNOWN_VIOLATOR" in codes(w) and w["refdata_version"] == v3,
        "intact version: the violator is RED with full reference data",
        str(w and (w["lane"], w["refdata_version"])))

# A new version with its vio table deleted is never adopted.
v4 = loaded()
c.equal(redis_cli("DEL", f"pr:ref:{v4}:vio"), "1", "the new version's vio table deleted")
down = [declaration(f"X-{run_id}-v", shipper=SHIPPER),
        declaration(f"X-{run_id}-seller", seller=SELLER, marketplace="Temu"),
        declaration(f"X-{run_id}-0")]
produce(p, down)
counts = wait_until_decided(p, [d["declaration_id"] for d in down], timeout=120)
got = by_id(p)
c.equal(sum(1 for d in down if counts.get(d["declaration_id"]) == 1), len(down),
        "degrade: every declaration decided exactly once")
c.equal(sorted({got[d["declaration_id"]]["refdata_version"] for d in down if d["declaration_id"] in got}),
        [f"{v3}+degraded"], "degrade: decisions carry the last good version marked +degraded")
x = got.get(f"X-{run_id}-v")
c.check(x is not None and x["lane"] == "RED" and points(x, "KNOWN_VIOLATOR") == 700,
        "degrade: the cached severity-3 violator is still RED", str(x and (x["lane"], x["reasons"])))
xs = got.get(f"X-{run_id}-seller")
c.check(xs is not None and "KNOWN_VIOLATOR" not in codes(xs),
        "degrade: a party never looked up counts as not listed", str(xs and codes(xs)))
c.check(len(log_lines(proc, rf"{LOG_TS} WARN  parcelrisk: enrich: reference data version {re.escape(v4)} is "
                            rf"unavailable: pr:ref:{re.escape(v4)}:vio is missing \(the manifest lists 4 rows\); "
                            rf"deciding from the cache of version {re.escape(v3)}, marked "
                            rf"{re.escape(v3)}\+degraded \(redis.on_unavailable: degrade\); load the "
                            r"reference data again")) >= 1,
        "degrade: the log names the unavailable version, the missing table and the marker")

# A table deleted from the current version while running: every batch
# compares the tables' sizes with the manifest, so the next batch finds it.
v5 = loaded()
fresh = [declaration(f"Y-{run_id}-v", shipper=SHIPPER)]
produce(p, fresh)
counts = wait_until_decided(p, [d["declaration_id"] for d in fresh], timeout=120)
y = by_id(p).get(f"Y-{run_id}-v")
c.check(y is not None and y["lane"] == "RED" and y["refdata_version"] == v5,
        "a good load ends the degraded decisions", str(y and y["refdata_version"]))
c.equal(redis_cli("DEL", f"pr:ref:{v5}:vio"), "1", "the current version's vio table deleted while running")
later = [declaration(f"Z-{run_id}-v", shipper=SHIPPER),
         declaration(f"Z-{run_id}-seller", seller=SELLER, marketplace="Temu")]
produce(p, later)
counts = wait_until_decided(p, [d["declaration_id"] for d in later], timeout=120)
got = by_id(p)
c.equal([got[d["declaration_id"]]["refdata_version"] if d["declaration_id"] in got else None for d in later],
        [f"{v5}+degraded"] * 2, "the next batch finds the table deleted later: decisions marked +degraded")
z = got.get(f"Z-{run_id}-v")
c.check(z is not None and z["lane"] == "RED" and "KNOWN_VIOLATOR" in codes(z),
        "the violator cached before the deletion is still RED", str(z and z["lane"]))
zs = got.get(f"Z-{run_id}-seller")
c.check(zs is not None and "KNOWN_VIOLATOR" not in codes(zs),
        "the seller never looked up is not matched from a missing table", str(zs and codes(zs)))

v6 = loaded()
after = [declaration(f"A-{run_id}-seller", seller=SELLER, marketplace="Temu")]
produce(p, after)
counts = wait_until_decided(p, [d["declaration_id"] for d in after], timeout=120)
a = by_id(p).get(f"A-{run_id}-seller")
c.check(a is not None and points(a, "KNOWN_VIOLATOR") == 200 and a["refdata_version"] == v6,
        "after a good load the seller is matched with full reference data",
        str(a and (a["reasons"], a["refdata_version"])))
all_ids = [d["declaration_id"] for d in warm + down + fresh + later + after]
decisions = p.tail("decisions")
c.equal(len(decisions), len(all_ids), "degrade run: exactly one decision per declaration")
c.equal(stop(proc), 0, "clean stop")

# ------------------------------------------- 4. other ways not to check out
v7 = loaded()
redis_cli("HDEL", f"pr:ref:{v7}:vio", "SELLER|QUICKDEAL STORE 7")
st = status()
c.equal((st.returncode, status_field(st, "manifest_check")),
        (1, f"FAILED: pr:ref:{v7}:vio has 3 rows (the manifest lists 4)"),
        "a table cut short does not check out")
v8 = loaded()
redis_cli("DEL", f"pr:ref:{v8}:cty")
redis_cli("SET", f"pr:ref:{v8}:cty", "x")
st = status()
c.equal((st.returncode, status_field(st, "manifest_check")),
        (1, f"FAILED: pr:ref:{v8}:cty is a string (the manifest lists a hash)"),
        "a table of another type does not check out")
v9 = loaded()
redis_cli("HDEL", f"pr:ref:{v9}:meta", "manifest")
st = status()
c.equal((st.returncode, status_field(st, "manifest"), status_field(st, "manifest_check")),
        (1, "none", "FAILED: it has no manifest (loaded by an older parcelrisk?)"),
        "a version without a manifest (an older loader) does not check out")
v10 = loaded()
redis_cli("HSET", f"pr:ref:{v10}:meta", "manifest", "hts:hash:13,cty:hash:4")
st = status()
c.equal((st.returncode, status_field(st, "manifest_check")),
        (1, "FAILED: its manifest does not list table vio"),
        "a manifest that leaves out a table the readers need does not check out")

v11 = loaded()  # end with an intact version current
st = status()
c.equal((st.returncode, status_field(st, "manifest_check")), (0, "ok"), "the final version checks out")
c.done()
