"""Three instances in one group, one leaving (SIGTERM) and one joining
mid-stream: no loss in either mode; no duplicate in exactly-once mode (and
none in at-least-once either, since leaving is a clean stop)."""
import threading
import time

from harness import Checks, Pipeline, load_refdata, stop, wait_until_decided

c = Checks("rebalance")
c.equal(load_refdata().returncode, 0, "reference data loads")


def scenario(mode):
    p = Pipeline(f"rebal-{mode.split('_')[0]}", extra_sets=["batch.size=500", f"processing.guarantee={mode}"])
    p.create_topics()
    result = {}
    gen = threading.Thread(target=lambda: result.update(ids=p.gen(40000, seed=61, extra=("--rate", "5000"))))
    gen.start()
    ids = lambda n: (f"--set", f"processing.instance_id=rb-{n}")
    procs = [p.start(*ids(n)) for n in range(3)]
    time.sleep(3)
    rc_leave = stop(procs[0])  # one leaves
    time.sleep(2)
    procs.append(p.start(*ids(3)))  # one joins
    gen.join(timeout=300)
    good, _ = result["ids"]
    counts = wait_until_decided(p, good, timeout=240)
    rcs = [stop(x) for x in procs[1:]]
    summaries = [p.summary(x) for x in procs]
    c.equal(rc_leave, 0, f"{mode}: the leaving instance stops cleanly")
    c.equal(rcs, [0, 0, 0], f"{mode}: the others stop cleanly")
    c.check(sum(1 for s in summaries if s.get("consumed", 0) > 0) >= 3, f"{mode}: the work was shared",
            str([s.get("consumed") for s in summaries]))
    missing = [i for i in good if i not in counts]
    dups = sum(n - 1 for n in counts.values() if n > 1)
    c.equal(len(missing), 0, f"{mode}: no declaration lost across rebalances")
    c.equal(dups, 0, f"{mode}: no duplicate (clean leave and join)")
    print(f"REPORT rebalance {mode}: 40000 in, {len(counts)} decided, {len(missing)} lost, {dups} decided twice")


scenario("at_least_once")
scenario("exactly_once")
c.done()
