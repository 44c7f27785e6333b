"""The Kafka broker stopped for several seconds mid-stream and restarted: no
loss, no crash (the process is still running and stops cleanly)."""
import threading
import time

from harness import Checks, Pipeline, load_refdata, services, stop, wait_until_decided

c = Checks("fault_broker")
c.equal(load_refdata().returncode, 0, "reference data loads")
p = Pipeline("broker")
p.create_topics()
result = {}
gen = threading.Thread(target=lambda: result.update(ids=p.gen(30000, bad=10, seed=41, extra=("--rate", "5000"))))
gen.start()
proc = p.start()
time.sleep(2.5)
r = services("stop-kafka")
c.equal(r.returncode, 0, "broker stopped", r.stderr)
time.sleep(6)
c.check(proc.poll() is None, "parcelrisk keeps running while the broker is down")
r = services("start-kafka")
c.equal(r.returncode, 0, "broker restarted", r.stderr)
gen.join(timeout=300)
good, bad = result["ids"]
counts = wait_until_decided(p, good, timeout=240)
c.check(proc.poll() is None, "parcelrisk is still running after the broker came back")
rc = stop(proc)
c.equal(rc, 0, "clean stop after the outage")
missing = [i for i in good if i not in counts]
c.equal(len(missing), 0, "no declaration lost across the broker outage")
log = open(proc.log_path).read()
c.check("Kafka unreachable" in log or "Broker" in log or "Connection refused" in log,
        "the outage was logged")
print(f"REPORT broker restart: 30000 in, {len(counts)} decided, {len(missing)} lost, "
      f"{sum(n - 1 for n in counts.values() if n > 1)} decided twice")
c.done()
