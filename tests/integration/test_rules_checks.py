"""Issue 10, rows 3 and 6, against a real Kafka and Redis, the full chain, in
at_least_once and in exactly_once (read with a read_committed consumer, as
`parcelrisk tail` does):

  (a) DATE_IMPLAUSIBLE (DOMAIN.md sections 5 and 8): arrival_time in 1900, in
      1970, INT64_MIN and INT64_MAX, filed now (event_time now). Each is
      DATE_IMPLAUSIBLE (300) and de minimis is taken at event_time, so under
      the shipped US policy it is SUSPENDED (every origin since 2025-08-29),
      YELLOW with score 300, not GREEN ELIGIBLE under the $200 "beginning"
      row. The same parcel arriving tomorrow is BLUE SUSPENDED, no
      DATE_IMPLAUSIBLE. Exact reasons, points and details.
  (b) SIGHUP with `red_score: 0` and `yellow_score: 900`, then with
      `red_score: 500` and `yellow_score: 900`: both refused, the log names
      the file, the line and why, and the rules in force stay: a declaration
      scoring 300 is still YELLOW with the same ruleset_version.

A copy of the shipped rule file without the random sample keeps the lanes exact."""
import os
import signal
import time
import uuid

from harness import (WORK, Checks, Pipeline, declaration, line, load_refdata, produce, stop,
                     wait_for)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
c = Checks("rules_checks")
tag = uuid.uuid4().hex[:6]
with open(os.path.join(ROOT, "schemas", "rules.yaml")) as fh:
    SHIPPED = fh.read()
assert "sample_rate: 0.01" in SHIPPED and "version: default-1" in SHIPPED
assert "  red_score: 600 " in SHIPPED and "  yellow_score: 300 " in SHIPPED
BASE = SHIPPED.replace("sample_rate: 0.01", "sample_rate: 0").replace("version: default-1",
                                                                     "version: checks-nosample")
POLICY = os.path.join(ROOT, "schemas", "policy-us.yaml")
VERSION = "checks-nosample/us-2025-08"
loaded = load_refdata()
c.equal(loaded.returncode, 0, "test reference data loads", loaded.stderr[-800:])

NOW_MS = int(time.time() * 1000)
INT64_MAX = 2**63 - 1
INT64_MIN = -2**63
REPEAL_MS = 1814414400000  # 2027-07-01T04:00:00Z
SUSPENDED_DETAIL = ("line 1 origin VN: de minimis repealed since 2027-07-01T04:00:00Z" if NOW_MS >= REPEAL_MS
                    else "line 1 origin VN: de minimis suspended since 2025-08-29T04:01:00Z")


def utc_ms(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


ARRIVALS = [  # name, arrival_time, as the detail writes it
    ("1900", -2208988800000, "1900-01-01T00:00:00.000Z"),
    ("1970", 0, "1970-01-01T00:00:00.000Z"),
    ("min", INT64_MIN, "-292275055-05-16T16:47:04.192Z"),
    ("max", INT64_MAX, "292278994-08-17T07:12:55.807Z"),
]


def line_of(text, prefix):
    return next(i + 1 for i, l in enumerate(text.splitlines()) if l.startswith(prefix))


def reasons_of(d):
    return [(r["code"], r["points"], r["detail"]) for r in d["reasons"]]


def scenario(mode):
    m = mode.split("_")[0]
    rules = os.path.join(WORK, f"checks-rules-{tag}-{m}.yaml")
    with open(rules, "w") as fh:
        fh.write(BASE)
    extra = [f"rules.file={rules}", f"policy.file={POLICY}", f"processing.guarantee={mode}"]
    if mode == "exactly_once":
        extra += [f"processing.instance_id=checks-{tag}", "processing.transaction_interval_ms=100"]
    p = Pipeline(f"checks-{m}", partitions=2, extra_sets=extra)
    p.create_topics()
    r = f"{tag}{m[:1]}"
    proc = p.start()

    def decided(ids):
        return wait_for(lambda: set(ids) <= {d["declaration_id"] for d in p.tail("decisions")}, 120, 1)

    # ---- (a)
    rows = [declaration(f"D-{r}-{name}", arrival_time=arrival, event_time=NOW_MS)
            for name, arrival, _ in ARRIVALS]
    rows.append(declaration(f"D-{r}-tomorrow", arrival_time=NOW_MS + 86400000, event_time=NOW_MS))
    produce(p, rows)
    c.check(decided([d["declaration_id"] for d in rows]), f"{mode}: (a) every declaration decided")

    # ---- (b) two refused reloads, then declarations that score 300
    broken = [
        (BASE.replace("  red_score: 600 ", "  red_score: 0   ").replace("  yellow_score: 300 ", "  yellow_score: 900 "),
         "red_score", "key 'lanes.red_score': expected an integer from 1 to 1000: at 0 every declaration, "
                      "with or without a reason, would be in that lane"),
        (BASE.replace("  red_score: 600 ", "  red_score: 500 ").replace("  yellow_score: 300 ", "  yellow_score: 900 "),
         "yellow_score", None),
    ]
    for i, (text, blamed, why) in enumerate(broken):
        if why is None:
            why = (f"lanes: yellow_score 900 (line {line_of(text, '  yellow_score:')}) must be below red_score 500 "
                   f"(line {line_of(text, '  red_score:')}): otherwise no score is YELLOW, and scores from "
                   f"red_score on are RED")
        with open(rules, "w") as fh:
            fh.write(text)
        proc.send_signal(signal.SIGHUP)
        want = f"rules reload refused, {VERSION} stays in force: {rules}:{line_of(text, '  ' + blamed + ':')}: {why}"
        c.check(wait_for(lambda: want in open(proc.log_path).read(), 30, 0.5),
                f"{mode}: (b) reload {i + 1} refused, the log names file, line and why", repr(want))
    later = [declaration(f"S-{r}-{i}", arrival_time=NOW_MS, event_time=NOW_MS,
                         lines=[line(hts="6109100099", description="gift")]) for i in range(3)]
    produce(p, later)
    c.check(decided([d["declaration_id"] for d in later]), f"{mode}: (b) declarations after the refusals decided")
    c.check(proc.poll() is None, f"{mode}: (b) refused reloads do not stop the process")
    c.equal(stop(proc), 0, f"{mode}: clean stop")
    log = open(proc.log_path).read()
    c.check("rules reloaded" not in log, f"{mode}: (b) no reload was accepted")

    decisions = p.tail("decisions")
    got = {d["declaration_id"]: d for d in decisions}
    c.equal(len(decisions), len(rows) + len(later), f"{mode}: exactly one decision per declaration")
    for name, arrival, text in ARRIVALS:
        d = got.get(f"D-{r}-{name}")
        if not d:
            c.check(False, f"{mode}: (a) arrival {name} decided")
            continue
        before = "before" if arrival < NOW_MS else "after"
        c.equal(reasons_of(d), [
            ("DE_MINIMIS_SUSPENDED", 0, SUSPENDED_DETAIL),
            ("DATE_IMPLAUSIBLE", 300, f"arrival_time {text} is more than 30 days {before} event_time "
                                      f"{utc_ms(NOW_MS)}: de minimis taken at event_time"),
        ], f"{mode}: (a) arrival {name}: reasons, points and details")
        c.equal((d["lane"], d["de_minimis"], d["score"]), ("YELLOW", "SUSPENDED", 300),
                f"{mode}: (a) arrival {name}: YELLOW SUSPENDED 300")
        c.equal(d["ruleset_version"], VERSION, f"{mode}: (a) arrival {name}: ruleset_version")
    d = got.get(f"D-{r}-tomorrow")
    c.check(d is not None and reasons_of(d) == [("DE_MINIMIS_SUSPENDED", 0, SUSPENDED_DETAIL)]
            and (d["lane"], d["de_minimis"], d["score"]) == ("BLUE", "SUSPENDED", 0),
            f"{mode}: (a) arriving tomorrow: BLUE SUSPENDED, no DATE_IMPLAUSIBLE", str(d and reasons_of(d)))
    for s in later:
        d = got.get(s["declaration_id"])
        c.check(d is not None and {x[0] for x in reasons_of(d)} == {"HTS_INVALID", "VAGUE_DESCRIPTION",
                                                                     "DE_MINIMIS_SUSPENDED"}
                and (d["lane"], d["score"], d["ruleset_version"]) == ("YELLOW", 300, VERSION),
                f"{mode}: (b) {s['declaration_id']}: score 300 still YELLOW under {VERSION}",
                str(d and (reasons_of(d), d["lane"], d["score"], d["ruleset_version"])))
    alerts = {a["declaration_id"] for a in p.tail("alerts")}
    want_alerts = {f"D-{r}-{name}" for name, _, _ in ARRIVALS} | {s["declaration_id"] for s in later}
    c.equal(alerts, want_alerts, f"{mode}: alerts are exactly the YELLOW decisions")


for mode in ("at_least_once", "exactly_once"):
    scenario(mode)
c.done()
