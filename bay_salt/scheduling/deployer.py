"""Deploying a service group: scale, roll, place, register.

:func:`bay_salt.scheduling.planning.plan_group` is the pure decision;
:class:`Deployer` carries it out against a :class:`Backend` (Salt, in the
runner and the control loop) and the KV store:

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

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Health, Instance, Route
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec, ServiceSpec
from bay_salt.scheduling import placement
from bay_salt.scheduling.backend import Backend, DeployError, NodeState
from bay_salt.scheduling.planning import desired, plan_group

log = logging.getLogger("bay.deploy")

__all__ = ["Deployer", "DeployError", "GroupReport", "desired", "route_of"]


def route_of(g: GroupSpec) -> Route:
    """The group's routing record: HAProxy's frontend and readiness check on
    every node, and the liveness check the node agents run."""
    return Route(g.service, g.group, g.listen, g.health.model_dump() if g.health else None,
                 g.liveness.model_dump() if g.liveness else None)


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


def placement_nodes(states: list[NodeState], drained: set[str] = frozenset()) -> list[placement.Node]:
    """Placement's view of the nodes: capacity minus what their Bay containers
    reserve; a drained node takes nothing new."""
    out = []
    for s in states:
        n = placement.Node(s.id, s.cpus, s.memory_mb, schedulable=s.schedulable and s.id not in drained)
        for c in s.containers:
            if c["status"] in ("running", "created", "restarting"):
                n.take((c["service"], c["group"]), c["cpu"], c["memory_mb"])
        out.append(n)
    return out


class Deployer:
    def __init__(self, backend: Backend, store: Store, drain_seconds: float = 1.0,
                 log_event: Callable[[str, dict], None] | None = None, sleep: Callable[[float], None] = time.sleep):
        self.backend = backend
        self.store = store
        self.drain = drain_seconds
        self.event = log_event or (lambda tag, data: None)
        self.sleep = sleep

    # --- dry run --------------------------------------------------------------------
    def plan(self, spec: ServiceSpec) -> dict[str, dict]:
        """What :meth:`deploy` would do, changing nothing; raises PlacementError
        if a group would not fit."""
        out = {}
        nodes = None
        for g in spec.groups().values():
            p = plan_group(self.store.instances(g.service, g.group), g.instances, g.spec_hash())
            if p.start:
                if nodes is None:
                    nodes = placement_nodes(self.backend.nodes())
                n = min(g.max_surge, p.start) if p.replace else p.start
                placement.place(nodes, g.service, g.group, n, g.cpu, g.memory_mb)
            out[g.name] = {"start": p.start, "stop": len(p.remove) + len(p.replace), "roll": bool(p.replace),
                           "desired": g.instances}
        return out

    # --- the group ---------------------------------------------------------------
    def deploy(self, spec: ServiceSpec, groups: dict[str, int] | None = None) -> list[GroupReport]:
        """Bring every group of ``spec`` (or only those in ``groups``, with
        those counts) to its desired state."""
        reports = []
        for gname, g in spec.groups().items():
            if groups is not None and gname not in groups:
                continue
            # a count given, or what the autoscaler decided (within the policy's bounds)
            g = g.with_instances(groups[gname]) if groups is not None else desired(
                g, self.store.autoscaled(g.service, g.group))
            reports.append(self.reconcile(g))
        return reports

    def reconcile(self, g: GroupSpec, fit: bool = False, replace_unready: bool = False,
                  restart: bool = False) -> GroupReport:
        """Bring one group to ``g.instances``; with ``fit`` (autoscaling) a
        scale-up larger than the free capacity starts as many as fit; with
        ``replace_unready`` (a deploy) an instance that is not passing (dead,
        hung, not ready, being replaced) counts as missing: it goes and a new
        one starts. The control loop leaves those to their own handlers.
        ``restart``: every instance is replaced, as a roll (``max_surge`` at
        a time, each new one healthy before an old one goes)."""
        want = g.spec_hash()
        records = self.store.instances(g.service, g.group)
        broken = [r for r in records if r.health != Health.PASSING] if replace_unready else []
        records = [r for r in records if r not in broken]
        by_id = {r.instance: r for r in records}
        plan = plan_group([dataclasses.replace(r, spec="") for r in records] if restart else records,
                          g.instances, want)
        self.store.ensure(names.kv_route(g.service, g.group), route_of(g).to_json())
        if self.store.failed(g.service, g.group) is not None:
            # a deploy of a group the controller failed (crash loop) starts it afresh
            self.store.apply([kvstore.op_delete(names.kv_failed(g.service, g.group))])
        if broken:
            self.store.apply(kvstore.deregister_ops(broken))
            self._stop([(r.node, r.container) for r in broken if r.container])
        if not plan.changes:
            return GroupReport(g.name, g.instances, stopped=[r.instance for r in broken])
        if not plan.start and not plan.replace:  # fewer only: no node needs to be asked first
            report = GroupReport(g.name, g.instances, stopped=[r.instance for r in broken])
            self._retire([by_id[i] for i in plan.remove], report)
            return report
        states = self.backend.nodes()
        address = {s.id: s.address for s in states}
        drained = self.store.drained()
        nodes = placement_nodes(states, drained)
        if fit and plan.start and not plan.replace:
            free = placement.room(nodes, g.cpu, g.memory_mb)
            if plan.start > free:
                g = g.with_instances(len(plan.keep) + free)
                plan = plan_group(records, g.instances, want)
        report = GroupReport(g.name, g.instances, rolled=bool(plan.replace), stopped=[r.instance for r in broken])

        if plan.remove:
            self._retire([by_id[i] for i in plan.remove], report)

        to_replace = [by_id[i] for i in plan.replace]
        remaining = plan.start
        surge = g.max_surge if to_replace else remaining
        # check up front that all of it fits (nothing changes if it does not)
        placement.place([dataclasses.replace(n, groups=n.groups.copy()) for n in nodes], g.service, g.group,
                        min(surge, remaining) if to_replace else remaining, g.cpu, g.memory_mb)
        while remaining > 0:
            batch = min(surge, remaining) if to_replace else remaining
            where = placement.place(nodes, g.service, g.group, batch, g.cpu, g.memory_mb)
            started, errors = self._start(g, where, address, want)
            failed = [s for s in started if not s[1]]
            then = 'roll stopped, the old instances keep serving' if to_replace else 'nothing registered'
            if errors:
                self._stop([(i.node, i.container) for i, _ in started])
                raise DeployError(f"{g.name}: cannot start on {', '.join(sorted(errors))}: "
                                  f"{next(iter(errors.values()))}; {then}")
            if failed:
                self._stop([(i.node, i.container) for i, _ in started])
                bad = ", ".join(f"{i.instance} on {i.node}" for i, _ in failed)
                raise DeployError(f"{g.name}: new instance(s) {bad} did not pass the health check; {then}")
            new = [i for i, _ in started]
            old, to_replace = to_replace[:batch], to_replace[batch:]
            self.store.apply(kvstore.register_ops(new) + kvstore.deregister_ops(old))
            report.started += [i.instance for i in new]
            self.event(names.TAG_DEPLOY_STARTED, {"group": g.name, "instances": [i.instance for i in new]})
            if old:
                self._drain_and_stop(old, report)
                for i in old:  # their capacity is free for the next batch
                    n = next((n for n in nodes if n.id == i.node), None)
                    if n:
                        n.release((g.service, g.group), g.cpu, g.memory_mb)
            remaining -= batch
        if to_replace:  # more outdated than desired
            self._retire(to_replace, report)
        return report

    def remove(self, g: GroupSpec) -> GroupReport:
        """Take the whole group away: its records and routes first (every
        HAProxy drops its instances at once), then drain and stop them, then
        its accepted spec, route and controller state. The caller holds the group."""
        report = GroupReport(g.name, 0)
        records = self.store.instances(g.service, g.group)
        placed = [p for p in self.store.placements() if (p.service, p.group) == (g.service, g.group)]
        self.store.apply([kvstore.op_delete(names.kv_route(g.service, g.group))]
                         + [kvstore.op_delete(names.kv_placement(p.service, p.group, p.instance)) for p in placed])
        if records:
            self._retire(records, report)
        self.store.apply([kvstore.op_delete(k) for k in (
            names.kv_spec(g.service, g.group), names.kv_scale(g.service, g.group),
            names.kv_failed(g.service, g.group), names.kv_failed_output(g.service, g.group))])
        return report

    def evacuate(self, g: GroupSpec, node: str) -> GroupReport:
        """Move the group's instances off ``node`` (drained): as many started on
        the other nodes first, healthy, then one transaction registers them and
        deregisters the node's; those drain and stop. Nothing changes if they
        do not fit elsewhere or do not start."""
        report = GroupReport(g.name, g.instances)
        leaving = [r for r in self.store.instances(g.service, g.group) if r.node == node and r.is_container]
        if not leaving:
            return report
        states = self.backend.nodes()
        address = {s.id: s.address for s in states}
        nodes = placement_nodes(states, self.store.drained() | {node})
        where = placement.place(nodes, g.service, g.group, len(leaving), g.cpu, g.memory_mb)
        started, errors = self._start(g, where, address, g.spec_hash())
        if errors or any(not ok for _, ok in started):
            self._stop([(i.node, i.container) for i, _ in started])
            why = "; ".join(f"{n}: {e}" for n, e in sorted(errors.items())) or "did not pass the health check"
            raise DeployError(f"{g.name}: cannot move off {node}: {why}; nothing changed")
        new = [i for i, _ in started]
        self.store.apply(kvstore.register_ops(new) + kvstore.deregister_ops(leaving))
        report.started += [i.instance for i in new]
        self._drain_and_stop(leaving, report)
        return report

    # --- steps ----------------------------------------------------------------------
    def _start(self, g: GroupSpec, where: list[str], address: dict[str, str],
               want: str) -> tuple[list[tuple[Instance, bool]], dict[str, str]]:
        """Start the instances placed on each node: one start job per node,
        all published at once (the nodes start theirs in parallel);
        ``(started, {node: why it could not start any})``."""
        per_node: dict[str, list[str]] = {}
        for node in where:
            per_node.setdefault(node, []).append(secrets.token_hex(4))
        out, errors = [], {}
        answers = self.backend.start_all([(node, g, ids) for node, ids in per_node.items()])
        for node, results in zip(per_node, answers, strict=True):
            if isinstance(results, DeployError):
                errors[node] = str(results).removeprefix(f"{g.name} on {node}: ")
                continue
            for res in results:
                if res.get("error"):
                    errors[node] = res["error"]
                    continue
                inst = Instance(g.service, g.group, res["instance"], node, address[node],
                                int(res.get("host_port") or 0), Health.PASSING, g.image, res["container"], want)
                out.append((inst, bool(res.get("healthy"))))
        return out, errors

    def _stop(self, pairs: list[tuple[str, str]]) -> None:
        """Stop them, every node at once."""
        per_node: dict[str, list[str]] = {}
        for node, container in pairs:
            per_node.setdefault(node, []).append(container)
        if per_node:
            self.backend.stop_all(per_node)

    def _retire(self, instances: list[Instance], report: GroupReport) -> None:
        self.store.apply(kvstore.deregister_ops(instances))
        self._drain_and_stop(instances, report)

    def _drain_and_stop(self, instances: list[Instance], report: GroupReport) -> None:
        self.sleep(self.drain)  # every HAProxy has dropped them; let requests in flight finish
        self._stop([(i.node, i.container) for i in instances])
        report.stopped += [i.instance for i in instances]
        self.event(names.TAG_DEPLOY_STOPPED, {"group": report.group, "instances": [i.instance for i in instances]})
