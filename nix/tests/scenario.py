# The walkthrough scenario's interpreter for the NixOS VM test: variables,
# durations, expectations and captures of walkthrough/scenario.json, as the
# Go runner (internal/walkthrough) evaluates them, to the letter of its
# messages. Pure functions: the test script (walkthrough.py) runs the
# commands; walkthrough/conformance.json holds cases both interpreters must
# agree on (internal/walkthrough's TestConformance runs them through each).
import json
import re

VAR_RE = re.compile(r"\$\{([^${}]+)\}")
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(Exception):
    """The scenario itself is wrong (an unknown variable): no retry helps."""


def duration(text, default):
    """A Go duration ("90s", "1m30s") in seconds."""
    if not text:
        return default
    parts = DURATION_RE.findall(text)
    if "".join(n + u for n, u in parts) != text:
        raise ScenarioError(f"{text!r} is not a duration")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def expand(text, variables):
    """Replace ${name}, innermost first, as Vars.Expand does."""
    for _ in range(8):
        if not VAR_RE.search(text):
            break
        missing = []

        def value(m):
            name = m.group(1)
            if name not in variables:
                missing.append(name)
                return m.group(0)
            return variables[name]

        text = VAR_RE.sub(value, text)
        if missing:
            raise ScenarioError("unknown variable " + ", ".join(dict.fromkeys(missing)))
    return text


def pattern(text, variables):
    # Multi-line, as the Go runner's (?m).
    return re.compile(expand(text, variables), re.M)


def quote(text):
    """Go's %q, for the printable text the scenario's messages hold."""
    return json.dumps(text, ensure_ascii=False)


def check_expectations(expect, status, output, variables, is_login):
    """Every unmet expectation, as Expect.Check lists them."""
    failed = []
    if not is_login:
        want = expect.get("exit", 0)
        if want == "nonzero":
            ok, what = status != 0, "a non-zero exit status"
        elif want == "any":
            ok, what = True, "any exit status"
        else:
            ok, what = status == int(want), f"exit status {int(want)}"
        if not ok:
            failed.append(f"{what}, got {status}")
    for c in expect.get("contains", []):
        c = expand(c, variables)
        if c not in output:
            failed.append(f"output contains {quote(c)}")
    for c in expect.get("not_contains", []):
        c = expand(c, variables)
        if c in output:
            failed.append(f"output does not contain {quote(c)}")
    for p in expect.get("regex", []):
        r = pattern(p, variables)
        if not r.search(output):
            failed.append(f"output matches /{r.pattern}/")
    for p in expect.get("not_regex", []):
        r = pattern(p, variables)
        m = r.search(output)
        if m:
            failed.append(f"output does not match /{r.pattern}/ (it has {quote(m.group(0))})")
    for c in expect.get("count", []):
        r = pattern(c["regex"], variables)
        n = sum(1 for _ in r.finditer(output))
        if "equals" in c:
            want = int(expand(c["equals"], variables).strip())
            if n != want:
                failed.append(f"{want} matches of /{r.pattern}/, got {n}")
        else:
            least = int(expand(c["min"], variables).strip())
            if n < least:
                failed.append(f"at least {least} matches of /{r.pattern}/, got {n}")
    return failed


def captures(patterns, output, variables):
    got, failed = {}, []
    for name, p in patterns.items():
        name = expand(name, variables)
        r = pattern(p, variables)
        m = r.search(output)
        if m is None:
            failed.append(f"output matches /{r.pattern}/ to capture {name}")
        else:
            got[name] = m.group(1)
    return got, failed


def is_secret(name):
    """A login password or the provisioning token: never shown."""
    return name.startswith("password.") or name == "provisioning.token"


def redact(text, variables):
    """Every secret variable's value in text replaced by ${name}, as the Go
    runner redacts what it prints and reports."""
    for name in sorted(variables):
        value = variables[name]
        if is_secret(name) and value:
            text = text.replace(value, "${" + name + "}")
    return text
