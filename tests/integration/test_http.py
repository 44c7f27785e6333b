"""The HTTP endpoint of `run` (http.listen) scraped by a real Prometheus
server (Debian's `prometheus`, started here on a free port with a 1 s scrape
interval), then /ready and /health through a Redis outage:

1. N declarations in (generated, some malformed, and hand-made ones with
   known names and addresses): Prometheus's HTTP API answers
   parcelrisk_declarations_total = N, the lane counters equal the lanes of
   the decisions read back from the decisions topic, the dead-letter
   counters the dead letters, and the consumer lag is present and reaches 0;
2. /ready turns 503 naming redis when Redis is stopped and 200 again when it
   is back, parcelrisk_paused is 1 while declarations wait on it, and
   /health answers 200 throughout;
3. no label of any series Prometheus holds carries a consignee (or any
   party's) name or address: every label is one of the known names, with a
   value of the known shapes.
Then SIGTERM: exit 0 and the endpoint closed. Last, in exactly-once mode
(two runs on one group): the counts, and the lag computed from the offsets
the transactions committed reaches 0 on every partition."""
import collections
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import (WORK, Checks, Pipeline, declaration, line, load_refdata, produce, services, stop,
                     wait_for, wait_until_decided)

c = Checks("http")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def request(url, method):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


c.equal(load_refdata().returncode, 0, "reference data loads")
p = Pipeline("http", extra_sets=["http.listen=127.0.0.1:0", "redis.timeout_ms=500",
                                 "redis.on_unavailable=pause"])
p.create_topics()
proc = p.start()
port = None


def find_port():
    global port
    m = re.search(r"http: listening on 127\.0\.0\.1:(\d+) \(/metrics /health /ready\)", open(proc.log_path).read())
    if m:
        port = int(m.group(1))
    return port is not None


c.check(wait_for(find_port, 60), "the chosen port is logged in one line")
base = f"http://127.0.0.1:{port}"

# --------------------------------------------------------------- Prometheus
prom_dir = os.path.join(WORK, f"{p.prefix}-prometheus")
shutil.rmtree(prom_dir, ignore_errors=True)
os.makedirs(prom_dir)
prom_port = free_port()
with open(os.path.join(prom_dir, "prometheus.yml"), "w") as fh:
    fh.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: parcelrisk
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
prom_log = open(os.path.join(prom_dir, "prometheus.log"), "w")
prom = subprocess.Popen(["prometheus", f"--config.file={prom_dir}/prometheus.yml",
                         f"--storage.tsdb.path={prom_dir}/data", f"--web.listen-address=127.0.0.1:{prom_port}",
                         "--log.level=warn"], stdout=prom_log, stderr=subprocess.STDOUT)
api = f"http://127.0.0.1:{prom_port}"


def query(expr):
    """The instant vector of expr as [(labels, value)], or None on error."""
    status, body = get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if status != 200:
        return None
    import json
    data = json.loads(body)
    if data.get("status") != "success":
        return None
    return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]


def scalar(expr):
    r = query(expr)
    return r[0][1] if r else None


try:
    c.check(wait_for(lambda: get(f"{api}/-/ready")[0] == 200, 60), "Prometheus started",
            open(prom_dir + "/prometheus.log").read()[-1000:])
    c.check(wait_for(lambda: scalar('up{job="parcelrisk"}') == 1, 60), "Prometheus scrapes parcelrisk (up = 1)")

    # ------------------------------------------------------------ 1. counts
    good, bad = p.gen(3000, bad=30, seed=141)
    # Hand-made declarations with names and addresses we know (a quote and
    # a backslash among them, as label escaping would show them).
    names = [f"Quorra Zyxwvut {i}" for i in range(20)] + ['Ana "Q" Back\\slash']
    addresses = [f"{100 + i} Xanadu Parkway, Flat {i}" for i in range(20)] + ['9 "Quoted" Lane\\7']
    hand = []
    for i, (name, address) in enumerate(zip(names, addresses)):
        d = declaration(f"http-hand-{i}", lines=[line(origin_country="KP")] if i % 3 == 0 else [line()])
        d["consignee"] = {**d["consignee"], "name": name, "address": address}
        d["shipper"] = {**d["shipper"], "name": name + " Export", "address": address + " Depot"}
        hand.append(d)
    produce(p, hand)
    produced = len(good) + len(bad) + len(hand)
    ids = good + [d["declaration_id"] for d in hand]
    counts = wait_until_decided(p, ids, timeout=300)
    c.check(all(i in counts for i in ids), "every valid declaration decided")
    decisions = p.tail("decisions")
    lanes = collections.Counter(d["lane"] for d in decisions)
    dlq = p.tail("dlq")
    codes = collections.Counter(d["error_code"] for d in dlq)
    c.equal(len(decisions), len(ids), "decisions read back: one per valid declaration")
    c.equal(len(dlq), len(bad), "dead letters read back: one per malformed message")

    c.check(wait_for(lambda: scalar('parcelrisk_declarations_total{job="parcelrisk"}') == produced, 120, 1),
            f"Prometheus: parcelrisk_declarations_total = {produced} produced",
            f"(got {scalar('parcelrisk_declarations_total')})")
    by_lane = {m["lane"]: v for m, v in query("parcelrisk_decisions_total") or []}
    for lane in ("GREEN", "BLUE", "YELLOW", "RED"):
        c.equal(by_lane.get(lane), float(lanes.get(lane, 0)),
                f"Prometheus: parcelrisk_decisions_total{{lane={lane}}} = the {lane} decisions read back")
    c.check(len([v for v in lanes.values() if v]) >= 2, "the data reach at least two lanes", str(lanes))
    by_code = {m["code"]: v for m, v in query("parcelrisk_dead_letters_total") or []}
    c.equal({k: v for k, v in by_code.items() if v}, {k: float(v) for k, v in codes.items()},
            "Prometheus: parcelrisk_dead_letters_total by code = the dead letters read back")
    alerts = p.tail("alerts")
    c.equal(scalar("parcelrisk_alerts_total") + scalar("parcelrisk_aggregate_alerts_total"),
            float(len(alerts)), "Prometheus: alerts and aggregate alerts = the alerts read back")
    # librdkafka's statistics come every 5 s.
    wait_for(lambda: query('parcelrisk_consumer_lag_messages{job="parcelrisk"}'), 60, 1)
    lag = query('parcelrisk_consumer_lag_messages{job="parcelrisk"}') or []
    c.check(len(lag) > 0 and all(m.get("topic") == p.topics["declarations"] for m, _ in lag),
            "Prometheus: parcelrisk_consumer_lag_messages present for the input topic", str(lag))
    c.check(wait_for(lambda: (query('max(parcelrisk_consumer_lag_messages{job="parcelrisk"})') or [({}, -1)])[0][1] == 0,
                     120, 1), "Prometheus: the consumer lag reaches 0",
            str(query("parcelrisk_consumer_lag_messages")))
    c.equal(scalar("count(parcelrisk_consumer_lag_messages)"), 8.0, "lag shown for each of the 8 partitions")
    c.equal(scalar("parcelrisk_ready"), 1.0, "Prometheus: parcelrisk_ready = 1")
    c.check(scalar('parcelrisk_decision_latency_seconds_count') == float(len(ids)),
            "latency histogram counts every decision", str(scalar('parcelrisk_decision_latency_seconds_count')))
    c.check(scalar('parcelrisk_decision_latency_seconds_bucket{le="+Inf"}') ==
            scalar('parcelrisk_decision_latency_seconds_count'), "latency +Inf bucket = _count")
    c.check((scalar('sum(parcelrisk_operator_busy_seconds_total)') or 0) > 0, "operator busy seconds counted")
    c.check((scalar('parcelrisk_redis_round_trips_total') or 0) > 0, "Redis round trips counted")
    c.check(len(query('parcelrisk_refdata_info') or []) == 1, "one reference-data version shown")
    # Keyed state: every decided declaration counted one consignee-day record
    # at least; what was written is what the store holds, nothing evicted.
    keys, written = scalar("parcelrisk_state_keys"), scalar("parcelrisk_changelog_records_total")
    c.check(keys is not None and keys >= 1, "keyed state keys shown", str(keys))
    c.check(written is not None and written >= len(ids), "a changelog record per decided declaration at least",
            f"{written} for {len(ids)}")
    c.equal(scalar("parcelrisk_state_evicted_total"), 0.0, "no keyed state evicted")

    # ------------------------------------------------ 2. Redis: ready, health
    status, body = get(f"{base}/ready")
    c.equal(status, 200, "/ready 200 before the outage", body)
    health_seen = []
    watching = threading.Event()

    def watch_health():
        while not watching.is_set():
            health_seen.append(get(f"{base}/health")[0])
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    r = services("stop-redis")
    c.equal(r.returncode, 0, "redis stopped", r.stderr)
    c.check(wait_for(lambda: get(f"{base}/ready")[0] == 503, 30), "/ready turns 503 with Redis stopped")
    status, body = get(f"{base}/ready")
    c.check(status == 503 and '"failing":["redis"]' in body, "the 503 body names redis as the failing condition", body)
    time.sleep(3)  # a few seconds of outage for the /health watcher
    outage = [declaration(f"http-outage-{i}") for i in range(5)]
    produce(p, outage)
    c.check(wait_for(lambda: "parcelrisk_paused 1" in get(f"{base}/metrics")[1], 60),
            "parcelrisk_paused = 1 while declarations wait on Redis")
    c.check(wait_for(lambda: scalar("parcelrisk_ready") == 0, 30), "Prometheus: parcelrisk_ready = 0 during the outage")
    r = services("start-redis")
    c.equal(r.returncode, 0, "redis restarted", r.stderr)
    c.check(wait_for(lambda: get(f"{base}/ready")[0] == 200, 60), "/ready 200 again with Redis back")
    counts = wait_until_decided(p, [d["declaration_id"] for d in outage], timeout=120)
    c.check(all(d["declaration_id"] in counts for d in outage), "the declarations that waited are decided")
    c.check(wait_for(lambda: "parcelrisk_paused 0" in get(f"{base}/metrics")[1], 30), "parcelrisk_paused back to 0")
    watching.set()
    watcher.join()
    c.check(len(health_seen) > 10 and all(s == 200 for s in health_seen),
            f"/health 200 throughout ({len(health_seen)} requests)", str(collections.Counter(health_seen)))
    c.check(wait_for(lambda: scalar('parcelrisk_declarations_total') == produced + len(outage), 60, 1),
            "Prometheus: the counter went on from where it was (monotonic)")

    # -------------------------------------------------------- method, path
    c.equal(request(f"{base}/metrics", "POST")[0], 405, "POST is refused (405)")
    c.equal(get(f"{base}/nope")[0], 404, "an unknown path is 404")
    c.equal(request(f"{base}/ready", "HEAD"), (200, ""), "HEAD /ready: 200, no body")

    # ------------------------------------------------------ 3. label privacy
    status, body = get(f"{api}/api/v1/series?" + urllib.parse.urlencode({"match[]": '{job="parcelrisk"}'}))
    import json
    series = json.loads(body)["data"] if status == 200 else []
    c.check(len(series) > 40, f"Prometheus holds the series of parcelrisk ({len(series)})")
    secrets = set(names + addresses)
    for d in hand:
        secrets.update([d["shipper"]["name"], d["shipper"]["address"], d["consignee"]["city"]])
    scraped = get(f"{base}/metrics")[1]
    leaks = [s for s in secrets if any(s in v for ser in series for v in ser.values()) or s in scraped]
    c.equal(leaks, [], "no name or address of the produced data in any label or in /metrics")
    operators = {"decode", "validate", "enrich", "policy", "screen", "aggregate", "sample", "score", "route",
                 "encode", "repartition", "repartition-source"}
    allowed = {
        "__name__": re.compile(r"parcelrisk_[a-z_]+|up|scrape_[a-z_]+"),
        "job": re.compile(r"parcelrisk"), "instance": re.compile(rf"127\.0\.0\.1:{port}"),
        "lane": re.compile(r"GREEN|BLUE|YELLOW|RED"),
        "code": re.compile(r"EMPTY|TOO_LARGE|DECODE_ERROR|TRAILING_BYTES|INVALID_UTF8|UNKNOWN_SCHEMA|"
                           r"INVALID_ID|OUTPUT_REJECTED"),
        "operator": re.compile("|".join(operators)), "cache": re.compile(r"refdata"),
        "topic": re.compile(re.escape(p.topics["declarations"])), "partition": re.compile(r"[0-7]"),
        "le": re.compile(r"\+Inf|[0-9.]+"), "version": re.compile(r"[0-9A-Za-z._+/-]+"),
    }
    odd = [(k, v) for ser in series for k, v in ser.items() if k not in allowed or not allowed[k].fullmatch(v)]
    c.equal(odd, [], "every label is a known name with a value of a known shape")
    counted = scalar("parcelrisk_declarations_total")
finally:
    prom.terminate()
    try:
        prom.wait(timeout=30)
    except subprocess.TimeoutExpired:
        prom.kill()

c.equal(stop(proc), 0, "SIGTERM: clean stop")

# ------------------------------------------- 4. exactly-once: lag and counts
# The consumer never commits in exactly-once mode (the transactions do), so
# librdkafka's own consumer_lag would keep the offset fetched at assignment:
# absent for a new group, stale after a restart. Two runs on one group.
q = Pipeline("httpeos", extra_sets=["http.listen=127.0.0.1:0", "processing.guarantee=exactly_once"])
q.create_topics()


def scrape_lines(url):
    return dict(ln.rsplit(" ", 1) for ln in get(url)[1].splitlines() if ln and not ln.startswith("#"))


for run, (count, seed) in enumerate(((1500, 142), (700, 143)), 1):
    q_good, q_bad = q.gen(count, bad=5, seed=seed)
    qproc = q.start()
    found = []
    c.check(wait_for(lambda: found.extend(re.findall(r"http: listening on 127\.0\.0\.1:(\d+)",
                                                      open(qproc.log_path).read())) or found, 60),
            f"exactly-once run {run}: the port is logged")
    qbase = f"http://127.0.0.1:{found[0] if found else 0}"
    wait_until_decided(q, q_good, timeout=300)

    def caught_up():
        m = scrape_lines(f"{qbase}/metrics")
        lag = [v for k, v in m.items() if k.startswith("parcelrisk_consumer_lag_messages{")]
        return m.get("parcelrisk_declarations_total") == str(count) and len(lag) == 8 and set(lag) == {"0"}

    c.check(wait_for(caught_up, 120, 1),
            f"exactly-once run {run}: declarations_total = {count} and the lag of all 8 partitions reaches 0",
            str({k: v for k, v in scrape_lines(f"{qbase}/metrics").items() if "lag" in k or "declarations" in k}))
    m = scrape_lines(f"{qbase}/metrics")
    c.check(int(m.get("parcelrisk_transactions_committed_total", "0")) > 0,
            f"exactly-once run {run}: transactions counted", m.get("parcelrisk_transactions_committed_total"))
    c.equal(sum(int(v) for k, v in m.items() if k.startswith("parcelrisk_dead_letters_total{")), 5,
            f"exactly-once run {run}: the 5 dead letters counted once")
    c.equal(stop(qproc), 0, f"exactly-once run {run}: clean stop")
c.equal(get(f"{base}/health")[0], 0, "the endpoint is closed after the stop")
log = open(proc.log_path).read()
c.check("http: listening on" in log and "http: " not in log.replace("http: listening on", ""),
        "the HTTP server logged its address and nothing else")
print(f"REPORT http: {produced} + {len(outage)} in, Prometheus counted {counted}; lanes {dict(lanes)}; "
      f"dead letters {dict(codes)}; {len(health_seen)} /health requests during the Redis outage, all 200")
c.done()
