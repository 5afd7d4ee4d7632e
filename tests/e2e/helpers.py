"""What the e2e tests share: reading the cluster's state (KV, the status rows,
containers on every node, every node's HAProxy) and waiting on conditions."""

from __future__ import annotations

import contextlib
import copy
import json
import time
import urllib.error
import urllib.request

from bay_salt.util import retry

WEB, API = 10080, 10081


def eventually(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something true (and return that);
    an AssertionError naming ``what`` (and the last error) if it never does."""
    try:
        return retry.until(predicate, what, timeout=timeout, interval=interval)
    except retry.GaveUp as err:
        raise AssertionError(str(err)) from None


def reconcile_passes(cluster) -> int:
    """How many reconciliation passes the controller has made (KV bay/controller/reconcile)."""
    import base64

    from bay_salt.model import names

    item = kv_get(cluster, names.KV_RECONCILE)
    return json.loads(base64.b64decode(item[0]["Value"]))["passes"] if item else 0


def ids_via(address, port, tries=24):
    seen = set()
    for _ in range(tries):
        try:
            body = urllib.request.urlopen(f"http://{address}:{port}/", timeout=2).read().decode().split()
            seen.add((body[1], body[2]))
        except OSError:
            pass
    return seen


def status(cluster, service="demo") -> dict:
    """`bay status SERVICE`'s rows as deployed, read from KV over HTTPS on this
    machine (:func:`bay_salt.control.operations.group_rows`, the runner's own
    code): the tests poll it, and a ``salt-run`` per poll kept the 2 cores busy."""
    from bay_salt.control.operations import group_rows

    return group_rows(cluster.consul_store(running_only=True), {}, service)


def placements(cluster, group, service="demo") -> dict[str, str]:
    """instance -> node of the group's registered instances."""
    return {line.split("@")[0]: line.split("@")[1].split(":")[0]
            for line in status(cluster, service)[f"{service}.{group}"]["instances"]}


def web_instances(cluster) -> dict[str, str]:
    """demo.web's registered instances and their nodes."""
    return placements(cluster, "web")


def registered(cluster, group, service="demo") -> set[str]:
    return set(placements(cluster, group, service))


def wait_routed(cluster, port, group, expect_count, version="v1", timeout=30, service="demo"):
    """Every node's HAProxy routes exactly the registered instances."""
    state = {}

    def routed():
        state["want"] = registered(cluster, group, service)
        state["got"] = {n.id: ids_via(n.address, port) for n in cluster.nodes()}
        return len(state["want"]) == expect_count and all(
            {i for i, _ in g} == state["want"] and {v for _, v in g} == {version} for g in state["got"].values())

    try:
        retry.until(routed, "routing", timeout=timeout, interval=0.5)
    except retry.GaveUp:
        raise AssertionError(f"routing did not converge: registered {sorted(state.get('want', []))}, "
                             f"seen {state.get('got')}") from None
    return state["want"]


def containers(cluster, group, status_filter=("status=running",), service="demo"):
    """Instance ids of the group's containers on every node (running ones by default)."""
    out = set()
    filters = [f for s in status_filter for f in ("--filter", s)]
    for n in cluster.nodes():
        res = cluster.client.containers.get(n.container).exec_run(
            ["docker", "ps", "-a", *filters, "--filter", f"label=io.bay.service={service}",
             "--filter", f"label=io.bay.group={group}",
             "--format", "{{.Label \"io.bay.instance\"}}"])
        out |= set(res.output.decode().split())
    return out


def kv_get(cluster, key, recurse=False):
    """Consul KV read over HTTPS from the host (the cluster's own bridge network), as the API returns it
    (values base64); [] when there is nothing."""
    res = _kv(cluster, "GET", key, params={"recurse": "1"} if recurse else None)
    if res.status_code == 404:
        return []
    res.raise_for_status()
    return res.json()


def kv_delete(cluster, key) -> None:
    """Delete one KV key (with the cluster's management token), as an operator's slip would."""
    _kv(cluster, "DELETE", key).raise_for_status()


def _kv(cluster, method, key, params=None):
    import requests

    servers = cluster.consul_servers()
    return requests.request(method, f"https://{cluster.nodes()[0].address}:{servers.port}/v1/kv/{key}",
                            params=params, verify=servers.ca_file, timeout=2,
                            headers={"X-Consul-Token": cluster.site.consul_token() or ""})


def master_log_lines(cluster) -> dict[str, int]:
    """How many lines each running master's log has now (read what follows with :func:`master_log_since`)."""
    return {m.name: int(m.exec_run(["sh", "-c", "wc -l < /var/log/salt/master"]).output.decode().strip() or 0)
            for m in cluster.masters() if m.status == "running"}


def master_log_since(cluster, since: dict[str, int], grep: str) -> list[str]:
    """The lines with ``grep`` that every running master logged after ``since``
    (whichever master leads the controller logs what it does)."""
    out = []
    for m in cluster.masters():
        if m.status == "running":
            res = m.exec_run(["sh", "-c", f"tail -n +{since.get(m.name, 0) + 1} /var/log/salt/master | grep -F '{grep}'"])
            out += res.output.decode().splitlines()
    return out


def leading_master(cluster, role: str = "controller"):
    """The container of the master that leads ``role`` now (its lock in KV)."""
    return cluster.leading_master(role)


def now() -> float:
    return time.monotonic()


#: inside a node: every Bay backend's servers in HAProxy (name, address:port, up) as JSON
HAPROXY_STATE = r"""
import json
from bay_salt.host.haproxy_runtime import RuntimeAPI
text = RuntimeAPI("/run/haproxy/admin.sock").execute("show servers state")
header, out = [], {}
for line in text.splitlines():
    if line.startswith("# be_id"):
        header = line[2:].split()
    elif line.strip() and not line.startswith("#") and line.strip() != "1":
        row = dict(zip(header, line.split()))
        if row["be_name"].count(".") == 1 and row["srv_addr"] != "0.0.0.0":
            out.setdefault(row["be_name"], []).append([f"{row['srv_addr']}:{row['srv_port']}",
                                                       row["srv_op_state"] == "2", int(row["srv_admin_state"])])
print(json.dumps(out))
"""


#: HAProxy admin state bits of a server that takes no traffic: forced, inherited or resolution
#: maintenance, forced or inherited drain (0x04, "disabled in the configuration", alone is not:
#: a slot enabled through the Runtime API keeps it until the next reload)
HAPROXY_NOT_SERVING = 0x01 | 0x02 | 0x20 | 0x08 | 0x10


def haproxy_servers(cluster, node) -> dict:
    """backend -> [[addr:port, up, admin state]] in ``node``'s HAProxy."""
    c = cluster.client.containers.get(node.container)
    res = c.exec_run(["/opt/bay/venv/bin/python", "-c", HAPROXY_STATE])
    return json.loads(res.output.decode()) if res.exit_code == 0 else {"error": res.output.decode()[-300:]}


def bay_containers(cluster, node) -> dict[str, str]:
    """name -> state (running, paused, exited...) of every Bay container on ``node``."""
    c = cluster.client.containers.get(node.container)
    out = c.exec_run(["docker", "ps", "-a", "--filter", "label=io.bay.service",
                      "--format", "{{.Names}} {{.State}}"]).output.decode()
    return dict(line.split()[:2] for line in out.splitlines() if line.strip())


def convergence(cluster, services=("demo",)) -> list[str]:
    """What is not (yet) as it should be, one line each; [] when converged:
    every deployed group at its desired count of passing instances in KV;
    each registered instance's container running (not paused) on its node;
    no other Bay container running anywhere; every node's HAProxy holding
    exactly the registered servers of each group, and all of them UP."""
    problems = []
    st = {}
    for svc in services:
        st.update(status(cluster, svc))
    registered: dict[str, set[str]] = {}
    expected: dict[str, str] = {}  # container -> node
    for group, row in st.items():
        if not row["deployed"]:
            continue
        if not (row["passing"] == row["registered"] == row["desired"]):
            problems.append(f"{group}: {row['passing']} passing / {row['registered']} registered of {row['desired']}")
        for line in row["instances"]:
            inst, rest = line.split("@")
            node, port = rest.split(" ")[0].split(":")
            addr = next(n.address for n in cluster.nodes() if n.id == node)
            registered.setdefault(group, set()).add(f"{addr}:{port}")
            svc, grp = group.split(".")
            expected[f"bay-{svc}-{grp}-{inst}"] = node
    nodes = [n for n in cluster.nodes() if n.status == "running" and n.id in ("node1", "node2", "node3")]
    for n in nodes:
        running = bay_containers(cluster, n)
        for name, state in running.items():
            if expected.get(name) == n.id:
                if state != "running":
                    problems.append(f"{n.id}: registered {name} is {state}")
            elif state in ("running", "paused"):
                problems.append(f"{n.id}: {name} is {state} but not registered there")
        for name, node in expected.items():
            if node == n.id and name not in running:
                problems.append(f"{n.id}: registered {name} has no container")
        servers = haproxy_servers(cluster, n)
        for group, want in registered.items():
            have = servers.get(group, [])
            if {s[0] for s in have} != want:
                problems.append(f"{n.id} HAProxy {group}: {sorted(s[0] for s in have)} != registered {sorted(want)}")
            down = [s[0] for s in have if not s[1] or s[2] & HAPROXY_NOT_SERVING]
            if down:
                problems.append(f"{n.id} HAProxy {group}: not UP: {down}")
    return problems


def converges(cluster, timeout=60, services=("demo",)) -> float:
    """Wait until :func:`convergence` finds nothing; returns the seconds it took."""
    started, last = time.monotonic(), ["not looked yet"]

    def done():
        last[:] = convergence(cluster, services)
        return not last

    try:
        retry.until(done, "convergence", timeout=timeout, interval=1)
    except retry.GaveUp:
        raise AssertionError(f"not converged in {timeout} s: " + "; ".join(last)) from None
    return time.monotonic() - started


@contextlib.contextmanager
def restoring(cluster, service="demo"):
    """A copy of the services pillar to change; afterwards the pillar as it
    was, and ``service`` deployed from it again (a no-op when the test left
    the deployed spec as it was)."""
    original = cluster.site.services_pillar()
    try:
        yield copy.deepcopy(original)
    finally:
        cluster.set_services(original)
        cluster.runner("bay.deploy", service)


@contextlib.contextmanager
def demo_image_service(cluster, name: str, body: dict, status=None, timeout: float = 180):
    """Service ``name`` (``body``: its spec without the image) of the demo's
    image, deployed for a test or a bench and converged (``status(text)``: a
    context to show the wait in); scaled to 0 and taken out of
    the pillar after (Bay removes a service by scaling it to 0 first).
    ``body`` may name the demo's ``health`` and ``liveness`` as ``"demo"``."""
    original = cluster.site.services_pillar()
    pillar = copy.deepcopy(original)
    demo = pillar["bay"]["services"]["demo"]
    spec = {k: (demo[k] if v == "demo" else v) for k, v in body.items()}
    pillar["bay"]["services"][name] = {"image": demo["image"], **spec}
    try:
        cluster.set_services(pillar)
        with (status or (lambda _: contextlib.nullcontext()))(f"deploying {name}"):
            cluster.runner("bay.deploy", name)
            converges(cluster, timeout, services=("demo", name))
        yield
    finally:
        for g in spec["groups"]:
            cluster.runner("bay.scale", f"{name}.{g}", "0")
        cluster.set_services(original)


def _listening(ss: str, own: str) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in ``ss -Hltn`` reachable from
    elsewhere (a wildcard bind counted at ``own``; loopback and IPv6 left out)."""
    out = set()
    for line in ss.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        host, _, port = parts[3].rpartition(":")
        host = host.removeprefix("[::ffff:").removesuffix("]") if host.startswith("[::ffff:") else host  # Java's
        if host in ("0.0.0.0", "*", "[::]"):
            host = own
        if host.startswith(("127.", "[")) or not port.isdigit():
            continue
        out.add((host, int(port)))
    return out


def container_reach(cluster, node_index: int = 0, service: str = "demo") -> dict:
    """A service container's view of the platform, tried from inside it: every
    TCP port listening on every node, on the cluster network's gateway (the
    registry's HDFS) and on the masters, probed with ``nc -z`` from one of
    ``service``'s containers on node ``node_index``. Returns the probes, what
    was open, and what should be (its node's frontends, relay and own
    instances; the instances registered in KV)."""
    import base64
    import subprocess

    from bay_salt.kv.records import instance_at, route_at
    from bay_salt.model import names, settings
    from tests.helpers import CHECKOUT

    nodes = cluster.nodes()
    me = nodes[node_index]
    box = cluster.client.containers.get(me.container)
    cid = box.exec_run(["docker", "ps", "-q", "--filter", f"label=io.bay.service={service}"]).output.split()[0].decode()
    gateway = box.exec_run(["docker", "network", "inspect", "bridge", "--format",
                            "{{(index .IPAM.Config 0).Gateway}}"]).output.decode().strip()
    targets: set[tuple[str, int]] = set()
    local = {gateway, me.address}
    for n in nodes:
        ss = cluster.client.containers.get(n.container).exec_run(["ss", "-Hltn"]).output.decode()
        found = _listening(ss, n.address)
        if n.id == me.id:  # its own node is also its bridge's gateway
            found |= {(gateway, p) for a, p in found if a == me.address}
        else:  # another node's bridge address is a private one of its own
            found = {(a, p) for a, p in found if a != gateway}
        targets |= found
    net = cluster.client.networks.get(names.network_name(cluster.name))
    host_gateway = (net.attrs["IPAM"]["Config"] or [{}])[0].get("Gateway")
    ss = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    targets |= {(a, p) for a, p in _listening(ss, host_gateway) if a == host_gateway}
    for m in cluster.masters():
        m.reload()
        ip = next(iter(m.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        targets |= _listening(m.exec_run(["ss", "-Hltn"]).output.decode(), ip)
    items = kv_get(cluster, "bay/", recurse=True)
    routes, insts = [], []
    for e in items:
        raw = base64.b64decode(e["Value"] or b"")
        if e["Key"].startswith("bay/routes/"):
            routes.append(route_at(e["Key"], raw))
        elif e["Key"].startswith("bay/instances/"):
            insts.append(instance_at(e["Key"], raw))
    apps = [i for i in insts if i.service != "bay-registry"]
    own_ports = {i.port for i in apps if i.node == me.id}
    allowed = {(a, p) for a in local for p in {r.listen for r in routes if r.service != "bay-registry"}
               | {settings.formula_defaults(CHECKOUT)["logs"]["relay_port"]} | own_ports} | {(i.address, i.port) for i in apps}
    # busybox's nc has no -z: a port is closed when nc says it cannot connect (a reset, a refusal,
    # no answer in 2 s), open otherwise (it connected: whatever the server then did); all at once
    script = "".join(f'(case "$(timeout 3 nc -w 2 {a} {p} </dev/null 2>&1)" in *"can\'t connect"*) ;; '
                     f"*) echo {a}:{p};; esac) &\n" for a, p in sorted(targets))
    res = box.exec_run(["docker", "exec", cid, "sh", "-c", script + "wait"])
    opened = {(line.rsplit(":", 1)[0], int(line.rsplit(":", 1)[1])) for line in res.output.decode().split()}
    return {"container": cid, "node": me.id, "gateway": gateway, "targets": targets, "open": opened,
            "allowed": allowed & targets}
