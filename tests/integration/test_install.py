"""The installed layout: `cmake --install build --prefix TMP` puts the binary,
the schemas, the rule and policy files, a configuration, the systemd unit,
the alert rules, the dashboard and the docs where cmake/install.cmake says;
the installed binary checks the installed configuration as written (exit 0)
and, pointed at the test services with --set, decides declarations with the
installed rule files. A second install keeps an edited file (NAME.new beside
it). DESTDIR with the /usr prefix puts the configuration under /etc with
paths that do not name the staging directory. The unit passes `systemd-analyze
verify`; the alert rules pass `promtool check rules`; the dashboard is JSON
whose queries use only the metric names of the HTTP endpoint."""
import json
import os
import re
import shutil
import subprocess
import uuid

from harness import WORK, Checks, Pipeline, declaration, load_refdata, produce

c = Checks("install")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.dirname(os.environ["PR_BIN"])
tag = uuid.uuid4().hex[:8]
prefix = os.path.join(WORK, f"install-{tag}")

res = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True, text=True,
                     timeout=300)
c.equal(res.returncode, 0, "cmake --install exits 0", res.stdout[-1000:] + res.stderr[-1000:])
etc = os.path.join(prefix, "etc", "parcelrisk")
share = os.path.join(prefix, "share", "parcelrisk")
expected = [
    "bin/parcelrisk",
    "etc/parcelrisk/parcelrisk.yaml", "etc/parcelrisk/rules.yaml", "etc/parcelrisk/policy-us.yaml",
    "share/parcelrisk/schemas/declaration.avsc", "share/parcelrisk/schemas/decision.avsc",
    "share/parcelrisk/schemas/deadletter.avsc",
    "share/parcelrisk/defaults/rules.yaml", "share/parcelrisk/defaults/policy-us.yaml",
    "share/parcelrisk/defaults/parcelrisk.yaml",
    "share/parcelrisk/prometheus/alerts.yml", "share/parcelrisk/grafana/parcelrisk.json",
    "share/doc/parcelrisk/README.md", "share/doc/parcelrisk/RUNBOOK.md",
    "share/doc/parcelrisk/contract.md", "share/doc/parcelrisk/DOMAIN.md",
    "lib/systemd/system/parcelrisk.service",
]
missing = [f for f in expected if not os.path.isfile(os.path.join(prefix, f))]
c.equal(missing, [], "every file of the layout is installed")
c.check(os.access(os.path.join(prefix, "bin", "parcelrisk"), os.X_OK), "the binary is executable")


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


c.check(same(os.path.join(etc, "rules.yaml"), os.path.join(ROOT, "schemas", "rules.yaml")),
        "etc rules.yaml is the shipped rule file")
c.check(same(os.path.join(share, "schemas", "decision.avsc"), os.path.join(ROOT, "schemas", "decision.avsc")),
        "schemas installed as they are")
config = os.path.join(etc, "parcelrisk.yaml")
with open(config) as fh:
    config_text = fh.read()
c.check(f"file: {etc}/rules.yaml" in config_text and f"file: {etc}/policy-us.yaml" in config_text,
        "the configuration names the installed rule and policy files")
c.check("@" not in re.sub(r"#.*", "", config_text), "no placeholder left in the configuration")

BIN = os.path.join(prefix, "bin", "parcelrisk")
res = subprocess.run([BIN, "check-config", "--config", config], capture_output=True, text=True, timeout=120)
c.equal(res.returncode, 0, "the installed configuration checks out as written", res.stdout + res.stderr)
versions = re.findall(r"ok \(version ([^,]+),", res.stdout)
c.equal(len(versions), 2, "check-config names the rule and policy versions", res.stdout)
ruleset = "/".join(versions)

# The README's example configuration, with /etc/parcelrisk/ where this prefix has it.
with open(os.path.join(ROOT, "README.md")) as fh:
    readme = fh.read()
blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "rules: {file: /etc/parcelrisk/" in b]
c.equal(len(blocks), 1, "the README has one example configuration naming /etc/parcelrisk")
example = os.path.join(WORK, f"install-{tag}-readme.yaml")
with open(example, "w") as fh:
    fh.write(blocks[0].replace("/etc/parcelrisk/", etc + "/") if blocks else "")
res = subprocess.run([BIN, "check-config", "--config", example], capture_output=True, text=True, timeout=120)
c.equal(res.returncode, 0, "the README's example configuration checks out once installed",
        res.stdout + res.stderr)

# -------------------------------------- the installed layout decides
loaded = load_refdata()
c.equal(loaded.returncode, 0, "reference data loads", loaded.stderr[-500:])
p = Pipeline("install")
p.create_topics()
res = subprocess.run([BIN, "check-config", "--config", config, "--connect", *p.sets], capture_output=True,
                     text=True, timeout=120)
c.equal(res.returncode, 0, "check-config --connect with the test services' addresses",
        res.stdout + res.stderr[-500:])
ids = [f"INST-{i}" for i in range(20)]
produce(p, [declaration(i) for i in ids])
log_path = os.path.join(WORK, f"install-{tag}-run.log")
with open(log_path, "w") as log:
    # The installed configuration serves HTTP on 0.0.0.0:9477; a free port
    # here, so that the test never fights another process for 9477.
    rc = subprocess.run([BIN, "run", "--config", config, "--exit-when-idle", "4000", *p.sets,
                         "--set", "http.listen=127.0.0.1:0"],
                        stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
c.equal(rc, 0, "the installed binary runs the installed configuration and exits 0 when idle")
with open(log_path) as fh:
    logged = fh.read()
c.check('http: listening on 127.0.0.1:' in logged, "the installed configuration turns the HTTP endpoint on",
        logged[-500:])
decisions = p.tail("decisions")
c.equal(sorted(d["declaration_id"] for d in decisions), sorted(ids), "20 declarations decided, once each")
c.check(all(d["ruleset_version"] == ruleset for d in decisions),
        f"decided under the installed rule files ({ruleset})",
        str({d["ruleset_version"] for d in decisions}))
with open(log_path) as fh:
    first = fh.readline()
c.check(first.startswith("{") and json.loads(first).get("source") == "parcelrisk",
        "the installed configuration logs JSON lines", first[:200])

# ------------------------------------------------ an upgrade keeps edits
rules = os.path.join(etc, "rules.yaml")
with open(rules, "a") as fh:
    fh.write("# edited by the operator\n")
res = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True, text=True,
                     timeout=300)
c.equal(res.returncode, 0, "a second install exits 0")
with open(rules) as fh:
    c.check(fh.read().endswith("# edited by the operator\n"), "a second install keeps the edited rule file")
c.check(os.path.isfile(rules + ".new") and same(rules + ".new", os.path.join(ROOT, "schemas", "rules.yaml")),
        "the new rule file is written beside it as rules.yaml.new")
c.check(f"Kept: {rules}" in res.stdout, "the install says it kept it", res.stdout[-800:])
c.check(not os.path.exists(config + ".new"), "an unchanged configuration is left as it is")

# ---------------------------------------------------- DESTDIR, /usr prefix
stage = os.path.join(WORK, f"install-{tag}-stage")
res = subprocess.run(["cmake", "--install", BUILD, "--prefix", "/usr"], capture_output=True, text=True,
                     timeout=300, env={**os.environ, "DESTDIR": stage})
c.equal(res.returncode, 0, "DESTDIR install with prefix /usr exits 0", res.stderr[-500:])
staged = os.path.join(stage, "etc", "parcelrisk", "parcelrisk.yaml")
c.check(os.path.isfile(staged) and os.path.isfile(os.path.join(stage, "usr", "bin", "parcelrisk")),
        "prefix /usr: binary in /usr/bin, configuration in /etc/parcelrisk")
with open(staged) as fh:
    text = fh.read()
c.check("file: /etc/parcelrisk/rules.yaml" in text and stage not in text,
        "the staged configuration names /etc/parcelrisk, not the staging directory")
with open(os.path.join(stage, "usr", "lib", "systemd", "system", "parcelrisk.service")) as fh:
    unit_text = fh.read()
c.check("ExecStart=/usr/bin/parcelrisk run --config /etc/parcelrisk/parcelrisk.yaml" in unit_text,
        "the staged unit runs /usr/bin/parcelrisk on /etc/parcelrisk/parcelrisk.yaml")

# ------------------------------------------------------------- the unit
unit = os.path.join(prefix, "lib", "systemd", "system", "parcelrisk.service")
with open(unit) as fh:
    unit_text = fh.read()
for directive in ("Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes",
                  "NoNewPrivileges=yes", "PrivateTmp=yes", "ExecReload=/bin/kill -HUP $MAINPID",
                  "RestartPreventExitStatus=2", f"EnvironmentFile=-{etc}/parcelrisk.env",
                  f"ExecStart={BIN} run --config {config}"):
    c.check(re.search(r"^" + re.escape(directive) + r"$", unit_text, re.M), f"unit: {directive}")
c.check(re.search(r"^#LoadCredential=redis:", unit_text, re.M), "unit: a LoadCredential= example")
if shutil.which("systemd-analyze"):
    res = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=120)
    c.equal(res.returncode, 0, "systemd-analyze verify accepts the unit", res.stdout + res.stderr)
    bad = os.path.join(WORK, f"install-{tag}-bad.service")
    with open(bad, "w") as fh:
        fh.write(unit_text.replace(f"ExecStart={BIN}", "ExecStart=/nonexistent/parcelrisk"))
    res = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True, timeout=120)
    c.check(res.returncode != 0, "systemd-analyze verify refuses a unit whose binary is missing")
else:
    print("skip systemd-analyze verify: not installed")

# ----------------------------------------- alert rules and the dashboard
METRICS = {
    "parcelrisk_declarations_total", "parcelrisk_decisions_total", "parcelrisk_dead_letters_total",
    "parcelrisk_alerts_total", "parcelrisk_aggregate_alerts_total", "parcelrisk_batches_total",
    "parcelrisk_operator_busy_seconds_total", "parcelrisk_redis_round_trips_total",
    "parcelrisk_cache_hits_total", "parcelrisk_cache_misses_total", "parcelrisk_cache_entries",
    "parcelrisk_cache_bytes", "parcelrisk_transactions_committed_total",
    "parcelrisk_transactions_aborted_total", "parcelrisk_producer_queue_messages",
    "parcelrisk_consumer_lag_messages", "parcelrisk_paused", "parcelrisk_ready",
    "parcelrisk_refdata_info", "parcelrisk_ruleset_info", "parcelrisk_build_info",
    "parcelrisk_decision_latency_seconds_bucket", "parcelrisk_decision_latency_seconds_sum",
    "parcelrisk_decision_latency_seconds_count",
    "parcelrisk_state_keys", "parcelrisk_state_bytes", "parcelrisk_state_expired_total",
    "parcelrisk_state_evicted_total", "parcelrisk_changelog_records_total",
    "parcelrisk_state_restored_records_total", "parcelrisk_state_restore_seconds_total",
}
alerts = os.path.join(share, "prometheus", "alerts.yml")
with open(alerts) as fh:
    alerts_text = fh.read()
used = set(re.findall(r"parcelrisk_[a-z_]+", alerts_text))
c.equal(used - METRICS, set(), "the alert rules use only the endpoint's metric names")
c.check(len(re.findall(r"^\s+- alert: ", alerts_text, re.M)) >= 8, "at least 8 alert rules")
if shutil.which("promtool"):
    res = subprocess.run(["promtool", "check", "rules", alerts], capture_output=True, text=True, timeout=120)
    c.equal(res.returncode, 0, "promtool check rules accepts the alert rules", res.stdout + res.stderr)
    broken = os.path.join(WORK, f"install-{tag}-broken.yml")
    with open(broken, "w") as fh:
        fh.write(alerts_text.replace("expr: ", "expr: sum(", 1))
    res = subprocess.run(["promtool", "check", "rules", broken], capture_output=True, text=True, timeout=120)
    c.check(res.returncode != 0, "promtool check rules refuses a broken expression")
    res = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], capture_output=True, text=True,
                         timeout=120, cwd=os.path.join(ROOT, "ops", "prometheus"))
    c.equal(res.returncode, 0, "promtool test rules: the alerts fire as ops/prometheus/alerts_test.yml says",
            res.stdout[-1500:] + res.stderr[-500:])
    wrong = os.path.join(WORK, f"install-{tag}-alerts_test.yml")
    with open(os.path.join(ROOT, "ops", "prometheus", "alerts_test.yml")) as fh:
        test_text = fh.read()
    with open(wrong, "w") as fh:
        fh.write(test_text.replace("rule_files:\n  - alerts.yml", f"rule_files:\n  - {alerts}")
                 .replace("values: '0 1 1 1 1 1'", "values: '0 0 0 0 0 0'"))
    res = subprocess.run(["promtool", "test", "rules", wrong], capture_output=True, text=True, timeout=120)
    c.check(res.returncode != 0, "promtool test rules fails when an expected alert does not fire")
else:
    print("skip promtool check rules: not installed")
with open(os.path.join(share, "grafana", "parcelrisk.json")) as fh:
    dashboard = json.load(fh)
panels = [q for q in dashboard.get("panels", []) if q.get("type") != "row"]
exprs = [t.get("expr", "") for q in panels for t in q.get("targets", [])]
c.check(len(panels) >= 10 and all(exprs), "the dashboard has panels with queries", str(len(panels)))
used = set(re.findall(r"parcelrisk_[a-z_]+", " ".join(exprs)))
c.equal(used - METRICS, set(), "the dashboard uses only the endpoint's metric names")
c.check({"parcelrisk_consumer_lag_messages", "parcelrisk_declarations_total",
         "parcelrisk_dead_letters_total", "parcelrisk_ready"} <= used,
        "the dashboard shows throughput, lag, dead letters and readiness")
c.done()
