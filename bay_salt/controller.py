"""The master's side of deploys: a :class:`bay_salt.deploy.Backend` over
Salt's LocalClient, and the runner functions' logic (deploy, scale, status)."""

from __future__ import annotations

import consul

from bay_salt import kv, names, services
from bay_salt.deploy import Deployer, DeployError, NodeState
from bay_salt.placement import PlacementError


class SaltBackend:
    def __init__(self, local, target: str | list[str] = "*", timeout: int = 300, report_timeout: int = 60,
                 refresh_pillar: bool = True):
        """``target``: a glob, or the list of minions to use (the controller
        passes the nodes Consul sees alive, so no call waits on a dead one).
        ``report_timeout``: for the node reports (the controller asks again
        sooner rather than wait out a publish lost while the master restarted).
        ``refresh_pillar``: have the minions recompile their pillar before the
        first report (a deploy does; the controller's periodic look does not:
        a refresh reloads every module in each minion's main process, which
        holds up the jobs published meanwhile, and a deploy has refreshed
        the pillar it applied)."""
        self.local = local
        self.report_timeout = report_timeout
        self.refresh_pillar = refresh_pillar
        self.target = ",".join(target) if isinstance(target, list) else target
        self.tgt_type = "list" if isinstance(target, list) else "glob"
        self.timeout = timeout
        self._reports: dict | None = None

    def reports(self, refresh: bool = False) -> dict[str, dict]:
        if self._reports is None and self.refresh_pillar:
            # deploy what pillar says now, not what minions cached
            self.local.cmd(self.target, "saltutil.refresh_pillar", kwarg={"wait": True}, timeout=self.report_timeout,
                           tgt_type=self.tgt_type)
        if self._reports is None or refresh:
            ret = self.local.cmd(self.target, "bay.node_report", timeout=self.report_timeout, tgt_type=self.tgt_type)
            self._reports = {m: r for m, r in ret.items() if isinstance(r, dict)}
            if not self._reports:
                raise DeployError(f"no node answered bay.node_report (target {self.target!r})")
        return self._reports

    def nodes(self) -> list[NodeState]:
        out = []
        for m, r in sorted(self.reports(refresh=True).items()):
            cap = r.get("capacity") or {}
            roles = r["node"].get("roles", [])
            out.append(NodeState(m, r["node"]["address"], float(cap.get("cpus", 0)), int(cap.get("memory_mb", 0)),
                                 r.get("containers", []), schedulable="worker" in roles))
        return out

    def start(self, node: str, group: dict, instances: list[str]) -> list[dict]:
        ret = self.local.cmd(node, "bay_docker.run", [group, instances], timeout=self.timeout).get(node)
        if not isinstance(ret, list):
            raise DeployError(f"{node}: bay_docker.run failed: {ret}")
        return ret

    def stop(self, node: str, containers: list[str]) -> None:
        self.local.cmd(node, "bay_docker.stop", [containers], timeout=self.timeout)

    def busy(self, node: str) -> bool:
        """True while a ``bay_docker.run`` job runs on ``node`` (e.g. one a
        controller started before it was restarted)."""
        ret = self.local.cmd(node, "saltutil.running", timeout=30).get(node)
        return any(isinstance(j, dict) and j.get("fun") == "bay_docker.run" for j in ret or [])

    def containers(self, node: str) -> list[dict]:
        ret = self.local.cmd(node, "bay_docker.instances", timeout=60).get(node)
        if not isinstance(ret, list):
            raise DeployError(f"{node}: bay_docker.instances failed: {ret}")
        return ret

    def services(self) -> dict:
        return next(iter(self.reports().values())).get("services", {})

    def controller_settings(self) -> dict:
        """The ``bay:controller`` pillar (back-off, strays), as the nodes see it."""
        return next(iter(self.reports().values()))["controller"]

    def node_addresses(self) -> dict[str, str]:
        return {m: r["node"]["address"] for m, r in self.reports().items()}

    def cadvisor_port(self) -> int:
        return int(next(iter(self.reports().values()))["cadvisor_port"])

    def consul_servers(self) -> tuple[list[str], int]:
        """The Consul servers' addresses and HTTP port, as the nodes know them."""
        info = next(iter(self.reports().values()))["consul"]
        return info["servers"], info["http_port"]

    def consul(self) -> consul.Consul:
        return first_consul(*self.consul_servers())


def first_consul(servers: list[str], port: int) -> consul.Consul:
    """A client of the first Consul server in ``servers`` that answers."""
    last = None
    for addr in servers:
        c = consul.Consul(host=addr, port=port)
        try:
            c.status.leader()
            return c
        except (consul.ConsulException, OSError) as err:
            last = err
    raise DeployError(f"no Consul server answered ({servers}): {last}")


def _spec(backend: SaltBackend, name: str):
    specs = services.parse(backend.services())  # SpecError: nothing has changed
    if name not in specs:
        raise ValueError(f"no service {name!r} in bay:services (have: {', '.join(sorted(specs)) or 'none'})")
    return specs[name]


def plan(backend: SaltBackend, name: str) -> dict:
    """Dry run of :func:`deploy`: per group, how many would start/stop and
    whether it is a roll. Raises like deploy; changes nothing."""
    try:
        return Deployer(backend, backend.consul()).plan(_spec(backend, name))
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
    d = Deployer(backend, backend.consul(), log_event=event)
    try:
        reports = d.deploy(spec, groups)
    except PlacementError as err:
        raise DeployError(str(err)) from None
    return {r.group: {"summary": r.summary(), "started": r.started, "stopped": r.stopped} for r in reports}


def status(backend: SaltBackend, name: str | None = None) -> dict:
    """Desired vs registered instances per group, from pillar and KV."""
    specs = services.parse(backend.services())
    client = backend.consul()
    out = {}
    for sname, spec in sorted(specs.items()):
        if name and sname != name:
            continue
        for gname, g in spec.groups().items():
            _, recs = kv.read_instances(client, sname, gname)
            _, failed = client.kv.get(names.kv_failed(sname, gname))
            out[f"{sname}.{gname}"] = {
                "failed": failed["Value"].decode() if failed and failed.get("Value") else None,
                "desired": g["instances"],
                "registered": len(recs),
                "listen": g["listen"],
                "instances": sorted(f"{r.instance}@{r.node}:{r.port} {r.health}" for r in recs),
            }
    return out
