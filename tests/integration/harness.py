"""Shared helpers of the integration tests: they run the real parcelrisk
binary against the Kafka broker and Redis that `ops/services start` (the
ctest fixture) started, each test on topics and a consumer group of its own.

Every check is counted; the test prints 'N passed, N failed' and exits 1 when
any check failed."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

BIN = os.environ["PR_BIN"]
STATE = os.environ["PR_STATE_DIR"]
WORK = os.environ.get("PR_TEST_WORK", "/tmp/parcelrisk-test-work")
os.makedirs(WORK, exist_ok=True)


def _service_env():
    env = {}
    with open(os.path.join(STATE, "env")) as fh:
        for line in fh:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v
    return env


SERVICES = _service_env()
BOOTSTRAP = SERVICES["PR_KAFKA_BOOTSTRAP"]
REDIS = SERVICES["PR_REDIS_ADDRESS"]


class Checks:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what} {detail}")
        sys.stdout.flush()

    def equal(self, got, want, what, detail=""):
        self.check(got == want, what, f"(got {got!r}, want {want!r}) {detail}")

    def done(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


class Pipeline:
    """One isolated set of topics and a consumer group."""

    def __init__(self, name, partitions=8, extra_sets=()):
        self.prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self.topics = {
            "declarations": f"{self.prefix}.declarations",
            "decisions": f"{self.prefix}.decisions",
            "alerts": f"{self.prefix}.alerts",
            "dlq": f"{self.prefix}.declarations.dlq",
        }
        self.sets = ["--brokers", BOOTSTRAP,
                     "--set", f"group={self.prefix}",
                     "--set", f"topics.declarations_partitions={partitions}",
                     "--set", "topics.output_partitions=4",
                     "--set", f"redis.address={REDIS}"]
        for key, topic in self.topics.items():
            self.sets += ["--set", f"topics.{key}={topic}"]
        for s in extra_sets:
            self.sets += ["--set", s]
        self.log_count = 0

    def cmd(self, *args):
        return [BIN, *args, *self.sets]

    def call(self, *args, check=True, timeout=600):
        res = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{args[0]} exited {res.returncode}: {res.stderr[-2000:]}")
        return res

    def create_topics(self):
        self.call("topics", "create")

    def gen(self, count, bad=0, seed=1, extra=()):
        ids = os.path.join(WORK, f"{self.prefix}-ids-{seed}.txt")
        self.call("gen", "--count", str(count), "--bad", str(bad), "--seed", str(seed),
                  "--ids", ids, "--quiet", *extra)
        good, bad_keys = [], {}
        with open(ids) as fh:
            for line in fh:
                parts = line.split()
                if parts[0] == "ok":
                    good.append(parts[1])
                else:
                    bad_keys[parts[1]] = parts[2]
        return good, bad_keys

    def start(self, *extra):
        self.log_count += 1
        log = open(os.path.join(WORK, f"{self.prefix}-run{self.log_count}.log"), "w")
        summary = os.path.join(WORK, f"{self.prefix}-run{self.log_count}.json")
        proc = subprocess.Popen(self.cmd("run", "--summary", summary, *extra),
                                stdout=log, stderr=subprocess.STDOUT)
        proc.summary_path = summary
        proc.log_path = log.name
        return proc

    def run_until_idle(self, idle_ms=4000, timeout=600):
        proc = self.start("--exit-when-idle", str(idle_ms))
        rc = proc.wait(timeout=timeout)
        return rc, self.summary(proc)

    @staticmethod
    def summary(proc):
        try:
            with open(proc.summary_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def tail(self, kind):
        res = self.call("tail", kind)
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def tail_raw(self, topic_key="declarations"):
        res = self.call("tail", "raw", "--topic", self.topics[topic_key])
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def avro_bytes(json_string):
    """Avro JSON encodes bytes as one code point per byte."""
    return json_string.encode("latin-1")


def wait_for(predicate, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def stop(proc, sig=signal.SIGTERM, timeout=120):
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


# A small reference set of our own, so that the tests' expectations do not
# depend on the example data shipped in ops/refdata/.
TEST_HTS = [
    ("hts", "description", "flags", "unit_value_floor_cents", "points"),
    ("6109100012", "T-shirts of cotton, men's", "", "", ""),
    ("4202920807", "Backpacks, textile", "", "", ""),
    ("61", "Knitted apparel", "", "", ""),
    ("24", "Tobacco", "EXCISE", "", ""),
    ("2402200000", "Cigarettes containing tobacco", "", "", ""),
    ("30", "Pharmaceutical products", "PGA_FDA", "", ""),
    ("3004909290", "Medicaments, other", "", "", ""),
    ("6402", "Footwear, rubber or plastics", "WATCH", "1500", "250"),
    ("640299", "Other footwear", "WATCH", "", "350"),
    ("6402993165", "Sneakers", "", "2000", ""),
    ("9102110000", "Wrist watches, electric", "WATCH", "", ""),
    ("7306", "Steel tubes", "ADCVD", "", ""),
    ("7306301000", "Welded steel tubes", "", "", ""),
]
TEST_VIOLATORS = [
    ("kind", "name", "address", "country", "severity", "reason", "listed_on"),
    ("SHIPPER", "Shenzhen Bright Trading Co., Ltd.", "", "CN", "3", "counterfeit footwear", "2024-11-02"),
    ("SELLER", "Quickdeal Store 7", "", "", "1", "undervaluation", "2025-01-15"),
    ("CONSIGNEE", "Northgate Reship Services Inc.", "", "", "2", "reshipper", "2024-06-30"),
    ("ADDRESS", "", "77 Harbor Boulevard, Suite 9", "US", "2", "drop address", "2025-02-01"),
]
TEST_COUNTRIES = [("country", "points"), ("VN", "0"), ("CN", "0"), ("KP", "400"), ("IR", "300")]


def write_csv(path, rows):
    import csv
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def load_refdata(hts=TEST_HTS, violators=TEST_VIOLATORS, countries=TEST_COUNTRIES, extra=()):
    """Loads a reference set with `parcelrisk refdata load`; returns the result."""
    tag = uuid.uuid4().hex[:8]
    paths = []
    for name, rows in (("hts", hts), ("violators", violators), ("countries", countries)):
        path = os.path.join(WORK, f"refdata-{tag}-{name}.csv")
        write_csv(path, rows)
        paths.append(path)
    return subprocess.run([BIN, "refdata", "load", "--hts", paths[0], "--violators", paths[1],
                           "--countries", paths[2], "--redis", REDIS, *extra],
                          capture_output=True, text=True, timeout=300)


def redis_cli(*args):
    host, port = REDIS.rsplit(":", 1)
    res = subprocess.run(["redis-cli", "-h", host, "-p", port, *args], capture_output=True, text=True,
                         timeout=30)
    return res.stdout.strip()


def declaration(did, **over):
    """A clean declaration (GREEN under the test reference set) with overrides."""
    d = {
        "declaration_id": did, "filer_code": "DHLX", "entry_type": "86", "house_bill": "HB-" + did,
        "master_bill": None, "transport_mode": "AIR", "port_of_entry": "4701",
        "arrival_time": 1740830400000,  # 2025-03-01T12:00:00Z, before any suspension
        "shipper": {"name": "Hanoi Lotus Export Co., Ltd.", "address": "12 Tran Phu Street",
                    "city": "Hanoi", "postal_code": "100000", "country": "VN"},
        "consignee": {"name": "Jane O'Neil " + did, "address": "1234 Elm Street, Unit " + did,
                      "city": "Springfield", "postal_code": "62701", "country": "US"},
        "seller": None, "marketplace": None, "value_usd_cents": 12000, "freight_usd_cents": None,
        "gross_weight_grams": 800,
        "lines": [line()],
    }
    d.update(over)
    # The hub files an hour before arrival unless the case says otherwise
    # (an arrival far from event_time is DATE_IMPLAUSIBLE).
    d.setdefault("event_time", d["arrival_time"] - 3600000)
    return d


def line(**over):
    return {**{"hts": "6109100012", "description": "Men's cotton t-shirt", "origin_country": "VN",
               "quantity": 2, "value_usd_cents": 12000}, **over}


def produce(pipeline, declarations):
    path = os.path.join(WORK, f"{pipeline.prefix}-{uuid.uuid4().hex[:6]}.jsonl")
    with open(path, "w") as fh:
        for d in declarations:
            fh.write(json.dumps(d) + "\n")
    pipeline.call("produce", "--input", path)


def services(cmd):
    """Runs ops/services on the fixture's services (stop-kafka, start-kafka, ...)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([os.path.join(root, "ops", "services"), cmd], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PR_STATE_DIR": STATE})


def decision_counts(pipeline):
    import collections
    return collections.Counter(d["declaration_id"] for d in pipeline.tail("decisions"))


def wait_until_decided(pipeline, ids, timeout=300):
    """Waits until every id has a decision (read_committed); returns the counts."""
    deadline = time.time() + timeout
    counts = {}
    while time.time() < deadline:
        counts = decision_counts(pipeline)
        if all(i in counts for i in ids):
            return counts
        time.sleep(2)
    return counts


def _leb128(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def changelog_state(pipeline):
    """The consignee-days of the pipeline's keyed-state changelog (the group's
    <group>.changelog topic), read back as a restore would, by entry key (32
    bytes of consignee_key, then the day text): total and overs (the largest
    remembered by its declarations), last update time (ms), and per
    declaration id (total, overs, house bill) as first counted. Decodes the
    record format of pipeline/domain/state.h: key = kind byte, LEB128
    entry-key length, entry key, member (the id); value = version byte (1 or
    2: kind 1 is the same in both), then for kind 1 flags, LEB128 total, LEB128 overs, zigzag LEB128 update time, the
    house bill (the rest); no value = a tombstone (the whole entry goes)."""
    res = subprocess.run([BIN, "tail", "raw", "--topic", f"{pipeline.prefix}.changelog", *pipeline.sets],
                         capture_output=True, text=True, timeout=300)
    days = {}
    for row in res.stdout.splitlines():
        if not row.strip():
            continue
        rec = json.loads(row)
        key, value = bytes.fromhex(rec["_key_hex"]), bytes.fromhex(rec["value_hex"])
        if not key or key[0] != 1:
            continue
        n, i = _leb128(key, 1)
        entry, member = key[i:i + n], key[i + n:]
        if not value:
            days.pop(entry, None)
            continue
        total, j = _leb128(value, 2)  # after the version and the flags
        overs, j = _leb128(value, j)
        zz, j = _leb128(value, j)
        updated = (zz >> 1) ^ -(zz & 1)
        day = days.setdefault(entry, {"total": 0, "overs": 0, "updated": 0, "members": {}})
        day["total"] = max(day["total"], total)
        day["overs"] = max(day["overs"], overs)
        day["updated"] = max(day["updated"], updated)
        day["members"][member.decode("latin-1")] = (total, overs, value[j:].decode("latin-1"))
    return days


def day_state(pipeline, consignee_key, day):
    """One consignee-day from the changelog (see changelog_state), or None."""
    return changelog_state(pipeline).get(bytes.fromhex(consignee_key) + day.encode())


def kafka_partition(key, partitions):
    """The partition that parcelrisk's producers (librdkafka `murmur2_random`, the Java
    client's default) choose for a non-empty key: murmur2 of the key's bytes, sign bit
    cleared, modulo the partition count. Tests that need records in a known partition
    pick keys with it, and should still check `tail raw`'s `_partition`."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = len(data) & 3
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
