"""What the nodes report, cached for the master's engines (the controller
and the alert evaluator): the site's settings, the Consul servers and a
store on one of them, the nodes' addresses, where metrics and logs go."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bay_salt.kv.records import Instance
from bay_salt.kv.store import ConsulStore, Servers, first_answering
from bay_salt.master.saltbackend import SaltBackend, ThreadClients, for_master
from bay_salt.master.siteview import controller_token
from bay_salt.model import names
from bay_salt.model.settings import Controller as Settings

log = logging.getLogger("bay.controller")

#: seconds what the nodes report (pillar, Consul servers, addresses) is reused before it is asked for again
REPORTS_TTL = 10.0


class NodeReports:
    """What the nodes report (``bay.node_report``), cached: the
    ``bay:controller`` settings (the last valid ones: a bad pillar edit does
    not stop the controller), the Consul servers, the nodes' addresses,
    cAdvisor's port and the services pillar (read only to adopt groups that
    run with no accepted spec). ``alive``: the nodes Consul sees alive (None
    before the first look)."""

    def __init__(self, opts: dict, ttl: float = REPORTS_TTL):
        self.opts = opts
        self.ttl = ttl
        self.at = 0.0
        self.lock = threading.Lock()
        self.services: dict = {}
        self.settings: Settings | None = None
        self.servers = Servers([], 8500)
        self.addresses: dict[str, str] = {}
        self.cadvisor_port = 8080
        #: where metrics go (the nodes' bay:monitoring, :func:`bay_salt.metrics.nodefiles.report`)
        self.monitoring: dict = {}
        #: what the alert evaluator reads (:meth:`SaltBackend.alerting`)
        self.alerting: dict = {}
        #: where nodes serve containers' output (:func:`bay_salt.logs.nodefiles.report`)
        self.logs: dict = {}
        self.store: ConsulStore | None = None
        #: the lease's check that this master still leads (:func:`bay_salt.master.leader.lead`): every store made here carries it
        self.fence: Callable[[], list[dict]] | None = None
        self.alive: set[str] | None = None
        self.clients = ThreadClients(opts)

    def backend(self) -> SaltBackend:
        """A backend aimed at the nodes alive now, on the calling thread's own LocalClient."""
        targets = sorted(self.alive) if self.alive else None
        # timeout 15: a replacement's start published while its node's minion
        # was away is known lost after 15 s (Salt's find_job), not 300
        return for_master(self.opts, targets, local=self.clients.get(), timeout=15, report_timeout=5,
                          refresh_pillar=False)

    def consul_servers(self) -> Servers:
        """The Consul servers and how to reach them: as last refreshed, else from
        the master's own pillar where it names them (no node has to answer:
        a master just started finds Consul before its minions reconnect)."""
        if not self.servers.addresses:
            self.servers = self.backend().consul_servers()
        return self.servers

    def refresh(self, force: bool = False) -> None:
        """Ask the nodes again after ``ttl`` (or now, with ``force``). One
        asks at a time; the others go on with what is known (a node that has
        just died makes the asking wait out its timeout)."""
        if not force and time.monotonic() - self.at <= self.ttl:
            return
        if not self.lock.acquire(blocking=force or self.settings is None):
            return
        try:
            b = self.backend()
            servers = b.consul_servers()
            if (self.store is None or self.store.client.http.host not in servers.addresses
                    or not self._answers(self.store)):
                self.store = self.connect(servers)  # a kept one keeps its cache
            # a node that did not answer this time keeps the address it had
            self.services, self.servers = b.services(), servers
            try:
                self.settings = Settings.model_validate(b.controller_settings())
            except ValueError as err:
                log.error("bay:controller pillar is invalid, the last valid settings stay: %s", err)
            self.addresses = {**self.addresses, **b.node_addresses()}
            self.monitoring = b.monitoring()
            self.alerting = b.alerting()
            self.logs = b.logs_report()
            self.cadvisor_port, self.at = b.cadvisor_port(), time.monotonic()
        finally:
            self.lock.release()

    def away_from(self, node: str) -> None:
        """A node was lost: if the store talks to its Consul server, move to another now."""
        address = self.addresses.get(node)
        if self.store is not None and address and self.store.client.http.host == address:
            others = self.servers._replace(addresses=[a for a in self.servers.addresses if a != address])
            try:
                self.store = self.connect(others)
            except Exception as err:  # noqa: BLE001 - the store fails over by itself on its next call
                log.warning("bay controller: no other Consul server answers yet: %s", err)

    def connect(self, servers: Servers) -> ConsulStore:
        """A store on the first of ``servers`` that answers, with the controller's token and this engine's fence."""
        return first_answering(servers.addresses, servers.port, token=controller_token(self.opts), fence=self.fence,
                               ca_file=servers.ca_file)

    @staticmethod
    def _answers(store: ConsulStore) -> bool:
        try:
            return bool(store.client.status.leader())
        except Exception:  # noqa: BLE001 - any failure: find another server
            return False

    def output_url(self, inst: Instance) -> str | None:
        """Where the node of ``inst`` serves its output (kept once it is removed)."""
        if not self.logs.get("enabled"):
            return None
        return names.log_url(self.addresses.get(inst.node) or inst.address, self.logs["port"], inst.service,
                             inst.group, inst.instance)

    def current_settings(self) -> Settings:
        if self.settings is None:
            self.refresh(force=True)
        return self.settings
