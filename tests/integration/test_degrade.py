"""redis.on_unavailable: degrade. With Redis stopped, parcelrisk keeps deciding
from its in-process cache instead of pausing: a party it has already looked up
is still matched, one it has never seen counts as not listed, the day's
aggregate state is not consulted, and every such decision says so
(refdata_version ends in "+degraded"). Nothing learned while degraded is
cached: once Redis is back, the party that was missed is matched again and
decisions carry full reference data."""
import time
import uuid

from harness import (Checks, Pipeline, declaration, load_refdata, produce, services, stop,
                     wait_until_decided)

c = Checks("degrade")
c.equal(load_refdata().returncode, 0, "reference data loads")
run_id = uuid.uuid4().hex[:6]
p = Pipeline("degrade", extra_sets=["redis.on_unavailable=degrade", "redis.timeout_ms=500"])
p.create_topics()

SHIPPER = {"name": "SHENZHEN BRIGHT TRADING", "address": "1 Rd", "city": "Shenzhen",
           "postal_code": "518000", "country": "CN"}          # listed, severity 3
SELLER = {"name": "QuickDeal Store 7", "address": "Online", "city": "", "postal_code": "",
          "country": "CN"}                                     # listed, severity 1


def reasons(d):
    return {r["code"] for r in d["reasons"]}


def decided(ids, timeout=120):
    counts = wait_until_decided(p, ids, timeout=timeout)
    by_id = {}
    for d in p.tail("decisions"):
        by_id[d["declaration_id"]] = d
    return counts, by_id


proc = p.start()
# 1. Redis up: the violator shipper is looked up once and cached.
warm = [declaration(f"W-{run_id}-v", shipper=SHIPPER)] + [declaration(f"W-{run_id}-{i}") for i in range(20)]
produce(p, warm)
counts, got = decided([d["declaration_id"] for d in warm])
c.equal(sum(1 for d in warm if d["declaration_id"] in counts), len(warm), "warm-up declarations decided")
w = got.get(f"W-{run_id}-v")
c.check(w is not None and "KNOWN_VIOLATOR" in reasons(w) and not w["refdata_version"].endswith("+degraded"),
        "with Redis up: the violator is matched with full reference data", str(w and w["refdata_version"]))

# 2. Redis down: decisions keep coming, from the cache, marked degraded.
r = services("stop-redis")
c.equal(r.returncode, 0, "redis stopped", r.stderr)
down = [declaration(f"X-{run_id}-cached", shipper=SHIPPER),
        declaration(f"X-{run_id}-unseen", seller=SELLER, marketplace="Temu")] + \
       [declaration(f"X-{run_id}-{i}") for i in range(50)]
t0 = time.time()
produce(p, down)
counts, got = decided([d["declaration_id"] for d in down], timeout=90)
outage_decided = sum(1 for d in down if d["declaration_id"] in counts)
c.equal(outage_decided, len(down), "every declaration is decided while Redis is down (no pause)")
c.check(proc.poll() is None, "parcelrisk keeps running through the outage")
during = [got[d["declaration_id"]] for d in down if d["declaration_id"] in got]
c.check(len(during) == len(down) and all(d["refdata_version"].endswith("+degraded") for d in during),
        "every decision made during the outage is marked +degraded",
        str(sorted({d["refdata_version"] for d in during})))
x = got.get(f"X-{run_id}-cached")
c.check(x is not None and "KNOWN_VIOLATOR" in reasons(x),
        "a party already in the cache is still matched while degraded", str(x and reasons(x)))
u = got.get(f"X-{run_id}-unseen")
c.check(u is not None and "KNOWN_VIOLATOR" not in reasons(u),
        "a party never looked up counts as not listed while degraded", str(u and reasons(u)))
marked = sum(1 for d in during if d["refdata_version"].endswith("+degraded"))
print(f"REPORT degrade: {len(down)} declarations during the outage, {outage_decided} decided in "
      f"{time.time() - t0:.1f} s, {marked} marked +degraded")

# 3. Redis back: full reference data again, and the miss was not cached.
r = services("start-redis")
c.equal(r.returncode, 0, "redis restarted", r.stderr)
after = [declaration(f"Y-{run_id}-unseen", seller=SELLER, marketplace="Temu")] + \
        [declaration(f"Y-{run_id}-{i}") for i in range(20)]
time.sleep(1)
produce(p, after)
counts, got = decided([d["declaration_id"] for d in after])
c.equal(sum(1 for d in after if d["declaration_id"] in counts), len(after), "declarations after the outage decided")
y = got.get(f"Y-{run_id}-unseen")
c.check(y is not None and "KNOWN_VIOLATOR" in reasons(y) and not y["refdata_version"].endswith("+degraded"),
        "with Redis back, the party missed during the outage is matched with full reference data",
        str(y and (reasons(y), y["refdata_version"])))
c.equal(stop(proc), 0, "clean stop")
c.done()
