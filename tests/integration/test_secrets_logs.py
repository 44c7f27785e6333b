"""Secrets and logs on the real services.

(a) A second Redis started here with --requirepass and an ACL user: `refdata
load` (default user, password from ${file:...}), `refdata status` and `run`
(ACL user, password from ${VAR}) work against it and decisions come out; a
wrong password, or none, is refused with a clear message and exit status; no
secret appears in any stdout, stderr or log.
(b) `log.format: json`: every line a run writes parses as JSON with ts, level,
msg and source, and librdkafka's own lines (a debug context) come through
with source "librdkafka"."""
import json
import os
import re
import socket
import subprocess
import time
import uuid

from harness import (BIN, WORK, Checks, Pipeline, TEST_COUNTRIES, TEST_HTS, TEST_VIOLATORS,
                     declaration, load_refdata, produce, write_csv)

c = Checks("secrets_logs")
tag = uuid.uuid4().hex[:8]
DEFAULT_PW = f"pw-default-{uuid.uuid4().hex}"
USER_PW = f"pw-user-{uuid.uuid4().hex}"
KAFKA_PW = f"pw-kafka-{uuid.uuid4().hex}"
WRONG_PW = f"pw-wrong-{uuid.uuid4().hex}"
SECRETS = (DEFAULT_PW, USER_PW, KAFKA_PW, WRONG_PW)
outputs = []  # every stdout, stderr and log text, checked for secrets at the end


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, env=None):
    res = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    outputs.extend([res.stdout, res.stderr])
    return res


# ------------------------------------------------ a Redis that wants AUTH
port = free_port()
address = f"127.0.0.1:{port}"
redis_dir = os.path.join(WORK, f"secrets-redis-{tag}")
os.makedirs(redis_dir, exist_ok=True)
redis_log = open(os.path.join(redis_dir, "redis.log"), "w")
redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", redis_dir,
                          "--requirepass", DEFAULT_PW],
                         stdout=redis_log, stderr=subprocess.STDOUT)
cli_env = {**os.environ, "REDISCLI_AUTH": DEFAULT_PW}  # keeps the password out of ps


def redis_cli(*args):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=30, env=cli_env).stdout.strip()


try:
    deadline = time.time() + 30
    while time.time() < deadline and redis_cli("PING") != "PONG":
        time.sleep(0.1)
    c.equal(redis_cli("PING"), "PONG", "the password-protected Redis is up")
    c.equal(redis_cli("ACL", "SETUSER", "prapp", "on", f">{USER_PW}", "~*", "&*", "+@all"), "OK",
            "ACL user prapp created")
    noauth = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "PING"],
                            capture_output=True, text=True, timeout=30).stdout
    c.check("NOAUTH" in noauth, "that Redis refuses commands without a password", noauth)

    secret_file = os.path.join(WORK, f"secrets-{tag}.pw")
    with open(secret_file, "w") as fh:
        fh.write(DEFAULT_PW + "\n")  # one trailing newline, as `echo` writes it
    os.chmod(secret_file, 0o600)

    paths = []
    for name, rows in (("hts", TEST_HTS), ("violators", TEST_VIOLATORS),
                       ("countries", TEST_COUNTRIES)):
        path = os.path.join(WORK, f"secrets-{tag}-{name}.csv")
        write_csv(path, rows)
        paths.append(path)
    load_args = ["refdata", "load", "--hts", paths[0], "--violators", paths[1],
                 "--countries", paths[2], "--redis", address]

    # ---- refdata load: default user, password from ${file:...}
    res = run(*load_args, "--set", f"redis.password=${{file:{secret_file}}}")
    c.equal(res.returncode, 0, "refdata load with redis.password=${file:...} exits 0", res.stderr)
    c.check(redis_cli("GET", "pr:ref:current") != "", "the load switched a current version")

    # ---- refdata status: ACL user, password from ${VAR}
    user_env = {"PR_TEST_REDIS_PW": USER_PW}
    res = run("refdata", "status", "--redis", address, "--set", "redis.user=prapp",
              "--set", "redis.password=${PR_TEST_REDIS_PW}", env=user_env)
    c.equal(res.returncode, 0, "refdata status as ACL user with ${VAR} exits 0", res.stderr)
    c.check("manifest_check: ok" in res.stdout, "status reads the loaded version", res.stdout)

    # ---- wrong password and no password: clear refusals
    res = run("refdata", "status", "--redis", address, "--set", f"redis.password={WRONG_PW}")
    c.equal(res.returncode, 1, "refdata status with a wrong password exits 1")
    c.check(re.search(rf"refdata: Redis at {address} refused AUTH: WRONGPASS invalid "
                      r"username-password pair or user is disabled\. \(check redis\.user and "
                      r"redis\.password\)", res.stderr),
            "refdata status names the AUTH refusal", res.stderr)
    res = run(*load_args, "--set", "redis.user=prapp", "--set", "redis.password=${PR_TEST_REDIS_PW}",
              env={"PR_TEST_REDIS_PW": WRONG_PW})
    c.equal(res.returncode, 1, "refdata load with a wrong ACL password exits 1")
    c.check("refused AUTH: WRONGPASS" in res.stderr, "refdata load names the AUTH refusal",
            res.stderr)
    res = run("refdata", "status", "--redis", address, "--set", "redis.password=${PR_TEST_UNSET_PW}")
    c.equal(res.returncode, 2, "an unset ${VAR} is a configuration error (exit 2)")
    c.equal(res.stderr,
            "parcelrisk: config error: --set: key 'redis.password': environment variable "
            "'PR_TEST_UNSET_PW' is not set (${PR_TEST_UNSET_PW:-default} gives a default)\n",
            "the unset variable is named, exactly")

    # ---- run as the ACL user: decisions come out
    p = Pipeline("secrets", extra_sets=[f"redis.address={address}", "redis.user=prapp",
                                        "redis.password=${PR_TEST_REDIS_PW}",
                                        "kafka.sasl.password=${PR_TEST_KAFKA_PW}"])
    os.environ["PR_TEST_REDIS_PW"] = USER_PW
    os.environ["PR_TEST_KAFKA_PW"] = KAFKA_PW
    p.create_topics()
    cases = [declaration(f"S-{i}") for i in range(20)]
    cases.append(declaration("S-VIOLATOR", shipper={
        "name": "Shenzhen Bright Trading Co., Ltd.", "address": "1 Bao An Road",
        "city": "Shenzhen", "postal_code": "518000", "country": "CN"}))
    produce(p, cases)
    rc, summary = p.run_until_idle()
    with open(os.path.join(WORK, f"{p.prefix}-run1.log")) as fh:
        run_log = fh.read()
    outputs.append(run_log)
    c.equal(rc, 0, "run with the ACL user's password from ${VAR} exits 0", run_log[-2000:])
    decisions = {d["declaration_id"]: d for d in p.tail("decisions")}
    c.equal(set(decisions), {d["declaration_id"] for d in cases},
            "one decision per declaration through the password-protected Redis")
    violator = decisions.get("S-VIOLATOR")
    c.check(violator is not None and "KNOWN_VIOLATOR" in {r["code"] for r in violator["reasons"]},
            "reference data read through AUTH: the listed shipper is KNOWN_VIOLATOR",
            str(violator and violator["reasons"]))
    c.check(all(decisions[d]["lane"] == "GREEN" for d in decisions if d != "S-VIOLATOR"),
            "the clean declarations are GREEN")

    # ---- run with a wrong password, and with none: exit 2 with the reason
    os.environ["PR_TEST_REDIS_PW"] = WRONG_PW
    rc, _ = p.run_until_idle()
    with open(os.path.join(WORK, f"{p.prefix}-run2.log")) as fh:
        log = fh.read()
    outputs.append(log)
    c.equal(rc, 2, "run with a wrong Redis password exits 2", log[-2000:])
    c.check(f"Redis 127.0.0.1:{port} refused AUTH: WRONGPASS invalid username-password pair or "
            "user is disabled. (check redis.user and redis.password)" in log,
            "run names the AUTH refusal", log[-2000:])
    p.sets += ["--set", "redis.user=", "--set", "redis.password="]
    rc, _ = p.run_until_idle()
    with open(os.path.join(WORK, f"{p.prefix}-run3.log")) as fh:
        log = fh.read()
    outputs.append(log)
    c.equal(rc, 2, "run without a password against a Redis that needs one exits 2", log[-2000:])
    c.check(f"Redis 127.0.0.1:{port} needs a password: NOAUTH Authentication required. "
            "(set redis.password)" in log, "run says a password is needed", log[-2000:])
finally:
    redis.terminate()
    redis.wait(timeout=30)
    redis_log.close()

# ------------------------------------------------------------ JSON logs
# This run uses the fixture's Redis (no password): it needs reference data.
loaded = load_refdata()
c.equal(loaded.returncode, 0, "reference data loads into the fixture's Redis", loaded.stderr[-500:])
os.environ["PR_TEST_KAFKA_PW"] = KAFKA_PW
j = Pipeline("jsonlog", extra_sets=["log.format=json", "log.level=debug",
                                    "kafka.debug=broker,conf",
                                    "kafka.sasl.password=${PR_TEST_KAFKA_PW}",
                                    "stats.interval_ms=1000"])
j.create_topics()
produce(j, [declaration(f"J-{i}") for i in range(5)])
rc, summary = j.run_until_idle()
with open(os.path.join(WORK, f"{j.prefix}-run1.log")) as fh:
    log = fh.read()
outputs.append(log)
c.equal(rc, 0, "a json-logging run exits 0", log[-2000:])
c.equal(summary.get("consumed"), 5, "it consumed the 5 declarations")
lines = [l for l in log.split("\n") if l != ""]
parsed, bad = [], []
for l in lines:
    try:
        obj = json.loads(l)
        parsed.append(obj)
    except ValueError:
        bad.append(l)
c.check(lines and not bad, f"every one of {len(lines)} log lines is JSON", str(bad[:3]))
ts_re = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
c.check(all(isinstance(o, dict) and ts_re.match(o.get("ts", "")) and
            o.get("level") in ("error", "warn", "info", "debug") and isinstance(o.get("msg"), str)
            and o.get("source") in ("parcelrisk", "librdkafka") for o in parsed),
        "each has ts (RFC 3339 UTC), level, msg and source",
        str([o for o in parsed if not isinstance(o, dict) or o.get("source") not in
             ("parcelrisk", "librdkafka")][:3]))
kafka_lines = [o for o in parsed if o.get("source") == "librdkafka"]
c.check(kafka_lines, "librdkafka's own lines come through the logger")
c.check(any(o["level"] == "debug" for o in kafka_lines),
        "librdkafka's debug context comes out at level debug")
c.check(any(o.get("source") == "parcelrisk" for o in parsed), "parcelrisk's own lines too")
c.check(not any(l.startswith("%") for l in lines), "no raw %N|... librdkafka lines")

# ------------------------------------------------------------- no secret
for secret in SECRETS:
    c.check(not any(secret in text for text in outputs),
            f"secret {secret[:10]}... appears in no stdout, stderr or log")
c.done()
