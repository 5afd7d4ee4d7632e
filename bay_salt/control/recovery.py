"""Recovery decisions: from what happened and what is known, the actions that
heal it. Pure functions of plain inputs (records, specs, settings, the time);
:class:`bay_salt.control.executor.Executor` applies what they return.

One function per case of the flow told in :mod:`bay_salt.control`: a
container died or hung (:func:`replacement`), a node lost
(:func:`node_lost`) or back (:func:`node_back`), readiness changes
(:func:`container_event`), and the reconciliation pass (:func:`reconcile`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bay_salt.kv.records import Accepted, Health, Instance, Placement
from bay_salt.model import names
from bay_salt.model.services import GroupSpec
from bay_salt.model.settings import Controller as Settings
from bay_salt.scheduling.planning import desired

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
class MarkReplacing(Action):
    """One transaction: the instance record as given (replacing, its line's
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


@dataclass(frozen=True)
class Replace(Action):
    """Replace ``instance`` as if its death had been reported (the decide-act
    loop of :func:`replacement`), in a handler of its own."""

    instance: Instance
    reason: str


@dataclass(frozen=True)
class SetHealth(Action):
    """Write the instance's readiness as its node agent reports it (every HAProxy follows)."""

    instance: Instance
    health: Health


# --- events from the nodes --------------------------------------------------------------

#: container events that replace the instance, and why
REPLACE_ON = {names.TAG_CONTAINER_DIED: "exit", names.TAG_CONTAINER_UNHEALTHY: "unhealthy",
              names.TAG_CONTAINER_PAUSED: "paused (hung)"}
#: readiness reported by the node agents
READINESS = {names.TAG_INSTANCE_UNREADY: Health.CRITICAL, names.TAG_INSTANCE_READY: Health.PASSING}
#: instance events the control loop reads
HANDLED = (*REPLACE_ON, names.TAG_CONTAINER_OOM, *READINESS)


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
    if record.health == Health.REPLACING:
        return Verdict()  # already being replaced
    if tag in READINESS:
        health = READINESS[tag]
        if record.health == health or record.container != payload.get("container", record.container):
            return Verdict()  # nothing new, or about a container the instance no longer is
        return Verdict(actions=(SetHealth(record, health),))
    reason = REPLACE_ON[tag]
    if tag == names.TAG_CONTAINER_DIED:
        reason = f"exit {payload.get('exit_code')}"
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
    marked = dead.replace(health=Health.REPLACING, restarts=(dead.restarts + (now,))[-HISTORY:])
    if failed:
        why = f"crash loop: {len(dead.restarts)} restarts in a row; not restarted until the next deploy"
        return [MarkReplacing(marked), FailGroup(marked, why)]
    placed = Placement(dead.service, dead.group, new_id, dead.node, dead.instance, dead.container)
    actions: list[Action] = [MarkReplacing(marked, placed)]
    if group is None:
        return actions + [Retire(marked, placed, f"{reason}; the group is no longer in bay:services")]
    if delay:
        actions.append(BackOff(marked, delay))
    return actions + [StartReplacement(marked, placed, group, reason)]


# --- nodes ----------------------------------------------------------------------------------


def _groups(instances: Iterable[Instance]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(i.service, i.group) for i in instances}))


def node_lost(node: str, instances: list[Instance]) -> list[Action]:
    """Deregister every container instance of a lost node (every HAProxy drops
    them) and bring each affected group back to its count on the nodes left.
    A host service's instance (the registry's) is its node's own record: it
    stays, every HAProxy's health check takes it out of service while the node
    is away and back when it answers (nothing would register it again)."""
    gone = [i for i in instances if i.node == node and i.is_container]
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


# --- reconciliation ----------------------------------------------------------------------


def instance_hand(i: Instance) -> str:
    """The key a handler holds while it works on an instance."""
    return f"instance:{i.key}"


def group_hand(service: str, group: str) -> str:
    """The key a handler holds while it works on a group (a restore, a scale)."""
    return f"group:{service}.{group}"


def node_hand(node: str) -> str:
    return f"node:{node}"


@dataclass(frozen=True)
class View:
    """What one reconciliation pass knows. ``containers``: node -> its Bay
    containers, for the alive nodes that answered this pass (a node that did
    not answer is left alone: nothing is decided on what nobody looked at);
    ``busy``: nodes where a container start job still runs; ``in_hand``: keys
    (:func:`instance_hand`, :func:`group_hand`, :func:`node_hand`) of what
    handlers are working on now; ``deploying``: groups a deploy holds, since when."""

    now: float
    alive: frozenset[str]
    containers: dict[str, list[dict]]
    instances: tuple[Instance, ...]
    placements: tuple[Placement, ...]
    accepted: dict[tuple[str, str], Accepted]
    settings: Settings
    autoscaled: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: frozenset[tuple[str, str]] = frozenset()
    deploying: dict[tuple[str, str], float] = field(default_factory=dict)
    busy: frozenset[str] = frozenset()
    in_hand: frozenset[str] = frozenset()


def reconcile(v: View) -> tuple[list[Action], list[str]]:
    """Every difference between what the nodes run, KV and the accepted specs,
    and the actions that heal it: ``(actions, findings)``, one line per finding.

    * instances registered on a node that is not alive: deregistered, their
      groups restored elsewhere (as for a lost node);
    * a replacement decided but left half done (its handler is gone: a
      restarted controller): its new container removed, its predecessor
      deregistered, the placement dropped, the group restored;
    * a registered instance whose container is gone, exited or paused (hung):
      replaced as if its death had been reported, crash-loop back-off included;
    * a container KV does not know, older than ``stray_age``: removed;
    * a deployed group with more or fewer instances than it should run, or
      running another spec than the one deployed: brought to its spec.

    Groups a deploy holds, failed groups, and whatever a handler is working on
    are left alone.
    """
    p = _Pass(v)
    p.lost_nodes()
    p.half_done()
    p.not_running()
    p.strays()
    p.against_specs()
    return p.actions(), p.found


class _Pass:
    """One :func:`reconcile` pass: its five sections fill what it found, the
    instances it deregisters (``gone``), the containers it stops, the
    placements it drops and the groups it restores."""

    def __init__(self, v: View):
        self.v = v
        self.found: list[str] = []
        self.replace: list[Action] = []
        self.held = {g for g, since in v.deploying.items() if v.now - since < v.settings.deploy_timeout}
        self.restore: set[tuple[str, str]] = set()
        self.gone: dict[str, Instance] = {}  # deregistered this pass
        self.stop: dict[str, set[str]] = {}
        self.dropped: list[Placement] = []

    def leave_alone(self, svc: str, grp: str) -> bool:
        return (svc, grp) in self.held or group_hand(svc, grp) in self.v.in_hand

    def lost_nodes(self) -> None:
        """Instances registered on a node that is not alive: deregistered, their groups restored."""
        v = self.v
        for node in sorted({i.node for i in v.instances} - v.alive):
            if node_hand(node) in v.in_hand:
                continue
            mine = [i for i in v.instances if i.node == node and not self.leave_alone(i.service, i.group)]
            if mine:
                self.found.append(f"node {node} is not alive: {len(mine)} instances registered there deregistered")
                for i in mine:
                    self.gone[i.key] = i
                self.restore |= {(i.service, i.group) for i in mine if i.is_container}

    def half_done(self) -> None:
        """Replacements left half done (their handler is gone): cleaned up, the group restored."""
        v = self.v
        by_key = {i.key: i for i in v.instances}
        for p in v.placements:
            dead_key = names.kv_instance(p.service, p.group, p.replaces)
            if f"instance:{dead_key}" in v.in_hand or self.leave_alone(p.service, p.group):
                continue
            if p.node in v.alive and (p.node not in v.containers or p.node in v.busy):
                continue  # not looked at, or its start job still runs: the next pass
            self.found.append(f"{p.service}.{p.group}: the replacement {p.instance} of {p.replaces} on {p.node} "
                              "was left half done (its handler stopped); cleaned up")
            if p.new_container in {c["container"] for c in v.containers.get(p.node, [])}:
                self.stop.setdefault(p.node, set()).add(p.new_container)
            if dead_key in by_key:
                self.gone[dead_key] = by_key[dead_key]
                if p.node in v.containers and by_key[dead_key].container:
                    self.stop.setdefault(p.node, set()).add(by_key[dead_key].container)
            self.dropped.append(p)
            self.restore.add((p.service, p.group))

    def not_running(self) -> None:
        """Registered instances whose container is gone, exited, paused or left replacing: replaced."""
        v = self.v
        replacing = {names.kv_instance(p.service, p.group, p.replaces) for p in v.placements}
        on_node = {node: {c["container"]: c for c in cs} for node, cs in v.containers.items()}
        for i in v.instances:
            if (not i.is_container or i.node not in v.containers or i.key in self.gone or i.key in replacing
                    or instance_hand(i) in v.in_hand or self.leave_alone(i.service, i.group)):
                continue  # a replacement under way (or left half done: above) owns it
            c = on_node[i.node].get(i.container)
            if c is None:
                why = "registered, but its container is gone"
            elif c.get("status") == "paused":
                why = "its container is paused (hung)"
            elif c.get("status") != "running":
                why = f"its container is {c.get('status')}"
            elif i.health == Health.REPLACING:
                why = "left replacing by a handler that stopped"
            else:
                continue
            self.found.append(f"{i.group_name} {i.instance} on {i.node}: {why}; replaced")
            self.replace.append(Replace(i, f"found by reconciliation: {why}"))

    def strays(self) -> None:
        """Containers KV does not know, older than ``stray_age``: removed."""
        v = self.v
        registered = {i.container for i in v.instances if i.key not in self.gone}
        pending = {p.new_container for p in v.placements}
        for node, cs in sorted(v.containers.items()):
            for c in cs:
                name = c["container"]
                if (name in registered or name in pending or c.get("age", 0) < v.settings.stray_age
                        or self.leave_alone(c.get("service", ""), c.get("group", ""))):
                    continue
                self.found.append(f"{node}: container {name} is not registered (a stray); removed")
                self.stop.setdefault(node, set()).add(name)

    def against_specs(self) -> None:
        """Deployed groups with another count or spec than deployed: restored to it."""
        v = self.v
        by_group: dict[tuple[str, str], list[Instance]] = {}
        for i in v.instances:
            if i.key not in self.gone:
                by_group.setdefault((i.service, i.group), []).append(i)
        for key, acc in sorted(v.accepted.items()):
            svc, grp = key
            if key in v.failed or self.leave_alone(svc, grp) or key in self.restore:
                continue
            want = desired(acc.spec, v.autoscaled.get(key))
            present = by_group.get(key, [])
            spec = want.spec_hash()
            outdated = [i for i in present if i.spec != spec]
            if len(present) != want.instances or outdated:
                self.found.append(f"{want.name}: {len(present)} instances for {want.instances} deployed"
                                  + (f", {len(outdated)} not running the deployed spec" if outdated else "")
                                  + "; brought to its spec")
                self.restore.add(key)

    def actions(self) -> list[Action]:
        """In the order of effect: deregister, drop placements, replace, remove containers, restore."""
        v = self.v
        out: list[Action] = []
        if self.gone:
            out.append(Deregister(tuple(self.gone.values())))
        if self.dropped:
            out.append(DropPlacements(tuple(self.dropped)))
        out += self.replace
        out += [RemoveContainers(n, tuple(sorted(c))) for n, c in sorted(self.stop.items()) if n in v.containers]
        restore = {g for g in self.restore if g not in v.failed and g in v.accepted}
        if restore:
            out.append(Restore(tuple(sorted(restore)), {"reconciled": True}))
        return out
