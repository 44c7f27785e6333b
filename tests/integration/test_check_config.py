"""`parcelrisk check-config` on good and broken files, against the real
services: every check line is 'NAME: ok (...)' or 'NAME: FAIL: why', the exit
status is 0 only when every check passed, and no secret is ever printed.

Good file, without and with --connect (Kafka metadata with the four topics
and their partition counts, Redis PING, the reference data's manifest);
broken: an unknown key, a bad value (both reported, with file and line),
a missing rules file, a policy file with an error, an unreachable Redis, a
missing topic, a Redis that wants a password, no reference data loaded."""
import os
import re
import socket
import subprocess
import uuid

from harness import BIN, BOOTSTRAP, REDIS, WORK, Checks, Pipeline, load_refdata, redis_cli

c = Checks("check_config")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tag = uuid.uuid4().hex[:8]
SECRET = f"s3cret-{uuid.uuid4().hex}"
secret_file = os.path.join(WORK, f"check-{tag}.secret")
with open(secret_file, "w") as fh:
    fh.write(SECRET + "\n")

p = Pipeline("check")
p.create_topics()
loaded = load_refdata()
c.equal(loaded.returncode, 0, "reference data loads", loaded.stderr[-500:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(name, text):
    path = os.path.join(WORK, f"check-{tag}-{name}.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def good_yaml(**over):
    values = {
        "group": p.prefix, "redis": REDIS, "brokers": BOOTSTRAP,
        "rules": os.path.join(ROOT, "schemas", "rules.yaml"),
        "policy": os.path.join(ROOT, "schemas", "policy-us.yaml"),
        "alerts": p.topics["alerts"], "extra": "",
    }
    values.update(over)
    return (f"group: {values['group']}\n"
            f"topics:\n"
            f"  declarations: {p.topics['declarations']}\n"
            f"  decisions: {p.topics['decisions']}\n"
            f"  alerts: {values['alerts']}\n"
            f"  dlq: {p.topics['dlq']}\n"
            f"redis:\n  address: {values['redis']}\n"
            f"rules: {{file: {values['rules']}}}\n"
            f"policy: {{file: {values['policy']}}}\n"
            f"kafka:\n  bootstrap.servers: {values['brokers']}\n"
            f"{values['extra']}")


outputs = []


def check_config(path, *args, env=None):
    res = subprocess.run([BIN, "check-config", "--config", path, *args], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **(env or {})})
    outputs.extend([res.stdout, res.stderr])
    lines = res.stdout.splitlines()
    return res, lines


def line_of(lines, prefix):
    found = [l for l in lines if l.startswith(prefix)]
    return found[0] if found else ""


def every_line_shaped(lines):
    """Every line is a check (NAME: ok / NAME: FAIL: why) or the summary."""
    return all(re.match(r"^\S.*?: (ok( \(.*\))?|FAIL: .+)$", l) or
               l.startswith("check-config: ") for l in lines)


# ------------------------------------------------------------------ good
good = write("good", good_yaml())
res, lines = check_config(good)
c.equal(res.returncode, 0, "good file: exit 0", res.stdout + res.stderr[-800:])
c.check(line_of(lines, f"config {good}: ok"), "good file: config line ok", str(lines))
c.check(line_of(lines, "rules ").endswith(")") and ": ok (version " in line_of(lines, "rules "),
        "good file: rules line ok with its version", str(lines))
c.check(": ok (version us-" in line_of(lines, "policy "), "good file: policy line ok", str(lines))
c.equal(lines[-1:], ["check-config: all 3 checks passed (--connect also reaches Kafka, Redis and "
                     "the reference data)"], "good file: 3 checks without --connect")
c.check(every_line_shaped(lines), "good file: every line is a check line", str(lines))

res, lines = check_config(good, "--connect")
c.equal(res.returncode, 0, "good file --connect: exit 0", res.stdout + res.stderr[-800:])
c.check(line_of(lines, f"kafka {BOOTSTRAP}: ok (1 broker"), "--connect: Kafka reached", str(lines))
for key, partitions in (("declarations", 8), ("decisions", 4), ("alerts", 4), ("dlq", 4)):
    c.equal(line_of(lines, f"topic topics.{key} "),
            f"topic topics.{key} '{p.topics[key]}': ok ({partitions} partitions, every one led)",
            f"--connect: topic {key} exists with {partitions} partitions")
c.equal(line_of(lines, f"redis {REDIS}"), f"redis {REDIS}: ok (PING answered, no AUTH)",
        "--connect: Redis answers PING")
current = redis_cli("GET", "pr:ref:current")
c.check(line_of(lines, "refdata: ok (version ").startswith(f"refdata: ok (version {current}, manifest "
                                                             "checks out: hts:hash:"),
        "--connect: the current reference data checks out", str(lines))
for key, kind in (("repartition", "repartition"), ("changelog", "changelog")):
    c.equal(line_of(lines, f"internal topic topics.{key} "),
            f"internal topic topics.{key} '{p.prefix}.{kind}': ok (8 partitions)",
            f"--connect: the internal {key} topic exists with 8 partitions (topics create made it)")
c.equal(lines[-1:], ["check-config: all 12 checks passed"], "--connect: 12 checks")
c.check(every_line_shaped(lines), "--connect: every line is a check line", str(lines))

# -------------------------------------------------- unknown key, bad value
bad = write("bad-keys", good_yaml(extra="batch:\n  size: lots\nbogus_key: 1\n"))
res, lines = check_config(bad, "--connect")
c.equal(res.returncode, 2, "unknown key and bad value: exit 2")
c.check(f"config {bad}: FAIL: {bad}:14: key 'batch.size': expected an integer from 1 to 100000, "
        "got 'lots'" in lines, "bad value: named with file, line and key", str(lines))
c.check(f"config {bad}: FAIL: {bad}:15: unknown key 'bogus_key' (see `parcelrisk config-keys`)"
        in lines, "unknown key: named with file and line", str(lines))
c.equal(lines[-1:], ["check-config: 2 of 2 checks failed (the configuration is refused: nothing "
                     "else checked)"], "bad file: nothing else is checked")
c.check(not any(l.startswith("kafka ") for l in lines), "bad file: Kafka not contacted")

# A cross-key check (the loader's pr_config_validate) and a librdkafka property.
cross = write("cross", good_yaml(alerts=p.topics["decisions"]))
res, lines = check_config(cross)
c.equal(res.returncode, 2, "two topics alike: exit 2")
c.check(any("the four topics must be distinct" in l and l.startswith(f"config {cross}: FAIL: {cross}:5: ")
            for l in lines), "cross-key check reported with file and line", str(lines))
prop = write("kafka-prop", good_yaml(extra="kafka.no.such.property: 1\n"))
res, lines = check_config(prop)
c.equal(res.returncode, 2, "a property librdkafka does not know: exit 2")
c.check(f"config {prop}: FAIL: {prop}:13: key 'kafka.no.such.property': No such configuration "
        'property: "no.such.property"' in lines, "librdkafka's refusal reported", str(lines))

# ------------------------------------------------------------ rule files
missing_rules = os.path.join(WORK, f"check-{tag}-no-such-rules.yaml")
norules = write("no-rules", good_yaml(rules=missing_rules))
res, lines = check_config(norules)
c.equal(res.returncode, 2, "missing rules file: exit 2")
c.equal(line_of(lines, "rules "), f"rules {missing_rules}: FAIL: {missing_rules}: cannot open: "
        "No such file or directory", "missing rules file: named with the reason")
c.check(": ok (version us-" in line_of(lines, "policy "), "missing rules file: policy still checked")
c.equal(lines[-1:], ["check-config: 1 of 3 checks failed"], "missing rules file: 1 of 3 failed")

with open(os.path.join(ROOT, "schemas", "policy-us.yaml")) as fh:
    policy_text = fh.read()
bad_policy = os.path.join(WORK, f"check-{tag}-policy.yaml")
with open(bad_policy, "w") as fh:
    fh.write(policy_text + "no_such_policy_key: 1\n")
res, lines = check_config(write("bad-policy", good_yaml(policy=bad_policy)))
c.equal(res.returncode, 2, "policy file with an unknown key: exit 2")
c.check(line_of(lines, f"policy {bad_policy}: FAIL: {bad_policy}:"), "bad policy: file and line",
        str(lines))

# ---------------------------------------------------- services not there
dead_redis = f"127.0.0.1:{free_port()}"
res, lines = check_config(write("no-redis", good_yaml(redis=dead_redis)), "--connect")
c.equal(res.returncode, 2, "unreachable Redis with --connect: exit 2")
c.equal(line_of(lines, "redis "), f"redis {dead_redis}: FAIL: unreachable: Connection refused",
        "unreachable Redis: named with the reason")
c.equal(line_of(lines, "refdata"), "refdata: FAIL: not checked: Redis is not reachable",
        "unreachable Redis: reference data not checked")
c.check(line_of(lines, "topic topics.declarations ").endswith("ok (8 partitions, every one led)"),
        "unreachable Redis: Kafka still checked")
c.equal(lines[-1:], ["check-config: 2 of 12 checks failed"], "unreachable Redis: 2 of 12 failed")
res, lines = check_config(good)
c.equal(res.returncode, 0, "unreachable Redis does not matter without --connect")

missing_topic = f"{p.prefix}.no-such-alerts"
res, lines = check_config(write("no-topic", good_yaml(alerts=missing_topic)), "--connect")
c.equal(res.returncode, 2, "missing topic with --connect: exit 2")
c.check(line_of(lines, f"topic topics.alerts '{missing_topic}': FAIL: does not exist on the cluster"),
        "missing topic: named", str(lines))
c.equal(sum(1 for l in lines if l.startswith("topic ") and ": ok (" in l), 3,
        "missing topic: the three others are ok")
c.equal(lines[-1:], ["check-config: 1 of 12 checks failed"], "missing topic: 1 of 12 failed")
md = subprocess.run([BIN, "tail", "raw", "--topic", missing_topic, *p.sets], capture_output=True,
                    text=True, timeout=120)
c.check(md.returncode != 0, "missing topic: checking it did not create it", md.stdout[-300:])

dead_kafka = f"127.0.0.1:{free_port()}"
res, lines = check_config(write("no-kafka", good_yaml(brokers=dead_kafka)), "--connect")
c.equal(res.returncode, 2, "unreachable Kafka: exit 2")
c.check(line_of(lines, f"kafka {dead_kafka}: FAIL: no metadata within 10000 ms"),
        "unreachable Kafka: named", str(lines))
c.equal(sum(1 for l in lines if l.startswith("topic ") and "FAIL: not checked" in l), 4,
        "unreachable Kafka: topics not checked")

# --------------------------------------------------------------- secrets
# The fixture's Redis has no password: AUTH is refused, and the password
# (read from a file) appears nowhere.
res, lines = check_config(write("secret", good_yaml(extra=f"redis.password: ${{file:{secret_file}}}\n")),
                          "--connect")
c.equal(res.returncode, 2, "AUTH refused: exit 2")
c.check(line_of(lines, f"redis {REDIS}: FAIL: refused AUTH: "), "AUTH refused: named", str(lines))
res, lines = check_config(write("secret-bad", good_yaml(
    extra=f"redis.password: {SECRET}\nkafka.sasl.password: {SECRET}\n"
          f"kafka.ssl.key.password: {SECRET}x\nredis.user: u\nbogus: 1\n")))
c.equal(res.returncode, 2, "secret-bearing bad file: exit 2")
c.check(any("unknown key 'bogus'" in l for l in lines), "secret-bearing bad file: the bad key named",
        str(lines))

# No reference data: a Redis of our own, empty.
port = free_port()
empty_dir = os.path.join(WORK, f"check-redis-{tag}")
os.makedirs(empty_dir, exist_ok=True)
empty = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", empty_dir],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    import time
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                          text=True).stdout.strip() == "PONG":
            break
        time.sleep(0.1)
    res, lines = check_config(write("empty-redis", good_yaml(redis=f"127.0.0.1:{port}")), "--connect")
    c.equal(res.returncode, 2, "no reference data: exit 2")
    c.equal(line_of(lines, "refdata"), "refdata: FAIL: no reference data loaded (pr:ref:current is not "
            "set): run `parcelrisk refdata load`", "no reference data: named")
    # An ACL user with the password in a file: AUTH succeeds, the reference
    # data loaded there checks out; a wrong password is refused, unprinted.
    acl = subprocess.run(["redis-cli", "-p", str(port), "ACL", "SETUSER", "prcheck", "on", ">" + SECRET,
                          "~*", "&*", "+@all"], capture_output=True, text=True, timeout=30)
    c.equal(acl.stdout.strip(), "OK", "ACL user created")
    loaded = load_refdata(extra=("--redis", f"127.0.0.1:{port}"))
    c.equal(loaded.returncode, 0, "reference data loaded into the second Redis", loaded.stderr[-300:])
    auth_yaml = good_yaml(redis=f"127.0.0.1:{port}",
                          extra=f"redis.user: prcheck\nredis.password: ${{file:{secret_file}}}\n")
    res, lines = check_config(write("acl", auth_yaml), "--connect")
    c.equal(res.returncode, 0, "AUTH as an ACL user: exit 0", res.stdout + res.stderr[-500:])
    c.equal(line_of(lines, f"redis 127.0.0.1:{port}"),
            f"redis 127.0.0.1:{port}: ok (PING answered, AUTH as user 'prcheck')", "AUTH as the ACL user")
    c.check(line_of(lines, "refdata: ok (version "), "the second Redis's reference data checks out")
    res, lines = check_config(write("acl-wrong", auth_yaml.replace(f"${{file:{secret_file}}}", SECRET + "x")),
                              "--connect")
    c.equal(res.returncode, 2, "a wrong password: exit 2")
    c.check(line_of(lines, f"redis 127.0.0.1:{port}: FAIL: refused AUTH: WRONGPASS"),
            "a wrong password: refused, Redis's words", str(lines))
finally:
    empty.terminate()
    empty.wait(timeout=30)

leaks = [o for o in outputs if SECRET in o]
c.check(not leaks, "no output holds the secret", str(leaks)[:500])

# ---------------------------------------------------------- command line
res = subprocess.run([BIN, "check-config"], capture_output=True, text=True, timeout=60)
c.equal(res.returncode, 2, "no --config: exit 2")
c.check("--config FILE is required" in res.stderr, "no --config: said so", res.stderr)
res = subprocess.run([BIN, "check-config", "--help"], capture_output=True, text=True, timeout=60)
c.equal(res.returncode, 0, "--help: exit 0")
c.done()
