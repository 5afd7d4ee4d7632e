"""The runner's logic (``salt-run bay.deploy|plan|scale|status``), over a
:class:`~bay_salt.master.saltbackend.SaltBackend`.

A deploy validates only the service it deploys (another service's bad spec
is not its problem), holds each group while it works on it (the control loop
leaves a held group alone), and records what it deployed as the group's
accepted spec: the control loop works from that, never from pillar nobody
deployed. Bad input raises ValueError or SpecError; what cannot be done
raises DeployError; nothing changes in either case."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

from bay_salt.control import history, journal
from bay_salt.control.autoscale_round import load_state
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Health
from bay_salt.kv.store import Store
from bay_salt.master.saltbackend import SaltBackend
from bay_salt.model import names, services
from bay_salt.model.access import NotOwner, may_operate  # NotOwner: the runner refuses with it
from bay_salt.model.services import GroupSpec, ServiceSpec, SpecError
from bay_salt.model.units import seconds
from bay_salt.scheduling.backend import DeployError
from bay_salt.scheduling.deployer import Deployer
from bay_salt.scheduling.placement import PlacementError
from bay_salt.scheduling.planning import desired
from bay_salt.util import retry


def authorize(backend: SaltBackend, store: Store, spec: ServiceSpec, user: str | None) -> None:
    """NotOwner unless ``user`` may operate the service: owners as deployed
    (a pillar edit does not make anyone an owner of a running service), or as
    declared for a service not deployed yet."""
    admins, teams = backend.access()
    deployed = [a.spec for (svc, _), a in store.accepted_all().items() if svc == spec.name]
    owners = deployed[0].owners if deployed else list(spec.model.owners)
    if not may_operate(user, owners, admins, teams):
        raise NotOwner(f"{user} may not operate service {spec.name}: its owners are {', '.join(owners)} "
                       "(ask one of them, or the platform team)")


def parse_one(name: str, pillar: dict, store: Store) -> ServiceSpec:
    """Validate service ``name`` alone (SpecError names its problems), and its
    frontends against the groups other services have deployed."""
    if name not in pillar:
        raise ValueError(f"no service {name!r} in bay:services (have: {', '.join(sorted(pillar)) or 'none'})")
    spec = services.parse({name: pillar[name]})[name]
    taken = {a.spec.listen: a.spec.name for (svc, _), a in store.accepted_all().items() if svc != name}
    clashes = [f"{g.name}: listen: port {g.listen} is already the frontend of {taken[g.listen]}"
               for g in spec.groups().values() if g.listen in taken]
    if clashes:
        raise SpecError("invalid service spec: " + "; ".join(clashes))
    return spec


@contextlib.contextmanager
def holding(store: Store, g: GroupSpec) -> Iterator[None]:
    """Hold a group for a deploy: the control loop leaves it alone meanwhile
    (a hold older than ``bay:controller:deploy_timeout`` is taken for dead)."""
    key = names.kv_deploying(g.service, g.group)
    store.apply([kvstore.op_set(key, repr(time.time()))])
    try:
        yield
    finally:
        store.apply([kvstore.op_delete(key)])


def plan(backend: SaltBackend, name: str, user: str | None = None) -> dict:
    """Dry run of :func:`deploy`: per group, how many would start/stop and
    whether it is a roll. Raises like deploy; changes nothing."""
    store = backend.store()
    spec = parse_one(name, backend.services(), store)
    authorize(backend, store, spec, user)
    try:
        out = Deployer(backend, store).plan(spec)
    except PlacementError as err:
        raise DeployError(str(err)) from None
    for gname, g in spec.groups().items():
        acc = store.accepted(name, gname)
        out[g.name]["changes"] = history.spec_changes(acc.spec if acc else None,
                                                      desired(g, store.autoscaled(name, gname)))
    for (svc, gname), acc in store.accepted_all().items():
        if svc == name and gname not in spec.model.groups:
            out[acc.spec.name] = {"start": 0, "stop": 0, "roll": False, "desired": acc.spec.instances,
                                  "changes": ["not in pillar: keeps running as deployed (bay remove "
                                              f"{acc.spec.name})"]}
    return out


def deploy(backend: SaltBackend, name: str, event=None, user: str | None = None) -> dict:
    """Deploy service ``name`` from pillar and record it as a revision when
    its specs changed (:mod:`bay_salt.control.history`). Raises ValueError
    for bad input, NotOwner if ``user`` may not operate it."""
    store = backend.store()
    spec = parse_one(name, backend.services(), store)
    authorize(backend, store, spec, user)
    _capabilities_by_platform(backend, spec, user)
    targets = {gname: desired(g, store.autoscaled(g.service, g.group)) for gname, g in spec.groups().items()}
    out = roll_out(backend, store, spec, targets, event)
    rev = history.record(store, name, "deploy", user, targets)
    tell(store, event, names.TAG_SERVICE_CHANGED, {"service": name, "action": "deploy", "by": user or "?",
                                                   "revision": rev.revision if rev else None})
    return out


def roll_out(backend: SaltBackend, store: Store, spec: ServiceSpec | None, targets: dict[str, GroupSpec], event=None,
             by_hand: bool = False, restart: bool = False) -> dict:
    """Bring each group to its target spec, one at a time, held meanwhile,
    and record each as accepted when it got there; ``by_hand``: a count set
    by hand, where the autoscaler goes on from; ``restart``: every instance
    replaced, as a roll. ``spec`` (the service as declared): its log topic
    is made before anything starts."""
    if spec is not None:
        from bay_salt.logs.operations import ensure_topic  # (it imports this module)

        ensure_topic(backend, spec)  # its containers log into it: made before one starts
    d = Deployer(backend, store, log_event=lambda tag, data: tell(store, event, tag, data))
    out = {}
    for target in targets.values():
        with holding(store, target):
            try:
                report = d.reconcile(target, replace_unready=True, restart=restart)
            except PlacementError as err:
                raise DeployError(str(err)) from None
            ops = [kvstore.op_put(Accepted(target, at=time.time()))]
            if by_hand and target.autoscale:
                # a count set by hand is where the autoscaler goes on from (reconciliation keeps it)
                state, last = load_state(store, target.service, target.group)
                state.desired = target.instances
                ops.append(kvstore.op_set(names.kv_scale(target.service, target.group),
                                          json.dumps({"state": state.to_dict(), "last": last})))
            store.apply(ops)
        out[report.group] = {"summary": report.summary(), "started": report.started, "stopped": report.stopped}
    return out


def tell(store: Store, event, tag: str, data: dict) -> None:
    """An operation's event: on the master's bus (``event``) and in the journal."""
    if event is not None:
        event(tag, data)
    journal.put(store, tag, data)


def deployed(store: Store, target: str) -> Accepted:
    """The accepted spec of ``SERVICE.GROUP``; ValueError when it is not deployed."""
    service, _, group = str(target).partition(".")
    if not service or not group or "/" in group:
        raise ValueError(f"{target!r}: name a group as SERVICE.GROUP")
    acc = store.accepted(service, group)
    if acc is None:
        have = sorted(g for s, g in store.accepted_all() if s == service)
        raise ValueError(f"{target} is not deployed ("
                         + (f"{service} runs {', '.join(have)}" if have else f"bay deploy {service} first") + ")")
    return acc


def deployed_owners(store: Store, service: str, accepted: dict | None = None) -> list[str]:
    """``service``'s owners as deployed, or (removed) as last deployed; [] for one never deployed.
    ``accepted``: ``store.accepted_all()`` when the caller has it already."""
    accepted = store.accepted_all() if accepted is None else accepted
    owners = next((a.spec.owners for (svc, _), a in accepted.items() if svc == service), None)
    if owners is not None:
        return list(owners)
    last = history.running(store, service)
    return list(next(iter(last.groups.values())).owners) if last else []


def authorize_deployed(backend: SaltBackend, store: Store, service: str, user: str | None) -> None:
    """NotOwner unless ``user`` may operate ``service`` as deployed (or, removed, as last deployed)."""
    admins, teams = backend.access()
    owners = deployed_owners(store, service)
    if not may_operate(user, owners, admins, teams):
        raise NotOwner(f"{user} may not operate service {service}: its owners are {', '.join(owners) or 'none'} "
                       "(ask one of them, or the platform team)")


def scale(backend: SaltBackend, target: str, count: int, event=None, user: str | None = None) -> dict:
    """Set the count of one deployed group (``SERVICE.GROUP``): its accepted
    spec at ``count``, nothing else of it changes (a pillar edit nobody
    deployed is not rolled out)."""
    if int(count) < 0:
        raise ValueError(f"{target}: count {count}: 0 or more")
    # the accepted spec, with the secret values the nodes' pillar holds since the last deploy (which
    # recompiles it): no pillar refresh on every node first (1.5 s on three idle nodes)
    backend.refresh_pillar = False
    store = backend.store()
    acc = deployed(store, target)
    authorize_deployed(backend, store, acc.spec.service, user)
    g = acc.spec.with_instances(int(count))
    if g.autoscale and g.instances and not g.autoscale.min <= g.instances <= g.autoscale.max:
        raise ValueError(f"{g.name}: {count} is outside its autoscale bounds {g.autoscale.min}..{g.autoscale.max}")
    out = roll_out(backend, store, None, {g.group: g}, event, by_hand=True)
    tell(store, event, names.TAG_SERVICE_CHANGED, {"service": g.service, "group": g.name, "action": "scale",
                                                   "instances": g.instances, "by": user or "?"})
    return out


def drain(backend: SaltBackend, node: str, user: str | None = None) -> dict:
    """Take ``node`` out of service: nothing new is placed there, and every
    instance it runs is moved to the other nodes first (started, healthy,
    registered; then the node's drain and stop). The node can then be
    rebooted or repaired; ``undrain`` gives it back."""
    _platform_only(backend, user, "drain")
    known = {s.id for s in backend.nodes()}
    if node not in known:
        raise ValueError(f"no node {node!r} answers (have: {', '.join(sorted(known))})")
    store = backend.store()
    store.apply([kvstore.op_set(names.kv_drained(node), json.dumps({"since": time.time()}))])
    d = Deployer(backend, store)
    out = {}
    for (svc, grp), acc in sorted(store.accepted_all().items()):
        g = desired(acc.spec, store.autoscaled(svc, grp))
        with holding(store, g):
            try:
                report = d.evacuate(g, node)
            except PlacementError as err:
                raise DeployError(f"{err}; {node} stays drained, what it runs stays there") from None
        if report.started:
            out[g.name] = {"summary": f"{g.name}: {len(report.started)} moved off {node}",
                           "started": report.started, "stopped": report.stopped}
    return out or {node: {"summary": f"{node}: drained (it ran nothing)", "started": [], "stopped": []}}


def node_clean(backend: SaltBackend, node: str, dry_run: bool = True, dead_after: float | str | None = None,
               user: str | None = None) -> dict:
    """What Docker left behind on ``node`` (:mod:`bay_salt.node.hygiene`):
    with ``dry_run`` what would go, else removed now; ``dead_after`` (seconds
    or 30m) instead of the pillar's. The platform team's."""
    _platform_only(backend, user, "clean a node")
    known = set(backend.node_addresses())
    if node not in known:
        raise ValueError(f"no node {node!r} (have: {', '.join(sorted(known))})")
    return {"node": node, **backend.clean(node, dry_run, None if dead_after in (None, "") else seconds(dead_after))}


def undrain(backend: SaltBackend, node: str, wait: float = 120.0, user: str | None = None) -> dict:
    """Give ``node`` back once it is safe: its Consul agent alive in the
    cluster and, where it is a server, autopilot counting it healthy (a Raft
    voter again): only then may the next node of a rolling restart go."""
    _platform_only(backend, user, "undrain")
    store = backend.store()

    def safe() -> bool:
        if node not in store.members_alive():
            return False
        health = store.consul_health()
        servers = {s["Name"]: s for s in health.get("Servers", [])}
        return node not in servers or (servers[node].get("Healthy") and servers[node].get("Voter"))

    try:
        retry.until(safe, f"{node} back in Consul", timeout=wait, interval=1, on=(kvstore.Unavailable,))
    except retry.GaveUp as err:
        raise DeployError(f"{node} is not safe to give back yet ({err}); it stays drained") from None
    store.apply([kvstore.op_delete(names.kv_drained(node))])
    return {node: {"summary": f"{node}: back in service", "started": [], "stopped": []}}


def _capabilities_by_platform(backend: SaltBackend, spec: ServiceSpec, user: str | None) -> None:
    """A spec that gives capabilities back (``security:cap_add``: raw sockets reach every
    container on the node's bridge) is deployed by the platform team only."""
    given = sorted(g.name for g in spec.groups().values() if g.security and g.security.cap_add)
    admins, _ = backend.access()
    if given and not may_operate(user, [], admins, {}):
        raise NotOwner(f"{user} may not deploy {given[0]}: its spec gives capabilities back (security:cap_add), "
                       f"which the platform team deploys ({', '.join(admins) or 'root'})")


def _platform_only(backend: SaltBackend, user: str | None, what: str) -> None:
    admins, _ = backend.access()
    if not may_operate(user, [], admins, {}):
        raise NotOwner(f"{user} may not {what} nodes: that is the platform team's ({', '.join(admins) or 'root'})")


def _differs(acc: Accepted | None, declared: GroupSpec | None) -> str | None:
    """What pillar says that was not deployed, if anything."""
    if acc is None:
        return "not deployed yet (bay deploy)" if declared else None
    if declared is None:
        return "no longer in pillar (still running as deployed)"
    if declared.spec_hash() != acc.spec.spec_hash() or (
            not declared.autoscale and declared.instances != acc.spec.instances):
        return "differs from what is deployed (bay deploy)"
    return None


def status(backend: SaltBackend, name: str | None = None, user: str | None = None) -> dict:
    """Per group: what was deployed (the accepted spec) against what KV holds
    and how it is (passing, critical, replacing), and whether pillar says
    something else not yet deployed (or something invalid). A user sees the
    services they may operate."""
    admins, teams = backend.access()
    return group_rows(backend.store(), backend.services(), name,
                      lambda owners: may_operate(user, owners, admins, teams))


def group_rows(store: Store, pillar: dict, name: str | None = None, visible=lambda owners: True) -> dict:
    """:func:`status` over ``store`` and the services ``pillar`` (``{}``: what
    was deployed only), for the services whose owners ``visible`` accepts."""
    accepted = store.accepted_all()
    failed = store.failed_groups()
    out = {}
    for sname in sorted(set(pillar) | {s for s, _ in accepted}):
        if name and sname != name:
            continue
        owners = next((a.spec.owners for (s, _), a in accepted.items() if s == sname), None)
        if owners is None:
            owners = list((pillar.get(sname) or {}).get("owners") or [])
        if not visible(owners):
            continue
        try:
            declared = services.parse({sname: pillar[sname]})[sname].groups() if sname in pillar else {}
            problem = None
        except SpecError as err:
            declared, problem = {}, str(err).removeprefix("invalid service spec: ")
        for gname in sorted(set(declared) | {g for s, g in accepted if s == sname}):
            acc = accepted.get((sname, gname))
            g = acc.spec if acc else declared[gname]
            want = desired(g, store.autoscaled(sname, gname))
            recs = store.instances(sname, gname)
            out[g.name] = {
                "deployed": acc is not None,
                "pillar": problem or (_differs(acc, declared.get(gname)) if pillar else None),
                "failed": failed.get((sname, gname)),
                "desired": want.instances,
                "registered": len(recs),
                "passing": sum(1 for r in recs if r.health == Health.PASSING),
                "listen": g.listen,
                "instances": sorted(f"{r.instance}@{r.node}:{r.port} {r.health}" for r in recs),
            }
    return out
