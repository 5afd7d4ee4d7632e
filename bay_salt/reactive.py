"""The reactive controller: what the master does when a container dies.

1. Trust: only the minion the event speaks about (see events.trusted).
2. At once, one KV transaction: the instance is marked critical (every
   node's bay-lb-sync takes it out of HAProxy through the Runtime API) and the
   replacement's placement is recorded (a restarted controller resumes it).
3. After the crash-loop back-off (the first restart is immediate): the
   replacement starts on the same node, passes its health check, and one
   transaction registers it and deregisters the dead one; the dead container
   is removed. A replacement that fails its health check counts as a crash
   and is retried after the back-off, until the group is marked failed.
4. A node lost (Consul serfHealth): its instances are deregistered and each
   group is brought back to its count on the nodes left; a node back: its
   containers KV no longer lists are removed.
5. Resume (controller or salt-master restarted): every decision is in KV, so
   :meth:`Controller.resume` reconciles what it finds: lost nodes, replacements
   decided but not registered, registered instances whose container is gone
   (they died while nobody listened), and strays.
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
                 services_source: Callable[[bool], dict], settings: dict | Callable[[], dict], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        """``services_source(fresh)``: the ``bay:services`` pillar (``fresh``:
        not from a cache); ``settings``: the ``bay:controller`` pillar (see
        :class:`bay_salt.settings.Controller`), or a callable giving it now."""
        self.backend = backend
        self.client = client
        self.fire = fire
        self.services_source = services_source
        self.clock = clock
        self.sleep = sleep
        self._settings = settings

    # --- helpers ---------------------------------------------------------------
    def _record(self, service: str, group: str, instance: str) -> kv.Instance | None:
        _, item = self.client.kv.get(names.kv_instance(service, group, instance))
        return kv.Instance.from_json(item["Value"]) if item and item.get("Value") else None

    def _group(self, service: str, group: str) -> dict | None:
        """The group's spec; a group not in a cached pillar is looked up once
        more in fresh pillar (it may have been deployed a moment ago)."""
        for fresh in (False, True):
            spec = services.parse(self.services_source(fresh)).get(service)
            if spec and group in spec.groups():
                return spec.groups()[group]
        return None

    @property
    def settings(self) -> dict:
        return self._settings() if callable(self._settings) else self._settings

    def _backoff(self, history: list[float], now: float) -> tuple[float, bool]:
        s = self.settings
        return events.backoff(history, now, base=s["restart_backoff"], cap=s["restart_backoff_max"],
                              reset_after=s["backoff_reset"], fail_after=s["crash_loop_restarts"])

    def decide(self, what: str, **data) -> None:
        log.info("%s %s", what, data)
        self.fire(what, data)

    # --- events ------------------------------------------------------------------
    def handle(self, tag: str, event: dict) -> bool:
        """Handle one event from the master bus; True if acted upon. A died or
        unhealthy instance is replaced; an OOM kill is logged (its die event
        follows and replaces it)."""
        if tag not in (names.TAG_CONTAINER_DIED, names.TAG_CONTAINER_UNHEALTHY, names.TAG_CONTAINER_OOM):
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
        if tag == names.TAG_CONTAINER_OOM:
            log.warning("%s.%s %s on %s was killed for exceeding its memory limit", svc, grp, inst, source)
            return False
        if record.health == "critical":
            return False  # already being replaced
        reason = "unhealthy" if tag == names.TAG_CONTAINER_UNHEALTHY else f"exit {payload.get('exit_code')}"
        died = payload.get("time_ns")
        self.replace(record, reason=reason, died=died / 1e9 if isinstance(died, (int, float)) else None)
        return True

    def replace(self, dead: kv.Instance, reason: str, died: float | None = None) -> kv.Instance | None:
        """Replace ``dead`` on its node; a replacement that fails its health
        check is a crash too: retried after the back-off until the group is
        failed. The back-off follows the instance's line (``restarts`` passes
        to each replacement), so independent failures of different instances
        are not a crash loop. Returns the registered replacement, or None.
        ``died``: when the node's Docker engine saw it die (epoch seconds); the
        replaced event then says how long each step took after it."""
        name = f"{dead.service}.{dead.group}"
        g = None
        died = self.clock() if died is None else died
        timings = {"detected": round(self.clock() - died, 3)}
        while True:
            now = self.clock()
            delay, failed = self._backoff(list(dead.restarts), now)
            new_id = secrets.token_hex(4)
            placed = names.kv_placement(dead.service, dead.group, new_id)
            # first of all (no Salt call before it): critical, so HAProxy everywhere drops
            # it now; its line's restarts recorded with it, and the replacement's placement
            dead = dataclasses.replace(dead, health="critical", restarts=(dead.restarts + (now,))[-20:])
            ops = kv.register_ops([dead])
            if not failed:
                ops.append(kv.op_set(placed, json.dumps({"node": dead.node, "replaces": dead.instance,
                                                         "container": dead.container})))
            kv.apply(self.client, ops)
            timings.setdefault("critical", round(self.clock() - died, 3))
            g = g or self._group(dead.service, dead.group)
            if g is None:  # removed from pillar: nothing to restart; its dead container goes too
                kv.apply(self.client, kv.deregister_ops([dead]) + [kv.op_delete(placed)])
                self.backend.stop(dead.node, [dead.container])
                self.decide(names.TAG_CONTAINER_REPLACED, group=name, old=dead.instance, new=None, node=dead.node,
                            reason=f"{reason}; the group is no longer in bay:services")
                return None
            if failed:
                why = f"crash loop: {len(dead.restarts) - 1} restarts in a row; not restarted until the next deploy"
                kv.apply(self.client, kv.deregister_ops([dead]) + [
                    kv.op_set(names.kv_failed(dead.service, dead.group), why)])
                self.backend.stop(dead.node, [dead.container])
                self.decide(names.TAG_GROUP_FAILED, group=name, instance=dead.instance, reason=why)
                return None
            if delay:
                self.decide(names.TAG_CONTAINER_BACKOFF, group=name, instance=dead.instance, seconds=delay)
                self.sleep(delay)
            started = self.backend.start(dead.node, g, [new_id])
            timings["healthy"] = round(self.clock() - died, 3)
            res = started[0] if started else {}
            if res.get("healthy"):
                new = kv.Instance(dead.service, dead.group, new_id, dead.node, res.get("address") or dead.address,
                                  int(res.get("host_port") or 0), "passing", g["image"], res.get("container", ""),
                                  spec_hash(g), restarts=dead.restarts)
                kv.apply(self.client, kv.register_ops([new]) + kv.deregister_ops([dead]) + [kv.op_delete(placed)])
                timings["registered"] = round(self.clock() - died, 3)
                self.backend.stop(dead.node, [dead.container])
                self.decide(names.TAG_CONTAINER_REPLACED, group=name, old=dead.instance, new=new_id, node=dead.node,
                            reason=reason, seconds_after_death=timings)
                return new
            self.backend.stop(dead.node, [c for c in (res.get("container"),) if c])
            kv.apply(self.client, [kv.op_delete(placed)])
            reason = f"{reason}; replacement {new_id} failed its health check"
            self.decide(names.TAG_CONTAINER_REPLACED, group=name, old=dead.instance, new=None, node=dead.node,
                        reason=reason)

    # --- nodes -------------------------------------------------------------------
    def _restore(self, groups: set[tuple[str, str]], **why) -> list[str]:
        """Bring each of ``groups`` back to its desired count (placement picks the nodes)."""
        specs = services.parse(self.services_source(False))
        deployer = Deployer(self.backend, self.client, drain_seconds=0)
        restored = []
        for svc, grp in sorted(groups):
            g = specs[svc].groups().get(grp) if svc in specs else None
            if g is None or self.client.kv.get(names.kv_failed(svc, grp))[1]:
                continue  # gone from pillar, or failed (crash loop) until deployed again
            report = deployer.reconcile(g)
            restored.append(report.group)
            self.decide(names.TAG_CONTAINER_REPLACED, group=report.group, new=report.started, **why)
        return restored

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
        return self._restore({(i.service, i.group) for i in gone}, node_lost=node)

    def resume(self, alive: set[str]) -> dict:
        """On (re)start, from what KV and the nodes hold now:

        * nodes with registered instances that are not alive in Consul
          (failed, or already reaped from its member list): handled as lost;
        * replacements decided but not registered (``bay/placements``): the
          half-started container is removed, the dead instance deregistered;
        * registered instances whose container is not running on its node
          (they died while nobody listened) or still marked critical:
          deregistered and their container removed;
        * service containers KV does not know, older than ``stray_age``: removed;

        then every affected group is brought back to its desired count. Nothing
        runs twice: a replacement runs only once its predecessor is deregistered.
        """
        _, instances = kv.read_instances(self.client)
        lost = sorted({i.node for i in instances} - alive)
        for node in lost:
            self.node_lost(node)
        _, instances = kv.read_instances(self.client)
        by_key = {(i.service, i.group, i.instance): i for i in instances}
        groups: set[tuple[str, str]] = set()
        stop: dict[str, set[str]] = {}
        gone: dict[str, kv.Instance] = {}
        ops = []
        _, pending = self.client.kv.get(names.kv_placements_prefix(), recurse=True)
        for item in pending or []:
            svc, grp, new_id = item["Key"][len(names.kv_placements_prefix()):].split("/")[:3]
            data = json.loads(item["Value"] or b"{}")
            node = data.get("node")
            if node in alive:
                self._wait_idle(node)  # the start it asked for before the restart may still be running
                stop.setdefault(node, set()).add(names.service_container(svc, grp, new_id))
            old = by_key.get((svc, grp, data.get("replaces")))
            if old:
                gone[old.key] = old
            ops.append(kv.op_delete(item["Key"]))
            groups.add((svc, grp))
        for node in sorted(alive):
            found = self.backend.containers(node)
            running = {c["container"] for c in found if c.get("status") == "running"}
            mine = [i for i in instances if i.node == node and i.container]  # not host services (the registry)
            for i in mine:
                if i.container not in running or i.health == "critical":
                    gone[i.key] = i
            known = {i.container for i in mine}
            for c in found:
                if c["container"] not in known and c.get("age", 0) >= self.settings["stray_age"]:
                    stop.setdefault(node, set()).add(c["container"])
        for i in gone.values():
            stop.setdefault(i.node, set()).add(i.container)
            groups.add((i.service, i.group))
        kv.apply(self.client, kv.deregister_ops(gone.values()) + ops)
        for node, containers in sorted(stop.items()):
            if node in alive:
                self.backend.stop(node, sorted(containers))
        restored = self._restore(groups, resumed=True) if groups else []
        summary = {"lost": lost, "deregistered": sorted(i.instance for i in gone.values()),
                   "removed": {n: sorted(c) for n, c in stop.items() if n in alive}, "restored": restored}
        self.decide(names.TAG_CONTROLLER_RESUMED, **summary)
        return summary

    def _wait_idle(self, node: str, wait: float = 120.0) -> None:
        busy = getattr(self.backend, "busy", None)
        deadline = time.monotonic() + wait
        while busy and busy(node) and time.monotonic() < deadline:
            self.sleep(1)

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
                self.sleep(2)
        _, instances = kv.read_instances(self.client)
        registered = {i.container for i in instances if i.node == node}
        strays = [c["container"] for c in found if c["container"] not in registered]
        if strays:
            self.backend.stop(node, strays)
            self.decide(names.TAG_STRAY_REMOVED, node=node, containers=strays)
        self.decide(names.TAG_NODE_BACK, node=node)
        return strays
