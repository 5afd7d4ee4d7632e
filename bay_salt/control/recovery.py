"""Recovery decisions: from what happened and what is known, the actions that
heal it. Pure functions of plain inputs (records, specs, settings, the time);
:class:`bay_salt.control.executor.Executor` applies what they return.

* a container died (or its health check failed): mark it critical at once
  (every HAProxy drops it) and record its replacement's placement, back off
  if its line keeps crashing, start the replacement on the same node; after
  ``crash_loop_restarts`` in a row fail the group instead (:func:`replacement`);
* a node lost: deregister what it ran, restore each group (:func:`node_lost`);
* a node back: remove its containers KV no longer lists (:func:`node_back`);
* a restarted controller: reconcile what KV and the nodes hold (:func:`resume`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bay_salt.kv.records import Health, Instance, Placement
from bay_salt.model import names
from bay_salt.model.services import GroupSpec
from bay_salt.model.settings import Controller as Settings

#: restart times kept with an instance line (the back-off looks at fewer)
HISTORY = 20


# --- actions -------------------------------------------------------------------------


class Action:
    """Something the executor does; each is a KV transaction or a Salt call,
    and an event and a log line."""


@dataclass(frozen=True)
class Announce(Action):
    """Fire ``tag`` with ``data`` (and log it): what was found or decided."""

    tag: str
    data: dict


@dataclass(frozen=True)
class MarkCritical(Action):
    """One transaction: the instance record as given (critical, its line's
    restart recorded) and, if any, the placement of its replacement."""

    instance: Instance
    placement: Placement | None = None


@dataclass(frozen=True)
class Retire(Action):
    """The dead instance's group is gone: deregister it, drop its placement, remove its container."""

    instance: Instance
    placement: Placement | None
    reason: str


@dataclass(frozen=True)
class FailGroup(Action):
    """Crash loop: deregister the instance, mark its group failed, remove its container."""

    instance: Instance
    reason: str


@dataclass(frozen=True)
class BackOff(Action):
    """Wait before restarting a line that keeps crashing."""

    instance: Instance
    seconds: float


@dataclass(frozen=True)
class StartReplacement(Action):
    """Start the placement's instance of ``group`` on its node; if it passes its
    health check, register it and deregister ``dead`` in one transaction, drop
    the placement and remove the dead container."""

    dead: Instance
    placement: Placement
    group: GroupSpec
    reason: str


@dataclass(frozen=True)
class Deregister(Action):
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class DropPlacements(Action):
    placements: tuple[Placement, ...]


@dataclass(frozen=True)
class RemoveContainers(Action):
    node: str
    containers: tuple[str, ...]


@dataclass(frozen=True)
class Restore(Action):
    """Bring each group back to its desired count (placement picks the nodes);
    ``why`` goes into the event of each."""

    groups: tuple[tuple[str, str], ...]
    why: dict = field(default_factory=dict)


# --- events from the nodes --------------------------------------------------------------

#: container events that replace the instance
REPLACE_ON = (names.TAG_CONTAINER_DIED, names.TAG_CONTAINER_UNHEALTHY)
#: container events the control loop reads
HANDLED = REPLACE_ON + (names.TAG_CONTAINER_OOM,)


def trusted(source: str | None, payload: dict, record_node: str | None) -> tuple[bool, str]:
    """An event is trusted only from the minion it speaks about: the
    authenticated sender, the node the payload names and the node the
    instance is registered on must all be the same."""
    if not source:
        return False, "event has no authenticated sender"
    if payload.get("node") != source:
        return False, f"event from {source} names node {payload.get('node')!r}"
    if record_node is None:
        return False, f"instance {payload.get('instance')!r} is not registered"
    if record_node != source:
        return False, f"event from {source} about an instance on {record_node}"
    return True, ""


@dataclass(frozen=True)
class Verdict:
    """What a container event means: ``replace`` (with ``reason``), or nothing
    to do (``actions`` says what to announce, if anything)."""

    replace: bool = False
    reason: str = ""
    actions: tuple[Action, ...] = ()


def container_event(tag: str, source: str | None, payload: dict, record: Instance | None) -> Verdict:
    """Read one container event against the instance's record."""
    ok, why = trusted(source, payload, record.node if record else None)
    if not ok:
        if record is None and payload.get("node") == source:
            return Verdict()  # not (or no longer) registered: a replaced or stopped instance
        return Verdict(actions=(Announce(names.TAG_EVENT_REJECTED,
                                         {"source": source, "reason": why, "payload": payload}),))
    if tag == names.TAG_CONTAINER_OOM:
        return Verdict()  # its die event follows and replaces it
    if record.health == Health.CRITICAL:
        return Verdict()  # already being replaced
    reason = "unhealthy" if tag == names.TAG_CONTAINER_UNHEALTHY else f"exit {payload.get('exit_code')}"
    return Verdict(replace=True, reason=reason)


# --- replacing a dead instance ---------------------------------------------------------------


def backoff(restarts: list[float], now: float, base: float = 1.0, cap: float = 60.0, reset_after: float = 300.0,
            fail_after: int = 8) -> tuple[float, bool]:
    """Crash-loop policy: ``(delay before the next restart, group failed)``.

    ``restarts`` are the times of earlier restarts of the line. Restarts
    older than ``reset_after`` (a run of that long) no longer count; the n-th
    restart in a row waits ``base * 2**(n-1)`` seconds, at most ``cap``; after
    ``fail_after`` restarts in a row the group is failed instead of restarted.
    The first restart is immediate.
    """
    recent = [t for t in restarts if now - t < reset_after]
    n = len(recent)
    if n >= fail_after:
        return 0.0, True
    return (0.0 if n == 0 else min(cap, base * 2 ** (n - 1))), False


def replacement(dead: Instance, group: GroupSpec | None, settings: Settings, now: float, new_id: str,
                reason: str) -> list[Action]:
    """The actions that replace ``dead`` on its node. The back-off follows the
    instance's line (``restarts`` passes to each replacement), so independent
    failures of different instances are not a crash loop. ``group``: its
    accepted spec, None if the group is gone."""
    delay, failed = backoff(list(dead.restarts), now, base=settings.restart_backoff,
                            cap=settings.restart_backoff_max, reset_after=settings.backoff_reset,
                            fail_after=settings.crash_loop_restarts)
    marked = dead.replace(health=Health.CRITICAL, restarts=(dead.restarts + (now,))[-HISTORY:])
    if failed:
        why = f"crash loop: {len(dead.restarts)} restarts in a row; not restarted until the next deploy"
        return [MarkCritical(marked), FailGroup(marked, why)]
    placed = Placement(dead.service, dead.group, new_id, dead.node, dead.instance, dead.container)
    actions: list[Action] = [MarkCritical(marked, placed)]
    if group is None:
        return actions + [Retire(marked, placed, f"{reason}; the group is no longer in bay:services")]
    if delay:
        actions.append(BackOff(marked, delay))
    return actions + [StartReplacement(marked, placed, group, reason)]


# --- nodes ----------------------------------------------------------------------------------


def _groups(instances: Iterable[Instance]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(i.service, i.group) for i in instances}))


def node_lost(node: str, instances: list[Instance]) -> list[Action]:
    """Deregister every instance of a lost node (every HAProxy drops them) and
    bring each affected group back to its count on the nodes left."""
    gone = [i for i in instances if i.node == node]
    actions: list[Action] = [Announce(names.TAG_NODE_LOST, {"node": node, "instances": [i.instance for i in gone]})]
    if gone:
        actions += [Deregister(tuple(gone)), Restore(_groups(gone), {"node_lost": node})]
    return actions


def node_back(node: str, containers: list[dict], instances: list[Instance]) -> list[Action]:
    """A node is back: its containers that KV no longer lists are strays
    (replaced elsewhere while it was gone); removed, so nothing runs twice."""
    registered = {i.container for i in instances if i.node == node}
    strays = tuple(c["container"] for c in containers if c["container"] not in registered)
    actions: list[Action] = []
    if strays:
        actions += [RemoveContainers(node, strays),
                    Announce(names.TAG_STRAY_REMOVED, {"node": node, "containers": list(strays)})]
    return actions + [Announce(names.TAG_NODE_BACK, {"node": node})]


def lost_nodes(instances: list[Instance], alive: set[str]) -> list[str]:
    """Nodes with registered instances that are not alive in Consul (failed,
    or already reaped from its member list)."""
    return sorted({i.node for i in instances} - alive)


def resume(alive: set[str], instances: list[Instance], placements: list[Placement],
           containers: dict[str, list[dict]], stray_age: float) -> list[Action]:
    """What a (re)started controller does with what KV and the alive nodes
    hold (lost nodes already handled):

    * replacements decided but not registered: the half-started container is
      removed, the dead instance deregistered, the placement dropped;
    * registered instances whose container is not running on its node (they
      died while nobody listened) or still marked critical: deregistered and
      their container removed;
    * service containers KV does not know, older than ``stray_age``: removed;

    then every affected group is brought back to its desired count. Nothing
    runs twice: a replacement runs only once its predecessor is deregistered.
    ``containers``: node -> its Bay containers, for every node in ``alive``.
    """
    by_key = {(i.service, i.group, i.instance): i for i in instances}
    groups: set[tuple[str, str]] = set()
    stop: dict[str, set[str]] = {}
    gone: dict[str, Instance] = {}
    for p in placements:
        if p.node in alive:
            stop.setdefault(p.node, set()).add(p.new_container)
        old = by_key.get((p.service, p.group, p.replaces))
        if old:
            gone[old.key] = old
        groups.add((p.service, p.group))
    for node in sorted(alive):
        found = containers.get(node, [])
        running = {c["container"] for c in found if c.get("status") == "running"}
        mine = [i for i in instances if i.node == node and i.is_container]  # not host services (the registry)
        for i in mine:
            if i.container not in running or i.health == Health.CRITICAL:
                gone[i.key] = i
        known = {i.container for i in mine}
        for c in found:
            if c["container"] not in known and c.get("age", 0) >= stray_age:
                stop.setdefault(node, set()).add(c["container"])
    for i in gone.values():
        stop.setdefault(i.node, set()).add(i.container)
        groups.add((i.service, i.group))
    removed = {n: tuple(sorted(c)) for n, c in sorted(stop.items()) if n in alive}
    actions: list[Action] = []
    if gone:
        actions.append(Deregister(tuple(gone.values())))
    if placements:
        actions.append(DropPlacements(tuple(placements)))
    actions += [RemoveContainers(n, c) for n, c in removed.items()]
    if groups:
        actions.append(Restore(tuple(sorted(groups)), {"resumed": True}))
    return actions


def resumed_summary(lost: list[str], actions: list[Action], restored: list[str]) -> Announce:
    """The ``bay/controller/resumed`` event: what a resume found and did."""
    deregistered = sorted(i.instance for a in actions if isinstance(a, Deregister) for i in a.instances)
    removed = {a.node: list(a.containers) for a in actions if isinstance(a, RemoveContainers)}
    return Announce(names.TAG_CONTROLLER_RESUMED, {"lost": lost, "deregistered": deregistered, "removed": removed,
                                                   "restored": restored})
