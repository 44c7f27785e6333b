"""docs/contract.md agrees with docs/DOMAIN.md and with the schemas and the
shipped rule and policy files, wherever it restates them: the reason codes
with their conditions and default points, the dead-letter codes, the policy
timeline, the stop words, the legal-form tokens and address words, the
topics, and every field of the three Avro schemas. Run by ctest as
unit.contract (no services needed):

    python3 tests/check_contract.py SOURCE_DIR
"""
import json
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
domain = open(os.path.join(root, "docs", "DOMAIN.md")).read()
contract = open(os.path.join(root, "docs", "contract.md")).read()
failed = passed = 0


def check(cond, what, detail=""):
    global failed, passed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


def table_rows(text, header):
    """Rows (lists of cells) of the markdown table whose header row starts with header."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split(" | ")])
            return rows
    return []


# DOMAIN.md's section numbers differ from the contract's; the cross-references
# are the only text allowed to differ in a restated row.
SECTION = {"(section 6)": "(section 9)", "(section 7)": "(section 10)", "(section 8)": "(section 12)",
           "of section 8": "of section 11"}


def renumber(text):
    for a, b in SECTION.items():
        text = text.replace(a, b)
    return text


reasons_domain = table_rows(domain, "| code | fires when | default points |")
reasons_contract = table_rows(contract, "| code | fires when | default points |")
check(len(reasons_domain) == 17, "DOMAIN.md has the 17 reason codes", str(len(reasons_domain)))
check([[r[0], renumber(r[1]), r[2]] for r in reasons_domain] == reasons_contract,
      "reason codes: the same rows (code, condition, default points) in the same order",
      str([r for r in reasons_contract if [r[0], r[1], r[2]] not in
           [[d[0], renumber(d[1]), d[2]] for d in reasons_domain]]))

# Default points in the shipped rule file.
rules = open(os.path.join(root, "schemas", "rules.yaml")).read()
for code, _, points in reasons_contract:
    m = re.search(r"^\s+" + re.escape(code.strip("`")) + r":\s*(\d+)", rules, re.M)
    if m:
        check(points.startswith(m.group(1)) or points.startswith("the highest") and m.group(1) == "250"
              and code == "`WATCHED_COMMODITY`",
              f"{code}: default points {m.group(1)} as in schemas/rules.yaml", points)

policy_domain = table_rows(domain, "| from (UTC) | threshold | suspended origins |")
policy_contract = table_rows(contract, "| from (UTC) | threshold | suspended origins |")
check(len(policy_domain) == 5 and policy_domain == policy_contract, "the policy timeline is the same",
      str(policy_contract))
policy = open(os.path.join(root, "schemas", "policy-us.yaml")).read()
check(all(r[0] in policy for r in policy_contract[1:]), "every instant is in schemas/policy-us.yaml")

dlq_domain = set(re.findall(r"`([A-Z0-9_]+)`", domain.split("DeadLetter `error_code` values:")[1].split("## 6.")[0]))
dlq_contract = {r[0].strip("`") for r in table_rows(contract, "| `error_code` | meaning | set by |")}
check(len(dlq_domain) == 8 and dlq_domain == dlq_contract, "the dead-letter codes are the same",
      f"{sorted(dlq_domain)} vs {sorted(dlq_contract)}")


def words_after(text, marker, end="."):
    part = text.split(marker, 1)[1]
    return part.split(end, 1)[0].split()


stop_domain = words_after(domain, "Default stop words:")
stop_contract = contract.split("Default stop words (37):\n\n```\n", 1)[1].split("```", 1)[0].split()
check(stop_domain == stop_contract and len(stop_contract) == 37, "the stop words are the same, in order")
check(re.search(r"stop_words: \[([^\]]*)\]", rules, re.S) and
      [w.strip(", \n") for w in re.search(r"stop_words: \[([^\]]*)\]", rules, re.S).group(1).split(",")] ==
      stop_contract, "... and the rule file's")

legal = domain.split("while any remain:", 1)[1].split(".", 1)[0].replace(",", " ").split()
check(f"while any remain: {', '.join(legal)} |" in contract, "the legal-form tokens are the same", str(legal))
addr = domain.split("replace whole words:", 1)[1].split(". So", 1)[0].replace("\n", " ").split(",")
addr = [a.split() for a in addr]
addr_contract = table_rows(contract, "| word | becomes |")
check(addr == addr_contract, "the address words are the same", f"{addr} vs {addr_contract}")

topics_domain = [r[:3] for r in table_rows(domain, "| topic | key | value | who writes / reads |")]
topics_contract = [[r[0].split()[0], r[1], r[2]] for r in table_rows(contract, "| topic (default name) |")]
check(topics_domain == topics_contract, "the topics, keys and values are the same")

# Every field of the schemas, in order, with the contract's tables.
def fields(name):
    return json.load(open(os.path.join(root, "schemas", name)))["fields"]


decl = fields("declaration.avsc")
contract_decl = [r[0].strip("`") for r in table_rows(contract, "| field | Avro type | meaning |")]
check([f["name"] for f in decl] == contract_decl, "Declaration: every field, in order", str(contract_decl))
party = [f["name"] for f in decl if f["name"] == "shipper"][0]
party_fields = [f["name"] for f in [f for f in decl if f["name"] == "shipper"][0]["type"]["fields"]]
check(party_fields == [r[0].strip("`") for r in table_rows(contract, "| Party field |")], "Party: every field")
line_fields = [f["name"] for f in [f for f in decl if f["name"] == "lines"][0]["type"]["items"]["fields"]]
check(line_fields == [r[0].strip("`") for r in table_rows(contract, "| Line field |")], "Line: every field")
tables = contract.split("| field | Avro type | meaning |")
decision_rows = [r.split(" | ")[0].strip("| `") for r in tables[2].split("\n\n")[0].splitlines()[2:]]
deadletter_rows = [r.split(" | ")[0].strip("| `") for r in tables[3].split("\n\n")[0].splitlines()[2:]]
check([f["name"] for f in fields("decision.avsc")] == decision_rows, "Decision: every field, in order",
      str(decision_rows))
check([f["name"] for f in fields("deadletter.avsc")] == deadletter_rows, "DeadLetter: every field, in order",
      str(deadletter_rows))
for sentence in ("Score = sum of the points of the reasons that fired, capped at 1000.",):
    check(sentence in domain, "DOMAIN.md still says: " + sentence)
check("RED | the score is 600 or more, or a severity-3 violator matched" in contract and
      "RED when the score is 600 or more, or a severity-3\nviolator matched" in domain, "the RED rule agrees")
check("YELLOW | the score is 300 or more, or `random_selection`" in contract and
      "YELLOW when the score is 300 or more, or `random_selection`" in domain, "the YELLOW rule agrees")

print(f"contract: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
