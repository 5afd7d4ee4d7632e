"""Decide, then act: the control loop's handlers. Each gathers what it needs
(a record, a spec, a node's containers), asks :mod:`bay_salt.control.recovery`
what to do, and has the :class:`~bay_salt.control.executor.Executor` do it.

1. Trust: only the minion the event speaks about (``recovery.trusted``).
2. At once, one KV transaction: the instance is marked critical (every
   node's bay-lb-sync takes it out of HAProxy through the Runtime API) and the
   replacement's placement is recorded (a restarted controller resumes it).
3. After the crash-loop back-off (the first restart is immediate): the
   replacement starts on the same node, passes its health check, and one
   transaction registers it and deregisters the dead one; the dead container
   is removed. A replacement that fails its health check counts as a crash
   and is decided about again, until the group is marked failed.
4. A node lost (Consul serfHealth): its instances are deregistered and each
   group is brought back to its count on the nodes left; a node back: its
   containers KV no longer lists are removed.
5. Resume (controller or salt-master restarted): every decision is in KV, so
   :meth:`ControlLoop.resume` reconciles what it finds.
Every decision is a ``bay/...`` event and a log line.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from bay_salt.control import recovery
from bay_salt.control.executor import Executor, Fire
from bay_salt.kv.records import Instance
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec
from bay_salt.model.settings import Controller as Settings
from bay_salt.scheduling.backend import Backend
from bay_salt.util import retry

log = logging.getLogger("bay.controller")


class ControlLoop:
    def __init__(self, store: Store, backend: Backend, fire: Fire,
                 group_spec: Callable[[str, str], GroupSpec | None], settings: Callable[[], Settings],
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        """``group_spec(service, group)``: the group's accepted spec (None: gone);
        ``settings()``: the ``bay:controller`` settings now."""
        self.store = store
        self.backend = backend
        self.group_spec = group_spec
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.executor = Executor(store, backend, fire, group_spec, clock=clock, sleep=sleep)

    # --- container events ----------------------------------------------------------------
    def handle(self, tag: str, event: dict) -> bool:
        """Handle one event from the master bus; True if acted upon. A died or
        unhealthy instance is replaced; an OOM kill is left to its die event."""
        if tag not in recovery.HANDLED:
            return False
        source, payload = event.get("id"), event.get("data") or {}
        svc, grp, inst = payload.get("service"), payload.get("group"), payload.get("instance")
        record = self.store.instance(svc, grp, inst) if svc and grp and inst else None
        verdict = recovery.container_event(tag, source, payload, record)
        self.executor.apply(list(verdict.actions))
        if not verdict.replace:
            if not verdict.actions:
                log.info("%s from %s about %s.%s %s: %s; nothing to do", tag, source, svc, grp, inst,
                         "not registered (a replaced or stopped instance)" if record is None
                         else f"{record.health} (already handled)" if tag != names.TAG_CONTAINER_OOM
                         else "an OOM kill (its die event replaces it)")
            return False
        died = payload.get("time_ns")
        self.replace(record, verdict.reason, died / 1e9 if isinstance(died, (int, float)) else None)
        return True

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
        return self.executor.apply(recovery.node_lost(node, self.store.instances())).restored

    def node_back(self, node: str, wait: float = 90.0) -> list[str]:
        """A node is back: its containers that KV no longer lists are removed,
        so nothing runs twice. Consul may see the node before its minion is
        back: it waits up to ``wait`` seconds for the minion to answer.
        Returns the containers removed."""
        found = retry.call(lambda: self.backend.containers(node), f"the minion of {node} answers", timeout=wait,
                           interval=2, sleep=self.sleep)
        actions = recovery.node_back(node, found, self.store.instances())
        self.executor.apply(actions)
        return [c for a in actions if isinstance(a, recovery.RemoveContainers) for c in a.containers]

    def resume(self, alive: set[str]) -> dict:
        """On (re)start, from what KV and the nodes hold now (see
        :func:`bay_salt.control.recovery.resume`): lost nodes first, then
        half-done replacements, instances whose container is gone and strays;
        every affected group restored once. Emits ``bay/controller/resumed``."""
        lost = recovery.lost_nodes(self.store.instances(), alive)
        for node in lost:
            self.node_lost(node)
        placements = self.store.placements()
        for node in sorted({p.node for p in placements} & alive):
            self._wait_idle(node)  # the start it asked for before the restart may still be running
        containers = {node: self.backend.containers(node) for node in sorted(alive)}
        actions = recovery.resume(alive, self.store.instances(), placements, containers,
                                  self.settings().stray_age)
        out = self.executor.apply(actions)
        summary = recovery.resumed_summary(lost, actions, out.restored)
        self.executor.apply([summary])
        return summary.data

    def _wait_idle(self, node: str, wait: float = 120.0) -> None:
        try:
            retry.until(lambda: not self.backend.busy(node), f"the start job on {node} ends", timeout=wait,
                        interval=1, sleep=self.sleep)
        except retry.GaveUp:
            pass  # remove what it started anyway
