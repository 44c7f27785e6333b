"""Schema Registry (issue 13), against the real broker and Redis of the fixture.

No Confluent-compatible registry server can be installed on these machines
(see ops/RUNBOOK.md, "Schema Registry"), so this test covers what needs
none, with real failures rather than a stand-in server:

- a registry that does not answer (a loopback port with nothing listening):
  `run` waits for it before consuming, decides nothing and dead-letters
  nothing, and a stop while waiting exits 0 with nothing committed;
- the basic-auth password never appears in the log;
- the same declarations then run without a registry: every one is decided
  exactly once (nothing was consumed for good by the waiting run), and every
  value is plain Avro binary as before (no Confluent header), which `tail`
  reads without a schema id.

The framing and the resolution of other schema versions are unit-tested in
tests/test_wire.c (schemas fed directly).
"""
import collections
import socket
import time

from harness import Checks, Pipeline, load_refdata, stop, wait_for

c = Checks("registry")
c.equal(load_refdata().returncode, 0, "reference data loads")


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SECRET = "pw-" + str(time.time_ns())
p = Pipeline("registry", extra_sets=["batch.size=100"])
p.create_topics()
good, bad = p.gen(500, bad=0, seed=31)
c.equal(len(good), 500, "500 declarations produced")

registry = [
    "--set", f"schema_registry.url=http://127.0.0.1:{closed_port()}",
    "--set", "schema_registry.timeout_ms=500",
    "--set", "schema_registry.user=hub-reader",
    "--set", f"schema_registry.password={SECRET}",
]
proc = p.start(*registry)


def log_text():
    with open(proc.log_path, errors="replace") as fh:
        return fh.read()


c.check(wait_for(lambda: "schema registry unavailable" in log_text(), 60),
        "run says the registry is unavailable and waits", log_text()[-1500:])
time.sleep(5)  # long enough to have consumed and decided everything, were it not waiting
c.check(proc.poll() is None, "run keeps waiting instead of exiting")
c.equal(len(p.tail_raw("decisions")), 0, "nothing decided while the registry does not answer")
c.equal(len(p.tail_raw("dlq")), 0, "nothing dead-lettered while the registry does not answer")
rc = stop(proc)
c.equal(rc, 0, "a stop while waiting for the registry exits 0")
log = log_text()
c.check(SECRET not in log, "the registry password never appears in the log")
c.check("waiting for it before consuming" in log, "the log says nothing is consumed meanwhile")

rc, summary = p.run_until_idle()
c.equal(rc, 0, "run without a registry exits 0 when idle")
decisions = p.tail("decisions")
ids = collections.Counter(d["declaration_id"] for d in decisions)
c.equal(set(ids), set(good), "every declaration decided once the registry is not required")
c.equal(sum(n - 1 for n in ids.values()), 0, "none decided twice")
c.equal(len(p.tail("dlq")), 0, "no dead letters")
raw = p.tail_raw("decisions")
c.equal(len(raw), len(good), "raw decisions read")
framed = [r for r in raw if r["value_hex"].startswith("00")]
c.equal(len(framed), 0, "without a registry no value carries a Confluent header")
c.check(all("_schema_id" not in d for d in decisions), "tail prints no schema id for plain values")
c.done()
