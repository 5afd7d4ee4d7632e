"""What the site's pillar says and what the nodes report, read through
Salt: the services, the teams, where Consul, metrics, alerts and logs are.
:class:`SiteView` only reads (a node report, once per view, or the master's
own pillar); :class:`bay_salt.master.saltbackend.SaltBackend` adds the
operations on nodes."""

from __future__ import annotations

from collections.abc import Callable

from bay_salt.kv.store import ConsulStore, Servers, first_answering
from bay_salt.metrics.platform import MASTER_TLS
from bay_salt.scheduling.backend import DeployError

#: where the master keeps the controller's Consul token (root only); master config ``bay_consul_token_file``
TOKEN_FILE = "/etc/bay/consul.token"


def controller_token(opts: dict) -> str | None:
    """The controller's Consul token from the master's own file (None: no file, ACLs off)."""
    try:
        with open(opts.get("bay_consul_token_file", TOKEN_FILE), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        return None


class SiteView:
    def __init__(self, local, target: str | list[str] = "*", report_timeout: int = 60, refresh_pillar: bool = True,
                 token: str | None = None, site: Callable[[], dict] | None = None,
                 ca_file: str = MASTER_TLS["ca_file"]):
        """``target``: a glob, or the list of minions to use (the controller
        passes the nodes Consul sees alive, so no call waits on a dead one).
        ``report_timeout``: for the node reports (the controller asks again
        sooner rather than wait out a publish lost while the master restarted).
        ``refresh_pillar``: have the minions recompile their pillar before the
        first report (a deploy does; the controller's periodic look does not:
        a refresh reloads every module in each minion's main process, which
        holds up the jobs published meanwhile, and a deploy has refreshed
        the pillar it applied).
        ``site``: the site's settings (:func:`bay_salt.master.site.report`)
        from the master's own pillar; without it, from the first node's report.
        ``ca_file``: the master's copy of the CA the Consul servers' HTTPS
        certificates are checked against (where the site gives Consul TLS)."""
        self.local = local
        self.report_timeout = report_timeout
        self.refresh_pillar = refresh_pillar
        self.target = ",".join(target) if isinstance(target, list) else target
        self.tgt_type = "list" if isinstance(target, list) else "glob"
        self.token = token
        self.ca_file = ca_file
        self._reports: dict | None = None
        self.site = site
        self._site: dict | None = None

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

    def _any(self) -> dict:
        """The site's settings (:func:`bay_salt.master.site.report`): read once per backend,
        from the master's pillar when it was given one, else as the first node reports them."""
        if self._site is None:
            self._site = self.site() if self.site is not None else next(iter(self.reports().values()))
        return self._site

    def services(self) -> dict:
        """The ``bay:services`` pillar (validated by the caller)."""
        return self._any().get("services", {})

    def access(self) -> tuple[list[str], dict[str, list[str]]]:
        """The platform team and the teams of owners (``bay:admins``, ``bay:teams``)."""
        report = self._any()
        return list(report.get("admins") or []), dict(report.get("teams") or {})

    def controller_settings(self) -> dict:
        """The ``bay:controller`` pillar (back-off, strays)."""
        return self._any()["controller"]

    def node_addresses(self) -> dict[str, str]:
        """Each node's address: from the site's pillar where it gives every
        targeted node's (no node is asked, so one cut off costs nothing),
        else as the nodes report them."""
        # only the master's own pillar is believed: a node's report names its own address alone
        given = (self._any().get("addresses") or {}) if self.site is not None else {}
        targets = self.target.split(",") if self.tgt_type == "list" else None
        if given and (targets is None or set(targets) <= set(given)):
            return {n: a for n, a in given.items() if targets is None or n in targets}
        return {**given, **{m: r["node"]["address"] for m, r in self.reports().items()}}

    def monitoring(self) -> dict:
        """Where metrics go (:func:`bay_salt.metrics.nodefiles.report`)."""
        return self._any().get("monitoring") or {}

    def alerting(self) -> dict:
        """What the alert evaluator needs from pillar: ``bay:alerts``, the teams, the registry's storage."""
        r = self._any()
        return {"alerts": r.get("alerts") or {}, "teams": r.get("teams") or {},
                "registry_storage": r.get("registry_storage") or ""}

    def logs_report(self) -> dict:
        """Where nodes serve output, how long log tokens last, where Kafka is (no secret)."""
        return self._any().get("logs") or {}

    def cadvisor_port(self) -> int:
        return int(self._any()["cadvisor_port"])

    def consul_servers(self) -> Servers:
        """The Consul servers' addresses and API port (a site whose pillar gives no server's
        address: as the nodes report them, each knowing its own): HTTPS, checked against the
        master's CA file, where the site gives Consul TLS."""
        info = self._any()["consul"]
        if not info["servers"] and self.site is not None:
            info = {**info, "servers": sorted({a for r in self.reports().values() for a in r["consul"]["servers"]})}
        if info.get("https_port"):
            return Servers(info["servers"], info["https_port"], self.ca_file)
        return Servers(info["servers"], info["http_port"])

    def store(self) -> ConsulStore:
        """The KV store on the first Consul server that answers with a leader."""
        servers = self.consul_servers()
        return first_answering(servers.addresses, servers.port, token=self.token, ca_file=servers.ca_file)
