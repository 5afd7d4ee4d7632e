"""Group and platform metrics, computed on the master (the controller's engine).

:class:`Recorder` counts what the controller did (from the events it fires)
between two rounds; :func:`snapshot` turns one look at KV, the nodes and
those counts into points named by :mod:`bay_salt.model.names`.
"""

from __future__ import annotations

import collections
import json
import statistics
import threading
from collections.abc import Iterable

from bay_salt.kv.records import Accepted, Health, Instance
from bay_salt.metrics.collect import Point, healthy_ratio
from bay_salt.model import names

#: the master's client certificate for Bay's carbon (`bay up` puts them there; a site does the same)
MASTER_TLS = {"cert_file": "/etc/bay/tls/master.pem", "key_file": "/etc/bay/tls/master-key.pem",
              "ca_file": "/etc/bay/ca.pem"}

#: controller events counted as actions (the event tag's last two parts name the action)
ACTION_TAGS = (names.TAG_CONTAINER_REPLACED, names.TAG_CONTAINER_BACKOFF, names.TAG_GROUP_FAILED,
               names.TAG_NODE_LOST, names.TAG_NODE_BACK, names.TAG_STRAY_REMOVED, names.TAG_CONTROLLER_RECONCILED,
               names.TAG_SCALE_DECIDED, names.TAG_INSTANCE_MARKED)


#: what the autoscaler's round records (bay_salt.control.autoscale_round) that is drawn
AUTOSCALE_INPUTS = ("utilisation", "cpu_used", "cpu_reserved", "recommendation", "ready")


def autoscale_records(items: dict[str, bytes], prefix: str) -> dict[tuple[str, str], dict]:
    """KV ``bay/scale/SERVICE/GROUP`` values -> (service, group) -> the last round's record."""
    out = {}
    for key, value in items.items():
        try:
            out[tuple(key[len(prefix):].split("/")[:2])] = json.loads(value).get("last") or {}
        except (ValueError, AttributeError):
            continue
    return out


def action_name(tag: str) -> str:
    """``bay/container/replaced`` -> ``container_replaced``."""
    return "_".join(tag.split("/")[1:])


class Recorder:
    """What the controller did since the last :meth:`take` (thread safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.actions: collections.Counter[str] = collections.Counter()
        self.restarts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.replacements: collections.Counter[tuple[str, str]] = collections.Counter()
        self.latencies: list[float] = []

    def event(self, tag: str, data: dict) -> None:
        if tag not in ACTION_TAGS:
            return
        with self.lock:
            self.actions[action_name(tag)] += 1
            group = str(data.get("group") or "")
            if tag == names.TAG_CONTAINER_REPLACED and "." in group:
                key = tuple(group.split(".", 1))
                self.restarts[key] += 1
                if data.get("new"):
                    self.replacements[key] += 1
                took = (data.get("seconds_after_death") or {}).get("registered")
                if isinstance(took, (int, float)):
                    self.latencies.append(float(took))

    def take(self) -> Recorder:
        """The counts so far (a copy); counting starts again from zero."""
        with self.lock:
            out = Recorder.__new__(Recorder)
            out.actions, out.restarts, out.replacements, out.latencies = (
                self.actions, self.restarts, self.replacements, self.latencies)
            self._reset()
        return out


def snapshot(cluster: str, now: float, accepted: dict[tuple[str, str], Accepted],
             autoscaled: dict[tuple[str, str], int], instances: Iterable[Instance],
             failed: Iterable[tuple[str, str]], nodes_known: set[str], nodes_alive: set[str], drained: set[str],
             done: Recorder, reconcile: dict | None = None,
             autoscale_last: dict[tuple[str, str], dict] | None = None) -> list[Point]:
    """One round of group and platform points. ``autoscale_last``: each
    autoscaled group's last round (KV ``bay/scale``: its inputs and decision)."""
    out: list[Point] = []

    def put(path: str, value: float) -> None:
        out.append((path, (now, float(value))))

    failed = set(failed)
    by_group: dict[tuple[str, str], list[Instance]] = collections.defaultdict(list)
    for i in instances:
        if i.is_container:
            by_group[(i.service, i.group)].append(i)
    total = collections.Counter()
    for key in sorted(set(accepted) | set(by_group)):
        svc, grp = key
        a = accepted.get(key)
        want = autoscaled.get(key, a.spec.instances if a else 0) if a else 0
        regs = by_group.get(key, [])
        passing = sum(1 for i in regs if i.health == Health.PASSING)
        g = lambda what, s=svc, gr=grp: names.metric_group(cluster, s, gr, what)  # noqa: E731
        put(g("desired"), want)
        put(g("registered"), len(regs))
        put(g("passing"), passing)
        put(g("healthy_ratio"), healthy_ratio(passing, want))
        put(g("failed"), 1 if key in failed else 0)
        put(g("restarts"), done.restarts.get(key, 0))
        put(g("replacements"), done.replacements.get(key, 0))
        if key in autoscaled:
            put(g("autoscale.desired"), autoscaled[key])
        if a and a.spec.autoscale:
            put(g("autoscale.at_max"), 1 if want >= a.spec.autoscale.max else 0)
        for what in AUTOSCALE_INPUTS:
            value = (autoscale_last or {}).get(key, {}).get(what)
            if isinstance(value, (int, float)):
                put(g(f"autoscale.{what}"), value)
        total.update(desired=want, registered=len(regs), passing=passing)
    p = lambda what: names.metric_platform(cluster, what)  # noqa: E731
    put(p("groups"), len(set(accepted) | set(by_group)))
    put(p("groups_failed"), len(failed))
    for what in ("desired", "registered", "passing"):
        put(p(f"instances.{what}"), total[what])
    put(p("nodes.known"), len(nodes_known | nodes_alive))
    put(p("nodes.alive"), len(nodes_alive))
    put(p("nodes.lost"), len(nodes_known - nodes_alive))
    put(p("nodes.drained"), len(drained))
    for node in sorted(nodes_known | nodes_alive):
        put(names.metric_node(cluster, node, "alive"), 1 if node in nodes_alive else 0)
    for action in sorted(set(done.actions) | {action_name(t) for t in ACTION_TAGS}):
        put(p(f"controller.actions.{action}"), done.actions.get(action, 0))
    if done.latencies:
        put(p("controller.replace_seconds.max"), max(done.latencies))
        put(p("controller.replace_seconds.median"), statistics.median(done.latencies))
    if reconcile:
        put(p("reconcile.cpu_ms"), 1000 * float(reconcile.get("cpu", 0)))
        put(p("reconcile.wall_ms"), 1000 * float(reconcile.get("took", 0)))
        put(p("reconcile.found"), float(reconcile.get("found", 0)))
        put(p("reconcile.silent_nodes"), len(reconcile.get("silent") or []))
        if reconcile.get("at"):
            put(p("reconcile.age_seconds"), max(0.0, now - float(reconcile["at"])))
    return out
