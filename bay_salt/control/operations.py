"""The runner's logic (``salt-run bay.deploy|plan|scale|status``), over a
:class:`~bay_salt.control.saltbackend.SaltBackend`. Bad input raises
ValueError or SpecError; what cannot be done raises DeployError; nothing
changes in either case."""

from __future__ import annotations

from bay_salt.control.saltbackend import SaltBackend
from bay_salt.model import services
from bay_salt.model.services import ServiceSpec
from bay_salt.scheduling.backend import DeployError
from bay_salt.scheduling.deployer import Deployer
from bay_salt.scheduling.placement import PlacementError


def _spec(backend: SaltBackend, name: str) -> ServiceSpec:
    specs = services.parse(backend.services())  # SpecError: nothing has changed
    if name not in specs:
        raise ValueError(f"no service {name!r} in bay:services (have: {', '.join(sorted(specs)) or 'none'})")
    return specs[name]


def plan(backend: SaltBackend, name: str) -> dict:
    """Dry run of :func:`deploy`: per group, how many would start/stop and
    whether it is a roll. Raises like deploy; changes nothing."""
    try:
        return Deployer(backend, backend.store()).plan(_spec(backend, name))
    except PlacementError as err:
        raise DeployError(str(err)) from None


def deploy(backend: SaltBackend, name: str, groups: dict[str, int] | None = None, event=None) -> dict:
    """Deploy service ``name`` from pillar; ``groups`` limits it to those
    groups at those counts (``bay.scale``). Raises ValueError for bad input."""
    spec = _spec(backend, name)
    if groups:
        unknown = set(groups) - set(spec.model.groups)
        if unknown:
            raise ValueError(f"{name}: no group {sorted(unknown)[0]!r} (have: {', '.join(spec.model.groups)})")
    d = Deployer(backend, backend.store(), log_event=event)
    try:
        reports = d.deploy(spec, groups)
    except PlacementError as err:
        raise DeployError(str(err)) from None
    return {r.group: {"summary": r.summary(), "started": r.started, "stopped": r.stopped} for r in reports}


def status(backend: SaltBackend, name: str | None = None) -> dict:
    """Desired vs registered instances per group, from pillar and KV."""
    specs = services.parse(backend.services())
    store = backend.store()
    out = {}
    for sname, spec in sorted(specs.items()):
        if name and sname != name:
            continue
        for g in spec.groups().values():
            recs = store.instances(g.service, g.group)
            out[g.name] = {
                "failed": store.failed(g.service, g.group),
                "desired": g.instances,
                "registered": len(recs),
                "listen": g.listen,
                "instances": sorted(f"{r.instance}@{r.node}:{r.port} {r.health}" for r in recs),
            }
    return out
