"""The control loop's runtime in the salt-master (the ``bay_controller``
engine starts :func:`run`): it follows ``bay/container/`` events from the
nodes, follows Consul's node health (nodes lost and back, and the first look
of a restarted controller, which resumes), and autoscales the groups that
have a policy. Handlers run in a pool; everything that talks to Salt builds
its own LocalClient there, aimed only at the nodes Consul sees alive.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

from bay_salt.control import nodes as node_health
from bay_salt.control.autoscaler import Autoscaler, cadvisor_measure
from bay_salt.control.loop import ControlLoop
from bay_salt.control.saltbackend import SaltBackend, for_master
from bay_salt.kv.store import ConsulStore, first_answering
from bay_salt.model import names, services
from bay_salt.model.services import GroupSpec, ServiceSpec
from bay_salt.model.settings import Controller as Settings
from bay_salt.util import retry

log = logging.getLogger("bay.controller")

#: seconds the pillar the nodes report is reused before it is asked for again
REPORTS_TTL = 10.0
#: attempts of a node handler (a lost node may have led Consul: KV answers "No cluster leader" meanwhile)
NODE_ATTEMPTS = 15


class NodeReports:
    """What the nodes report (``bay.node_report``), cached: the services and
    ``bay:controller`` pillar as deployed (``bay.deploy`` refreshes it: the
    control loop works from what was deployed), the Consul servers, the
    nodes' addresses and cAdvisor's port. ``alive``: the nodes Consul sees
    alive (None before the first look)."""

    def __init__(self, opts: dict, ttl: float = REPORTS_TTL):
        self.opts = opts
        self.ttl = ttl
        self.at = 0.0
        self.lock = threading.Lock()
        self.services: dict = {}
        self.settings: Settings | None = None
        self.servers: list[str] = []
        self.port = 8500
        self.addresses: dict[str, str] = {}
        self.cadvisor_port = 8080
        self.store: ConsulStore | None = None
        self.alive: set[str] | None = None

    def backend(self, refresh_pillar: bool = False) -> SaltBackend:
        targets = sorted(self.alive) if self.alive else None
        return for_master(self.opts, targets, report_timeout=10, refresh_pillar=refresh_pillar)

    def refresh(self, fresh: bool = False) -> dict:
        """The services pillar, asked for again after ``ttl`` or when ``fresh``
        (recompiled first: a group not known yet; so is the first look)."""
        with self.lock:
            if fresh or time.monotonic() - self.at > self.ttl:
                b = self.backend(refresh_pillar=fresh or not self.at)
                servers, port = b.consul_servers()
                store = first_answering(servers, port)
                # a node that did not answer this time keeps the address it had
                self.services, self.servers, self.port, self.store = b.services(), servers, port, store
                self.settings = Settings.model_validate(b.controller_settings())
                self.addresses = {**self.addresses, **b.node_addresses()}
                self.cadvisor_port, self.at = b.cadvisor_port(), time.monotonic()
            return self.services

    def specs(self) -> dict[str, ServiceSpec]:
        return services.parse(self.refresh())

    def group_spec(self, service: str, group: str) -> GroupSpec | None:
        """The group's spec; a group not in the cached pillar is looked up once
        more in fresh pillar (it may have been deployed a moment ago)."""
        for fresh in (False, True):
            spec = services.parse(self.refresh(fresh)).get(service)
            if spec and group in spec.groups():
                return spec.groups()[group]
        return None

    def current_settings(self) -> Settings:
        if self.settings is None:
            self.refresh()
        return self.settings


class Engine:
    def __init__(self, opts: dict, fire: Callable[[str, dict], None], workers: int = 8):
        self.reports = NodeReports(opts)
        self.fire = fire
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bay-handler")

    def loop(self) -> ControlLoop:
        """A control loop for one handler: its own LocalClient, aimed at the nodes alive now."""
        if self.reports.store is None or self.reports.settings is None:
            self.reports.refresh()  # first use: pillar and a Consul client
        return ControlLoop(self.reports.store, self.reports.backend(), self.fire, self.reports.group_spec,
                           self.reports.current_settings)

    def submit(self, what: str, fn: Callable[[], object], attempts: int = 1) -> None:
        def guarded():
            try:
                retry.call(fn, what, attempts=attempts, interval=2)
            except Exception:  # noqa: BLE001 - one bad event must not stop the controller
                log.exception("bay controller: %s failed (%d attempts)", what, attempts)

        self.pool.submit(guarded)

    def watch_nodes(self) -> None:
        """Consul serfHealth -> nodes lost and back. Only Consul calls here:
        everything that talks to Salt runs in the pool."""
        seen, index, client = None, None, None
        while True:
            try:
                if client is None:
                    # the servers known from an earlier report: no Salt call (a node just
                    # lost would make one wait out its timeout)
                    if not self.reports.servers:
                        self.pool.submit(self.reports.refresh).result(timeout=25)
                    store = first_answering(self.reports.servers, self.reports.port)
                    client = store.client
                    self.reports.store = store  # the handlers use a server known to answer
                index, checks = client.health.state("any", index=index, wait="30s")
            except Exception as err:  # noqa: BLE001 - Consul server gone: use another
                log.warning("bay controller: node watch: %s", err or type(err).__name__)
                client, index = None, None
                time.sleep(1)
                continue
            first = seen is None
            seen, lost, back = node_health.node_changes(seen, checks)
            self.reports.alive = node_health.alive(seen)
            if first:  # a (re)started controller: nodes gone while it was not looking
                alive = set(self.reports.alive)
                self.submit("resume", lambda alive=alive: self.loop().resume(alive), NODE_ATTEMPTS)
                continue
            for n in lost:
                self.submit(f"node {n} lost", lambda n=n: self.loop().node_lost(n), NODE_ATTEMPTS)
            for n in back:
                self.submit(f"node {n} back", lambda n=n: self.loop().node_back(n), NODE_ATTEMPTS)

    def autoscale_loop(self) -> None:
        """Every autoscale_interval: measure, decide and apply, one round at a
        time, so a group is never scaled twice at once."""
        while True:
            time.sleep(self.reports.settings.autoscale_interval if self.reports.settings else 5.0)
            if self.reports.store is None or self.reports.alive is None:
                continue  # not looked at the nodes yet
            try:
                specs = self.reports.specs()
                alive = set(self.reports.alive)
                addresses = {n: a for n, a in self.reports.addresses.items() if n in alive}
                Autoscaler(self.reports.backend(), self.reports.store, self.fire,
                           cadvisor_measure(self.reports.cadvisor_port),
                           drain_seconds=self.reports.settings.scale_down_drain).tick(time.time(), specs, addresses)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("bay controller: autoscaling round failed")

    def run(self, next_event: Callable[[], dict | None]) -> None:
        """Start the watchers, then handle container events as ``next_event()`` gives them."""
        threading.Thread(target=self.watch_nodes, name="bay-node-watch", daemon=True).start()
        threading.Thread(target=self.autoscale_loop, name="bay-autoscale", daemon=True).start()
        log.info("bay controller started")
        while True:
            ev = next_event()
            if ev:
                self.submit(f"handling {ev['tag']}", lambda ev=ev: self.loop().handle(ev["tag"], ev["data"]))


def run(opts: dict, workers: int = 8) -> None:
    """The ``bay_controller`` engine's body, on the master's event bus."""
    import salt.utils.event

    bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    engine = Engine(opts, lambda tag, data: bus.fire_event(data, tag), workers)
    prefix = f"{names.EVENT_PREFIX}/container/"
    engine.run(lambda: bus.get_event(full=True, wait=1, tag=prefix, match_type="startswith"))
