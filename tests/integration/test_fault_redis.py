"""Redis stopped and restarted mid-stream with redis.on_unavailable: pause:
no loss, nothing decided while Redis was away, every decision with full
reference data (refdata_version not degraded)."""
import threading
import time

from harness import Checks, Pipeline, load_refdata, services, stop, wait_until_decided

c = Checks("fault_redis")
c.equal(load_refdata().returncode, 0, "reference data loads")
p = Pipeline("redis", extra_sets=["redis.on_unavailable=pause", "redis.timeout_ms=500"])
p.create_topics()
result = {}
gen = threading.Thread(target=lambda: result.update(ids=p.gen(20000, seed=51, extra=("--rate", "4000"))))
gen.start()
proc = p.start()
time.sleep(2)
r = services("stop-redis")
c.equal(r.returncode, 0, "redis stopped", r.stderr)
down_from = time.time() * 1000
time.sleep(5)
up_at = time.time() * 1000
r = services("start-redis")
c.equal(r.returncode, 0, "redis restarted", r.stderr)
gen.join(timeout=300)
good, _ = result["ids"]
counts = wait_until_decided(p, good, timeout=240)
c.check(proc.poll() is None, "parcelrisk kept running through the outage")
c.equal(stop(proc), 0, "clean stop")
decisions = p.tail("decisions")
missing = [i for i in good if i not in counts]
c.equal(len(missing), 0, "no declaration lost across the Redis outage")
c.check(all(not d["refdata_version"].endswith("+degraded") and d["refdata_version"] != "none" for d in decisions),
        "every decision made with full reference data")
during = [d for d in decisions if down_from + 1500 < d["decided_at"] < up_at - 200]
c.equal(len(during), 0, "nothing decided while Redis was away (pause)")
log = open(proc.log_path).read()
c.check(("unreachable" in log or "connection" in log) and "unavailable, retrying" in log,
        "the outage and the retries were logged")
print(f"REPORT redis restart: 20000 in, {len(counts)} decided, {len(missing)} lost, "
      f"{sum(n - 1 for n in counts.values() if n > 1)} decided twice")
c.done()
