"""The command line and the configuration errors of the parcelrisk binary.

Most cases never reach Kafka or Redis: they are refused (exit 2) while the
options or the configuration are read, and each is checked on its exact exit
status and its exact message. --help on every subcommand exits 0 and lists
that subcommand's options on stdout. A few cases at the end run against the
fixture's broker to show that options still parse wherever they stand
(`gen ... --brokers B --set ...`, `tail raw --topic T --max N`), and that
--allow-defaults makes an empty file usable (`refdata load --dry-run`)."""
import os
import subprocess
import uuid

from harness import BIN, WORK, Checks, Pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "ops", "refdata")
REFDATA = ["--hts", os.path.join(REF, "hts.csv"), "--violators", os.path.join(REF, "violators.csv"),
           "--countries", os.path.join(REF, "countries.csv")]

c = Checks("test_cli")


def run(*args, timeout=60):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def refused(args, stderr, what=None, status=2):
    """args exits `status` with exactly `stderr` and nothing on stdout."""
    res = run(*args)
    what = what or " ".join(args)
    c.equal(res.returncode, status, f"{what}: exit {status}", res.stderr[-500:])
    c.equal(res.stderr, stderr, f"{what}: message")
    c.equal(res.stdout, "", f"{what}: nothing on stdout")
    return res


def hint(cmd):
    return f"Try 'parcelrisk {cmd} --help'.\n"


def temp_file(text, suffix=".yaml"):
    path = os.path.join(WORK, f"cli-{uuid.uuid4().hex[:8]}{suffix}")
    with open(path, "w") as fh:
        fh.write(text)
    return path


# ------------------------------------------------------------ help, exit 0
COMMANDS = ["run", "gen", "produce", "tail", "topics", "refdata", "config-keys", "version"]
SHARED = ["--config", "--set", "--brokers", "--allow-defaults", "--help"]
OPTIONS = {
    "run": SHARED + ["--exit-when-idle", "--summary"],
    "gen": SHARED + ["--count", "--rate", "--bad", "--seed", "--start", "--days", "--consignees",
                     "--ids", "--topic", "--quiet"],
    "produce": SHARED + ["--input", "--topic"],
    "tail": SHARED + ["--follow", "--max", "--topic", "decisions|alerts|dlq|raw"],
    "topics": SHARED + ["create"],
    "refdata": SHARED + ["load", "status", "--hts", "--violators", "--countries", "--redis",
                         "--skip-bad", "--grace-seconds", "--dry-run", "--quiet"],
    "config-keys": [],
    "version": [],
}

for top in (["help"], ["--help"], ["-h"]):
    res = run(*top)
    c.equal(res.returncode, 0, f"parcelrisk {top[0]}: exit 0")
    c.equal(res.stderr, "", f"parcelrisk {top[0]}: nothing on stderr")
    c.check(res.stdout.startswith("parcelrisk ") and "usage: parcelrisk <command> [options]" in res.stdout,
            f"parcelrisk {top[0]}: usage on stdout", res.stdout[:200])
    missing = [cmd for cmd in COMMANDS if f"\n  {cmd} " not in res.stdout]
    c.equal(missing, [], f"parcelrisk {top[0]}: lists every command")
    c.check("--allow-defaults" in res.stdout and "Exit status: 0" in res.stdout,
            f"parcelrisk {top[0]}: shared options and exit statuses")

res = run()
c.equal(res.returncode, 2, "parcelrisk without a command: exit 2")
c.check("usage: parcelrisk <command>" in res.stderr and res.stdout == "",
        "parcelrisk without a command: usage on stderr")

for cmd in COMMANDS:
    for flag in ("--help", "-h"):
        res = run(cmd, flag)
        c.equal(res.returncode, 0, f"{cmd} {flag}: exit 0", res.stderr[-300:])
        c.equal(res.stderr, "", f"{cmd} {flag}: nothing on stderr")
        c.check(res.stdout.startswith(f"usage: parcelrisk {cmd}"), f"{cmd} {flag}: usage on stdout",
                res.stdout[:120])
        missing = [o for o in OPTIONS[cmd] if o not in res.stdout]
        c.equal(missing, [], f"{cmd} {flag}: shows every option")
    # `help CMD` is `CMD --help`.
    res = run("help", cmd)
    c.check(res.returncode == 0 and res.stdout == run(cmd, "--help").stdout,
            f"help {cmd}: exit 0, the text of {cmd} --help")
# Options are read in order: --help answers at once, unless an option before it is wrong.
res = run("run", "--help", "--bogus")
c.check(res.returncode == 0 and res.stdout.startswith("usage: parcelrisk run"), "run --help --bogus: help, exit 0")
refused(["gen", "--count", "x", "--help"],
        "parcelrisk gen: --count: expected a whole number, 0 or more, got 'x'\nTry 'parcelrisk gen --help'.\n")

res = run("version")
c.check(res.returncode == 0 and res.stdout.startswith("parcelrisk 0.") and "librdkafka" in res.stdout,
        "version: exit 0 with the version", res.stdout)
c.equal(run("--version").stdout, res.stdout, "--version = version")

# ------------------------------------------------- unknown commands, options
refused(["runn"], "parcelrisk: unknown command 'runn'\nTry 'parcelrisk --help'.\n")
refused(["--bogus"], "parcelrisk: unknown option '--bogus'\nTry 'parcelrisk --help'.\n")
refused(["help", "runn"], "parcelrisk: unknown command 'runn'\nTry 'parcelrisk --help'.\n")
refused(["run", "--bogus"], "parcelrisk run: unknown option '--bogus'\n" + hint("run"))
refused(["run", "--bogus=1"], "parcelrisk run: unknown option '--bogus'\n" + hint("run"))
refused(["run", "-x"], "parcelrisk run: unknown option '-x'\n" + hint("run"))
refused(["gen", "--quiet=yes"], "parcelrisk gen: option '--quiet' takes no value\n" + hint("gen"))
refused(["gen", "--s", "1"], "parcelrisk gen: ambiguous option '--s' (3 options start so)\n" + hint("gen"))
refused(["gen", "--count"], "parcelrisk gen: option '--count' needs a value\n" + hint("gen"))
refused(["run", "extra"], "parcelrisk run: unexpected argument 'extra'\n" + hint("run"))
refused(["version", "extra"], "parcelrisk version: unexpected argument 'extra'\n" + hint("version"))
refused(["config-keys", "--set", "a=b"],
        "parcelrisk config-keys: unknown option '--set'\n" + hint("config-keys"))
refused(["tail"], "parcelrisk tail: expected what to print: decisions, alerts, dlq or raw\n" + hint("tail"))
refused(["tail", "decision"],
        "parcelrisk tail: unknown record kind 'decision' (expected: decisions, alerts, dlq or raw)\n"
        + hint("tail"))
refused(["tail", "decisions", "alerts"], "parcelrisk tail: unexpected argument 'alerts'\n" + hint("tail"))
refused(["tail", "raw"], "parcelrisk tail: tail raw needs --topic NAME\n" + hint("tail"))
refused(["tail", "raw", "--topic", "a b"],
        "parcelrisk tail: --topic: 'a b' is not a Kafka topic name\n" + hint("tail"))
refused(["gen", "--topic", ""], "parcelrisk gen: --topic: '' is not a Kafka topic name\n" + hint("gen"))
refused(["topics"], "parcelrisk topics: expected an action: create\n" + hint("topics"))
refused(["topics", "delete"], "parcelrisk topics: unknown action 'delete' (expected: create)\n" + hint("topics"))
refused(["refdata"], "parcelrisk refdata: expected an action: load or status\n" + hint("refdata"))
refused(["refdata", "status", "--hts", "x.csv"],
        "parcelrisk refdata: option '--hts' is for refdata load only\n" + hint("refdata"))
refused(["refdata", "load", "--hts", "x.csv"],
        "parcelrisk refdata: load: --hts, --violators and --countries are all required (a load "
        "replaces the whole reference set)\n" + hint("refdata"))
refused(["run", "--config", "a.yaml", "--config", "b.yaml"],
        "parcelrisk run: --config given twice ('a.yaml' and 'b.yaml'): give one file\n" + hint("run"))

# ------------------------------------------------------------------ numbers
refused(["run", "--exit-when-idle", "3s"],
        "parcelrisk run: --exit-when-idle: expected a whole number of milliseconds from 1 to "
        "86400000, got '3s'\n" + hint("run"))
for value in ("0", "-1", "1.5", " 300", "+300", "86400001", ""):
    refused(["run", "--exit-when-idle", value],
            "parcelrisk run: --exit-when-idle: expected a whole number of milliseconds from 1 to "
            f"86400000, got '{value}'\n" + hint("run"))
for value in ("abc", "-5", "10k", "1e4", "0x10", "18446744073709551615"):
    refused(["gen", "--count", value],
            f"parcelrisk gen: --count: expected a whole number, 0 or more, got '{value}'\n" + hint("gen"))
refused(["gen", "--bad", "-1"], "parcelrisk gen: --bad: expected a whole number, 0 or more, got '-1'\n"
        + hint("gen"))
refused(["gen", "--count", "10", "--bad", "11"], "parcelrisk gen: --bad 11 is more than --count 10\n"
        + hint("gen"))
refused(["gen", "--seed", "x1"], "parcelrisk gen: --seed: expected a whole number, 0 or more, got 'x1'\n"
        + hint("gen"))
refused(["gen", "--days", "0"], "parcelrisk gen: --days: expected a whole number of days from 1 to "
        "36500, got '0'\n" + hint("gen"))
refused(["gen", "--consignees", "4294967296"],
        "parcelrisk gen: --consignees: expected a whole number from 1 to 4294967295, got "
        "'4294967296'\n" + hint("gen"))
for value in ("100/s", "-1", "0x10", "inf", "nan", "1e10"):
    refused(["gen", "--rate", value],
            "parcelrisk gen: --rate: expected a number per second from 0 to 1000000000, got "
            f"'{value}'\n" + hint("gen"))
refused(["gen", "--start", "2025-13-01"],
        "parcelrisk gen: --start: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got '2025-13-01'\n"
        + hint("gen"))
refused(["tail", "decisions", "--max", "5x"],
        "parcelrisk tail: --max: expected a whole number of records, 0 or more, got '5x'\n" + hint("tail"))
refused(["refdata", "load", *REFDATA, "--grace-seconds", "1h"],
        "parcelrisk refdata: --grace-seconds: expected a whole number of seconds from 0 to 31536000, "
        "got '1h'\n" + hint("refdata"))

# ------------------------------------------------------------ configuration
CE = "parcelrisk: config error: "
refused(["run", "--set", "topics.decisions="],
        CE + "--set: key 'topics.decisions' must not be empty (one Decision per declaration, key "
        "declaration_id)\n")
refused(["run", "--set", "group="],
        CE + "--set: key 'group' must not be empty (Kafka consumer group id shared by every instance)\n")
for key, desc in (("topics.declarations", "input topic"),
                  ("topics.alerts", "YELLOW and RED decisions, key house_bill"),
                  ("topics.dlq", "DeadLetter records, original key"),
                  ("redis.address", "host:port of the reference-data and state Redis")):
    for cmd in ("run", "gen", "tail decisions", "produce", "topics create", "refdata status"):
        refused([*cmd.split(), "--set", f"{key}="], CE + f"--set: key '{key}' must not be empty ({desc})\n")
refused(["run", "--brokers", ""],
        CE + "--brokers: key 'kafka.bootstrap.servers' must not be empty (the Kafka brokers, host:port,...)\n")
refused(["gen", "--set", "kafka.bootstrap.servers= "],
        CE + "--set: key 'kafka.bootstrap.servers' must not be empty (the Kafka brokers, host:port,...)\n")
refused(["run", "--set", "group"], CE + "--set: expected key=value, got 'group'\n")
refused(["run", "--set", "=x"], CE + "--set: expected key=value, got '=x'\n")
refused(["run", "--set", "batch.sise=10"],
        CE + "--set: unknown key 'batch.sise' (see `parcelrisk config-keys`)\n")
refused(["refdata", "status", "--redis", "localhost"],
        CE + "--redis: key 'redis.address': expected host:port with a port from 1 to 65535, got 'localhost'\n")
refused(["run", "--set", "topics.dlq=declarations"],
        CE + "--set: key 'topics.dlq': topic 'declarations' is also the value of 'topics.declarations' "
        "from (defaults); the four topics must be distinct\n")

# The origin of an error in a --set value is --set: never "(defaults)", never
# the file, with or without a --config file.
refused(["run", "--set", "chain=decode,bogus,encode"], CE + "--set: key 'chain': unknown operator 'bogus'\n")
refused(["run", "--set", "kafka.no.such.property=1"],
        CE + "--set: key 'kafka.no.such.property': No such configuration property: \"no.such.property\"\n")
refused(["run", "--set", "kafka.consumer.fetch.wait.max.ms=soon"],
        CE + "--set: key 'kafka.consumer.fetch.wait.max.ms': Invalid value for configuration property "
        "\"fetch.wait.max.ms\"\n")
good = temp_file("group: cli-test\nbatch:\n  size: 100\n")
refused(["run", "--config", good, "--set", "batch.size=lots"],
        CE + "--set: key 'batch.size': expected an integer from 1 to 100000, got 'lots'\n")
refused(["run", "--set", "kafka.batch.num.messages=x", "--config", good],
        CE + "--set: key 'kafka.batch.num.messages': Invalid value for configuration property \"batch.num.messages\"\n")
refused(["run", "--config", good, "--set", "topics.decisions=hub.in", "--set", "topics.alerts=hub.in"],
        CE + "--set: key 'topics.alerts': topic 'hub.in' is also the value of 'topics.decisions' from "
        "--set; the four topics must be distinct\n")
# ... and the origin of a file value is the file and its line.
bad = temp_file("group: cli-test\nbatch:\n  size: lots\ntopics:\n  decisions: ''\nkafka:\n  batch.num.messages: x\n")
refused(["run", "--config", bad],
        CE + f"{bad}:3: key 'batch.size': expected an integer from 1 to 100000, got 'lots'\n"
        + CE + f"{bad}:5: key 'topics.decisions' must not be empty (one Decision per declaration, key "
        "declaration_id)\n"
        + CE + f"{bad}:7: key 'kafka.batch.num.messages': Invalid value for configuration property \"batch.num.messages\"\n")
twice = temp_file("group: a\ntopics:\n  dlq: x.dlq\ngroup: b\n")
refused(["gen", "--config", twice], CE + f"{twice}:4: key 'group' is set twice in this file (first on line 1)\n")
dup = temp_file("topics:\n  declarations: hub.in\n  dlq: hub.in\n")
refused(["tail", "dlq", "--config", dup],
        CE + f"{dup}:3: key 'topics.dlq': topic 'hub.in' is also the value of 'topics.declarations' from "
        f"{dup}:2; the four topics must be distinct\n")
refused(["run", "--config", "/nonexistent/parcelrisk.yaml"],
        CE + "/nonexistent/parcelrisk.yaml: cannot open: No such file or directory\n")

# An empty or all-comment file is refused unless --allow-defaults.
comments = temp_file("# nothing but comments\n\n   # here\n")
for path in ("/dev/null", comments):
    nothing = (CE + f"{path}: the file sets nothing (empty or only comments): every key would take its "
               "default (Kafka on 127.0.0.1:9092, Redis on 127.0.0.1:6379); set the keys, or give "
               "--allow-defaults to run on the defaults on purpose\n")
    for cmd in (["run"], ["gen"], ["produce"], ["tail", "decisions"], ["topics", "create"],
                ["refdata", "status"], ["refdata", "load", *REFDATA, "--dry-run"]):
        refused([*cmd, "--config", path], nothing, f"{cmd[0]} --config {os.path.basename(path)}")
    # --allow-defaults: the file is accepted (a dry run reaches neither Kafka nor Redis).
    res = run("refdata", "load", *REFDATA, "--dry-run", "--quiet", "--config", path, "--allow-defaults")
    c.equal(res.returncode, 0, f"refdata load --dry-run --config {os.path.basename(path)} --allow-defaults: "
            "exit 0", res.stderr[-500:])
    c.check("dry run, nothing written" in res.stdout, "... and validated the files", res.stdout[:200])
# Without --config the defaults are the configuration (the documented way to
# run on --set and --brokers alone); --allow-defaults is accepted there too.
res = run("refdata", "load", *REFDATA, "--dry-run", "--quiet", "--allow-defaults")
c.equal(res.returncode, 0, "refdata load --dry-run --allow-defaults without --config: exit 0", res.stderr)

# --------------------------------------------------- against the broker
p = Pipeline("cli")
p.create_topics()
ids = os.path.join(WORK, f"{p.prefix}-ids.txt")
# Options in any order, positionals anywhere, shared options after the own ones.
res = subprocess.run([BIN, "gen", "--quiet", *p.sets, "--count", "3", "--seed", "5", "--ids", ids,
                      "--rate", "100.5"], capture_output=True, text=True, timeout=120)
c.equal(res.returncode, 0, "gen --count 3 with the shared options after: exit 0", res.stderr[-500:])
with open(ids) as fh:
    c.equal(len(fh.read().splitlines()), 3, "gen --count 3 wrote 3 ids")
res = subprocess.run([BIN, "tail", *p.sets, "--topic", p.topics["declarations"], "--max", "2", "raw"],
                     capture_output=True, text=True, timeout=120)
c.equal(res.returncode, 0, "tail --topic T --max 2 raw: exit 0", res.stderr[-500:])
c.equal(len(res.stdout.splitlines()), 2, "tail --max 2 printed 2 records")
c.equal(len(p.tail_raw()), 3, "tail raw --topic T printed the 3 records")
res = subprocess.run([BIN, "tail", "decisions", "--max", "0", *p.sets], capture_output=True, text=True,
                     timeout=120)
c.check(res.returncode == 0 and res.stdout == "", "tail decisions --max 0: exit 0, nothing printed",
        res.stderr[-300:])

c.done()
