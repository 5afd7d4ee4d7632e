"""Deploying a service group: scale, roll, place, register.

:func:`plan_group` is the pure decision; :class:`Deployer` carries it out
against a :class:`Backend` (Salt, in the runner) and Consul KV:

* scale up: place all new instances (all or nothing), start them, wait for
  each to pass its health check on its node, register them in one batch;
* scale down: deregister first (every HAProxy drops them at once), drain,
  then stop;
* roll (image or spec changed): ``max_surge`` at a time, start new, wait
  healthy, then swap registrations in one transaction and stop the old; a new
  instance that fails its health check stops the roll and the old ones keep
  serving.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bay_salt import kv, names, placement
from bay_salt.containers import spec_hash
from bay_salt.services import ServiceSpec

log = logging.getLogger("bay.deploy")


class DeployError(RuntimeError):
    pass


@dataclass
class NodeState:
    id: str
    address: str
    cpus: float
    memory_mb: int
    containers: list[dict] = field(default_factory=list)
    schedulable: bool = True


class Backend(Protocol):
    def nodes(self) -> list[NodeState]: ...

    def start(self, node: str, group: dict, instances: list[str]) -> list[dict]:
        """Start and health-wait ``instances`` of ``group`` on ``node``; one
        ``{instance, container, host_port, healthy}`` per instance."""

    def stop(self, node: str, containers: list[str]) -> None: ...


def autoscaled(client, g: dict) -> int | None:
    """The count the autoscaler last decided for group ``g`` (None: never)."""
    _, item = client.kv.get(names.kv_scale(g["service"], g["group"]))
    return json.loads(item["Value"]).get("state", {}).get("desired") if item and item.get("Value") else None


@dataclass
class GroupPlan:
    keep: list[str]
    remove: list[str]  # up to date but beyond the desired count
    start: int  # new instances to start
    replace: list[str]  # outdated instances the new ones replace, in order

    @property
    def changes(self) -> bool:
        return bool(self.remove or self.start or self.replace)


def plan_group(records: list[kv.Instance], desired: int, want: str) -> GroupPlan:
    """What to do with a group whose registered instances are ``records`` so
    that ``desired`` instances run spec ``want``. Removal order: newest first."""
    current = sorted((r for r in records if r.spec == want), key=lambda r: r.instance)
    outdated = sorted((r.instance for r in records if r.spec != want))
    keep = [r.instance for r in current[:desired]]
    remove = [r.instance for r in current[desired:]]
    start = desired - len(keep)
    return GroupPlan(keep, remove, start, outdated)


@dataclass
class GroupReport:
    group: str
    desired: int
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    rolled: bool = False

    def summary(self) -> str:
        if not (self.started or self.stopped):
            return f"{self.group}: {self.desired} instances, unchanged"
        verb = "rolled" if self.rolled else "scaled"
        return f"{self.group}: {verb} to {self.desired} (+{len(self.started)} -{len(self.stopped)})"


class Deployer:
    def __init__(self, backend: Backend, client, drain_seconds: float = 1.0,
                 log_event: Callable[[str, dict], None] | None = None):
        self.backend = backend
        self.client = client
        self.drain = drain_seconds
        self.event = log_event or (lambda tag, data: None)

    # --- capacity -------------------------------------------------------------
    def _placement_nodes(self, states: list[NodeState]) -> list[placement.Node]:
        out = []
        for s in states:
            n = placement.Node(s.id, s.cpus, s.memory_mb, schedulable=s.schedulable)
            for c in s.containers:
                if c["status"] in ("running", "created", "restarting"):
                    n.take((c["service"], c["group"]), c["cpu"], c["memory_mb"])
            out.append(n)
        return out

    # --- dry run --------------------------------------------------------------------
    def plan(self, spec: ServiceSpec) -> dict[str, dict]:
        """What :meth:`deploy` would do, changing nothing; raises PlacementError
        if a group would not fit."""
        out = {}
        nodes = None
        for gname, g in spec.groups().items():
            _, records = kv.read_instances(self.client, g["service"], g["group"])
            p = plan_group(records, g["instances"], spec_hash(g))
            if p.start:
                if nodes is None:
                    nodes = self._placement_nodes(self.backend.nodes())
                n = min(g.get("max_surge", 1), p.start) if p.replace else p.start
                placement.place(nodes, g["service"], g["group"], n, g["cpu"], g["memory_mb"])
            out[f"{g['service']}.{gname}"] = {"start": p.start, "stop": len(p.remove) + len(p.replace),
                                              "roll": bool(p.replace), "desired": g["instances"]}
        return out

    # --- the group ---------------------------------------------------------------
    def deploy(self, spec: ServiceSpec, groups: dict[str, int] | None = None) -> list[GroupReport]:
        """Bring every group of ``spec`` (or only those in ``groups``, with
        those counts) to its desired state."""
        reports = []
        for gname, g in spec.groups().items():
            if groups is not None and gname not in groups:
                continue
            if groups is not None:
                g = dict(g, instances=groups[gname])
            elif g.get("autoscale"):  # keep what the autoscaler decided, within the policy's bounds
                a = g["autoscale"]
                g = dict(g, instances=max(a["min"], min(a["max"], autoscaled(self.client, g) or g["instances"])))
            reports.append(self.reconcile(g))
        return reports

    def reconcile(self, g: dict, fit: bool = False) -> GroupReport:
        """Bring one group to ``g["instances"]``; with ``fit`` (autoscaling) a
        scale-up larger than the free capacity starts as many as fit."""
        name = f"{g['service']}.{g['group']}"
        want = spec_hash(g)
        _, records = kv.read_instances(self.client, g["service"], g["group"])
        by_id = {r.instance: r for r in records}
        plan = plan_group(records, g["instances"], want)
        self._ensure_route(g)
        self._clear_failed(g)
        if not plan.changes:
            return GroupReport(name, g["instances"])
        states = self.backend.nodes()
        address = {s.id: s.address for s in states}
        nodes = self._placement_nodes(states)
        if fit and plan.start and not plan.replace:
            free = placement.room(nodes, g["cpu"], g["memory_mb"])
            if plan.start > free:
                g = dict(g, instances=len(plan.keep) + free)
                plan = plan_group(records, g["instances"], want)
        report = GroupReport(name, g["instances"], rolled=bool(plan.replace))

        if plan.remove:
            self._retire([by_id[i] for i in plan.remove], report)

        to_replace = [by_id[i] for i in plan.replace]
        remaining = plan.start
        surge = g.get("max_surge", 1) if to_replace else remaining
        # check up front that all of it fits (nothing changes if it does not)
        probe = self._placement_nodes(states)
        placement.place(probe, g["service"], g["group"], min(surge, remaining) if to_replace else remaining,
                        g["cpu"], g["memory_mb"])
        while remaining > 0:
            batch = min(surge, remaining) if to_replace else remaining
            where = placement.place(nodes, g["service"], g["group"], batch, g["cpu"], g["memory_mb"])
            started = self._start(g, where, address, want)
            failed = [s for s in started if not s[1]]
            if failed:
                self._stop([(i.node, i.container) for i, _ in started])
                bad = ", ".join(f"{i.instance} on {i.node}" for i, _ in failed)
                raise DeployError(
                    f"{name}: new instance(s) {bad} did not pass the health check; "
                    f"{'roll stopped, the old instances keep serving' if to_replace else 'nothing registered'}"
                )
            new = [i for i, _ in started]
            old, to_replace = to_replace[:batch], to_replace[batch:]
            kv.apply(self.client, kv.register_ops(new) + kv.deregister_ops(old))
            report.started += [i.instance for i in new]
            self.event(names.TAG_DEPLOY_STARTED, {"group": name, "instances": [i.instance for i in new]})
            if old:
                self._drain_and_stop(old, report)
                for i in old:  # their capacity is free for the next batch
                    n = next((n for n in nodes if n.id == i.node), None)
                    if n:
                        n.release((g["service"], g["group"]), g["cpu"], g["memory_mb"])
            remaining -= batch
        if to_replace:  # more outdated than desired
            self._retire(to_replace, report)
        return report

    # --- steps ----------------------------------------------------------------------
    def _ensure_route(self, g: dict) -> None:
        op = kv.route_op(g)
        _, item = self.client.kv.get(op["KV"]["Key"])
        if not item or item["Value"] != base64.b64decode(op["KV"]["Value"]):
            kv.apply(self.client, [op])

    def _clear_failed(self, g: dict) -> None:
        """A deploy of a group the controller failed (crash loop) starts it afresh."""
        failed = names.kv_failed(g["service"], g["group"])
        if self.client.kv.get(failed)[1]:
            kv.apply(self.client, [kv.op_delete(failed)])  # its new instances start with no restarts

    def _start(self, g: dict, where: list[str], address: dict[str, str], want: str) -> list[tuple[kv.Instance, bool]]:
        per_node: dict[str, list[str]] = {}
        for node in where:
            per_node.setdefault(node, []).append(secrets.token_hex(4))
        out = []
        for node, ids in per_node.items():
            for res in self.backend.start(node, g, ids):
                inst = kv.Instance(g["service"], g["group"], res["instance"], node, address[node],
                                   int(res.get("host_port") or 0), "passing", g["image"], res["container"], want)
                out.append((inst, bool(res.get("healthy"))))
        return out

    def _stop(self, pairs: list[tuple[str, str]]) -> None:
        per_node: dict[str, list[str]] = {}
        for node, container in pairs:
            per_node.setdefault(node, []).append(container)
        for node, containers in per_node.items():
            self.backend.stop(node, containers)

    def _retire(self, instances: list[kv.Instance], report: GroupReport) -> None:
        kv.apply(self.client, kv.deregister_ops(instances))
        self._drain_and_stop(instances, report)

    def _drain_and_stop(self, instances: list[kv.Instance], report: GroupReport) -> None:
        time.sleep(self.drain)  # every HAProxy has dropped them; let requests in flight finish
        self._stop([(i.node, i.container) for i in instances])
        report.stopped += [i.instance for i in instances]
        self.event(names.TAG_DEPLOY_STOPPED, {"group": report.group, "instances": [i.instance for i in instances]})
