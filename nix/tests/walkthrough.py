# The test script of nix/tests/walkthrough.nix, after the lines that define
# FACTS (JSON: the hosts, roles, credentials directory, bootstrapping host and
# the scenario file) and MACHINES (host name -> the driver's machine).
#
# It must pass the test driver's pyflakes and mypy checks: machine names and
# driver symbols (start_all, subtest) are globals there.
import base64
import json
import os
import shlex
import tempfile
import time

facts = json.loads(FACTS)
CREDS = facts["credentialsDir"]
HOSTS = {h["name"]: h for h in facts["hosts"]}
BOOTSTRAP = MACHINES[facts["bootstrapHost"]]
SERVERS = [h["name"] for h in facts["hosts"] if h["role"] == "server"]

# What each role receives of choria-bootstrap's output (the bootstrapping
# machine has all of it). The client also gets the login passwords, as
# `choria-lab login` reads them in the namespace lab.
CREDENTIAL_PARTS = {
    "broker": ["broker"],
    "provisioner": ["provisioner"],
    "aaa": ["aaa"],
    "replicator": ["replicator"],
    "client": ["client", "operator/user-*.password"],
    "server": ["server"],
    "nats": [],
    "plugins": [],
}


def hand_over(name):
    """Copy this host's part of the credentials from the bootstrapping
    machine, then (re)start the services that wait for them."""
    machine = MACHINES[name]
    parts = CREDENTIAL_PARTS[HOSTS[name]["role"]]
    if machine is BOOTSTRAP or not parts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "credentials.tar.gz")
        # Through the driver's shell, never through the Nix store.
        encoded = BOOTSTRAP.succeed(
            f"cd {CREDS} && tar -cz {' '.join(parts)} | base64 -w0"
        ).strip()
        with open(archive, "wb") as f:
            f.write(base64.b64decode(encoded))
        machine.wait_for_unit("multi-user.target")
        machine.copy_from_host(archive, "/run/choria-lab-credentials.tar.gz")
    machine.succeed(
        f"install -d -m 0700 {CREDS}",
        f"tar -C {CREDS} -xzf /run/choria-lab-credentials.tar.gz",
        "rm /run/choria-lab-credentials.tar.gz",
    )
    # choria-lab-credentials failed at boot (nothing to install yet) and
    # with it the services that require it.
    units = machine.succeed(
        "systemctl show -P RequiredBy choria-lab-credentials.service"
    ).split()
    machine.succeed("systemctl restart choria-lab-credentials.service")
    for unit in units:
        machine.succeed(f"systemctl restart {shlex.quote(unit)}")
    for unit in units:
        machine.wait_for_unit(unit)


def provisioned(name):
    """The provisioner wrote this server's token and configuration."""
    return (
        "test -s /etc/choria/server.jwt"
        " && grep -q '^identity *=' /etc/choria/server.conf"
    )


start_all()

with subtest("the broker bootstraps the lab's credentials and serves"):
    BOOTSTRAP.wait_for_unit("choria-lab-credentials.service")
    BOOTSTRAP.wait_for_unit("choria-broker.service")
    BOOTSTRAP.wait_for_open_port(4222)

with subtest("every host receives its role's credentials"):
    for name in HOSTS:
        if name not in SERVERS:
            hand_over(name)
    MACHINES["nats"].wait_for_unit("nats.service")
    MACHINES["plugins"].wait_for_unit("choria-plugins-webserver.service")

with subtest("servers start unprovisioned and are provisioned by the provisioner"):
    for name in SERVERS:
        MACHINES[name].fail("test -e /etc/choria/server.conf")
        hand_over(name)
    for name in SERVERS:
        MACHINES[name].wait_until_succeeds(provisioned(name), timeout=300)


def until(machine, command, check, deadline, what):
    """Run command on machine until check(status, output) holds, for at most
    deadline seconds; fail with the last output."""
    start = time.monotonic()
    while True:
        status, output = machine.execute(command)
        if check(status, output):
            return output
        if time.monotonic() - start > deadline:
            raise Exception(
                f"{what}: `{command}` on {machine.name} did not succeed within"
                f" {deadline}s; exit {status}, output:\n{output}"
            )
        time.sleep(2)


def login(user, password_file=None):
    """`choria login` on the client, answered by expect(1)."""
    args = [user] + ([password_file] if password_file else [])
    return MACHINES["client"].execute(
        "choria-lab-login " + " ".join(shlex.quote(a) for a in args)
    )


def check(condition, message):
    if not condition:
        raise Exception(message)


def run_subset():
    """Login, ping and provisioning checks, until the shared scenario exists."""
    client = MACHINES["client"]
    with subtest("login: every user logs in; a wrong password is refused"):
        for user in ["choria", "streams", "admin"]:
            status, output = login(user)
            check(
                status == 0 and "Token saved" in output,
                f"choria login as {user} failed:\n{output}",
            )
        client.succeed("echo not-the-password > /tmp/wrong-password")
        status, output = login("admin", "/tmp/wrong-password")
        check(status != 0, f"a wrong password logged in:\n{output}")
        # Logged in as admin from here on.
        status, output = login("admin")
        check(status == 0, f"choria login as admin failed:\n{output}")

    with subtest("ping: every server answers the client"):
        expected = f"{len(SERVERS)} replies"
        until(
            client,
            "choria ping",
            lambda status, output: status == 0 and expected in output,
            120,
            "ping",
        )

    with subtest("provisioning: every server is provisioned and connected"):
        for name in SERVERS:
            server = MACHINES[name]
            until(
                server,
                "choria tool status --status-file /var/log/choria-status.json"
                " --provisioned --no-disconnected",
                lambda status, output: status == 0,
                120,
                "provisioned status",
            )
            identity = server.succeed(
                "sed -n 's/^identity *= *//p' /etc/choria/server.conf"
            ).strip()
            check(
                identity == HOSTS[name]["fqdn"],
                f"{name}: the provisioner gave it the identity {identity!r}",
            )


if facts["scenario"] is None:
    print("walkthrough/scenario.json is absent: login, ping and provisioning only")
    run_subset()
