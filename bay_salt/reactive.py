"""The reactive controller: what the master does when a container dies.

1. Trust: only the minion the event speaks about (see events.trusted).
2. At once, one KV transaction: the instance is marked critical (every
   node's bay-lb-sync takes it out of HAProxy through the Runtime API) and the
   replacement's placement is recorded (a restarted controller resumes it).
3. After the crash-loop back-off (the first restart is immediate): the
   replacement starts on the same node, passes its health check, and one
   transaction registers it and deregisters the dead one; the dead container
   is removed.
Every decision is a ``bay/...`` event and a log line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable

from bay_salt import events, kv, names, services
from bay_salt.containers import spec_hash
from bay_salt.deploy import Backend, Deployer

log = logging.getLogger("bay.controller")


class Controller:
    def __init__(self, backend: Backend, client, fire: Callable[[str, dict], None],
                 services_source: Callable[[], dict], clock: Callable[[], float] = time.time):
        self.backend = backend
        self.client = client
        self.fire = fire
        self.services_source = services_source
        self.clock = clock

    # --- helpers ---------------------------------------------------------------
    def _record(self, service: str, group: str, instance: str) -> kv.Instance | None:
        _, item = self.client.kv.get(names.kv_instance(service, group, instance))
        return kv.Instance.from_json(item["Value"]) if item and item.get("Value") else None

    def _restarts(self, service: str, group: str) -> list[float]:
        _, item = self.client.kv.get(names.kv_restarts(service, group))
        return json.loads(item["Value"]) if item and item.get("Value") else []

    def _group(self, service: str, group: str) -> dict | None:
        specs = services.parse(self.services_source())
        spec = specs.get(service)
        return spec.groups().get(group) if spec else None

    def decide(self, what: str, **data) -> None:
        log.info("%s %s", what, data)
        self.fire(what, data)

    # --- events ------------------------------------------------------------------
    def handle(self, tag: str, event: dict) -> bool:
        """Handle one event from the master bus; True if acted upon."""
        if tag != names.TAG_CONTAINER_DIED:
            return False
        source = event.get("id")
        payload = event.get("data") or {}
        svc, grp, inst = payload.get("service"), payload.get("group"), payload.get("instance")
        record = self._record(svc, grp, inst) if svc and grp and inst else None
        ok, why = events.trusted(source, payload, record.node if record else None)
        if not ok:
            if record is None and payload.get("node") == source:
                return False  # not (or no longer) registered: a replaced or stopped instance
            self.decide(names.TAG_EVENT_REJECTED, source=source, reason=why, payload=payload)
            return False
        if record.health == "critical":
            return False  # already being replaced
        self.replace(record, reason=f"exit {payload.get('exit_code')}")
        return True

    def replace(self, dead: kv.Instance, reason: str) -> kv.Instance | None:
        g = self._group(dead.service, dead.group)
        now = self.clock()
        history = self._restarts(dead.service, dead.group)
        delay, failed = events.backoff(history, now)
        new_id = secrets.token_hex(4)
        critical = dataclasses.replace(dead, health="critical")
        ops = kv.register_ops([critical]) + [
            kv.op_set(names.kv_restarts(dead.service, dead.group), json.dumps((history + [now])[-20:])),
        ]
        if g and not failed:
            ops.append(kv.op_set(names.kv_placement(dead.service, dead.group, new_id),
                                 json.dumps({"node": dead.node, "replaces": dead.instance})))
        kv.apply(self.client, ops)  # HAProxy everywhere drops it now
        name = f"{dead.service}.{dead.group}"
        if g is None:
            self.decide(names.TAG_GROUP_FAILED, group=name, reason="no longer in bay:services; not replaced")
            return None
        if failed:
            self.decide(names.TAG_GROUP_FAILED, group=name, reason=f"crash loop: {len(history)} restarts in a row")
            return None
        if delay:
            self.decide(names.TAG_CONTAINER_BACKOFF, group=name, instance=dead.instance, seconds=delay)
            time.sleep(delay)
        started = self.backend.start(dead.node, g, [new_id])
        res = started[0] if started else {}
        new = kv.Instance(dead.service, dead.group, new_id, dead.node, res.get("address") or dead.address,
                          int(res.get("host_port") or 0), "passing", g["image"], res.get("container", ""), spec_hash(g))
        if not res.get("healthy"):
            self.backend.stop(dead.node, [c for c in (res.get("container"), dead.container) if c])
            kv.apply(self.client, kv.deregister_ops([dead]) + [
                kv.op_delete(names.kv_placement(dead.service, dead.group, new_id))])
            self.decide(names.TAG_CONTAINER_REPLACED, group=name, old=dead.instance, new=None, node=dead.node,
                        reason=f"{reason}; replacement failed its health check")
            return None
        kv.apply(self.client, kv.register_ops([new]) + kv.deregister_ops([dead]) + [
            kv.op_delete(names.kv_placement(dead.service, dead.group, new_id))])
        self.backend.stop(dead.node, [dead.container])
        self.decide(names.TAG_CONTAINER_REPLACED, group=name, old=dead.instance, new=new_id, node=dead.node,
                    reason=reason)
        return new

    # --- nodes -------------------------------------------------------------------
    def node_lost(self, node: str) -> list[str]:
        """Deregister every instance of a lost node (HAProxy everywhere drops
        them) and bring each affected group back to its count on the nodes
        left. Returns the groups restored."""
        _, instances = kv.read_instances(self.client)
        gone = [i for i in instances if i.node == node]
        self.decide(names.TAG_NODE_LOST, node=node, instances=[i.instance for i in gone])
        if not gone:
            return []
        kv.apply(self.client, kv.deregister_ops(gone))
        specs = services.parse(self.services_source())
        deployer = Deployer(self.backend, self.client, drain_seconds=0)
        restored = []
        for svc, grp in sorted({(i.service, i.group) for i in gone}):
            g = specs[svc].groups().get(grp) if svc in specs else None
            if g is None:
                continue
            report = deployer.reconcile(g)
            restored.append(report.group)
            self.decide(names.TAG_CONTAINER_REPLACED, group=report.group, node_lost=node, new=report.started)
        return restored

    def resume(self, alive: set[str]) -> list[str]:
        """On (re)start: every node that still has registered instances but is
        not alive in Consul (failed, or already reaped from its member list)
        is handled as lost. Returns those nodes."""
        _, instances = kv.read_instances(self.client)
        dead = sorted({i.node for i in instances} - alive)
        for node in dead:
            self.node_lost(node)
        return dead

    def node_back(self, node: str, wait: float = 90.0) -> list[str]:
        """A node is back: its containers that KV no longer lists are strays
        (replaced elsewhere while it was gone) and are removed, so nothing runs
        twice. Consul may see the node before its minion is back: it waits up
        to ``wait`` seconds for the minion to answer."""
        deadline = time.monotonic() + wait
        while True:
            try:
                found = self.backend.containers(node)
                break
            except Exception:  # noqa: BLE001 - the minion is not answering yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        _, instances = kv.read_instances(self.client)
        registered = {i.container for i in instances if i.node == node}
        strays = [c["container"] for c in found if c["container"] not in registered]
        if strays:
            self.backend.stop(node, strays)
            self.decide(names.TAG_STRAY_REMOVED, node=node, containers=strays)
        self.decide(names.TAG_NODE_BACK, node=node)
        return strays
