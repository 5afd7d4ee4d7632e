"""Decide, then act: the control loop's handlers. Each gathers what it needs
(a record, a spec, what the nodes run), asks :mod:`bay_salt.control.recovery`
what to do, and has the :class:`~bay_salt.control.executor.Executor` do it.

The flow they follow is told in :mod:`bay_salt.control`. Handlers hold what they
work on (:class:`Hands`), so an event and a reconciliation pass never act on
the same instance or group at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator

from bay_salt.control import recovery
from bay_salt.control.executor import Executor, Fire
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Instance
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec, SpecError, parse
from bay_salt.model.settings import Controller as Settings
from bay_salt.scheduling.backend import Backend
from bay_salt.scheduling.planning import desired
from bay_salt.util import retry

log = logging.getLogger("bay.controller")


class Hands:
    """What the control loop's handlers are working on now (instances, groups,
    nodes), so that no two of them act on the same thing at once."""

    def __init__(self):
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, *keys: str) -> bool:
        """All of ``keys``, or none if any is held already."""
        with self._lock:
            if self._keys & set(keys):
                return False
            self._keys |= set(keys)
            return True

    def release(self, *keys: str) -> None:
        with self._lock:
            self._keys -= set(keys)

    @contextlib.contextmanager
    def holding(self, *keys: str) -> Iterator[bool]:
        got = self.claim(*keys)
        try:
            yield got
        finally:
            if got:
                self.release(*keys)

    def snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys)


def accepted_spec(store: Store) -> Callable[[str, str], GroupSpec | None]:
    """A group's spec as deployed (the accepted spec, at the count it should
    run now: the autoscaler's for an autoscaled group), or None."""
    def group_spec(service: str, group: str) -> GroupSpec | None:
        acc = store.accepted(service, group)
        return desired(acc.spec, store.autoscaled(service, group)) if acc else None
    return group_spec


class ControlLoop:
    def __init__(self, store: Store, backend: Backend, fire: Fire,
                 group_spec: Callable[[str, str], GroupSpec | None] | None,
                 settings: Callable[[], Settings], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, hands: Hands | None = None,
                 dispatch: Callable[[Instance, str], None] | None = None,
                 output_url: Callable[[Instance], str | None] | None = None,
                 authentic: Callable[[str, dict], tuple[bool, str]] | None = None):
        """``group_spec(service, group)``: the group's accepted spec (None: from
        the store); ``settings()``: the ``bay:controller`` settings now;
        ``output_url(instance)``: where its node serves its output (the replaced
        and failed events carry it); ``authentic(tag, event)``: whether the
        event was signed by the node it names (:class:`bay_salt.control.engine.NodeKeys`;
        None: the sender's id is taken as it is, as in tests of the decisions);
        ``hands``: shared by every handler of one controller; ``dispatch(instance,
        reason)``: runs a replacement found by reconciliation (default: here, now)."""
        self.store = store
        self.backend = backend
        self.group_spec = group_spec or accepted_spec(store)
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.hands = hands or Hands()
        self.dispatch = dispatch or (lambda inst, reason: self.take_over(inst, reason))
        self.authentic = authentic
        self.executor = Executor(store, backend, fire, self.group_spec, clock=clock, sleep=sleep,
                                 replace=self.dispatch, hands=self.hands, output_url=output_url)

    # --- events from the nodes -----------------------------------------------------------
    def handle(self, tag: str, event: dict) -> bool:
        """Handle one event from the master bus; True if acted upon. A died,
        unhealthy or paused instance is replaced; an OOM kill is left to its
        die event; readiness changes go into KV."""
        if tag not in recovery.HANDLED:
            return False
        source, payload = event.get("id"), event.get("data") or {}
        ok, why = self.authentic(tag, event) if self.authentic else (True, "")
        if not ok:
            log.warning("%s rejected: %s", tag, why)
            self.executor.apply([recovery.Announce(names.TAG_EVENT_REJECTED,
                                                   {"source": source, "reason": why, "payload": payload})])
            return False
        svc, grp, inst = payload.get("service"), payload.get("group"), payload.get("instance")
        record = self.store.instance(svc, grp, inst) if svc and grp and inst else None
        verdict = recovery.container_event(tag, source, payload, record)
        self.executor.apply(list(verdict.actions))
        if not verdict.replace:
            if not verdict.actions:
                log.info("%s from %s about %s.%s %s: %s; nothing to do", tag, source, svc, grp, inst,
                         "not registered (a replaced or stopped instance)" if record is None
                         else "an OOM kill (its die event replaces it)" if tag == names.TAG_CONTAINER_OOM
                         else f"{record.health}, as reported")
            return any(isinstance(a, recovery.SetHealth) for a in verdict.actions)
        died = payload.get("time_ns")
        died_at = died / 1e9 if isinstance(died, (int, float)) else None
        return self.take_over(record, verdict.reason, died_at) is not False

    def take_over(self, dead: Instance, reason: str, died: float | None = None) -> Instance | None | bool:
        """:meth:`replace`, unless another handler holds the instance (False)."""
        with self.hands.holding(recovery.instance_hand(dead)) as mine:
            if not mine:
                log.info("%s %s: another handler is on it; %s left to it", dead.group_name, dead.instance, reason)
                return False
            now = self.store.instance(dead.service, dead.group, dead.instance)
            if now is None or now.container != dead.container:
                log.info("%s %s: no longer registered as it was (%s); nothing to replace", dead.group_name,
                         dead.instance, reason)
                return False
            return self.replace(now, reason, died)

    def replace(self, dead: Instance, reason: str, died: float | None = None) -> Instance | None:
        """Replace ``dead`` on its node, deciding again after each replacement
        that fails its health check. Returns the registered replacement, or
        None (group failed or gone). ``died``: when the node's Docker engine
        saw it die (epoch seconds); the replaced event then says how long each
        step took after it."""
        died = self.clock() if died is None else died
        timings = {"detected": round(self.clock() - died, 3)}
        g = self.group_spec(dead.service, dead.group)
        while True:
            actions = recovery.replacement(dead, g, self.settings(), self.clock(), secrets.token_hex(4), reason)
            out = self.executor.apply(actions, died=died, timings=timings)
            if out.retry is None:
                return out.new
            dead = out.retry
            reason = f"{reason}; replacement failed its health check"

    # --- nodes -------------------------------------------------------------------------
    def node_lost(self, node: str) -> list[str]:
        """Deregister every instance of a lost node and bring each affected
        group back to its count on the nodes left. Returns the groups restored."""
        with self.hands.holding(recovery.node_hand(node)):
            return self.executor.apply(recovery.node_lost(node, self.store.instances())).restored

    def node_back(self, node: str, wait: float = 90.0) -> list[str]:
        """A node is back: its containers that KV no longer lists are removed,
        so nothing runs twice. Consul may see the node before its minion is
        back: it waits up to ``wait`` seconds for the minion to answer.
        Returns the containers removed."""
        with self.hands.holding(recovery.node_hand(node)):
            found = retry.call(lambda: self.backend.containers(node), f"the minion of {node} answers",
                               timeout=wait, interval=2, sleep=self.sleep)
            actions = recovery.node_back(node, found, self.store.instances())
            self.executor.apply(actions)
            return [c for a in actions if isinstance(a, recovery.RemoveContainers) for c in a.containers]

    # --- reconciliation -----------------------------------------------------------------
    def observe(self, alive: set[str], wait_busy: bool = False) -> recovery.View:
        """What KV holds and what the alive nodes run now. A node with a
        replacement left half done is asked whether its start job still runs
        (``wait_busy``: waited for, as a restarted controller does)."""
        # KV first, the nodes last: a container started and registered meanwhile is
        # seen running (not a registered instance without a container)
        in_hand = self.hands.snapshot()
        deploying = self.store.deploying()
        placements = self.store.placements()
        instances = tuple(self.store.instances())
        accepted = self.store.accepted_all()
        autoscaled = self.store.autoscaled_all() if any(a.spec.autoscale for a in accepted.values()) else {}
        failed = frozenset(self.store.failed_groups())
        containers = self.backend.containers_all(sorted(alive))
        busy = set()
        for node in sorted({p.node for p in placements if p.node in containers
                            and recovery.instance_hand(Instance(p.service, p.group, p.replaces, p.node, "", 0))
                            not in in_hand}):
            if wait_busy:
                self._wait_idle(node)
            elif self.backend.busy(node):
                busy.add(node)
        return recovery.View(now=self.clock(), alive=frozenset(alive), containers=containers, instances=instances,
                             placements=tuple(placements), accepted=accepted, settings=self.settings(),
                             autoscaled=autoscaled, failed=failed, deploying=deploying, busy=frozenset(busy),
                             in_hand=in_hand)

    def reconcile(self, alive: set[str], first: bool = False, passes: int = 0) -> dict:
        """One pass: observe, decide, act; what it found is logged, fired as
        ``bay/controller/reconciled`` and the pass recorded in KV."""
        started, cpu = time.monotonic(), time.thread_time()
        view = self.observe(alive, wait_busy=first)
        actions, found = recovery.reconcile(view)
        for line in found:
            log.warning("reconcile: %s", line)
        out = self.executor.apply(actions)
        summary = {"found": found, "restored": out.restored, "replaced": out.replaced,
                   "nodes": sorted(view.containers), "silent": sorted(view.alive - set(view.containers))}
        if found:
            self.executor.apply([recovery.Announce(names.TAG_CONTROLLER_RECONCILED, summary)])
        self.store.apply([kvstore.op_set(names.KV_RECONCILE, json.dumps(
            {"at": self.clock(), "passes": passes, "took": round(time.monotonic() - started, 3),
             "cpu": round(time.thread_time() - cpu, 4), "found": len(found), "nodes": summary["nodes"],
             "silent": summary["silent"]}))])
        return summary

    def resume(self, alive: set[str]) -> dict:
        """On (re)start: a reconciliation pass that waits for start jobs a
        former controller left running. Emits ``bay/controller/resumed``."""
        summary = self.reconcile(alive, first=True)
        self.executor.apply([recovery.Announce(names.TAG_CONTROLLER_RESUMED, summary)])
        return summary

    def adopt(self, pillar: dict) -> list[str]:
        """Groups that run but have no accepted spec (deployed by a Bay that did
        not record one): take the spec from ``pillar`` (the ``bay:services`` the
        nodes hold) if it is what they run. Returns the groups adopted."""
        accepted = self.store.accepted_all()
        running: dict[tuple[str, str], set[str]] = {}
        for i in self.store.instances():
            if i.is_container and (i.service, i.group) not in accepted:
                running.setdefault((i.service, i.group), set()).add(i.spec)
        adopted = []
        for (svc, grp), hashes in sorted(running.items()):
            try:
                g = parse({svc: pillar[svc]})[svc].groups().get(grp) if svc in pillar else None
            except SpecError as err:
                log.warning("cannot adopt %s.%s: its pillar is invalid (%s)", svc, grp, err)
                continue
            if g is None or g.spec_hash() not in hashes:
                log.warning("cannot adopt %s.%s: pillar declares no such group or not what it runs; "
                            "`bay deploy %s` records what runs", svc, grp, svc)
                continue
            self.store.apply([kvstore.op_put(Accepted(g, at=self.clock(), adopted=True))])
            adopted.append(g.name)
            log.warning("adopted %s: it ran with no accepted spec; pillar's (what it runs) is now its spec", g.name)
        return adopted

    def _wait_idle(self, node: str, wait: float = 120.0) -> None:
        try:
            retry.until(lambda: not self.backend.busy(node), f"the start job on {node} ends", timeout=wait,
                        interval=1, sleep=self.sleep)
        except retry.GaveUp:
            pass  # remove what it started anyway
