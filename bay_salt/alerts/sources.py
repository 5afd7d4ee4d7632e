"""The numbers alert rules read: Bay's own state (KV, Consul, probes of the
registry and its storage), under the names Graphite has them, and Graphite's
render API for the rest."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import urllib.error
import urllib.request

from bay_salt.alerts.evaluate import target
from bay_salt.kv.records import Health
from bay_salt.kv.store import Store
from bay_salt.metrics import platform
from bay_salt.metrics.render import RenderClient, RenderError
from bay_salt.model import names
from bay_salt.model.alert_rules import Rule

#: Graphite's newest agent point is this old when graphite-web does not answer at all
NEVER = 1e6


def tcp_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def webhdfs_answers(storage: str, timeout: float = 3.0) -> bool | None:
    """Whether any namenode of an ``hdfs://nn1:port,nn2:port/root`` storage
    answers WebHDFS (None: the storage is not HDFS)."""
    if not storage.startswith("hdfs://"):
        return None
    hosts = storage[len("hdfs://"):].partition("/")[0].split(",")
    for host in hosts:
        try:
            with urllib.request.urlopen(f"http://{host}/webhdfs/v1/?op=GETFILESTATUS&user.name=bay",
                                        timeout=timeout) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            continue
    return False


def graphite_age(render: RenderClient, cluster: str, now: float) -> float:
    """Seconds since the newest point any node's agent wrote (:data:`NEVER`
    when graphite-web does not answer)."""
    try:
        got = render.series(f"bay.{cluster}.nodes.*.agent.points", since="-10min")
    except (OSError, RenderError, ValueError):
        return NEVER
    newest = max((ts for pts in got.values() for v, ts in pts if v is not None), default=None)
    return NEVER if newest is None else max(0.0, now - newest)


def state(cluster: str, store: Store, nodes_known: set[str], alive: set[str], now: float, *,
          consul_leader: bool, registry_storage: str = "", render: RenderClient | None = None,
          failed_sends: int = 0, probe=tcp_answers) -> tuple[dict[str, float], dict[tuple[str, str], set[str]]]:
    """Bay's state as ``{metric path: value}`` and, per group, the nodes of its
    instances that are not passing (for inhibition). Raises what the store
    raises when KV cannot be read."""
    accepted, autoscaled, instances = store.accepted_all(), store.autoscaled_all(), store.instances()
    record = store.get(names.KV_RECONCILE)
    points = platform.snapshot(cluster, now, accepted, autoscaled, instances, store.failed_groups(), nodes_known,
                               alive, store.drained(), platform.Recorder(), json.loads(record) if record else None,
                               platform.autoscale_records(store.items(names.kv_scale_prefix()),
                                                          names.kv_scale_prefix()))
    out = {path: value for path, (_ts, value) in points}
    p = lambda what: names.metric_platform(cluster, what)  # noqa: E731
    out[p("consul.leader")] = 1.0 if consul_leader else 0.0
    out[p("alerts.failed_sends")] = float(failed_sends)
    registry = [i for i in instances if i.service == names.REGISTRY_SERVICE]
    if registry or registry_storage:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(registry))) as pool:
            answers = list(pool.map(lambda i: probe(i.address, i.port), registry))
        out[p("registry.answering")] = 1.0 if any(answers) else 0.0
    hdfs = webhdfs_answers(registry_storage) if registry_storage else None
    if hdfs is not None:
        out[p("registry.storage_answering")] = 1.0 if hdfs else 0.0
    if render is not None:
        out[p("graphite.age_seconds")] = graphite_age(render, cluster, now)
    nodes_of: dict[tuple[str, str], set[str]] = {}
    for i in instances:
        if i.is_container and i.health != Health.PASSING:
            nodes_of.setdefault((i.service, i.group), set()).add(i.node)
    return out, nodes_of


def graphite_targets(rules: list[Rule], cluster: str) -> tuple[list[str], float]:
    """Every Graphite target the rules read (each once) and the longest window."""
    targets, window = [], 0.0
    for r in rules:
        if r.source != "graphite":
            continue
        for metric in [r.metric, r.divide_by, *(c.metric for c in r.and_)]:
            t = target(cluster, metric) if metric else ""
            if t and t not in targets:
                targets.append(t)
        window = max(window, r.window)
    return targets, window


def graphite(render: RenderClient, targets: list[str], window: float, per_request: int = 25
             ) -> dict[str, list[tuple[float, float | None]]] | None:
    """Every series of ``targets`` over ``window`` seconds (and one interval
    more), as ``{path: [(ts, value), ...]}``; None if graphite-web did not answer."""
    out: dict[str, list] = {}
    since = f"-{int(window) + 20}s"
    try:
        for k in range(0, len(targets), per_request):
            got = render.series(targets[k:k + per_request], since=since)
            for name, pts in got.items():
                out[name] = [(ts, v) for v, ts in pts]
    except (OSError, RenderError, ValueError):
        return None
    return out
