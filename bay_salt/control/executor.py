"""Applying recovery actions (:mod:`bay_salt.control.recovery`) through the
KV store and the nodes (a :class:`bay_salt.scheduling.backend.Backend`).

Every action is a KV transaction, a Salt call or both, and an event and a
log line. The order within a list is the order of effect: a dead instance is
marked replacing before anything else happens, a replacement is registered
before its predecessor's container goes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bay_salt.control import recovery as r
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Health, Instance
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec
from bay_salt.scheduling import planning
from bay_salt.scheduling.backend import Backend
from bay_salt.scheduling.deployer import Deployer, placement_nodes, route_of

log = logging.getLogger("bay.controller")

Fire = Callable[[str, dict], None]
#: lines of a crash-looping container's output kept for its group's alert
OUTPUT_LINES = 20


@dataclass
class Outcome:
    """What applying a list of actions came to: the registered replacement, or
    the dead instance to decide about again (its replacement failed its health
    check), and the groups restored."""

    new: Instance | None = None
    retry: Instance | None = None
    restored: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """One :meth:`Executor.apply`: its outcome so far, when the container died, the step timings."""

    out: Outcome
    died: float
    timings: dict


class Executor:
    def __init__(self, store: Store, backend: Backend, fire: Fire,
                 group_spec: Callable[[str, str], GroupSpec | None], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 replace: Callable[[Instance, str], None] | None = None, hands=None,
                 output_url: Callable[[Instance], str | None] | None = None):
        """``group_spec(service, group)``: the spec a group is restored to (None:
        gone); ``replace(instance, reason)``: hands a :class:`~recovery.Replace`
        to a handler; ``hands``: what handlers hold (a restore holds its group);
        ``output_url(instance)``: where its node serves a removed instance's output."""
        self.store = store
        self.backend = backend
        self._fire = fire
        self.group_spec = group_spec
        self.clock = clock
        self.sleep = sleep
        self.replace = replace
        self.hands = hands
        self.output_url = output_url or (lambda inst: None)

    def fire(self, tag: str, data: dict) -> None:
        log.info("%s %s", tag, data)
        self._fire(tag, data)

    def apply(self, actions: list[r.Action], died: float | None = None, timings: dict | None = None) -> Outcome:
        """Apply ``actions`` in order, each by its own method (:attr:`_BY_TYPE`).
        ``died`` (epoch seconds) and ``timings``: for a replacement, when the
        container died and how long each step took after it (the replaced event carries them)."""
        run = _Run(Outcome(), self.clock() if died is None else died, {} if timings is None else timings)
        for a in actions:
            method = self._BY_TYPE.get(type(a))
            if method is None:  # pragma: no cover - a new action without its executor
                raise TypeError(f"no executor for {a!r}")
            method(self, a, run)
        return run.out

    def _announce(self, a: r.Announce, run: _Run) -> None:
        self.fire(a.tag, a.data)

    def _mark_replacing(self, a: r.MarkReplacing, run: _Run) -> None:
        ops = kvstore.register_ops([a.instance])
        if a.placement:
            ops.append(kvstore.op_put(a.placement))
        self.store.apply(ops)
        run.timings.setdefault("critical", round(self.clock() - run.died, 3))

    def _retire(self, a: r.Retire, run: _Run) -> None:
        dead = a.instance
        self.store.apply(kvstore.deregister_ops([dead]) + ([kvstore.op_delete(a.placement.key)] if a.placement else []))
        self.backend.stop(dead.node, [dead.container])
        self.fire(names.TAG_CONTAINER_REPLACED, {"group": dead.group_name, "old": dead.instance, "new": None,
                                                 "node": dead.node, "reason": a.reason,
                                                 "output": self.output_url(dead)})

    def _fail_group(self, a: r.FailGroup, run: _Run) -> None:
        dead = a.instance
        # its last lines, for the group's alert, before the container goes
        output = self.backend.output(dead.node, dead.container, OUTPUT_LINES)
        self.store.apply(kvstore.deregister_ops([dead])
                         + [kvstore.op_set(names.kv_failed(dead.service, dead.group), a.reason),
                            kvstore.op_set(names.kv_failed_output(dead.service, dead.group), output)])
        self.backend.stop(dead.node, [dead.container])
        self.fire(names.TAG_GROUP_FAILED, {"group": dead.group_name, "instance": dead.instance,
                                           "reason": a.reason, "output": self.output_url(dead)})

    def _back_off(self, a: r.BackOff, run: _Run) -> None:
        self.fire(names.TAG_CONTAINER_BACKOFF, {"group": a.instance.group_name, "instance": a.instance.instance,
                                                "seconds": a.seconds})
        self.sleep(a.seconds)

    def _start(self, a: r.StartReplacement, run: _Run) -> None:
        run.out.new = self._start_replacement(a, run.died, run.timings)
        if run.out.new is None:
            run.out.retry = a.dead

    def _deregister(self, a: r.Deregister, run: _Run) -> None:
        self.store.apply(kvstore.deregister_ops(a.instances))

    def _drop_placements(self, a: r.DropPlacements, run: _Run) -> None:
        self.store.apply([kvstore.op_delete(p.key) for p in a.placements])

    def _remove_containers(self, a: r.RemoveContainers, run: _Run) -> None:
        self.backend.stop(a.node, list(a.containers))

    def _restore_groups(self, a: r.Restore, run: _Run) -> None:
        run.out.restored += self._restore(a)

    def _hand_over(self, a: r.Replace, run: _Run) -> None:
        if self.replace is None:  # pragma: no cover - every loop gives one
            raise TypeError("no handler to replace instances with")
        self.replace(a.instance, a.reason)
        run.out.replaced.append(a.instance.instance)

    _BY_TYPE: dict = {
        r.Announce: _announce, r.MarkReplacing: _mark_replacing, r.Retire: _retire, r.FailGroup: _fail_group,
        r.BackOff: _back_off, r.StartReplacement: _start, r.Deregister: _deregister,
        r.DropPlacements: _drop_placements, r.RemoveContainers: _remove_containers, r.Restore: _restore_groups,
        r.Replace: _hand_over, r.SetHealth: lambda self, a, run: self._set_health(a),
    }

    def _start_replacement(self, a: r.StartReplacement, died: float, timings: dict) -> Instance | None:
        dead, placed, g = a.dead, a.placement, a.group
        started = self.backend.start(dead.node, g, [placed.instance])
        timings["healthy"] = round(self.clock() - died, 3)
        res = started[0] if started else {}
        if res.get("healthy"):
            new = Instance(dead.service, dead.group, placed.instance, dead.node, res.get("address") or dead.address,
                           int(res.get("host_port") or 0), Health.PASSING, g.image, res.get("container", ""),
                           g.spec_hash(), restarts=dead.restarts)
            self.store.apply(kvstore.register_ops([new]) + kvstore.deregister_ops([dead])
                             + [kvstore.op_delete(placed.key)])
            timings["registered"] = round(self.clock() - died, 3)
            self.backend.stop(dead.node, [dead.container])
            self.fire(names.TAG_CONTAINER_REPLACED, {"group": g.name, "old": dead.instance, "new": placed.instance,
                                                     "node": dead.node, "reason": a.reason,
                                                     "seconds_after_death": timings, "output": self.output_url(dead)})
            return new
        self.backend.stop(dead.node, [c for c in (res.get("container"),) if c])
        self.store.apply([kvstore.op_delete(placed.key)])
        why = res.get("error") or "failed its health check"
        self.fire(names.TAG_CONTAINER_REPLACED, {"group": g.name, "old": dead.instance, "new": None, "node": dead.node,
                                                 "reason": f"{a.reason}; replacement {placed.instance}: {why}",
                                                 "output": self.output_url(dead)})
        return None

    def _restore(self, a: r.Restore) -> list[str]:
        """Each group back to its count. Groups that only lack instances are
        placed together and started in parallel (:meth:`_fill`); a group that
        must roll or shrink goes the deploy's way (:meth:`Deployer.reconcile`)."""
        claimed: list[GroupSpec] = []
        for svc, grp in a.groups:
            g = self.group_spec(svc, grp)
            if g is None or self.store.failed(svc, grp) is not None:
                continue  # gone from the specs, or failed (crash loop) until deployed again
            if self.hands is not None and not self.hands.claim(r.group_hand(svc, grp)):
                continue  # another handler is restoring it
            claimed.append(g)
        try:
            short, other = [], []
            for g in claimed:
                plan = planning.plan_group(self.store.instances(g.service, g.group), g.instances, g.spec_hash())
                missing = planning.short_by(plan)
                if missing:
                    short.append((g, missing))
                else:
                    other.append(g)
            restored = self._fill(short, a.why) if short else []
            deployer = Deployer(self.backend, self.store, drain_seconds=0, sleep=self.sleep)
            for g in other:
                report = deployer.reconcile(g)
                restored.append(report.group)
                if report.started or report.stopped:
                    self.fire(names.TAG_CONTAINER_REPLACED, {"group": report.group, "new": report.started,
                                                             "stopped": report.stopped, **a.why})
            return restored
        finally:
            if self.hands is not None:
                for g in claimed:
                    self.hands.release(r.group_hand(g.service, g.group))

    def _fill(self, short: list[tuple[GroupSpec, int]], why: dict) -> list[str]:
        """Start what the ``(group, missing)`` lack: placed at once on the
        nodes as they are now, every start published before any is waited
        for, each group registered as its instances come up healthy. What did
        not fit or start is logged and left to the next reconciliation."""
        states = self.backend.nodes()
        address = {s.id: s.address for s in states}
        plan = planning.fill(short, placement_nodes(states, self.store.drained()), lambda: secrets.token_hex(4))
        for group, why_not in sorted(plan.refused.items()):
            log.warning("bay controller: %s cannot be restored now: %s", group, why_not)
        results = self.backend.start_all(plan.starts)
        new: dict[str, list[Instance]] = {}
        for (node, g, _), res in zip(plan.starts, results):
            if isinstance(res, Exception):
                log.warning("bay controller: restoring %s: %s", g.name, res)
                continue
            bad = [x.get("container") for x in res if not x.get("healthy") and x.get("container")]
            if bad:
                log.warning("bay controller: restoring %s on %s: %d instance(s) failed their health check",
                            g.name, node, len(bad))
                self.backend.stop(node, bad)
            new.setdefault(g.name, []).extend(
                Instance(g.service, g.group, x["instance"], node, x.get("address") or address.get(node, ""),
                         int(x.get("host_port") or 0), Health.PASSING, g.image, x["container"], g.spec_hash())
                for x in res if x.get("healthy"))
        restored = []
        for g, _ in short:
            if g.name in plan.refused:
                continue
            self.store.ensure(names.kv_route(g.service, g.group), route_of(g).to_json())
            started = new.get(g.name, [])
            if started:
                self.store.apply(kvstore.register_ops(started))
                self.fire(names.TAG_CONTAINER_REPLACED, {"group": g.name, "new": [i.instance for i in started],
                                                         "stopped": [], **why})
            restored.append(g.name)
        return restored

    def _set_health(self, a: r.SetHealth) -> None:
        """The readiness the node agent reports; not over a replacement that began meanwhile."""
        now = self.store.instance(a.instance.service, a.instance.group, a.instance.instance)
        if now is None or now.health in (Health.REPLACING, a.health) or now.container != a.instance.container:
            return
        self.store.apply(kvstore.register_ops([now.replace(health=a.health)]))
        self.fire(names.TAG_INSTANCE_MARKED, {"group": now.group_name, "instance": now.instance, "node": now.node,
                                              "health": str(a.health)})
