# Runs walkthrough/conformance.json through scenario.py, the VM test's
# interpreter of the scenario format, as internal/walkthrough's
# TestConformance runs it through the Go runner: both must agree to the
# letter. Usage: python3 conformance.py CONFORMANCE.json
import importlib.util
import json
import os
import sys

spec = importlib.util.spec_from_file_location(
    "scenario", os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenario.py")
)
scenario = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scenario)


def run_case(case):
    """Every way the interpreter disagrees with the case."""
    problems = []
    variables = case.get("variables", {})
    if "text" in case:
        try:
            got = scenario.expand(case["text"], variables)
            if "expand_error" in case:
                problems.append(f"expanding {case['text']!r} gave {got!r}, not an error")
            elif got != case["expanded"]:
                problems.append(f"expanding {case['text']!r} gave {got!r}, want {case['expanded']!r}")
        except scenario.ScenarioError as e:
            if str(e) != case.get("expand_error"):
                problems.append(f"expanding {case['text']!r}: {e}, want {case.get('expand_error')!r}")
    if "redact" in case:
        got = scenario.redact(case["redact"], variables)
        if got != case["redacted"]:
            problems.append(f"redacting {case['redact']!r} gave {got!r}, want {case['redacted']!r}")
    if "output" not in case:
        return problems
    try:
        failed = scenario.check_expectations(
            case.get("expect", {}), case.get("status", 0), case["output"], variables, case.get("login", False)
        )
        captured, cfailed = scenario.captures(case.get("capture") or {}, case["output"], variables)
    except scenario.ScenarioError as e:
        if str(e) != case.get("error"):
            problems.append(f"scenario error {e}, want {case.get('error')!r}")
        return problems
    if case.get("error"):
        return problems + [f"no scenario error, want {case['error']!r}"]
    failed = sorted(failed + cfailed)
    if failed != case.get("failures", []):
        problems.append(f"failures {failed}, want {case.get('failures')}")
    if case.get("captured") is not None and captured != case["captured"]:
        problems.append(f"captured {captured}, want {case['captured']}")
    return problems


def run_durations(durations):
    problems = []
    for text, want in durations:
        try:
            got = scenario.duration(text, None)
        except scenario.ScenarioError:
            got = None
        if (got is None) != (want is None) or (got is not None and abs(got - want) > 1e-9):
            problems.append(f"duration {text!r} is {got}, want {want}")
    return problems


def main(path):
    with open(path) as f:
        conformance = json.load(f)
    passed = failed = 0
    runs = [(c["name"], lambda c=c: run_case(c)) for c in conformance["cases"]]
    runs.append(("durations", lambda: run_durations(conformance["durations"])))
    for name, run in runs:
        problems = run()
        if problems:
            failed += 1
            print(f"FAIL  {name}")
            for p in problems:
                print(f"      {p}")
        else:
            passed += 1
            print(f"PASS  {name}")
    print(f"conformance: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
