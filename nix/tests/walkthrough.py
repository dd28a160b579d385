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
