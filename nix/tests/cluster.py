# The cluster VM test's own script (cluster.nix), after common.py, which has
# brought the lab up (and imports base64, json and shlex): one broker of
# three stops, and the fleet survives it, as internal/faults' TestClusterFaults
# checks in the namespace lab.
import re
import time

BROKERS = [h["name"] for h in facts["hosts"] if h["role"] == "broker"]
CLIENT = MACHINES["client"]
SUBMIT = facts["streams"]["submission"]
REPLICAS = facts["streamReplicas"]
# how soon every server answers once a broker died: its servers' connections
# are closed with it, and they connect to another broker at once
FAILOVER = 10.0


def answering():
    """How many servers answer `choria ping` now."""
    _, output = CLIENT.execute("choria ping 2>&1")
    m = re.search(r"(\d+) replies", output)
    return int(m.group(1)) if m else 0


def submitted():
    """How many messages the submission stream holds on each subject."""
    output = CLIENT.succeed(f"choria broker stream subjects {SUBMIT['name']} --json")
    return {} if "No subjects found" in output else json.loads(output)


def submit_all(prefix):
    subjects = []
    for name in SERVERS:
        MACHINES[name].succeed(
            f"echo {name} | choria tool submit --config /etc/choria/server.conf"
            f" --reliable {prefix}.{name} -- - >/dev/null 2>&1"
        )
        subjects.append(f"choria.submission.in.{prefix}.{name}")
    return subjects


def wait_stored(subjects, timeout):
    deadline = time.monotonic() + timeout
    while True:
        held = submitted()
        if all(held.get(s) == 1 for s in subjects):
            return
        if time.monotonic() > deadline:
            raise Exception(f"submissions not stored once each within {timeout}s: {held}")
        time.sleep(1)


def broker_of(server):
    """The short name of the broker a server says it is connected to."""
    status = json.loads(MACHINES[server].succeed("cat /var/log/choria-status.json"))
    host = re.sub(r"^\w+://", "", status["connected_server"]).split(":")[0]
    return host.split(".")[0]


def current(stream, broker_fqdn):
    """Every replica of the stream current, the broker's among them."""
    info = json.loads(CLIENT.succeed(f"choria broker stream info {stream} --json"))
    cluster = info["cluster"]
    replicas = cluster.get("replicas", [])
    seen = cluster.get("leader") == broker_fqdn or any(r["name"] == broker_fqdn for r in replicas)
    return seen and all(r.get("current") and not r.get("offline") and not r.get("lag") for r in replicas)


with subtest("the brokers form one cluster"):
    CLIENT.succeed("choria-lab-login admin")
    for name in BROKERS:
        CLIENT.wait_until_succeeds(
            f"choria broker server list 2>&1 | grep -qF {shlex.quote(HOSTS[name]['fqdn'])}", timeout=120
        )
    CLIENT.wait_until_succeeds(f"choria ping 2>&1 | grep -q '^{len(SERVERS)} replies'", timeout=120)

with subtest(f"a submission stream replicated {REPLICAS} times holds what the servers submit"):
    CLIENT.succeed(
        f"choria broker stream add {SUBMIT['name']} --subjects {shlex.quote(' '.join(SUBMIT['subjects']))}"
        f" --replicas {REPLICAS} --defaults"
    )
    before = submit_all("hello.cluster.before")
    wait_stored(before, 60)

with subtest("one broker stops: every server answers again, nothing stored is lost"):
    victim = broker_of(SERVERS[0])
    MACHINES[victim].succeed(
        "systemctl kill --signal=SIGKILL choria-broker.service", "systemctl stop choria-broker.service"
    )
    stopped = time.monotonic()
    while answering() != len(SERVERS):
        if time.monotonic() - stopped > 60:
            raise Exception(f"not every server answers a minute after {victim} stopped")
        time.sleep(0.5)
    took = time.monotonic() - stopped
    print(f"{victim} stopped: every server answered choria ping again after {took:.1f}s")
    assert took <= FAILOVER, f"every server answered after {took:.1f}s, not within {FAILOVER}s"
    wait_stored(before, 30)
    CLIENT.succeed("choria-lab-login admin")
    stats = json.loads(CLIENT.succeed("choria req rpcutil ping --json"))["request_stats"]
    assert stats["ok"] == len(SERVERS), f"a signed request answered by {stats['ok']} servers"
    during = submit_all("hello.cluster.during")
    wait_stored(during, 60)

with subtest("the broker started again rejoins and catches up"):
    MACHINES[victim].succeed("systemctl start choria-broker.service")
    wait_serving(victim)
    fqdn = HOSTS[victim]["fqdn"]
    deadline = time.monotonic() + 120
    while not current(SUBMIT["name"], fqdn):
        if time.monotonic() > deadline:
            raise Exception(f"{victim}'s replica of {SUBMIT['name']} is not current two minutes after it started")
        time.sleep(1)
    wait_stored(before + during, 30)
