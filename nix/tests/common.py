# The start of every lab VM test's script (lab-vms.nix), after the lines
# that define FACTS (JSON: the hosts with a VM, roles, credentials directory,
# bootstrapping host, ports) and MACHINES (host name -> the driver's
# machine): it boots the VMs, lets the bootstrapping broker make the lab's
# credentials, hands every other VM its part, and waits until the servers
# (started with nothing but provisioning.jwt) are provisioned by the
# provisioner. The test's own script (walkthrough.py, cluster.py) follows.
#
# It must pass the test driver's pyflakes and mypy checks: machine names and
# driver symbols (start_all, subtest) are globals there.
import base64
import json
import shlex

facts = json.loads(FACTS)
CREDS = facts["credentialsDir"]
HOSTS = {h["name"]: h for h in facts["hosts"]}
BOOTSTRAP = MACHINES[facts["bootstrapHost"]]
SERVERS = [h["name"] for h in facts["hosts"] if h["role"] == "server"]

# What each role receives of choria-bootstrap's output (the bootstrapping
# machine has all of it): a broker, its own directory, named after it. The
# client also gets the login passwords, as `choria-lab login` reads them in
# the namespace lab.
CREDENTIAL_PARTS = {
    "broker": ["{name}"],
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
    parts = [p.format(name=name) for p in CREDENTIAL_PARTS[HOSTS[name]["role"]]]
    if machine is BOOTSTRAP or not parts:
        return
    # Through the driver's shells only: never through the Nix store, nor
    # through the driver's shared directory, which every VM mounts.
    encoded = BOOTSTRAP.succeed(
        f"cd {CREDS} && tar -cz {' '.join(parts)} | base64 -w0"
    ).strip()
    base64.b64decode(encoded, validate=True)  # nothing but base64 reaches the shell below
    machine.wait_for_unit("multi-user.target")
    machine.succeed(
        f"install -d -m 0700 {CREDS}",
        f"printf '%s' '{encoded}' | base64 -d | tar -C {CREDS} -xz",
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
    wait_serving(name)


# The port each role serves once it is ready, on the host itself: a unit
# that is "active" has only been started.
READY_PORTS = {
    "broker": "broker_client",
    "provisioner": "provisioner_monitor",
    "aaa": "aaa_login",
    "replicator": "replicator_monitor",
    "nats": "nats_client",
    "plugins": "plugins_http",
}


def wait_serving(name):
    port = READY_PORTS.get(HOSTS[name]["role"])
    if port is not None:
        MACHINES[name].wait_for_open_port(facts["ports"][port], timeout=120)


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
    wait_serving(facts["bootstrapHost"])

with subtest("every host receives its role's credentials"):
    for name in HOSTS:
        if name not in SERVERS:
            hand_over(name)
    # those that need none serve too
    for name in HOSTS:
        wait_serving(name)

with subtest("servers start unprovisioned and are provisioned by the provisioner"):
    for name in SERVERS:
        MACHINES[name].fail("test -e /etc/choria/server.conf")
        hand_over(name)
    for name in SERVERS:
        MACHINES[name].wait_until_succeeds(provisioned(name), timeout=300)
