# The walkthrough VM test's own script (walkthrough.nix), after common.py,
# which has brought the lab up (and imports base64, json and shlex), and
# scenario.py, the scenario's interpreter (which imports re).
import importlib
import io
import tarfile
import time


# --- the shared scenario (walkthrough/scenario.json) ------------------------
# Its "description" field is the format; scenario.py, prepended to this
# script, interprets its expectations as internal/walkthrough does. Steps
# run in order and the first failure ends the test.


def run_command(machine, command, timeout):
    """sh -c command as root with HOME=/root, stdout and stderr interleaved,
    its process group killed after timeout seconds (exit 124)."""
    wrapped = (
        "cd /root && env HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb"
        f" timeout -k 5 {int(timeout)} sh -c {shlex.quote(command)} </dev/null 2>&1"
    )
    status, output = machine.execute(wrapped, timeout=None)
    if status == 124:
        return None, output
    return status, output


def run_login(machine, user, password, timeout):
    """`choria login` on a terminal (choria-lab-login, expect(1)); the
    password goes through a file, not the command line."""
    machine.succeed(
        "umask 077; printf '%s\\n' " + shlex.quote(password) + " > /run/wt-login-password"
    )
    status, output = machine.execute(
        f"timeout -k 5 {int(timeout)} choria-lab-login {shlex.quote(user)}"
        # The driver runs commands under `set -e`: a plain `; rc=$?` would
        # never be reached after a refused login, leaving the password file.
        " /run/wt-login-password 2>&1 && rc=0 || rc=$?; rm -f /run/wt-login-password; exit $rc",
        timeout=None,
    )
    return status, output


def verify_submission(params, output):
    """What the VM test checks of a signed submission: the headers, and the
    ed25519 signature of the payload by the key in the Choria-Token. That
    the token's chain verifies against the organisation issuer is checked by
    the Go runner (choria-io/tokens) only."""
    message = json.loads(output)
    headers = {}
    for line in base64.b64decode(message["hdrs"]).decode().splitlines()[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip()] = value.strip()
    for key, want in (("Nats-Msg-Id", params["msg_id"]), ("Choria-Identity", params["identity"])):
        if headers.get(key) != want:
            return f"{key} is {headers.get(key)!r}, want {want!r}"
    token, signature = headers.get("Choria-Token"), headers.get("Choria-Signature")
    if not token or not signature:
        return f"the message lacks Choria-Token or Choria-Signature (headers: {sorted(headers)})"
    claims_part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(claims_part + "=" * (-len(claims_part) % 4)))
    if claims.get("identity") != params["identity"]:
        return f"the Choria-Token is for {claims.get('identity')!r}"
    ed25519 = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(claims["public_key"]))
    try:
        key.verify(bytes.fromhex(signature), base64.b64decode(message["data"]))
    except Exception as e:
        return f"the Choria-Signature is not the token key's signature of the payload: {e!r}"
    print("  submission-signature: headers and payload signature verified;"
          " the token's chain to the issuer is verified by the Go runner only")
    return None


def verify_go_package(params, output):
    """The generated package is unpacked and its files checked; compiling
    it needs the Go module cache, which only the Go runner has."""
    archive = tarfile.open(fileobj=io.BytesIO(base64.b64decode(output.strip())))
    sources = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".go")]
    if not sources:
        return "the generated package has no .go file"
    for m in sources:
        f = archive.extractfile(m)
        text = f.read().decode() if f else ""
        if not re.search(r"^package " + re.escape(params["package"]) + r"$", text, re.M):
            return f"{m.name} is not in package {params['package']}"
    print(f"  go-package: {len(sources)} Go files of package {params['package']};"
          f" compiling against {params['require']} is done by the Go runner only")
    return None


VERIFIERS = {
    "submission-signature": verify_submission,
    "go-package": verify_go_package,
}


def attempt(step, host, variables):
    """One attempt: (ok, fatal, failures, output, captured)."""
    machine = MACHINES[host]
    timeout = duration(step.get("timeout"), 60.0)
    login = step.get("login")
    if login:
        user = expand(login["user"], variables)
        password = expand(login["password"], variables)
        status, output = run_login(machine, user, password, timeout)
        failed = []
        if login["expect"] == "success" and status != 0:
            failed.append(f"login as {user} succeeds, got exit {status}")
        if login["expect"] == "refused" and status == 0:
            failed.append(f"login as {user} is refused, but it succeeded")
    else:
        command = expand(step["command"], variables)
        code, output = run_command(machine, command, timeout)
        if code is None:
            return False, False, [f"finished within {timeout:.0f}s"], output, {}
        status, failed = code, []
    failed += check_expectations(step.get("expect", {}), status, output, variables, bool(login))
    captured, cfailed = captures(step.get("capture", {}), output, variables)
    failed += cfailed
    if failed:
        return False, False, failed, output, {}
    if step.get("verify"):
        params = {k: expand(v, variables) for k, v in step["verify"].items()}
        problem = VERIFIERS[params["kind"]](params, output)
        if problem:
            return False, False, [f"{params['kind']} verifies, got: {problem}"], output, {}
    return True, False, [], output, captured


def run_step(name, step, variables):
    """Retry until the step passes or its deadline passes; its captures."""
    start = time.monotonic()
    host = expand(step["host"], variables)
    deadline = duration(step.get("deadline"), 0.0)
    interval = duration(step.get("interval"), 2.0)
    attempts = 0
    while True:
        attempts += 1
        ok, fatal, failed, output, captured = attempt(step, host, variables)
        elapsed = time.monotonic() - start
        if ok:
            print(f"PASS  {name:<42} {elapsed:7.1f}s")
            return captured
        if fatal or elapsed + interval >= deadline:
            what = step.get("command") or f"choria login as {step['login']['user']}"
            raise Exception(redact(
                f"walkthrough step {name} failed on {host} after {attempts} attempt(s)"
                f" in {elapsed:.1f}s\n  command: {expand(what, variables)}\n"
                + "".join(f"  expected: {f}\n" for f in sorted(failed))
                + f"  got:\n{output[-6000:]}",
                variables,
            ))
        time.sleep(interval)


def scenario_variables():
    """The variables the scenario's description lists, for these VMs."""
    servers = [HOSTS[name] for name in SERVERS]
    streams = facts["streams"]
    v = {
        "domain": facts["domain"],
        "servers.count": str(len(servers)),
        "servers.names": " ".join(s["name"] for s in servers),
        "servers.fqdns": " ".join(s["fqdn"] for s in servers),
        "servers.first": servers[0]["name"],
        "servers.first.fqdn": servers[0]["fqdn"],
        # bootstrap.AAAAuditLog
        "path.aaa_audit_log": facts["roles"]["aaa"]["state_dir"] + "/signer_audit.json",
        "path.server_status_file": facts["server_paths"]["status_file"],
        "stream.registration": streams["registration"]["name"],
        "stream.registration.subjects": " ".join(streams["registration"]["subjects"]),
        "stream.submission": streams["submission"]["name"],
        "stream.submission.subjects": " ".join(streams["submission"]["subjects"]),
        "stream.plugins_bucket": streams["plugins_bucket"],
        "stream.plugins_key": streams["plugins_key"],
        "stream.replicator_name": streams["replicator_name"],
        "stream.monitor_subject": streams["monitor_subject"],
        "stream.replicas": str(facts["streamReplicas"]),
    }
    for role, dirs in facts["roles"].items():
        v[f"role.{role}.config_dir"] = dirs["config_dir"]
        v[f"role.{role}.state_dir"] = dirs["state_dir"]
    for h in facts["hosts"]:
        v[f"fqdn.{h['name']}"] = h["fqdn"]

    def secret(path):
        return BOOTSTRAP.succeed(f"cat {CREDS}/{path}").strip()

    for user in facts["users"]:
        v[f"password.{user}"] = secret(f"operator/user-{user}.password")
    v["provisioning.token"] = secret("operator/provisioning-token")
    v["issuer.public_key"] = secret("issuer/issuer.public")
    return v


def run_scenario(path):
    with open(path) as f:
        scenario = json.load(f)
    variables = scenario_variables()
    for step in scenario["steps"]:
        if step.get("each") == "servers":
            instances = [
                (f"{step['name']}/{name}", {"item": name, "item.fqdn": HOSTS[name]["fqdn"]})
                for name in SERVERS
            ]
        else:
            instances = [(step["name"], {})]
        for name, extra in instances:
            with subtest(f"walkthrough: {name}"):
                captured = run_step(name, step, {**variables, **extra})
                variables.update(captured)


with subtest("the walkthrough scenario"):
    run_scenario(facts["scenario"])
