"""`parcelrisk refdata load|status` against a real Redis.

On the services Redis (shared, so never FLUSHALL; the tests run one at a
time): a clean load of ops/refdata/*.csv, status row counts, the exact
encoded values of known rows; a file with one bad row refused with FILE:LINE
and Redis unchanged (DBSIZE and pr:ref:current compared), no raw name or
address in the message; --skip-bad loading it with 1 skipped; a second load
switching current and putting a TTL on the old version's keys. It ends with
the clean example set current.

On a private redis-server of its own: status with nothing loaded and with
Redis unreachable, and the load benchmark (30,000 HTS rows + 100,000
violators from ops/refdata/make_refdata.py), printed as REPORT:, never
asserted."""
import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from harness import BIN, REDIS, WORK, Checks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "ops", "refdata")
HTS, VIO, CTY = (os.path.join(REF, f) for f in ("hts.csv", "violators.csv", "countries.csv"))
OUT = os.path.join(WORK, "refdata")
os.makedirs(OUT, exist_ok=True)


class RedisError(Exception):
    pass


class Redis:
    """A tiny RESP2 client: enough for GET, HGET, PTTL, DBSIZE and friends."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.rfile = self.sock.makefile("rb")

    def __call__(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.rfile.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rfile.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def close(self):
        self.rfile.close()
        self.sock.close()


def run(*args, timeout=600):
    return subprocess.run([BIN, "refdata", *args], capture_output=True, text=True, timeout=timeout)


def load(hts=HTS, vio=VIO, cty=CTY, redis=REDIS, *extra):
    return run("load", "--hts", hts, "--violators", vio, "--countries", cty, "--redis", redis,
               *extra)


def data_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def loaded_version(res):
    m = re.search(r"version (\S+) is current", res.stdout)
    return m.group(1) if m else None


def status_fields(res):
    return dict(re.findall(r"^(\w+): (.*)$", res.stdout, re.M))


def key(version, suffix):
    return f"pr:ref:{version}:{suffix}"


c = Checks("refdata")
r = Redis(REDIS)
n_hts, n_vio, n_cty = data_rows(HTS), data_rows(VIO), data_rows(CTY)

# ------------------------------------------------------------ clean load
res = load()
c.equal(res.returncode, 0, "clean load of ops/refdata exits 0")
if res.returncode != 0:
    print(res.stderr[-3000:])
v1 = loaded_version(res)
c.check(v1 is not None and re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", v1 or ""),
        "load prints a version YYYYMMDDTHHMMSSZ-xxxxxx", f"(got {v1!r})")
c.equal(r("GET", "pr:ref:current"), v1, "pr:ref:current is the new version")
c.check(f"{n_hts} rows" in res.stdout and f"{n_vio} rows" in res.stdout
        and f"{n_cty} rows" in res.stdout, "load summary has the rows of each file", res.stdout)

st = run("status", "--redis", REDIS)
c.equal(st.returncode, 0, "status exits 0")
f = status_fields(st)
c.equal(f.get("current"), v1, "status: current version")
c.equal(f.get("hts_rows"), str(n_hts), "status: hts_rows")
c.equal(f.get("violator_rows"), str(n_vio), "status: violator_rows")
c.equal(f.get("country_rows"), str(n_cty), "status: country_rows")
c.check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", f.get("loaded_at", "")),
        "status: loaded_at in UTC", f"(got {f.get('loaded_at')!r})")

# Exact encodings: "<flags bitmask>,<floor>,<points>,<known>".
expect_hts = {
    "30": "8,,,0",               # chapter, PGA_FDA
    "2106": "8,,,0",             # heading, PGA_FDA
    "24": "12,,,0",              # EXCISE|PGA_FDA
    "6402": "128,,150,0",        # WATCH, points 150
    "850440": "192,300,150,0",   # PGA_FCC|WATCH, floor 300, points 150
    "070320": "1,,,0",           # ADCVD
    "6402993165": "0,2500,,1",   # statistical line with a floor
    "2402200000": "0,,,1",       # statistical line, flags come from its prefixes
}
for code, want in expect_hts.items():
    c.equal(r("HGET", key(v1, "hts"), code), want, f"hts {code} encoded as {want}")
c.equal(r("HLEN", key(v1, "hts")), n_hts, "hts hash has one field per row")
with open(os.path.join(ROOT, "pipeline", "gen", "gen.c")) as fh:
    gen_codes = re.findall(r'\{"(\d{10})", "', fh.read())
c.check(len(gen_codes) >= 20, "found the generator's HTS codes in gen.c", f"({len(gen_codes)})")
values = r("HMGET", key(v1, "hts"), *gen_codes)
unknown = [code for code, v in zip(gen_codes, values) if not (v and v.endswith(",1"))]
c.equal(unknown, [], "every generator HTS code is a known 10-digit row")

c.equal(r("HGET", key(v1, "vio"), "SHIPPER|SHENZHEN BRIGHT TRADING"), "HK:2;VN:1",
        "violator 'Shenzhen Bright Trading Co., Ltd.' under its normalized key, rows merged")
c.equal(r("HGET", key(v1, "vio"), "CONSIGNEE|NORTHGATE RESHIP SERVICES"), "US:3",
        "violator 'Northgate Reship Services Inc.' normalized")
c.equal(r("HGET", key(v1, "vio"), "ADDRESS|1234 ELM ST APT 5B"), "US:2",
        "address '1234 Elm Street, Apt. 5B' normalized")
c.equal(str(r("HLEN", key(v1, "vio"))), f.get("violator_keys"), "vio hash has violator_keys fields")
c.equal(r("HGET", key(v1, "cty"), "KP"), "700", "country KP points")
c.equal(r("HGET", key(v1, "cty"), "US"), "0", "country US points")
c.equal(r("HLEN", key(v1, "cty")), n_cty, "cty hash has one field per row")
c.equal(r("HGET", key(v1, "meta"), "hts_rows"), str(n_hts), "meta hts_rows")
manifest = f"hts:hash:{n_hts},vio:hash:{f.get('violator_keys')},cty:hash:{n_cty}"
c.equal(r("HGET", key(v1, "meta"), "manifest"), manifest,
        "meta manifest: every table with its type and exact size")
c.equal((f.get("manifest"), f.get("manifest_check")), (manifest, "ok"),
        "status shows the manifest and that it checks out")
c.check(r("ZSCORE", "pr:ref:versions", v1) is not None, "version listed in pr:ref:versions")
c.equal([r("PTTL", key(v1, s)) for s in ("hts", "vio", "cty", "meta")], [-1] * 4,
        "the current version's keys have no TTL")

# --------------------------------------------------- one bad row: refused
SECRET_NAME, SECRET_ADDR = "Secret Smuggler Trading Co., Ltd.", "42 Hidden Lane"
bad_vio = os.path.join(OUT, "violators-bad.csv")
with open(VIO, encoding="utf-8") as src, open(bad_vio, "w", encoding="utf-8") as dst:
    lines = src.readlines()
    bad_line = 7  # 1-based line number of the bad row in the new file
    lines.insert(bad_line - 1, f'SHIPPER,"{SECRET_NAME}",{SECRET_ADDR},CN,5,smuggling,2024-01-01\n')
    dst.writelines(lines)

size_before, current_before = r("DBSIZE"), r("GET", "pr:ref:current")
res = load(vio=bad_vio)
c.check(res.returncode != 0, "a file with one bad row is refused (non-zero exit)",
        f"(exit {res.returncode})")
c.check(f"{bad_vio}:{bad_line}:" in res.stderr, "error names FILE:LINE of the bad row",
        res.stderr[-1000:])
c.check("severity" in res.stderr, "error names the bad column", res.stderr[-1000:])
c.check("Secret" not in res.stderr + res.stdout and "Hidden" not in res.stderr + res.stdout,
        "no raw name or address in the output")
c.equal(r("DBSIZE"), size_before, "Redis unchanged after a refused load: same DBSIZE")
c.equal(r("GET", "pr:ref:current"), current_before, "Redis unchanged: same current version")

bad_hts = os.path.join(OUT, "hts-bad.csv")
shutil.copy(HTS, bad_hts)
with open(bad_hts, "a", encoding="utf-8") as fh:
    fh.write("6402.99,Footwear with a dotted code,WATCH,,\n")
res = load(hts=bad_hts)
c.check(res.returncode != 0 and f"{bad_hts}:{n_hts + 2}: hts:" in res.stderr,
        "a malformed HTS code is refused with FILE:LINE", res.stderr[-500:])
c.equal((r("DBSIZE"), r("GET", "pr:ref:current")), (size_before, current_before),
        "Redis unchanged after the refused HTS file")

bad_header = os.path.join(OUT, "hts-no-points.csv")
with open(HTS, encoding="utf-8") as src, open(bad_header, "w", encoding="utf-8") as dst:
    for row in csv.reader(src):
        csv.writer(dst, lineterminator="\n").writerow(row[:4])
res = load(bad_header, VIO, CTY, REDIS, "--skip-bad")
c.check(res.returncode != 0 and "missing column 'points'" in res.stderr,
        "a missing column is refused even with --skip-bad", res.stderr[-500:])
c.equal((r("DBSIZE"), r("GET", "pr:ref:current")), (size_before, current_before),
        "Redis unchanged after the missing column")

# ------------------------------------------- --skip-bad, second version
res = load(HTS, bad_vio, CTY, REDIS, "--skip-bad")
c.equal(res.returncode, 0, "--skip-bad loads the file with one bad row")
c.check(re.search(r"skipped: 1 bad row", res.stdout) is not None, "--skip-bad reports 1 skipped",
        res.stdout)
v2 = loaded_version(res)
c.check(v2 is not None and v2 != v1, "the second load creates a new version", f"({v1} -> {v2})")
c.equal(r("GET", "pr:ref:current"), v2, "current switched to the second version")
c.equal(r("HGET", key(v2, "meta"), "skipped_rows"), "1", "meta records 1 skipped row")
c.equal(r("HGET", key(v2, "meta"), "manifest"),
        manifest,
        "the manifest counts the rows written, not the rows skipped")
c.equal(r("HGET", key(v2, "meta"), "violator_rows"), str(n_vio), "the bad row was left out")
c.equal(r("HGET", key(v2, "vio"), "SHIPPER|SECRET SMUGGLER TRADING"), None,
        "the skipped row is not in the new version")
ttls = [r("PTTL", key(v1, s)) for s in ("hts", "vio", "cty", "meta")]
c.check(all(0 < t <= 3600 * 1000 for t in ttls), "old version's keys got the grace TTL (PTTL > 0)",
        f"(PTTL {ttls})")
c.equal(r("HGET", key(v1, "hts"), "30"), "8,,,0", "old version still readable during the grace")
c.equal([r("PTTL", key(v2, s)) for s in ("hts", "vio", "cty", "meta")], [-1] * 4,
        "the new current version's keys have no TTL")

# Third load, back to the clean set, with a short grace for v2 only: v1
# keeps its earlier deadline.
res = load(HTS, VIO, CTY, REDIS, "--grace-seconds", "120")
v3 = loaded_version(res)
c.check(res.returncode == 0 and v3 not in (None, v1, v2), "third load creates a third version")
c.equal(r("GET", "pr:ref:current"), v3, "current switched to the third version")
t2, t1 = r("PTTL", key(v2, "hts")), r("PTTL", key(v1, "hts"))
c.check(0 < t2 <= 120 * 1000, "--grace-seconds 120 gives the previous version PTTL <= 120 s",
        f"(PTTL {t2})")
c.check(t1 > 120 * 1000, "an older version keeps its own deadline", f"(PTTL {t1})")
st = run("status", "--redis", REDIS)
c.check(st.returncode == 0 and all(v in st.stdout for v in (v1, v2, v3)),
        "status lists the versions still present", st.stdout[-800:])
c.check(re.search(rf"{re.escape(v2)}.*expires in \d+ s", st.stdout) is not None,
        "status shows when the old version expires")
r.close()

# ------------------------------------ private Redis: status and benchmark
server = shutil.which("redis-server")
if not server:
    print("redis-server not found: skipping the private-Redis checks and the benchmark")
    c.done()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


port = free_port()
address = f"127.0.0.1:{port}"
proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
try:
    private = None
    for _ in range(100):
        try:
            private = Redis(address)
            private("PING")
            break
        except (OSError, RedisError):
            private = None
            time.sleep(0.1)
    c.check(private is not None, "private redis-server started")
    st = run("status", "--redis", address)
    c.check(st.returncode == 1 and "no reference data loaded" in st.stderr,
            "status with nothing loaded: exit 1 and a clear message", st.stderr)

    big = os.path.join(OUT, "big")
    subprocess.run([sys.executable, os.path.join(REF, "make_refdata.py"), "--hts-rows", "30000",
                    "--violators", "100000", "--out", big], check=True, capture_output=True)
    t0 = time.monotonic()
    res = load(os.path.join(big, "hts.csv"), os.path.join(big, "violators.csv"),
               os.path.join(big, "countries.csv"), address, "--quiet")
    wall = time.monotonic() - t0
    c.equal(res.returncode, 0, "large load (30,000 HTS + 100,000 violators) exits 0")
    f = status_fields(run("status", "--redis", address))
    c.equal((f.get("hts_rows"), f.get("violator_rows")), ("30000", "100000"),
            "large load: status row counts")
    m = re.search(r"seconds: ([\d.]+) \(read and validate ([\d.]+), write ([\d.]+)\)", res.stdout)
    inner = f"loader {m.group(1)} s: read+validate {m.group(2)} s, write {m.group(3)} s" if m else "?"
    print(f"REPORT: refdata load of 30000 HTS rows + 100000 violator rows "
          f"({f.get('violator_keys')} keys) + {f.get('country_rows')} countries: "
          f"{wall:.3f} s wall ({inner})")
    private.close()
finally:
    proc.terminate()
    proc.wait(timeout=30)

st = run("status", "--redis", address)
c.check(st.returncode == 1 and "cannot connect to Redis" in st.stderr,
        "status with Redis unreachable: exit 1 and a clear message", st.stderr)
c.done()
