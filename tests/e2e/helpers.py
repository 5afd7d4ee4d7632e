"""What the e2e tests share: reading the cluster's state (KV, bay.status,
containers on every node, every node's HAProxy) and waiting on conditions."""

from __future__ import annotations

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


def holds(predicate, seconds: float, what: str, interval: float = 0.5) -> None:
    """An absence, watched: ``predicate`` stays true for ``seconds`` (an
    AssertionError naming ``what`` the moment it does not)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"{what}: no longer true"
        time.sleep(interval)


def ids_via(address, port, tries=24):
    seen = set()
    for _ in range(tries):
        try:
            body = urllib.request.urlopen(f"http://{address}:{port}/", timeout=2).read().decode().split()
            seen.add((body[1], body[2]))
        except OSError:
            pass
    return seen


def registered(cluster, group, service="demo"):
    st = cluster.runner("bay.status", service)[f"{service}.{group}"]
    return {line.split("@")[0] for line in st["instances"]}


def placements(cluster, group, service="demo"):
    """instance -> node, as bay.status reports it."""
    st = cluster.runner("bay.status", service)[f"{service}.{group}"]
    return {line.split("@")[0]: line.split("@")[1].split(":")[0] for line in st["instances"]}


def wait_routed(cluster, port, group, expect_count, version="v1", timeout=30):
    """Every node's HAProxy routes exactly the registered instances."""
    state = {}

    def routed():
        state["want"] = registered(cluster, group)
        state["got"] = {n.id: ids_via(n.address, port) for n in cluster.nodes()}
        return len(state["want"]) == expect_count and all(
            {i for i, _ in g} == state["want"] and {v for _, v in g} == {version} for g in state["got"].values())

    try:
        retry.until(routed, "routing", timeout=timeout, interval=0.5)
    except retry.GaveUp:
        raise AssertionError(f"routing did not converge: registered {sorted(state.get('want', []))}, "
                             f"seen {state.get('got')}") from None
    return state["want"]


def containers(cluster, group, status_filter=("status=running",)):
    """Instance ids of the group's containers on every node (running ones by default)."""
    out = set()
    filters = [f for s in status_filter for f in ("--filter", s)]
    for n in cluster.nodes():
        res = cluster.client.containers.get(n.container).exec_run(
            ["docker", "ps", "-a", *filters, "--filter", f"label=io.bay.group={group}",
             "--format", "{{.Label \"io.bay.instance\"}}"])
        out |= set(res.output.decode().split())
    return out


def kv_get(cluster, key, recurse=False):
    """Consul KV read over HTTP from the host (the cluster's own bridge network)."""
    node = cluster.nodes()[0]
    url = f"http://{node.address}:8500/v1/kv/{key}" + ("?recurse" if recurse else "")
    try:
        return json.loads(urllib.request.urlopen(url, timeout=2).read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise


def master_log_lines(cluster) -> int:
    """How many lines the master's log has now (read what follows with :func:`master_log_since`)."""
    return int(cluster.master().exec_run(["sh", "-c", "wc -l < /var/log/salt/master"]).output.decode().strip())


def master_log_since(cluster, since: int, grep: str) -> list[str]:
    out = cluster.master().exec_run(["sh", "-c", f"tail -n +{since + 1} /var/log/salt/master | grep -F '{grep}'"])
    return out.output.decode().splitlines()


def now() -> float:
    return time.monotonic()
