"""The control loop's runtime in the salt-master (the ``bay_controller``
engine starts :func:`run`): it follows the nodes' events (containers died,
hung, unhealthy; instances ready or not), follows Consul's node health (nodes
lost and back; the first look of a restarted controller resumes), reconciles
every ``reconcile_interval`` what every live node runs with KV and the
accepted specs, and autoscales the groups that have a policy. Handlers run in
a pool and hold what they work on (:class:`~bay_salt.control.loop.Hands`);
everything that talks to Salt builds its own LocalClient there, aimed only at
the nodes Consul sees alive.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from bay_salt.control import journal, recovery
from bay_salt.control.autoscale_round import Autoscaler, salt_measure
from bay_salt.control.loop import ControlLoop, Hands, accepted_spec
from bay_salt.kv.records import Instance
from bay_salt.master import leader
from bay_salt.master import nodes as node_health
from bay_salt.master.reports import NodeReports
from bay_salt.metrics import carbon, graphite, platform
from bay_salt.model import envelope, names
from bay_salt.scheduling.planning import desired
from bay_salt.util import periodic, retry

log = logging.getLogger("bay.controller")

#: attempts of a node handler (a lost node may have led Consul: KV answers "No cluster leader" meanwhile)
NODE_ATTEMPTS = 15


#: a deploy's own events: the controller reads the settings again
DEPLOYS = frozenset({names.TAG_DEPLOY_STARTED, names.TAG_DEPLOY_STOPPED})


class NodeKeys:
    """The minion keys this master accepted (``pki_dir/minions/ID``), read
    again when a file changes: an event is authentic only if signed by the
    node whose id it carries (:mod:`bay_salt.model.envelope`)."""

    def __init__(self, pki_dir: str):
        self.dir = os.path.join(pki_dir, "minions")
        self._keys: dict[str, tuple[int, bytes]] = {}

    def key(self, minion_id: str) -> bytes | None:
        if not envelope.valid_id(minion_id):
            return None
        path = os.path.join(self.dir, minion_id)
        try:
            changed = os.stat(path).st_mtime_ns
            hit = self._keys.get(minion_id)
            if hit and hit[0] == changed:
                return hit[1]
            with open(path, "rb") as fh:
                pem = fh.read()
        except OSError:
            return None
        self._keys[minion_id] = (changed, pem)
        return pem

    def authentic(self, tag: str, event: dict) -> tuple[bool, str]:
        sender = event.get("id")
        return envelope.verify(self.key(sender) if isinstance(sender, str) else None, sender, tag,
                               event.get("data") or {}, event.get(envelope.FIELD))


class Engine:
    def __init__(self, opts: dict, fire: Callable[[str, dict], None], workers: int = 8,
                 reports: NodeReports | None = None):
        self.reports = reports or NodeReports(opts)
        self.recorder = platform.Recorder()

        def fire_and_count(tag: str, data: dict) -> None:
            self.recorder.event(tag, data)
            fire(tag, data)
            if self.reports.store is not None:  # bay events: what the controller decided
                journal.put(self.reports.store, tag, data)

        self.fire = fire_and_count
        self.shipper: carbon.Shipper | carbon.Shards | None = None
        self._carbon: dict = {}
        self.hands = Hands()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bay-handler")
        self.passes = 0
        self.resumed = threading.Event()
        self.keys = NodeKeys(opts.get("pki_dir") or "/etc/salt/pki/master")

    def loop(self) -> ControlLoop:
        """A control loop for one handler: its own LocalClient, aimed at the nodes alive now."""
        if self.reports.store is None or self.reports.settings is None:
            self.reports.refresh(force=True)  # first use: settings and a Consul client
        store = self.reports.store
        return ControlLoop(store, self.reports.backend(), self.fire, accepted_spec(store),
                           self.reports.current_settings, hands=self.hands, dispatch=self.dispatch,
                           output_url=self.reports.output_url, authentic=self.keys.authentic)

    def submit(self, what: str, fn: Callable[[], object], attempts: int = 1) -> None:
        def guarded():
            try:
                retry.call(fn, what, attempts=attempts, interval=2)
            except Exception:  # noqa: BLE001 - one bad event must not stop the controller
                log.exception("bay controller: %s failed (%d attempts)", what, attempts)

        self.pool.submit(guarded)

    def dispatch(self, instance: Instance, reason: str) -> None:
        """A replacement reconciliation found: in a handler of its own, so the pass goes on."""
        self.submit(f"replacing {instance.group_name} {instance.instance}",
                    lambda: self.loop().take_over(instance, reason))

    def watch_nodes(self) -> None:
        """Consul serfHealth -> nodes lost and back. Only Consul calls here:
        everything that talks to Salt runs in the pool."""
        seen, index, client = None, None, None
        while True:
            try:
                if client is None:
                    # the servers as known, else from the master's own pillar: no node is
                    # asked (a node just lost would make that wait out its timeout)
                    servers = self.pool.submit(self.reports.consul_servers).result(timeout=25)
                    store = self.reports.connect(servers)
                    client = store.client
                    self.reports.store = store  # the handlers use a server known to answer
                index, checks = client.health.state("any", index=index, wait="30s")
            except Exception as err:  # noqa: BLE001 - Consul server gone or no leader: use another
                log.warning("bay controller: node watch: %s", err or type(err).__name__)
                client, index = None, None
                time.sleep(1)
                continue
            first = seen is None
            seen, lost, back = node_health.node_changes(seen, checks)
            self.reports.alive = node_health.alive(seen)
            if first:  # a (re)started controller: what happened while it was not looking
                self.submit("resume", self.resume, NODE_ATTEMPTS)
                continue
            for n in lost:
                self.reports.away_from(n)
                self.submit(f"node {n} lost", lambda n=n: self.loop().node_lost(n), NODE_ATTEMPTS)
            for n in back:
                self.submit(f"node {n} back", lambda n=n: self.loop().node_back(n), NODE_ATTEMPTS)

    def resume(self) -> None:
        loop = self.loop()
        self.reports.refresh(force=True)
        loop.adopt(self.reports.services)
        loop.resume(set(self.reports.alive))
        self.resumed.set()

    def reconcile_loop(self) -> None:
        """Every reconcile_interval: one pass (after the resume), never two at
        once. A pass that fails (Consul without a leader, say) is logged and
        the next one tries again: whatever happened meanwhile is found then."""
        self.resumed.wait()
        while True:
            time.sleep(self.reports.current_settings().reconcile_interval)
            try:
                self.reports.refresh()
                self.passes += 1
                loop = self.loop()
                loop.adopt(self.reports.services)
                loop.reconcile(set(self.reports.alive), passes=self.passes)
                journal.prune(self.reports.store)
            except Exception as err:  # noqa: BLE001 - the next pass tries again
                log.error("bay controller: reconciliation pass failed (the next one tries again): %s", err)

    def autoscale_loop(self) -> None:
        """Every autoscale_interval: measure, decide and apply, one round at a
        time, so a group is never scaled twice at once (its group is held)."""
        while True:
            time.sleep(self.reports.settings.autoscale_interval if self.reports.settings else 5.0)
            if self.reports.store is None or self.reports.alive is None:
                continue  # not looked at the nodes yet
            try:
                store = self.reports.store
                groups = [desired(a.spec, store.autoscaled(*k)) for k, a in store.accepted_all().items()
                          if a.spec.autoscale]
                if not groups:
                    continue
                alive = set(self.reports.alive)
                addresses = {n: a for n, a in self.reports.addresses.items() if n in alive}
                keys = [recovery.group_hand(g.service, g.group) for g in groups]
                with self.hands.holding(*keys) as mine:
                    if mine:
                        backend = self.reports.backend()
                        Autoscaler(backend, store, self.fire, salt_measure(backend),
                                   drain_seconds=self.reports.settings.scale_down_drain).tick(time.time(), groups,
                                                                                              addresses)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("bay controller: autoscaling round failed")

    def metrics_loop(self) -> None:
        """Every interval (the finest retention): group and platform metrics
        to carbon. Counting never waits for carbon (the shipper's queue is bounded)."""
        self.resumed.wait()
        while True:
            m = self.reports.monitoring
            interval = float(m.get("interval") or 10)
            now = periodic.sleep_to_next(interval)
            if not m.get("enabled") or not m.get("carbon"):
                continue
            try:
                self._ship_metrics(m, now)
            except Exception as err:  # noqa: BLE001 - the next round tries again
                log.warning("bay controller: metrics round failed (the next one tries again): %s", err)

    def _ship_metrics(self, m: dict, now: float) -> None:
        host, _, port = m["carbon"].rpartition(":")
        first = carbon.Target(host, int(port), **(platform.MASTER_TLS if m.get("tls") else {}))
        targets = graphite.cache_targets(first, m.get("carbon_caches") or 1)
        if self.shipper is None or self._carbon != targets:
            if self.shipper is not None:
                self.shipper.stop(flush=0)
            self.shipper, self._carbon = carbon.open_shipper(targets).start(), targets
        store = self.reports.store
        record = store.get(names.KV_RECONCILE)
        alive = set(self.reports.alive or ())
        points = platform.snapshot(m["cluster"], now, store.accepted_all(), store.autoscaled_all(), store.instances(),
                                   store.failed_groups(), set(self.reports.addresses), alive, store.drained(),
                                   self.recorder.take(), json.loads(record) if record else None,
                                   platform.autoscale_records(store.items(names.kv_scale_prefix()),
                                                              names.kv_scale_prefix()))
        self.shipper.put(points)

    def run(self, next_event: Callable[[], dict | None]) -> None:
        """Start the watchers, then handle the nodes' events as ``next_event()`` gives them."""
        for target, name in ((self.watch_nodes, "bay-node-watch"), (self.reconcile_loop, "bay-reconcile"),
                             (self.autoscale_loop, "bay-autoscale"), (self.metrics_loop, "bay-metrics")):
            threading.Thread(target=target, name=name, daemon=True).start()
        log.info("bay controller started")
        while True:
            ev = next_event()
            if ev and ev["tag"] in recovery.HANDLED:  # not the controller's own announcements
                self.submit(f"handling {ev['tag']}", lambda ev=ev: self.loop().handle(ev["tag"], ev["data"]))
            elif ev and ev["tag"] in DEPLOYS:
                # a deploy has refreshed the nodes' pillar: its bay:controller settings
                # apply from now, not from the next periodic look
                self.pool.submit(self.reports.refresh, True)


def run(opts: dict, workers: int = 8) -> None:
    """The ``bay_controller`` engine's body, on the master's event bus, once
    this master leads the controller (:mod:`bay_salt.master.leader`)."""
    import salt.utils.event

    reports = NodeReports(opts)
    leader.lead(opts, "controller", reports)  # stands by while another master leads
    bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    engine = Engine(opts, lambda tag, data: bus.fire_event(data, tag), workers, reports=reports)
    engine.run(lambda: bus.get_event(full=True, wait=1, tag=f"{names.EVENT_PREFIX}/", match_type="startswith"))
