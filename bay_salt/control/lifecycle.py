"""A service's life after its first deploy (``salt-run bay.rollback|remove|
restart|history|describe|events``), over a :class:`~bay_salt.master.saltbackend.SaltBackend`.

Each works from what was accepted (KV), never from pillar nobody deployed;
each holds the group it changes (the control loop leaves it alone), and
tells what it did on the bus and in the journal."""

from __future__ import annotations

import time

from bay_salt.control import history, journal
from bay_salt.control.operations import (
    authorize_deployed,
    deployed,
    deployed_owners,
    holding,
    roll_out,
    tell,
)
from bay_salt.kv.records import Health
from bay_salt.master.saltbackend import SaltBackend
from bay_salt.model import names
from bay_salt.model.access import may_operate
from bay_salt.model.services import NAME_RE
from bay_salt.scheduling.deployer import Deployer
from bay_salt.scheduling.planning import desired

#: how long ``describe`` waits for the nodes' kept output (last exits): a node away must not hold it up
KEPT_TIMEOUT = 5


def _service(name: str) -> str:
    if not NAME_RE.match(str(name or "")):
        raise ValueError(f"{name!r}: a service name ({NAME_RE.pattern})")
    return str(name)


def rollback(backend: SaltBackend, name: str, to: int | None = None, event=None, user: str | None = None) -> dict:
    """Deploy revision ``to`` of ``name`` again (default: the one before the
    newest), as a new revision. Each group comes back with that revision's
    spec (image, command, environment, health...) at the count it runs now
    (a group the revision has that runs no more: at the revision's count);
    groups the revision does not have are left as they are (``bay remove``)."""
    name = _service(name)
    store = backend.store()
    authorize_deployed(backend, store, name, user)
    kept = history.revisions(store, name)
    if to is None:
        if len(kept) < 2:
            raise ValueError(f"{name}: nothing to roll back to ({len(kept)} revision kept; bay history {name})")
        target = kept[-2]
    else:
        target = history.find(store, name, int(to))
    if not target.groups:
        raise ValueError(f"{name}: revision {target.revision} is a removal; name one that ran (bay history {name})")
    targets = {}
    for gname, g in target.groups.items():
        acc = store.accepted(name, gname)
        count = desired(acc.spec, store.autoscaled(name, gname)).instances if acc else g.instances
        targets[gname] = desired(g.with_instances(count), store.autoscaled(name, gname))
    out = roll_out(backend, store, None, targets, event)
    rev = history.record(store, name, "rollback", user, targets, source=target.revision)
    for (svc, gname) in store.accepted_all():
        if svc == name and gname not in target.groups:
            out[f"{svc}.{gname}"] = {"summary": f"{svc}.{gname}: not in revision {target.revision}, left as it "
                                                f"is (bay remove {svc}.{gname})", "started": [], "stopped": []}
    tell(store, event, names.TAG_SERVICE_CHANGED, {"service": name, "action": "rollback", "by": user or "?",
                                                   "revision": rev.revision, "to": target.revision})
    return out


def remove(backend: SaltBackend, target: str, purge: bool = False, event=None, user: str | None = None) -> dict:
    """Take ``SERVICE`` (every group) or ``SERVICE.GROUP`` away: deregistered
    (every HAProxy drops them), drained, stopped, its accepted spec and
    routes gone. ``purge`` (a whole service): its log topic too; the
    registry's grants follow the services pillar. Recorded as a revision."""
    name, _, group = str(target).partition(".")
    name = _service(name)
    store = backend.store()
    groups = {g: a for (s, g), a in store.accepted_all().items() if s == name}
    if group:
        deployed(store, target)
        groups = {group: groups[group]}
    elif not groups:
        raise ValueError(f"{name} is not deployed (nothing to remove)")
    if purge and group:
        raise ValueError(f"{target}: --purge removes a whole service's log topic (name the service)")
    authorize_deployed(backend, store, name, user)
    d = Deployer(backend, store, log_event=lambda tag, data: tell(store, event, tag, data))
    out = {}
    for acc in (groups[g] for g in sorted(groups)):
        with holding(store, acc.spec):
            report = d.remove(acc.spec)
        out[acc.spec.name] = {"summary": f"{acc.spec.name}: removed (-{len(report.stopped)})",
                              "started": [], "stopped": report.stopped}
    left = {g: a.spec for (s, g), a in store.accepted_all().items() if s == name}
    rev = history.record(store, name, "remove", user, left, removed=tuple(sorted(groups)))
    if purge:
        out[name] = {"summary": f"{name}: log topic {_purge_topic(backend, name)}", "started": [], "stopped": []}
    tell(store, event, names.TAG_SERVICE_CHANGED, {"service": name, "action": "remove", "by": user or "?",
                                                   "groups": sorted(groups), "revision": rev.revision,
                                                   "purged": purge})
    return out


def _purge_topic(backend: SaltBackend, service: str) -> str:
    report = backend.logs_report()
    if not (report.get("enabled", True) and report.get("kafka")):
        return "none (no Kafka)"
    done = backend.delete_log_topic(report.get("kafka_nodes") or [], service)
    return f"{done['topic']} deleted" if done.get("deleted") else f"{done['topic']}: there was none"


def restart(backend: SaltBackend, target: str, event=None, user: str | None = None) -> dict:
    """Replace every instance of ``SERVICE.GROUP``, as a roll: ``max_surge``
    at a time, each new one healthy and registered before an old one goes."""
    store = backend.store()
    acc = deployed(store, target)
    authorize_deployed(backend, store, acc.spec.service, user)
    g = desired(acc.spec, store.autoscaled(acc.spec.service, acc.spec.group))
    out = roll_out(backend, store, None, {g.group: g}, event, restart=True)
    tell(store, event, names.TAG_SERVICE_CHANGED, {"service": g.service, "group": g.name, "action": "restart",
                                                   "by": user or "?"})
    return out


def revisions(backend: SaltBackend, name: str, user: str | None = None) -> list[dict]:
    """``bay history NAME``: the kept revisions, oldest first."""
    name = _service(name)
    store = backend.store()
    authorize_deployed(backend, store, name, user)
    return [r.summary() for r in history.revisions(store, name)]


def describe(backend: SaltBackend, target: str, user: str | None = None, now: float | None = None) -> dict:
    """``bay describe SERVICE.GROUP[/ID]``: the accepted spec, the count it
    should run, its instances (or the one), its revision, its recent events
    and the last exits the nodes kept (asked for a few seconds only: a node
    away is named, not waited for)."""
    target, _, instance = str(target).partition("/")
    store = backend.store()
    acc = deployed(store, target)
    g = acc.spec
    authorize_deployed(backend, store, g.service, user)
    want = desired(g, store.autoscaled(g.service, g.group))
    every = store.instances(g.service, g.group)
    records = [r for r in every if not instance or r.instance == instance]
    if instance and not records:
        raise ValueError(f"{target}/{instance}: no such instance (bay describe {target} lists them)")
    now = time.time() if now is None else now
    current = g.spec_hash()
    rows = [{"instance": r.instance, "node": r.node, "address": r.address, "port": r.port, "health": str(r.health),
             "image": r.image, "container": r.container, "current": r.spec == current,
             "restarts": len(r.restarts)} for r in sorted(records, key=lambda r: r.instance)]
    exits, away = [], []
    try:
        kept = backend.kept_all(g.service, g.group, timeout=KEPT_TIMEOUT)
    except Exception as err:  # noqa: BLE001 - Salt's errors: said, the rest is shown
        kept, away = {}, [f"kept output not read: {err}"]
    for node, metas in kept.items():
        for m in metas:
            if not instance or m["instance"] == instance:
                exits.append({"instance": m["instance"], "node": node, "exit_code": m["exit_code"],
                              "oom_killed": m["oom_killed"], "finished_at": m["finished_at"]})
    exits.sort(key=lambda e: str(e["finished_at"]), reverse=True)
    last = history.running(store, g.service)
    events = journal.read(store, service=g.service, group=g.name, limit=20)
    if instance:
        events = [e for e in events if instance in str(e["data"])]
    return {"group": g.name, "spec": g.to_dict(), "accepted_at": acc.at, "adopted": acc.adopted,
            "desired": want.instances, "autoscaled": g.autoscale is not None,
            "revision": last.revision if last else None, "failed": store.failed(g.service, g.group),
            "passing": sum(1 for r in every if r.health == Health.PASSING), "instances": rows,
            "events": events, "exits": exits[:10], "notes": away, "at": now}


def events(backend: SaltBackend, after: str | None = None, service: str | None = None, limit: int = 100,
           user: str | None = None) -> list[dict]:
    """``bay events``: the journal after key ``after`` (default: the newest
    ``limit``), of the services ``user`` may operate (the platform's own
    events: the platform team only)."""
    if service is not None:
        _service(service)
    if after is not None and not str(after).startswith(names.KV_EVENTS):
        raise ValueError(f"after={after!r}: a key from an earlier answer ({names.KV_EVENTS}...)")
    store = backend.store()
    admins, teams = backend.access()
    accepted = store.accepted_all()
    owners: dict[str, list[str]] = {}

    def visible(svc: str | None) -> bool:
        if svc is None:
            return may_operate(user, [], admins, {})
        if svc not in owners:
            owners[svc] = deployed_owners(store, svc, accepted)
        return may_operate(user, owners[svc], admins, teams)

    return journal.read(store, after, service, visible=visible, limit=limit)
